//! [`RedisDriver`]: one hash per bucket, a whole batch applied by one Lua script call.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::connect::{coalesce_rows, number_beyond_reader};
use super::{Driver, DriverFuture, FieldOp, RowUpdate, WriteBatch};
use crate::metrics::error::{DriverError, DriverErrorKind};
use crate::metrics::keys::{IdentifierMode, Identity, RowId, SEPARATOR};
use crate::metrics::value::{Value, Values};

/// The default key prefix (as upstream).
pub(crate) const DEFAULT_PREFIX: &str = "trfl";

/// Applies a batch atomically (Redis runs a script without interleaving other commands).
///
/// KEYS: the writer's batch mark, then one hash per row. ARGV: seq, then per row
/// `expire_at` (0: none) and the field count, then per field `op` (`i` integer increment,
/// `f` float increment, `s` set), name, value.
const SCRIPT: &str = r"
local seq = tonumber(ARGV[1])
local done = redis.call('GET', KEYS[1])
if done and tonumber(done) >= seq then return 0 end
for i = 2, #KEYS do
  local t = redis.call('TYPE', KEYS[i])['ok']
  if t ~= 'hash' and t ~= 'none' then
    return redis.error_reply('WRONGTYPE accrue: ' .. KEYS[i] .. ' is not a hash, nothing was written')
  end
end
local function float_text(s)
  if string.find(s, '[%.eEn]') then return s end
  return s .. '.0'
end
local function finite(n)
  return n ~= nil and n == n and n ~= math.huge and n ~= -math.huge
end
-- Adds a float to a field that exists and holds `old`: a stored value that is not a number
-- counts as 0; a sum beyond the range of a 64-bit float (HINCRBYFLOAT sums in long double, or
-- refuses an infinite one) leaves the stored value as it was.
local function add_float(key, field, value, old)
  local r = redis.pcall('HINCRBYFLOAT', key, field, value)
  if type(r) == 'table' and r.err then
    if not string.find(r.err, 'Infinity', 1, true) then
      redis.call('HSET', key, field, value)
    end
  elseif not finite(tonumber(r)) then
    redis.call('HSET', key, field, old)
  elseif float_text(r) ~= r then
    redis.call('HSET', key, field, float_text(r))
  end
end
local a = 2
for i = 2, #KEYS do
  local key = KEYS[i]
  local expire_at = ARGV[a]
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  for _ = 1, n do
    local op, field, value = ARGV[a], ARGV[a + 1], ARGV[a + 2]
    a = a + 3
    if op == 's' then
      redis.call('HSET', key, field, value)
    elseif op == 'i' then
      local r = redis.pcall('HINCRBY', key, field, value)
      if type(r) == 'table' and r.err then
        add_float(key, field, value, redis.call('HGET', key, field))
      end
    else
      local old = redis.call('HGET', key, field)
      if old then
        add_float(key, field, value, old)
      else
        redis.call('HSET', key, field, value)
      end
    end
  end
  if expire_at ~= '0' then redis.call('EXPIREAT', key, expire_at) end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
";

