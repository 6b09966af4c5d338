//! The `callbridge` command line: `run` (the daemon), `check-config`, `demo`, `replay`,
//! `outbox`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::info;

use callbridge::config::{self, LogFormat};
use callbridge::store::ActionFilter;
use callbridge::tools::outbox::OutboxCommand;

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
    /// Print the link that opens an employee's operator panel (`[panel] enabled`), signed
    /// with `[http] link_secret`; it works until the `--ttl` runs out.
    PanelLink {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// The employee's extension.
        #[arg(long)]
        extension: String,
        /// How long the link works (`30d`, `12h`).
        #[arg(long, default_value = "30d")]
        ttl: String,
    },
    /// Play recorded calls through the real daemon against built-in Asterisk and
    /// retailCRM simulators on 127.0.0.1, and show what the CRM received.
    Demo {
        /// Replay speed relative to the recordings (1 = real time).
        #[arg(long, default_value_t = 10.0)]
        speed: f64,
        /// Which CRM simulator the calls go to: `retailcrm` or `creatio`.
        #[arg(long, value_enum, default_value_t = DemoCrm::Retailcrm)]
        crm: DemoCrm,
    },
    /// Run a recorded AMI stream (a file of raw bytes, greeting first) or FreeSWITCH
    /// event socket stream (`event plain`) through the tracker and print each call's
    /// steps and the CRM actions they cause. Offline.
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
    /// Load run: an office of simultaneous calls from a simulated Asterisk into a real
    /// `callbridge run` (started here, or --daemon-pid) and a simulated retailCRM, with
    /// ring → pop-up and hang-up → history latency, the daemon's CPU and memory, and a
    /// check of every call's CRM effects.
    Load(LoadArgs),
    /// Inspect and repair the outbox of CRM actions; works while the daemon runs.
    Outbox {
        /// Configuration file (only `[store] url` is read). Default: $CALLBRIDGE_CONFIG,
        /// else /etc/callbridge/callbridge.toml.
        #[arg(long, short, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        /// Database URL, instead of the configuration's `[store] url`.
        #[arg(long, value_name = "URL", global = true)]
        store: Option<String>,
        #[command(subcommand)]
        command: OutboxSub,
    },
}

/// `callbridge load`'s options (see `Command::Load`).
#[derive(clap::Args)]
struct LoadArgs {
    /// The simulated PBX: asterisk (AMI) or freeswitch (event socket).
    #[arg(long, value_parser = ["asterisk", "freeswitch"], default_value = "asterisk")]
    pbx: String,
    /// How many calls in all.
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// At most this many calls in progress at once.
    #[arg(long, default_value_t = 1_000)]
    concurrent: usize,
    /// New calls per second (200/s, 600/min).
    #[arg(long, default_value = "200/s", value_parser = callbridge::tools::load::office::parse_rate)]
    rate: f64,
    /// Stop starting calls after this long (120s, 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// How much faster than recorded the calls go. Default: fast enough for
    /// --concurrent calls at --rate (never slower than recorded).
    #[arg(long)]
    speed: Option<f64>,
    /// How long the simulated CRM takes to answer each request.
    #[arg(long, default_value = "30ms", value_parser = humantime::parse_duration)]
    crm_latency: std::time::Duration,
    /// The CRM's rate limit, kept by both the simulator and the daemon: none, real
    /// (retailCRM's 10/s, 40/s for telephony) or GENERAL/TELEPHONY like 20/80.
    #[arg(long, default_value = "none", value_parser = callbridge::tools::load::office::parse_rate_limit)]
    crm_rate_limit: callbridge::tools::load::office::CrmLimit,
    /// The daemon's [store] url (default: SQLite in a temporary directory).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Measure a `callbridge run` already running with this pid, configured for
    /// --ami-listen (the PBX simulator, AMI or event socket) and --crm-listen (AMI user
    /// callbridge, secret/password load-run-secret, CRM key demo-key), instead of
    /// starting one.
    #[arg(long, value_name = "PID")]
    daemon_pid: Option<u32>,
    #[arg(long, default_value = "127.0.0.1:0")]
    ami_listen: std::net::SocketAddr,
    #[arg(long, default_value = "127.0.0.1:0")]
    crm_listen: std::net::SocketAddr,
    /// After the last call, how long to wait for its records.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    drain: std::time::Duration,
    /// Also write the figures to this file as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

impl LoadArgs {
    /// The run's options, and where `--json` writes.
    fn into_options(
        self,
    ) -> (
        callbridge::tools::load::office::LoadOptions,
        Option<PathBuf>,
    ) {
        use callbridge::config::PbxKind;
        use callbridge::tools::load::office::{default_progress, Daemon, LoadOptions};
        let options = LoadOptions {
            pbx: if self.pbx == "freeswitch" {
                PbxKind::FreeSwitch
            } else {
                PbxKind::Asterisk
            },
            calls: self.calls,
            concurrent: self.concurrent,
            rate: self.rate,
            duration: self.duration,
            speed: self.speed,
            crm_latency: self.crm_latency,
            crm_rate_limit: self.crm_rate_limit.0,
            daemon: match self.daemon_pid {
                Some(pid) => Daemon::Pid(pid),
                None => Daemon::Spawn { store: self.store },
            },
            ami_listen: self.ami_listen,
            crm_listen: self.crm_listen,
            drain: self.drain,
            progress: default_progress(),
        };
        (options, self.json)
    }
}

/// The CRM of `callbridge demo`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DemoCrm {
    Retailcrm,
    Creatio,
}

