//! Decode + normalise, per payload format: readings (metric values) per second on one core.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use qala::normalize::{self, Policy};

const NOW_NS: i64 = 1_795_143_600_000_000_000;

fn json_object(c: &mut Criterion) {
    let payload = br#"{"ts":1795143600000,"pm2_5":12.5,"pm10":20.1,"no2":21,"temperature":265.15,"units":{"no2":"ppb","temperature":"K"}}"#;
    let topic = "city/almaty/almaly/air/st-001";
    let policy = Policy::default();
    let mut g = c.benchmark_group("decode+normalise");
    g.throughput(Throughput::Elements(4));
    g.bench_function("json object, 4 metrics", |b| {
        b.iter(|| {
            let r = normalize::process(topic, payload, NOW_NS, &policy).expect("valid");
            std::hint::black_box(r);
        })
    });
    g.finish();
}

fn senml_pack(c: &mut Criterion) {
    let mut records = vec![format!(
        r#"{{"bn":"urn:dev:st-001:","bt":1795143600,"n":"pm2_5","u":"ug/m3","v":12.5}}"#
    )];
    for i in 1..10 {
        records.push(format!(r#"{{"n":"pm2_5","t":{i},"v":{}.5}}"#, 10 + i));
    }
    let payload = format!("[{}]", records.join(","));
    let topic = "city/almaty/almaly/air/st-001";
    let policy = Policy::default();
    let mut g = c.benchmark_group("decode+normalise");
    g.throughput(Throughput::Elements(10));
    g.bench_function("senml pack, 10 records", |b| {
        b.iter(|| {
            let r = normalize::process(topic, payload.as_bytes(), NOW_NS, &policy).expect("valid");
            std::hint::black_box(r);
        })
    });
    g.finish();
}

criterion_group!(benches, json_object, senml_pack);
criterion_main!(benches);
