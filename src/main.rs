//! The `qala` command: run the gateway, check a config, play the demo, or simulate a city.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use qala::config::Settings;
use qala::demo::{self, DemoOptions};
use qala::gateway::Gateway;
use qala::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "qala",
    version,
    about = "Telemetry gateway for smart cities: MQTT in, normalised readings out to InfluxDB and SQLite"
)]
struct Cli {
    /// Log format (filter with RUST_LOG, e.g. RUST_LOG=debug).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway until SIGINT/SIGTERM, then drain.
    Run {
        /// Config file (default: config/default.toml if present). Environment QALA__SECTION__KEY overrides it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the effective config (defaults < file < environment) with secrets masked.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Embedded broker, gateway and a small simulated fleet in one process, then a summary.
    Demo {
        /// How long to publish, e.g. 20s, 2m.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Where the SQLite database goes (demo.sqlite inside).
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        /// Messages per second from the whole fleet.
        #[arg(long, default_value_t = 200)]
        rate: u32,
        /// Sensors of each of the seven kinds (status devices report only their health).
        #[arg(long, default_value_t = 4)]
        sensors: usize,
        /// Seed of the simulated fleet.
        #[arg(long, default_value_t = 2026)]
        seed: u64,
    },
    /// Play a simulated city (simulators/*.toml) against a broker: real time, accelerated, or a
    /// backfill of a past period; report what was published and, with --verify, what was stored.
    Simulate(Box<SimulateArgs>),
    /// The device registry (kept in the gateway's SQLite database, at sqlite.path).
    Sensors {
        #[command(subcommand)]
        command: SensorsCommand,
    },
}

#[derive(Subcommand)]
enum SensorsCommand {
    /// Validate a registry CSV (columns: id, kind, city, district, sphere, expected_interval,
    /// and optionally population, role, free_flow_speed, register_max, latitude, longitude) and
    /// store it: new devices added, known ones updated. A running gateway picks it up within
    /// registry.reload_interval.
    Import {
        /// The CSV file (header row first; see README "Device registry").
        file: PathBuf,
        /// The gateway's config, for sqlite.path (default: config/default.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also remove the devices that are not in the file.
        #[arg(long)]
        replace: bool,
        /// Only validate the file; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// The scenario file: districts, fleets, intervals, formats, faults (see simulators/README.md).
    #[arg(long)]
    scenario: PathBuf,
    /// Write the scenario's device registry to this CSV (for `qala sensors import`) and exit:
    /// nothing is published, no broker is needed.
    #[arg(long)]
    registry_csv: Option<PathBuf>,
    /// The broker the gateway subscribes to.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    broker: String,
    /// How long to run (wall time), for real-time and accelerated runs. Default: until Ctrl-C
    /// (which ends the run the same way: held messages go out, then the report).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Sim time runs this many times faster than the wall clock (60: an hour per minute).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Backfill: generate device times from here (RFC 3339) to --to, as fast as possible.
    #[arg(long, requires = "to")]
    from: Option<String>,
    /// End of the backfill period (RFC 3339).
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// Most messages per second (token bucket); default: as they fall due / as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
    /// QoS of every message, overriding the scenario's.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: Option<u8>,
    /// Report format.
    #[arg(long, value_enum, default_value = "human")]
    report: ReportFormat,
    /// After the run, check the gateway's store: every reading sent is there exactly once.
    #[arg(long)]
    verify: bool,
    /// The gateway's config, to find its store and /metrics (default: config/default.toml).
    #[arg(long)]
    gateway_config: Option<PathBuf>,
    /// Verify against this SQLite file instead of the gateway config's.
    #[arg(long)]
    verify_sqlite: Option<PathBuf>,
    /// Verify against this VictoriaMetrics (its export API) instead.
    #[arg(long)]
    verify_victoria: Option<String>,
    /// The gateway's HTTP address for /metrics (lag, dedup counters), e.g. http://127.0.0.1:8080.
    #[arg(long)]
    gateway: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qala: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckConfig { config } => {
            let settings = Settings::load(config.as_deref())?;
            print!("{}", settings.to_masked_toml());
            Ok(())
        }
        Command::Run { config } => {
            telemetry::init_logging(cli.log_format);
            let settings = Settings::load(config.as_deref())?;
            runtime()?.block_on(async {
                let gateway = Gateway::start(settings).await?;
                wait_for_signal().await?;
                tokio::select! {
                    _ = gateway.shutdown() => {}
                    r = wait_for_signal() => {
                        r?;
                        tracing::warn!("second signal: exiting without finishing the drain; unacked messages will be redelivered");
                    }
                }
                Ok(())
            })
        }
        Command::Demo {
            duration,
            data,
            rate,
            sensors,
            seed,
        } => {
            if std::env::var_os("RUST_LOG").is_none() {
                // The demo's malformed messages are deliberate: the summary reports them.
                std::env::set_var("RUST_LOG", "warn,qala::pipeline=error,rumqttd=off");
            }
            telemetry::init_logging(cli.log_format);
            let summary = runtime()?.block_on(demo::run(DemoOptions {
                duration,
                data_dir: data,
                rate,
                sensors_per_kind: sensors,
                seed,
            }))?;
            summary.print(&mut std::io::stdout())?;
            anyhow::ensure!(
                summary.complete,
                "the demo did not store everything it published"
            );
            Ok(())
        }
        Command::Simulate(args) => simulate(*args, cli.log_format),
        Command::Sensors {
            command:
                SensorsCommand::Import {
                    file,
                    config,
                    replace,
                    dry_run,
                },
        } => import_sensors(&file, config.as_deref(), replace, dry_run),
    }
}

fn import_sensors(
    file: &std::path::Path,
    config: Option<&std::path::Path>,
    replace: bool,
    dry_run: bool,
) -> anyhow::Result<()> {
    use qala::registry::{import, store};
    let reader =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let sensors = import::parse_csv(std::io::BufReader::new(reader))
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if dry_run {
        println!(
            "{}: {} devices, all valid (nothing written: --dry-run)",
            file.display(),
            sensors.len()
        );
        return Ok(());
    }
    let settings = Settings::load(config)?;
    let path = &settings.sqlite.path;
    let mut conn = store::open(path, settings.sqlite.synchronous)?;
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let summary = store::save(&mut conn, &sensors, replace, now)
        .with_context(|| format!("cannot write the registry into {}", path.display()))?;
    print!("{}: {summary}", path.display());
    Ok(())
}

fn simulate(a: SimulateArgs, log_format: LogFormat) -> anyhow::Result<()> {
    use qala::sim::{audit::AuditTarget, run, scenario::Scenario};
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    telemetry::init_logging(log_format);
    let scenario = Scenario::load(&a.scenario)?;
    if let Some(out) = &a.registry_csv {
        let devices = qala::sim::city::City::new(scenario, 0).registry();
        let file = std::fs::File::create(out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        let mut w = std::io::BufWriter::new(file);
        qala::registry::import::write_csv(&mut w, &devices)
            .with_context(|| format!("cannot write {}", out.display()))?;
        std::io::Write::flush(&mut w).with_context(|| format!("cannot write {}", out.display()))?;
        println!("wrote {} devices to {}", devices.len(), out.display());
        return Ok(());
    }
    let parse = |key: &str, t: &str| -> anyhow::Result<i64> {
        chrono::DateTime::parse_from_rfc3339(t)
            .with_context(|| {
                format!("--{key} {t:?} is not RFC 3339 (e.g. 2026-11-01T00:00:00+05:00)")
            })?
            .timestamp_nanos_opt()
            .with_context(|| format!("--{key} {t:?} is out of range"))
    };
    let clock = match (&a.from, &a.to) {
        (Some(f), Some(t)) => {
            let (from_ns, to_ns) = (parse("from", f)?, parse("to", t)?);
            anyhow::ensure!(from_ns < to_ns, "--from must be before --to");
            run::Clock::Backfill { from_ns, to_ns }
        }
        _ => {
            anyhow::ensure!(
                a.speed > 0.0 && a.speed.is_finite(),
                "--speed must be a positive number"
            );
            run::Clock::Live { speed: a.speed }
        }
    };
    if let Some(r) = a.rate {
        anyhow::ensure!(
            r > 0.0 && r.is_finite(),
            "--rate must be a positive number of messages per second"
        );
    }
    let verify = if a.verify {
        let gateway_settings = || Settings::load(a.gateway_config.as_deref());
        let gateway = match &a.gateway {
            Some(g) => Some(g.clone()),
            None => gateway_settings()
                .ok()
                .map(|s| format!("http://{}", s.http.listen)),
        };
        Some(match (&a.verify_sqlite, &a.verify_victoria) {
            (Some(p), _) => AuditTarget::Sqlite {
                path: p.clone(),
                gateway,
            },
            (None, Some(u)) => AuditTarget::Victoria {
                url: u.clone(),
                gateway,
            },
            (None, None) => {
                let s = gateway_settings().context(
                    "--verify needs the gateway's store: --gateway-config, --verify-sqlite or --verify-victoria",
                )?;
                anyhow::ensure!(
                    s.sqlite.enabled,
                    "the gateway keeps readings only in InfluxDB: give --verify-victoria URL (VictoriaMetrics' export API)"
                );
                AuditTarget::Sqlite {
                    path: s.sqlite.path,
                    gateway,
                }
            }
        })
    } else {
        None
    };
    let json = matches!(a.report, ReportFormat::Json);
    let opts = run::SimulateOptions {
        broker: a.broker,
        clock,
        duration: a.duration,
        rate: a.rate,
        qos: a.qos,
        verify,
        progress: !json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let report = runtime()?.block_on(run::simulate(scenario, opts))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", run::render(&report));
    }
    if let Some(audit) = &report.audit {
        anyhow::ensure!(
            audit.lost == 0 && audit.error.is_none(),
            "the audit found {} readings lost{}",
            audit.lost,
            audit
                .error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    anyhow::ensure!(
        report.all_acked,
        "the broker did not acknowledge every QoS-1 message"
    );
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("qala")
        .build()
        .context("cannot start the async runtime")
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for SIGINT")?,
        _ = term.recv() => {}
    }
    tracing::info!("signal received");
    Ok(())
}
