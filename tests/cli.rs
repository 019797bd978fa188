//! The `qala` command as a user meets it: config checking and the demo.

mod common;

use std::process::Command;

use common::qala_bin;

fn qala(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(qala_bin())
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .expect("run qala");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_prints_the_effective_config_with_secrets_masked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("q.toml");
    std::fs::write(
        &cfg,
        "[mqtt]\nusername = \"gw\"\npassword = \"hunter2\"\n[influxdb]\nenabled = true\nurl = \"http://db:8086\"\norg = \"akimat\"\nbucket = \"city\"\n",
    )
    .expect("write");
    let (ok, out, err) = qala(
        &[
            "check-config",
            "--config",
            cfg.to_str().expect("utf-8 path"),
        ],
        &[
            ("QALA__INFLUXDB__TOKEN", "tok-123"),
            ("QALA__INFLUXDB__BUCKET", "from-env"),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("bucket = \"from-env\""), "{out}");
    assert!(out.contains("org = \"akimat\""), "{out}");
    assert!(
        !out.contains("hunter2") && !out.contains("tok-123"),
        "{out}"
    );
    assert_eq!(out.matches("\"********\"").count(), 2, "{out}");
}

#[test]
fn bad_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        ("[mqtt]\nqos = 5\n", "`mqtt.qos`"),
        ("[mqtt]\nurll = \"mqtt://x\"\n", "`mqtt.urll`"),
        (
            "[influxdb]\nenabled = true\nurl = \"http://x\"\norg = \"o\"\nbucket = \"b\"\n",
            "`influxdb.token`",
        ),
        ("[http]\nlisten = \"everywhere\"\n", "`http.listen`"),
    ];
    for (i, (toml, key)) in cases.iter().enumerate() {
        let cfg = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&cfg, toml).expect("write");
        for cmd in ["check-config", "run"] {
            let (ok, _, err) = qala(&[cmd, "--config", cfg.to_str().expect("utf-8 path")], &[]);
            assert!(!ok, "{cmd} accepted {toml:?}");
            assert!(err.contains(key), "{cmd} {toml:?}: {err}");
        }
    }
    let (ok, _, err) = qala(&["check-config"], &[("QALA__MQTT__KEEP_ALIVE", "forever")]);
    assert!(!ok && err.contains("mqtt.keep_alive"), "{err}");
}

#[test]
fn demo_stores_readings_of_all_seven_kinds_and_reports_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let (ok, out, err) = qala(
        &[
            "demo",
            "--duration",
            "3s",
            "--data",
            data.to_str().expect("utf-8 path"),
            "--rate",
            "300",
        ],
        &[],
    );
    assert!(ok, "demo failed:\n{out}\n{err}");
    for kind in ["air", "traffic", "water", "heat", "power", "gas", "status"] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(kind))
            .unwrap_or_else(|| panic!("no {kind} row in:\n{out}"));
        let cols: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|c| c.parse().ok())
            .collect();
        assert_eq!(cols.len(), 3, "{line}");
        let (published, stored, malformed) = (cols[0], cols[1], cols[2]);
        assert!(stored > 0, "{line}");
        assert_eq!(published, stored + malformed, "{line}");
    }
    assert!(out.contains("ingest lag"), "{out}");
    let db = data.join("demo.sqlite");
    let kinds = common::sqlite_i64(&db, "SELECT count(DISTINCT kind) FROM readings_view");
    assert_eq!(kinds, 7);
}
