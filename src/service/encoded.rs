//! Answers encoded straight from the outcome. Most of an answer is the same for every record
//! under one rule set (the rule set's identity, each level's outcome, each rule's name,
//! location, text and inputs): [`AnswerParts`] encodes those once per rule set, and
//! [`classify_response`] copies them in beside the few values of the record, instead of
//! building a message tree of owned strings to encode and drop. The bytes are exactly those
//! prost writes for the same `merit.v1.ClassifyResponse` (a test compares them).

use super::{convert, pb};
use crate::answer;
use crate::compile::RuleSet;
use crate::eval::Outcome;
use crate::eval::record::Record;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint, key_len};

/// The parts of an answer that depend only on the rule set, encoded.
#[derive(Debug, Default)]
pub struct AnswerParts {
    /// `Classification.ruleset` (field 1), key and length included.
    identity: Vec<u8>,
    /// `Classification.outcome` (field 3) for each level and outcome, key and length included.
    outcomes: Vec<Vec<u8>>,
    /// `TraceStep` fields 2 to 5 (rule, at, text, inputs) for each source of a step.
    steps: Vec<Vec<u8>>,
}

impl AnswerParts {
    /// Encodes what every answer under `rs` shares.
    pub fn new(rs: &RuleSet) -> AnswerParts {
        let mut identity = Vec::new();
        prost::encoding::message::encode(1, &convert::identity(rs), &mut identity);
        let outcomes = (0..rs.checked.schema.levels.len())
            .map(|l| {
                let l = u8::try_from(l).unwrap_or(u8::MAX);
                let mut out = Vec::new();
                prost::encoding::message::encode(3, &convert::outcome(rs, l), &mut out);
                out
            })
            .collect();
        let steps = rs
            .sources
            .iter()
            .map(|src| {
                pb::TraceStep {
                    rule: src.name.clone(),
                    at: format!("{}:{}", rs.source.name, src.loc),
                    text: src.text.clone(),
                    inputs: src.inputs.clone(),
                    ..Default::default()
                }
                .encode_to_vec()
            })
            .collect();
        AnswerParts { identity, outcomes, steps }
    }
}

/// A string field's encoded length (proto3 leaves an empty one out).
fn string_len(tag: u32, s: &str) -> usize {
    if s.is_empty() { 0 } else { key_len(tag) + encoded_len_varint(s.len() as u64) + s.len() }
}

fn put_string(tag: u32, s: &str, out: &mut Vec<u8>) {
    if !s.is_empty() {
        put_bytes(tag, s.as_bytes(), out);
    }
}

/// A length-delimited field, written even when empty (repeated and optional fields).
fn put_bytes(tag: u32, b: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

/// The `Classification` of one record, appended to `out`.
fn classification(rs: &RuleSet, parts: &AnswerParts, record: &Record, o: &Outcome, out: &mut Vec<u8>) {
    out.extend_from_slice(&parts.identity);
    put_string(2, answer::subject_of(rs, record), out);
    match parts.outcomes.get(usize::from(o.level)) {
        Some(b) => out.extend_from_slice(b),
        None => prost::encoding::message::encode(3, &convert::outcome(rs, o.level), out),
    }
    if let Some(t) = &o.total {
        put_bytes(4, answer::format_total(t).as_bytes(), out);
    }
    // A map prints in key order (criterion names are distinct); an empty value is left out of
    // its entry.
    let mut criteria: Vec<(&str, String)> =
        o.criteria.iter().filter_map(|(id, v)| rs.checked.lets.get(*id).map(|l| (l.name.as_str(), v.to_string()))).collect();
    criteria.sort_by(|a, b| a.0.cmp(b.0));
    for (name, value) in &criteria {
        encode_key(5, WireType::LengthDelimited, out);
        encode_varint((string_len(1, name) + string_len(2, value)) as u64, out);
        put_string(1, name, out);
        put_string(2, value, out);
    }
    for flag in o.flag_codes(rs) {
        put_bytes(6, flag.as_bytes(), out);
    }
    for s in &o.trace {
        let fixed = parts.steps.get(s.source).map_or(&[][..], Vec::as_slice);
        let kind = s.kind.as_str();
        let value = answer::step_value(rs, s);
        let effect = match s.levels {
            Some((a, b)) if a != b => format!("{} → {}", rs.level_id(a), rs.level_id(b)),
            _ => String::new(),
        };
        let message = s.message.as_deref().unwrap_or("");
        let len = string_len(1, kind) + fixed.len() + string_len(6, &value) + string_len(7, &effect) + string_len(8, message);
        encode_key(7, WireType::LengthDelimited, out);
        encode_varint(len as u64, out);
        put_string(1, kind, out);
        out.extend_from_slice(fixed);
        put_string(6, &value, out);
        put_string(7, &effect, out);
        put_string(8, message, out);
    }
    if let Some(q) = o.quota {
        prost::encoding::message::encode(8, &pb::QuotaPlace { position: q.position, limit: q.limit, tied: q.tied }, out);
    }
}

/// A `ClassifyResponse` already encoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EncodedResponse {
    bytes: Vec<u8>,
}

