//! The device registry end to end: `qala sensors import` into the gateway's SQLite, a gateway on
//! Mosquitto that loads it at start and reloads it when it changes, readings from registered and
//! unregistered devices (mosquitto_pub) under both policies, `GET /api/v1/sensors` (last seen =
//! the reading's time, staleness, filters) and the dead letters; and the simulator's registry CSV.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Registered: a water meter (1 h), a safety camera (health only, 10 min), a street light that
/// never reports (5 min).
const REGISTRY: &str = "\
id,kind,city,district,sphere,expected_interval,population,role,latitude,longitude
w-1,water,talgar,north,housing_utilities,1h,3,consumer,43.30,77.24
cam-1,status,talgar,north,safety,10m,,,,
lamp-1,status,talgar,south,infrastructure,5m,,,,
";

fn import(csv: &Path, config: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(qala_bin())
        .args(["sensors", "import"])
        .arg(csv)
        .arg("--config")
        .arg(config)
        .args(extra)
        .output()
        .expect("qala sensors import runs")
}

fn import_ok(csv: &Path, config: &Path, extra: &[&str]) -> String {
    let out = import(csv, config, extra);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "import failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Now, in whole seconds since the epoch.
fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// `secs` (whole seconds) plus 500 ms, as the API writes it.
fn rfc3339_half(secs: i64) -> String {
    let t = chrono::DateTime::from_timestamp(secs, 0).expect("in range");
    format!("{}.500Z", t.format("%Y-%m-%dT%H:%M:%S"))
}

/// The sensors of a listing by id: (registered, stale, last_seen).
fn by_id(listing: &serde_json::Value) -> Vec<(String, bool, Option<bool>, Option<String>)> {
    listing["sensors"]
        .as_array()
        .unwrap_or_else(|| panic!("no sensors array: {listing}"))
        .iter()
        .map(|s| {
            (
                s["sensor_id"].as_str().unwrap_or_default().to_owned(),
                s["registered"].as_bool().unwrap_or_default(),
                s["stale"].as_bool(),
                s["last_seen"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

struct Setup {
    mosq: Mosquitto,
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    config: std::path::PathBuf,
    sqlite: std::path::PathBuf,
    http: u16,
    toml: String,
}

fn setup(registry_section: &str) -> Setup {
    let mosq = Mosquitto::start();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_path_buf();
    let http = free_port();
    let mut cfg = QalaConfig::new(mosq.port, http, &dir);
    cfg.extra = registry_section.to_owned();
    let toml = cfg.toml();
    let sqlite = cfg.sqlite_path();
    let config = dir.join("import.toml");
    std::fs::write(&config, &toml).expect("config");
    Setup {
        mosq,
        _dir: tmp,
        dir,
        config,
        sqlite,
        http,
        toml,
    }
}

impl Setup {
    fn start_gateway(&self) -> Gateway {
        let before = self.mosq.subscription_count("city/#");
        let gw = Gateway::start(&self.toml, self.http, self.dir.join("gw"));
        self.mosq
            .wait_for_subscription("city/#", before, Duration::from_secs(10));
        gw
    }

    fn rows(&self, sensor_id: &str) -> i64 {
        sqlite_i64(
            &self.sqlite,
            &format!("SELECT count(*) FROM readings_view WHERE sensor_id = '{sensor_id}'"),
        )
    }
}

#[test]
fn accept_policy_lists_last_seen_staleness_and_strangers_and_reloads_an_import() {
    let s = setup("[registry]\nreload_interval = \"200ms\"\n");
    let csv = s.dir.join("registry.csv");
    std::fs::write(&csv, REGISTRY).expect("csv");
    let out = import_ok(&csv, &s.config, &[]);
    println!("{out}");
    assert!(
        out.contains(
            "imported 3 devices: 3 new, 0 updated, 0 unchanged, 0 removed; 3 in the registry"
        ),
        "{out}"
    );
    assert!(out.contains("safety                   1"), "{out}");
    let gw = s.start_gateway();

    // The meter 60 s ago (fresh: within 2 × 1 h); the camera 30 min ago (stale: beyond
    // 2 × 10 min); a stranger 10 s ago.
    let now = now_s();
    let (t_meter, t_cam, t_x) = (now - 60, now - 1800, now - 10);
    mosquitto_pub(
        s.mosq.port,
        "city/talgar/north/water/w-1",
        format!(r#"{{"ts":{}500,"volume":12.5}}"#, t_meter).as_bytes(),
        1,
    );
    mosquitto_pub(
        s.mosq.port,
        "city/talgar/north/status/cam-1",
        format!(
            r#"{{"ts":{}500,"battery":97,"rssi":-71,"uptime":86400,"online":true,"units":{{"rssi":"dBm"}}}}"#,
            t_cam
        )
        .as_bytes(),
        1,
    );
    mosquitto_pub(
        s.mosq.port,
        "city/talgar/east/gas/x-9",
        format!(r#"{{"ts":{}500,"volume":3.25}}"#, t_x).as_bytes(),
        1,
    );
    wait_until(
        "three sensors' readings stored",
        Duration::from_secs(20),
        || s.rows("w-1") == 1 && s.rows("cam-1") == 4 && s.rows("x-9") == 1,
    );

    let (status, all) = gw.get_json("/api/v1/sensors");
    assert_eq!(status, 200, "{all}");
    println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
    assert_eq!(
        by_id(&all),
        vec![
            ("cam-1".into(), true, Some(true), Some(rfc3339_half(t_cam))),
            ("lamp-1".into(), true, Some(true), None),
            ("w-1".into(), true, Some(false), Some(rfc3339_half(t_meter))),
            ("x-9".into(), false, None, Some(rfc3339_half(t_x))),
        ]
    );
    let n = |k: &str| all[k].as_u64();
    assert_eq!(
        (n("count"), n("registered"), n("stale"), n("unregistered")),
        (Some(4), Some(3), Some(2), Some(1))
    );
    let w1 = &all["sensors"][2];
    assert_eq!(w1["kind"], "water");
    assert_eq!(w1["sphere"], "housing_utilities");
    assert_eq!(w1["expected_interval_s"], 3600);
    assert_eq!(w1["population"], 3);
    assert_eq!(w1["latitude"], 43.30);
    let staleness = w1["staleness_s"].as_f64().expect("staleness");
    assert!((59.0..120.0).contains(&staleness), "{staleness}");
    let cam = &all["sensors"][0];
    assert_eq!(
        (cam["kind"].as_str(), cam["sphere"].as_str()),
        (Some("status"), Some("safety"))
    );
    let x = &all["sensors"][3];
    assert_eq!(
        (
            x["kind"].as_str(),
            x["district"].as_str(),
            x["sphere"].as_str()
        ),
        (Some("gas"), Some("east"), Some("housing_utilities"))
    );

    let ids = |q: &str| -> Vec<String> {
        let (status, l) = gw.get_json(&format!("/api/v1/sensors?{q}"));
        assert_eq!(status, 200, "{q}: {l}");
        by_id(&l).into_iter().map(|(id, ..)| id).collect()
    };
    assert_eq!(ids("stale=true"), ["cam-1", "lamp-1"]);
    assert_eq!(ids("stale=false"), ["w-1"]);
    assert_eq!(ids("sphere=safety"), ["cam-1"]);
    assert_eq!(ids("kind=status&district=south"), ["lamp-1"]);
    assert_eq!(ids("city=talgar&registered=false"), ["x-9"]);
    let (status, e) = gw.get_json("/api/v1/sensors?sphere=space");
    assert_eq!(status, 400);
    assert!(
        e["error"].as_str().is_some_and(|m| m.contains("space")),
        "{e}"
    );

    let m = gw.metrics();
    assert_eq!(
        prom_value(&m, "qala_unregistered_readings_total", &[]),
        Some(1.0)
    );
    assert_eq!(prom_value(&m, "qala_registry_devices", &[]), Some(3.0));

    // The stranger is registered while the gateway runs: it is picked up without a restart.
    let more = s.dir.join("more.csv");
    std::fs::write(
        &more,
        "id,kind,city,district,sphere,expected_interval\nx-9,gas,talgar,east,housing_utilities,1h\n",
    )
    .expect("csv");
    let out = import_ok(&more, &s.config, &[]);
    assert!(
        out.contains("1 new") && out.contains("4 in the registry"),
        "{out}"
    );
    wait_until(
        "the gateway reloads the registry",
        Duration::from_secs(10),
        || {
            let (_, l) = gw.get_json("/api/v1/sensors?registered=false");
            l["count"] == 0
        },
    );
    let (_, l) = gw.get_json("/api/v1/sensors?kind=gas");
    assert_eq!(
        by_id(&l),
        vec![("x-9".into(), true, Some(false), Some(rfc3339_half(t_x)))]
    );
    assert_eq!(
        prom_value(&gw.metrics(), "qala_registry_devices", &[]),
        Some(4.0)
    );
}

#[test]
fn dead_letter_policy_refuses_strangers_and_an_empty_registry_warns() {
    let s = setup("[registry]\nunregistered = \"dead_letter\"\nreload_interval = \"200ms\"\n");
    // Started before any import: everything would be refused, and the log says so.
    let gw = s.start_gateway();
    let log = std::fs::read_to_string(&gw.log_path).expect("log");
    assert!(
        log.contains("the device registry is empty and registry.unregistered = \"dead_letter\""),
        "{log}"
    );
    let now = now_s();
    mosquitto_pub(
        s.mosq.port,
        "city/talgar/north/water/w-1",
        format!(r#"{{"ts":{}500,"volume":1.5}}"#, now - 5).as_bytes(),
        1,
    );
    let unregistered = |sensor: &str| {
        sqlite_i64(
            &s.sqlite,
            &format!(
                "SELECT count(*) FROM dead_letters WHERE reason = 'unregistered' AND message LIKE '%\"{sensor}\"%'"
            ),
        )
    };
    wait_until(
        "w-1 dead-lettered as unregistered",
        Duration::from_secs(20),
        || unregistered("w-1") == 1,
    );
    assert_eq!(s.rows("w-1"), 0);

    // Imported: the meter's readings are taken, a stranger's are refused, in the same stream.
    let csv = s.dir.join("registry.csv");
    std::fs::write(&csv, REGISTRY).expect("csv");
    import_ok(&csv, &s.config, &[]);
    wait_until(
        "the gateway reloads the registry",
        Duration::from_secs(10),
        || prom_value(&gw.metrics(), "qala_registry_devices", &[]) == Some(3.0),
    );
    mosquitto_pub(
        s.mosq.port,
        "city/talgar/east/gas/x-9",
        format!(r#"{{"ts":{}500,"volume":3.25}}"#, now - 3).as_bytes(),
        1,
    );
    mosquitto_pub(
        s.mosq.port,
        "city/talgar/north/water/w-1",
        format!(r#"{{"ts":{}500,"volume":1.75}}"#, now - 2).as_bytes(),
        1,
    );
    wait_until(
        "w-1 stored and x-9 dead-lettered",
        Duration::from_secs(20),
        || s.rows("w-1") == 1 && unregistered("x-9") == 1,
    );
    assert_eq!(s.rows("x-9"), 0);
    let message: String = sqlite_open_readonly(&s.sqlite)
        .query_row(
            "SELECT message FROM dead_letters WHERE reason = 'unregistered' AND topic LIKE '%/x-9'",
            [],
            |r| r.get(0),
        )
        .expect("dead letter");
    assert_eq!(
        message,
        "sensor \"x-9\" is not in the device registry (registry.unregistered = \"dead_letter\"; add it with `qala sensors import`)"
    );
    let m = gw.metrics();
    assert_eq!(
        prom_value(
            &m,
            "qala_messages_rejected_total",
            &[("reason", "unregistered")]
        ),
        Some(2.0)
    );
    // Listed all the same: the stranger knocked.
    let (_, l) = gw.get_json("/api/v1/sensors?registered=false");
    assert_eq!(
        by_id(&l),
        vec![("x-9".into(), false, None, Some(rfc3339_half(now - 3)))]
    );
    let (_, l) = gw.get_json("/api/v1/sensors?sensor=w-1");
    assert!(
        l["error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown filter")),
        "{l}"
    );
    let (_, l) = gw.get_json("/api/v1/sensors?kind=water");
    assert_eq!(
        by_id(&l),
        vec![("w-1".into(), true, Some(false), Some(rfc3339_half(now - 2)))]
    );
}

#[test]
fn a_bad_file_is_refused_naming_row_and_column_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("q.toml");
    let db = dir.path().join("q.sqlite");
    std::fs::write(&config, format!("[sqlite]\npath = {db:?}\n")).expect("config");
    let csv = dir.path().join("bad.csv");
    std::fs::write(
        &csv,
        "id,kind,city,district,sphere,expected_interval,latitude,longitude\n\
         w-1,water,talgar,north,housing_utilities,1h,43.3,77.2\n\
         w-2,water,talgar,north,housing_utilitys,1h,,\n\
         w-1,gas,talgar,north,housing_utilities,1h,95,77.2\n",
    )
    .expect("csv");
    let out = import(&csv, &config, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    println!("{stderr}");
    for want in [
        "row 3, column sphere: \"housing_utilitys\" is not a sphere",
        "row 4, column latitude: 95 is out of range: -90 to 90 degrees",
        "row 4, column id: \"w-1\" is already on row 2: ids are unique",
    ] {
        assert!(stderr.contains(want), "{want}\n{stderr}");
    }
    assert!(!db.exists(), "nothing written for a refused file");
}

#[test]
fn the_simulated_town_registry_imports_with_devices_in_all_eight_spheres() {
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("town.csv");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("simulators/district-town.toml");
    let out = Command::new(qala_bin())
        .args(["simulate", "--scenario"])
        .arg(&scenario)
        .arg("--registry-csv")
        .arg(&csv)
        .output()
        .expect("qala simulate runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 800 water + 4 inputs, 400 heat + 4 inputs, 600 power, 200 gas, 20 detectors × 2 lanes,
    // 3 air stations, 40 + 10 + 30 + 5 + 5 status devices.
    assert_eq!(
        stdout.trim(),
        format!("wrote 2141 devices to {}", csv.display())
    );
    let text = std::fs::read_to_string(&csv).expect("csv");
    for line in [
        "water-north-input,water,talgar,north,housing_utilities,1h,600,district_input,,,,",
        "heat-east-input,heat,talgar,east,housing_utilities,1h,300,district_input,,,,",
        "w-center-00001,water,talgar,center,housing_utilities,1h,3,consumer,,100000,,",
        "det-center-0001-l2,traffic,talgar,center,transport,1m,,consumer,60,,,",
        "cam-center-0001,status,talgar,center,safety,5m,,consumer,,,,",
        "school-north-0001,status,talgar,north,social,5m,,consumer,,,,",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in the CSV");
    }

    let config = dir.path().join("q.toml");
    std::fs::write(
        &config,
        format!("[sqlite]\npath = {:?}\n", dir.path().join("q.sqlite")),
    )
    .expect("config");
    let summary = import_ok(&csv, &config, &[]);
    println!("{summary}");
    for (sphere, n) in [
        ("city_management", 5),
        ("safety", 40),
        ("transport", 40),
        ("social", 10),
        ("ecology", 3),
        ("housing_utilities", 2008),
        ("economy", 5),
        ("infrastructure", 30),
    ] {
        assert!(
            summary
                .lines()
                .any(|l| l.split_whitespace().eq([sphere, &n.to_string()])),
            "{sphere} {n}\n{summary}"
        );
    }
    // --replace with a shorter file removes the rest.
    let head: String = text.lines().take(11).map(|l| format!("{l}\n")).collect();
    let short = dir.path().join("short.csv");
    std::fs::write(&short, head).expect("csv");
    let summary = import_ok(&short, &config, &["--replace"]);
    assert!(
        summary.contains(
            "imported 10 devices: 0 new, 0 updated, 10 unchanged, 2131 removed; 10 in the registry"
        ),
        "{summary}"
    );
}
