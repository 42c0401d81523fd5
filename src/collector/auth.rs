//! API keys: scoped bearer tokens, stored hashed, checked in constant time.
//!
//! * **Tokens.** A key the server creates is `accrue_<id>_<secret>`: a public 16-hex-digit id
//!   (listed, used to revoke) and 256 random bits of secret from the operating system's CSPRNG.
//!   The admin key is the operator's own string (at least [`MIN_ADMIN_KEY_LEN`] bytes), given
//!   through an environment variable or a file, never a command-line argument or a URL.
//! * **At rest.** Only the SHA-256 of a token is kept, in memory and in the `api_keys` table.
//!   A fast hash is the right tool here: the tokens carry 256 bits of entropy, so nobody can
//!   guess one from its hash however fast the hash is; slow password hashes (argon2, bcrypt)
//!   exist for low-entropy *passwords*, and on every request they would cost tens of
//!   milliseconds of CPU, a denial-of-service lever. (That is also why the admin key has a
//!   minimum length.)
//! * **Checking.** Every request with a token hashes it once and compares the hash with the
//!   stored one *and* with the admin key's hash using [`subtle`]'s constant-time equality, also
//!   when the id is unknown (against a dummy), so the time taken does not tell how much of a
//!   token matched or whether its id exists.
//! * **Scopes.** `read`, `write`, `delete` and `admin` (which includes the other three and the
//!   key management). A key may be limited to a key prefix, its namespace: it then only sees and
//!   touches event keys, live feeds and KV namespaces that start with it.
//! * **Revocation** removes the key from the in-memory table first — the next request with it is
//!   refused — and closes the live connections opened with it.
//!
//! With no admin key and no stored key the server is open, as Tlytics is.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;

/// The shortest admin key accepted: 32 bytes, e.g. 16 random bytes in hex.
pub(crate) const MIN_ADMIN_KEY_LEN: usize = 32;
/// Longest key prefix (namespace) of a scoped key; the event key limit.
pub(crate) const MAX_PREFIX_LEN: usize = 256;
/// What every created token starts with (it lets secret scanners recognise leaked keys).
const TOKEN_PREFIX: &str = "accrue_";
/// Hex digits of a key id.
const ID_HEX: usize = 16;
/// Hex digits of a key's secret (256 bits).
const SECRET_HEX: usize = 64;

/// A SHA-256 digest.
pub(crate) type Hash = [u8; 32];

/// Hashes a token.
pub(crate) fn hash_token(token: &str) -> Hash {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
pub(crate) static CT_COMPARISONS: AtomicU64 = AtomicU64::new(0);

/// Constant-time equality of two hashes (the only way hashes are compared).
fn hashes_equal(a: &Hash, b: &Hash) -> bool {
    #[cfg(test)]
    CT_COMPARISONS.fetch_add(1, Ordering::Relaxed);
    a[..].ct_eq(&b[..]).into()
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

/// A new token and its id: `accrue_<16 hex id>_<64 hex secret>`.
///
/// # Errors
///
/// The operating system's random source failed.
pub(crate) fn new_token() -> Result<(String, String), getrandom::Error> {
    let mut id = [0u8; ID_HEX / 2];
    let mut secret = [0u8; SECRET_HEX / 2];
    getrandom::fill(&mut id)?;
    getrandom::fill(&mut secret)?;
    let id = hex(&id);
    let token = format!("{TOKEN_PREFIX}{id}_{}", hex(&secret));
    Ok((id, token))
}

/// The id part of a token in the created format, if it has that shape.
fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, ID_HEX) && hex(secret, SECRET_HEX)).then_some(id)
}

/// One permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Scope {
    /// `/view`, `/v1/values`, range and latest queries, KV reads, live feeds, `/metrics`.
    Read,
    /// `POST /events`, `POST /batch`, KV writes.
    Write,
    /// Deleting events and KV values.
    Delete,
    /// Everything, and managing API keys.
    Admin,
}

impl Scope {
    pub(crate) const ALL: [Scope; 4] = [Self::Read, Self::Write, Self::Delete, Self::Admin];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Delete => "delete",
            Self::Admin => "admin",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of scopes.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Scopes(u8);

impl Scopes {
    pub(crate) fn of(list: &[Scope]) -> Self {
        Self(list.iter().fold(0, |acc, s| acc | s.bit()))
    }

