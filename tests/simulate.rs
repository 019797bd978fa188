//! `qala simulate` against a real gateway through Mosquitto: a backfill with 2 % malformed and
//! 2 % duplicated messages; the audit finds every valid reading stored once, the malformed ones in
//! the dead letter and the duplicates in the gateway's repeat counter, and 0 lost.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const SCENARIO: &str = r#"
name = "audit-test"
city = "simtest"
seed = 7
districts = ["north", "south"]

[[fleet]]
kind = "water"
count = 20
interval = "15m"
format = "json"
input_meter_loss = 0.1

[[fleet]]
kind = "traffic"
count = 2
interval = "1m"
lanes = 2

[[fleet]]
kind = "air"
count = 1
interval = "20m"
format = "senml"

[[fleet]]
kind = "heat"
count = 4
interval = "1h"
format = "senml"

[[fleet]]
kind = "status"
sphere = "safety"
name = "cam"
count = 3
interval = "30m"

[faults]
malformed = 2
duplicates = 2

[load]
sensors_per_connection = 10
"#;

/// A `qala simulate --report json --verify` run's report.
struct Report {
    json: serde_json::Value,
    text: String,
}

impl Report {
    fn number(&self, path: &str) -> f64 {
        self.json
            .pointer(path)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_else(|| panic!("{path} missing in {}", self.text))
    }
}

/// Runs `qala simulate` with `extra` options against Mosquitto on `port`, verifying in the
/// gateway's SQLite; panics unless it exits 0 with a JSON report.
fn simulate_verified(
    scenario: &std::path::Path,
    port: u16,
    cfg: &QalaConfig<'_>,
    gw: &Gateway,
    extra: &[&str],
) -> Report {
    let out = Command::new(qala_bin())
        .args(["simulate", "--scenario"])
        .arg(scenario)
        .args(["--broker", &format!("mqtt://127.0.0.1:{port}")])
        .args(extra)
        .args(["--report", "json", "--verify", "--verify-sqlite"])
        .arg(cfg.sqlite_path())
        .args(["--gateway", &gw.url()])
        .output()
        .expect("qala simulate runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "qala simulate failed: {stderr}\n{text}"
    );
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    Report { json, text }
}

