//! [`connect_driver`]: opens any driver from a URL; helpers shared by the server drivers.

use std::sync::Arc;

use super::{Driver, MemoryDriver, RowUpdate};
use crate::stats::error::DriverError;
use crate::stats::keys::IdentifierMode;

/// The table (collection) name drivers use unless told otherwise.
pub const DEFAULT_TABLE: &str = "trifle_stats";

/// Opens the metrics-store driver a URL names and creates its schema (`setup`).
///
/// | URL | driver | feature |
/// |---|---|---|
/// | `memory:` | [`MemoryDriver`] | `stats` |
/// | `sqlite://PATH`, `sqlite:PATH`, `sqlite::memory:` | `SqliteDriver` | `sqlite` |
/// | `postgres://…`, `postgresql://…` | `PostgresDriver` | `postgres` |
/// | `mysql://…`, `mariadb://…` | `MysqlDriver` | `mysql` |
/// | `redis://…` | `RedisDriver` | `redis` |
/// | `mongodb://…`, `mongodb+srv://…` | `MongoDriver` | `mongodb` |
///
/// Options ride in the query string and are removed before the rest goes to the database
/// client (whose own options, such as PostgreSQL's `sslmode`, still work):
///
/// * `table` (SQL, SQLite) / `collection` (MongoDB): default `trifle_stats`; PostgreSQL accepts
///   `schema.table`, MySQL `database.table`.
/// * `mode`: `full` (default), `partial` or `separated` (not Redis, which stores Full keys).
/// * `prefix` (Redis): key prefix, default `trfl`.
/// * `ttl` (Redis, MongoDB): seconds after the bucket start when a bucket expires.
/// * MongoDB: the database is the URL's path (`mongodb://host/metrics`), default `accrue`.
///
/// Everything is validated before any I/O. Error messages never contain the URL (it may carry
/// a password).
///
/// # Errors
///
/// [`DriverErrorKind::Rejected`](crate::DriverErrorKind::Rejected) for a malformed URL, an
/// invalid option, or a scheme whose driver this build does not include (the message names the
/// feature); [`DriverErrorKind::Connection`](crate::DriverErrorKind::Connection) when the
/// database cannot be reached.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let driver = accrue::connect_driver("memory:?mode=separated").await.unwrap();
/// assert_eq!(driver.description(), "MemoryDriver(S)");
/// assert!(accrue::connect_driver("ftp://example").await.is_err());
/// # }
/// ```
pub async fn connect_driver(url: &str) -> Result<Arc<dyn Driver>, DriverError> {
    let parsed = DriverUrl::parse(url)?;
    let driver = parsed.open().await?;
    driver.setup().await?;
    Ok(driver)
}

/// A parsed driver URL: scheme, the URL without our options, and our options.
#[derive(Debug)]
struct DriverUrl {
    scheme: String,
    /// The URL as the database client gets it (our options removed).
    base: String,
    table: Option<String>,
    mode: IdentifierMode,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    prefix: Option<String>,
    #[cfg_attr(not(any(feature = "redis", feature = "mongodb")), allow(dead_code))]
    ttl: Option<u64>,
}

const OPTIONS: [&str; 5] = ["table", "collection", "mode", "prefix", "ttl"];

