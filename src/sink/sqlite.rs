//! The embedded store: SQLite in WAL mode, one writer thread, one transaction per write.
//! A sensor is identified by (city, district, kind, sensor_id), as its series is in InfluxDB;
//! readings (when enabled) are keyed (sensor, metric, time_ns) so a redelivered message
//! overwrites itself; every dead letter goes to `dead_letters` with its raw bytes; indicator
//! values go to `indicators`, keyed by their series and window start, so a re-emission (late
//! data) replaces the earlier value.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::{ErrorClass, Sink, SinkError};
use crate::config::{SqliteSettings, SqliteSync};
use crate::model::{DeadLetter, Kind, SensorRef, TimeSource};
use crate::normalize::catalog;
use crate::pipeline::Batch;

/// Version of [`SCHEMA`], kept in `PRAGMA user_version`. Version 2 added `indicators`; a
/// version 1 database is upgraded in place (the new table is created beside the old ones).
pub const SCHEMA_VERSION: i64 = 2;
/// Versions [`open`] upgrades to [`SCHEMA_VERSION`] by creating what is missing.
const UPGRADABLE_VERSIONS: [i64; 1] = [1];

/// Tables, a view for people, and the canonical units, created if missing.
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS sensors (
    id            INTEGER PRIMARY KEY,
    city          TEXT NOT NULL,
    district      TEXT NOT NULL,
    kind          TEXT NOT NULL,
    sensor_id     TEXT NOT NULL,
    sphere        TEXT NOT NULL,
    first_seen_ns INTEGER NOT NULL,
    last_seen_ns  INTEGER NOT NULL,
    UNIQUE (city, district, kind, sensor_id)
);
CREATE TABLE IF NOT EXISTS readings (
    sensor  INTEGER NOT NULL REFERENCES sensors (id),
    metric  TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    value   REAL NOT NULL,
    -- 1: the device sent no time and the gateway's receive time stands in.
    receive_time INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sensor, metric, time_ns)
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
-- Indicator values: one row per series (city, sphere, indicator, scope, district, sensor_id,
-- component, window) and window start; a re-emission replaces the row unless it was computed
-- earlier than the row's. Empty strings for ids that do not apply; value NULL when invalid.
CREATE TABLE IF NOT EXISTS indicators (
    indicator             TEXT NOT NULL,
    sphere                TEXT NOT NULL,
    scope                 TEXT NOT NULL,
    city                  TEXT NOT NULL,
    district              TEXT NOT NULL,
    sensor_id             TEXT NOT NULL,
    component             TEXT NOT NULL,
    "window"              TEXT NOT NULL,
    window_start          INTEGER NOT NULL,
    window_end            INTEGER NOT NULL,
    value                 REAL,
    unit                  TEXT NOT NULL,
    level                 TEXT,
    completeness_have     INTEGER NOT NULL,
    completeness_expected INTEGER NOT NULL,
    completeness_unit     TEXT NOT NULL,
    reference             TEXT NOT NULL,
    details               TEXT NOT NULL,
    computed              INTEGER NOT NULL,
    PRIMARY KEY (city, sphere, indicator, scope, district, sensor_id, component, "window", window_start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS indicators_by_time
    ON indicators (city, sphere, indicator, window_start);
CREATE VIEW IF NOT EXISTS indicators_view AS
SELECT city, sphere, indicator, scope, district, sensor_id, component, "window",
       strftime('%Y-%m-%dT%H:%M:%SZ', window_start / 1e9, 'unixepoch') AS window_start_utc,
       strftime('%Y-%m-%dT%H:%M:%SZ', window_end / 1e9, 'unixepoch') AS window_end_utc,
       value, unit, level,
       completeness_have || '/' || completeness_expected || ' ' || completeness_unit AS completeness,
       reference, details, window_start, window_end, computed
FROM indicators;
CREATE VIEW IF NOT EXISTS readings_view AS
SELECT s.city, s.district, s.kind, s.sphere, s.sensor_id, r.metric, r.value, m.unit,
       strftime('%Y-%m-%dT%H:%M:%fZ', r.time_ns / 1e9, 'unixepoch') AS time_utc, r.time_ns,
       CASE r.receive_time WHEN 1 THEN 'receive' ELSE 'device' END AS time_source
FROM readings r
JOIN sensors s ON s.id = r.sensor
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
    // 64 MiB of page cache (the default is 2 MiB): the readings index is written all over, and
    // re-reading its pages from the OS cost a tenth of the writer's time at 100k readings/s.
    conn.pragma_update(None, "cache_size", -65_536)?;
    check_version(&conn, path)?;
    conn.execute_batch(SCHEMA)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
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

/// Refuses a database of another schema rather than writing into it.
fn check_version(conn: &Connection, path: &Path) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let has_tables: bool = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'readings'",
            [],
            |_| Ok(true),
        )
        .optional()?
        .unwrap_or(false);
    if version == SCHEMA_VERSION
        || (version == 0 && !has_tables)
        || UPGRADABLE_VERSIONS.contains(&version)
    {
        return Ok(());
    }
    Err(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
        Some(format!(
            "{} has schema version {version}, this Qala writes version {SCHEMA_VERSION}: move the file aside or point sqlite.path elsewhere",
            path.display()
        )),
    ))
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
        let conn = open(&settings.path, settings.synchronous).map_err(|e| {
            SinkError::new(
                ErrorClass::Config,
                format!("cannot open SQLite at {}: {e}", settings.path.display()),
            )
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

    /// Always, whether or not readings are kept (like dead letters): they are few and the
    /// API and dashboards read them.
    fn stores_indicators(&self) -> bool {
        true
    }

    async fn write(&mut self, batches: &[Arc<Batch>]) -> Result<Vec<DeadLetter>, SinkError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((batches.to_vec(), reply))
            .map_err(|_| SinkError::transient("the SQLite writer thread has stopped"))?;
        answer
            .await
            .map_err(|_| SinkError::transient("the SQLite writer thread dropped a write"))??;
        Ok(Vec::new())
    }
}

