//! The RPC handlers of `merit.v1`. Each request takes one snapshot of the registry and keeps
//! it to the end, so a reload never changes the rules under a request in flight.

use super::{State, convert, pb, status};
use crate::cohort::{Exemption, classify_cohort};
use crate::date;
use crate::eval::record::{self, Record};
use crate::eval::{self, TraceLevel};
use crate::registry::{Loaded, Registry};
use serde_json::Value as Json;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

fn trace_level(options: Option<&pb::ClassifyOptions>) -> TraceLevel {
    match options.map(|o| o.trace()) {
        Some(pb::TraceDetail::None) => TraceLevel::None,
        Some(pb::TraceDetail::Full) => TraceLevel::Full,
        _ => TraceLevel::Summary,
    }
}

/// Picks the rule set: the version asked for, or the one in effect on the record's period date.
fn resolve(reg: &Registry, reference: Option<&pb::RuleSetReference>, record: &Json) -> Result<Arc<Loaded>, Status> {
    let Some(r) = reference.filter(|r| !r.id.is_empty()) else {
        return Err(status::invalid_record(
            &[record::FieldError { path: "ruleset.id".into(), message: "required: the rule set to use".into() }],
            "",
        ));
    };
    let on = match &r.version {
        Some(_) => None,
        None => reg.period_field(&r.id).and_then(|f| record.get(&f).and_then(Json::as_str).and_then(date::parse_period)).map(|(_, d)| d),
    };
    reg.resolve(&r.id, r.version.as_deref(), on).map_err(|e| status::not_found(&e))
}

fn code_of<T>(r: &Result<T, Status>) -> tonic::Code {
    match r {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    }
}

/// The remaining time of a request, from its `grpc-timeout` header.
fn deadline<T>(req: &Request<T>) -> Option<Instant> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    Instant::now().checked_add(d)
}

/// `Classify`, `ClassifyBatch`, `ClassifyCohort`.
pub struct Classifier {
    state: State,
}

impl Classifier {
    pub(super) fn new(state: State) -> Classifier {
        Classifier { state }
    }

    fn classify_one(&self, req: &pb::ClassifyRequest) -> Result<pb::ClassifyResponse, Status> {
        let reg = self.state.registry.load_full();
        let json = convert::record_json(&req.record.clone().unwrap_or_default());
        let loaded = resolve(&reg, req.ruleset.as_ref(), &json)?;
        let rs = &loaded.rs;
        let span = tracing::debug_span!("classify", ruleset = %rs.checked.id, hash = %rs.hash, outcome = tracing::field::Empty);
        let _enter = span.enter();
        let record = record::from_json(&rs.checked.schema, &json).map_err(|e| status::invalid_record(&e, ""))?;
        let o = eval::evaluate(rs, &record, trace_level(req.options.as_ref())).map_err(|e| status::eval_error(rs, &e, ""))?;
        span.record("outcome", rs.level_id(o.level));
        self.state.metrics.outcome(&rs.checked.id, rs.level_id(o.level));
        Ok(pb::ClassifyResponse { classification: Some(convert::classification(rs, &record, &o)) })
    }
}

type BatchStream = Pin<Box<dyn Stream<Item = Result<pb::ClassifyBatchResponse, Status>> + Send>>;

fn record_error(s: &Status) -> pb::RecordError {
    use tonic_types::StatusExt;
    let violations = s
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| pb::FieldViolation { field: v.field, description: v.description }).collect())
        .unwrap_or_default();
    pb::RecordError { code: super::metrics::code_name(s.code()).to_string(), message: s.message().to_string(), violations }
}

#[tonic::async_trait]
impl pb::classification_service_server::ClassificationService for Classifier {
    async fn classify(&self, request: Request<pb::ClassifyRequest>) -> Result<Response<pb::ClassifyResponse>, Status> {
        let started = Instant::now();
        let result = self.classify_one(request.get_ref());
        self.state.metrics.observe("Classify", code_of(&result), started.elapsed());
        result.map(Response::new)
    }

    type ClassifyBatchStream = BatchStream;

