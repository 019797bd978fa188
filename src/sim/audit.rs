//! `--verify`: after a run, checks that every reading the simulator sent (minus the malformed
//! ones, which must be in the dead letter) is in the store exactly once — SQLite, or
//! VictoriaMetrics through its export API — and reads the gateway's lag and dedup counters.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::city::City;
use crate::telemetry::prom;

/// Where the gateway stored what the simulator sent.
#[derive(Debug, Clone)]
pub enum AuditTarget {
    Sqlite {
        path: PathBuf,
        gateway: Option<String>,
    },
    Victoria {
        url: String,
        gateway: Option<String>,
    },
}

impl AuditTarget {
    fn gateway(&self) -> Option<&str> {
        match self {
            AuditTarget::Sqlite { gateway, .. } | AuditTarget::Victoria { gateway, .. } => {
                gateway.as_deref()
            }
        }
    }
}

/// What the audit found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Audit {
    pub store: String,
    /// Valid readings sent (each device reading once, however many copies went out).
    pub expected: u64,
    /// Of those, found in the store.
    pub stored: u64,
    pub lost: u64,
    /// Readings stored more than once (VictoriaMetrics keeps repeats; SQLite cannot).
    pub duplicated: u64,
    /// Readings of this city in the store that the simulator did not send in this run.
    pub unexpected: u64,
    /// Gaps in devices' sequence numbers among what was stored (a lost reading in the middle).
    pub sequence_gaps: u64,
    pub malformed_sent: u64,
    /// Dead letters of this city's topics received since the run started (SQLite only).
    pub dead_lettered: Option<u64>,
    pub duplicates_sent: u64,
    /// Values in those duplicates: what the gateway's repeat counter should grow by.
    pub duplicate_values_sent: u64,
    /// The gateway's `qala_readings_duplicate_total` (values dropped as repeats, whole life).
    pub gateway_duplicate_values: Option<f64>,
    pub lag_p50_s: Option<f64>,
    pub lag_p95_s: Option<f64>,
    pub lag_p99_s: Option<f64>,
    /// A few lost readings, "sensor@time".
    pub lost_examples: Vec<String>,
    pub waited_s: f64,
    pub error: Option<String>,
}

/// Waits (up to a minute) for the store to hold every expected reading, then compares.
/// `since_ns`: when the run started (wall clock): dead letters before it belong to other runs.
pub async fn verify(city: &City, target: &AuditTarget, since_ns: i64) -> Audit {
    let index: HashMap<&str, u32> = city
        .sensor_ids
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i as u32))
        .collect();
    let expected: HashSet<(u32, i64)> = city
        .expected
        .iter()
        .map(|e| (e.sensor, e.time_ms))
        .collect();
    let started = Instant::now();
    let mut audit;
    let mut last_stored = u64::MAX;
    let mut stable_since = Instant::now();
    loop {
        audit = Audit {
            expected: expected.len() as u64,
            malformed_sent: city.total().malformed,
            duplicates_sent: city.total().duplicates,
            duplicate_values_sent: city.total().duplicate_values,
            ..Audit::default()
        };
        let found = match target {
            AuditTarget::Sqlite { path, .. } => {
                audit.store = format!("sqlite {}", path.display());
                read_sqlite(path.clone(), city.scenario.city.clone(), since_ns).await
            }
            AuditTarget::Victoria { url, .. } => {
                audit.store = format!("victoriametrics {url}");
                read_victoria(url, &city.scenario.city).await
            }
        };
        match found {
            Ok(f) => compare(city, &index, &expected, &f, &mut audit),
            Err(e) => audit.error = Some(e),
        }
        let complete = audit.lost == 0
            && audit
                .dead_lettered
                .is_none_or(|d| d >= audit.malformed_sent);
        if audit.stored != last_stored {
            last_stored = audit.stored;
            stable_since = Instant::now();
        }
        // Done when all is there, or nothing new arrived for 15 s, or a minute passed.
        if complete
            || stable_since.elapsed() > Duration::from_secs(15)
            || started.elapsed() > Duration::from_secs(60)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    audit.waited_s = started.elapsed().as_secs_f64();
    if let Some(g) = target.gateway() {
        if let Err(e) = read_gateway(g, &mut audit).await {
            audit.error.get_or_insert(e);
        }
    }
    audit
}

/// What the store holds of a city: (sensor id, time ms) → copies, and its dead letters.
struct Found {
    readings: HashMap<(String, i64), u32>,
    dead_letters: Option<u64>,
}

fn compare(
    city: &City,
    index: &HashMap<&str, u32>,
    expected: &HashSet<(u32, i64)>,
    f: &Found,
    a: &mut Audit,
) {
    let mut stored: HashSet<(u32, i64)> = HashSet::with_capacity(f.readings.len());
    for ((sensor, t), copies) in &f.readings {
        match index.get(sensor.as_str()) {
            Some(&i) if expected.contains(&(i, *t)) => {
                stored.insert((i, *t));
                if *copies > 1 {
                    a.duplicated += 1;
                }
            }
            _ => a.unexpected += 1,
        }
    }
    a.stored = stored.len() as u64;
    a.lost = a.expected - a.stored;
    a.dead_lettered = f.dead_letters;
    // Sequence numbers: per sensor, the stored seqs must run without gaps to the last stored.
    let mut seen: HashMap<u32, Vec<u32>> = HashMap::new();
    for e in &city.expected {
        if stored.contains(&(e.sensor, e.time_ms)) {
            seen.entry(e.sensor).or_default().push(e.seq);
        } else if a.lost_examples.len() < 10 {
            a.lost_examples.push(format!(
                "{}@{}",
                city.sensor_ids[e.sensor as usize], e.time_ms
            ));
        }
    }
    // A malformed message takes a seq too, so only gaps between stored valid ones that the
    // expected list also has count.
    let mut expected_seqs: HashMap<u32, HashSet<u32>> = HashMap::new();
    for e in &city.expected {
        expected_seqs.entry(e.sensor).or_default().insert(e.seq);
    }
    for (sensor, mut seqs) in seen {
        seqs.sort_unstable();
        if let (Some(&lo), Some(&hi)) = (seqs.first(), seqs.last()) {
            let want = expected_seqs
                .get(&sensor)
                .map_or(0, |s| s.iter().filter(|q| (lo..=hi).contains(*q)).count());
            a.sequence_gaps += (want - seqs.len()) as u64;
        }
    }
}