impl DriverUrl {
    fn parse(url: &str) -> Result<Self, DriverError> {
        let Some((scheme, _)) = url.split_once(':').filter(|(s, _)| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }) else {
            return Err(DriverError::rejected(
                "not a driver URL: use memory:, sqlite://PATH, postgres://, mysql://, redis:// or mongodb://",
            ));
        };
        let scheme = scheme.to_ascii_lowercase();
        let (head, query) = match url.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (url, None),
        };
        let mut kept = Vec::new();
        let mut out = DriverUrl {
            scheme,
            base: String::new(),
            table: None,
            mode: IdentifierMode::Full,
            prefix: None,
            ttl: None,
        };
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !OPTIONS.contains(&name) {
                kept.push(pair);
                continue;
            }
            match name {
                "table" | "collection" => out.table = Some(value.to_owned()),
                "mode" => {
                    out.mode = value
                        .parse()
                        .map_err(|e: crate::stats::keys::UnknownMode| {
                            DriverError::rejected(e.to_string())
                        })?;
                }
                "prefix" => out.prefix = Some(value.to_owned()),
                _ => {
                    let secs: u64 = value.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        DriverError::rejected(format!(
                            "ttl={value:?}: use a whole number of seconds, at least 1"
                        ))
                    })?;
                    out.ttl = Some(secs);
                }
            }
        }
        out.base = if kept.is_empty() {
            head.to_owned()
        } else {
            format!("{head}?{}", kept.join("&"))
        };
        Ok(out)
    }

    fn table(&self) -> &str {
        self.table.as_deref().unwrap_or(DEFAULT_TABLE)
    }

    fn refuse(&self, options: &[&str], driver: &str) -> Result<(), DriverError> {
        let given = [
            ("table", self.table.is_some()),
            ("prefix", self.prefix.is_some()),
            ("ttl", self.ttl.is_some()),
            ("mode", self.mode != IdentifierMode::Full),
        ];
        for (name, set) in given {
            if set && options.contains(&name) {
                return Err(DriverError::rejected(format!(
                    "the {driver} driver has no {name:?} option"
                )));
            }
        }
        Ok(())
    }

    #[allow(dead_code)]
    fn not_built(&self, name: &str, feature: &str) -> DriverError {
        DriverError::rejected(format!(
            "this build has no {name} metrics-store driver: enable the `{feature}` feature"
        ))
    }

    async fn open(self) -> Result<Arc<dyn Driver>, DriverError> {
        match self.scheme.as_str() {
            "memory" => {
                let rest = self.base.strip_prefix("memory:").unwrap_or("");
                if !rest.is_empty() && rest != "//" {
                    return Err(DriverError::rejected("use memory: without a path"));
                }
                self.refuse(&["table", "prefix", "ttl"], "memory")?;
                Ok(Arc::new(MemoryDriver::new(self.mode)))
            }
            "sqlite" => {
                self.refuse(&["prefix", "ttl"], "SQLite")?;
                self.open_sqlite()
            }
            "postgres" | "postgresql" => {
                self.refuse(&["prefix", "ttl"], "PostgreSQL")?;
                self.open_postgres().await
            }
            "mysql" | "mariadb" => {
                self.refuse(&["prefix", "ttl"], "MySQL")?;
                self.open_mysql().await
            }
            "redis" | "rediss" => {
                self.refuse(&["table"], "Redis")?;
                if self.mode != IdentifierMode::Full {
                    return Err(DriverError::rejected(
                        "the Redis driver stores Full keys only (mode=full)",
                    ));
                }
                self.open_redis().await
            }
            "mongodb" | "mongodb+srv" => {
                self.refuse(&["prefix"], "MongoDB")?;
                self.open_mongo().await
            }
            other => Err(DriverError::rejected(format!(
                "unknown driver scheme {other:?}: use memory, sqlite, postgres, mysql, redis or mongodb"
            ))),
        }
    }

    #[cfg(feature = "sqlite")]
    fn open_sqlite(&self) -> Result<Arc<dyn Driver>, DriverError> {
        let rest = &self.base["sqlite:".len()..];
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(DriverError::rejected(
                "sqlite:// needs a path, e.g. sqlite://./metrics.db or sqlite::memory:",
            ));
        }
        let driver = if path == ":memory:" {
            super::SqliteDriver::in_memory(self.table(), self.mode)?
        } else {
            super::SqliteDriver::open(path, self.table(), self.mode)?
        };
        Ok(Arc::new(driver))
    }

    #[cfg(not(feature = "sqlite"))]
    fn open_sqlite(&self) -> Result<Arc<dyn Driver>, DriverError> {
        Err(self.not_built("SQLite", "sqlite"))
    }

    #[cfg(feature = "postgres")]
    async fn open_postgres(&self) -> Result<Arc<dyn Driver>, DriverError> {
        let driver = super::PostgresDriver::connect(&self.base, self.table(), self.mode).await?;
        Ok(Arc::new(driver))
    }

    #[cfg(not(feature = "postgres"))]
    async fn open_postgres(&self) -> Result<Arc<dyn Driver>, DriverError> {
        Err(self.not_built("PostgreSQL", "postgres"))
    }

    #[cfg(feature = "mysql")]
    async fn open_mysql(&self) -> Result<Arc<dyn Driver>, DriverError> {
        let base = match self.base.strip_prefix("mariadb:") {
            Some(rest) => format!("mysql:{rest}"),
            None => self.base.clone(),
        };
        let driver = super::MysqlDriver::connect(&base, self.table(), self.mode).await?;
        Ok(Arc::new(driver))
    }

    #[cfg(not(feature = "mysql"))]
    async fn open_mysql(&self) -> Result<Arc<dyn Driver>, DriverError> {
        Err(self.not_built("MySQL/MariaDB", "mysql"))
    }

    #[cfg(feature = "redis")]
    async fn open_redis(&self) -> Result<Arc<dyn Driver>, DriverError> {
        let mut builder = super::RedisDriver::builder();
        if let Some(p) = &self.prefix {
            builder = builder.prefix(p);
        }
        if let Some(ttl) = self.ttl {
            builder = builder.expire_after(std::time::Duration::from_secs(ttl));
        }
        Ok(Arc::new(builder.connect(&self.base).await?))
    }

    #[cfg(not(feature = "redis"))]
    async fn open_redis(&self) -> Result<Arc<dyn Driver>, DriverError> {
        Err(self.not_built("Redis", "redis"))
    }

    #[cfg(feature = "mongodb")]
    async fn open_mongo(&self) -> Result<Arc<dyn Driver>, DriverError> {
        let mut builder = super::MongoDriver::builder()
            .collection(self.table())
            .mode(self.mode);
        if let Some(ttl) = self.ttl {
            builder = builder.expire_after(std::time::Duration::from_secs(ttl));
        }
        Ok(Arc::new(builder.connect(&self.base).await?))
    }

    #[cfg(not(feature = "mongodb"))]
    async fn open_mongo(&self) -> Result<Arc<dyn Driver>, DriverError> {
        Err(self.not_built("MongoDB", "mongodb"))
    }
}

