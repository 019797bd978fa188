//! Ingest through the embedded rumqttd broker, published with Debian's `mosquitto_pub`.

mod common;

use std::time::Duration;

use common::*;

const T0_MS: i64 = 1_795_143_600_000;

#[test]
fn json_and_senml_through_the_embedded_broker_land_in_both_sinks() {
    let vm = VictoriaMetrics::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (broker_port, http) = (free_port(), free_port());
    let mut cfg = QalaConfig::new(broker_port, http, dir.path());
    cfg.embedded = true;
    cfg.influx_url = Some(vm.url());
    let db = cfg.sqlite_path();
    let gw = Gateway::start(&cfg.toml(), http, dir.path().join("gw"));

    // The subscription is live once a probe comes through (the embedded broker keeps no log).
    let mut n = 0;
    wait_until(
        "a probe through the embedded broker",
        Duration::from_secs(20),
        || {
            n += 1;
            mosquitto_pub(
                broker_port,
                "city/probe/p/water/probe",
                format!(r#"{{"ts":{},"volume":1}}"#, T0_MS + n).as_bytes(),
                1,
            );
            std::thread::sleep(Duration::from_millis(100));
            sqlite_i64(
                &db,
                "SELECT count(*) FROM readings_view WHERE sensor_id = 'probe'",
            ) > 0
        },
    );

    mosquitto_pub(
        broker_port,
        "city/shymkent/abay/traffic/det-9",
        format!(r#"{{"ts":{T0_MS},"volume":1800,"interval":60,"speed":12.5,"occupancy":0.25,"units":{{"volume":"veh/h","speed":"m/s","occupancy":"/"}}}}"#).as_bytes(),
        1,
    );
    mosquitto_pub(
        broker_port,
        "city/shymkent/abay/power/pm-3",
        format!(r#"[{{"bn":"pm-3/","bt":{},"n":"energy","u":"Wh","v":12345}},{{"n":"power","u":"W","v":2500}}]"#, T0_MS / 1000).as_bytes(),
        1,
    );

    let speed = vm.wait_for_samples(
        r#"{__name__="traffic_speed",sensor_id="det-9"}"#,
        1,
        Duration::from_secs(20),
    );
    assert_eq!(speed[0].values, vec![45.0], "12.5 m/s = 45 km/h");
    assert_eq!(speed[0].timestamps, vec![T0_MS]);
    assert_eq!(
        speed[0].labels.get("sphere").map(String::as_str),
        Some("transport")
    );
    assert_eq!(
        speed[0].labels.get("city").map(String::as_str),
        Some("shymkent")
    );
    let volume = vm.wait_for_samples(
        r#"{__name__="traffic_volume",sensor_id="det-9"}"#,
        1,
        Duration::from_secs(20),
    );
    assert_eq!(
        volume[0].values,
        vec![30.0],
        "1800 veh/h over 60 s = 30 vehicles"
    );
    let energy = vm.wait_for_samples(
        r#"{__name__="power_energy",sensor_id="pm-3"}"#,
        1,
        Duration::from_secs(20),
    );
    assert_eq!(energy[0].values, vec![12.345]);
    assert_eq!(energy[0].timestamps, vec![T0_MS]);

    wait_until("readings in SQLite", Duration::from_secs(10), || {
        sqlite_reading(&db, "pm-3", "power").is_some()
            && sqlite_reading(&db, "det-9", "occupancy").is_some()
    });
    assert_eq!(
        sqlite_reading(&db, "pm-3", "power"),
        Some((2.5, "kW".into(), T0_MS * 1_000_000))
    );
    let (occ, unit, _) = sqlite_reading(&db, "det-9", "occupancy").expect("occupancy");
    assert!((occ - 25.0).abs() < 1e-9 && unit == "%", "{occ} {unit}");
    let m = gw.metrics();
    assert_eq!(prom_sum(&m, "qala_messages_rejected_total", &[]), 0.0);
}
