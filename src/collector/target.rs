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
                "this build has no {name} metrics-store driver (it comes with the `{feature}` \
                 feature once that driver ships); use sqlite://PATH or leave --stats-driver unset \
                 to use the --db file"
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
    fn drivers_not_built_are_named() {
        for (url, scheme) in [
            ("postgres://u:secret@db/x", "postgres"),
            ("postgresql://db/x", "postgresql"),
            ("mysql://root@127.0.0.1/test", "mysql"),
            ("redis://127.0.0.1:6379/", "redis"),
            ("mongodb://127.0.0.1:27017/", "mongodb"),
        ] {
            match parse(url) {
                Err(CollectorError::DriverNotBuilt { scheme: s, hint }) => {
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
