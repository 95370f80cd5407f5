//! `merit serve`: the gRPC service with hot reload, metrics and graceful shutdown.

use super::{Exit, RUNTIME_STACK};
use crate::service::{self, Config, RuleSource};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The bundled rule files, embedded so `merit serve` works from any directory.
pub const BUNDLED_RULES: [(&str, &str); 2] = [
    ("rules/reg366.merit", include_str!("../../rules/reg366.merit")),
    ("rules/decree335.merit", include_str!("../../rules/decree335.merit")),
];

/// Options of `merit serve`; each has an environment variable.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Directory of rule files to serve and watch [default: ./rules, else the embedded bundled rules].
    #[arg(long, env = "MERIT_RULES")]
    pub rules: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long, env = "MERIT_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Metrics listen address (`GET /metrics`), or `off`.
    #[arg(long, env = "MERIT_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: String,
    /// Log format: `human` or `json`. Filter with RUST_LOG (default `info`).
    #[arg(long, env = "MERIT_LOG_FORMAT", default_value = "human", value_parser = ["human", "json"])]
    pub log_format: String,
    /// Largest request or response message, in bytes.
    #[arg(long, env = "MERIT_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Requests processed at once; more are answered RESOURCE_EXHAUSTED.
    #[arg(long, env = "MERIT_MAX_CONCURRENT_REQUESTS", default_value_t = 256)]
    pub max_concurrent_requests: usize,
    /// Default request deadline in seconds (a shorter client deadline wins).
    #[arg(long, env = "MERIT_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// How often to look for changed rule files, in milliseconds; 0: only on SIGHUP.
    #[arg(long, env = "MERIT_RELOAD_INTERVAL_MS", default_value_t = 1000)]
    pub reload_interval_ms: u64,
    /// The evaluation store: `sqlite:PATH` (created and migrated on start), `postgres://...`,
    /// or `off`.
    #[arg(long, env = "MERIT_STORE", default_value = "sqlite:merit.db")]
    pub store: String,
    /// Seconds to let requests in flight finish on SIGTERM/SIGINT.
    #[arg(long, env = "MERIT_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
}

/// Sets up logging: `human` or `json`, filtered by RUST_LOG (default `info`).
pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}

impl ServeArgs {
    /// The server configuration these options describe.
    pub fn config(&self) -> Result<Config, String> {
        let rules = match &self.rules {
            Some(dir) => RuleSource::Dir(dir.clone()),
            None if PathBuf::from("rules").is_dir() => RuleSource::Dir(PathBuf::from("rules")),
            None => RuleSource::Memory(BUNDLED_RULES.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect()),
        };
        let metrics_listen = match self.metrics_listen.as_str() {
            "off" | "none" | "" => None,
            a => Some(a.parse().map_err(|e| format!("--metrics-listen `{a}`: {e}"))?),
        };
        Ok(Config {
            rules,
            metrics_listen,
            max_message_bytes: self.max_message_bytes,
            max_concurrent_requests: self.max_concurrent_requests,
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            reload_interval: (self.reload_interval_ms > 0).then(|| Duration::from_millis(self.reload_interval_ms)),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            store: match self.store.as_str() {
                "off" | "none" | "" => None,
                url => Some(url.to_string()),
            },
        })
    }
}

/// Runs the server until SIGTERM or SIGINT; SIGHUP reloads the rules.
pub fn serve(args: &ServeArgs) -> Exit {
    init_logging(&args.log_format);
    let config = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Failed;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(RUNTIME_STACK).build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return Exit::Failed;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return Exit::Io;
            }
        };
        let grace = config.shutdown_grace;
        let mut running = match service::start(config, listener).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Failed;
            }
        };
        if let Some(m) = running.metrics_addr {
            tracing::info!(metrics = %m, "metrics at http://{m}/metrics");
        }
        wait_for_signals(&running.reload).await;
        running.begin_shutdown();
        match tokio::time::timeout(grace, running.wait()).await {
            Ok(Ok(())) => {
                tracing::info!("stopped");
                Exit::Ok
            }
            Ok(Err(e)) => {
                tracing::error!("server failed: {e}");
                Exit::Failed
            }
            Err(_) => {
                tracing::warn!("requests still in flight after {grace:?}; stopping anyway");
                Exit::Ok
            }
        }
    })
}

#[cfg(unix)]
async fn wait_for_signals(reload: &tokio::sync::Notify) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading rules");
                reload.notify_one();
            }
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signals(_reload: &tokio::sync::Notify) {
    let _ = tokio::signal::ctrl_c().await;
}
