//! [`MongoDriver`]: one document per bucket, a batch written as one ordered bulk write of
//! pipeline upserts.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use mongodb::bson::{Bson, Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, IndexOptions, UpdateModifications, UpdateOneModel};
use mongodb::{Client, Collection, IndexModel, Namespace};

use super::connect::{DEFAULT_TABLE, coalesce_rows, validate_name};
use super::{Driver, DriverFuture, FieldOp, RowUpdate, WriteBatch};
use crate::metrics::error::{DriverError, DriverErrorKind};
use crate::metrics::keys::{IdentifierMode, RowId};
use crate::metrics::packer::encode_segment;
use crate::metrics::value::{Number, Value, Values};

/// The database used when neither the builder nor the URL names one.
const DEFAULT_DATABASE: &str = "accrue";

/// Rows per read query.
const ROWS_PER_READ: usize = 1_000;

/// Server error codes worth retrying: duplicate key (two nodes upserting the same new bucket
/// at once; the retry updates it), write conflicts, shutdowns, primary changes, timeouts,
/// network failures.
const RETRYABLE_CODES: &[i32] = &[
    6, 7, 50, 89, 91, 112, 189, 262, 9001, 10107, 11000, 11600, 11602, 13435, 13436,
];

/// The metrics-store driver for MongoDB (8.0+, or a compatible server with the `bulkWrite`
/// command and pipeline updates).
///
/// * Layout: one document per bucket in the collection (default
///   `trifle_stats`): the identity fields by [`IdentifierMode`] (Full `key`; Partial `key`,
///   `at` as a BSON date; Separated `key`, `granularity`, `at`), `data` as a **nested**
///   document (`meta.duration` is `data: {meta: {duration: …}}`; reads flatten it back), and
///   `expire_at` with [`expire_after`](MongoDriverBuilder::expire_after). [`setup`](Driver::setup)
///   creates the unique identity index (`{key: 1}`, `{key: 1, at: -1}`,
///   `{key: 1, granularity: 1, at: -1}`) and, with `expire_after`, the TTL index
///   `{expire_at: 1}` (`expireAfterSeconds: 0`).
/// * Field names: the default [`PathCodec::V1`](crate::metrics::PathCodec::V1) percent-encodes `.`
///   and `$` inside names, so stored names are always valid Mongo paths (a name `$cost` is
///   stored as `%24cost`, as Trifle's Go codec does). With the legacy codec, a path segment
///   Mongo cannot hold (empty, or starting with `$`) is stored percent-encoded the same way
///   and reads back encoded.
/// * Writes: **one ordered `bulkWrite` per batch** (one round trip) of one upsert per row.
///   Each update is a pipeline computed by the server: an increment adds to the stored value
///   when it is a number and replaces it otherwise (a string or a sub-document counts as 0,
///   never an error that would block the batch); integers are `Int64` and stay integers; an
///   increment whose sum would leave the range of `f64` leaves the stored value as it was.
/// * Batches are idempotent: without multi-document transactions, each document records the
///   highest batch seq applied per writer (`batches.<writer>`), and the update leaves the
///   document unchanged when it already has this batch. A retry after a partial or
///   unacknowledged bulk write therefore applies exactly the documents that are missing it.
///   (The map grows by one small entry per writer instance that touched the bucket.)
/// * Writer marks: `<collection>_writers` holds one `{_id: writer, seq}` document per writer,
///   raised with `$max` by the last operation of the same ordered bulk write, so only after
///   every document of the batch took it; [`applied`](Driver::applied) reads it. The server
///   runs a bulk write it received to its end whether or not the client is still there, so a
///   client killed mid-write leaves the batch either absent or stored with its mark. A batch
///   can be stored (in full or in part) above the mark when the bulk write failed partway
///   (a server error, a server crash) or was split into several commands by its size (over
///   100 000 rows or 48 MB) and the client died between them: re-sending it under the same
///   writer id with the same rows completes it exactly (the store's retry of a failed batch
///   does that); the same rows under another seq or writer id would be added twice to the
///   documents that have them.
/// * Reads: `find` with `$in` / `$or` of identities, 1 000 per query. A stored number that is
///   not a finite `f64` (an infinite double, a huge `Decimal128`) reads as `null`.
/// * Errors: network failures, server selection timeouts, shutdowns and duplicate-key races
///   are [`Connection`](crate::metrics::DriverErrorKind::Connection); a write that fails that way is
///   retried once before reporting.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use accrue::metrics::{Driver, IdentifierMode, MongoDriver};
///
/// let driver = MongoDriver::builder()
///     .database("metrics")
///     .collection("trifle_stats")
///     .mode(IdentifierMode::Separated)
///     .expire_after(Duration::from_secs(24 * 3600))
///     .connect("mongodb://127.0.0.1:27017/")
///     .await?;
/// driver.setup().await?;
/// assert_eq!(driver.description(), "MongoDriver(S)");
/// # Ok(()) }
/// ```
pub struct MongoDriver {
    client: Client,
    coll: Collection<Document>,
    namespace: Namespace,
    /// `<collection>_writers`: one `{_id: writer, seq}` mark per writer.
    writers: Collection<Document>,
    mode: IdentifierMode,
    expire_after: Option<Duration>,
}

