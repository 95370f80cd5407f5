//! Test data shared by unit tests: the conformance records of `../shared/conformance`.

/// Every conformance record with the bundled rule file it is read under (`reg366.merit` or
/// `decree335.merit`); `None` (after a printed line) when the records are not beside the
/// repository, which CI never allows.
pub(crate) fn conformance_records() -> Option<Vec<(&'static str, serde_json::Value)>> {
    let dir = std::env::var_os("MERIT_CONFORMANCE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"));
    if !dir.is_dir() {
        assert!(std::env::var_os("CI").is_none(), "conformance records not found at {}", dir.display());
        println!("skipping: conformance records not found at {}", dir.display());
        return None;
    }
    let mut out = Vec::new();
    for file in ["reg366.jsonl", "decree335.jsonl", "exactness.jsonl"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("conformance file readable");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
            let rules = if file == "decree335.jsonl" || v["rule_set"] == "335" { "decree335.merit" } else { "reg366.merit" };
            out.push((rules, v["record"].clone()));
        }
    }
    Some(out)
}

/// A bundled rule file, compiled.
pub(crate) fn bundled(name: &str) -> crate::compile::RuleSet {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(name);
    crate::compile::compile(name, &std::fs::read_to_string(path).expect("readable")).map(|(rs, _)| rs).expect("bundled rules compile")
}
