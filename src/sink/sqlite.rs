//! The embedded store: SQLite in WAL mode, one writer thread, one transaction per write.
//! Readings (when enabled) go to `readings`, keyed (sensor_id, metric, time_ns) so a redelivered
//! message overwrites itself; every dead letter goes to `dead_letters` with its raw bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use super::{ErrorClass, Sink, SinkError};
use crate::config::{SqliteSettings, SqliteSync};
use crate::model::{Kind, SensorRef};
use crate::normalize::catalog;
use crate::pipeline::Batch;

/// Tables, a view for people, and the canonical units, created if missing.
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS sensors (
    sensor_id     TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    sphere        TEXT NOT NULL,
    city          TEXT NOT NULL,
    district      TEXT NOT NULL,
    first_seen_ns INTEGER NOT NULL,
    last_seen_ns  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS readings (
    sensor_id TEXT NOT NULL,
    metric    TEXT NOT NULL,
    time_ns   INTEGER NOT NULL,
    value     REAL NOT NULL,
    PRIMARY KEY (sensor_id, metric, time_ns)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS metrics (
    kind   TEXT NOT NULL,
    metric TEXT NOT NULL,
    unit   TEXT NOT NULL,
    PRIMARY KEY (kind, metric)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ns INTEGER NOT NULL,
    topic       TEXT NOT NULL,
    payload     BLOB NOT NULL,
    reason      TEXT NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_reason ON dead_letters (reason, received_ns);
CREATE VIEW IF NOT EXISTS readings_view AS
SELECT s.city, s.district, s.kind, s.sphere, r.sensor_id, r.metric, r.value, m.unit,
       strftime('%Y-%m-%dT%H:%M:%fZ', r.time_ns / 1e9, 'unixepoch') AS time_utc, r.time_ns
FROM readings r
JOIN sensors s USING (sensor_id)
LEFT JOIN metrics m ON m.kind = s.kind AND m.metric = r.metric;
"#;

/// Opens (creating) the database, sets WAL and the sync level, creates the schema.
pub fn open(path: &Path, sync: SqliteSync) -> rusqlite::Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("cannot create {}: {e}", dir.display())),
            )
        })?;
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "SQLite refused WAL mode");
    }
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            SqliteSync::Full => "FULL",
            SqliteSync::Normal => "NORMAL",
        },
    )?;
    conn.execute_batch(SCHEMA)?;
    {
        let mut ins = conn.prepare(
            "INSERT INTO metrics (kind, metric, unit) VALUES (?1, ?2, ?3)
             ON CONFLICT (kind, metric) DO UPDATE SET unit = excluded.unit",
        )?;
        for kind in Kind::ALL {
            for def in catalog::metrics_of(kind) {
                ins.execute(params![kind.as_str(), def.name, def.unit])?;
            }
        }
    }
    Ok(conn)
}

type Job = (Vec<Arc<Batch>>, oneshot::Sender<Result<(), SinkError>>);

/// The SQLite sink: an async face over the writer thread.
pub struct SqliteSink {
    jobs: std_mpsc::SyncSender<Job>,
    store_readings: bool,
    batch_size: usize,
    path: PathBuf,
}

