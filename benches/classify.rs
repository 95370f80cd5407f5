//! Single-thread classification throughput of the bundled Regulation 366 rules on a realistic
//! record (10 tasks): with the trace off, with the summary and with the full trace; decoding
//! the record from JSON is measured beside it (DESIGN.md "Benchmarks").
//!
//! Run: `cargo bench --bench classify`. Records/s = 1 / median time. The evaluation benchmarks
//! time 100 records a sample (200 samples), so that a sample is not one call of about a
//! microsecond, within a few timer ticks and at the mercy of one interruption.

#![allow(clippy::expect_used, reason = "benchmarks fail loudly on broken fixtures")]

use merit::compile::{RuleSet, compile};
use merit::eval::record::{self, Record};
use merit::eval::{TraceLevel, evaluate};
use std::sync::LazyLock;

/// The allocator the `merit` binary uses (src/main.rs), so that the figures are the service's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

static RULES: LazyLock<RuleSet> = LazyLock::new(|| {
    let text = include_str!("../rules/reg366.merit");
    compile("rules/reg366.merit", text).map(|(rs, _)| rs).expect("bundled rules compile")
});

const RECORD: &str = include_str!("../examples/staff_2025.json");

static DECODED: LazyLock<Record> = LazyLock::new(|| record::from_json_text(&RULES.checked.schema, RECORD).expect("example record fits"));

#[divan::bench(sample_count = 200, sample_size = 100)]
fn evaluate_trace_off() -> u8 {
    evaluate(&RULES, divan::black_box(&DECODED), TraceLevel::None).map(|o| o.level).unwrap_or(u8::MAX)
}

#[divan::bench(sample_count = 200, sample_size = 100)]
fn evaluate_trace_summary() -> usize {
    evaluate(&RULES, divan::black_box(&DECODED), TraceLevel::Summary).map(|o| o.trace.len()).unwrap_or(0)
}

#[divan::bench(sample_count = 200, sample_size = 100)]
fn evaluate_trace_full() -> usize {
    evaluate(&RULES, divan::black_box(&DECODED), TraceLevel::Full).map(|o| o.trace.len()).unwrap_or(0)
}

#[divan::bench]
fn decode_json_record() -> usize {
    record::from_json_text(&RULES.checked.schema, divan::black_box(RECORD)).map(|r| r.slots.len()).unwrap_or(0)
}

#[divan::bench]
fn compile_rules() -> usize {
    compile("rules/reg366.merit", divan::black_box(include_str!("../rules/reg366.merit"))).map(|(rs, _)| rs.sources.len()).unwrap_or(0)
}

/// A `Classify` request as the service receives it (protobuf bytes), decoded as the server
/// decodes it: the record straight into the schema's slots.
static REQUEST: LazyLock<Vec<u8>> = LazyLock::new(|| {
    use prost::Message;
    let json: serde_json::Value = serde_json::from_str(RECORD).expect("example is JSON");
    let req = merit::service::pb::ClassifyRequest { record: Some(merit::service::convert::json_record(&json)), ..Default::default() };
    req.encode_to_vec()
});

#[divan::bench]
fn decode_proto_request() -> usize {
    use prost::Message;
    let req = merit::service::inbound::ClassifyRequest::decode(divan::black_box(REQUEST.as_slice())).expect("decodes");
    let raw = req.record.unwrap_or_default();
    merit::service::wire::record(&RULES.checked.schema, &raw).map(|r| r.slots.len()).unwrap_or(0)
}

/// The answer to a `Classify` with the summary trace as a message tree, built and encoded
/// (as the service sends a stored answer).
#[divan::bench]
fn answer_proto_summary(bencher: divan::Bencher) {
    use prost::Message;
    let outcome = evaluate(&RULES, &DECODED, TraceLevel::Summary).expect("classifies");
    bencher.bench(|| {
        let c = merit::service::convert::classification(&RULES, &DECODED, divan::black_box(&outcome));
        merit::service::pb::ClassifyResponse { classification: Some(c), evaluation_id: String::new() }.encode_to_vec().len()
    });
}

/// The same answer as the service now sends it: encoded straight from the outcome.
#[divan::bench]
fn answer_encoded_summary(bencher: divan::Bencher) {
    use prost::Message;
    let outcome = evaluate(&RULES, &DECODED, TraceLevel::Summary).expect("classifies");
    let parts = merit::service::encoded::AnswerParts::new(&RULES);
    bencher.bench(|| merit::service::encoded::EncodedResponse::fresh(&RULES, &parts, &DECODED, divan::black_box(&outcome)).encoded_len());
}
