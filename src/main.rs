//! The `qala` command: run the gateway, check a config, or play the demo.

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
        /// Sensors of each of the six kinds.
        #[arg(long, default_value_t = 4)]
        sensors: usize,
        /// Seed of the simulated fleet.
        #[arg(long, default_value_t = 2026)]
        seed: u64,
    },
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
    }
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