/// Configures a [`MongoDriver`]; from [`MongoDriver::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `connect`"]
pub struct MongoDriverBuilder {
    database: Option<String>,
    collection: String,
    mode: IdentifierMode,
    expire_after: Option<Duration>,
}

impl MongoDriverBuilder {
    /// The database (default: the URL's, else `accrue`).
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = Some(name.into());
        self
    }

    /// The collection (default `trifle_stats`).
    pub fn collection(mut self, name: impl Into<String>) -> Self {
        self.collection = name.into();
        self
    }

    /// The identifier mode (default Full).
    pub fn mode(mut self, mode: IdentifierMode) -> Self {
        self.mode = mode;
        self
    }

    /// Expire each bucket's document this long after the bucket's start (a TTL index on
    /// `expire_at`; the server removes expired documents in the background).
    pub fn expire_after(mut self, ttl: Duration) -> Self {
        self.expire_after = Some(ttl);
        self
    }

    fn validate(&self) -> Result<(), DriverError> {
        validate_name("collection", &self.collection, 54)?;
        if let Some(db) = &self.database {
            validate_name("database", db, 63)?;
        }
        if self.expire_after.is_some_and(|d| d.as_secs() == 0) {
            return Err(DriverError::rejected(
                "expire_after must be at least 1 second",
            ));
        }
        Ok(())
    }

    /// Connects to `url` (`mongodb://[user:password@]host:27017/[database]`).
    ///
    /// # Errors
    ///
    /// [`Rejected`](crate::metrics::DriverErrorKind::Rejected) for invalid names (checked first) or
    /// URL; [`Connection`](crate::metrics::DriverErrorKind::Connection) when no server answers.
    pub async fn connect(self, url: &str) -> Result<MongoDriver, DriverError> {
        self.validate()?;
        let mut options = ClientOptions::parse(url)
            .await
            .map_err(|e| DriverError::rejected("MongoDB: invalid URL").with_source(e))?;
        options.app_name.get_or_insert_with(|| "accrue".into());
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(10));
        options
            .connect_timeout
            .get_or_insert(Duration::from_secs(10));
        let url_db = options.default_database.clone();
        let client = Client::with_options(options)
            .map_err(|e| DriverError::rejected("MongoDB: invalid options").with_source(e))?;
        let mut this = self;
        if this.database.is_none() {
            this.database = Some(url_db.unwrap_or_else(|| DEFAULT_DATABASE.into()));
            this.validate()?;
        }
        let driver = this.build(client)?;
        driver
            .client
            .database(&driver.namespace.db)
            .run_command(doc! {"ping": 1})
            .await
            .map_err(|e| mongo_error("MongoDB: cannot connect", e))?;
        Ok(driver)
    }

    /// A driver on an existing client.
    ///
    /// # Errors
    ///
    /// [`Rejected`](crate::metrics::DriverErrorKind::Rejected) for invalid names: letters, digits and
    /// `_` (not first); collection at most 54, database at most 63 characters.
    pub fn build(self, client: Client) -> Result<MongoDriver, DriverError> {
        self.validate()?;
        let db = self.database.unwrap_or_else(|| DEFAULT_DATABASE.into());
        let coll = client
            .database(&db)
            .collection::<Document>(&self.collection);
        let writers = client
            .database(&db)
            .collection::<Document>(&format!("{}_writers", self.collection));
        Ok(MongoDriver {
            namespace: coll.namespace(),
            coll,
            writers,
            client,
            mode: self.mode,
            expire_after: self.expire_after,
        })
    }
}

impl MongoDriver {
    /// A builder with the defaults: collection `trifle_stats`, Full mode, no expiry.
    pub fn builder() -> MongoDriverBuilder {
        MongoDriverBuilder {
            database: None,
            collection: DEFAULT_TABLE.into(),
            mode: IdentifierMode::Full,
            expire_after: None,
        }
    }