fn writer(mut conn: Connection, jobs: std_mpsc::Receiver<Job>, store_readings: bool) {
    let mut sensors = SensorIds::default();
    while let Ok((batches, reply)) = jobs.recv() {
        let result =
            write_group(&mut conn, &mut sensors, &batches, store_readings).map_err(|e| SinkError {
                retry_after: None,
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
        if result.is_err() {
            // The transaction rolled back: ids it created are gone.
            sensors.ids.clear();
        }
        let _ = reply.send(result);
    }
}

/// Row ids of the sensors this writer has seen, so a reading costs no lookup.
#[derive(Default)]
pub struct SensorIds {
    ids: HashMap<SensorRef, i64>,
}

/// One transaction: sensors seen (with first and last times), readings, dead letters.
pub fn write_group(
    conn: &mut Connection,
    sensors: &mut SensorIds,
    batches: &[Arc<Batch>],
    store_readings: bool,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        if store_readings {
            // Newest and oldest time per sensor in this group, to widen its seen range once.
            let mut seen: HashMap<i64, (i64, i64)> = HashMap::new();
            let mut upsert = tx.prepare_cached(
                "INSERT INTO sensors (city, district, kind, sensor_id, sphere, first_seen_ns, last_seen_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT (city, district, kind, sensor_id) DO UPDATE SET sphere = excluded.sphere
                 RETURNING id",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO readings (sensor, metric, time_ns, value, receive_time)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (sensor, metric, time_ns) DO UPDATE
                 SET value = excluded.value, receive_time = excluded.receive_time",
            )?;
            for r in batches.iter().flat_map(|b| b.readings.iter()) {
                let id = match sensors.ids.get(&r.sensor) {
                    Some(&id) => id,
                    None => {
                        let s = &r.sensor;
                        let id: i64 = upsert.query_row(
                            params![
                                s.city,
                                s.district,
                                s.kind.as_str(),
                                s.sensor_id,
                                s.kind.sphere().as_str(),
                                r.time_ns
                            ],
                            |row| row.get(0),
                        )?;
                        sensors.ids.insert(s.clone(), id);
                        id
                    }
                };
                let receive = r.time_source == TimeSource::Receive;
                for (def, v) in &r.values {
                    insert.execute(params![id, def.name, r.time_ns, v, receive])?;
                }
                let e = seen.entry(id).or_insert((r.time_ns, r.time_ns));
                e.0 = e.0.min(r.time_ns);
                e.1 = e.1.max(r.time_ns);
            }
            let mut widen = tx.prepare_cached(
                "UPDATE sensors SET first_seen_ns = min(first_seen_ns, ?2),
                                    last_seen_ns = max(last_seen_ns, ?3)
                 WHERE id = ?1",
            )?;
            for (id, (first, last)) in seen {
                widen.execute(params![id, first, last])?;
            }
        }
        write_indicators(&tx, batches)?;
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

/// Upserts the indicator values of `batches` into `indicators` (in the caller's transaction). A
/// value replaces the row of its series and window start unless that row was computed later
/// (an old emission read again after a restart must not undo a newer one).
fn write_indicators(
    tx: &rusqlite::Transaction<'_>,
    batches: &[Arc<Batch>],
) -> rusqlite::Result<()> {
    let mut values = batches.iter().flat_map(|b| b.indicators.iter()).peekable();
    if values.peek().is_none() {
        return Ok(());
    }
    let mut upsert = tx.prepare_cached(
        r#"INSERT INTO indicators (indicator, sphere, scope, city, district, sensor_id, component,
               "window", window_start, window_end, value, unit, level, completeness_have,
               completeness_expected, completeness_unit, reference, details, computed)
           VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
           ON CONFLICT (city, sphere, indicator, scope, district, sensor_id, component, "window", window_start)
           DO UPDATE SET window_end = excluded.window_end, value = excluded.value,
               unit = excluded.unit, level = excluded.level,
               completeness_have = excluded.completeness_have,
               completeness_expected = excluded.completeness_expected,
               completeness_unit = excluded.completeness_unit, reference = excluded.reference,
               details = excluded.details, computed = excluded.computed
           WHERE excluded.computed >= indicators.computed"#,
    )?;
    for v in values {
        upsert.execute(params![
            v.indicator,
            v.sphere.as_str(),
            v.scope.as_str(),
            v.city,
            v.district,
            v.sensor_id,
            v.component,
            v.window,
            v.window_start_ns,
            v.window_end_ns,
            v.number(),
            v.unit,
            v.level,
            v.completeness.have,
            v.completeness.expected,
            v.completeness.unit,
            v.reference,
            v.details_json().to_string(),
            v.computed_ns,
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::value::tests::aqi_daily;
    use crate::indicators::{Completeness, IndicatorValue};
    use crate::model::{DeadLetter, Reading, Reason, Rejection};

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
            indicators: vec![],
            acks: vec![],
        })
    }

    #[test]
    fn redelivery_overwrites_and_dead_letters_keep_raw_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open(&dir.path().join("sub/q.sqlite"), SqliteSync::Normal).expect("open");
        let mut ids = SensorIds::default();
        write_group(&mut conn, &mut ids, &[batch(1, 1.5)], true).expect("write");
        write_group(&mut conn, &mut ids, &[batch(2, 1.5)], true).expect("write again");
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
    fn same_sensor_id_of_two_kinds_is_two_sensors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open(&dir.path().join("q.sqlite"), SqliteSync::Normal).expect("open");
        let mut ids = SensorIds::default();
        let water = batch(1, 7.0);
        let mut heat = Batch {
            seq: 2,
            readings: water.readings.clone(),
            ..Batch::default()
        };
        heat.readings[0].sensor.kind = Kind::Heat;
        heat.readings[0].values =
            vec![(catalog::lookup(Kind::Heat, "energy").expect("energy"), 3.0)];
        write_group(&mut conn, &mut ids, &[water, Arc::new(heat)], true).expect("write");
        let rows: Vec<(String, String, f64)> = conn
            .prepare("SELECT kind, metric, value FROM readings_view WHERE sensor_id = 'w-1' ORDER BY kind")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            rows,
            vec![
                ("heat".to_string(), "energy".to_string(), 3.0),
                ("water".to_string(), "volume".to_string(), 7.0)
            ]
        );
        // A fresh writer (empty id cache) finds the same sensors again.
        let mut fresh = SensorIds::default();
        write_group(&mut conn, &mut fresh, &[batch(3, 8.0)], true).expect("write");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM sensors", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 2);
    }

    fn values(batch_values: Vec<IndicatorValue>) -> Arc<Batch> {
        Arc::new(Batch {
            indicators: batch_values,
            ..Batch::default()
        })
    }

    /// (value, level, completeness, details, computed) of one row.
    type Row = (Option<f64>, Option<String>, String, String, i64);

    /// The rows of the district's daily AQI.
    fn aqi_rows(conn: &Connection) -> Vec<Row> {
        conn.prepare(
            "SELECT value, level, completeness, details, computed FROM indicators_view
             WHERE city = 'almaty' AND indicator = 'us_aqi_daily' AND district = 'medeu'",
        )
        .expect("prepare")
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
    }

    #[test]
    fn a_re_emitted_indicator_value_replaces_the_earlier_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open(&dir.path().join("q.sqlite"), SqliteSync::Normal).expect("open");
        let mut ids = SensorIds::default();
        // First emission: invalid, 5 of 24 hours.
        let mut first = aqi_daily();
        first.value = None;
        first.level = None;
        first.completeness = Completeness::new(5, 24, "h");
        first.details.clear();
        first.computed_ns -= 1_000;
        // The same window of another district: its own row.
        let mut other = aqi_daily();
        other.district = "almaly".into();
        write_group(
            &mut conn,
            &mut ids,
            &[values(vec![first.clone(), other])],
            true,
        )
        .expect("write");
        assert_eq!(
            aqi_rows(&conn),
            vec![(None, None, "5/24 h".into(), "{}".into(), first.computed_ns)]
        );
        // Late data: the window is complete enough now, and the value replaces the row.
        let later = aqi_daily();
        write_group(&mut conn, &mut ids, &[values(vec![later.clone()])], true).expect("write");
        let want = vec![(
            Some(153.0),
            Some("unhealthy".to_string()),
            "18/24 h".to_string(),
            r#"{"dominant":"pm2_5","pm2_5":153.0}"#.to_string(),
            later.computed_ns,
        )];
        assert_eq!(aqi_rows(&conn), want);
        // The first emission read again (a replay after a restart) does not undo it.
        write_group(&mut conn, &mut ids, &[values(vec![first])], true).expect("write");
        assert_eq!(aqi_rows(&conn), want);
        let (n, start, end): (i64, String, String) = conn
            .query_row(
                "SELECT count(*), min(window_start_utc), min(window_end_utc) FROM indicators_view",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("count");
        assert_eq!(
            (n, start.as_str(), end.as_str()),
            (2, "2026-11-24T19:00:00Z", "2026-11-25T19:00:00Z")
        );
        // Queries by city, sphere, indicator and time use the index.
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT value FROM indicators WHERE city = 'almaty'
                 AND sphere = 'ecology' AND indicator = 'us_aqi_daily' AND window_start >= 0",
                [],
                |r| r.get(3),
            )
            .expect("plan");
        assert!(plan.contains("indicators_by_time"), "{plan}");
    }

    #[test]
    fn a_version_1_database_is_upgraded_with_the_indicators_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v1.sqlite");
        {
            let mut conn = open(&path, SqliteSync::Normal).expect("open");
            write_group(&mut conn, &mut SensorIds::default(), &[batch(1, 2.0)], true)
                .expect("write");
            conn.execute_batch(
                "DROP VIEW indicators_view; DROP TABLE indicators; PRAGMA user_version = 1;",
            )
            .expect("back to version 1");
        }
        let mut conn = open(&path, SqliteSync::Normal).expect("a version 1 database opens");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        write_group(
            &mut conn,
            &mut SensorIds::default(),
            &[values(vec![aqi_daily()])],
            true,
        )
        .expect("write");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM indicators", [], |r| r.get(0))
            .expect("count");
        let readings: i64 = conn
            .query_row("SELECT count(*) FROM readings", [], |r| r.get(0))
            .expect("count");
        assert_eq!((n, readings), (1, 1), "the readings of version 1 are kept");
    }

    #[test]
    fn a_database_of_another_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.sqlite");
        {
            let c = Connection::open(&path).expect("create");
            c.execute_batch(
                "CREATE TABLE readings (sensor_id TEXT, metric TEXT, time_ns INTEGER, value REAL);",
            )
            .expect("old schema");
        }
        let e = open(&path, SqliteSync::Normal)
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains("schema version 0") && e.contains("old.sqlite"),
            "{e}"
        );
    }

    #[test]
    fn dead_letters_are_kept_when_readings_are_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open(&dir.path().join("q.sqlite"), SqliteSync::Full).expect("open");
        let mut ids = SensorIds::default();
        write_group(&mut conn, &mut ids, &[batch(1, 2.0)], false).expect("write");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM readings", [], |r| r.get(0))
            .expect("q");
        let d: i64 = conn
            .query_row("SELECT count(*) FROM dead_letters", [], |r| r.get(0))
            .expect("q");
        assert_eq!((n, d), (0, 1));
    }
}