/// The metrics-store driver for Redis (standalone server; not Redis Cluster).
///
/// * Layout: one hash per bucket at `prefix::key::granularity::unix` (Full
///   identities only — a key-value store has no columns for the other modes), hash fields are
///   the packed field names. The system rows live at `prefix::__system__key__::…`.
/// * Values are Redis strings: numbers as their decimal text (`15`, `0.75`; a float that
///   happens to be whole keeps a `.0`), booleans `true`/`false`, `null`, arrays as JSON, and
///   strings as they are — unless they would read back as one of the former (`"123"`,
///   `"true"`) or are a number JSON's reader refuses (`"1e999"`), in which case they are
///   stored JSON-quoted. Reads parse JSON and fall back to the raw string, so every value
///   round-trips exactly and upstream readers see plain text; a stored number beyond the range
///   of `f64` (from an older build, or another writer) reads as `null`.
/// * Writes: **one Lua script call per batch** (one round trip). Increments use `HINCRBY`
///   (integers stay exact 64-bit integers), fall back to `HINCRBYFLOAT` when the field holds a
///   float or the sum overflows (upstream Go fails there: "hash value is not an integer"),
///   and treat a non-numeric field as 0; an increment whose sum would leave the range of `f64`
///   leaves the stored value as it was. The script checks every key's type before writing,
///   so a conflicting key fails the batch without a partial write.
/// * Batches are idempotent: the script records the writer's highest applied seq at
///   `prefix::__batches__::writer`, in the same script as the data, and skips a batch it has
///   already applied. Marks do not expire (as in the SQL drivers' marks tables: one small
///   key per writer id), so a writer idle for any time still resumes from its position.
/// * Optional [`expire_after`](RedisDriverBuilder::expire_after): each bucket expires that
///   long after its start (`EXPIREAT`, refreshed on every write).
/// * Reads: `HGETALL` per row, pipelined (one round trip).
/// * The connection reconnects by itself; connection errors are
///   [`Connection`](crate::metrics::DriverErrorKind::Connection), and a write that fails that way is
///   retried once before reporting.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use accrue::metrics::{Driver, RedisDriver};
///
/// let driver = RedisDriver::builder()
///     .prefix("trfl")
///     .expire_after(Duration::from_secs(90 * 24 * 3600))
///     .connect("redis://127.0.0.1:6379/")
///     .await?;
/// assert_eq!(driver.description(), "RedisDriver(J)");
/// # Ok(()) }
/// ```
pub struct RedisDriver {
    conn: ConnectionManager,
    script: redis::Script,
    prefix: String,
    separator: String,
    expire_after: Option<Duration>,
}

/// Configures a [`RedisDriver`]; from [`RedisDriver::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `connect`"]
pub struct RedisDriverBuilder {
    prefix: String,
    separator: String,
    expire_after: Option<Duration>,
}

impl RedisDriverBuilder {
    /// Key prefix (default `trfl`): letters, digits, `_ - . :`, at most 64 bytes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Separator of the joined keys (default `::`): at most 8 printable characters.
    pub fn separator(mut self, separator: impl Into<String>) -> Self {
        self.separator = separator.into();
        self
    }

    /// Expire each bucket this long after its start (default: never).
    pub fn expire_after(mut self, ttl: Duration) -> Self {
        self.expire_after = Some(ttl);
        self
    }

    fn validate(&self) -> Result<(), DriverError> {
        let p = &self.prefix;
        if p.is_empty()
            || p.len() > 64
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
        {
            return Err(DriverError::rejected(format!(
                "invalid Redis prefix {p:?}: use letters, digits, '_', '-', '.', ':', at most 64 characters"
            )));
        }
        let s = &self.separator;
        if s.is_empty() || s.len() > 8 || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(DriverError::rejected(format!(
                "invalid Redis separator {s:?}: at most 8 printable characters"
            )));
        }
        if self.expire_after.is_some_and(|d| d.as_secs() == 0) {
            return Err(DriverError::rejected(
                "expire_after must be at least 1 second",
            ));
        }
        Ok(())
    }

    /// Connects to `url` (`redis://[user:password@]host:port/db`).
    ///
    /// # Errors
    ///
    /// [`Rejected`](crate::metrics::DriverErrorKind::Rejected) for an invalid prefix, separator or URL
    /// (checked first); [`Connection`](crate::metrics::DriverErrorKind::Connection) when the server
    /// cannot be reached.
    pub async fn connect(self, url: &str) -> Result<RedisDriver, DriverError> {
        self.validate()?;
        let client = redis::Client::open(url)
            .map_err(|e| DriverError::rejected("Redis: invalid URL").with_source(e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(10)))
            .set_response_timeout(Some(Duration::from_secs(30)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| redis_error("Redis: cannot connect", e))?;
        self.build(conn)
    }

    /// A driver on an existing connection.
    ///
    /// # Errors
    ///
    /// [`Rejected`](crate::metrics::DriverErrorKind::Rejected) for an invalid prefix or separator.
    pub fn build(self, conn: ConnectionManager) -> Result<RedisDriver, DriverError> {
        self.validate()?;
        Ok(RedisDriver {
            conn,
            script: redis::Script::new(SCRIPT),
            prefix: self.prefix,
            separator: self.separator,
            expire_after: self.expire_after,
        })
    }
}

