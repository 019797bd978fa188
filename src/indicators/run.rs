//! The engine's task: a spool reader like the sinks (its own cursor), so it sees every committed
//! reading exactly once per snapshot and never holds up ingestion while it keeps up. The values
//! it computes go back into the spool (the sinks store them with the readings' guarantees); once
//! durable they become visible: the latest per series for `GET /api/v1/indicators`, retained MQTT
//! topics, alert rules. State survives restarts as a snapshot (CBOR) written with the seq it
//! covers, then the cursor: after a crash, batches already in the snapshot are skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::indicators::catalog::Catalog;
use crate::indicators::engine::{Engine, EngineSettings, Snapshot, SnapshotRef};
use crate::indicators::value::IndicatorValue;
use crate::ingest::mqtt::now_ns;
use crate::pipeline::Batch;
use crate::registry::{Registry, RegistryHandle};
use crate::sink::SinkProgress;
use crate::spool::SpoolReader;

/// The latest value of every series, for the API.
#[derive(Debug, Default)]
pub struct LatestStore {
    by_series: RwLock<HashMap<String, IndicatorValue>>,
}

impl LatestStore {
    /// Keeps each value unless the store holds a later window of its series, and returns the
    /// values kept: what the retained topics and alert rules should see (a window emitted again
    /// after late data must not push an older window over a newer one on a retained topic).
    pub fn put(&self, values: Vec<IndicatorValue>) -> Vec<IndicatorValue> {
        let Ok(mut m) = self.by_series.write() else {
            return values;
        };
        let mut kept = Vec::with_capacity(values.len());
        for v in values {
            let key = v.series_key();
            match m.get(&key) {
                Some(old) if old.window_start_ns > v.window_start_ns => {}
                _ => {
                    m.insert(key, v.clone());
                    kept.push(v);
                }
            }
        }
        kept
    }

    /// The values `keep` accepts, sorted by series.
    pub fn select(&self, keep: impl Fn(&IndicatorValue) -> bool) -> Vec<IndicatorValue> {
        let Ok(m) = self.by_series.read() else {
            return Vec::new();
        };
        let mut v: Vec<IndicatorValue> = m.values().filter(|x| keep(x)).cloned().collect();
        v.sort_by_cached_key(IndicatorValue::series_key);
        v
    }

    pub fn len(&self) -> usize {
        self.by_series.read().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where values go once durable, besides the store (retained MQTT, alerts).
pub trait Outlet: Send + 'static {
    fn values(&mut self, values: &[IndicatorValue]);
    /// About once a minute: the registry and each sensor's newest device time (None: never
    /// heard from), for staleness rules.
    fn staleness(
        &mut self,
        _registry: &Registry,
        _last_seen: &dyn Fn(&str) -> Option<i64>,
        _now_ns: i64,
    ) {
    }
}

/// An outlet that keeps nothing (tests, benches).
pub struct NoOutlet;

impl Outlet for NoOutlet {
    fn values(&mut self, _values: &[IndicatorValue]) {}
}

/// How often staleness is checked.
const STALENESS_EVERY: Duration = Duration::from_secs(60);

/// The snapshot as stored.
#[derive(Deserialize)]
struct Stored {
    /// Every batch up to this seq is in the state.
    seq: u64,
    catalog_version: String,
    engine: Snapshot,
}

/// The same, written from borrowed state.
#[derive(Serialize)]
struct StoredRef<'a> {
    seq: u64,
    catalog_version: &'a str,
    engine: SnapshotRef<'a>,
}

fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join("indicators.state")
}

