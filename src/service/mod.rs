//! The gRPC service `merit.v1`: a thin shell over the registry, compile and eval, so a gRPC
//! answer and a CLI answer never differ. Health checking, reflection, limits, hot reload,
//! metrics and graceful shutdown live here too.

pub mod codec;
pub mod convert;
pub mod encoded;
pub mod metrics;
mod replay;
mod rpc;
mod shed;
pub mod status;
pub mod storing;
pub mod wire;

use crate::registry::{LoadReport, Registry};
use arc_swap::ArcSwap;
use metrics::Metrics;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Generated protobuf types and tonic stubs of `merit.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs, reason = "generated code")]
pub mod pb {
    tonic::include_proto!("merit.v1");
    include!(concat!(env!("OUT_DIR"), "/merit.v1.serde.rs"));
}

/// The servers of `merit.v1`, with merit's codec ([`codec`]); the requests that hold a record
/// keep it as the bytes it arrived in ([`wire::RawRecord`]), and `Classify` answers with bytes
/// ([`encoded::EncodedResponse`]); every other message is [`pb`]'s.
#[allow(clippy::all, clippy::pedantic, missing_docs, reason = "generated code")]
pub mod inbound {
    include!(concat!(env!("OUT_DIR"), "/inbound/merit.v1.rs"));
}

/// The encoded descriptor set, for server reflection.
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/merit_descriptor.bin"));

/// Where the served rules come from.
#[derive(Clone, Debug)]
pub enum RuleSource {
    /// A directory of `.merit` files, watched for changes.
    Dir(PathBuf),
    /// Rule files given in memory (name, text): the embedded defaults, tests.
    Memory(Vec<(String, String)>),
}

/// How the server runs. Every field has a flag and an environment variable in `merit serve`.
#[derive(Clone, Debug)]
pub struct Config {
    /// The rules to serve.
    pub rules: RuleSource,
    /// Where metrics are served (`GET /metrics`); `None` turns them off.
    pub metrics_listen: Option<SocketAddr>,
    /// Largest request or response message, in bytes.
    pub max_message_bytes: usize,
    /// Requests processed at once; more are answered RESOURCE_EXHAUSTED.
    pub max_concurrent_requests: usize,
    /// Default deadline of a request (a shorter client deadline wins).
    pub request_timeout: Duration,
    /// How often the rules directory is checked for changes; `None`: only on SIGHUP.
    pub reload_interval: Option<Duration>,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// The evaluation store: `sqlite:PATH` or `postgres://...`; `None`: no store.
    pub store: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            rules: RuleSource::Dir(PathBuf::from("rules")),
            metrics_listen: None,
            max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_requests: 256,
            request_timeout: Duration::from_secs(30),
            reload_interval: Some(Duration::from_secs(1)),
            shutdown_grace: Duration::from_secs(30),
            store: None,
        }
    }
}

/// State shared by the handlers: the served rules (swapped atomically) and the metrics.
#[derive(Clone)]
pub struct State {
    /// The registry; each request loads one snapshot and uses it to the end.
    pub registry: Arc<ArcSwap<Registry>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The evaluation store, when the server keeps evaluations.
    pub store: Option<crate::store::Batcher>,
    /// Records of stored `ClassifyBatch` streams being classified at once, across the server.
    pub stored_batch_slots: Arc<tokio::sync::Semaphore>,
}

/// How many records of stored batches are classified and awaiting their commits at once.
const STORED_BATCH_SLOTS: usize = 512;

fn log_reports(reports: &[LoadReport]) -> bool {
    let mut ok = true;
    for r in reports {
        match r {
            LoadReport::Loaded { file, rule_set, hash } => tracing::info!(%file, %rule_set, %hash, "rule set loaded"),
            LoadReport::Removed { file } => {
                tracing::info!(%file, "rule file removed; no longer served")
            }
            LoadReport::Rejected { file, why, kept_previous } => {
                ok = false;
                tracing::error!(%file, kept_previous = *kept_previous, "rule file rejected; it is not served:\n{why}");
            }
        }
    }
    ok
}

fn publish(state: &State, reg: Registry) {
    state.metrics.set_rule_sets(reg.all().map(|l| (l.rs.checked.id.clone(), l.rs.checked.version.clone(), l.rs.hash.clone())).collect());
    state.registry.store(Arc::new(reg));
}

/// Loads the rules once, for start-up.
pub fn initial_registry(rules: &RuleSource) -> Result<Registry, String> {
    match rules {
        RuleSource::Dir(dir) => {
            let (reg, reports) = Registry::load_dir(dir, None)?;
            log_reports(&reports);
            Ok(reg)
        }
        RuleSource::Memory(files) => {
            let mut sets = Vec::new();
            for (name, text) in files {
                match crate::compile::compile(name, text) {
                    Ok((rs, _)) => sets.push((name.clone(), rs)),
                    Err((source, diags)) => {
                        let why: Vec<String> =
                            diags.iter().filter(|d| d.is_error()).map(|d| crate::diagnostic::render_line(&source, d)).collect();
                        return Err(format!("{name} does not compile:\n{}", why.join("\n")));
                    }
                }
            }
            Registry::from_rule_sets(sets)
        }
    }
}

/// A signature of a directory's rule files (names, sizes, modification times), to notice edits.
fn dir_signature(dir: &std::path::Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut sig: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "merit"))
                .map(|e| {
                    let meta = e.metadata().ok();
                    (e.path(), meta.as_ref().map_or(0, std::fs::Metadata::len), meta.and_then(|m| m.modified().ok()))
                })
                .collect()
        })
        .unwrap_or_default();
    sig.sort();
    sig
}