    /// The collection.
    pub fn collection(&self) -> &Collection<Document> {
        &self.coll
    }

    fn filter(&self, row: &RowId) -> Document {
        let at = mongodb::bson::DateTime::from_millis(row.at.as_millisecond());
        match self.mode {
            IdentifierMode::Full => doc! {
                "key": format!("{}::{}::{}", row.key, row.granularity, row.at.as_second()),
            },
            IdentifierMode::Partial => doc! {
                "key": format!("{}::{}", row.key, row.granularity),
                "at": at,
            },
            IdentifierMode::Separated => doc! {
                "key": &row.key,
                "granularity": row.granularity.to_string(),
                "at": at,
            },
        }
    }

    fn model(&self, batch: &WriteBatch, update: &RowUpdate) -> UpdateOneModel {
        let mark = format!("batches.{}", segment(&batch.id.writer));
        let seq = Bson::Int64(i64::try_from(batch.id.seq).unwrap_or(i64::MAX));
        let applied = doc! {"$gte": [{"$ifNull": [format!("${mark}"), 0_i64]}, seq.clone()]};
        let mut stages: Vec<Document> = Vec::new();
        let mut current = Document::new();
        let mut paths: Vec<String> = Vec::new();
        let mut fields: Vec<(String, &FieldOp)> = update
            .fields
            .iter()
            .map(|(name, op)| (format!("data.{}", mongo_path(name)), op))
            .collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, op) in fields {
            // One stage cannot set both `a` and `a.b`: start another (it sees the first).
            if paths.iter().any(|p| conflicts(p, &path)) {
                stages.push(doc! {"$set": std::mem::take(&mut current)});
                paths.clear();
            }
            let stored = format!("${path}");
            let new = match op {
                // A sum beyond the range of f64 (or NaN, which compares below every number)
                // keeps the stored value.
                FieldOp::Inc(n) => doc! {"$let": {
                    "vars": {"sum": {"$add": [
                        {"$cond": [{"$isNumber": &stored}, &stored, 0_i64]},
                        number_bson(*n),
                    ]}},
                    "in": {"$cond": [
                        {"$and": [
                            {"$gte": ["$$sum", -f64::MAX]},
                            {"$lte": ["$$sum", f64::MAX]},
                        ]},
                        "$$sum",
                        &stored,
                    ]},
                }},
                FieldOp::Set(v) => doc! {"$literal": to_bson(v)},
            };
            current.insert(
                path.clone(),
                doc! {"$cond": [applied.clone(), &stored, new]},
            );
            paths.push(path);
        }
        let mut last = current;
        last.insert(
            mark.clone(),
            doc! {"$max": [{"$ifNull": [format!("${mark}"), 0_i64]}, seq]},
        );
        if let Some(ttl) = self.expire_after {
            let at = update.row.at.as_millisecond();
            let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            last.insert(
                "expire_at",
                mongodb::bson::DateTime::from_millis(at.saturating_add(ms)),
            );
        }
        stages.push(doc! {"$set": last});
        UpdateOneModel::builder()
            .namespace(self.namespace.clone())
            .filter(self.filter(&update.row))
            .update(UpdateModifications::Pipeline(stages))
            .upsert(true)
            .build()
    }

    /// Raises the writer's mark in `<collection>_writers` to the batch's seq.
    fn mark_model(&self, batch: &WriteBatch) -> UpdateOneModel {
        let seq = Bson::Int64(i64::try_from(batch.id.seq).unwrap_or(i64::MAX));
        UpdateOneModel::builder()
            .namespace(self.writers.namespace())
            .filter(doc! {"_id": &batch.id.writer})
            .update(UpdateModifications::Document(doc! {"$max": {"seq": seq}}))
            .upsert(true)
            .build()
    }

    async fn write_once(&self, models: &[UpdateOneModel]) -> Result<(), DriverError> {
        self.client
            .bulk_write(models.to_vec())
            .ordered(true)
            .await
            .map_err(|e| mongo_error("MongoDB: batch write failed", e))?;
        Ok(())
    }

    /// The identity a read result is matched back by.
    fn ident(&self, row: &RowId) -> String {
        let f = self.filter(row);
        ident_of(&f)
    }
}

