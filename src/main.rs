//! The `accrue` binary. The `serve` command arrives with the HTTP collector.

fn main() {
    eprintln!("accrue: no commands yet (the `serve` command arrives with the HTTP collector)");
    std::process::exit(2);
}