#[derive(Subcommand)]
enum OutboxSub {
    /// List actions, oldest first.
    List {
        /// Only actions in this state (failed = pending after a failed attempt).
        #[arg(long, value_parser = ["pending", "failed", "dead", "done", "all"], default_value = "all")]
        state: String,
        /// At most this many lines.
        #[arg(long, default_value_t = 200)]
        limit: i64,
    },
    /// Put a dead (or dropped) action back in the queue, or every dead one.
    Retry {
        #[arg(
            value_name = "ID",
            required_unless_present = "all_dead",
            conflicts_with = "all_dead"
        )]
        id: Option<i64>,
        #[arg(long)]
        all_dead: bool,
    },
    /// Take an undelivered action out of delivery for good (kept as `dropped`).
    Drop {
        #[arg(value_name = "ID")]
        id: i64,
        /// Confirm: nothing is sent for this action afterwards.
        #[arg(long)]
        yes: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::PanelLink {
            config,
            extension,
            ttl,
        } => panel_link(&config, &extension, &ttl),
        Command::Run { config } => with_runtime(run(config)),
        Command::Demo { speed, crm } => with_runtime(match crm {
            DemoCrm::Retailcrm => Box::pin(callbridge::tools::demo::run(speed))
                as std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>>>>,
            DemoCrm::Creatio => Box::pin(callbridge::tools::demo::run_creatio(speed)),
        }),
        Command::Load(args) => {
            let (options, json) = args.into_options();
            with_runtime(async move {
                let report = callbridge::tools::load::office::run(options).await?;
                print!("{}", report.text());
                if let Some(path) = json {
                    callbridge::tools::load::office::write_json(&report, &path)?;
                }
                Ok(())
            })
        }
        Command::Replay {
            file,
            pbx,
            extensions,
        } => match callbridge::tools::replay::run(&file, &pbx, &extensions) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("callbridge: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Outbox {
            config,
            store,
            command,
        } => match outbox_store_url(config, store) {
            Ok(url) => with_runtime(async move {
                let mut out = std::io::stdout().lock();
                callbridge::tools::outbox::run(&url, outbox_command(command), &mut out).await
            }),
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

/// `callbridge panel-link`: one line, the link; errors name what is wrong.
fn panel_link(path: &std::path::Path, extension: &str, ttl: &str) -> ExitCode {
    let cfg = match config::load(path) {
        Ok(cfg) => cfg,
        Err(errors) => {
            for problem in &errors.0 {
                eprintln!("{problem}");
            }
            return ExitCode::FAILURE;
        }
    };
    let fail = |message: String| {
        eprintln!("{message}");
        ExitCode::FAILURE
    };
    if !cfg.panel.enabled {
        return fail("panel.enabled: the panel is off; set [panel] enabled = true".into());
    }
    if cfg.http.link_secret.is_empty() {
        return fail(
            "http.link_secret: missing; panel links are signed with it (and must outlive a restart)".into(),
        );
    }
    let extension = extension.trim();
    if extension.is_empty() || extension.len() > 32 {
        return fail(format!(
            "--extension: expected an extension like 101, got {extension:?}"
        ));
    }
    let ttl = match humantime::parse_duration(ttl) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            return fail(format!(
                "--ttl: expected a duration like 30d or 12h, got {ttl:?}"
            ))
        }
    };
    let expires = callbridge::time::Timestamp(
        callbridge::time::Timestamp::now()
            .0
            .saturating_add(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX)),
    );
    let access = callbridge::panel::PanelAccess::new(callbridge::links::LinkKey::new(
        cfg.http.link_secret.expose(),
    ));
    println!("{}", access.link(&cfg.http.public_url, extension, expires));
    ExitCode::SUCCESS
}