fn ident_of(doc: &Document) -> String {
    let mut out = String::new();
    for field in ["key", "granularity", "at"] {
        match doc.get(field) {
            Some(Bson::String(s)) => out.push_str(s),
            Some(Bson::DateTime(d)) => out.push_str(&d.timestamp_millis().to_string()),
            _ => {}
        }
        out.push('\u{1}');
    }
    out
}

/// Whether two dotted paths cannot be set in one `$set` stage.
fn conflicts(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short == long || (long.starts_with(short) && long.as_bytes()[short.len()] == b'.')
}

/// A stored field name as a Mongo path: segments that Mongo cannot hold (empty, leading `$`,
/// NUL) are percent-encoded (V1 names never have any).
fn mongo_path(name: &str) -> String {
    name.split('.').map(segment).collect::<Vec<_>>().join(".")
}

fn segment(s: &str) -> String {
    if s.is_empty() {
        "%".into()
    } else if s.starts_with('$') || s.contains('\0') || s.contains('.') {
        encode_segment(s)
    } else {
        s.to_owned()
    }
}

fn number_bson(n: Number) -> Bson {
    match n {
        Number::Int(i) => Bson::Int64(i),
        Number::Float(f) => Bson::Double(f),
    }
}

fn to_bson(v: &Value) -> Bson {
    match v {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Int(i) => Bson::Int64(*i),
        Value::Float(f) => Bson::Double(*f),
        Value::Str(s) => Bson::String(s.clone()),
        Value::Array(a) => Bson::Array(a.iter().map(to_bson).collect()),
        Value::Map(m) => Bson::Document(m.iter().map(|(k, v)| (k.clone(), to_bson(v))).collect()),
    }
}

fn from_bson(b: Bson) -> Value {
    match b {
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::Boolean(b) => Value::Bool(b),
        Bson::Int32(i) => Value::Int(i64::from(i)),
        Bson::Int64(i) => Value::Int(i),
        // Not finite (stored by another writer or an older build): no value can hold it.
        Bson::Double(f) if !f.is_finite() => Value::Null,
        Bson::Double(f) => Value::Float(f),
        Bson::Decimal128(d) => match d.to_string().parse::<f64>() {
            Ok(f) if f.is_finite() => Value::Float(f),
            Ok(_) => Value::Null,
            Err(_) => Value::Str(d.to_string()),
        },
        Bson::String(s) => Value::Str(s),
        Bson::Array(a) => Value::Array(a.into_iter().map(from_bson).collect()),
        Bson::Document(d) => Value::Map(d.into_iter().map(|(k, v)| (k, from_bson(v))).collect()),
        Bson::DateTime(d) => d.try_to_rfc3339_string().map_or(Value::Null, Value::Str),
        other => Value::Str(other.to_string()),
    }
}

/// Flattens the nested `data` document back into packed field names.
fn flatten(prefix: &str, doc: Document, out: &mut Values) {
    for (k, v) in doc {
        let name = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Bson::Document(d) => flatten(&name, d, out),
            other => {
                out.insert(name, from_bson(other));
            }
        }
    }
}

fn mongo_error(what: &str, e: mongodb::error::Error) -> DriverError {
    let retryable = e.contains_label("RetryableWriteError")
        || e.contains_label("TransientTransactionError")
        || match e.kind.as_ref() {
            ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::DnsResolve { .. } => true,
            ErrorKind::Command(c) => RETRYABLE_CODES.contains(&c.code),
            ErrorKind::BulkWrite(b) => {
                !b.write_concern_errors.is_empty()
                    || b.write_errors
                        .values()
                        .any(|w| RETRYABLE_CODES.contains(&w.code))
                    || b.write_errors.is_empty()
            }
            _ => false,
        };
    let kind = if retryable {
        DriverErrorKind::Connection
    } else {
        DriverErrorKind::Rejected
    };
    DriverError::new(kind, what.to_owned()).with_source(e)
}

impl Driver for MongoDriver {
    fn description(&self) -> String {
        format!("MongoDriver({})", self.mode.letter())
    }

    fn mode(&self) -> IdentifierMode {
        self.mode
    }

