//! Runs every conformance record of ../shared/conformance through the bundled rules and
//! reports each difference (outcome, total, flags) with the record's subject_id.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, clippy::indexing_slicing, reason = "tests fail loudly")]
use merit::answer::format_total;
use merit::compile::{RuleSet, compile};
use merit::eval::{TraceLevel, evaluate, record};
use serde_json::Value;
use std::path::PathBuf;

fn conformance_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("MERIT_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(std::env::var_os("CI").is_none(), "conformance records not found at {}: CI must run them", dir.display());
    println!("skipping conformance: {} not found (set MERIT_CONFORMANCE_DIR)", dir.display());
    None
}

fn bundled(name: &str) -> RuleSet {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules").join(name);
    let text = std::fs::read_to_string(&path).expect("bundled rules readable");
    match compile(&format!("rules/{name}"), &text) {
        Ok((rs, _)) => rs,
        Err((_, d)) => panic!("bundled rules {name} do not compile: {d:?}"),
    }
}

/// Classifies one conformance line; returns a description of any difference.
fn differs(rs: &RuleSet, line: &Value) -> Option<String> {
    let rec = &line["record"];
    let expected = &line["expected"];
    let subject = rec["subject_id"].as_str().unwrap_or("?");
    let record = match record::from_json(&rs.checked.schema, rec) {
        Ok(r) => r,
        Err(e) => {
            return Some(format!("{subject}: rejected: {}", e.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")));
        }
    };
    let o = match evaluate(rs, &record, TraceLevel::None) {
        Ok(o) => o,
        Err(e) => return Some(format!("{subject}: error: {}", e.describe(rs))),
    };
    // The store's canonical text is the canonical JSON, written without the tree.
    let canonical = record::to_json(&rs.checked.schema, &record).to_string();
    if record::to_json_text(&rs.checked.schema, &record) != canonical {
        return Some(format!("{subject}: the canonical text differs from the canonical JSON"));
    }
    // The fast decoder (used by replay) reads the same record, both as given and canonical.
    for text in [rec.to_string(), canonical] {
        let Some(fast) = record::decode_fast(&rs.checked.schema, &text) else {
            return Some(format!("{subject}: the fast decoder refused {text}"));
        };
        let f = evaluate(rs, &fast, TraceLevel::None).ok()?;
        if f.level != o.level || f.total.map(|t| format_total(&t)) != o.total.map(|t| format_total(&t)) || f.flags != o.flags {
            return Some(format!("{subject}: the fast decoder reads it differently"));
        }
    }
    let outcome = rs.level_id(o.level);
    let total = o.total.map(|t| format_total(&t));
    let flags: Vec<&str> = o.flag_codes(rs);
    let want_outcome = expected["outcome"].as_str().unwrap_or("");
    let want_total = expected["total"].as_str().map(str::to_string);
    let want_flags: Vec<&str> = expected["flags"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if outcome != want_outcome || total != want_total || flags != want_flags {
        return Some(format!("{subject}: expected {want_outcome} {want_total:?} {want_flags:?}, got {outcome} {total:?} {flags:?}"));
    }
    None
}

#[test]
fn bundled_rules_agree_with_every_conformance_record() {
    let Some(dir) = conformance_dir() else { return };
    let reg366 = bundled("reg366.merit");
    let decree335 = bundled("decree335.merit");
    let mut diffs = Vec::new();
    let mut count = 0;
    for (file, default) in [("reg366.jsonl", Some(&reg366)), ("decree335.jsonl", Some(&decree335)), ("exactness.jsonl", None)] {
        let text = std::fs::read_to_string(dir.join(file)).expect("conformance file readable");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).expect("conformance line is JSON");
            let rs = match (default, v["rule_set"].as_str()) {
                (Some(rs), _) => rs,
                (None, Some("335")) => &decree335,
                (None, _) => &reg366,
            };
            count += 1;
            if let Some(d) = differs(rs, &v) {
                diffs.push(format!("{file}: {d}"));
            }
        }
    }
    assert_eq!(count, 2030, "all conformance records are read");
    assert!(
        diffs.is_empty(),
        "{} of {count} records differ:\n{}",
        diffs.len(),
        diffs.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}
