//! Helpers for the server-driver tests: service URLs from the environment (fail under
//! `ACCRUE_REQUIRE_SERVICES=1`, skip loudly otherwise), unique names so tests never see each
//! other's rows, and a loopback TCP proxy that cuts connections on demand (fault tests).

#![allow(dead_code, unreachable_pub)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Names older than this (seconds) left behind by a crashed run are dropped.
pub const STALE_AFTER: u64 = 3600;

/// The URL in `var`, or `None` after a loud skip message; panics when the services are
/// required (`ACCRUE_REQUIRE_SERVICES=1`, as CI sets).
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("ACCRUE_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!(
                    "{var} is not set but ACCRUE_REQUIRE_SERVICES=1: start the servers with \
                     `source .ci/services.sh`"
                );
            }
            eprintln!(
                "\n*** SKIPPED: {var} is not set, so this driver test did not run. \
                 `source .ci/services.sh` starts the servers and sets it. ***\n"
            );
            None
        }
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `<prefix>_<unix seconds>_<random hex>`: unique per call, and old ones are recognisable.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    format!(
        "{prefix}_{}_{:012x}",
        unix_now(),
        h.finish() & 0xffff_ffff_ffff
    )
}

/// Whether a name made by [`unique`] with `prefix` is older than [`STALE_AFTER`].
pub fn is_stale(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .and_then(|r| r.split('_').next())
        .and_then(|t| t.parse::<u64>().ok())
        .is_some_and(|t| t + STALE_AFTER < unix_now())
}

/// Runs `f` once per test process (the first caller does it).
pub fn once(flag: &AtomicBool) -> bool {
    !flag.swap(true, Ordering::SeqCst)
}

/// A loopback TCP proxy in front of a server. It can drop every live connection, and it can
/// be armed to cut a connection at the moment the server answers a large request: the
/// server has executed it, the client never hears back (an ambiguous failure).
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<ProxyInner>,
    pub addr: SocketAddr,
}

struct ProxyInner {
    target: SocketAddr,
    /// Cut the next connection whose server answers after at least this many request bytes
    /// (0 = disarmed).
    armed: AtomicUsize,
    /// How many more cuts before disarming.
    shots: AtomicUsize,
    cuts: AtomicUsize,
    generation: AtomicU64,
    upstream_ports: Mutex<Vec<u16>>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port, forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(ProxyInner {
            target,
            armed: AtomicUsize::new(0),
            shots: AtomicUsize::new(0),
            cuts: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            upstream_ports: Mutex::new(Vec::new()),
        });
        let accept = inner.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let inner = accept.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(inner.target).await else {
                        return;
                    };
                    if let Ok(local) = server.local_addr() {
                        inner.upstream_ports.lock().unwrap().push(local.port());
                    }
                    pump(inner, client, server).await;
                });
            }
        });
        Proxy { inner, addr }
    }

    /// Cut the next connection that gets an answer to a request of at least `min_bytes`
    /// (sent after this call).
    pub fn arm(&self, min_bytes: usize) {
        self.arm_times(min_bytes, 1);
    }

    /// Like [`arm`](Self::arm), for the next `shots` such answers.
    pub fn arm_times(&self, min_bytes: usize, shots: usize) {
        self.inner.shots.store(shots, Ordering::SeqCst);
        self.inner.armed.store(min_bytes.max(1), Ordering::SeqCst);
    }

    /// How many connections were cut by [`arm`](Self::arm).
    pub fn cuts(&self) -> usize {
        self.inner.cuts.load(Ordering::SeqCst)
    }

    /// Drops every connection open now.
    pub fn drop_all(&self) {
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Local ports of the proxy's connections to the server (to find them server-side).
    pub fn upstream_ports(&self) -> Vec<u16> {
        self.inner.upstream_ports.lock().unwrap().clone()
    }
}

async fn pump(inner: Arc<ProxyInner>, client: TcpStream, server: TcpStream) {
    let generation = inner.generation.load(Ordering::SeqCst);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    // Request bytes since the last answer.
    let pending = Arc::new(AtomicUsize::new(0));
    let up_pending = pending.clone();
    let up_inner = inner.clone();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            up_pending.fetch_add(n, Ordering::SeqCst);
            if up_inner.generation.load(Ordering::SeqCst) != generation
                || sw.write_all(&buf[..n]).await.is_err()
            {
                return;
            }
        }
    };
    let down_inner = inner.clone();
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let sent = pending.swap(0, Ordering::SeqCst);
            let armed = down_inner.armed.load(Ordering::SeqCst);
            if armed > 0
                && sent >= armed
                && down_inner
                    .shots
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| s.checked_sub(1))
                    .is_ok_and(|left| {
                        if left == 1 {
                            down_inner.armed.store(0, Ordering::SeqCst);
                        }
                        true
                    })
            {
                down_inner.cuts.fetch_add(1, Ordering::SeqCst);
                return;
            }
            if down_inner.generation.load(Ordering::SeqCst) != generation
                || cw.write_all(&buf[..n]).await.is_err()
            {
                return;
            }
        }
    };
    let watch = async {
        while inner.generation.load(Ordering::SeqCst) == generation {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
        () = watch => {}
    }
}

/// `host:port` of a URL like `scheme://user:pw@host:port/...` (loopback only in tests).
pub fn url_addr(url: &str, default_port: u16) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().unwrap()),
        None => (hostport, default_port),
    };
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{port}").parse().unwrap()
}

/// The URL with its `host:port` replaced by `addr`.
pub fn url_via(url: &str, addr: SocketAddr, default_port: u16) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let userinfo = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
    let _ = default_port;
    format!(
        "{scheme}://{}{addr}{}",
        userinfo.unwrap_or_default(),
        &rest[end..]
    )
}

/// An error and every cause under it, `message: cause: …` (a driver error keeps the database's
/// error out of its own text: it is the `source()`).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