    /// Whether `scope` is granted (`admin` grants everything).
    pub(crate) fn allows(self, scope: Scope) -> bool {
        self.0 & (scope.bit() | Scope::Admin.bit()) != 0
    }

    pub(crate) fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub(crate) fn list(self) -> Vec<Scope> {
        Scope::ALL
            .into_iter()
            .filter(|s| self.contains(*s))
            .collect()
    }

    /// `read,write` (the stored form).
    pub(crate) fn to_text(self) -> String {
        self.list()
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub(crate) fn from_text(s: &str) -> Option<Self> {
        let list: Option<Vec<Scope>> = s.split(',').map(Scope::parse).collect();
        list.filter(|l| !l.is_empty()).map(|l| Self::of(&l))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// A stored key, as kept in memory.
#[derive(Clone)]
pub(crate) struct StoredKey {
    pub(crate) id: Arc<str>,
    pub(crate) hash: Hash,
    pub(crate) scopes: Scopes,
    pub(crate) prefix: Option<Arc<str>>,
    pub(crate) label: Option<String>,
    pub(crate) created_ns: i64,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("id", &self.id)
            .field("scopes", &self.scopes)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Who {
    /// Authentication is off: everything is allowed.
    Open,
    /// A route that needs no key, on a server with keys.
    Anonymous,
    /// The admin key from the environment or a file.
    Admin,
    /// A stored key, by id.
    Key(Arc<str>),
}

/// The authenticated caller, in every request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub(crate) who: Who,
    pub(crate) scopes: Scopes,
    /// The key prefix this caller is limited to.
    pub(crate) namespace: Option<Arc<str>>,
}

impl Principal {
    pub(crate) fn open() -> Self {
        Self {
            who: Who::Open,
            scopes: Scopes::of(&[Scope::Admin]),
            namespace: None,
        }
    }

    /// Refuses an event key, KV namespace or feed prefix outside the caller's namespace.
    pub(crate) fn check_key(&self, key: &str) -> Result<(), ApiError> {
        match &self.namespace {
            Some(ns) if !key.starts_with(&**ns) => Err(forbidden(format!(
                "this API key is limited to keys starting with {ns:?}"
            ))),
            _ => Ok(()),
        }
    }

    /// The prefix a query over `prefix` may see: the narrower of the two, or `403` when they
    /// do not overlap.
    pub(crate) fn narrow(&self, prefix: &str) -> Result<String, ApiError> {
        match &self.namespace {
            None => Ok(prefix.to_owned()),
            Some(ns) if prefix.starts_with(&**ns) => Ok(prefix.to_owned()),
            Some(ns) if ns.starts_with(prefix) => Ok(ns.to_string()),
            Some(ns) => Err(forbidden(format!(
                "this API key is limited to keys starting with {ns:?}"
            ))),
        }
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// No key (liveness, readiness, the API description; unknown routes answer 404).
    Open,
    /// A key with this scope; a namespace limits what the handler lets it touch.
    Need(Scope),
    /// A key with this scope and no namespace (server-wide data such as `/metrics`).
    NeedUnlimited(Scope),
}

pub(crate) fn api_error(status: StatusCode, error: &'static str, detail: String) -> ApiError {
    ApiError {
        status,
        error,
        detail: Some(detail),
        index: None,
        retry_after: None,
    }
}

pub(crate) fn forbidden(detail: String) -> ApiError {
    api_error(StatusCode::FORBIDDEN, "Forbidden", detail)
}

/// Why a request was not authenticated (counted in `/metrics`; never logged with the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Missing,
    Malformed,
    Unknown,
    Scope,
}

/// The API keys of a server.
pub(crate) struct KeyRegistry {
    enabled: bool,
    admin: Option<Hash>,
    keys: RwLock<HashMap<Arc<str>, StoredKey>>,
    /// Revocation signals of the keys with open live connections.
    live: Mutex<HashMap<Arc<str>, CancellationToken>>,
    failures: [AtomicU64; 4],
}

impl fmt::Debug for KeyRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRegistry")
            .field("enabled", &self.enabled)
            .field("admin_key", &self.admin.map(|_| "<redacted>"))
            .field("keys", &self.keys.read().len())
            .finish_non_exhaustive()
    }
}

impl KeyRegistry {
    /// Authentication is on when there is an admin key or any stored key, and stays on for
    /// the life of the server even if every key is revoked (it fails closed).
    pub(crate) fn new(admin: Option<Hash>, stored: Vec<StoredKey>) -> Self {
        let enabled = admin.is_some() || !stored.is_empty();
        Self {
            enabled,
            admin,
            keys: RwLock::new(stored.into_iter().map(|k| (k.id.clone(), k)).collect()),
            live: Mutex::new(HashMap::new()),
            failures: Default::default(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    pub(crate) fn has_admin_key(&self) -> bool {
        self.admin.is_some()
    }

    /// The caller a token stands for, if any. Always does the same work: one SHA-256 and two
    /// constant-time comparisons.
    pub(crate) fn authenticate(&self, token: &str) -> Option<Principal> {
        const NO_HASH: Hash = [0; 32];
        let hash = hash_token(token);
        let admin = self.admin.as_ref();
        let is_admin = hashes_equal(&hash, admin.unwrap_or(&NO_HASH)) && admin.is_some();
        let keys = self.keys.read();
        let stored = token_id(token).and_then(|id| keys.get(id));
        let is_key = hashes_equal(&hash, stored.map_or(&NO_HASH, |k| &k.hash)) && stored.is_some();
        if is_admin {
            Some(Principal {
                who: Who::Admin,
                scopes: Scopes::of(&[Scope::Admin]),
                namespace: None,
            })
        } else if is_key {
            let k = stored?;
            Some(Principal {
                who: Who::Key(k.id.clone()),
                scopes: k.scopes,
                namespace: k.prefix.clone(),
            })
        } else {
            None
        }
    }

    /// Checks a request's `Authorization` header against what its route needs.
    pub(crate) fn check(
        &self,
        headers: &HeaderMap,
        need: Access,
    ) -> Result<Principal, Box<Response>> {
        if !self.enabled {
            return Ok(Principal::open());
        }
        let scope = match need {
            Access::Open => {
                return Ok(Principal {
                    who: Who::Anonymous,
                    scopes: Scopes::default(),
                    namespace: None,
                });
            }
            Access::Need(s) | Access::NeedUnlimited(s) => s,
        };
        let token = match bearer(headers) {
            Ok(t) => t,
            Err(f) => return Err(Box::new(self.refuse(f))),
        };
        let Some(p) = self.authenticate(token) else {
            return Err(Box::new(self.refuse(Failure::Unknown)));
        };
        if !p.scopes.allows(scope) {
            self.failures[Failure::Scope as usize].fetch_add(1, Ordering::Relaxed);
            return Err(Box::new(
                forbidden(format!("this API key lacks the `{}` scope", scope.as_str()))
                    .into_response(),
            ));
        }
        if matches!(need, Access::NeedUnlimited(_))
            && let Some(ns) = &p.namespace
        {
            self.failures[Failure::Scope as usize].fetch_add(1, Ordering::Relaxed);
            return Err(Box::new(
                forbidden(format!(
                    "server-wide data needs a key without a prefix; this one is limited to {ns:?}"
                ))
                .into_response(),
            ));
        }
        Ok(p)
    }

    fn refuse(&self, why: Failure) -> Response {
        self.failures[why as usize].fetch_add(1, Ordering::Relaxed);
        let detail = match why {
            Failure::Missing => "send an API key as `Authorization: Bearer <key>`",
            Failure::Malformed => "the Authorization header is not `Bearer <key>`",
            _ => "unknown or revoked API key",
        };
        let mut res =
            api_error(StatusCode::UNAUTHORIZED, "Unauthorized", detail.into()).into_response();
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"accrue\""),
        );
        res
    }

    /// Adds a key (after it was stored).
    pub(crate) fn insert(&self, key: StoredKey) {
        self.keys.write().insert(key.id.clone(), key);
    }

    /// Removes a key: from now on it is refused, and its live connections are closed.
    /// Returns whether it was there.
    pub(crate) fn revoke(&self, id: &str) -> bool {
        let removed = self.keys.write().remove(id).is_some();
        if let Some(signal) = self.live.lock().remove(id) {
            signal.cancel();
        }
        removed
    }

    /// The keys, oldest first.
    pub(crate) fn list(&self) -> Vec<StoredKey> {
        let mut all: Vec<StoredKey> = self.keys.read().values().cloned().collect();
        all.sort_by(|a, b| a.created_ns.cmp(&b.created_ns).then(a.id.cmp(&b.id)));
        all
    }

    /// A signal cancelled when `who`'s key is revoked (already cancelled if it is gone).
    pub(crate) fn revocation(&self, who: &Who) -> CancellationToken {
        let Who::Key(id) = who else {
            return CancellationToken::new();
        };
        let keys = self.keys.read();
        if !keys.contains_key(id) {
            let gone = CancellationToken::new();
            gone.cancel();
            return gone;
        }
        self.live.lock().entry(id.clone()).or_default().clone()
    }

    /// `/metrics` lines.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP accrue_auth_enabled Whether requests need an API key.\n\
             # TYPE accrue_auth_enabled gauge\naccrue_auth_enabled {}",
            u8::from(self.enabled)
        );
        let _ = writeln!(
            out,
            "# HELP accrue_api_keys Stored API keys (the admin key is not counted).\n\
             # TYPE accrue_api_keys gauge\naccrue_api_keys {}",
            self.keys.read().len()
        );
        let _ = writeln!(
            out,
            "# HELP accrue_auth_refused_total Requests refused by authentication.\n\
             # TYPE accrue_auth_refused_total counter"
        );
        for (reason, i) in [
            ("missing", Failure::Missing),
            ("malformed", Failure::Malformed),
            ("unknown", Failure::Unknown),
            ("scope", Failure::Scope),
        ] {
            let n = self.failures[i as usize].load(Ordering::Relaxed);
            let _ = writeln!(out, "accrue_auth_refused_total{{reason=\"{reason}\"}} {n}");
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Result<&str, Failure> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(Failure::Missing)?;
    if values.next().is_some() {
        return Err(Failure::Malformed);
    }
    let value = value.to_str().map_err(|_| Failure::Malformed)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(Failure::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Failure::Malformed);
    }
    Ok(token)
}

/// The API-key check of one route: what it needs, and the keys to check against.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    keys: Arc<KeyRegistry>,
    access: Access,
}

impl Guard {
    pub(crate) fn new(keys: Arc<KeyRegistry>, access: Access) -> Self {
        Self { keys, access }
    }
}

/// The middleware in front of every route's handler: checks the key against the route's
/// [`Access`] and hands the [`Principal`] to the handler.
pub(crate) async fn authorize(
    State(guard): State<Guard>,
    mut req: Request,
    next: Next,
) -> Response {
    match guard.keys.check(req.headers(), guard.access) {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(res) => *res,
    }
}

/// The admin key, hashed as soon as it is given; `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct AdminKey {
    pub(crate) hash: Hash,
    /// Why the key is not acceptable (checked when the server starts).
    pub(crate) invalid: Option<String>,
}