    async fn classify_batch(&self, request: Request<pb::ClassifyBatchRequest>) -> Result<Response<BatchStream>, Status> {
        let started = Instant::now();
        let until = deadline(&request);
        let req = request.into_inner();
        let state = self.state.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::ClassifyBatchResponse, Status>>(64);
        tokio::task::spawn_blocking(move || {
            let reg = state.registry.load_full();
            let one = Classifier { state: state.clone() };
            let _ = reg;
            for (i, r) in req.records.into_iter().enumerate() {
                if until.is_some_and(|d| Instant::now() >= d) {
                    let _ = tx.blocking_send(Err(Status::deadline_exceeded(format!("deadline exceeded after {i} records"))));
                    break;
                }
                let single = pb::ClassifyRequest {
                    ruleset: req.ruleset.clone(),
                    record: r.record,
                    options: req.options,
                    idempotency_key: r.idempotency_key,
                };
                let index = u32::try_from(i).unwrap_or(u32::MAX);
                let result = match one.classify_one(&single) {
                    Ok(resp) => pb::classify_batch_response::Result::Classification(resp.classification.unwrap_or_default()),
                    Err(s) => pb::classify_batch_response::Result::Error(record_error(&s)),
                };
                if tx.blocking_send(Ok(pb::ClassifyBatchResponse { index, result: Some(result) })).is_err() {
                    break; // the client went away
                }
            }
            state.metrics.observe("ClassifyBatch", tonic::Code::Ok, started.elapsed());
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn classify_cohort(&self, request: Request<pb::ClassifyCohortRequest>) -> Result<Response<pb::ClassifyCohortResponse>, Status> {
        let started = Instant::now();
        let state = self.state.clone();
        let req = request.into_inner();
        let result = tokio::task::spawn_blocking(move || cohort(&state, &req))
            .await
            .unwrap_or_else(|e| Err(Status::internal(format!("cohort task failed: {e}"))));
        self.state.metrics.observe("ClassifyCohort", code_of(&result), started.elapsed());
        result.map(Response::new)
    }
}

fn cohort(state: &State, req: &pb::ClassifyCohortRequest) -> Result<pb::ClassifyCohortResponse, Status> {
    let reg = state.registry.load_full();
    let jsons: Vec<Json> = req.records.iter().map(convert::record_json).collect();
    let first = jsons.first().cloned().unwrap_or(Json::Null);
    let loaded = resolve(&reg, req.ruleset.as_ref(), &first)?;
    let rs = &loaded.rs;
    let mut records: Vec<Record> = Vec::with_capacity(jsons.len());
    for (i, j) in jsons.iter().enumerate() {
        records.push(record::from_json(&rs.checked.schema, j).map_err(|e| status::invalid_record(&e, &format!("records[{i}]")))?);
    }
    let exemption = match &req.exemption {
        None => Exemption::None,
        Some(pb::Exemption { maximum: Some(m) }) => Exemption::AtMost(*m),
        Some(pb::Exemption { maximum: None }) => Exemption::Unlimited,
    };
    let results = classify_cohort(rs, &records, exemption, trace_level(req.options.as_ref()));
    let mut out = Vec::with_capacity(results.len());
    for (i, (rec, res)) in records.iter().zip(results).enumerate() {
        let o = res.map_err(|e| status::eval_error(rs, &e, &format!("records[{i}]")))?;
        state.metrics.outcome(&rs.checked.id, rs.level_id(o.level));
        out.push(convert::classification(rs, rec, &o));
    }
    Ok(pb::ClassifyCohortResponse { classifications: out })
}

/// `CheckRules`, `ListRuleSets`, `GetRuleSet`.
pub struct RuleSets {
    state: State,
}

impl RuleSets {
    pub(super) fn new(state: State) -> RuleSets {
        RuleSets { state }
    }
}

#[tonic::async_trait]
impl pb::rule_set_service_server::RuleSetService for RuleSets {
    async fn check_rules(&self, request: Request<pb::CheckRulesRequest>) -> Result<Response<pb::CheckRulesResponse>, Status> {
        let started = Instant::now();
        let req = request.into_inner();
        let name = if req.name.is_empty() { "source.merit".to_string() } else { req.name };
        let resp = tokio::task::spawn_blocking(move || match crate::compile::compile(&name, &req.source) {
            Ok((rs, warnings)) => pb::CheckRulesResponse {
                ok: true,
                diagnostics: warnings.iter().map(|d| convert::diagnostic(&rs.source, d)).collect(),
                ruleset: Some(convert::identity(&rs)),
            },
            Err((source, diags)) => pb::CheckRulesResponse {
                ok: false,
                diagnostics: diags.iter().map(|d| convert::diagnostic(&source, d)).collect(),
                ruleset: None,
            },
        })
        .await
        .map_err(|e| Status::internal(format!("check task failed: {e}")));
        self.state.metrics.observe("CheckRules", code_of(&resp), started.elapsed());
        resp.map(Response::new)
    }

    async fn list_rule_sets(&self, request: Request<pb::ListRuleSetsRequest>) -> Result<Response<pb::ListRuleSetsResponse>, Status> {
        let req = request.into_inner();
        let reg = self.state.registry.load_full();
        let all: Vec<pb::RuleSetSummary> = reg.all().map(|l| convert::summary(l)).collect();
        let start: usize = if req.page_token.is_empty() {
            0
        } else {
            req.page_token.parse().map_err(|_| {
                status::invalid_record(
                    &[record::FieldError { path: "page_token".into(), message: "not a token from a previous response".into() }],
                    "",
                )
            })?
        };
        let size = if req.page_size == 0 { all.len() } else { req.page_size as usize };
        let end = start.saturating_add(size).min(all.len());
        let page = all.get(start.min(end)..end).unwrap_or_default().to_vec();
        let next_page_token = if end < all.len() { end.to_string() } else { String::new() };
        self.state.metrics.observe("ListRuleSets", tonic::Code::Ok, Duration::ZERO);
        Ok(Response::new(pb::ListRuleSetsResponse { rule_sets: page, next_page_token }))
    }

    async fn get_rule_set(&self, request: Request<pb::GetRuleSetRequest>) -> Result<Response<pb::GetRuleSetResponse>, Status> {
        let req = request.into_inner();
        let reg = self.state.registry.load_full();
        let l = reg.resolve(&req.id, req.version.as_deref(), None).map_err(|e| status::not_found(&e));
        self.state.metrics.observe("GetRuleSet", code_of(&l), Duration::ZERO);
        let l = l?;
        let rs = &l.rs;
        let levels = (0..rs.checked.schema.levels.len())
            .filter_map(|i| u8::try_from(i).ok())
            .map(|i| pb::Outcome {
                id: rs.level_id(i).to_string(),
                label: rs.level_label(i).to_string(),
                rank: rs.is_ordered(i).then_some(u32::from(i) + 1),
            })
            .collect();
        Ok(Response::new(pb::GetRuleSetResponse {
            summary: Some(convert::summary(&l)),
            source: rs.source.text.clone(),
            schema: convert::schema(&rs.checked.schema),
            levels,
        }))
    }
}
