//! Keeping evaluations: builds the stored form of an answer, writes it through the batcher
//! (answered only after commit), and settles idempotency keys (DESIGN.md "Settled interfaces").

use super::{convert, pb, status};
use crate::compile::RuleSet;
use crate::eval::record::{self, Record};
use crate::eval::{Outcome, StepKind, TraceLevel};
use crate::registry::Loaded;
use crate::store::{self, Batcher, Evaluation, Submission, Written};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// SHA-256 of the parts of a request that must match for a retry (hex); empty without an
/// idempotency key, which is all it is for.
pub fn request_hash(key: &str, parts: &[&str]) -> String {
    if key.is_empty() {
        return String::new();
    }
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(2 * digest.len());
    for b in digest {
        for nibble in [b >> 4, b & 15] {
            out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    out
}

/// The answer cut down to the trace detail asked for (stored answers keep the full trace).
pub fn trimmed(mut c: pb::Classification, level: TraceLevel) -> pb::Classification {
    match level {
        TraceLevel::Full => {}
        TraceLevel::None => c.trace.clear(),
        TraceLevel::Summary => {
            c.trace.retain(|s| s.step != StepKind::Criterion.as_str() && !(s.step == StepKind::Cap.as_str() && s.effect.is_empty()))
        }
    }
    c
}

/// The stored form of one evaluated record, and its answer (full trace).
pub fn evaluation(
    rs: &RuleSet,
    rec: &Record,
    o: &Outcome,
    cohort: Option<(&str, u32, Option<String>)>,
) -> Result<(Evaluation, pb::Classification), Status> {
    let c = &rs.checked;
    let root = c.schema.records.first().map(|r| r.fields.as_slice()).unwrap_or(&[]);
    let mut keys = serde_json::Map::new();
    let mut agency = None;
    for (slot, f) in root.iter().enumerate() {
        if f.role == Some(crate::check::ir::Role::Cohort) {
            let v = rec.text(u16::try_from(slot).ok()).unwrap_or("").to_string();
            agency.get_or_insert_with(|| v.clone());
            keys.insert(f.name.clone(), serde_json::Value::String(v));
        }
    }
    let period = rec.text(c.period_slot).unwrap_or("").to_string();
    let period_end = crate::date::parse_period(&period).map(|(_, d)| crate::date::format_date(d)).unwrap_or_default();
    let answer = convert::classification(rs, rec, o);
    let answer_json = serde_json::to_string(&answer).map_err(|e| Status::internal(format!("cannot encode the answer: {e}")))?;
    let e = Evaluation {
        id: store::new_id(),
        subject: crate::answer::subject_of(rs, rec).to_string(),
        cohort_keys: serde_json::Value::Object(keys).to_string(),
        agency: agency.unwrap_or_default(),
        period,
        period_end,
        record: record::to_json_text(&c.schema, rec),
        ruleset_id: c.id.clone(),
        ruleset_version: c.version.clone(),
        ruleset_hash: rs.hash.clone(),
        outcome: rs.level_id(o.level).to_string(),
        total: o.total.map(|t| crate::answer::format_total(&t)),
        answer: answer_json,
        created_at: store::now_rfc3339(),
        cohort_id: cohort.as_ref().map(|(id, _, _)| id.to_string()),
        cohort_index: cohort.as_ref().map(|(_, i, _)| *i),
        exemption: cohort.and_then(|(_, _, e)| e),
    };
    Ok((e, answer))
}

/// The stored rule source of a loaded rule set.
pub fn source_of(l: &Loaded) -> Arc<(String, String, String, String)> {
    l.identity.clone()
}

fn unavailable(e: store::StoreError) -> Status {
    Status::unavailable(e.to_string())
}

fn key_reused(key: &str) -> Status {
    let mut d = ErrorDetails::new();
    let mut meta = HashMap::new();
    meta.insert("idempotency_key".to_string(), key.to_string());
    d.set_error_info("IDEMPOTENCY_KEY_REUSED", status::DOMAIN, meta);
    Status::with_error_details(Code::FailedPrecondition, format!("idempotency key `{key}` was used for a different request"), d)
}

/// Stores evaluations (one request's worth) and returns the answers to give: the fresh ones,
/// or for a retry with the same key and request, the stored ones.
pub async fn keep(
    batcher: &Batcher,
    key: &str,
    request_hash: String,
    source: Arc<(String, String, String, String)>,
    evals: Vec<(Evaluation, pb::Classification)>,
) -> Result<Vec<(String, pb::Classification)>, Status> {
    let (evals, answers): (Vec<Evaluation>, Vec<pb::Classification>) = evals.into_iter().unzip();
    let fresh: Vec<(String, pb::Classification)> = evals.iter().map(|e| e.id.clone()).zip(answers).collect();
    let sub = Submission { key: (!key.is_empty()).then(|| (key.to_string(), request_hash.clone())), source, evaluations: evals };
    match batcher.submit(sub).await.map_err(unavailable)? {
        Written::Stored => Ok(fresh),
        Written::KeyExists(hash, _) if hash != request_hash => Err(key_reused(key)),
        Written::KeyExists(_, ids) => {
            let stored = batcher.store.get_many(&ids).await.map_err(unavailable)?;
            stored.iter().map(|e| Ok((e.id.clone(), stored_answer(e)?))).collect()
        }
    }
}

/// The answer kept with an evaluation.
pub fn stored_answer(e: &Evaluation) -> Result<pb::Classification, Status> {
    serde_json::from_str(&e.answer).map_err(|err| Status::internal(format!("stored answer {} cannot be read: {err}", e.id)))
}

/// A stored evaluation as a message.
pub fn stored_message(e: &Evaluation) -> Result<pb::StoredEvaluation, Status> {
    Ok(pb::StoredEvaluation {
        id: e.id.clone(),
        subject: e.subject.clone(),
        cohort_keys_json: e.cohort_keys.clone(),
        period: e.period.clone(),
        period_end: e.period_end.clone(),
        record_json: e.record.clone(),
        classification: Some(stored_answer(e)?),
        created_at: e.created_at.clone(),
        cohort_id: e.cohort_id.clone().unwrap_or_default(),
        cohort_index: e.cohort_index.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::request_hash;

    #[test]
    fn a_request_hash_is_the_lowercase_hex_sha256_of_its_parts_and_only_computed_for_a_key() {
        // sha256("classify\0a\0"), as earlier versions wrote it into stores.
        assert_eq!(request_hash("k", &["classify", "a"]), "95e8282486790fb3c4584dd1705f41cb7d3102eb92c92555db1680051c4744f4");
        assert_eq!(request_hash("", &["classify", "a"]), "");
    }
}
