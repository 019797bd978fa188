//! Every payload a city sends, through the routes of config/routes.example.toml: a ChirpStack
//! uplink, a Tasmota SENSOR message, a ThingsBoard array, line protocol and a plain value, each
//! published with Debian's mosquitto_pub to Mosquitto, land in VictoriaMetrics and SQLite with
//! the right metrics, canonical units and times.

mod common;

use std::time::Duration;

use common::*;

/// 2026-11-20T10:00:00Z
const T10_MS: i64 = 1_795_168_800_000;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

struct Rig {
    mosq: Mosquitto,
    vm: VictoriaMetrics,
    gw: Gateway,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let mosq = Mosquitto::start();
    let vm = VictoriaMetrics::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_port();
    let mut cfg = QalaConfig::new(mosq.port, http, dir.path());
    cfg.influx_url = Some(vm.url());
    cfg.extra = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/routes.example.toml"
    ))
    .expect("config/routes.example.toml");
    let before = mosq.subscription_count("tele/+/SENSOR");
    let gw = Gateway::start(&cfg.toml(), http, dir.path().join("gw"));
    mosq.wait_for_subscription("tele/+/SENSOR", before, Duration::from_secs(10));
    let db = cfg.sqlite_path();
    Rig {
        mosq,
        vm,
        gw,
        db,
        _dir: dir,
    }
}

impl Rig {
    /// The one sample of `selector` in VictoriaMetrics: (value, ms, labels).
    fn vm_one(&self, selector: &str) -> (f64, i64, std::collections::BTreeMap<String, String>) {
        let s = self
            .vm
            .wait_for_samples(selector, 1, Duration::from_secs(20));
        assert_eq!(s.len(), 1, "{selector}: {s:?}");
        assert_eq!(s[0].values.len(), 1, "{selector}: {s:?}");
        (s[0].values[0], s[0].timestamps[0], s[0].labels.clone())
    }

    /// The one SQLite row of a sensor's metric: (value, unit, time_ns).
    fn db_one(&self, sensor: &str, metric: &str) -> (f64, String, i64) {
        wait_until(
            &format!("{sensor}.{metric} in SQLite"),
            Duration::from_secs(20),
            || sqlite_reading(&self.db, sensor, metric).is_some(),
        );
        sqlite_reading(&self.db, sensor, metric).expect("row")
    }
}

