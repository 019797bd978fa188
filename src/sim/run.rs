//! `qala simulate`: plays a scenario against a broker in real time, accelerated, or as a backfill
//! of a past period as fast as the broker takes it; holds a target rate with a token bucket;
//! shows live rates; reports what was published and acked, per kind; and, with `--verify`, audits
//! the gateway's store afterwards.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::audit::{self, Audit, AuditTarget};
use super::city::{City, Counts, Message};
use super::publish::{PublishError, Publisher};
use super::scenario::Scenario;
use crate::model::Kind;

/// How sim time runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clock {
    /// Sim time = wall time × `speed` from now (1: real time).
    Live { speed: f64 },
    /// A past period, as fast as possible (device times from `from` to `to`).
    Backfill { from_ns: i64, to_ns: i64 },
}

/// Everything `qala simulate` was asked.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    pub broker: String,
    pub clock: Clock,
    /// Live clocks: how long to run (wall time).
    pub duration: Option<Duration>,
    /// Most messages per second (token bucket); None: as fast as due / as the broker takes.
    pub rate: Option<f64>,
    /// Overrides every fleet's QoS.
    pub qos: Option<u8>,
    pub verify: Option<AuditTarget>,
    pub progress: bool,
}

/// The report, human or JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub city: String,
    pub devices: usize,
    pub connections: usize,
    pub wall_seconds: f64,
    pub sim_from: String,
    pub sim_to: String,
    pub published: u64,
    pub acked_by_broker: u64,
    pub all_acked: bool,
    pub broker_errors: u64,
    pub messages_per_second: f64,
    pub readings_per_second: f64,
    pub per_kind: Vec<(String, Counts)>,
    pub total: Counts,
    pub storms: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<Audit>,
}

/// A token bucket: `rate` tokens per second, bursts up to a tenth of a second's worth.
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        Bucket {
            rate,
            tokens: 0.0,
            last: Instant::now(),
        }
    }

    /// How long to wait before one more token is there.
    fn take(&mut self) -> Duration {
        let now = Instant::now();
        let burst = (self.rate / 10.0).max(1.0);
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Duration::ZERO
        } else {
            let wait = (1.0 - self.tokens) / self.rate;
            self.tokens -= 1.0;
            Duration::from_secs_f64(wait)
        }
    }
}