impl RedisDriver {
    /// A builder with the defaults: prefix `trfl`, separator `::`, no expiry.
    pub fn builder() -> RedisDriverBuilder {
        RedisDriverBuilder {
            prefix: DEFAULT_PREFIX.into(),
            separator: SEPARATOR.into(),
            expire_after: None,
        }
    }

    /// The hash key of a row.
    pub fn key_of(&self, row: &RowId) -> String {
        match row.identity_with(IdentifierMode::Full, Some(&self.prefix), &self.separator) {
            Identity::Full { key } => key,
            _ => unreachable!("Full mode gives a Full identity"),
        }
    }

    fn mark_key(&self, writer: &str) -> String {
        let sep = &self.separator;
        format!("{}{sep}__batches__{sep}{writer}", self.prefix)
    }

    fn invocation(&self, batch: &WriteBatch, rows: &[RowUpdate]) -> redis::ScriptInvocation<'_> {
        let mut inv = self.script.prepare_invoke();
        inv.key(self.mark_key(&batch.id.writer));
        inv.arg(batch.id.seq);
        for update in rows {
            inv.key(self.key_of(&update.row));
            let expire_at = self.expire_after.map_or(0, |ttl| {
                update
                    .row
                    .at
                    .as_second()
                    .saturating_add(ttl.as_secs() as i64)
                    .max(1)
            });
            inv.arg(expire_at).arg(update.fields.len());
            for (name, op) in &update.fields {
                match op {
                    FieldOp::Inc(n) => {
                        let (code, text) = match n {
                            crate::metrics::value::Number::Int(i) => ("i", i.to_string()),
                            crate::metrics::value::Number::Float(_) => {
                                ("f", Value::from(*n).to_json().to_string())
                            }
                        };
                        inv.arg(code).arg(name).arg(text);
                    }
                    FieldOp::Set(v) => {
                        inv.arg("s").arg(name).arg(encode(v));
                    }
                }
            }
        }
        inv
    }

    async fn write_once(&self, batch: &WriteBatch, rows: &[RowUpdate]) -> Result<(), DriverError> {
        let inv = self.invocation(batch, rows);
        let mut conn = self.conn.clone();
        let _: i64 = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_error("Redis: batch write failed", e))?;
        Ok(())
    }
}

/// A set value as stored: see the type's docs.
fn encode(v: &Value) -> String {
    match v {
        Value::Str(s)
            if serde_json::from_str::<serde_json::Value>(s).is_err()
                && number_beyond_reader(s).is_none() =>
        {
            s.clone()
        }
        other => other.to_json().to_string(),
    }
}

fn decode(text: String) -> Value {
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => Value::from(v),
        Err(_) => number_beyond_reader(&text).unwrap_or(Value::Str(text)),
    }
}

fn redis_error(what: &str, e: redis::RedisError) -> DriverError {
    let busy = matches!(e.code(), Some("OOM" | "BUSY" | "LOADING" | "MASTERDOWN"));
    let kind = if busy
        || e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
    {
        DriverErrorKind::Connection
    } else {
        DriverErrorKind::Rejected
    };
    DriverError::new(kind, what.to_owned()).with_source(e)
}

impl Driver for RedisDriver {
    fn description(&self) -> String {
        "RedisDriver(J)".into()
    }