    fn setup(&self) -> DriverFuture<'_, ()> {
        Box::pin(async move {
            let keys = match self.mode {
                IdentifierMode::Full => doc! {"key": 1},
                IdentifierMode::Partial => doc! {"key": 1, "at": -1},
                IdentifierMode::Separated => doc! {"key": 1, "granularity": 1, "at": -1},
            };
            let mut indexes = vec![
                IndexModel::builder()
                    .keys(keys)
                    .options(IndexOptions::builder().unique(true).build())
                    .build(),
            ];
            if self.expire_after.is_some() {
                indexes.push(
                    IndexModel::builder()
                        .keys(doc! {"expire_at": 1})
                        .options(
                            IndexOptions::builder()
                                .expire_after(Duration::from_secs(0))
                                .build(),
                        )
                        .build(),
                );
            }
            self.coll
                .create_indexes(indexes)
                .await
                .map_err(|e| mongo_error("MongoDB: setup failed", e))?;
            Ok(())
        })
    }

    fn write<'a>(&'a self, batch: &'a WriteBatch) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            if batch.rows.is_empty() {
                return Ok(());
            }
            let mut rows = coalesce_rows(&batch.rows);
            rows.sort_by_cached_key(|u| self.ident(&u.row));
            let mut models: Vec<UpdateOneModel> =
                rows.iter().map(|u| self.model(batch, u)).collect();
            // Last in the ordered bulk write: the writer's mark moves only once every document
            // has the batch.
            models.push(self.mark_model(batch));
            match self.write_once(&models).await {
                Err(e) if e.is_retryable() => {
                    tracing::debug!(
                        error = &e as &dyn std::error::Error,
                        "MongoDB write failed, retrying once"
                    );
                    self.write_once(&models).await
                }
                r => r,
            }
        })
    }

    fn read<'a>(&'a self, rows: &'a [RowId]) -> DriverFuture<'a, Vec<Values>> {
        Box::pin(async move {
            use futures_util::TryStreamExt;
            let mut found: HashMap<String, Values> = HashMap::with_capacity(rows.len());
            for chunk in rows.chunks(ROWS_PER_READ) {
                let filter = match self.mode {
                    IdentifierMode::Full => {
                        let keys: Vec<Bson> = chunk
                            .iter()
                            .filter_map(|r| self.filter(r).get("key").cloned())
                            .collect();
                        doc! {"key": {"$in": keys}}
                    }
                    _ => {
                        let ors: Vec<Document> = chunk.iter().map(|r| self.filter(r)).collect();
                        doc! {"$or": ors}
                    }
                };
                let mut cursor = self
                    .coll
                    .find(filter)
                    .projection(doc! {"_id": 0, "key": 1, "granularity": 1, "at": 1, "data": 1})
                    .await
                    .map_err(|e| mongo_error("MongoDB: read failed", e))?;
                while let Some(mut d) = cursor
                    .try_next()
                    .await
                    .map_err(|e| mongo_error("MongoDB: read failed", e))?
                {
                    let id = ident_of(&d);
                    let mut values = Values::new();
                    if let Some(Bson::Document(data)) = d.remove("data") {
                        flatten("", data, &mut values);
                    }
                    found.insert(id, values);
                }
            }
            Ok(rows
                .iter()
                .map(|r| found.get(&self.ident(r)).cloned().unwrap_or_default())
                .collect())
        })
    }

    fn applied<'a>(&'a self, writer: &'a str) -> DriverFuture<'a, Option<u64>> {
        Box::pin(async move {
            let mark = self
                .writers
                .find_one(doc! {"_id": writer})
                .await
                .map_err(|e| mongo_error("MongoDB: reading a writer's mark failed", e))?;
            let Some(mark) = mark else { return Ok(None) };
            let seq = match mark.get("seq") {
                Some(Bson::Int64(n)) => Some(*n),
                Some(Bson::Int32(n)) => Some(i64::from(*n)),
                _ => None,
            };
            seq.map(|n| Some(u64::try_from(n).unwrap_or(0)))
                .ok_or_else(|| {
                    DriverError::new(
                        DriverErrorKind::Corrupt,
                        format!("MongoDB: the mark of writer {writer:?} holds no integer seq"),
                    )
                })
        })
    }
}

impl fmt::Debug for MongoDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoDriver")
            .field("namespace", &self.namespace.to_string())
            .field("mode", &self.mode)
            .field("expire_after", &self.expire_after)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_conflicts() {
        assert_eq!(mongo_path("meta.duration"), "meta.duration");
        assert_eq!(mongo_path("jobs.%24cost"), "jobs.%24cost");
        assert_eq!(mongo_path("jobs.$cost"), "jobs.%24cost");
        assert_eq!(mongo_path("a..b"), "a.%.b");
        assert!(conflicts("data.a", "data.a.b"));
        assert!(conflicts("data.a.b", "data.a"));
        assert!(!conflicts("data.a", "data.ab"));
        assert!(!conflicts("data.a.b", "data.a.c"));
    }
}
