//! The registry in SQLite: table `registry` (one row per device, keyed by sensor id) in the
//! gateway's database (`sqlite.path`, WAL mode, shared with the sink), and `registry_generation`,
//! one counter that triggers bump on every insert, update and delete of `registry` — by
//! `qala sensors import` or by hand with any SQLite client — so the gateway sees a change with one
//! cheap query and reloads.
//!
//! (The sink's own `sensors` table is something else: the series it has written, by city,
//! district, kind and id, with the first and last times stored.)

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{Registry, RegistryHandle, Role, SensorInfo};
use crate::config::SqliteSync;
use crate::model::Sphere;

/// Tables and triggers, created if missing.
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS registry (
    sensor_id           TEXT PRIMARY KEY,
    kind                TEXT NOT NULL,
    city                TEXT NOT NULL,
    district            TEXT NOT NULL,
    sphere              TEXT NOT NULL,
    expected_interval_s INTEGER NOT NULL,
    population          INTEGER,
    role                TEXT NOT NULL DEFAULT 'consumer',
    free_flow_speed     REAL,
    register_max        REAL,
    latitude            REAL,
    longitude           REAL,
    updated_ns          INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS registry_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT OR IGNORE INTO registry_generation (id, generation) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS registry_inserted AFTER INSERT ON registry
BEGIN UPDATE registry_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS registry_updated AFTER UPDATE ON registry
BEGIN UPDATE registry_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS registry_deleted AFTER DELETE ON registry
BEGIN UPDATE registry_generation SET generation = generation + 1 WHERE id = 1; END;
"#;

/// Why the registry could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("registry table, sensor {sensor_id:?}: {message}")]
    BadRow { sensor_id: String, message: String },
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> RegistryError + '_ {
    move |source| RegistryError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

/// Opens the gateway's database as the sink does ([`crate::sink::sqlite::open`]: WAL, schema,
/// version check) and adds the registry's tables.
pub fn open(path: &Path, sync: SqliteSync) -> Result<Connection, RegistryError> {
    let conn = crate::sink::sqlite::open(path, sync).map_err(sql_err(path))?;
    conn.execute_batch(SCHEMA).map_err(sql_err(path))?;
    Ok(conn)
}

/// Opens the database to read the registry (creating the tables if missing).
pub fn open_read(path: &Path) -> Result<Connection, RegistryError> {
    open(path, SqliteSync::Normal)
}

/// The table's generation: it changes whenever a row does.
pub fn generation(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT generation FROM registry_generation WHERE id = 1",
        [],
        |r| r.get(0),
    )
    .optional()
    .map(|g| g.unwrap_or(0))
}

/// Reads every device, with the generation, in one read transaction (a consistent snapshot).
pub fn load(conn: &Connection) -> Result<Registry, RegistryError> {
    let path = conn
        .path()
        .map(Path::new)
        .unwrap_or(Path::new("?"))
        .to_owned();
    let tx = conn.unchecked_transaction().map_err(sql_err(&path))?;
    let generation = generation(&tx).map_err(sql_err(&path))?;
    let sensors = read_all(&tx).map_err(|e| match e {
        ReadError::Sql(source) => sql_err(&path)(source),
        ReadError::Bad(sensor_id, message) => RegistryError::BadRow { sensor_id, message },
    })?;
    tx.finish().map_err(sql_err(&path))?;
    let mut registry = Registry::new(sensors);
    registry.generation = generation;
    Ok(registry)
}

enum ReadError {
    Sql(rusqlite::Error),
    Bad(String, String),
}

impl From<rusqlite::Error> for ReadError {
    fn from(e: rusqlite::Error) -> Self {
        ReadError::Sql(e)
    }
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    String,
    (Option<f64>, Option<f64>, Option<f64>, Option<f64>),
);

fn read_all(conn: &Connection) -> Result<Vec<SensorInfo>, ReadError> {
    let mut stmt = conn.prepare(
        "SELECT sensor_id, kind, city, district, sphere, expected_interval_s, population, role,
                free_flow_speed, register_max, latitude, longitude
         FROM registry",
    )?;
    let rows = stmt.query_map([], |r| -> rusqlite::Result<Row> {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            (r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?),
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, kind, city, district, sphere, interval_s, population, role, (ff, rm, lat, lon)) =
            row?;
        let bad = |m: String| ReadError::Bad(id.clone(), m);
        let sphere = parse_sphere(&sphere).ok_or_else(|| bad(format!("sphere {sphere:?}")))?;
        let role = Role::parse(&role).ok_or_else(|| bad(format!("role {role:?}")))?;
        let interval_s = u64::try_from(interval_s)
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| bad(format!("expected_interval_s {interval_s}")))?;
        let population = population
            .map(|p| u32::try_from(p).map_err(|_| bad(format!("population {p}"))))
            .transpose()?;
        out.push(SensorInfo {
            sensor_id: id,
            kind,
            city,
            district,
            sphere,
            expected_interval: Duration::from_secs(interval_s),
            population,
            role,
            free_flow_speed: ff,
            register_max: rm,
            latitude: lat,
            longitude: lon,
        });
    }
    Ok(out)
}

