//! Any bytes as a ClassifyRequest: decoding never panics; whenever the direct record decoder
//! accepts a record, the long way (the whole request decoded as a value tree, then the JSON
//! path) accepts the same record; and a period read directly is the one the tree holds
//! whenever the tree decodes.
#![no_main]
use merit::service::{convert, inbound, pb, wire};
use prost::Message;
use std::sync::LazyLock;

static RULES: LazyLock<merit::compile::RuleSet> =
    LazyLock::new(|| merit::compile::compile("reg366.merit", include_str!("../../rules/reg366.merit")).map(|(rs, _)| rs).unwrap_or_else(|_| std::process::abort()));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(req) = inbound::ClassifyRequest::decode(data) else { return };
    let Some(raw) = req.record else { return };
    let schema = &RULES.checked.schema;
    let direct = wire::record(schema, &raw);
    let period = wire::text_field(&raw, "period");
    let Ok(whole) = pb::ClassifyRequest::decode(data) else {
        // Only the record can make the whole request fail where the direct reading succeeded.
        assert!(direct.is_none(), "the direct decoder accepted bytes that are no RecordValue");
        return;
    };
    let tree = whole.record.unwrap_or_default();
    if let Ok(p) = period {
        assert_eq!(p, convert::tree_text(&tree, "period"), "the period read directly differs from the tree's");
    }
    if let Some(fast) = direct {
        let checked = merit::eval::record::from_json(schema, &convert::record_json(&tree));
        let Ok(c) = checked else { panic!("the direct decoder accepted a record the JSON path rejects") };
        assert_eq!(merit::eval::record::to_json(schema, &fast), merit::eval::record::to_json(schema, &c));
    }
});