#[test]
fn a_backfill_with_malformed_and_duplicated_messages_is_audited_exactly() {
    let mosq = Mosquitto::start_with(MosquittoOptions {
        max_inflight_messages: 200,
        ..MosquittoOptions::default()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_port();
    let cfg = QalaConfig::new(mosq.port, http, dir.path());
    let before = mosq.subscription_count("city/#");
    let gw = Gateway::start(&cfg.toml(), http, dir.path().join("gw"));
    mosq.wait_for_subscription("city/#", before, Duration::from_secs(10));
    let dup_before = prom_value(&gw.metrics(), "qala_readings_duplicate_total", &[]).unwrap_or(0.0);
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(&scenario, SCENARIO).expect("scenario");

    let report = simulate_verified(
        &scenario,
        mosq.port,
        &cfg,
        &gw,
        &[
            "--from",
            "2026-11-20T00:00:00+05:00",
            "--to",
            "2026-11-20T06:00:00+05:00",
        ],
    );
    let n = |path: &str| report.number(path);
    println!(
        "sent {} messages ({} readings, {} malformed, {} duplicates); audit: stored {}, lost {}, dead-lettered {}, gateway repeats {}",
        n("/total/messages"), n("/total/readings"), n("/total/malformed"), n("/total/duplicates"),
        n("/audit/stored"), n("/audit/lost"), n("/audit/dead_lettered"), n("/audit/gateway_duplicate_values")
    );
    // 6 hours: water 20 × 24 + 2 input meters × 24, traffic 2 × 2 lanes × 360, air 1 × 18, heat 4 × 6,
    // status (health only) 3 × 12.
    assert_eq!(
        n("/total/messages"),
        (20.0 * 24.0 + 2.0 * 24.0) + 4.0 * 360.0 + 18.0 + 24.0 + 36.0
    );
    let status_messages = report
        .json
        .pointer("/per_kind")
        .and_then(serde_json::Value::as_array)
        .and_then(|kinds| kinds.iter().find(|k| k[0] == "status"))
        .and_then(|k| k[1]["messages"].as_f64());
    assert_eq!(status_messages, Some(36.0), "{}", report.text);
    let malformed = n("/total/malformed");
    let duplicates = n("/total/duplicates");
    // 2 % of ~2,000 messages each: enough to see, not an accident.
    assert!((15.0..=80.0).contains(&malformed), "malformed {malformed}");
    assert!(
        (15.0..=80.0).contains(&duplicates),
        "duplicates {duplicates}"
    );
    assert_eq!(n("/audit/lost"), 0.0);
    assert_eq!(n("/audit/duplicated"), 0.0);
    assert_eq!(n("/audit/sequence_gaps"), 0.0);
    assert_eq!(n("/audit/stored"), n("/total/readings"));
    assert_eq!(n("/audit/expected"), n("/total/readings"));
    assert_eq!(
        n("/audit/dead_lettered"),
        malformed,
        "every malformed message, and only those, dead-lettered"
    );
    assert_eq!(
        n("/audit/gateway_duplicate_values") - dup_before,
        n("/total/duplicate_values"),
        "every duplicate's values dropped as repeats, nothing else"
    );
    assert_eq!(
        report
            .json
            .pointer("/all_acked")
            .and_then(serde_json::Value::as_bool),
        Some(true)
    );
}

const STORMY: &str = r#"
name = "storm-test"
city = "stormtown"
seed = 11
districts = ["old", "new"]

[[fleet]]
kind = "power"
count = 60
interval = "1s"
format = "mixed"

[[fleet]]
kind = "traffic"
count = 2
interval = "1s"
lanes = 3

[faults]
out_of_order = 5
late = 5
late_by = "2s"
clock_skew = 20
max_skew = "30s"
offline = 10
offline_for = "2s"
reconnect_storm_every = "1s"

[load]
sensors_per_connection = 8
"#;

#[test]
fn a_live_run_through_reconnect_storms_late_skewed_and_offline_devices_loses_nothing() {
    let mosq = Mosquitto::start_with(MosquittoOptions {
        max_inflight_messages: 200,
        ..MosquittoOptions::default()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_port();
    let cfg = QalaConfig::new(mosq.port, http, dir.path());
    let before = mosq.subscription_count("city/#");
    let gw = Gateway::start(&cfg.toml(), http, dir.path().join("gw"));
    mosq.wait_for_subscription("city/#", before, Duration::from_secs(10));
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(&scenario, STORMY).expect("scenario");

    let report = simulate_verified(&scenario, mosq.port, &cfg, &gw, &["--duration", "5s"]);
    let n = |path: &str| report.number(path);
    println!(
        "{} messages, {} storms, {} out of order, {} late, {} from offline backlogs; stored {}, lost {}",
        n("/total/messages"), n("/storms"), n("/total/out_of_order"), n("/total/late"),
        n("/total/backlog"), n("/audit/stored"), n("/audit/lost")
    );
    // 66 devices (60 meters, 6 lanes) once a second for about 5 s.
    assert!(n("/total/messages") >= 250.0, "{}", report.text);
    assert!(n("/storms") >= 3.0, "reconnect storms: {}", report.text);
    assert!(
        n("/total/out_of_order") > 0.0 && n("/total/late") > 0.0 && n("/total/backlog") > 0.0,
        "{}",
        report.text
    );
    assert_eq!(n("/audit/lost"), 0.0);
    assert_eq!(n("/audit/stored"), n("/total/readings"));
    assert_eq!(n("/audit/duplicated"), 0.0);
    assert_eq!(
        n("/broker_errors"),
        0.0,
        "a storm is a clean reconnect, not an error"
    );
}

#[test]
fn ctrl_c_ends_a_run_without_duration_with_its_report() {
    let mosq = Mosquitto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(
        &scenario,
        STORMY.replace("reconnect_storm_every = \"1s\"", ""),
    )
    .expect("scenario");
    let child = Command::new(qala_bin())
        .args(["simulate", "--scenario"])
        .arg(&scenario)
        .args(["--broker", &format!("mqtt://127.0.0.1:{}", mosq.port)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("qala simulate starts");
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0, "SIGINT sent");
    let out = child.wait_with_output().expect("qala simulate exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Qala simulate: storm-test"), "{stdout}");
    assert!(stdout.contains("acked by the broker"), "{stdout}");
}