    fn mode(&self) -> IdentifierMode {
        IdentifierMode::Full
    }

    fn setup(&self) -> DriverFuture<'_, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let _: String = redis::cmd("PING")
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_error("Redis: setup failed", e))?;
            self.script
                .prepare_invoke()
                .load_async(&mut conn)
                .await
                .map_err(|e| redis_error("Redis: loading the write script failed", e))?;
            Ok(())
        })
    }

    fn write<'a>(&'a self, batch: &'a WriteBatch) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            if batch.rows.is_empty() {
                return Ok(());
            }
            let rows = coalesce_rows(&batch.rows);
            match self.write_once(batch, &rows).await {
                Err(e) if e.is_retryable() => {
                    tracing::debug!(
                        error = &e as &dyn std::error::Error,
                        "Redis write failed, retrying once"
                    );
                    self.write_once(batch, &rows).await
                }
                r => r,
            }
        })
    }

    fn read<'a>(&'a self, rows: &'a [RowId]) -> DriverFuture<'a, Vec<Values>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(rows.len());
            let mut conn = self.conn.clone();
            for chunk in rows.chunks(10_000) {
                let mut pipe = redis::pipe();
                for row in chunk {
                    pipe.hgetall(self.key_of(row));
                }
                let maps: Vec<Vec<(String, String)>> = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| redis_error("Redis: read failed", e))?;
                out.extend(maps.into_iter().map(|fields| {
                    fields
                        .into_iter()
                        .map(|(k, v)| (k, decode(v)))
                        .collect::<Values>()
                }));
            }
            Ok(out)
        })
    }

    fn applied<'a>(&'a self, writer: &'a str) -> DriverFuture<'a, Option<u64>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let seq: Option<String> = redis::cmd("GET")
                .arg(self.mark_key(writer))
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_error("Redis: reading a writer's mark failed", e))?;
            match seq {
                None => Ok(None),
                Some(text) => text.parse::<u64>().map(Some).map_err(|_| {
                    DriverError::new(
                        DriverErrorKind::Corrupt,
                        format!("Redis: the mark of writer {writer:?} is not a number: {text:?}"),
                    )
                }),
            }
        })
    }
}

impl fmt::Debug for RedisDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDriver")
            .field("prefix", &self.prefix)
            .field("separator", &self.separator)
            .field("expire_after", &self.expire_after)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_their_stored_text() {
        for v in [
            Value::Int(15),
            Value::Float(0.75),
            Value::Float(3.0),
            Value::Bool(true),
            Value::Null,
            Value::Str("ok".into()),
            Value::Str("x\"y".into()),
            Value::Str("123".into()),
            Value::Str("true".into()),
            Value::Str("\"quoted\"".into()),
            Value::Str("1e999".into()),
            Value::Str("-1E+400".into()),
            Value::Str(String::new()),
            Value::Array(vec![Value::Int(1), Value::Str("two".into())]),
        ] {
            assert_eq!(decode(encode(&v)), v, "{v}");
        }
        assert_eq!(encode(&Value::Str("ok".into())), "ok");
        assert_eq!(encode(&Value::Str("123".into())), "\"123\"");
        assert_eq!(decode("1e999".into()), Value::Null);
        assert_eq!(decode("2e+308".into()), Value::Null);
        assert_eq!(decode("1e308".into()), Value::Float(1e308));
        assert_eq!(decode("1e999x".into()), Value::Str("1e999x".into()));
        // HINCRBYFLOAT writes sums out in full: 309 digits for the largest f64.
        let max = format!("17976931348623157{}", "0".repeat(292));
        assert_eq!(decode(max.clone()), Value::Float(f64::MAX));
        assert_eq!(decode(max.clone() + ".5"), Value::Float(f64::MAX));
        assert_eq!(decode(encode(&Value::Str(max.clone()))), Value::Str(max));
    }
}
