//! The `accrue` command line: `accrue serve` runs the HTTP event collector; `accrue keys`
//! manages its API keys. Its own crates (clap, tracing-subscriber, the admin client's hyper)
//! stay out of the `accrue` library.

mod args;
mod keys;

use std::error::Error;
use std::fmt;
use std::process::ExitCode;

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
    Serve(Box<args::Serve>),
    /// Manage the API keys of a running collector (through its admin routes).
    ///
    /// The admin key comes from the ACCRUE_ADMIN_KEY environment variable or from
    /// --admin-key-file, never from a command-line argument (it would be visible in `ps`).
    /// `accrue keys generate` prints a new random admin key.
    Keys(keys::Keys),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Keys(args) => keys::run(args),
    }
}

fn serve(args: args::Serve) -> ExitCode {
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
    let admin_key = match keys::admin_key(args.admin_key_file.as_deref()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("accrue: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        let builder = args.collector(admin_key.as_deref())?;
        builder.start().await?.run_until_signal().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = &e as &dyn Error, "the collector failed");
            eprintln!("accrue: {}", Chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, `message: cause: cause…` (an error's `Display` leaves its cause to
/// `source()`).
struct Chain<'a>(&'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
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