impl EncodedResponse {
    /// The answer for a record that was not stored: encoded straight from its outcome.
    pub fn fresh(rs: &RuleSet, parts: &AnswerParts, record: &Record, o: &Outcome) -> EncodedResponse {
        let mut body = Vec::with_capacity(4096);
        classification(rs, parts, record, o, &mut body);
        let mut bytes = Vec::with_capacity(body.len() + 8);
        put_bytes(1, &body, &mut bytes);
        EncodedResponse { bytes }
    }

    /// An answer held as a message (a stored one).
    pub fn of(response: &pb::ClassifyResponse) -> EncodedResponse {
        EncodedResponse { bytes: response.encode_to_vec() }
    }

    /// The message, decoded (for tests).
    ///
    /// # Errors
    /// Never for bytes this type wrote.
    pub fn decoded(&self) -> Result<pb::ClassifyResponse, prost::DecodeError> {
        pb::ClassifyResponse::decode(self.bytes.as_slice())
    }
}

impl Message for EncodedResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.bytes);
    }

    // The server only sends this type; decoding one keeps each field as it came.
    fn merge_field(&mut self, tag: u32, wire_type: WireType, buf: &mut impl Buf, ctx: DecodeContext) -> Result<(), prost::DecodeError> {
        let mut field = pb::ClassifyResponse::default();
        field.merge_field(tag, wire_type, buf, ctx)?;
        self.bytes.extend_from_slice(&field.encode_to_vec());
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    fn clear(&mut self) {
        self.bytes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::{AnswerParts, EncodedResponse};
    use crate::eval::{TraceLevel, evaluate, record::from_json};
    use crate::service::{convert, pb};
    use prost::Message;

    #[test]
    fn encoded_answers_are_the_bytes_prost_writes_for_the_same_message() {
        let Some(records) = crate::testdata::conformance_records() else { return };
        let rules = [crate::testdata::bundled("reg366.merit"), crate::testdata::bundled("decree335.merit")];
        let parts = [AnswerParts::new(&rules[0]), AnswerParts::new(&rules[1])];
        let mut compared = 0;
        for (file, json) in &records {
            let i = usize::from(*file == "decree335.merit");
            let (rs, parts) = (&rules[i], &parts[i]);
            let Ok(rec) = from_json(&rs.checked.schema, json) else { continue };
            for level in [TraceLevel::None, TraceLevel::Summary, TraceLevel::Full] {
                let Ok(o) = evaluate(rs, &rec, level) else { continue };
                let want =
                    pb::ClassifyResponse { classification: Some(convert::classification(rs, &rec, &o)), evaluation_id: String::new() };
                let got = EncodedResponse::fresh(rs, parts, &rec, &o);
                assert_eq!(got.encode_to_vec(), want.encode_to_vec(), "{json}");
                compared += 1;
            }
        }
        assert!(compared > 6000, "{compared} answers compared");
    }

    #[test]
    fn an_answer_with_a_quota_place_and_a_stored_one_encode_as_prost_does() {
        let rs = crate::testdata::bundled("reg366.merit");
        let json: serde_json::Value = serde_json::from_str(include_str!("../../examples/staff_2025.json")).expect("example is JSON");
        let rec = from_json(&rs.checked.schema, &json).expect("fits");
        let mut o = evaluate(&rs, &rec, TraceLevel::Full).expect("classifies");
        o.quota = Some(crate::eval::QuotaPlace { position: 3, limit: 2, tied: true });
        let want = pb::ClassifyResponse { classification: Some(convert::classification(&rs, &rec, &o)), evaluation_id: String::new() };
        assert_eq!(EncodedResponse::fresh(&rs, &AnswerParts::new(&rs), &rec, &o).encode_to_vec(), want.encode_to_vec());
        let stored = pb::ClassifyResponse { evaluation_id: "01J".into(), ..want };
        let kept = EncodedResponse::of(&stored);
        assert_eq!(kept.decoded().expect("decodes"), stored);
        assert_eq!(EncodedResponse::decode(kept.encode_to_vec().as_slice()).expect("decodes"), kept);
    }
}
