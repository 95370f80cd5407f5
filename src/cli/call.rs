//! `merit call`: classify through a running server (a gRPC client), printing the answer's
//! proto3 JSON, which is exactly what `merit classify --json` prints.

use super::{Exit, RUNTIME_STACK};
use crate::service::{convert, pb};
use std::path::PathBuf;

/// Options of `merit call`.
#[derive(clap::Args, Debug)]
pub struct CallArgs {
    /// The server.
    #[arg(long, env = "MERIT_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// The rule set: `id` (the version in effect on the record's period) or `id@version`.
    #[arg(long)]
    pub ruleset: String,
    /// The record JSON file, or `-` for standard input (with --cohort: a JSON array).
    pub input: PathBuf,
    /// Classify a cohort (a JSON array of records) with quotas applied.
    #[arg(long)]
    pub cohort: bool,
    /// Trace detail: none, summary or full.
    #[arg(long, default_value = "summary", value_parser = ["none", "summary", "full"])]
    pub trace: String,
    /// Keep the evaluation in the server's store.
    #[arg(long)]
    pub store: bool,
    /// Idempotency key: a retry with the same key returns the stored answer.
    #[arg(long, default_value = "")]
    pub idempotency_key: String,
}

fn exit_for(code: tonic::Code) -> Exit {
    match code {
        tonic::Code::InvalidArgument => Exit::InvalidRecord,
        tonic::Code::FailedPrecondition => Exit::RuleError,
        tonic::Code::Unavailable => Exit::Io,
        _ => Exit::Failed,
    }
}

/// Sends the record(s) and prints the answer.
pub fn call(args: &CallArgs) -> Exit {
    let text = match super::read(&args.input) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Io;
        }
    };
    let json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {}: not valid JSON: {e}", args.input.display());
            return Exit::InvalidRecord;
        }
    };
    match (&json, args.cohort) {
        (serde_json::Value::Array(_), true) | (serde_json::Value::Object(_), false) => {}
        (_, true) => {
            eprintln!("error: {}: --cohort expects a JSON array of records", args.input.display());
            return Exit::InvalidRecord;
        }
        (_, false) => {
            eprintln!("error: {}: expected a record {{...}}", args.input.display());
            return Exit::InvalidRecord;
        }
    }
    let (id, version) = match args.ruleset.split_once('@') {
        Some((i, v)) => (i.to_string(), Some(v.to_string())),
        None => (args.ruleset.clone(), None),
    };
    let trace = match args.trace.as_str() {
        "none" => pb::TraceDetail::None,
        "full" => pb::TraceDetail::Full,
        _ => pb::TraceDetail::Summary,
    };
    let reference = Some(pb::RuleSetReference { id, version });
    let options = Some(pb::ClassifyOptions { trace: trace as i32, store: args.store });
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().thread_stack_size(RUNTIME_STACK).build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Failed;
        }
    };
    runtime.block_on(async {
        let mut client = match pb::classification_service_client::ClassificationServiceClient::connect(args.server.clone()).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: cannot reach {}: {e}", args.server);
                return Exit::Io;
            }
        };
        let answer = if args.cohort {
            let records = json.as_array().map(|a| a.iter().map(convert::json_record).collect()).unwrap_or_default();
            let req = pb::ClassifyCohortRequest {
                ruleset: reference,
                records,
                options,
                exemption: None,
                idempotency_key: args.idempotency_key.clone(),
            };
            client.classify_cohort(req).await.map(|r| {
                let r = r.into_inner();
                if !r.evaluation_ids.is_empty() {
                    eprintln!("stored as evaluations {}", r.evaluation_ids.join(", "));
                }
                serde_json::to_value(r.classifications)
            })
        } else {
            let req = pb::ClassifyRequest {
                ruleset: reference,
                record: Some(convert::json_record(&json)),
                options,
                idempotency_key: args.idempotency_key.clone(),
            };
            client.classify(req).await.map(|r| {
                let r = r.into_inner();
                if !r.evaluation_id.is_empty() {
                    eprintln!("stored as evaluation {}", r.evaluation_id);
                }
                serde_json::to_value(r.classification)
            })
        };
        match answer {
            Ok(Ok(v)) => {
                outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                Exit::Ok
            }
            Ok(Err(e)) => {
                eprintln!("error: {e}");
                Exit::Failed
            }
            Err(status) => {
                use tonic_types::StatusExt;
                eprintln!("error: {}: {}", super::super::service::metrics::code_name(status.code()), status.message());
                if let Some(bad) = status.get_details_bad_request() {
                    for v in bad.field_violations {
                        eprintln!("  {}: {}", v.field, v.description);
                    }
                }
                exit_for(status.code())
            }
        }
    })
}
