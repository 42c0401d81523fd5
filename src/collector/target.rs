//! `--stats-driver`: where aggregated metrics go, as a URL.

use std::path::{Path, PathBuf};

use super::error::CollectorError;

/// A parsed `--stats-driver` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StatsTarget {
    /// An SQLite file (the default: the event store's own file).
    Sqlite(PathBuf),
    /// The in-memory driver: metrics live as long as the process (for tests and trials).
    Memory,
    /// A database server driver, opened with [`crate::metrics::connect_driver`]: the URL
    /// with its options (`table`, `mode`, `prefix`, `ttl`, `collection`).
    Remote {
        /// The full URL (may carry a password: never printed).
        url: String,
        /// `scheme://host[:port]`, for the logs.
        shown: String,
    },
}

impl StatsTarget {
    /// Parses `url`; `None` means the event store's file.
    ///
    /// # Errors
    ///
    /// [`CollectorError::DriverNotBuilt`] for a database this build has no driver for,
    /// [`CollectorError::Config`] for anything that is not such a URL.
    pub(crate) fn parse(url: Option<&str>, db: &Path) -> Result<Self, CollectorError> {
        let Some(url) = url else {
            return Ok(Self::Sqlite(db.to_path_buf()));
        };
        let (scheme, rest) = match url.split_once(':') {
            Some((s, r)) if !s.is_empty() => (s.to_ascii_lowercase(), r),
            _ => {
                return Err(CollectorError::Config(format!(
                    "--stats-driver {url:?} is not a URL; use sqlite://PATH, memory: or, with \
                     their drivers, postgres://, mysql://, redis://, mongodb://"
                )));
            }
        };
        let not_built = |name: &str, feature: &str| CollectorError::DriverNotBuilt {
            scheme: scheme.clone(),
            hint: format!(
                "this build has no {name} metrics-store driver: build with `--features {feature}` \
                 (or `--features full`), or use sqlite://PATH, or leave --stats-driver unset to \
                 use the --db file"
            ),
        };
        match scheme.as_str() {
            "sqlite" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(CollectorError::Config(
                        "sqlite:// needs a path, e.g. sqlite://./metrics.db or sqlite:///var/lib/accrue/metrics.db"
                            .into(),
                    ));
                }
                if path == ":memory:" {
                    return Ok(Self::Memory);
                }
                Ok(Self::Sqlite(PathBuf::from(path)))
            }
            "memory" if rest.is_empty() || rest == "//" => Ok(Self::Memory),
            // Server drivers: built ones open through `connect_driver`.
            "postgres" | "postgresql" if cfg!(feature = "postgres") => Ok(Self::remote(url)),
            "mysql" | "mariadb" if cfg!(feature = "mysql") => Ok(Self::remote(url)),
            "redis" | "rediss" if cfg!(feature = "redis") => Ok(Self::remote(url)),
            "mongodb" | "mongodb+srv" if cfg!(feature = "mongodb") => Ok(Self::remote(url)),
            "postgres" | "postgresql" => Err(not_built("PostgreSQL", "postgres")),
            "mysql" | "mariadb" => Err(not_built("MySQL/MariaDB", "mysql")),
            "redis" | "rediss" => Err(not_built("Redis", "redis")),
            "mongodb" | "mongodb+srv" => Err(not_built("MongoDB", "mongodb")),
            _ => Err(CollectorError::Config(format!(
                "--stats-driver scheme {scheme:?} is not one of sqlite, memory, postgres, mysql, \
                 redis, mongodb"
            ))),
        }
    }

    /// How the start-up log shows it (never the full URL of a remote database: it may carry a
    /// password).
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("sqlite {}", p.display()),
            Self::Memory => "memory".into(),
            Self::Remote { shown, .. } => shown.clone(),
        }
    }

    /// A server URL, with what the logs may show of it: `scheme://host[:port]`.
    fn remote(url: &str) -> Self {
        let (scheme, rest) = url.split_once("://").unwrap_or((url, ""));
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        Self::Remote {
            url: url.to_owned(),
            shown: format!("{scheme}://{host}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<StatsTarget, CollectorError> {
        StatsTarget::parse(Some(url), Path::new("events.db"))
    }

    #[test]
    fn sqlite_and_memory_urls() {
        assert_eq!(
            StatsTarget::parse(None, Path::new("./a.db")).unwrap(),
            StatsTarget::Sqlite("./a.db".into())
        );
        assert_eq!(
            parse("sqlite://m.db").unwrap(),
            StatsTarget::Sqlite("m.db".into())
        );
        assert_eq!(
            parse("sqlite:///var/lib/m.db").unwrap(),
            StatsTarget::Sqlite("/var/lib/m.db".into())
        );
        assert_eq!(
            parse("SQLite:m.db").unwrap(),
            StatsTarget::Sqlite("m.db".into())
        );
        assert_eq!(parse("sqlite::memory:").unwrap(), StatsTarget::Memory);
        assert_eq!(parse("memory:").unwrap(), StatsTarget::Memory);
        assert_eq!(parse("memory://").unwrap(), StatsTarget::Memory);
    }

    #[test]
    fn drivers_not_built_are_named_and_built_ones_open() {
        let built = |s: &str| match s {
            "postgres" | "postgresql" => cfg!(feature = "postgres"),
            "mysql" => cfg!(feature = "mysql"),
            "redis" => cfg!(feature = "redis"),
            _ => cfg!(feature = "mongodb"),
        };
        for (url, scheme) in [
            ("postgres://u:secret@db/x", "postgres"),
            ("postgresql://db/x", "postgresql"),
            ("mysql://root@127.0.0.1/test", "mysql"),
            ("redis://127.0.0.1:6379/", "redis"),
            ("mongodb://127.0.0.1:27017/", "mongodb"),
        ] {
            match parse(url) {
                Ok(StatsTarget::Remote { url: u, shown }) if built(scheme) => {
                    assert_eq!(u, url);
                    assert!(
                        !shown.contains("secret") && shown.starts_with(scheme),
                        "{shown}"
                    );
                }
                Err(CollectorError::DriverNotBuilt { scheme: s, hint }) if !built(scheme) => {
                    assert_eq!(s, scheme);
                    assert!(!hint.contains("secret"), "{hint}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn junk_is_a_config_error() {
        for url in [
            "metrics.db",
            "",
            "ftp://x",
            "sqlite://",
            "sqlite:",
            "memory:x",
        ] {
            assert!(
                matches!(parse(url), Err(CollectorError::Config(_))),
                "{url}: {:?}",
                parse(url)
            );
        }
    }
}
