//! Every worked case of the bundled rules, and every `merit` example of docs/language.md,
//! compiles and passes.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]

use merit::compile::compile;
use merit::testing::run_tests;

fn run(name: &str, text: &str) -> usize {
    let (rs, warnings) = match compile(name, text) {
        Ok(x) => x,
        Err((_, d)) => panic!("{name} does not compile: {d:#?}"),
    };
    assert!(warnings.is_empty(), "{name} has warnings: {warnings:#?}");
    let results = run_tests(&rs);
    let failed: Vec<String> =
        results.iter().filter(|r| !r.passed()).map(|r| format!("{}:{} {}: {}", name, r.loc.line, r.name, r.failures.join("; "))).collect();
    assert!(failed.is_empty(), "failing worked cases:\n{}", failed.join("\n"));
    results.len()
}

#[test]
fn bundled_rule_files_pass_their_worked_cases() {
    let dir = format!("{}/rules", env!("CARGO_MANIFEST_DIR"));
    let mut total = 0;
    for entry in std::fs::read_dir(&dir).expect("rules/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "merit") {
            let text = std::fs::read_to_string(&path).expect("readable");
            total += run(&path.display().to_string(), &text);
        }
    }
    assert!(total >= 100, "the bundled rules carry their worked cases ({total})");
}

#[test]
fn language_reference_examples_compile_and_pass() {
    let doc = std::fs::read_to_string(format!("{}/docs/language.md", env!("CARGO_MANIFEST_DIR"))).expect("docs/language.md");
    let mut examples = 0;
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```merit\n") {
        let body = &rest[start + 9..];
        let end = body.find("```").expect("closed fence");
        examples += 1;
        run(&format!("docs/language.md example {examples}"), &body[..end]);
        rest = &body[end + 3..];
    }
    assert!(examples >= 5, "the reference has compiled examples ({examples})");
}