/// Loads the snapshot of a previous run (None: none, or unreadable — logged; the engine starts
/// empty and the windows open at the restart say so by their completeness).
pub fn load_snapshot(dir: &Path, catalog: &Catalog) -> Option<(u64, Snapshot)> {
    let path = snapshot_path(dir);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "indicator state unreadable; starting empty");
            return None;
        }
    };
    match ciborium::from_reader::<Stored, _>(std::io::BufReader::new(file)) {
        Ok(s) if s.catalog_version == catalog.version => Some((s.seq, s.engine)),
        Ok(s) => {
            tracing::warn!(was = %s.catalog_version, now = %catalog.version, "indicator catalog changed; its state starts empty");
            None
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "indicator state undecodable; starting empty");
            None
        }
    }
}

fn write_snapshot(dir: &Path, stored: &StoredRef<'_>) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join("indicators.state.tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    ciborium::into_writer(stored, &mut f).map_err(std::io::Error::other)?;
    f.flush()?;
    f.get_ref().sync_data()?;
    drop(f);
    std::fs::rename(&tmp, snapshot_path(dir))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The engine task's settings.
pub struct RunSettings {
    pub engine: EngineSettings,
    pub checkpoint_interval: Duration,
    pub spool_dir: PathBuf,
}

/// Values per spool record the engine appends.
const VALUES_PER_BATCH: usize = 5_000;

/// Runs the engine until the spool closes (drain) or `abort`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    catalog: Arc<Catalog>,
    settings: RunSettings,
    registry: RegistryHandle,
    mut reader: SpoolReader,
    progress: Arc<SinkProgress>,
    store: Arc<LatestStore>,
    mut outlet: impl Outlet,
    mut abort: watch::Receiver<bool>,
) {
    let mut in_force = registry.current();
    let mut engine = Engine::new(catalog.clone(), settings.engine.clone(), in_force.clone());
    let mut done_seq = reader.position();
    if let Some((seq, snap)) = load_snapshot(&settings.spool_dir, &catalog) {
        engine.restore(snap);
        done_seq = done_seq.max(seq);
        tracing::info!(seq, sensors = engine.sensors(), "indicator state restored");
    }
    let late = metrics::counter!("qala_indicator_late_readings_total");
    let reemitted = metrics::counter!("qala_indicator_reemitted_windows_total");
    let emitted = metrics::counter!("qala_indicator_values_total");
    let sensors = metrics::gauge!("qala_indicator_sensors");
    let mut last_counts = engine.counts();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checkpoint_at = tokio::time::Instant::now() + settings.checkpoint_interval;
    let mut read_seq = done_seq;
    let mut failures = 0u32;
    let mut backoff = None;
    let mut stale_at = tokio::time::Instant::now() + STALENESS_EVERY;
    loop {
        let mut closed = false;
        // Wait for data, a tick or the end; the read itself is never raced (a dropped read
        // would lose the reader's log).
        let data = tokio::select! {
            _ = reader.wait_for_data() => true,
            _ = tick.tick() => false,
            _ = abort.wait_for(|a| *a) => break,
        };
        if data {
            match reader.next_group(20_000, Duration::ZERO).await {
                Ok(Some(group)) => {
                    failures = 0;
                    let now = now_ns();
                    heavy(|| {
                        for b in &group {
                            read_seq = read_seq.max(b.seq);
                            if b.seq <= done_seq {
                                continue;
                            }
                            for r in &b.readings {
                                engine.add(r, now);
                            }
                        }
                    });
                }
                Ok(None) => closed = true,
                Err(e) => {
                    failures += 1;
                    tracing::error!(error = %e, "indicator engine cannot read the spool; retrying");
                    backoff = Some(Duration::from_millis(200 * u64::from(failures.min(25))));
                }
            }
        }
        if let Some(d) = backoff.take() {
            tokio::time::sleep(d).await;
        }
        // An import (or an edit) replaced the registry: coverage and roles follow it.
        let now_in_force = registry.current();
        if !Arc::ptr_eq(&now_in_force, &in_force) {
            engine.set_registry(now_in_force.clone());
            in_force = now_in_force;
        }
        // A day's close at 100,000 sensors takes ~2 s (benches/README.md): off the async workers.
        let values = heavy(|| engine.advance(now_ns()));
        if !values.is_empty() {
            emitted.increment(values.len() as u64);
            for chunk in values.chunks(VALUES_PER_BATCH) {
                let batch = Batch {
                    indicators: chunk.to_vec(),
                    ..Batch::default()
                };
                // Durable first, then visible.
                if reader.append(batch).await.is_err() {
                    tracing::warn!("spool closed: indicator values not stored");
                    return;
                }
            }
            let latest = store.put(values);
            outlet.values(&latest);
        }
        if tokio::time::Instant::now() >= stale_at {
            stale_at = tokio::time::Instant::now() + STALENESS_EVERY;
            outlet.staleness(&in_force, &|id| engine.last_seen(id), now_ns());
        }
        let c = engine.counts();
        late.increment(c.late_readings - last_counts.late_readings);
        reemitted.increment(c.reemitted_windows - last_counts.reemitted_windows);
        last_counts = c;
        sensors.set(engine.sensors() as f64);
        if closed || tokio::time::Instant::now() >= checkpoint_at {
            done_seq = done_seq.max(read_seq);
            if checkpoint(
                &engine,
                &catalog,
                &settings.spool_dir,
                done_seq,
                &mut reader,
            )
            .await
            {
                // The spool may now reclaim what the snapshot covers.
                progress.committed.store(done_seq, Ordering::Release);
            }
            checkpoint_at = tokio::time::Instant::now() + settings.checkpoint_interval;
        }
        if closed {
            break;
        }
    }
    progress.finished.store(true, Ordering::Release);
}

