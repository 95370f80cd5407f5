//! Snapshot tests of explanation traces: the example record under the bundled rules, as the
//! human text and as the answer JSON. Regenerate with `INSTA_UPDATE=always cargo test`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]

use merit::answer::{to_human, to_json};
use merit::compile::{RuleSet, compile};
use merit::eval::record::from_json_text;
use merit::eval::{TraceLevel, evaluate};

fn rules(name: &str) -> RuleSet {
    let text = std::fs::read_to_string(format!("{}/rules/{name}", env!("CARGO_MANIFEST_DIR"))).expect("readable");
    compile(&format!("rules/{name}"), &text).expect("compiles").0
}

const VETOED: &str = r#"{"subject_id": "V1", "agency_id": "A", "period": "2025", "general_points": 27,
  "task_points_assessed": 68, "tasks": [{"id": "T", "deadline": "2025-03-01", "completed_on": "2025-02-01", "exceeded": true}],
  "disciplines": [{"form": "reprimand", "effective_on": "2025-05-10", "violation_id": "V-7"}]}"#;

#[test]
fn example_record_trace() {
    let rs = rules("reg366.merit");
    let text = std::fs::read_to_string(format!("{}/examples/staff_2025.json", env!("CARGO_MANIFEST_DIR"))).expect("readable");
    let record = from_json_text(&rs.checked.schema, &text).expect("fits");
    let full = evaluate(&rs, &record, TraceLevel::Full).expect("classifies");
    let off = evaluate(&rs, &record, TraceLevel::None).expect("classifies");
    assert_eq!(full.level, off.level, "the trace never changes the outcome");
    assert!(off.trace.is_empty());
    insta::assert_snapshot!("staff_2025_human", to_human(&rs, &record, &full).replace(&rs.hash[..12], "[hash]"));
    let mut json = to_json(&rs, &record, &full);
    json["ruleset"]["hash"] = serde_json::Value::String("[hash]".into());
    insta::assert_json_snapshot!("staff_2025_json", json);
}

#[test]
fn vetoed_record_trace_shows_band_then_veto() {
    let rs = rules("reg366.merit");
    let record = from_json_text(&rs.checked.schema, VETOED).expect("fits");
    let o = evaluate(&rs, &record, TraceLevel::Summary).expect("classifies");
    let text = to_human(&rs, &record, &o);
    let band = text.find("band: excellent").expect("band shown");
    let veto = text.find("veto discipline_veto").expect("veto shown");
    assert!(band < veto, "the band comes before the veto:\n{text}");
    insta::assert_snapshot!("vetoed_summary_human", text.replace(&rs.hash[..12], "[hash]"));
}
