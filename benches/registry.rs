//! The device registry at 100,000 sensors: what the pipeline pays per batch (the unregistered
//! check per message and the last-seen update, one lock per batch of 1,000 readings) and what
//! `GET /api/v1/sensors` costs (the listing built and rendered to JSON), for the whole registry
//! and for one district.
//!
//!   cargo bench --bench registry
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use qala::model::{Kind, Reading, SensorRef, Sphere, TimeSource};
use qala::normalize::catalog;
use qala::registry::listing::{to_json, Filter};
use qala::registry::seen::{screen, Sighting};
use qala::registry::{LastSeen, Registry, SensorInfo, Unregistered};

const SENSORS: usize = 100_000;
const DISTRICTS: usize = 8;
/// 2026-11-24T12:00:00Z
const NOW_NS: i64 = 1_795_521_600_000_000_000;

fn sensor(i: usize) -> SensorRef {
    SensorRef {
        city: "almaty".into(),
        district: format!("district-{}", i % DISTRICTS),
        kind: Kind::Water,
        sensor_id: format!("w-{i:06}"),
    }
}

fn registry() -> Registry {
    Registry::new((0..SENSORS).map(|i| {
        let s = sensor(i);
        SensorInfo {
            population: Some(3),
            register_max: Some(100_000.0),
            latitude: Some(43.25),
            longitude: Some(76.95),
            ..SensorInfo::new(
                s.sensor_id,
                Kind::Water,
                s.city,
                s.district,
                Sphere::HousingUtilities,
                Duration::from_secs(3600),
            )
        }
    }))
}

fn registry_bench(c: &mut Criterion) {
    let reg = registry();
    let refs: Vec<SensorRef> = (0..SENSORS).map(sensor).collect();
    let seen = LastSeen::new();
    // Every sensor seen once (some an hour and a half ago: stale), as after an hour of running.
    seen.record(
        refs.iter().enumerate().map(|(i, s)| Sighting {
            sensor: s,
            device_ns: NOW_NS - (i as i64 % 5400) * 1_000_000_000,
            received_ns: NOW_NS,
        }),
        &reg,
    );
    let volume = catalog::lookup(Kind::Water, "volume").expect("volume");
    let batch: Vec<Reading> = (0..1000)
        .map(|i| Reading {
            sensor: refs[(i * 97) % SENSORS].clone(),
            time_ns: NOW_NS,
            time_source: TimeSource::Device,
            values: vec![(volume, 1.0)],
        })
        .collect();

    let mut g = c.benchmark_group("registry");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("screen 1000 messages", |b| {
        b.iter(|| {
            let mut n = 0;
            for r in &batch {
                let _ = screen(
                    std::slice::from_ref(r),
                    &reg,
                    Unregistered::DeadLetter,
                    &mut n,
                );
            }
            n
        })
    });
    g.bench_function("last seen, one batch of 1000", |b| {
        b.iter(|| {
            seen.record(
                batch.iter().map(|r| Sighting {
                    sensor: &r.sensor,
                    device_ns: r.time_ns,
                    received_ns: NOW_NS,
                }),
                &reg,
            )
        })
    });
    g.throughput(Throughput::Elements(SENSORS as u64));
    g.sample_size(10);
    let mut bytes = 0;
    g.bench_function("GET /api/v1/sensors, 100k devices", |b| {
        b.iter(|| {
            let json = to_json(&reg, &seen, &Filter::default(), NOW_NS).expect("json");
            bytes = json.len();
            json
        })
    });
    let one_district = Filter {
        district: Some("district-3".into()),
        stale: Some(true),
        ..Filter::default()
    };
    g.bench_function("GET /api/v1/sensors?district=..&stale=true", |b| {
        b.iter(|| to_json(&reg, &seen, &one_district, NOW_NS).expect("json"))
    });
    g.finish();
    println!("the whole listing: {bytes} bytes of JSON");
}

criterion_group!(benches, registry_bench);
criterion_main!(benches);