/// Reloads a rules directory whenever its files change or `now` is notified (SIGHUP).
async fn watch(state: State, dir: PathBuf, interval: Option<Duration>, now: Arc<Notify>) {
    let mut last = dir_signature(&dir);
    loop {
        let forced = match interval {
            Some(every) => tokio::select! {
                _ = tokio::time::sleep(every) => false,
                _ = now.notified() => true,
            },
            None => {
                now.notified().await;
                true
            }
        };
        let sig = dir_signature(&dir);
        if !forced && sig == last {
            continue;
        }
        last = sig;
        let current = state.registry.load_full();
        let d = dir.clone();
        let result = tokio::task::spawn_blocking(move || Registry::load_dir(&d, Some(&current))).await;
        match result {
            Ok(Ok((reg, reports))) => {
                let ok = log_reports(&reports);
                state.metrics.reload(ok);
                publish(&state, reg);
            }
            Ok(Err(e)) => {
                state.metrics.reload(false);
                tracing::error!("reload failed: {e}; the served rules are unchanged");
            }
            Err(e) => tracing::error!("reload task failed: {e}"),
        }
    }
}

/// A running server.
pub struct Running {
    /// The gRPC address it listens on.
    pub addr: SocketAddr,
    /// The metrics address, when on.
    pub metrics_addr: Option<SocketAddr>,
    /// Forces a reload, as SIGHUP does.
    pub reload: Arc<Notify>,
    /// The shared state.
    pub state: State,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl Running {
    /// Starts a graceful shutdown and waits until requests in flight are done.
    pub async fn shutdown(mut self) -> Result<(), String> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.map_err(|e| e.to_string())?
    }

    /// Starts a graceful shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for the server to end.
    pub async fn wait(self) -> Result<(), String> {
        self.task.await.map_err(|e| e.to_string())?
    }
}

/// Starts the server on a bound listener (use port 0 for an ephemeral port).
pub async fn start(config: Config, listener: TcpListener) -> Result<Running, String> {
    use inbound::classification_service_server::ClassificationServiceServer;
    use inbound::evaluation_service_server::EvaluationServiceServer;
    use inbound::replay_service_server::ReplayServiceServer;
    use inbound::rule_set_service_server::RuleSetServiceServer;

    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let registry = initial_registry(&config.rules)?;
    let store = match &config.store {
        Some(url) => Some(crate::store::Batcher::start(crate::store::open(url).await.map_err(|e| e.to_string())?)),
        None => None,
    };
    let state = State {
        registry: Arc::new(ArcSwap::from_pointee(Registry::default())),
        metrics: Arc::new(Metrics::default()),
        store,
        stored_batch_slots: Arc::new(tokio::sync::Semaphore::new(STORED_BATCH_SLOTS)),
    };
    publish(&state, registry);

    let reload = Arc::new(Notify::new());
    let mut background = Vec::new();
    if let RuleSource::Dir(dir) = &config.rules {
        background.push(tokio::spawn(watch(state.clone(), dir.clone(), config.reload_interval, reload.clone())));
    }
    let metrics_addr = match config.metrics_listen {
        Some(a) => {
            let l = TcpListener::bind(a).await.map_err(|e| format!("cannot listen for metrics on {a}: {e}"))?;
            let bound = l.local_addr().ok();
            background.push(tokio::spawn(metrics::serve_http(l, state.metrics.clone())));
            bound
        }
        None => None,
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let classification = ClassificationServiceServer::new(rpc::Classifier::new(state.clone()))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let rule_sets = RuleSetServiceServer::new(rpc::RuleSets::new(state.clone()))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let evaluations = EvaluationServiceServer::new(rpc::Evaluations::new(state.clone()))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let replays = ReplayServiceServer::new(replay::Replays::new(state.clone()))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    health_reporter.set_serving::<ClassificationServiceServer<rpc::Classifier>>().await;
    health_reporter.set_serving::<RuleSetServiceServer<rpc::RuleSets>>().await;
    health_reporter.set_serving::<EvaluationServiceServer<rpc::Evaluations>>().await;
    health_reporter.set_serving::<ReplayServiceServer<replay::Replays>>().await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| e.to_string())?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| e.to_string())?;

    // Small answers go out at once: without TCP_NODELAY, Nagle's algorithm holds a response's
    // last frame until the client's delayed ACK, about 40 ms later.
    let incoming = tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |conn| {
        conn.inspect(|sock| {
            if let Err(e) = sock.set_nodelay(true) {
                tracing::warn!("cannot set TCP_NODELAY: {e}");
            }
        })
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let limit = config.max_concurrent_requests.max(1);
    let metrics = state.metrics.clone();
    let timeout = config.request_timeout;
    let task = tokio::spawn(async move {
        let reporter = health_reporter.clone();
        let signal = async move {
            let _ = rx.await;
            tracing::info!("shutting down: draining requests in flight");
            reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
            reporter.set_not_serving::<ClassificationServiceServer<rpc::Classifier>>().await;
            reporter.set_not_serving::<RuleSetServiceServer<rpc::RuleSets>>().await;
            reporter.set_not_serving::<EvaluationServiceServer<rpc::Evaluations>>().await;
            reporter.set_not_serving::<ReplayServiceServer<replay::Replays>>().await;
        };
        let server = tonic::transport::Server::builder()
            .timeout(timeout)
            .layer(shed::ShedLayer::new(limit, metrics))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(classification)
            .add_service(rule_sets)
            .add_service(evaluations)
            .add_service(replays)
            .serve_with_incoming_shutdown(incoming, signal);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            let r = server.await;
            let _ = done_tx.send(());
            r
        });
        let _ = done_rx.await;
        for b in background {
            b.abort();
        }
        match served.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    });
    tracing::info!(%addr, "merit serving");
    Ok(Running { addr, metrics_addr, reload, state, shutdown: Some(tx), task })
}
