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
    cfg.extra = "[indicators]\nwatermark_delay = \"0s\"\nallowed_lateness = \"2d\"\ncheckpoint_interval = \"1s\"\n\n\
                 [[alerts.rules]]\nname = \"aqi_moderate\"\nindicator = \"us_aqi_daily\"\nscope = \"city\"\nabove = 50\nclear_below = 40\n".into();
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

    // The alert rule (city daily AQI above 50) raised once, retained on its topic.
    let alerts = mosquitto_sub_collect(
        mosq.port,
        "qala/alerts/talgar/ecology/us_aqi_daily/aqi_moderate/#",
        1,
        Duration::from_secs(20),
    );
    assert_eq!(alerts.len(), 1, "no retained alert");
    let a: serde_json::Value = serde_json::from_slice(&alerts[0].1).unwrap_or_default();
    assert_eq!(a["state"], "raised", "{a}");
    assert_eq!(a["value"], serde_json::json!(71.0), "{a}");

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

/// The simulator drives a small town through Mosquitto for a day, its registry imported first:
/// every sphere's device coverage is a real number, the district balance matches the losses the
/// simulator built in, and the API, SQLite and the retained topics agree.
#[test]
fn a_simulated_town_day_covers_every_sphere_and_balances_its_districts() {
    let mosq = Mosquitto::start_with(MosquittoOptions {
        max_inflight_messages: 200,
        ..MosquittoOptions::default()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_port();
    let mut cfg = QalaConfig::new(mosq.port, http, dir.path());
    cfg.extra = "[indicators]\nwatermark_delay = \"0s\"\nallowed_lateness = \"1d\"\ncheckpoint_interval = \"2s\"\n".into();
    let scenario = dir.path().join("town.toml");
    std::fs::write(
        &scenario,
        r#"name = "tiny-town"
city = "talgar"
seed = 7
districts = ["center", "north"]

[[fleet]]
kind = "water"
count = 20
interval = "1h"
format = "json"
input_meter_loss = 0.14

[[fleet]]
kind = "traffic"
count = 2
interval = "1m"
lanes = 2
capacity = 1700
free_flow = 60
format = "json"

[[fleet]]
kind = "air"
count = 2
interval = "20m"
format = "senml"

[[fleet]]
kind = "status"
sphere = "safety"
name = "cam"
count = 2
interval = "5m"

[[fleet]]
kind = "status"
sphere = "social"
name = "school"
count = 2
interval = "5m"

[[fleet]]
kind = "status"
sphere = "infrastructure"
name = "light"
count = 2
interval = "5m"

[[fleet]]
kind = "status"
sphere = "economy"
name = "market"
count = 2
interval = "5m"

[[fleet]]
kind = "status"
sphere = "city_management"
name = "akimat"
count = 2
interval = "5m"

[faults]
malformed = 0
duplicates = 0
out_of_order = 0
late = 0
clock_skew = 0
offline = 0
leaks = 0
resets = 0
reconnect_storm_every = "0s"
"#,
    )
    .expect("scenario");
    // The registry: written by the simulator, imported with the CLI into the gateway's database.
    let csv = dir.path().join("devices.csv");
    let config = dir.path().join("qala.toml");
    std::fs::write(&config, cfg.toml()).expect("config");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(qala_bin())
            .args(args)
            .output()
            .expect("qala runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&[
        "simulate".as_ref(),
        "--scenario".as_ref(),
        scenario.as_os_str(),
        "--registry-csv".as_ref(),
        csv.as_os_str(),
    ]);
    run(&[
        "sensors".as_ref(),
        "import".as_ref(),
        csv.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);

    let before = mosq.subscription_count("city/#");
    let gw = Gateway::start(&cfg.toml(), http, dir.path().join("gw"));
    mosq.wait_for_subscription("city/#", before, Duration::from_secs(10));
    // 2026-11-10, local, and an hour of the next day to close it.
    let out = std::process::Command::new(qala_bin())
        .args(["simulate", "--scenario"])
        .arg(&scenario)
        .args(["--broker", &format!("mqtt://127.0.0.1:{}", mosq.port)])
        .args([
            "--from",
            "2026-11-09T23:00:00+05:00",
            "--to",
            "2026-11-11T01:00:00+05:00",
        ])
        .output()
        .expect("qala simulate runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let day = "window=24h";
    let mut cov = Vec::new();
    wait_until("the day's device coverage", Duration::from_secs(60), || {
        cov = values(&api(
            http,
            &format!("indicator=device_coverage&scope=city&{day}"),
        ))
        .into_iter()
        .filter(|v| v["window_start"] == "2026-11-09T19:00:00Z")
        .collect();
        cov.len() == 8
    });
    for v in &cov {
        // Every device reported in the last 1.5 intervals of the day: 100 % in every sphere.
        assert_eq!(v["value"], serde_json::json!(100.0), "{v}");
        assert!(
            v["completeness"]["expected"].as_u64().unwrap_or(0) >= 2,
            "{v}"
        );
    }
    let at_day = |q: &str| -> Vec<serde_json::Value> {
        values(&api(http, q))
            .into_iter()
            .filter(|v| v["window_start"] == "2026-11-09T19:00:00Z")
            .collect()
    };
    // The water balance: the simulator's input meters read the consumers × 1.14, so the loss is
    // 0.14 / 1.14 = 12.3 % of the input in each district (register ends within the day's edges
    // shift it by a fraction of an hour's use).
    let losses = at_day("indicator=district_losses&scope=district&component=water");
    assert_eq!(losses.len(), 2, "{losses:?}");
    for l in &losses {
        let share = l["details"]["share_pct"].as_f64().unwrap_or(0.0);
        assert!((share - 100.0 * 0.14 / 1.14).abs() < 1.5, "{l}");
        assert_eq!(l["valid"], true);
    }
    // Data completeness of the day: every expected reading came (no faults).
    let comp = at_day("indicator=data_completeness&scope=city&sphere=safety&window=24h");
    assert_eq!(comp[0]["value"], serde_json::json!(100.0), "{}", comp[0]);
    // Per capita: valid, in m³ per person per day.
    let pc = at_day("indicator=consumption_per_capita&scope=city&component=water");
    assert!(
        pc[0]["value"].as_f64().is_some_and(|v| v > 0.0 && v < 2.0),
        "{}",
        pc[0]
    );
    // Air: the daily AQI of the city is valid.
    let aqi = at_day("indicator=us_aqi_daily&scope=city");
    assert_eq!(aqi[0]["valid"], true, "{}", aqi[0]);

    // The same value in SQLite and on the retained topic.
    let want = losses[0]["value"].as_f64().unwrap_or(f64::NAN);
    let district = losses[0]["district"].as_str().unwrap_or("");
    let db = cfg.sqlite_path();
    wait_until("the balance in SQLite", Duration::from_secs(20), || {
        sqlite_f64(
            &db,
            &format!("SELECT COUNT(*) FROM indicators WHERE indicator = 'district_losses' AND district = '{district}' AND component = 'water' AND window_start = 1794250800000000000 AND ABS(value - {want:?}) < 1e-9"),
        ) == 1.0
    });
    let topic = format!(
        "qala/indicators/talgar/housing_utilities/district_losses/district/{district}/water/24h"
    );
    let got = mosquitto_sub_collect(mosq.port, &topic, 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "no retained message at {topic}");
    let mqtt: serde_json::Value = serde_json::from_slice(&got[0].1).unwrap_or_default();
    assert_eq!(mqtt["value"].as_f64(), Some(want));
    drop(gw);
}
