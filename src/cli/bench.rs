//! `merit bench`: a load generator for the gRPC service. Concurrent clients over loopback call
//! the health check, then Classify with the summary and with the full trace; each phase prints
//! its rate and latency percentiles.

use super::{Exit, RUNTIME_STACK};
use crate::service::{self, Config, RuleSource, convert, pb};
use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes};
use std::time::{Duration, Instant};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;

/// Options of `merit bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A running server; without it, one is started in this process on a loopback port.
    #[arg(long)]
    pub addr: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// HTTP/2 connections shared by the clients.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// The record to classify (JSON) [default: the bundled example].
    #[arg(long)]
    pub record: Option<std::path::PathBuf>,
    /// The rule set id.
    #[arg(long, default_value = "reg366_individual")]
    pub ruleset: String,
    /// Limit each phase to this many requests per second in total (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Add a phase that stores every evaluation (store = true, durable before the answer).
    /// With no --addr, the in-process server keeps them in this SQLite file (removed after).
    #[arg(long)]
    pub stored: bool,
    /// Run only the phases whose names contain this text (e.g. `stored`, `summary`, `health`).
    #[arg(long)]
    pub only: Option<String>,
}

const EXAMPLE: &str = include_str!("../../examples/staff_2025.json");

#[derive(Clone, Copy)]
enum Phase {
    Health,
    Classify(pb::TraceDetail),
    Stored,
}

/// Sends request bodies encoded once and does not decode answers (only their status), so the
/// load generator spends the least of the two cores it shares with the server, as wrk or ghz
/// would; every phase, the health check included, goes through it alike.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = usize;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = usize;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<usize>, tonic::Status> {
        let n = src.remaining();
        src.advance(n);
        Ok(Some(n))
    }
}

/// Runs the phases and prints one line each.
pub fn bench(args: &BenchArgs) -> Exit {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(RUNTIME_STACK).build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Failed;
        }
    };
    runtime.block_on(async {
        let record_text = match &args.record {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", p.display());
                    return Exit::Io;
                }
            },
            None => EXAMPLE.to_string(),
        };
        let json: serde_json::Value = match serde_json::from_str(&record_text) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("error: the record is not JSON: {e}");
                return Exit::InvalidRecord;
            }
        };
        let mut local = None;
        let mut local_db: Option<std::path::PathBuf> = None;
        let addr = match &args.addr {
            Some(a) => a.clone(),
            None => {
                let rules = RuleSource::Memory(super::serve::BUNDLED_RULES.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect());
                let db = std::env::temp_dir().join(format!("merit-bench-{}.db", crate::store::new_id()));
                let store = args.stored.then(|| format!("sqlite:{}", db.display()));
                if args.stored {
                    local_db = Some(db.clone());
                }
                let config = Config { rules, reload_interval: None, max_concurrent_requests: 100_000, store, ..Config::default() };
                let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return Exit::Io;
                    }
                };
                match service::start(config, listener).await {
                    Ok(r) => {
                        let a = r.addr.to_string();
                        local = Some(r);
                        a
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        return Exit::Failed;
                    }
                }
            }
        };
        let mut channels = Vec::new();
        for _ in 0..args.connections.max(1) {
            match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
                Ok(ep) => match ep.connect().await {
                    Ok(c) => channels.push(c),
                    Err(e) => {
                        eprintln!("error: cannot connect to {addr}: {e}");
                        return Exit::Io;
                    }
                },
                Err(e) => {
                    eprintln!("error: {e}");
                    return Exit::Failed;
                }
            }
        }
        outln!("merit bench: {addr}, {} clients over {} connections, {} s per phase", args.concurrency, channels.len(), args.duration_secs);
        let record = convert::json_record(&json);
        let mut phases = vec![
            ("health check", Phase::Health),
            ("Classify, summary trace", Phase::Classify(pb::TraceDetail::Summary)),
            ("Classify, full trace", Phase::Classify(pb::TraceDetail::Full)),
        ];
        if args.stored {
            phases.push(("Classify, stored (summary)", Phase::Stored));
        }
        for (name, phase) in phases.into_iter().filter(|(n, _)| args.only.as_ref().is_none_or(|o| n.contains(o.as_str()))) {
            let (n, errors, mut lat) = run_phase(phase, &channels, args, &record).await;
            lat.sort_unstable();
            let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or_default();
            let secs = args.duration_secs as f64;
            outln!(
                "{name:<26} {:>9.0}/s  p50 {:>7.3} ms  p90 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  ({n} ok, {errors} errors)",
                n as f64 / secs,
                ms(pct(0.5)),
                ms(pct(0.9)),
                ms(pct(0.99)),
                ms(pct(0.999))
            );
        }
        if let Some(r) = local {
            let _ = r.shutdown().await;
            // The in-process store was for this run only.
            if let Some(db) = &local_db {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
                }
            }
        }
        Exit::Ok
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run_phase(
    phase: Phase,
    channels: &[tonic::transport::Channel],
    args: &BenchArgs,
    record: &pb::RecordValue,
) -> (u64, u64, Vec<Duration>) {
    let end = Instant::now() + Duration::from_secs(args.duration_secs);
    let per_client_interval = (args.rate > 0).then(|| Duration::from_secs_f64(args.concurrency as f64 / args.rate as f64));
    let mut tasks = Vec::new();
    let concurrency = args.concurrency.max(1);
    // Each phase sends one request body, encoded once.
    let (path, body) = match phase {
        Phase::Health => ("/grpc.health.v1.Health/Check", tonic_health::pb::HealthCheckRequest { service: String::new() }.encode_to_vec()),
        Phase::Classify(_) | Phase::Stored => (
            "/merit.v1.ClassificationService/Classify",
            pb::ClassifyRequest {
                ruleset: Some(pb::RuleSetReference { id: args.ruleset.clone(), version: None }),
                record: Some(record.clone()),
                options: Some(match phase {
                    Phase::Classify(detail) => pb::ClassifyOptions { trace: detail as i32, store: false },
                    _ => pb::ClassifyOptions { trace: pb::TraceDetail::Summary as i32, store: true },
                }),
                idempotency_key: String::new(),
            }
            .encode_to_vec(),
        ),
    };
    let (path, body) = (PathAndQuery::from_static(path), Bytes::from(body));
    for i in 0..concurrency {
        let Some(ch) = channels.get(i % channels.len().max(1)).cloned() else {
            break;
        };
        let (path, body) = (path.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut grpc = tonic::client::Grpc::new(ch);
            let (mut ok, mut errors, mut lat) = (0u64, 0u64, Vec::with_capacity(16_384));
            // Clients start staggered across one interval, so a paced run does not arrive in bursts.
            let stagger = per_client_interval.map_or(Duration::ZERO, |every| every.mul_f64(i as f64 / concurrency as f64));
            let mut next = Instant::now() + stagger;
            while Instant::now() < end {
                if let Some(every) = per_client_interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += every;
                }
                let t = Instant::now();
                let r = match grpc.ready().await {
                    Ok(()) => grpc.unary(tonic::Request::new(body.clone()), path.clone(), RawCodec).await.map(|_| ()),
                    Err(e) => Err(tonic::Status::unavailable(e.to_string())),
                };
                lat.push(t.elapsed());
                if r.is_ok() { ok += 1 } else { errors += 1 }
            }
            (ok, errors, lat)
        }));
    }
    let (mut n, mut e, mut all) = (0, 0, Vec::new());
    for t in tasks {
        if let Ok((ok, errors, lat)) = t.await {
            n += ok;
            e += errors;
            all.extend(lat);
        }
    }
    (n, e, all)
}
