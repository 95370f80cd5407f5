//! Any JSON text as a record of the bundled Regulation 366 rules: never a panic; the fast
//! decoder never accepts what the checked path rejects, and both read the same record.
#![no_main]
use std::sync::LazyLock;

static RULES: LazyLock<merit::compile::RuleSet> =
    LazyLock::new(|| merit::compile::compile("reg366.merit", include_str!("../../rules/reg366.merit")).map(|(rs, _)| rs).unwrap_or_else(|_| std::process::abort()));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let schema = &RULES.checked.schema;
    let fast = merit::eval::record::decode_fast(schema, text);
    let checked = serde_json::from_str::<serde_json::Value>(text).ok().map(|j| merit::eval::record::from_json(schema, &j));
    if let Some(f) = &fast {
        let Some(Ok(c)) = &checked else { panic!("the fast decoder accepted what the checked path rejects: {text}") };
        assert_eq!(merit::eval::record::to_json(schema, f), merit::eval::record::to_json(schema, c));
        let _ = merit::eval::evaluate(&RULES, f, merit::eval::TraceLevel::Full);
    }
});