/// A sphere by its key (`housing_utilities`, ...).
pub fn parse_sphere(key: &str) -> Option<Sphere> {
    Sphere::ALL.into_iter().find(|s| s.as_str() == key)
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Devices in the file.
    pub imported: usize,
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Devices no longer in the table (`--replace` only).
    pub removed: usize,
    /// Devices of the file per sphere, every sphere listed.
    pub by_sphere: BTreeMap<Sphere, usize>,
    /// Devices in the table afterwards.
    pub total: usize,
}

impl std::fmt::Display for ImportSummary {
    /// `imported N devices: a new, u updated, c unchanged, r removed; T in the registry`, then
    /// one line per sphere.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "imported {} devices: {} new, {} updated, {} unchanged, {} removed; {} in the registry",
            self.imported, self.added, self.updated, self.unchanged, self.removed, self.total
        )?;
        writeln!(f, "by sphere:")?;
        for (sphere, n) in &self.by_sphere {
            writeln!(f, "  {:<18} {n:>7}", sphere.as_str())?;
        }
        Ok(())
    }
}

/// Writes the devices in one transaction: new ones inserted, changed ones updated, equal ones left
/// alone (so the generation moves only when something changed); with `replace`, devices not in
/// `sensors` are deleted.
pub fn save(
    conn: &mut Connection,
    sensors: &[SensorInfo],
    replace: bool,
    now_ns: i64,
) -> rusqlite::Result<ImportSummary> {
    let tx = conn.transaction()?;
    let existing: HashMap<String, SensorInfo> = match read_all(&tx) {
        Ok(v) => v.into_iter().map(|s| (s.sensor_id.clone(), s)).collect(),
        Err(ReadError::Sql(e)) => return Err(e),
        // A row edited by hand into something unreadable: it is overwritten (or deleted).
        Err(ReadError::Bad(..)) => HashMap::new(),
    };
    let mut summary = ImportSummary {
        imported: sensors.len(),
        by_sphere: Sphere::ALL.iter().map(|s| (*s, 0)).collect(),
        ..ImportSummary::default()
    };
    {
        let mut upsert = tx.prepare(
            "INSERT INTO registry (sensor_id, kind, city, district, sphere, expected_interval_s,
                                   population, role, free_flow_speed, register_max, latitude,
                                   longitude, updated_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (sensor_id) DO UPDATE SET
                kind = excluded.kind, city = excluded.city, district = excluded.district,
                sphere = excluded.sphere, expected_interval_s = excluded.expected_interval_s,
                population = excluded.population, role = excluded.role,
                free_flow_speed = excluded.free_flow_speed, register_max = excluded.register_max,
                latitude = excluded.latitude, longitude = excluded.longitude,
                updated_ns = excluded.updated_ns",
        )?;
        for s in sensors {
            *summary.by_sphere.entry(s.sphere).or_default() += 1;
            match existing.get(&s.sensor_id) {
                Some(old) if old == s => {
                    summary.unchanged += 1;
                    continue;
                }
                Some(_) => summary.updated += 1,
                None => summary.added += 1,
            }
            upsert.execute(params![
                s.sensor_id,
                s.kind,
                s.city,
                s.district,
                s.sphere.as_str(),
                s.expected_interval.as_secs() as i64,
                s.population,
                s.role.as_str(),
                s.free_flow_speed,
                s.register_max,
                s.latitude,
                s.longitude,
                now_ns
            ])?;
        }
        if replace {
            let keep: std::collections::HashSet<&str> =
                sensors.iter().map(|s| s.sensor_id.as_str()).collect();
            let mut delete = tx.prepare("DELETE FROM registry WHERE sensor_id = ?1")?;
            let mut ids: Vec<String> = tx
                .prepare("SELECT sensor_id FROM registry")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            ids.retain(|id| !keep.contains(id.as_str()));
            for id in &ids {
                delete.execute([id])?;
            }
            summary.removed = ids.len();
        }
    }
    summary.total = tx.query_row("SELECT count(*) FROM registry", [], |r| {
        r.get::<_, i64>(0).map(|n| n as usize)
    })?;
    tx.commit()?;
    Ok(summary)
}

