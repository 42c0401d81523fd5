//! [`connect_driver`]: opens any driver from a URL; helpers shared by the server drivers.

use std::sync::Arc;

use super::{Driver, FieldOp, MemoryDriver, RowUpdate};
use crate::metrics::error::DriverError;
use crate::metrics::keys::IdentifierMode;
use crate::metrics::value::{Value, Values};

/// The table (collection) name drivers use unless told otherwise.
pub const DEFAULT_TABLE: &str = "trifle_stats";

/// Opens the metrics-store driver a URL names and creates its schema (`setup`).
///
/// | URL | driver | feature |
/// |---|---|---|
/// | `memory:` | [`MemoryDriver`] | `metrics` |
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
/// [`DriverErrorKind::Rejected`](crate::metrics::DriverErrorKind::Rejected) for a malformed URL, an
/// invalid option, or a scheme whose driver this build does not include (the message names the
/// feature); [`DriverErrorKind::Connection`](crate::metrics::DriverErrorKind::Connection) when the
/// database cannot be reached.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let driver = accrue::metrics::connect_driver("memory:?mode=separated").await.unwrap();
/// assert_eq!(driver.description(), "MemoryDriver(S)");
/// assert!(accrue::metrics::connect_driver("ftp://example").await.is_err());
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
                        .map_err(|e: crate::metrics::keys::UnknownMode| {
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

    #[cfg_attr(
        not(any(
            feature = "sqlite",
            feature = "postgres",
            feature = "mysql",
            feature = "mongodb"
        )),
        allow(dead_code)
    )]
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
        let fields = update.fields.iter().filter(|(_, op)| applicable(op));
        match index.get(&update.row) {
            None => {
                index.insert(update.row.clone(), out.len());
                out.push(RowUpdate {
                    row: update.row.clone(),
                    fields: fields.cloned().collect(),
                });
            }
            Some(&i) => {
                let existing_fields = &mut out[i].fields;
                for (name, op) in fields {
                    match existing_fields.iter_mut().find(|(n, _)| n == name) {
                        Some((_, existing)) => merge_in_range(existing, op.clone()),
                        None => existing_fields.push((name.clone(), op.clone())),
                    }
                }
            }
        }
    }
    out
}

/// Whether an operation can change anything: an increment by a number that is not finite
/// (only a merge of increments whose sum overflowed makes one) would take any stored value out
/// of the range of `f64`, and such an increment leaves the stored value as it was.
#[cfg_attr(
    not(any(
        feature = "sqlite",
        feature = "postgres",
        feature = "mysql",
        feature = "redis",
        feature = "mongodb"
    )),
    allow(dead_code)
)]
pub(crate) fn applicable(op: &FieldOp) -> bool {
    match op {
        FieldOp::Inc(n) => n.as_f64().is_finite(),
        FieldOp::Set(_) => true,
    }
}

/// [`FieldOp::merge`], except that a later increment whose sum would leave the range of `f64`
/// is dropped, as a driver drops it when it reaches the stored value.
#[cfg_attr(
    not(any(
        feature = "postgres",
        feature = "mysql",
        feature = "redis",
        feature = "mongodb"
    )),
    allow(dead_code)
)]
fn merge_in_range(existing: &mut FieldOp, later: FieldOp) {
    let kept = existing.clone();
    existing.merge(later);
    let in_range = match existing {
        FieldOp::Inc(n) => n.as_f64().is_finite(),
        FieldOp::Set(v) => v.as_number().is_none_or(|n| n.as_f64().is_finite()),
    };
    if !in_range {
        *existing = kept;
    }
}

/// The value of `text` when it is a JSON number (by the JSON grammar) that `serde_json`'s
/// reader refuses: one beyond the range of `f64` (`1e400`, a 400-digit integer: valid JSON that
/// no `f64` holds) is `null`; a finite one near the end of the range (which the reader, not
/// exact there, can take for one beyond it) is its exact value. `None` for any other text.
#[cfg_attr(
    not(any(
        feature = "sqlite",
        feature = "postgres",
        feature = "mysql",
        feature = "redis"
    )),
    allow(dead_code)
)]
pub(crate) fn number_beyond_reader(text: &str) -> Option<Value> {
    let b = text.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return None;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    let f: f64 = text.parse().ok()?;
    Some(if f.is_finite() {
        Value::Float(f)
    } else {
        Value::Null
    })
}

/// A stored flat JSON object as values: empty when `text` is not a JSON object. A number
/// beyond the range of `f64` (valid JSON, which an older build could store) reads as `null`
/// instead of making the whole row unreadable.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql")),
    allow(dead_code)
)]
pub(crate) fn parse_object(text: &str) -> Values {
    let parsed = serde_json::from_str::<serde_json::Value>(text)
        .or_else(|_| serde_json::from_str(&readable_numbers(text)));
    match parsed {
        Ok(serde_json::Value::Object(map)) => {
            map.into_iter().map(|(k, v)| (k, Value::from(v))).collect()
        }
        _ => Values::new(),
    }
}

