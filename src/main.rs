//! The `accrue` command line: `accrue serve` runs the HTTP event collector; `accrue keys`
//! manages its API keys.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use accrue::{AckMode, Collector, Synchronous};
use clap::{Parser, Subcommand};

/// High-throughput event ingestion: a Tlytics-compatible HTTP collector on embedded SQLite,
/// aggregating into time-bucketed metrics.
#[derive(Debug, Parser)]
#[command(name = "accrue", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP event collector.
    ///
    /// Routes: POST /events (JSON array), POST /batch ({"events": [...]}), GET /view,
    /// GET /v1/values, GET /health, GET /ready, GET /metrics, GET /openapi.json. Every stored
    /// event is also aggregated per key and time bucket (its count and the sums of the numeric
    /// fields of its data) into the metrics store. A 200 means every event of
    /// the request is stored (--ack durable) or queued (--ack queued); a 400/413/503 stores
    /// nothing. SIGTERM or SIGINT stop it gracefully: open requests finish and everything
    /// queued is written first.
    Serve(Box<Serve>),
    /// Manage the API keys of a running collector (through its admin routes).
    ///
    /// The admin key comes from the ACCRUE_ADMIN_KEY environment variable or from
    /// --admin-key-file, never from a command-line argument (it would be visible in `ps`).
    /// `accrue keys generate` prints a new random admin key.
    Keys(Keys),
}

#[derive(Debug, clap::Args)]
struct Keys {
    #[command(subcommand)]
    action: KeysAction,

    /// The collector's address.
    #[arg(
        long,
        global = true,
        env = "ACCRUE_SERVER",
        default_value = "http://127.0.0.1:8081",
        value_name = "URL"
    )]
    server: String,

    /// A file holding the admin key (instead of the ACCRUE_ADMIN_KEY environment variable).
    #[arg(
        long,
        global = true,
        env = "ACCRUE_ADMIN_KEY_FILE",
        value_name = "PATH"
    )]
    admin_key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Create a key; prints it (as JSON, field `key`) once: only its hash is kept.
    Create {
        /// Scopes, comma-separated: read, write, delete, admin.
        #[arg(long, value_delimiter = ',', required = true, value_name = "LIST")]
        scope: Vec<String>,
        /// Limit the key to event keys, KV namespaces and feeds starting with this.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
        /// A note for the listing.
        #[arg(long, value_name = "TEXT")]
        label: Option<String>,
    },
    /// List the keys (ids, scopes, prefixes, labels; never the keys themselves).
    List,
    /// Revoke a key by id: refused from the next request on, its live connections closed.
    Revoke {
        /// The key's id (from `create` or `list`).
        id: String,
    },
    /// Print a new random admin key (256 bits) for ACCRUE_ADMIN_KEY or --admin-key-file.
    Generate,
}

