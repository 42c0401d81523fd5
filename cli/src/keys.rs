//! `accrue keys`: managing a running collector's API keys through its admin routes, with the
//! admin key from the environment or a file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::Chain;

#[derive(Debug, clap::Args)]
pub(crate) struct Keys {
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

/// The admin key from `ACCRUE_ADMIN_KEY` or a file (one of them), trimmed of surrounding
/// whitespace (a file usually ends with a newline).
pub(crate) fn admin_key(file: Option<&std::path::Path>) -> Result<Option<String>, String> {
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

pub(crate) fn run(args: Keys) -> ExitCode {
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
            .map_err(|e| format!("HTTP handshake with {authority}: {}", Chain(&e)))?;
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
        .map_err(|e| format!("{method} {path}: {}", Chain(&e)))?;
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {}", Chain(&e)))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