async fn read_sqlite(path: PathBuf, city: String, since_ns: i64) -> Result<Found, String> {
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let mut readings = HashMap::new();
        let mut st = conn
            .prepare(
                "SELECT s.sensor_id, r.time_ns FROM readings r JOIN sensors s ON s.id = r.sensor
                 WHERE s.city = ?1 GROUP BY r.sensor, r.time_ns",
            )
            .map_err(|e| e.to_string())?;
        let rows = st
            .query_map([&city], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(|e| e.to_string())?;
        for row in rows {
            let (s, t) = row.map_err(|e| e.to_string())?;
            *readings.entry((s, t.div_euclid(1_000_000))).or_insert(0) += 1;
        }
        let dead: i64 = conn
            .query_row(
                "SELECT count(*) FROM dead_letters
                 WHERE topic LIKE 'city/' || ?1 || '/%' AND received_ns >= ?2",
                rusqlite::params![&city, since_ns],
                |r| r.get(0),
            )
            .map_err(|e| e.to_string())?;
        Ok(Found {
            readings,
            dead_letters: Some(dead as u64),
        })
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn read_victoria(url: &str, city: &str) -> Result<Found, String> {
    #[derive(serde::Deserialize)]
    struct Line {
        metric: HashMap<String, String>,
        timestamps: Vec<i64>,
    }
    let client = reqwest::Client::new();
    let base = url.trim_end_matches('/');
    let _ = client
        .get(format!("{base}/internal/force_flush"))
        .send()
        .await;
    let body = client
        .get(format!("{base}/api/v1/export"))
        .query(&[
            ("match[]", format!("{{city=\"{city}\"}}")),
            ("start", "0".into()),
        ])
        .send()
        .await
        .map_err(|e| format!("VictoriaMetrics export: {e}"))?
        .text()
        .await
        .map_err(|e| format!("VictoriaMetrics export: {e}"))?;
    // (sensor, time) → the most copies in any one of its series.
    let mut readings: HashMap<(String, i64), u32> = HashMap::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let l: Line =
            serde_json::from_str(line).map_err(|e| format!("VictoriaMetrics export line: {e}"))?;
        let Some(sensor) = l.metric.get("sensor_id") else {
            continue;
        };
        let mut per: HashMap<i64, u32> = HashMap::new();
        for t in l.timestamps {
            *per.entry(t).or_insert(0) += 1;
        }
        for (t, n) in per {
            let e = readings.entry((sensor.clone(), t)).or_insert(0);
            *e = (*e).max(n);
        }
    }
    Ok(Found {
        readings,
        dead_letters: None,
    })
}

async fn read_gateway(url: &str, a: &mut Audit) -> Result<(), String> {
    let text = reqwest::get(format!("{}/metrics", url.trim_end_matches('/')))
        .await
        .map_err(|e| format!("gateway /metrics: {e}"))?
        .text()
        .await
        .map_err(|e| format!("gateway /metrics: {e}"))?;
    let samples = prom::parse(&text);
    a.gateway_duplicate_values = Some(prom::sum(&samples, "qala_readings_duplicate_total", &[]));
    a.lag_p50_s = prom::histogram_quantile(&samples, "qala_ingest_lag_seconds", 0.5);
    a.lag_p95_s = prom::histogram_quantile(&samples, "qala_ingest_lag_seconds", 0.95);
    a.lag_p99_s = prom::histogram_quantile(&samples, "qala_ingest_lag_seconds", 0.99);
    Ok(())
}

/// The audit, for people.
pub fn render(a: &Audit) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "Audit of {} (waited {:.1} s):", a.store, a.waited_s);
    let _ = writeln!(
        s,
        "  readings sent {}  stored {}  lost {}  duplicated {}  sequence gaps {}  not from this run {}",
        a.expected, a.stored, a.lost, a.duplicated, a.sequence_gaps, a.unexpected
    );
    let _ = writeln!(
        s,
        "  malformed sent {}  dead-lettered {}",
        a.malformed_sent,
        a.dead_lettered
            .map_or("– (not in this store)".into(), |d| d.to_string())
    );
    let _ = writeln!(
        s,
        "  duplicates sent {} ({} values)  gateway dropped repeats (values, since it started) {}",
        a.duplicates_sent,
        a.duplicate_values_sent,
        a.gateway_duplicate_values
            .map_or("–".into(), |d| d.to_string())
    );
    let ms = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.1} ms", v * 1000.0));
    let _ = writeln!(
        s,
        "  gateway lag p50 {}  p95 {}  p99 {}",
        ms(a.lag_p50_s),
        ms(a.lag_p95_s),
        ms(a.lag_p99_s)
    );
    if !a.lost_examples.is_empty() {
        let _ = writeln!(s, "  lost, for example: {}", a.lost_examples.join(", "));
    }
    if let Some(e) = &a.error {
        let _ = writeln!(s, "  audit error: {e}");
    }
    s
}
