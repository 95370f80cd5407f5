//! Prometheus-style metrics: requests and latencies per method and status code, outcomes by
//! level, reloads, and the served rule sets; served as text on a small HTTP endpoint.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 13] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counters and histograms of one server.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    outcomes: Mutex<BTreeMap<(String, String), u64>>,
    reloads_ok: AtomicU64,
    shed: AtomicU64,
    reloads_failed: AtomicU64,
    rule_sets: Mutex<Vec<(String, String, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    /// Records one request's status code and latency.
    pub fn observe(&self, method: &'static str, code: tonic::Code, took: Duration) {
        *lock(&self.requests).entry((method, code_name(code))).or_default() += 1;
        let secs = took.as_secs_f64();
        let mut lat = lock(&self.latency);
        let h = lat.entry(method).or_default();
        h.count += 1;
        h.sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b
                && let Some(c) = h.counts.get_mut(i)
            {
                *c += 1;
            }
        }
    }

    /// Counts an outcome of a rule set.
    pub fn outcome(&self, ruleset: &str, outcome: &str) {
        *lock(&self.outcomes).entry((ruleset.to_string(), outcome.to_string())).or_default() += 1;
    }

    /// Counts a request refused by the concurrency limit.
    pub fn shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a reload.
    pub fn reload(&self, ok: bool) {
        if ok { &self.reloads_ok } else { &self.reloads_failed }.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the served rule sets (id, version, hash).
    pub fn set_rule_sets(&self, sets: Vec<(String, String, String)>) {
        *lock(&self.rule_sets) = sets;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP merit_requests_total gRPC requests by method and status code.\n# TYPE merit_requests_total counter\n");
        for ((m, c), n) in lock(&self.requests).iter() {
            let _ = writeln!(out, "merit_requests_total{{method=\"{m}\",code=\"{c}\"}} {n}");
        }
        out.push_str("# HELP merit_request_seconds gRPC request latency.\n# TYPE merit_request_seconds histogram\n");
        for (m, h) in lock(&self.latency).iter() {
            for (b, c) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(out, "merit_request_seconds_bucket{{method=\"{m}\",le=\"{b}\"}} {c}");
            }
            let _ = writeln!(out, "merit_request_seconds_bucket{{method=\"{m}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "merit_request_seconds_sum{{method=\"{m}\"}} {}", h.sum);
            let _ = writeln!(out, "merit_request_seconds_count{{method=\"{m}\"}} {}", h.count);
        }
        out.push_str("# HELP merit_outcomes_total Classifications by rule set and outcome.\n# TYPE merit_outcomes_total counter\n");
        for ((r, o), n) in lock(&self.outcomes).iter() {
            let _ = writeln!(out, "merit_outcomes_total{{ruleset=\"{}\",outcome=\"{}\"}} {n}", escape(r), escape(o));
        }
        out.push_str("# HELP merit_requests_shed_total Requests refused RESOURCE_EXHAUSTED by the concurrency limit.\n# TYPE merit_requests_shed_total counter\n");
        let _ = writeln!(out, "merit_requests_shed_total {}", self.shed.load(Ordering::Relaxed));
        out.push_str("# HELP merit_reloads_total Rule reloads by result.\n# TYPE merit_reloads_total counter\n");
        let _ = writeln!(out, "merit_reloads_total{{result=\"ok\"}} {}", self.reloads_ok.load(Ordering::Relaxed));
        let _ = writeln!(out, "merit_reloads_total{{result=\"failed\"}} {}", self.reloads_failed.load(Ordering::Relaxed));
        out.push_str("# HELP merit_rule_set_info Served rule-set versions.\n# TYPE merit_rule_set_info gauge\n");
        for (id, v, h) in lock(&self.rule_sets).iter() {
            let _ = writeln!(out, "merit_rule_set_info{{id=\"{}\",version=\"{}\",hash=\"{h}\"}} 1", escape(id), escape(v));
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The status code's canonical name.
pub fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Serves `GET /metrics` on a listener until the task is dropped.
pub async fn serve_http(listener: TcpListener, metrics: std::sync::Arc<Metrics>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            while len < buf.len() {
                let read = tokio::time::timeout(Duration::from_secs(5), sock.read(buf.get_mut(len..).unwrap_or_default())).await;
                match read {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => len += n,
                }
                if buf.get(..len).is_some_and(|b| b.windows(4).any(|w| w == b"\r\n\r\n")) {
                    break;
                }
            }
            let head = String::from_utf8_lossy(buf.get(..len).unwrap_or_default()).into_owned();
            let (status, body) = if head.starts_with("GET /metrics ") || head.starts_with("GET /metrics?") {
                ("200 OK", metrics.render())
            } else {
                ("404 Not Found", "not found; metrics are at /metrics\n".to_string())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(response.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
