//! The `accrue` binary's command line: help, configuration errors, exit codes.

use std::process::{Command, Output};

fn accrue(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_accrue"))
        .args(args)
        .env_remove("ACCRUE_DB")
        .env_remove("ACCRUE_PORT")
        .output()
        .unwrap()
}

#[test]
fn serve_help_lists_every_flag_with_its_environment_variable() {
    let out = accrue(&["serve", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, env) in [
        ("--db", "ACCRUE_DB"),
        ("--port", "ACCRUE_PORT"),
        ("--bind", "ACCRUE_BIND"),
        ("--flush", "ACCRUE_FLUSH"),
        ("--stats-driver", "ACCRUE_STATS_DRIVER"),
        ("--ack", "ACCRUE_ACK"),
        ("--synchronous", "ACCRUE_SYNCHRONOUS"),
        ("--retention", "ACCRUE_RETENTION"),
        ("--max-body-bytes", "ACCRUE_MAX_BODY_BYTES"),
        ("--max-events", "ACCRUE_MAX_EVENTS"),
        ("--max-key-bytes", "ACCRUE_MAX_KEY_BYTES"),
        ("--max-data-bytes", "ACCRUE_MAX_DATA_BYTES"),
        ("--max-data-depth", "ACCRUE_MAX_DATA_DEPTH"),
        ("--max-connections", "ACCRUE_MAX_CONNECTIONS"),
        ("--header-timeout", "ACCRUE_HEADER_TIMEOUT"),
        ("--body-timeout", "ACCRUE_BODY_TIMEOUT"),
        ("--commit-timeout", "ACCRUE_COMMIT_TIMEOUT"),
        ("--queue-events", "ACCRUE_QUEUE_EVENTS"),
        ("--queue-bytes", "ACCRUE_QUEUE_BYTES"),
        ("--commit-window", "ACCRUE_COMMIT_WINDOW"),
        ("--shutdown-timeout", "ACCRUE_SHUTDOWN_TIMEOUT"),
        ("--granularities", "ACCRUE_GRANULARITIES"),
        ("--time-zone", "ACCRUE_TIME_ZONE"),
        ("--week-start", "ACCRUE_WEEK_START"),
        ("--no-metrics", "ACCRUE_NO_METRICS"),
        ("--log", "ACCRUE_LOG"),
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
        assert!(
            help.contains(&format!("env: {env}")),
            "{env} missing from --help"
        );
    }
    assert!(help.contains("[default: ./accrue.db]"));
    assert!(help.contains("[default: 8081]"));
    assert!(help.contains("[default: 5s]"));
}

// With the `postgres` feature the driver is built: `stats_serve_drivers.rs` covers it.
#[cfg(not(feature = "postgres"))]
#[test]
fn a_metrics_driver_that_is_not_built_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.db");
    let out = accrue(&[
        "serve",
        "--port",
        "0",
        "--db",
        db.to_str().unwrap(),
        "--stats-driver",
        "postgres://user:hunter2@127.0.0.1/test",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no `postgres` metrics-store driver in this build"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "a password was printed: {err}");
}

#[test]
fn bad_values_are_refused_before_anything_starts() {
    let out = accrue(&["serve", "--flush", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a duration"));
    let out = accrue(&["serve", "--ack", "sometimes"]);
    assert_eq!(out.status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.db");
    let out = accrue(&[
        "serve",
        "--port",
        "0",
        "--db",
        db.to_str().unwrap(),
        "--queue-events",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("one full request"));
    assert!(
        !db.exists(),
        "the database was created despite the bad setting"
    );
}

#[test]
fn a_taken_port_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.db");
    let out = accrue(&["serve", "--port", &port, "--db", db.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // The message, then the operating system's reason (the error's source), each once.
    let line = err
        .lines()
        .find(|l| l.starts_with("accrue: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(
        line.starts_with(&format!("accrue: cannot listen on 127.0.0.1:{port}: ")),
        "{err}"
    );
    assert_eq!(line.matches("127.0.0.1").count(), 1, "{err}");
    assert!(
        !db.exists(),
        "the database was created although the port was taken"
    );
}
