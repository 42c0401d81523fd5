#!/usr/bin/env bash
# Brings up every server the test suite talks to, on loopback, and exports their URLs.
# Idempotent and fast when they already run; installs what is missing (Debian packages, and the
# MongoDB-compatible SecantusDB from PyPI into a venv outside the clone). Source it:
#   source .ci/services.sh
# Set ACCRUE_SKIP_SERVICES=1 to skip (driver tests then fail under CI, skip loudly outside it).

accrue_services() {
  local log=${ACCRUE_SERVICES_LOG:-$HOME/.cache/accrue-services}
  mkdir -p "$log"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"

  port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
  wait_port() {
    local port=$1 name=$2 i
    for i in $(seq 1 300); do port_open "$port" && return 0; sleep 0.2; done
    echo "services: $name did not come up on 127.0.0.1:$port" >&2
    return 1
  }
  need_apt=()
  command -v pg_ctlcluster >/dev/null || need_apt+=(postgresql)
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
  command -v redis-server >/dev/null || need_apt+=(redis-server)
  if [ ${#need_apt[@]} -gt 0 ] && ! { port_open 5432 && port_open 3306 && port_open 6379; }; then
    echo "services: installing ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >"$log/apt.log" 2>&1
  fi

  # PostgreSQL
  if ! port_open 5432; then
    echo "services: starting PostgreSQL" >&2
    $sudo pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
    wait_port 5432 PostgreSQL || return 1
    $sudo runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'postgres'" >/dev/null 2>&1 || true
    $sudo runuser -u postgres -- createdb test >/dev/null 2>&1 || true
  fi
  # MariaDB
  if ! port_open 3306; then
    echo "services: starting MariaDB" >&2
    $sudo install -d -o mysql -g mysql /run/mysqld
    $sudo start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql --bind-address=127.0.0.1 --port=3306
    wait_port 3306 MariaDB || return 1
    local i; for i in $(seq 1 100); do mariadb-admin ping --silent 2>/dev/null && break; sleep 0.2; done
    $sudo mariadb -e "ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket; CREATE USER IF NOT EXISTS root@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL ON *.* TO root@'127.0.0.1' WITH GRANT OPTION; CREATE DATABASE IF NOT EXISTS test" >/dev/null 2>&1 || true
  fi
  # Redis
  if ! port_open 6379; then
    echo "services: starting Redis" >&2
    $sudo mkdir -p /var/log/redis /var/lib/redis
    $sudo redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null
    wait_port 6379 Redis || return 1
  fi
  # MongoDB-compatible SecantusDB
  if ! port_open 27017; then
    local venv=${ACCRUE_MONGO_VENV:-$HOME/.cache/accrue-mongo-venv}
    if [ ! -x "$venv/bin/secantusd-py" ]; then
      echo "services: installing SecantusDB into $venv" >&2
      python3 -m venv "$venv" && "$venv/bin/pip" install -q SecantusDB==0.7.0b3 >"$log/pip.log" 2>&1 || {
        echo "services: SecantusDB install failed, see $log/pip.log" >&2; return 1; }
    fi
    echo "services: starting SecantusDB" >&2
    setsid "$venv/bin/secantusd-py" --host 127.0.0.1 --port 27017 --storage-path :memory: >"$log/mongo.log" 2>&1 < /dev/null &
    wait_port 27017 SecantusDB || return 1
  fi
  export ACCRUE_PG_URL=${ACCRUE_PG_URL:-postgres://postgres:postgres@127.0.0.1:5432/test}
  export ACCRUE_MYSQL_URL=${ACCRUE_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
  export ACCRUE_REDIS_URL=${ACCRUE_REDIS_URL:-redis://127.0.0.1:6379/}
  export ACCRUE_MONGO_URL=${ACCRUE_MONGO_URL:-mongodb://127.0.0.1:27017/}
}

if [ "${ACCRUE_SKIP_SERVICES:-0}" != 1 ]; then
  accrue_services || { echo "services: failed to bring up the test servers" >&2; return 1 2>/dev/null || exit 1; }
fi
