//! Spool append + commit: records of a typical pipeline batch (N readings of 4 metrics, the
//! codec's real encoding) appended and group-committed with one fdatasync, in a temp dir on the
//! disk the tests use. Prints throughput (records and readings per second) and the commit
//! latency p50/p99 per group size.
//!
//!   cargo bench --bench spool
//!   cargo bench --bench spool -- --seconds 5 --dir /var/lib/qala
use std::time::{Duration, Instant};

use qala::model::{Kind, Reading, SensorRef, TimeSource};
use qala::normalize::catalog;
use qala::pipeline::Batch;
use qala::spool::{codec, log::Log};

fn batch(readings: usize) -> Batch {
    let def = |n| catalog::lookup(Kind::Air, n).expect("metric");
    Batch {
        readings: (0..readings)
            .map(|i| Reading {
                sensor: SensorRef {
                    city: "almaty".into(),
                    district: "bostandyk".into(),
                    kind: Kind::Air,
                    sensor_id: format!("st-{:04}", i % 1000),
                },
                time_ns: 1_795_168_800_000_000_000 + i as i64,
                time_source: TimeSource::Device,
                values: vec![
                    (def("pm2_5"), 12.5),
                    (def("pm10"), 20.1),
                    (def("no2"), 40.2),
                    (def("temperature"), -8.0),
                ],
            })
            .collect(),
        ..Batch::default()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let seconds: f64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(3.0);
    let base = arg("--dir").map(std::path::PathBuf::from);
    println!("spool append + commit, {seconds} s per case (one fdatasync per commit)");
    println!(
        "{:>9} {:>8} {:>10} {:>12} {:>14} {:>10} {:>10}",
        "readings/", "records/", "bytes/", "commits/s", "readings/s", "commit", "commit"
    );
    println!(
        "{:>9} {:>8} {:>10} {:>12} {:>14} {:>10} {:>10}",
        "record", "commit", "commit", "", "", "p50 ms", "p99 ms"
    );
    for (readings, per_commit) in [(1, 1), (1, 20), (20, 1), (20, 20), (100, 10), (1000, 1)] {
        let dir = match &base {
            Some(b) => tempfile::tempdir_in(b),
            None => tempfile::tempdir_in(std::env::current_dir().expect("cwd")),
        }
        .expect("temp dir");
        let (mut log, _) = Log::open(dir.path(), 64 << 20, 1).expect("open spool");
        let mut payload = Vec::new();
        codec::encode(&batch(readings), &mut payload);
        let mut latencies = Vec::new();
        let start = Instant::now();
        let mut records = 0u64;
        while start.elapsed() < Duration::from_secs_f64(seconds) {
            for _ in 0..per_commit {
                log.append(0, &payload).expect("append");
                records += 1;
            }
            let t = Instant::now();
            log.commit().expect("commit");
            latencies.push(t.elapsed());
            if log.bytes() > 256 << 20 {
                let done = log.committed();
                log.roll_if_written().expect("roll");
                log.reclaim(done).expect("reclaim");
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        latencies.sort();
        let pct = |p: f64| {
            latencies[((latencies.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
        };
        println!(
            "{:>9} {:>8} {:>10} {:>12.0} {:>14.0} {:>10.2} {:>10.2}",
            readings,
            per_commit,
            (payload.len() + qala::spool::log::HEADER) * per_commit,
            latencies.len() as f64 / elapsed,
            (records * readings as u64) as f64 / elapsed,
            pct(0.5),
            pct(0.99)
        );
    }
}