/// Reloads the registry into `handle` whenever the table's generation moves, checking every
/// `every`; runs until the task is dropped. A table that cannot be read keeps the registry in
/// force (logged, and counted in `qala_registry_reload_errors_total`).
pub async fn run_reloader(
    path: std::path::PathBuf,
    handle: RegistryHandle,
    every: Duration,
    policy: super::Unregistered,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut conn: Option<Connection> = None;
    loop {
        tick.tick().await;
        let known = handle.current().generation();
        let p = path.clone();
        let taken = conn.take();
        let outcome = tokio::task::spawn_blocking(move || {
            let conn = match taken {
                Some(c) => c,
                None => open_read(&p)?,
            };
            let g = generation(&conn).map_err(sql_err(&p))?;
            let loaded = if g != known { Some(load(&conn)?) } else { None };
            Ok::<_, RegistryError>((conn, loaded))
        })
        .await;
        match outcome {
            Ok(Ok((c, loaded))) => {
                conn = Some(c);
                if let Some(r) = loaded {
                    tracing::info!(
                        devices = r.len(),
                        generation = r.generation(),
                        "device registry reloaded"
                    );
                    warn_if_refusing_all(&r, policy);
                    metrics::gauge!("qala_registry_devices").set(r.len() as f64);
                    handle.replace(r);
                }
            }
            Ok(Err(e)) => {
                metrics::counter!("qala_registry_reload_errors_total").increment(1);
                tracing::error!(error = %e, "cannot reload the device registry; the one loaded before stays in force");
            }
            Err(e) => {
                metrics::counter!("qala_registry_reload_errors_total").increment(1);
                tracing::error!(error = %e, "the registry reload task failed");
            }
        }
    }
}

/// With `dead_letter`, an empty registry refuses every reading: said loudly, at start and at
/// every reload that leaves it empty. The policy is still applied (nothing is lost: dead letters
/// keep the messages), because switching it off silently would store what the operator said to
/// refuse.
pub fn warn_if_refusing_all(registry: &Registry, policy: super::Unregistered) {
    if registry.is_empty() && policy == super::Unregistered::DeadLetter {
        tracing::warn!(
            "the device registry is empty and registry.unregistered = \"dead_letter\": every reading will be dead-lettered (reason unregistered) until devices are imported with `qala sensors import`"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::import::parse_csv;

    const CSV: &str = "\
id,kind,city,district,sphere,expected_interval,population,role,free_flow_speed,register_max,latitude,longitude
w-1,water,talgar,north,housing_utilities,1h,3,consumer,,100000,43.3,77.2
w-in,water,talgar,north,housing_utilities,15m,12000,district_input,,,,
det-1-l1,traffic,talgar,north,transport,5m,,,60,,,
cam-1,status,talgar,north,safety,10m,,,,,,
";

    #[test]
    fn import_then_load_gives_the_same_devices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.sqlite");
        let sensors = parse_csv(CSV.as_bytes()).expect("valid");
        let mut conn = open(&path, SqliteSync::Normal).expect("open");
        let s = save(&mut conn, &sensors, false, 1).expect("save");
        assert_eq!((s.imported, s.added, s.updated, s.unchanged), (4, 4, 0, 0));
        assert_eq!(s.by_sphere[&Sphere::HousingUtilities], 2);
        assert_eq!(s.by_sphere[&Sphere::Safety], 1);
        assert_eq!(s.by_sphere[&Sphere::Economy], 0);
        let loaded = Registry::load(&path).expect("load");
        assert_eq!(loaded.len(), 4);
        for want in &sensors {
            assert_eq!(loaded.get(&want.sensor_id).map(|a| &**a), Some(want));
        }
        let ids: Vec<&str> = loaded
            .sorted()
            .iter()
            .map(|s| s.sensor_id.as_str())
            .collect();
        assert_eq!(ids, ["cam-1", "det-1-l1", "w-1", "w-in"]);
        let g1 = loaded.generation();
        assert!(g1 > 0);

        // The same file again changes nothing, not even the generation.
        let again = save(&mut conn, &sensors, false, 2).expect("again");
        assert_eq!((again.added, again.updated, again.unchanged), (0, 0, 4));
        assert_eq!(generation(&conn).expect("g"), g1);

        // One device changed and one left out, with --replace: one update, one removal.
        let mut fewer = sensors[..3].to_vec();
        fewer[0].population = Some(4);
        let r = save(&mut conn, &fewer, true, 3).expect("replace");
        assert_eq!(
            (r.added, r.updated, r.unchanged, r.removed, r.total),
            (0, 1, 2, 1, 3)
        );
        let reloaded = Registry::load(&path).expect("load");
        assert!(reloaded.generation() > g1);
        assert!(reloaded.get("cam-1").is_none());
        assert_eq!(reloaded.get("w-1").and_then(|s| s.population), Some(4));
    }

    #[test]
    fn a_row_edited_by_hand_into_nonsense_is_named_at_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.sqlite");
        let mut conn = open(&path, SqliteSync::Normal).expect("open");
        save(
            &mut conn,
            &parse_csv(CSV.as_bytes()).expect("valid"),
            false,
            1,
        )
        .expect("save");
        conn.execute(
            "UPDATE registry SET sphere = 'space' WHERE sensor_id = 'w-1'",
            [],
        )
        .expect("edit");
        let e = Registry::load(&path).expect_err("refused").to_string();
        assert!(e.contains("\"w-1\"") && e.contains("space"), "{e}");
    }
}
