//! Indicators end to end: a district's air station and traffic lanes publish a local day of
//! readings with Debian's mosquitto_pub to Mosquitto; the gateway's engine closes the day; the HTTP
//! API, SQLite, VictoriaMetrics and the retained MQTT topics (read with mosquitto_sub) all show
//! the same values, and every sphere appears with its device coverage.

mod common;

use std::time::Duration;

use common::*;

/// 2026-11-10T00:00:00+05:00, a local midnight in Talgar (ms).
const DAY0_MS: i64 = 1_794_250_800_000;
const MIN_MS: i64 = 60_000;

fn api(http: u16, query: &str) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{http}/api/v1/indicators?{query}");
    let body = reqwest::blocking::get(&url)
        .and_then(|r| r.text())
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
}

fn values(doc: &serde_json::Value) -> Vec<serde_json::Value> {
    doc["values"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_district_day_gives_the_same_indicators_in_the_api_the_sinks_and_on_mqtt() {
    let mosq = Mosquitto::start();
    let vm = VictoriaMetrics::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_port();
    let mut cfg = QalaConfig::new(mosq.port, http, dir.path());
    cfg.influx_url = Some(vm.url());
    // Event time is a past day: the watermark follows device time. The station's day is
    // published before the lanes' (one mosquitto_pub per device), so the lanes arrive a day
    // behind the watermark: a lateness of 2 days takes them in (and re-emits their hours).
    cfg.extra = "[indicators]\nwatermark_delay = \"0s\"\nallowed_lateness = \"2d\"\ncheckpoint_interval = \"1s\"\n".into();
    let before = mosq.subscription_count("city/#");
    let gw = Gateway::start(&cfg.toml(), http, dir.path().join("gw"));
    mosq.wait_for_subscription("city/#", before, Duration::from_secs(10));

    // The station: PM2.5 20.0 µg/m³ and PM10 40 µg/m³ every 20 minutes for the whole day.
    let air: Vec<String> = (0..72)
        .map(|k| {
            format!(
                r#"{{"ts":{},"pm2_5":20.0,"pm10":40}}"#,
                DAY0_MS + k * 20 * MIN_MS
            )
        })
        .collect();
    mosquitto_pub_lines(
        mosq.port,
        "city/talgar/center/air/st-1",
        &air,
        1,
        || true,
        Duration::from_secs(30),
    );
    // Two lanes, 10 vehicles a minute each at 45 km/h, every minute of the day.
    for lane in ["d1-l1", "d1-l2"] {
        let lines: Vec<String> = (0..24 * 60)
            .map(|k| {
                format!(
                    r#"{{"ts":{},"volume":10,"interval":60,"speed":45}}"#,
                    DAY0_MS + k * MIN_MS
                )
            })
            .collect();
        mosquitto_pub_lines(
            mosq.port,
            &format!("city/talgar/center/traffic/{lane}"),
            &lines,
            1,
            || true,
            Duration::from_secs(60),
        );
    }

    // A reading of the next day moves the watermark past midnight: the day closes.
    mosquitto_pub(
        mosq.port,
        "city/talgar/north/air/st-2",
        format!(
            r#"{{"ts":{},"pm2_5":5.0}}"#,
            DAY0_MS + 24 * 60 * MIN_MS + 5 * MIN_MS
        )
        .as_bytes(),
        1,
    );
    let mut daily = Vec::new();
    wait_until("the daily AQI in the API", Duration::from_secs(60), || {
        daily = values(&api(http, "indicator=us_aqi_daily&scope=city"));
        !daily.is_empty()
    });
    let d = &daily[0];
    // Daily mean 20.0 → AQI 71 (PM10 40 → 37): PM2.5 dominates. The city's value is the worst
    // station's; st-2 has one reading of the next day only, so this day is st-1's.
    assert_eq!(d["value"], serde_json::json!(71.0), "{d}");
    assert_eq!(d["level"], "moderate");
    assert_eq!(d["details"]["dominant"], "pm2_5");
    assert_eq!(d["window_start"], "2026-11-09T19:00:00Z");
    assert_eq!(d["window_end"], "2026-11-10T19:00:00Z");
    assert_eq!(d["completeness"]["text"], "1/1 sensors");
    assert!(d["reference"].as_str().unwrap_or("").contains("May 2024"));

    // Traffic of the day: 2 lanes × 600 veh/h = 1200 veh/h; speed 45 km/h.
    let flow = values(&api(
        http,
        "indicator=traffic_flow&scope=district&district=center&window=24h",
    ));
    assert_eq!(flow.len(), 1, "{flow:?}");
    assert_eq!(flow[0]["value"], serde_json::json!(1200.0));
    let speed = values(&api(http, "indicator=traffic_speed&scope=city&window=24h"));
    assert_eq!(speed[0]["value"], serde_json::json!(45.0));

    // Every sphere has its device coverage (nothing is registered here: invalid, and it says so).
    let cov = values(&api(
        http,
        "indicator=device_coverage&scope=city&window=24h",
    ));
    let spheres: std::collections::BTreeSet<String> = cov
        .iter()
        .filter_map(|v| v["sphere"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(spheres.len(), 8, "{spheres:?}");

    // The catalog names every indicator in three languages.
    let cat: serde_json::Value =
        reqwest::blocking::get(format!("http://127.0.0.1:{http}/api/v1/indicators/catalog"))
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("catalog: {e}"));
    let aqi = cat["indicators"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["id"] == "us_aqi_daily"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(aqi["names"]["en"], "US AQI (daily)");
    assert_eq!(
        aqi["names"]["kk"],
        "US AQI ауа сапасының индексі (тәуліктік)"
    );
    assert_eq!(aqi["windows"], serde_json::json!(["24h"]));

    // SQLite holds the same value for the same series and window.
    let db = cfg.sqlite_path();
    wait_until("the daily AQI in SQLite", Duration::from_secs(20), || {
        sqlite_f64(
            &db,
            "SELECT COUNT(*) FROM indicators WHERE indicator = 'us_aqi_daily' AND scope = 'city' AND window = '24h' AND value = 71.0",
        ) == 1.0
    });

    // The retained topic carries the same document as the API.
    let topic = "qala/indicators/talgar/ecology/us_aqi_daily/city/24h";
    let got = mosquitto_sub_collect(mosq.port, topic, 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "no retained message at {topic}");
    let mqtt: serde_json::Value =
        serde_json::from_slice(&got[0].1).unwrap_or_else(|e| panic!("{topic}: {e}"));
    assert_eq!(&mqtt, d, "MQTT and the API differ");

    // VictoriaMetrics: measurement indicator, field value, at the window's start.
    let s = vm.wait_for_samples(
        r#"indicator_value{indicator="us_aqi_daily",scope="city"}"#,
        1,
        Duration::from_secs(30),
    );
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].values, vec![71.0]);
    assert_eq!(s[0].timestamps, vec![DAY0_MS]);
    drop(gw);
}

/// The engine's state survives a SIGKILL: half a day before, half after, and the day's values
/// stand on all 24 hours with every sample counted once.
#[test]
fn the_engine_resumes_after_sigkill_without_losing_or_double_counting() {
    let mosq = Mosquitto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_port();
    let mut cfg = QalaConfig::new(mosq.port, http, dir.path());
    cfg.extra = "[indicators]\nwatermark_delay = \"0s\"\ncheckpoint_interval = \"1s\"\n".into();
    let topic = "city/talgar/center/air/st-1";
    let line = |k: i64, c: f64| format!(r#"{{"ts":{},"pm2_5":{c}}}"#, DAY0_MS + k * 20 * MIN_MS);
    let before = mosq.subscription_count("city/#");
    let mut gw = Gateway::start(&cfg.toml(), http, dir.path().join("gw1"));
    mosq.wait_for_subscription("city/#", before, Duration::from_secs(10));
    // The first 12 hours at 10.0 µg/m³.
    let first: Vec<String> = (0..36).map(|k| line(k, 10.0)).collect();
    mosquitto_pub_lines(
        mosq.port,
        topic,
        &first,
        1,
        || true,
        Duration::from_secs(30),
    );
    // Wait until a checkpoint covers them: hour 10 (00:00 … 11:00 closed) has been emitted
    // and two checkpoints have passed since.
    wait_until("hour 10's values", Duration::from_secs(30), || {
        !values(&api(http, "indicator=pdk_multiple&scope=sensor&window=1h")).is_empty()
    });
    let state = cfg.spool_dir().join("indicators.state");
    wait_until("a checkpoint", Duration::from_secs(10), || state.exists());
    std::thread::sleep(Duration::from_millis(2500));
    gw.kill9();

    let before = mosq.subscription_count("city/#");
    let gw2 = Gateway::start(&cfg.toml(), http, dir.path().join("gw2"));
    mosq.wait_for_subscription("city/#", before, Duration::from_secs(10));
    // The next 12 hours at 30.0, then a reading of the next day to close it.
    let mut rest: Vec<String> = (36..72).map(|k| line(k, 30.0)).collect();
    rest.push(line(72 + 1, 5.0));
    mosquitto_pub_lines(mosq.port, topic, &rest, 1, || true, Duration::from_secs(30));
    let mut day = Vec::new();
    wait_until(
        "the day's exceedance counts",
        Duration::from_secs(30),
        || {
            day = values(&api(
                http,
                "indicator=pdk_exceedances&scope=sensor&window=24h",
            ));
            !day.is_empty()
        },
    );
    // 72 samples, each counted once (a replayed batch would add to them).
    assert_eq!(
        day[0]["details"]["samples"],
        serde_json::json!(72.0),
        "{}",
        day[0]
    );
    assert_eq!(day[0]["completeness"]["text"], "24/24 h");
    // Mean of 12 h at 10 and 12 h at 30 = 20.0 → AQI 71.
    let aqi = values(&api(http, "indicator=us_aqi_daily&scope=sensor"));
    assert_eq!(aqi[0]["value"], serde_json::json!(71.0), "{}", aqi[0]);
    drop(gw2);
}