/// Runs CPU-heavy engine work where it does not starve the runtime's other tasks (ingest, acks,
/// sinks): `block_in_place` on the multi-threaded runtime, inline on a current-thread one.
fn heavy<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Writes the snapshot (covering `seq`), then moves the cursor to it.
async fn checkpoint(
    engine: &Engine,
    catalog: &Catalog,
    dir: &Path,
    seq: u64,
    reader: &mut SpoolReader,
) -> bool {
    let stored = StoredRef {
        seq,
        catalog_version: &catalog.version,
        engine: engine.snapshot(),
    };
    let started = std::time::Instant::now();
    // Written from the engine's own state, without a copy, off the async workers.
    if let Err(e) = heavy(|| write_snapshot(dir, &stored)) {
        tracing::warn!(error = %e, "indicator state not written; the cursor stays");
        return false;
    }
    metrics::histogram!("qala_indicator_checkpoint_seconds")
        .record(started.elapsed().as_secs_f64());
    match reader.commit_cursor(seq, true).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "indicator cursor not written");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::value::{Completeness, Scope};
    use crate::model::Sphere;

    fn v(start: i64, value: f64) -> IndicatorValue {
        IndicatorValue {
            indicator: "district_losses".into(),
            sphere: Sphere::HousingUtilities,
            scope: Scope::District,
            city: "talgar".into(),
            district: "north".into(),
            sensor_id: String::new(),
            component: "water".into(),
            window: "24h".into(),
            window_start_ns: start,
            window_end_ns: start + 1,
            value: Some(value),
            unit: "m³".into(),
            level: None,
            completeness: Completeness::new(1, 1, "meters"),
            reference: "r".into(),
            details: Vec::new(),
            computed_ns: 0,
        }
    }

    #[test]
    fn an_older_window_emitted_again_does_not_replace_the_latest() {
        let store = LatestStore::default();
        assert_eq!(store.put(vec![v(10, 1.0)]).len(), 1);
        assert_eq!(store.put(vec![v(20, 2.0)]).len(), 1);
        // Day 10 again (late data): kept out of the store and of the outlets.
        assert!(store.put(vec![v(10, 1.5)]).is_empty());
        // Day 20 again: replaces.
        assert_eq!(store.put(vec![v(20, 2.5)]).len(), 1);
        let all = store.select(|_| true);
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].window_start_ns, all[0].value), (20, Some(2.5)));
    }
}
