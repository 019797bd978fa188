//! Decode + normalise, per payload format: the whole pure path of one message (route, topic,
//! decode, identity, units, ranges) on one core. Throughput is in values (one metric of one
//! sensor at one time, what a sink stores as one row): criterion's "elem/s".
//!
//!   cargo bench --bench decode
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use qala::ingest::route::{RouteSettings, Routes};
use qala::normalize::{process_routed, MissingTimestamp, Policy};

/// 2026-11-20T10:00:00Z (+ a minute, so the payloads' times are in the past).
const NOW_NS: i64 = 1_795_168_860_000_000_000;

fn routes() -> Routes {
    #[derive(serde::Deserialize)]
    struct File {
        routes: Vec<RouteSettings>,
    }
    let mut text = include_str!("../config/routes.example.toml").to_owned();
    text.push_str("\n[[routes]]\nfilter = \"cbor/#\"\ntemplate = \"cbor/{city}/{district}/{kind}/{sensor_id}\"\nformat = \"senml-cbor\"\n");
    let file: File = toml::from_str(&text).expect("routes");
    Routes::compile(&file.routes).expect("routes compile")
}

fn senml_json_pack() -> String {
    let mut records = vec![
        r#"{"bn":"urn:dev:st-001:","bt":1795168800,"n":"pm2_5","u":"ug/m3","v":12.5}"#.to_owned(),
    ];
    for i in 1..10 {
        records.push(format!(r#"{{"n":"pm2_5","t":{i},"v":{}.5}}"#, 10 + i));
    }
    format!("[{}]", records.join(","))
}

/// The same pack in CBOR (RFC 8428 §6 labels: bn -2, bt -3, n 0, u 1, v 2, t 6).
fn senml_cbor_pack() -> Vec<u8> {
    use ciborium::value::{Integer, Value};
    let label = |l: i64| Value::Integer(Integer::from(l));
    let mut records = vec![Value::Map(vec![
        (label(-2), Value::Text("urn:dev:st-001:".into())),
        (label(-3), Value::Integer(Integer::from(1_795_168_800i64))),
        (label(0), Value::Text("pm2_5".into())),
        (label(1), Value::Text("ug/m3".into())),
        (label(2), Value::Float(12.5)),
    ])];
    for i in 1..10 {
        records.push(Value::Map(vec![
            (label(0), Value::Text("pm2_5".into())),
            (label(6), Value::Integer(Integer::from(i))),
            (label(2), Value::Float(10.5 + i as f64)),
        ]));
    }
    let mut out = Vec::new();
    ciborium::into_writer(&Value::Array(records), &mut out).expect("cbor");
    out
}

fn formats(c: &mut Criterion) {
    let routes = routes();
    let policy = Policy {
        missing_timestamp: MissingTimestamp::Reject,
        ..Policy::default()
    };
    let senml = senml_json_pack();
    let cbor = senml_cbor_pack();
    let line: String = (0..10)
        .map(|i| format!("air,district=almaly,sensor_id=lp-{i} pm2_5=12.5,no2=21i 1795168800000\n"))
        .collect();
    let cases: Vec<(&str, &str, &[u8], u64)> = vec![
        (
            "json object, 4 metrics",
            "city/almaty/almaly/air/st-001",
            br#"{"ts":1795168800000,"pm2_5":12.5,"pm10":20.1,"no2":21,"temperature":265.15,"units":{"no2":"ppb","temperature":"K"}}"#,
            4,
        ),
        ("senml json pack, 10 records", "city/almaty/almaly/air/st-001", senml.as_bytes(), 10),
        ("senml cbor pack, 10 records", "cbor/almaty/almaly/air/st-001", &cbor, 10),
        (
            "chirpstack uplink (mapped json), 2 metrics",
            "application/7/device/0101010101010101/event/up",
            br#"{"deduplicationId":"3ac7e3c4-4401-4b8d-9386-a5c902f9202d","time":"2026-11-20T10:00:00+00:00","deviceInfo":{"tenantId":"52f14cd4","applicationId":"7","applicationName":"water","deviceName":"m-17","devEui":"0101010101010101","tags":{"district":"medeu"}},"devAddr":"00189440","fCnt":42,"fPort":1,"data":"AQID","object":{"volume":12345.5,"flow":0.25},"rxInfo":[{"gatewayId":"0016c001f153a14c","rssi":-57,"snr":10.0}]}"#,
            2,
        ),
        ("line protocol, 10 lines × 2 fields", "lp/almaty", line.as_bytes(), 20),
        ("plain value", "plain/almaty/almaly/air/pv-1/pm10", b"33.25", 1),
    ];
    let mut g = c.benchmark_group("decode+normalise");
    for (name, topic, payload, values) in cases {
        let stored: usize = process_routed(&routes, topic, payload, NOW_NS, &policy)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .iter()
            .map(|r| r.values.len())
            .sum();
        assert_eq!(stored as u64, values, "{name}");
        g.throughput(Throughput::Elements(values));
        g.bench_function(name, |b| {
            b.iter(|| {
                let r = process_routed(&routes, topic, payload, NOW_NS, &policy);
                std::hint::black_box(r)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, formats);
criterion_main!(benches);
