//! The `callbridge` command line: `run` (the daemon), `check-config`, `demo`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::info;

use callbridge::config::{self, LogFormat};

/// mimalloc: the daemon allocates many small, short-lived values per PBX event; it is
/// faster than the system allocator for that and fragments less over months of uptime
/// (benches/pipeline.rs: about +25% events/s).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "callbridge",
    version,
    about = "Connects phone systems (Asterisk AMI) to a CRM (retailCRM API v5)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground; logs go to stderr.
    Run {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a configuration file: exit 0 when good, 1 with one line per problem.
    CheckConfig {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Play recorded calls through the real daemon against built-in Asterisk and
    /// retailCRM simulators on 127.0.0.1, and show what the CRM received.
    Demo {
        /// Replay speed relative to the recordings (1 = real time).
        #[arg(long, default_value_t = 10.0)]
        speed: f64,
    },
    /// Run a recorded AMI stream (a file of raw bytes, greeting first) through the
    /// tracker and print each call's steps and the CRM actions they cause. Offline.
    Replay {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// PBX name used in call ids.
        #[arg(long, default_value = "office")]
        pbx: String,
        /// Extensions that are employees (comma list), besides 2-6 digit numbers.
        #[arg(long, value_delimiter = ',')]
        extensions: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Run { config } => with_runtime(run(config)),
        Command::Demo { speed } => with_runtime(callbridge::demo::run(speed)),
        Command::Replay {
            file,
            pbx,
            extensions,
        } => match callbridge::replay::run(&file, &pbx, &extensions) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("callbridge: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn with_runtime(job: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("callbridge: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(job) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callbridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                eprintln!("warning: {w}");
            }
            println!("{}: ok", path.display());
            println!("{}", cfg.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for problem in &errors.0 {
                println!("{problem}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(path: PathBuf) -> anyhow::Result<()> {
    let cfg = config::load(&path)
        .map_err(|e| anyhow::anyhow!("invalid configuration {}:\n{e}", path.display()))?;
    callbridge::logging::init(&cfg.log.level, cfg.log.format == LogFormat::Json);
    for w in &cfg.warnings {
        tracing::warn!("config: {w}");
    }
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("signal received; shutting down");
        signals.cancel();
    });
    callbridge::daemon::run(cfg, shutdown, None)
        .await
        .context("callbridge stopped with an error")
}

/// SIGTERM (systemd stop) or SIGINT (Ctrl-C).
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