/// `text` with every number token outside strings that `serde_json`'s reader refuses replaced:
/// by `null` when it is beyond the range of `f64`, else by the shortest text of its value.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql")),
    allow(dead_code)
)]
fn readable_numbers(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut i, mut copied, mut in_string) = (0, 0, false);
    while i < b.len() {
        match b[i] {
            b'\\' if in_string => i += 2,
            b'"' => {
                in_string = !in_string;
                i += 1;
            }
            b'-' | b'0'..=b'9' if !in_string => {
                let start = i;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let token = &text[start..i];
                if serde_json::from_str::<serde_json::Number>(token).is_err()
                    && let Some(value) = number_beyond_reader(token)
                {
                    let readable = match value {
                        Value::Float(f) => serde_json::Number::from_f64(f)
                            .map(|n| n.to_string())
                            .filter(|n| serde_json::from_str::<serde_json::Number>(n).is_ok()),
                        _ => None,
                    };
                    out.push_str(&text[copied..start]);
                    out.push_str(readable.as_deref().unwrap_or("null"));
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Classifies an sqlx error: lost connections, timeouts, deadlocks and server shutdowns are
/// retryable ([`Connection`](crate::metrics::DriverErrorKind::Connection)); the rest is `Rejected`.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn sqlx_error(what: &str, e: sqlx::Error, retryable_codes: &[&str]) -> DriverError {
    use crate::metrics::error::DriverErrorKind;
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

    #[test]
    fn numbers_the_reader_refuses_are_recognised_by_the_json_grammar() {
        for huge in ["1e400", "-9e999", "1E+309", &"9".repeat(400), "0.5e400"] {
            assert_eq!(number_beyond_reader(huge), Some(Value::Null), "{huge}");
        }
        let max = format!("17976931348623157{}", "0".repeat(292));
        for (text, f) in [("1e308", 1e308), (max.as_str(), f64::MAX), ("-0.5", -0.5)] {
            assert_eq!(number_beyond_reader(text), Some(Value::Float(f)), "{text}");
        }
        for other in [
            "inf", "-inf", "NaN", "1e", "01e400", "+1e400", "1.e400", "1e400 ", "", "-", "x1",
        ] {
            assert_eq!(number_beyond_reader(other), None, "{other}");
        }
    }

    #[test]
    fn an_unrepresentable_number_reads_as_null_not_as_an_empty_row() {
        let got =
            parse_object(r#"{"x": 9e999, "y": 2, "s": "1e999 \" 1e999", "a": [-1e400, 1.5]}"#);
        assert_eq!(
            Value::Map(got).to_json(),
            serde_json::json!({"x": null, "y": 2, "s": "1e999 \" 1e999", "a": [null, 1.5]})
        );
        assert_eq!(parse_object(r#"{"x": 1e308}"#)["x"], Value::Float(1e308));
        // The reader is not exact near the end of the range: such a number reads exactly.
        let max = format!("17976931348623157{}", "0".repeat(292));
        let got = parse_object(&format!(r#"{{"x": {max}, "y": -{max}, "z": 9e999}}"#));
        assert_eq!(
            Value::Map(got).to_json(),
            serde_json::json!({"x": f64::MAX, "y": -f64::MAX, "z": null})
        );
        assert!(parse_object("invalid_json").is_empty());
        assert!(parse_object("[1]").is_empty());
    }

    #[test]
    fn coalescing_drops_increments_beyond_the_range_of_f64() {
        use crate::metrics::keys::RowId;
        use crate::metrics::value::Number;
        let row = RowId::new(
            "k",
            "1h".parse().unwrap(),
            "2025-01-15T10:00:00Z".parse().unwrap(),
        );
        let inc = |f: f64| FieldOp::Inc(Number::Float(f));
        let update = |fields: Vec<(&str, FieldOp)>| RowUpdate {
            row: row.clone(),
            fields: fields
                .into_iter()
                .map(|(n, op)| (n.to_owned(), op))
                .collect(),
        };
        let rows = coalesce_rows(&[
            update(vec![
                ("x", inc(1e308)),
                ("y", inc(1.0)),
                ("z", inc(f64::INFINITY)),
            ]),
            update(vec![
                ("x", inc(1e308)),
                ("y", inc(1.0)),
                ("s", FieldOp::Set(Value::Float(1e308))),
            ]),
            update(vec![("s", inc(1e308))]),
        ]);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].fields,
            [
                ("x".to_owned(), inc(1e308)),
                ("y".to_owned(), inc(2.0)),
                ("s".to_owned(), FieldOp::Set(Value::Float(1e308))),
            ]
        );
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