#[derive(Debug, clap::Args)]
struct Serve {
    /// SQLite file of the event store; created on first run.
    #[arg(
        long,
        env = "ACCRUE_DB",
        default_value = "./accrue.db",
        value_name = "PATH"
    )]
    db: PathBuf,

    /// TCP port to listen on (0 picks a free one and logs it).
    #[arg(long, env = "ACCRUE_PORT", default_value_t = 8081)]
    port: u16,

    /// Address to listen on; 0.0.0.0 accepts remote clients (set an admin key first).
    #[arg(
        long,
        env = "ACCRUE_BIND",
        default_value = "127.0.0.1",
        value_name = "ADDR"
    )]
    bind: IpAddr,

    /// How often aggregated metrics are flushed to the metrics store (e.g. 5s, 500ms, 1m).
    #[arg(long, env = "ACCRUE_FLUSH", default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    flush: Duration,

    /// Where aggregated metrics go, as a URL. Default: the --db file itself (sqlite://PATH).
    /// postgres://, mysql://, redis:// and mongodb:// need a build with that driver.
    #[arg(long, env = "ACCRUE_STATS_DRIVER", value_name = "URL")]
    stats_driver: Option<String>,

    /// When a POST is answered 200: `durable` after the events are committed (group commit;
    /// kill -9 right after the answer loses nothing), or `queued` as soon as they are queued
    /// (Tlytics' behaviour; a crash can lose what is still in the queue).
    #[arg(long, env = "ACCRUE_ACK", default_value = "durable", value_parser = ["durable", "queued"])]
    ack: String,

    /// SQLite durability of a commit: `normal` survives a process crash, `full` also an OS
    /// crash or power cut (one fsync per group commit).
    #[arg(long, env = "ACCRUE_SYNCHRONOUS", default_value = "normal", value_parser = ["normal", "full"])]
    synchronous: String,

    /// Delete events older than this (event time), e.g. 30d or 12h. Default: keep all.
    #[arg(long, env = "ACCRUE_RETENTION", value_parser = parse_duration, value_name = "DURATION")]
    retention: Option<Duration>,

    /// Largest request body in bytes; larger gets 413.
    #[arg(long, env = "ACCRUE_MAX_BODY_BYTES", default_value_t = 5 * 1024 * 1024, value_name = "BYTES")]
    max_body_bytes: usize,

    /// Most events in one request; more gets 413.
    #[arg(
        long,
        env = "ACCRUE_MAX_EVENTS",
        default_value_t = 10_000,
        value_name = "N"
    )]
    max_events: usize,

    /// Longest event key in bytes; longer gets 400.
    #[arg(
        long,
        env = "ACCRUE_MAX_KEY_BYTES",
        default_value_t = 256,
        value_name = "BYTES"
    )]
    max_key_bytes: usize,

    /// Largest `data` of one event in bytes (without whitespace); larger gets 400.
    #[arg(long, env = "ACCRUE_MAX_DATA_BYTES", default_value_t = 64 * 1024, value_name = "BYTES")]
    max_data_bytes: usize,

    /// Deepest nesting of objects and arrays in an event's `data` (at most 100); deeper gets
    /// 400.
    #[arg(
        long,
        env = "ACCRUE_MAX_DATA_DEPTH",
        default_value_t = 32,
        value_name = "LEVELS"
    )]
    max_data_depth: usize,

    /// Events the ingest queue holds before answering 503 with Retry-After.
    #[arg(
        long,
        env = "ACCRUE_QUEUE_EVENTS",
        default_value_t = 100_000,
        value_name = "N"
    )]
    queue_events: usize,

    /// Bytes of event keys, data and ids the ingest queue holds before answering 503.
    #[arg(long, env = "ACCRUE_QUEUE_BYTES", default_value_t = 64 * 1024 * 1024, value_name = "BYTES")]
    queue_bytes: usize,

    /// How long the writer waits for more requests to share a commit (0: commit what is
    /// queued at once; under load, requests share commits anyway).
    #[arg(long, env = "ACCRUE_COMMIT_WINDOW", default_value = "0s", value_parser = parse_duration, value_name = "DURATION")]
    commit_window: Duration,

    /// Connections served at once; one more is answered 503 and closed. Keep it below the
    /// open-file limit (ulimit -n).
    #[arg(
        long,
        env = "ACCRUE_MAX_CONNECTIONS",
        default_value_t = 1024,
        value_name = "N"
    )]
    max_connections: usize,

    /// How long a connection may take to send a request's headers, from connect or from the
    /// previous response; also the idle limit of a kept-alive connection.
    #[arg(long, env = "ACCRUE_HEADER_TIMEOUT", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    header_timeout: Duration,

    /// How long a request body may take to arrive completely; later gets 408.
    #[arg(long, env = "ACCRUE_BODY_TIMEOUT", default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    body_timeout: Duration,

    /// How long a request waits for a failing event store (--ack durable) before it is
    /// answered 503 with nothing of it stored; a full disk is answered 507 at once.
    #[arg(long, env = "ACCRUE_COMMIT_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    commit_timeout: Duration,

    /// How long a graceful shutdown may take in all: open requests finish, the queue is
    /// written, the metrics are flushed.
    #[arg(long, env = "ACCRUE_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    shutdown_timeout: Duration,

    /// Granularities events are aggregated in, comma-separated (<n><unit>, units s m h d w mo
    /// q y).
    #[arg(
        long,
        env = "ACCRUE_GRANULARITIES",
        default_value = "1m,1h,1d,1w,1mo,1q,1y",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    granularities: Vec<String>,

    /// IANA time zone the metric buckets are computed in (e.g. UTC, Europe/Bratislava).
    #[arg(
        long,
        env = "ACCRUE_TIME_ZONE",
        default_value = "UTC",
        value_name = "ZONE"
    )]
    time_zone: String,

    /// First day of a week bucket.
    #[arg(long, env = "ACCRUE_WEEK_START", default_value = "monday", value_parser = parse_weekday, value_name = "DAY")]
    week_start: jiff::civil::Weekday,

    /// Store events only: no metrics aggregation, no /v1/values.
    #[arg(long, env = "ACCRUE_NO_METRICS")]
    no_metrics: bool,

    /// A file holding the admin key; or set ACCRUE_ADMIN_KEY. With an admin key (or keys
    /// stored by an earlier run) every route but /health, /ready and /openapi.json needs
    /// `Authorization: Bearer <key>`. There is no flag taking the key itself: it would show in
    /// `ps`.
    #[arg(long, env = "ACCRUE_ADMIN_KEY_FILE", value_name = "PATH")]
    admin_key_file: Option<PathBuf>,

    /// Messages one live-feed connection may have waiting before it misses some (it is told
    /// with a `lagged` message).
    #[arg(
        long,
        env = "ACCRUE_LIVE_BUFFER_MESSAGES",
        default_value_t = 1024,
        value_name = "N"
    )]
    live_buffer_messages: usize,

    /// Bytes one live-feed connection may have waiting.
    #[arg(long, env = "ACCRUE_LIVE_BUFFER_BYTES", default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    live_buffer_bytes: usize,

    /// Live-feed connections (WebSocket and SSE) allowed at once.
    #[arg(
        long,
        env = "ACCRUE_MAX_LIVE_CONNECTIONS",
        default_value_t = 1024,
        value_name = "N"
    )]
    max_live_connections: usize,

    /// Log filter (tracing-subscriber EnvFilter syntax), e.g. info, debug, accrue=trace.
    #[arg(
        long,
        env = "ACCRUE_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    log: String,
}

