//! The RPC handlers of `merit.v1`. Each request takes one snapshot of the registry and keeps
//! it to the end, so a reload never changes the rules under a request in flight.

use super::encoded::EncodedResponse;
use super::wire::{self, RawRecord};
use super::{State, convert, inbound, pb, status, storing};
use crate::cohort::{Exemption, classify_cohort};
use crate::date;
use crate::eval::record::{self, Record};
use crate::eval::{self, TraceLevel};
use crate::registry::{Loaded, Registry};
use serde_json::Value as Json;
use std::collections::VecDeque;
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

/// The value tree of a record that the direct decoder left to the long way.
fn tree_of(raw: &RawRecord, path: &str) -> Result<pb::RecordValue, Status> {
    raw.tree().map_err(|e| {
        status::invalid_record(&[record::FieldError { path: path.to_string(), message: format!("not a merit.v1.RecordValue: {e}") }], "")
    })
}

/// Picks the rule set: the version asked for, or the one in effect on the record's period date.
fn resolve(reg: &Registry, reference: Option<&pb::RuleSetReference>, record: &Json) -> Result<Arc<Loaded>, Status> {
    resolve_by(reg, reference, |f| record.get(f).and_then(Json::as_str))
}

/// Picks the rule set, reading the period (when no version is named) through `period`.
fn resolve_by<'r>(
    reg: &Registry,
    reference: Option<&pb::RuleSetReference>,
    period: impl Fn(&str) -> Option<&'r str>,
) -> Result<Arc<Loaded>, Status> {
    let Some(r) = reference.filter(|r| !r.id.is_empty()) else {
        return Err(status::invalid_record(
            &[record::FieldError { path: "ruleset.id".into(), message: "required: the rule set to use".into() }],
            "",
        ));
    };
    let on = match &r.version {
        Some(_) => None,
        None => reg.period_field(&r.id).and_then(|f| period(&f).and_then(date::parse_period)).map(|(_, d)| d),
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

/// Records of a stored `ClassifyBatch` being classified and committed at once.
const STORED_BATCH_IN_FLIGHT: usize = 256;

/// One record's place in a batch and its answer (or why it has none).
type BatchAnswer = (u32, Result<(pb::Classification, String), Status>);

/// Records of a stored batch in flight, in order, each with its idempotency key.
type InFlight = VecDeque<(String, tokio::task::JoinHandle<BatchAnswer>)>;

/// Answers the oldest records in flight, in order, until at most `keep` remain; `Err` once the
/// client went away.
async fn drain(
    tx: &tokio::sync::mpsc::Sender<Result<pb::ClassifyBatchResponse, Status>>,
    in_flight: &mut InFlight,
    keep: usize,
) -> Result<(), ()> {
    while in_flight.len() > keep {
        let Some((_, task)) = in_flight.pop_front() else { break };
        send_answer(tx, task.await).await?;
    }
    Ok(())
}

/// Sends one batch answer; `Err` once the client went away.
async fn send_answer(
    tx: &tokio::sync::mpsc::Sender<Result<pb::ClassifyBatchResponse, Status>>,
    answer: Result<BatchAnswer, tokio::task::JoinError>,
) -> Result<(), ()> {
    let (index, result, evaluation_id) = match answer {
        Ok((index, Ok((c, id)))) => (index, pb::classify_batch_response::Result::Classification(c), id),
        Ok((index, Err(s))) => (index, pb::classify_batch_response::Result::Error(record_error(&s)), String::new()),
        Err(e) => return tx.send(Err(Status::internal(format!("a batch task failed: {e}")))).await.map_err(|_| ()),
    };
    tx.send(Ok(pb::ClassifyBatchResponse { index, result: Some(result), evaluation_id })).await.map_err(|_| ())
}

/// `Classify`, `ClassifyBatch`, `ClassifyCohort`.
pub struct Classifier {
    state: State,
}

/// A record classified, before it is answered (and perhaps stored).
struct Classified {
    loaded: Arc<Loaded>,
    record: Record,
    outcome: eval::Outcome,
}

impl Classifier {
    pub(super) fn new(state: State) -> Classifier {
        Classifier { state }
    }

    fn batcher(&self, store: bool) -> Result<Option<&crate::store::Batcher>, Status> {
        match (store, &self.state.store) {
            (false, _) => Ok(None),
            (true, Some(b)) => Ok(Some(b)),
            (true, None) => Err(Status::failed_precondition("store = true, but this server runs without a store (start it with --store)")),
        }
    }

    /// Validates and evaluates one record; a record to be stored is evaluated with the full trace.
    fn evaluate(
        &self,
        reg: &Registry,
        reference: Option<&pb::RuleSetReference>,
        value: &RawRecord,
        level: TraceLevel,
    ) -> Result<Classified, Status> {
        let doubt = std::cell::Cell::new(false);
        let mut loaded = resolve_by(reg, reference, |f| {
            wire::text_field(value, f).unwrap_or_else(|wire::Doubt| {
                doubt.set(true);
                None
            })
        });
        if doubt.get() {
            // The period is read from the value tree, as the bytes leave the direct reading in doubt.
            let tree = tree_of(value, "record")?;
            loaded = resolve_by(reg, reference, |f| convert::tree_text(&tree, f));
        }
        let loaded = loaded?;
        let rs = &loaded.rs;
        let span = tracing::debug_span!("classify", ruleset = %rs.checked.id, hash = %rs.hash, outcome = tracing::field::Empty);
        let _enter = span.enter();
        let record = match wire::record(&rs.checked.schema, value) {
            Some(r) => r,
            None => record::from_json(&rs.checked.schema, &convert::record_json(&tree_of(value, "record")?))
                .map_err(|e| status::invalid_record(&e, ""))?,
        };
        let outcome = eval::evaluate(rs, &record, level).map_err(|e| status::eval_error(rs, &e, ""))?;
        span.record("outcome", rs.level_id(outcome.level));
        tracing::debug!(subject = crate::answer::subject_of(rs, &record), "classified");
        self.state.metrics.outcome(&rs.checked.id, rs.level_id(outcome.level));
        Ok(Classified { loaded, record, outcome })
    }

    /// The answer and, when stored, the evaluation id.
    async fn classify_one(
        &self,
        reg: &Registry,
        reference: Option<&pb::RuleSetReference>,
        value: &RawRecord,
        options: Option<&pb::ClassifyOptions>,
        key: &str,
    ) -> Result<(pb::Classification, String), Status> {
        let level = trace_level(options);
        let store = options.is_some_and(|o| o.store);
        let batcher = self.batcher(store)?;
        let c = self.evaluate(reg, reference, value, if store { TraceLevel::Full } else { level })?;
        let rs = &c.loaded.rs;
        let Some(batcher) = batcher else { return Ok((convert::classification(rs, &c.record, &c.outcome), String::new())) };
        let (e, answer) = storing::evaluation(rs, &c.record, &c.outcome, None)?;
        let version = reference.and_then(|r| r.version.clone()).unwrap_or_default();
        let hash = storing::request_hash(key, &["classify", &rs.checked.id, &version, &e.record]);
        let answers = storing::keep(batcher, key, hash, storing::source_of(&c.loaded), vec![(e, answer)]).await?;
        answers.into_iter().next().map(|(id, a)| (storing::trimmed(a, level), id)).ok_or_else(|| Status::internal("no stored answer"))
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
impl inbound::classification_service_server::ClassificationService for Classifier {
    async fn classify(&self, request: Request<inbound::ClassifyRequest>) -> Result<Response<EncodedResponse>, Status> {
        let started = Instant::now();
        let r = request.get_ref();
        let reg = self.state.registry.load_full();
        let none = RawRecord::default();
        let record = r.record.as_ref().unwrap_or(&none);
        let result = if r.options.as_ref().is_some_and(|o| o.store) {
            let stored = self.classify_one(&reg, r.ruleset.as_ref(), record, r.options.as_ref(), &r.idempotency_key).await;
            stored.map(|(c, evaluation_id)| EncodedResponse::of(&pb::ClassifyResponse { classification: Some(c), evaluation_id }))
        } else {
            // Not stored: the answer is encoded straight from the outcome.
            self.evaluate(&reg, r.ruleset.as_ref(), record, trace_level(r.options.as_ref()))
                .map(|c| EncodedResponse::fresh(&c.loaded.rs, &c.loaded.answer_parts, &c.record, &c.outcome))
        };
        self.state.metrics.observe("Classify", code_of(&result), started.elapsed());
        result.map(Response::new)
    }

    type ClassifyBatchStream = BatchStream;

    async fn classify_batch(&self, request: Request<inbound::ClassifyBatchRequest>) -> Result<Response<BatchStream>, Status> {
        let started = Instant::now();
        let until = deadline(&request);
        let req = request.into_inner();
        let one = Classifier { state: self.state.clone() };
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::ClassifyBatchResponse, Status>>(64);
        tokio::spawn(async move {
            // One snapshot for the whole batch: a reload never splits it between versions.
            let reg = one.state.registry.load_full();
            let store = req.options.as_ref().is_some_and(|o| o.store);
            let ruleset = Arc::new(req.ruleset);
            let options = Arc::new(req.options);
            let one = Arc::new(one);
            // Records to be stored are classified up to 256 at a time (and at most 512 across the
            // server's batches), so their commits share group commits instead of waiting for one
            // another; answers still go out in order.
            let mut in_flight: InFlight = VecDeque::new();
            let mut gone = false;
            for (i, r) in req.records.into_iter().enumerate() {
                if until.is_some_and(|d| Instant::now() >= d) {
                    gone = drain(&tx, &mut in_flight, 0).await.is_err();
                    if !gone {
                        let _ = tx.send(Err(Status::deadline_exceeded(format!("deadline exceeded after {i} records")))).await;
                    }
                    break;
                }
                let index = u32::try_from(i).unwrap_or(u32::MAX);
                let key = r.idempotency_key.clone();
                let (classifier, reg, ruleset, options) = (one.clone(), reg.clone(), ruleset.clone(), options.clone());
                let work = async move {
                    let record = r.record.unwrap_or_default();
                    let answer = classifier
                        .classify_one(&reg, ruleset.as_ref().as_ref(), &record, options.as_ref().as_ref(), &r.idempotency_key)
                        .await;
                    (index, answer)
                };
                if !store {
                    if send_answer(&tx, Ok(work.await)).await.is_err() {
                        gone = true; // the client went away
                        break;
                    }
                    if i % 64 == 63 {
                        tokio::task::yield_now().await;
                    }
                    continue;
                }
                // A key already in flight waits for its earlier use: the earlier record keeps it.
                if !key.is_empty() && in_flight.iter().any(|(k, _)| *k == key) && drain(&tx, &mut in_flight, 0).await.is_err() {
                    gone = true;
                    break;
                }
                let Ok(slot) = one.state.stored_batch_slots.clone().acquire_owned().await else { break };
                in_flight.push_back((
                    key,
                    tokio::spawn(async move {
                        let answer = work.await;
                        drop(slot);
                        answer
                    }),
                ));
                if drain(&tx, &mut in_flight, STORED_BATCH_IN_FLIGHT - 1).await.is_err() {
                    gone = true;
                    break;
                }
            }
            if !gone {
                gone = drain(&tx, &mut in_flight, 0).await.is_err();
            }
            if gone {
                // Nobody will read these answers: stop the records not yet done.
                for (_, task) in in_flight {
                    task.abort();
                }
            }
            let code = if gone { tonic::Code::Cancelled } else { tonic::Code::Ok };
            one.state.metrics.observe("ClassifyBatch", code, started.elapsed());
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn classify_cohort(
        &self,
        request: Request<inbound::ClassifyCohortRequest>,
    ) -> Result<Response<pb::ClassifyCohortResponse>, Status> {
        let started = Instant::now();
        let result = self.cohort(request.into_inner()).await;
        self.state.metrics.observe("ClassifyCohort", code_of(&result), started.elapsed());
        result.map(Response::new)
    }
}

impl Classifier {
    async fn cohort(&self, req: inbound::ClassifyCohortRequest) -> Result<pb::ClassifyCohortResponse, Status> {
        let store = req.options.as_ref().is_some_and(|o| o.store);
        let level = trace_level(req.options.as_ref());
        let batcher = self.batcher(store)?.cloned();
        let state = self.state.clone();
        let exemption_text = req.exemption.as_ref().map(|e| e.maximum.map_or_else(|| "unlimited".to_string(), |m| m.to_string()));
        let key = req.idempotency_key.clone();
        let version = req.ruleset.as_ref().and_then(|r| r.version.clone()).unwrap_or_default();
        let ex = exemption_text.clone();
        let computed = tokio::task::spawn_blocking(move || cohort(&state, &req, if store { TraceLevel::Full } else { level }, store, ex))
            .await
            .unwrap_or_else(|e| Err(Status::internal(format!("cohort task failed: {e}"))))?;
        let (answers, stored) = computed;
        let (Some(batcher), Some((loaded, evals))) = (batcher, stored) else {
            return Ok(pb::ClassifyCohortResponse { classifications: answers, evaluation_ids: Vec::new() });
        };
        let records: Vec<&str> = evals.iter().map(|(e, _)| e.record.as_str()).collect();
        let mut parts = vec!["cohort", loaded.rs.checked.id.as_str(), version.as_str(), exemption_text.as_deref().unwrap_or("")];
        parts.extend(records);
        let hash = storing::request_hash(&key, &parts);
        let kept = storing::keep(&batcher, &key, hash, storing::source_of(&loaded), evals).await?;
        let (evaluation_ids, answers): (Vec<String>, Vec<pb::Classification>) =
            kept.into_iter().map(|(id, c)| (id, storing::trimmed(c, level))).unzip();
        Ok(pb::ClassifyCohortResponse { classifications: answers, evaluation_ids })
    }
}

type CohortAnswers = (Vec<pb::Classification>, Option<(Arc<Loaded>, Vec<(crate::store::Evaluation, pb::Classification)>)>);

fn cohort(
    state: &State,
    req: &inbound::ClassifyCohortRequest,
    level: TraceLevel,
    store: bool,
    exemption_text: Option<String>,
) -> Result<CohortAnswers, Status> {
    let reg = state.registry.load_full();
    let mut jsons: Vec<Json> = Vec::with_capacity(req.records.len());
    for (i, r) in req.records.iter().enumerate() {
        jsons.push(convert::record_json(&tree_of(r, &format!("records[{i}]"))?));
    }
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
    let results = classify_cohort(rs, &records, exemption, level);
    let cohort_id = crate::store::new_id();
    let mut out = Vec::with_capacity(results.len());
    let mut evals = Vec::new();
    for (i, (rec, res)) in records.iter().zip(results).enumerate() {
        let o = res.map_err(|e| status::eval_error(rs, &e, &format!("records[{i}]")))?;
        state.metrics.outcome(&rs.checked.id, rs.level_id(o.level));
        if store {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            evals.push(storing::evaluation(rs, rec, &o, Some((&cohort_id, index, exemption_text.clone())))?);
        } else {
            out.push(convert::classification(rs, rec, &o));
        }
    }
    Ok((out, store.then(|| (loaded.clone(), evals))))
}

/// `GetEvaluation`, `ListEvaluations`.
pub struct Evaluations {
    state: State,
}

impl Evaluations {
    pub(super) fn new(state: State) -> Evaluations {
        Evaluations { state }
    }

    fn store(&self) -> Result<&crate::store::Batcher, Status> {
        self.state.store.as_ref().ok_or_else(|| Status::failed_precondition("this server runs without a store (start it with --store)"))
    }
}

/// A filter message as a store filter (empty fields do not filter); dates must be dates.
pub(super) fn filter_of(f: Option<&pb::EvaluationFilter>) -> Result<crate::store::Filter, Status> {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let Some(f) = f else { return Ok(crate::store::Filter::default()) };
    let mut bad = Vec::new();
    for (name, v) in [("filter.period_from", &f.period_from), ("filter.period_to", &f.period_to)] {
        if !v.is_empty() && date::parse_date(v).is_none() {
            bad.push(record::FieldError { path: name.into(), message: format!("expected a date YYYY-MM-DD, got {v:?}") });
        }
    }
    if !bad.is_empty() {
        return Err(status::invalid_record(&bad, ""));
    }
    Ok(crate::store::Filter {
        subject: opt(&f.subject),
        agency: opt(&f.agency),
        period_from: opt(&f.period_from),
        period_to: opt(&f.period_to),
        ruleset_id: opt(&f.ruleset_id),
        outcome: opt(&f.outcome),
    })
}

#[tonic::async_trait]
impl inbound::evaluation_service_server::EvaluationService for Evaluations {
    async fn get_evaluation(&self, request: Request<pb::GetEvaluationRequest>) -> Result<Response<pb::GetEvaluationResponse>, Status> {
        let started = Instant::now();
        let result = self.get_one(request.into_inner()).await;
        self.state.metrics.observe("GetEvaluation", code_of(&result), started.elapsed());
        result.map(Response::new)
    }

    async fn list_evaluations(
        &self,
        request: Request<pb::ListEvaluationsRequest>,
    ) -> Result<Response<pb::ListEvaluationsResponse>, Status> {
        let started = Instant::now();
        let result = self.list_page(request.into_inner()).await;
        self.state.metrics.observe("ListEvaluations", code_of(&result), started.elapsed());
        result.map(Response::new)
    }
}

impl Evaluations {
    async fn get_one(&self, request: pb::GetEvaluationRequest) -> Result<pb::GetEvaluationResponse, Status> {
        let store = self.store()?;
        let id = request.id;
        let found = store.store.get(&id).await.map_err(|e| Status::unavailable(e.to_string()))?;
        let e = found.ok_or_else(|| Status::not_found(format!("no stored evaluation `{id}`")))?;
        Ok(pb::GetEvaluationResponse { evaluation: Some(storing::stored_message(&e)?) })
    }

    async fn list_page(&self, req: pb::ListEvaluationsRequest) -> Result<pb::ListEvaluationsResponse, Status> {
        let store = self.store()?;
        let size = match req.page_size {
            0 => 100,
            n => (n as usize).min(1000),
        };
        // A page token is the last evaluation id of the previous page.
        let token_ok = req.page_token.is_empty() || (req.page_token.len() == 34 && req.page_token.bytes().all(|b| b.is_ascii_hexdigit()));
        if !token_ok {
            return Err(status::invalid_record(
                &[record::FieldError { path: "page_token".into(), message: "not a token from a previous response".into() }],
                "",
            ));
        }
        let after = (!req.page_token.is_empty()).then_some(req.page_token.as_str());
        let rows =
            store.store.list(&filter_of(req.filter.as_ref())?, after, size, true).await.map_err(|e| Status::unavailable(e.to_string()))?;
        let next_page_token = if rows.len() == size { rows.last().map(|e| e.id.clone()).unwrap_or_default() } else { String::new() };
        let evaluations = rows.iter().map(storing::stored_message).collect::<Result<_, _>>()?;
        Ok(pb::ListEvaluationsResponse { evaluations, next_page_token })
    }
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
impl inbound::rule_set_service_server::RuleSetService for RuleSets {
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
