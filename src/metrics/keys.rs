//! Storage identities: [`IdentifierMode`] and their key formats.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;

use crate::time::Granularity;

/// The metric key of the system row that counts writes per key.
pub const SYSTEM_KEY: &str = "__system__key__";
/// The tracking key counted for writes made with [`untracked`](crate::metrics::MetricsStore::untracked).
pub const UNTRACKED_KEY: &str = "__untracked__";
/// The separator of joined keys.
pub const SEPARATOR: &str = "::";

/// How a bucket's identity is laid out in storage. A driver constructor argument.
///
/// | mode | stored identity |
/// |---|---|
/// | `Full` (`J`) | one `key` column: `[prefix::]key::granularity::unix` |
/// | `Partial` (`P`) | `key` = `[prefix::]key::granularity`, plus an `at` column |
/// | `Separated` (`S`) | `key`, `granularity` and `at` columns |
///
/// Parses from `full` / `partial` / `separated` (any case); anything else is an error (Go maps
/// unknown names to `Full` silently, the Ruby gem raises).
///
/// ```
/// use accrue::metrics::IdentifierMode;
/// assert_eq!("FULL".parse::<IdentifierMode>().unwrap(), IdentifierMode::Full);
/// assert!("unknown".parse::<IdentifierMode>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IdentifierMode {
    /// Everything joined into one key (Go `JoinedFull`, Ruby `:full`).
    #[default]
    Full,
    /// Key and granularity joined, `at` separate (Go `JoinedPartial`, Ruby `:partial`).
    Partial,
    /// Key, granularity and `at` in separate columns (Go `JoinedSeparated`, Ruby `nil`).
    Separated,
}

impl IdentifierMode {
    /// Every mode.
    pub const ALL: [IdentifierMode; 3] = [Self::Full, Self::Partial, Self::Separated];

    /// The letter used in driver descriptions: `J`, `P`, `S`.
    pub fn letter(self) -> char {
        match self {
            Self::Full => 'J',
            Self::Partial => 'P',
            Self::Separated => 'S',
        }
    }
}

impl FromStr for IdentifierMode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Self::Full),
            "partial" => Ok(Self::Partial),
            "separated" => Ok(Self::Separated),
            _ => Err(UnknownMode(s.to_owned())),
        }
    }
}

/// An identifier mode name that is not `full`, `partial` or `separated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownMode(String);

impl fmt::Display for UnknownMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown identifier mode {:?}: use full, partial or separated",
            self.0
        )
    }
}

impl std::error::Error for UnknownMode {}

/// One bucket of one metric: the unit a driver stores a data map under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowId {
    /// The metric key (`event::logs`, or [`SYSTEM_KEY`]).
    pub key: String,
    /// The granularity.
    pub granularity: Granularity,
    /// The bucket start.
    pub at: Timestamp,
}

/// A row identity laid out for storage by an [`IdentifierMode`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Identity {
    /// `Full`: the joined key.
    Full {
        /// `[prefix::]key::granularity::unix`.
        key: String,
    },
    /// `Partial`: joined key and granularity, and the bucket start.
    Partial {
        /// `[prefix::]key::granularity`.
        key: String,
        /// The bucket start.
        at: Timestamp,
    },
    /// `Separated`: three parts.
    Separated {
        /// The metric key.
        key: String,
        /// The granularity string.
        granularity: String,
        /// The bucket start.
        at: Timestamp,
    },
}

impl RowId {
    /// A row identity.
    pub fn new(key: impl Into<String>, granularity: Granularity, at: Timestamp) -> Self {
        Self {
            key: key.into(),
            granularity,
            at,
        }
    }

    /// The storage identity in `mode`, with an optional key `prefix` (only Redis uses one) and
    /// the default separator `::`. Parts are joined without empty segments; `at` is written as
    /// integer Unix seconds in joined keys.
    ///
    /// ```
    /// use accrue::metrics::{IdentifierMode, Identity, RowId};
    ///
    /// let row = RowId::new("event", "1d".parse().unwrap(), "2025-01-15T10:00:00Z".parse().unwrap());
    /// assert_eq!(
    ///     row.identity(IdentifierMode::Full, Some("trfl")),
    ///     Identity::Full { key: "trfl::event::1d::1736935200".into() }
    /// );
    /// ```
    pub fn identity(&self, mode: IdentifierMode, prefix: Option<&str>) -> Identity {
        self.identity_with(mode, prefix, SEPARATOR)
    }

    /// [`identity`](Self::identity) with another separator.
    pub fn identity_with(&self, mode: IdentifierMode, prefix: Option<&str>, sep: &str) -> Identity {
        let gran = self.granularity.to_string();
        let mut joined = String::new();
        for part in [prefix.unwrap_or(""), &self.key, &gran] {
            if part.is_empty() {
                continue;
            }
            if !joined.is_empty() {
                joined.push_str(sep);
            }
            joined.push_str(part);
        }
        match mode {
            IdentifierMode::Full => {
                joined.push_str(sep);
                joined.push_str(&self.at.as_second().to_string());
                Identity::Full { key: joined }
            }
            IdentifierMode::Partial => Identity::Partial {
                key: joined,
                at: self.at,
            },
            IdentifierMode::Separated => Identity::Separated {
                key: self.key.clone(),
                granularity: gran,
                at: self.at,
            },
        }
    }
}

/// `at` as stored in SQL text columns: RFC 3339 UTC, whole seconds (`2025-01-15T10:00:00Z`).
pub fn at_text(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