#[test]
fn vendor_payloads_land_in_both_sinks_converted() {
    let r = rig();
    let port = r.mosq.port;

    // ChirpStack v4 uplink: litres and l/s, district from the device's tags.
    mosquitto_pub(
        port,
        "application/7/device/0101010101010101/event/up",
        br#"{"deduplicationId":"3ac7e3c4-4401-4b8d-9386-a5c902f9202d","time":"2026-11-20T10:00:00+00:00",
            "deviceInfo":{"tenantId":"52f14cd4-c6f1-4fbd-8f87-4025e1d49242","applicationId":"7","applicationName":"water",
              "deviceProfileName":"meter","deviceName":"m-17","devEui":"0101010101010101","tags":{"district":"medeu"}},
            "devAddr":"00189440","adr":true,"dr":5,"fCnt":42,"fPort":1,"confirmed":false,"data":"AQID",
            "object":{"volume":12345.5,"flow":0.25},
            "rxInfo":[{"gatewayId":"0016c001f153a14c","rssi":-57,"snr":10.0}],
            "txInfo":{"frequency":868100000}}"#,
        1,
    );
    // Tasmota: local time (UTC+5), power in W.
    mosquitto_pub(
        port,
        "tele/plug-1/SENSOR",
        br#"{"Time":"2026-11-20T15:00:00","ENERGY":{"TotalStartTime":"2026-01-01T00:00:00","Total":123.456,"Yesterday":1.2,"Today":0.4,"Period":0,"Power":45,"ApparentPower":50,"ReactivePower":21,"Factor":0.9,"Voltage":229,"Current":0.2}}"#,
        1,
    );
    // ThingsBoard: two records.
    mosquitto_pub(
        port,
        "v1/devices/aq-7/telemetry",
        format!(
            r#"[{{"ts":{T10_MS},"values":{{"temperature":21.5,"humidity":40}}}},{{"ts":{},"values":{{"temperature":21.75}}}}]"#,
            T10_MS + 60_000
        )
        .as_bytes(),
        1,
    );
    // Line protocol in ms: measurement = kind, tags name the sensor.
    mosquitto_pub(
        port,
        "lp/almaty",
        format!("air,district=almaly,sensor_id=lp-1 pm2_5=12.5,no2=21i {T10_MS}\nwater,district=turksib,sensor_id=lp-2 volume=5,leak_alarm=true {T10_MS}\n").as_bytes(),
        1,
    );
    // A plain value: the metric in the topic, the time is the receive time.
    let before_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    mosquitto_pub(port, "plain/almaty/bostandyk/air/pv-1/pm10", b" 33.25\n", 1);

    // ChirpStack → water, canonical m³ and m³/h.
    let (v, ms, labels) = r.vm_one(r#"{__name__="water_volume",sensor_id="0101010101010101"}"#);
    assert!(close(v, 12.3455), "{v}");
    assert_eq!(ms, T10_MS);
    assert_eq!(labels.get("district").map(String::as_str), Some("medeu"));
    assert_eq!(labels.get("city").map(String::as_str), Some("almaty"));
    assert_eq!(
        labels.get("sphere").map(String::as_str),
        Some("housing_utilities")
    );
    let (flow, unit, t) = r.db_one("0101010101010101", "flow");
    assert!(close(flow, 0.9), "{flow}");
    assert_eq!((unit.as_str(), t), ("m³/h", T10_MS * 1_000_000));

    // Tasmota → power, 15:00 local is 10:00 UTC; W → kW.
    let (p, ms, _) = r.vm_one(r#"{__name__="power_power",sensor_id="plug-1"}"#);
    assert!(close(p, 0.045), "{p}");
    assert_eq!(ms, T10_MS);
    let (e, unit, _) = r.db_one("plug-1", "energy");
    assert!(close(e, 123.456), "{e}");
    assert_eq!(unit, "kWh");
    assert!(close(r.db_one("plug-1", "voltage").0, 229.0));

    // ThingsBoard → two points of aq-7.
    let temps = r.vm.wait_for_samples(
        r#"{__name__="air_temperature",sensor_id="aq-7"}"#,
        2,
        Duration::from_secs(20),
    );
    assert_eq!(temps[0].timestamps, vec![T10_MS, T10_MS + 60_000]);
    assert_eq!(temps[0].values, vec![21.5, 21.75]);
    assert_eq!(
        temps[0].labels.get("city").map(String::as_str),
        Some("shymkent")
    );
    let rows = sqlite_i64(
        &r.db,
        "SELECT count(*) FROM readings_view WHERE sensor_id = 'aq-7'",
    );
    assert_eq!(rows, 3, "two temperatures and one humidity");

    // Line protocol → two kinds from one message.
    let (no2, ms, labels) = r.vm_one(r#"{__name__="air_no2",sensor_id="lp-1"}"#);
    assert_eq!((no2, ms), (21.0, T10_MS));
    assert_eq!(labels.get("city").map(String::as_str), Some("almaty"));
    assert_eq!(r.db_one("lp-2", "volume").0, 5.0);
    // A boolean flag: 1 in SQLite (unit "bool"), a boolean field in line protocol (1 in VM).
    assert_eq!(
        r.db_one("lp-2", "leak_alarm"),
        (1.0, "bool".into(), T10_MS * 1_000_000)
    );
    let (leak, _, _) = r.vm_one(r#"{__name__="water_leak_alarm",sensor_id="lp-2"}"#);
    assert_eq!(leak, 1.0);

    // Plain value → receive time (the route's policy), flagged as such in both sinks.
    let (pm10, unit, t) = r.db_one("pv-1", "pm10");
    assert_eq!((pm10, unit.as_str()), (33.25, "µg/m³"));
    let flags = sqlite_i64(
        &r.db,
        "SELECT count(*) FROM readings_view WHERE time_source = 'receive'",
    );
    assert_eq!(flags, 1, "only the plain value lacks a device time");
    let (flag, ms, _) = r.vm_one(r#"{__name__="air_receive_time",sensor_id="pv-1"}"#);
    assert_eq!((flag, ms * 1_000_000), (1.0, t / 1_000_000 * 1_000_000));
    assert!(
        t >= before_ns && t < before_ns + 60_000_000_000,
        "receive time {t} vs publish at {before_ns}"
    );

    let m = r.gw.metrics();
    assert_eq!(
        prom_sum(&m, "qala_messages_rejected_total", &[]),
        0.0,
        "{m}"
    );
    assert_eq!(
        prom_value(&m, "qala_messages_received_total", &[]),
        Some(5.0)
    );
}

#[test]
fn unfitting_topics_and_unreadable_payloads_are_dead_lettered() {
    let r = rig();
    // Mosquitto delivers only what Qala subscribed to (so no_route needs mqtt.topics wider than
    // the routes: a unit test covers it); a topic inside a filter but outside its template is
    // bad_topic; a payload the route cannot read is refused with what was wrong.
    mosquitto_pub(r.mosq.port, "city/almaty/air", b"{}", 1);
    mosquitto_pub(
        r.mosq.port,
        "tele/plug-2/SENSOR",
        br#"{"Time":"2026-11-20T15:00:00"}"#,
        1,
    );
    mosquitto_pub(
        r.mosq.port,
        "plain/almaty/bostandyk/air/pv-1/pm10",
        b"high",
        1,
    );
    mosquitto_pub(r.mosq.port, "lp/almaty", b"air,sensor_id=x pm2_5=", 1);
    // The rows, not the counter: the counter moves when a message is refused, the rows when the
    // SQLite sink has read the dead letters from the spool.
    wait_until(
        "four dead letters in SQLite",
        Duration::from_secs(20),
        || sqlite_i64(&r.db, "SELECT count(*) FROM dead_letters") >= 4,
    );
    let conn = sqlite_open_readonly(&r.db);
    let rows: Vec<(String, String)> = conn
        .prepare("SELECT reason, topic FROM dead_letters ORDER BY id")
        .expect("prepare")
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        rows,
        vec![
            ("bad_topic".to_string(), "city/almaty/air".to_string()),
            ("bad_shape".into(), "tele/plug-2/SENSOR".into()),
            (
                "bad_value".into(),
                "plain/almaty/bostandyk/air/pv-1/pm10".into()
            ),
            ("bad_shape".into(), "lp/almaty".into()),
        ]
    );
}