/// Checks a table/collection name: letters, digits and `_`, not starting with a digit, at most
/// `max` bytes (the server drivers' limit leaves room for the `_batches` suffix).
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "mongodb")),
    allow(dead_code)
)]
pub(crate) fn validate_name(what: &str, name: &str, max: usize) -> Result<(), DriverError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(DriverError::rejected(format!(
            "invalid {what} name {name:?}: use letters, digits and '_' (not first), at most {max} characters"
        )))
    }
}

/// Folds updates of the same row into one (a batch written with aggregation off has one row
/// update per call), keeping first-appearance order. Applying the result equals applying the
/// updates in order.
#[cfg_attr(
    not(any(
        feature = "postgres",
        feature = "mysql",
        feature = "redis",
        feature = "mongodb"
    )),
    allow(dead_code)
)]
pub(crate) fn coalesce_rows(rows: &[RowUpdate]) -> Vec<RowUpdate> {
    let mut index = std::collections::HashMap::with_capacity(rows.len());
    let mut out: Vec<RowUpdate> = Vec::with_capacity(rows.len());
    for update in rows {
        match index.get(&update.row) {
            None => {
                index.insert(update.row.clone(), out.len());
                out.push(update.clone());
            }
            Some(&i) => {
                let fields = &mut out[i].fields;
                for (name, op) in &update.fields {
                    match fields.iter_mut().find(|(n, _)| n == name) {
                        Some((_, existing)) => existing.merge(op.clone()),
                        None => fields.push((name.clone(), op.clone())),
                    }
                }
            }
        }
    }
    out
}

/// Classifies an sqlx error: lost connections, timeouts, deadlocks and server shutdowns are
/// retryable ([`Connection`](crate::DriverErrorKind::Connection)); the rest is `Rejected`.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn sqlx_error(what: &str, e: sqlx::Error, retryable_codes: &[&str]) -> DriverError {
    use crate::stats::error::DriverErrorKind;
    let kind = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => DriverErrorKind::Connection,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            if retryable_codes
                .iter()
                .any(|c| code == *c || (c.ends_with('*') && code.starts_with(&c[..c.len() - 1])))
            {
                DriverErrorKind::Connection
            } else {
                DriverErrorKind::Rejected
            }
        }
        sqlx::Error::PoolClosed => DriverErrorKind::Other,
        _ => DriverErrorKind::Rejected,
    };
    DriverError::new(kind, what.to_owned()).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_split_from_the_client_url() {
        let u = DriverUrl::parse(
            "postgres://u:p@h/db?sslmode=disable&table=s.t&mode=separated&application_name=x",
        )
        .unwrap();
        assert_eq!(u.scheme, "postgres");
        assert_eq!(
            u.base,
            "postgres://u:p@h/db?sslmode=disable&application_name=x"
        );
        assert_eq!(u.table.as_deref(), Some("s.t"));
        assert_eq!(u.mode, IdentifierMode::Separated);
        let u = DriverUrl::parse("redis://127.0.0.1/?prefix=app&ttl=60").unwrap();
        assert_eq!(u.base, "redis://127.0.0.1/");
        assert_eq!((u.prefix.as_deref(), u.ttl), (Some("app"), Some(60)));
    }

    #[test]
    fn bad_urls_are_rejected_without_echoing_them() {
        for url in [
            "",
            "no-scheme",
            "postgres://u:secret@h/db?mode=weird",
            "redis://u:secret@h/?ttl=0",
            "redis://u:secret@h/?ttl=x",
        ] {
            let e = DriverUrl::parse(url).unwrap_err();
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[tokio::test]
    async fn memory_and_unknown_schemes() {
        let d = connect_driver("memory:").await.unwrap();
        assert_eq!(d.description(), "MemoryDriver(J)");
        let e = connect_driver("memory:?prefix=x").await.unwrap_err();
        assert!(e.to_string().contains("prefix"), "{e}");
        let e = connect_driver("gopher://u:secret@h/").await.unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(
            connect_driver("redis://127.0.0.1/?mode=partial")
                .await
                .is_err()
        );
    }
}
