//! Your own destination: a `Sink` that appends each flush to a file as one write (one line
//! per key: `key<TAB>count`) and syncs it before acknowledging. The runner drives it from the
//! aggregator, one write per flush; the example adds from four threads, stops, and checks the
//! file holds exactly what was added.
//!
//! `cargo run --features sink --example custom_sink`

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use accrue::Aggregator;
use accrue::sink::{Flush, Runner, Sink, WriteError, Written};

struct LineFile {
    file: std::fs::File,
}

impl Sink<String, u64> for LineFile {
    async fn write(&mut self, flush: &Flush<String, u64>) -> Result<Written, WriteError> {
        let mut text = String::new();
        for (key, n) in flush.iter() {
            text.push_str(&format!("{key}\t{n}\n"));
        }
        // Blocking file I/O; a database client would await here instead.
        self.file
            .write_all(text.as_bytes())
            .map_err(WriteError::new)?;
        self.file.sync_data().map_err(WriteError::new)?;
        Ok(Written::all(flush.len()))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("accrue-custom-sink-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("counts.tsv");
    let file = std::fs::File::create(&path)?;

    let (agg, rx) = Aggregator::<String, u64>::builder()
        .flush_interval(Duration::from_millis(20))
        .spawn()?;
    let task = Runner::new(LineFile { file }).spawn_with_aggregator(&agg, rx);

    // Producers borrow the aggregator: the runner holds only a shutdown handle.
    std::thread::scope(|s| {
        for t in 0..4 {
            let agg = &agg;
            s.spawn(move || {
                for i in 0..50_000u64 {
                    agg.add_ref(&format!("route/{}", (i + t) % 8), 1)
                        .expect("running");
                }
            });
        }
    });
    println!("written so far: {:?}", task.progress());
    task.stop();
    let report = task.join().await;
    assert!(report.is_complete(), "{report:?}");

    let mut totals: HashMap<String, u64> = HashMap::new();
    for line in std::fs::read_to_string(&path)?.lines() {
        let (key, n) = line.split_once('\t').expect("key<TAB>count");
        *totals.entry(key.to_owned()).or_default() += n.parse::<u64>()?;
    }
    println!(
        "{} writes, {} lines; totals: {totals:?}",
        report.writes, report.items
    );
    assert_eq!(totals.len(), 8);
    assert!(totals.values().all(|n| *n == 25_000));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