/// A duration such as `5s`, `500ms`, `1m30s`, `12h` or `30d` (a day is 24 hours).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let span: jiff::Span = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration like 5s, 500ms, 12h or 30d: {e}"))?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| format!("{s:?}: {e}"))?;
    Duration::try_from(d).map_err(|_| format!("{s:?} must not be negative"))
}

fn parse_weekday(s: &str) -> Result<jiff::civil::Weekday, String> {
    use jiff::civil::Weekday::*;
    Ok(match s.to_ascii_lowercase().as_str() {
        "monday" | "mon" => Monday,
        "tuesday" | "tue" => Tuesday,
        "wednesday" | "wed" => Wednesday,
        "thursday" | "thu" => Thursday,
        "friday" | "fri" => Friday,
        "saturday" | "sat" => Saturday,
        "sunday" | "sun" => Sunday,
        _ => return Err(format!("{s:?} is not a day of the week (monday … sunday)")),
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Keys(args) => keys(args),
    }
}

fn serve(args: Serve) -> ExitCode {
    let filter = match tracing_subscriber::EnvFilter::try_new(&args.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("accrue: invalid --log filter {:?}: {e}", args.log);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("accrue-http")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("accrue: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let admin_key = match admin_key(args.admin_key_file.as_deref()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("accrue: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        let ack: AckMode = args.ack.parse()?;
        let synchronous: Synchronous = args.synchronous.parse()?;
        let mut builder = Collector::builder()
            .db(&args.db)
            .port(args.port)
            .bind(args.bind)
            .flush_interval(args.flush)
            .ack(ack)
            .synchronous(synchronous)
            .retention(args.retention)
            .max_body_bytes(args.max_body_bytes)
            .max_events_per_request(args.max_events)
            .max_key_bytes(args.max_key_bytes)
            .max_data_bytes(args.max_data_bytes)
            .max_data_depth(args.max_data_depth)
            .queue_events(args.queue_events)
            .queue_bytes(args.queue_bytes)
            .commit_window(args.commit_window)
            .shutdown_timeout(args.shutdown_timeout)
            .commit_timeout(args.commit_timeout)
            .max_connections(args.max_connections)
            .header_timeout(args.header_timeout)
            .body_timeout(args.body_timeout)
            .granularities(args.granularities.iter().map(|g| g.trim().to_owned()))
            .time_zone(args.time_zone.clone())
            .week_start(args.week_start)
            .metrics_pipeline(!args.no_metrics)
            .live_buffer_messages(args.live_buffer_messages)
            .live_buffer_bytes(args.live_buffer_bytes)
            .max_live_connections(args.max_live_connections);
        if let Some(key) = &admin_key {
            builder = builder.admin_key(key);
        }
        if let Some(url) = &args.stats_driver {
            builder = builder.stats_driver(url);
        }
        builder.start().await?.run_until_signal().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("accrue: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The admin key from `ACCRUE_ADMIN_KEY` or a file (one of them), trimmed of surrounding
/// whitespace (a file usually ends with a newline).
fn admin_key(file: Option<&std::path::Path>) -> Result<Option<String>, String> {
    let env = std::env::var("ACCRUE_ADMIN_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    match (env, file) {
        (Some(_), Some(_)) => {
            Err("both ACCRUE_ADMIN_KEY and an admin key file are set; use one".to_owned())
        }
        (Some(k), None) => Ok(Some(k.trim().to_owned())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the admin key file {}: {e}", path.display()))?;
            let key = text.trim();
            if key.is_empty() {
                return Err(format!("the admin key file {} is empty", path.display()));
            }
            Ok(Some(key.to_owned()))
        }
        (None, None) => Ok(None),
    }
}

fn keys(args: Keys) -> ExitCode {
    if let KeysAction::Generate = args.action {
        let mut bytes = [0u8; 32];
        if let Err(e) = getrandom::fill(&mut bytes) {
            eprintln!("accrue: no random bytes: {e}");
            return ExitCode::FAILURE;
        }
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        println!("accrue_admin_{hex}");
        return ExitCode::SUCCESS;
    }
    let key = match admin_key(args.admin_key_file.as_deref()) {
        Ok(Some(k)) => k,
        Ok(None) => {
            eprintln!(
                "accrue: managing keys needs the admin key: set ACCRUE_ADMIN_KEY or \
                 --admin-key-file"
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("accrue: {e}");
            return ExitCode::from(2);
        }
    };
    let (method, path, body) = match &args.action {
        KeysAction::Create {
            scope,
            prefix,
            label,
        } => {
            let scopes: Vec<&str> = scope.iter().map(|s| s.trim()).collect();
            let body = serde_json::json!({"scopes": scopes, "prefix": prefix, "label": label});
            ("POST", "/v1/keys".to_owned(), body.to_string())
        }
        KeysAction::List => ("GET", "/v1/keys".to_owned(), String::new()),
        KeysAction::Revoke { id } => {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                eprintln!("accrue: {id:?} is not a key id");
                return ExitCode::from(2);
            }
            ("DELETE", format!("/v1/keys/{id}"), String::new())
        }
        KeysAction::Generate => unreachable!("handled above"),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("accrue: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(admin_request(&args.server, method, &path, &key, body)) {
        Ok((status, text)) if (200..300).contains(&status) => {
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) => println!(
                    "{}",
                    serde_json::to_string_pretty(&v).unwrap_or(text.clone())
                ),
                Err(_) => println!("{text}"),
            }
            if matches!(args.action, KeysAction::Create { .. }) {
                eprintln!("accrue: store the key now; the server keeps only its hash");
            }
            ExitCode::SUCCESS
        }
        Ok((status, text)) => {
            eprintln!("accrue: the server answered {status}: {text}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("accrue: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One request to the collector's admin routes (plain HTTP/1.1: the collector itself speaks no
/// TLS; run this next to it, or behind the proxy that terminates TLS, on its inner address).
async fn admin_request(
    server: &str,
    method: &str,
    path: &str,
    key: &str,
    body: String,
) -> Result<(u16, String), String> {
    use http_body_util::BodyExt;
    let authority = server
        .strip_prefix("http://")
        .ok_or_else(|| format!("--server {server:?}: only http://HOST:PORT is supported"))?
        .trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!("--server {server:?} is not http://HOST:PORT"));
    }
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {authority}: {e}"))?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_like_go_and_accept_days() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("1mo").is_err());
    }

    #[test]
    fn help_documents_every_flag_and_env_var() {
        let help = Cli::command()
            .find_subcommand_mut("serve")
            .unwrap()
            .render_long_help()
            .to_string();
        for arg in Cli::command()
            .find_subcommand("serve")
            .unwrap()
            .get_arguments()
        {
            if let Some(long) = arg.get_long() {
                assert!(help.contains(&format!("--{long}")), "--{long} missing");
            }
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                if !["help", "version"].contains(&arg.get_id().as_str()) {
                    assert!(help.contains(&format!("env: {env}")), "{env} missing");
                }
            }
        }
    }
}
