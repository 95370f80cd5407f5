//! Any bytes as a ClassifyRequest: decoding never panics, and the direct record decoder
//! agrees with the long way (value tree, then the JSON path) whenever it accepts a record.
#![no_main]
use merit::service::{convert, inbound, wire};
use prost::Message;
use std::sync::LazyLock;

static RULES: LazyLock<merit::compile::RuleSet> =
    LazyLock::new(|| merit::compile::compile("reg366.merit", include_str!("../../rules/reg366.merit")).map(|(rs, _)| rs).unwrap_or_else(|_| std::process::abort()));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(req) = inbound::ClassifyRequest::decode(data) else { return };
    let Some(raw) = req.record else { return };
    let schema = &RULES.checked.schema;
    if let Some(fast) = wire::record(schema, &raw) {
        let Ok(tree) = raw.tree() else { panic!("the direct decoder accepted bytes that are no RecordValue") };
        let checked = merit::eval::record::from_json(schema, &convert::record_json(&tree));
        let Ok(c) = checked else { panic!("the direct decoder accepted a record the JSON path rejects") };
        assert_eq!(merit::eval::record::to_json(schema, &fast), merit::eval::record::to_json(schema, &c));
    }
});