impl AdminKey {
    pub(crate) fn new(key: &str) -> Self {
        let invalid = if key.len() < MIN_ADMIN_KEY_LEN {
            Some(format!(
                "the admin key is {} bytes; it must be at least {MIN_ADMIN_KEY_LEN} \
                 (generate one with `accrue keys generate`)",
                key.len()
            ))
        } else if !key.bytes().all(|b| b.is_ascii_graphic()) {
            Some("the admin key must be printable ASCII without spaces".into())
        } else {
            None
        };
        Self {
            hash: hash_token(key),
            invalid,
        }
    }
}

impl fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(admin: &str, keys: &[(&str, &[Scope], Option<&str>)]) -> KeyRegistry {
        let stored = keys
            .iter()
            .map(|(token, scopes, prefix)| StoredKey {
                id: token_id(token).unwrap().into(),
                hash: hash_token(token),
                scopes: Scopes::of(scopes),
                prefix: prefix.map(Into::into),
                label: None,
                created_ns: 0,
            })
            .collect();
        KeyRegistry::new(Some(AdminKey::new(admin).hash), stored)
    }

    #[test]
    fn tokens_are_random_and_well_formed() {
        let (id, t) = new_token().unwrap();
        let (id2, t2) = new_token().unwrap();
        assert_ne!(t, t2);
        assert_ne!(id, id2);
        assert_eq!(token_id(&t), Some(id.as_str()));
        assert_eq!(t.len(), TOKEN_PREFIX.len() + ID_HEX + 1 + SECRET_HEX);
        for bad in [
            "",
            "accrue_",
            "accrue_abc_def",
            &t[..t.len() - 1],
            &t.replace('_', "-"),
        ] {
            assert_eq!(token_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_authentication_compares_in_constant_time_twice() {
        let admin = "a".repeat(40);
        let (_, t) = new_token().unwrap();
        let reg = registry(&admin, &[(&t, &[Scope::Read], None)]);
        let (_, unknown) = new_token().unwrap();
        // The stored key with its last secret digit changed: same id, wrong secret.
        let mut wrong = t.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        for (token, ok) in [
            (admin.as_str(), true),
            (t.as_str(), true),
            (unknown.as_str(), false),
            (wrong.as_str(), false),
            ("garbage", false),
        ] {
            let before = CT_COMPARISONS.load(Ordering::Relaxed);
            assert_eq!(reg.authenticate(token).is_some(), ok, "{token}");
            // Other tests run in parallel and may add to the counter, never remove from it.
            assert!(CT_COMPARISONS.load(Ordering::Relaxed) - before >= 2);
        }
    }

    #[test]
    fn hashes_differing_anywhere_are_unequal() {
        let a = hash_token("x");
        for i in 0..32 {
            let mut b = a;
            b[i] ^= 1;
            assert!(!hashes_equal(&a, &b), "byte {i}");
        }
        assert!(hashes_equal(&a, &hash_token("x")));
    }

    #[test]
    fn scopes_and_namespaces() {
        let s = Scopes::of(&[Scope::Read, Scope::Delete]);
        assert!(s.allows(Scope::Read) && s.allows(Scope::Delete));
        assert!(!s.allows(Scope::Write) && !s.allows(Scope::Admin));
        assert!(Scopes::of(&[Scope::Admin]).allows(Scope::Write));
        assert_eq!(s.to_text(), "read,delete");
        assert_eq!(Scopes::from_text("read,delete"), Some(s));
        assert_eq!(Scopes::from_text(""), None);
        assert_eq!(Scopes::from_text("read,root"), None);

        let p = Principal {
            who: Who::Key("k".into()),
            scopes: s,
            namespace: Some("app/".into()),
        };
        assert!(p.check_key("app/x").is_ok());
        assert!(p.check_key("other").is_err());
        assert_eq!(p.narrow("").unwrap(), "app/");
        assert_eq!(p.narrow("ap").unwrap(), "app/");
        assert_eq!(p.narrow("app/x").unwrap(), "app/x");
        assert!(p.narrow("b").is_err());
    }

    #[test]
    fn revocation_signals_live_connections_and_refuses_the_key() {
        let (_, t) = new_token().unwrap();
        let reg = registry(&"b".repeat(32), &[(&t, &[Scope::Read], None)]);
        let p = reg.authenticate(&t).unwrap();
        let signal = reg.revocation(&p.who);
        assert!(!signal.is_cancelled());
        assert!(reg.revoke(token_id(&t).unwrap()));
        assert!(signal.is_cancelled());
        assert!(reg.authenticate(&t).is_none());
        // A live connection that races with the revocation starts closed.
        assert!(reg.revocation(&p.who).is_cancelled());
        assert!(!reg.revoke(token_id(&t).unwrap()));
    }

    #[test]
    fn bearer_header_forms() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(bearer(&h("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(&h("bearer   abc ")), Ok("abc"));
        assert_eq!(bearer(&h("Basic abc")), Err(Failure::Malformed));
        assert_eq!(bearer(&h("Bearer")), Err(Failure::Malformed));
        assert_eq!(bearer(&HeaderMap::new()), Err(Failure::Missing));
        let mut two = h("Bearer a");
        two.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_eq!(bearer(&two), Err(Failure::Malformed));
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let admin = "s".repeat(40);
        let k = AdminKey::new(&admin);
        assert!(!format!("{k:?}").contains(&admin));
        assert!(!format!("{k:?}").contains(&hex(&k.hash)));
        let reg = registry(&admin, &[]);
        assert!(!format!("{reg:?}").contains(&hex(&k.hash)));
        assert!(AdminKey::new("short").invalid.is_some());
        assert!(AdminKey::new(&"x y".repeat(20)).invalid.is_some());
    }
}
