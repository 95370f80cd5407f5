//! Any rule text with any record: compiled, then the record evaluated at every trace level and
//! in a cohort. Never a panic; the outcome (or the error) is the same whatever the trace level,
//! as the evaluator promises.
//!
//! The input is the rule text, a line `%%`, then the record as JSON (start from
//! `seeds/evaluate`, which hold the bundled rules and a language workout with records).
#![no_main]
use merit::eval::{TraceLevel, evaluate};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some((rules, record)) = text.split_once("\n%%\n") else { return };
    let Ok((rs, _)) = merit::compile::compile("fuzz.merit", rules) else { return };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(record) else { return };
    let Ok(rec) = merit::eval::record::from_json(&rs.checked.schema, &json) else { return };
    let answers: Vec<_> = [TraceLevel::None, TraceLevel::Summary, TraceLevel::Full]
        .into_iter()
        .map(|t| {
            evaluate(&rs, &rec, t).map(|o| {
                let mut answer = merit::answer::to_json(&rs, &rec, &o);
                if let Some(m) = answer.as_object_mut() {
                    m.remove("trace");
                }
                answer
            })
        })
        .collect();
    for a in &answers[1..] {
        assert_eq!(&answers[0], a, "the trace level changed the outcome");
    }
    let cohort = [rec.clone(), rec.clone(), rec];
    let _ = merit::cohort::classify_cohort(&rs, &cohort, merit::cohort::Exemption::None, TraceLevel::Full);
});