fn outbox_command(sub: OutboxSub) -> OutboxCommand {
    match sub {
        OutboxSub::List { state, limit } => OutboxCommand::List {
            filter: match state.as_str() {
                "pending" => ActionFilter::Pending,
                "failed" => ActionFilter::Failed,
                "dead" => ActionFilter::Dead,
                "done" => ActionFilter::Done,
                _ => ActionFilter::All,
            },
            limit,
        },
        OutboxSub::Retry { id, all_dead } => OutboxCommand::Retry { id, all_dead },
        OutboxSub::Drop { id, yes } => OutboxCommand::Drop { id, yes },
    }
}

/// Where the outbox lives: `--store`, else the configuration's `[store] url`.
fn outbox_store_url(config: Option<PathBuf>, store: Option<String>) -> anyhow::Result<String> {
    if let Some(url) = store {
        return Ok(url);
    }
    let path = config
        .or_else(|| std::env::var_os("CALLBRIDGE_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/etc/callbridge/callbridge.toml"));
    config::load_store_url(&path).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn run(path: PathBuf) -> anyhow::Result<()> {
    let cfg = config::load(&path)
        .map_err(|e| anyhow::anyhow!("invalid configuration {}:\n{e}", path.display()))?;
    callbridge::ops::logging::init(&cfg.log.level, cfg.log.format == LogFormat::Json);
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
    let (reload_tx, reloads) = tokio::sync::mpsc::channel(1);
    tokio::spawn(reload_on_sighup(path, reload_tx));
    callbridge::daemon::run_reloadable(cfg, shutdown, None, reloads)
        .await
        .context("callbridge stopped with an error")
}

/// SIGHUP (`systemctl reload`): reads the configuration file again; a valid one goes to
/// the daemon, an invalid one is logged key by key and the running configuration stays.
async fn reload_on_sighup(path: PathBuf, reloads: tokio::sync::mpsc::Sender<config::Config>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reloading the configuration needs a restart");
            return;
        };
        while hup.recv().await.is_some() {
            info!(config = %path.display(), "SIGHUP: reading the configuration again");
            match config::load(&path) {
                Ok(cfg) => {
                    for w in &cfg.warnings {
                        tracing::warn!("config: {w}");
                    }
                    if reloads.send(cfg).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    for line in e.to_string().lines() {
                        tracing::error!("configuration not reloaded: {line}");
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, reloads);
    }
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