fn fmt_time(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Plays the scenario; returns the report (audited when asked).
pub async fn simulate(scenario: Scenario, opts: SimulateOptions) -> Result<Report, PublishError> {
    let wall_start = Instant::now();
    let now_ns = crate::ingest::mqtt::now_ns();
    // An accelerated run must not report from the future (the gateway refuses device times
    // past its skew): it starts far enough back to end now.
    let start_ns = match (opts.clock, opts.duration) {
        (Clock::Live { speed }, Some(d)) if speed > 1.0 => {
            now_ns - ((speed - 1.0) * d.as_secs_f64() * 1e9) as i64
        }
        (Clock::Live { .. }, _) => now_ns,
        (Clock::Backfill { from_ns, .. }, _) => from_ns,
    };
    let name = scenario.name.clone();
    let city_name = scenario.city.clone();
    let storm_every = scenario.faults.reconnect_storm_every;
    let mut city = City::new(scenario, start_ns);
    let prefix = format!("qala-sim-{}-{}", city_name, std::process::id());
    let mut publisher = Publisher::connect(&opts.broker, city.connections, &prefix)?;
    let bar = if opts.progress {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        Some(b)
    } else {
        None
    };
    let mut bucket = opts.rate.filter(|r| *r > 0.0).map(Bucket::new);
    let mut out: Vec<Message> = Vec::with_capacity(4096);
    let mut storms = 0u32;
    let mut last_storm = Instant::now();
    let mut last_draw = Instant::now();
    let mut sim_now = start_ns;
    // Ctrl-C ends the run the way --duration does: what is held goes out, then the report.
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let signal = {
        let flag = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let step_ns: i64 = 100_000_000; // sim time advances in steps of 100 ms at most per send round
    loop {
        // Where sim time stands now, and whether the run is over.
        let (target, done) = match opts.clock {
            Clock::Live { speed } => {
                let elapsed = wall_start.elapsed();
                let over = opts.duration.is_some_and(|d| elapsed >= d);
                // Never past the present: without a duration an accelerated run catches up
                // with the wall clock and goes on in real time.
                let wall_now = crate::ingest::mqtt::now_ns();
                let sim = start_ns + (elapsed.as_secs_f64() * speed * 1e9) as i64;
                (sim.min(wall_now), over)
            }
            Clock::Backfill { to_ns, .. } => {
                let next = city.next_due().unwrap_or(to_ns);
                (next.max(sim_now + step_ns).min(to_ns), sim_now >= to_ns)
            }
        };
        if done || interrupted.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        out.clear();
        city.advance(target, &mut out);
        sim_now = target;
        for m in out.drain(..) {
            if let Some(b) = bucket.as_mut() {
                let wait = b.take();
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            let qos = opts.qos.unwrap_or(m.qos);
            publisher
                .publish(m.connection, m.topic, m.payload, qos)
                .await?;
        }
        if !storm_every.is_zero() && last_storm.elapsed() >= storm_every {
            publisher.storm().await;
            storms += 1;
            last_storm = Instant::now();
        }
        if let Some(b) = &bar {
            if last_draw.elapsed() >= Duration::from_millis(250) {
                last_draw = Instant::now();
                let t = city.total();
                let secs = wall_start.elapsed().as_secs_f64().max(1e-9);
                let s = &publisher.stats;
                b.set_message(format!(
                    "sim {}  published {}  acked {}  {:.0} msg/s  malformed {}  duplicates {}",
                    fmt_time(sim_now),
                    s.published.load(std::sync::atomic::Ordering::Relaxed),
                    s.acked.load(std::sync::atomic::Ordering::Relaxed),
                    t.messages as f64 / secs,
                    t.malformed,
                    t.duplicates
                ));
            }
        }
        if matches!(opts.clock, Clock::Live { .. }) {
            // Wake when the next message is due, or in 100 ms at most.
            let speed = match opts.clock {
                Clock::Live { speed } => speed,
                Clock::Backfill { .. } => 1.0,
            };
            let next = city.next_due().unwrap_or(sim_now + step_ns);
            let wait_ns = ((next - sim_now) as f64 / speed).clamp(0.0, 1e8);
            tokio::time::sleep(Duration::from_nanos(wait_ns as u64)).await;
        }
    }
    signal.abort();
    // What faults held back goes out now: late messages, offline backlogs, swapped pairs.
    out.clear();
    city.flush(&mut out);
    for m in out.drain(..) {
        let qos = opts.qos.unwrap_or(m.qos);
        publisher
            .publish(m.connection, m.topic, m.payload, qos)
            .await?;
    }
    let connections = publisher.connections();
    let stats = publisher.stats.clone();
    let all_acked = publisher.finish(Duration::from_secs(60)).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let wall = wall_start.elapsed().as_secs_f64();
    let total = city.total();
    let per_kind: Vec<(String, Counts)> = Kind::ALL
        .iter()
        .zip(city.counts.iter())
        .filter(|(_, c)| c.messages > 0)
        .map(|(k, c)| (k.as_str().to_owned(), c.clone()))
        .collect();
    let published = stats.published.load(std::sync::atomic::Ordering::Relaxed);
    let mut report = Report {
        scenario: name,
        city: city_name,
        devices: city.sensor_ids.len(),
        connections,
        wall_seconds: wall,
        sim_from: fmt_time(start_ns),
        sim_to: fmt_time(sim_now),
        published,
        acked_by_broker: stats.acked.load(std::sync::atomic::Ordering::Relaxed),
        all_acked,
        broker_errors: stats.errors.load(std::sync::atomic::Ordering::Relaxed),
        messages_per_second: published as f64 / wall.max(1e-9),
        readings_per_second: total.readings as f64 / wall.max(1e-9),
        per_kind,
        total,
        storms,
        audit: None,
    };
    if let Some(target) = &opts.verify {
        report.audit = Some(audit::verify(&city, target, now_ns).await);
    }
    Ok(report)
}

/// The human report.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Qala simulate: {} ({}), {} devices on {} connections, {:.1} s, sim {} → {}",
        r.scenario, r.city, r.devices, r.connections, r.wall_seconds, r.sim_from, r.sim_to
    );
    let _ = writeln!(
        s,
        "  {:<8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "kind", "messages", "readings", "malformed", "duplicates", "out-order", "late", "backlog"
    );
    for (k, c) in r
        .per_kind
        .iter()
        .chain(std::iter::once(&("total".to_owned(), r.total.clone())))
    {
        let _ = writeln!(
            s,
            "  {:<8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
            k, c.messages, c.readings, c.malformed, c.duplicates, c.out_of_order, c.late, c.backlog
        );
    }
    let _ = writeln!(
        s,
        "  published {} (acked by the broker {}{}), {:.0} msg/s, {:.0} readings/s, broker errors {}, reconnect storms {}",
        r.published,
        r.acked_by_broker,
        if r.all_acked { "" } else { ", NOT ALL" },
        r.messages_per_second,
        r.readings_per_second,
        r.broker_errors,
        r.storms
    );
    if let Some(a) = &r.audit {
        s.push_str(&audit::render(a));
    }
    s
}