impl SqliteSink {
    /// Opens the database and starts the writer thread.
    pub fn start(settings: &SqliteSettings) -> Result<SqliteSink, SinkError> {
        let conn = open(&settings.path, settings.synchronous).map_err(|e| SinkError {
            class: ErrorClass::Config,
            message: format!("cannot open SQLite at {}: {e}", settings.path.display()),
        })?;
        // One job at a time: the sink task awaits each reply before sending the next.
        let (tx, rx) = std_mpsc::sync_channel::<Job>(1);
        let store_readings = settings.enabled;
        std::thread::Builder::new()
            .name("qala-sqlite".into())
            .spawn(move || writer(conn, rx, store_readings))
            .map_err(|e| SinkError::transient(format!("cannot start the SQLite writer: {e}")))?;
        Ok(SqliteSink {
            jobs: tx,
            store_readings,
            batch_size: settings.batch_size,
            path: settings.path.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Sink for SqliteSink {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn max_readings(&self) -> usize {
        self.batch_size
    }

    fn stores_readings(&self) -> bool {
        self.store_readings
    }

    async fn write(&mut self, batches: &[Arc<Batch>]) -> Result<(), SinkError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((batches.to_vec(), reply))
            .map_err(|_| SinkError::transient("the SQLite writer thread has stopped"))?;
        answer
            .await
            .map_err(|_| SinkError::transient("the SQLite writer thread dropped a write"))?
    }
}

fn writer(mut conn: Connection, jobs: std_mpsc::Receiver<Job>, store_readings: bool) {
    while let Ok((batches, reply)) = jobs.recv() {
        let result = write_group(&mut conn, &batches, store_readings).map_err(|e| SinkError {
            class: match e {
                rusqlite::Error::SqliteFailure(ref f, _)
                    if matches!(
                        f.code,
                        rusqlite::ErrorCode::DiskFull
                            | rusqlite::ErrorCode::DatabaseBusy
                            | rusqlite::ErrorCode::DatabaseLocked
                            | rusqlite::ErrorCode::SystemIoFailure
                    ) =>
                {
                    ErrorClass::Transient
                }
                _ => ErrorClass::Config,
            },
            message: format!("SQLite write failed: {e}"),
        });
        let _ = reply.send(result);
    }
}

/// One transaction: sensors seen, readings, dead letters.
pub fn write_group(
    conn: &mut Connection,
    batches: &[Arc<Batch>],
    store_readings: bool,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        if store_readings {
            let mut seen: HashMap<&str, (&SensorRef, i64)> = HashMap::new();
            let mut insert = tx.prepare_cached(
                "INSERT INTO readings (sensor_id, metric, time_ns, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (sensor_id, metric, time_ns) DO UPDATE SET value = excluded.value",
            )?;
            for r in batches.iter().flat_map(|b| b.readings.iter()) {
                for (def, v) in &r.values {
                    insert.execute(params![r.sensor.sensor_id, def.name, r.time_ns, v])?;
                }
                let e = seen
                    .entry(r.sensor.sensor_id.as_str())
                    .or_insert((&r.sensor, r.time_ns));
                e.1 = e.1.max(r.time_ns);
            }
            let mut upsert = tx.prepare_cached(
                "INSERT INTO sensors (sensor_id, kind, sphere, city, district, first_seen_ns, last_seen_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT (sensor_id) DO UPDATE SET
                   kind = excluded.kind, sphere = excluded.sphere, city = excluded.city,
                   district = excluded.district,
                   first_seen_ns = min(first_seen_ns, excluded.first_seen_ns),
                   last_seen_ns = max(last_seen_ns, excluded.last_seen_ns)",
            )?;
            for (id, (s, t)) in seen {
                upsert.execute(params![
                    id,
                    s.kind.as_str(),
                    s.kind.sphere().as_str(),
                    s.city,
                    s.district,
                    t
                ])?;
            }
        }
        let mut dead = tx.prepare_cached(
            "INSERT INTO dead_letters (received_ns, topic, payload, reason, message)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for d in batches.iter().flat_map(|b| b.dead_letters.iter()) {
            dead.execute(params![
                d.received_ns,
                d.topic,
                &d.payload[..],
                d.rejection.reason.as_str(),
                d.rejection.message
            ])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeadLetter, Reading, Reason, Rejection, TimeSource};

    fn batch(seq: u64, value: f64) -> Arc<Batch> {
        let sensor = SensorRef {
            city: "almaty".into(),
            district: "almaly".into(),
            kind: Kind::Water,
            sensor_id: "w-1".into(),
        };
        Arc::new(Batch {
            seq,
            readings: vec![Reading {
                sensor,
                time_ns: 1_700_000_000_000_000_000,
                time_source: TimeSource::Device,
                values: vec![(
                    catalog::lookup(Kind::Water, "volume").expect("volume"),
                    value,
                )],
            }],
            dead_letters: vec![DeadLetter {
                received_ns: 5,
                topic: "city/x".into(),
                payload: bytes::Bytes::from_static(b"\xffraw"),
                rejection: Rejection::new(Reason::BadTopic, "nope"),
            }],
            acks: vec![],
        })
    }

    #[test]
    fn redelivery_overwrites_and_dead_letters_keep_raw_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open(&dir.path().join("sub/q.sqlite"), SqliteSync::Normal).expect("open");
        write_group(&mut conn, &[batch(1, 1.5)], true).expect("write");
        write_group(&mut conn, &[batch(2, 1.5)], true).expect("write again");
        let (n, v, unit): (i64, f64, String) = conn
            .query_row(
                "SELECT count(*), max(value), max(unit) FROM readings_view WHERE sensor_id = 'w-1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("query");
        assert_eq!((n, v, unit.as_str()), (1, 1.5, "m³"));
        let time: String = conn
            .query_row("SELECT time_utc FROM readings_view", [], |r| r.get(0))
            .expect("time");
        assert_eq!(time, "2023-11-14T22:13:20.000Z");
        let raw: Vec<u8> = conn
            .query_row(
                "SELECT payload FROM dead_letters WHERE reason = 'bad_topic' LIMIT 1",
                [],
                |r| r.get(0),
            )
            .expect("dead letter");
        assert_eq!(raw, b"\xffraw");
        let dl: i64 = conn
            .query_row("SELECT count(*) FROM dead_letters", [], |r| r.get(0))
            .expect("count");
        assert_eq!(dl, 2, "each delivery of a bad message is kept");
    }

    #[test]
    fn dead_letters_are_kept_when_readings_are_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open(&dir.path().join("q.sqlite"), SqliteSync::Full).expect("open");
        write_group(&mut conn, &[batch(1, 2.0)], false).expect("write");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM readings", [], |r| r.get(0))
            .expect("q");
        let d: i64 = conn
            .query_row("SELECT count(*) FROM dead_letters", [], |r| r.get(0))
            .expect("q");
        assert_eq!((n, d), (0, 1));
    }
}
