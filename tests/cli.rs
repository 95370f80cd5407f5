//! The real `merit` binary: stdout, stderr and exit codes of check, test and classify.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, clippy::indexing_slicing, reason = "tests fail loudly")]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn merit(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_merit"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR")).env("NO_COLOR", "1");
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("merit runs");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("merit finishes")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_accepts_the_bundled_rules() {
    let out = merit(&["check", "rules"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("checked 2 files: 0 errors"));
}

#[test]
fn check_reports_errors_with_location_and_exit_1() {
    let out = merit(&["check", "tests/data/check/unknown_names.merit"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("tests/data/check/unknown_names.merit:9:27"), "{err}");
    assert!(err.contains("did you mean `units`?"), "{err}");
    let json = merit(&["check", "--error-format", "json", "tests/data/check/unknown_names.merit"], None);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v[0]["code"], "unknown-name");
    assert_eq!(v[0]["line"], 9);
}

#[test]
fn test_runs_the_worked_cases_and_summarises() {
    let out = merit(&["test", "rules"], None);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("case 15"), "{stdout}");
    assert!(stdout.lines().last().unwrap_or("").ends_with("passed, 0 failed"), "{stdout}");
}

#[test]
fn a_failing_test_shows_the_difference_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wrong.merit");
    let src = std::fs::read_to_string(format!("{}/rules/reg366.merit", env!("CARGO_MANIFEST_DIR"))).expect("read");
    let src = src.replacen("expect excellent", "expect good", 1);
    std::fs::write(&path, src).expect("write");
    let out = merit(&["test", path.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert!(stdout.contains("outcome: expected `good`, got `excellent`"), "{stdout}");
    assert!(stdout.contains(" 1 failed"), "{stdout}");
}

#[test]
fn classify_prints_a_trace_and_json() {
    let out = merit(&["classify", "--rules", "rules/reg366.merit", "examples/staff_2025.json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.starts_with("CB-0142: completed"), "{s}");
    assert!(s.contains("band: excellent"), "{s}");
    let out = merit(
        &["classify", "--json", "--rules", "rules/reg366.merit", "-"],
        Some(&std::fs::read_to_string(format!("{}/examples/staff_2025.json", env!("CARGO_MANIFEST_DIR"))).unwrap()),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json answer");
    assert_eq!(v["outcome"]["id"], "completed");
    assert_eq!(v["outcome"]["rank"], 3);
    assert_eq!(v["total"], "96.49");
    assert_eq!(v["flags"], serde_json::json!(["R-GATE"]));
    assert_eq!(v["ruleset"]["id"], "reg366_individual");
    assert_eq!(v["ruleset"]["hash"].as_str().map(str::len), Some(64));
}

#[test]
fn a_bad_record_names_the_field_and_exits_3() {
    let record = r#"{"subject_id": "X", "agency_id": "A", "period": "2025", "general_points": 20,
        "tasks": [{"id": "T", "deadline": "31/12/2025"}], "shortcomings_remedy": 1}"#;
    let out = merit(&["classify", "--rules", "rules/reg366.merit", "-"], Some(record));
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains(r#"tasks[0].deadline: expected a date YYYY-MM-DD, got "31/12/2025""#), "{err}");
    assert!(err.contains("shortcomings_remedy: unknown field; did you mean `shortcomings_remedied`?"), "{err}");
}

#[test]
fn a_record_breaking_an_invalid_rule_exits_3() {
    let record = r#"{"subject_id": "X", "agency_id": "A", "period": "2025", "general_points": 20}"#;
    let out = merit(&["classify", "--rules", "rules/reg366.merit", "-"], Some(record));
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("tasks: "), "{}", text(&out.stderr));
}

#[test]
fn cohort_applies_the_quota_in_input_order() {
    let member = |id: &str, assessed: &str| {
        format!(
            r#"{{"subject_id": "{id}", "agency_id": "A", "peer_group": "g", "period": "2025", "general_points": 27,
            "task_points_assessed": {assessed}, "tasks": [{{"id": "T1", "deadline": "2025-03-01", "completed_on": "2025-02-01", "exceeded": true}}]}}"#
        )
    };
    let mut members = vec![member("A", "68"), member("B", "65")];
    for i in 0..4 {
        members.push(member(&format!("G{i}"), "50"));
    }
    let cohort = format!("[{}]", members.join(","));
    let out = merit(&["classify", "--cohort", "--json", "--rules", "rules/reg366.merit", "-"], Some(&cohort));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    // E = 2, G = 4: floor(6 / 6) = 1 keeps excellent; B is demoted.
    assert_eq!(v[0]["outcome"]["id"], "excellent");
    assert_eq!(v[1]["outcome"]["id"], "good");
    assert_eq!(v[1]["quota"], serde_json::json!({"position": 2, "limit": 1, "tied": false}));
    assert!(v[1]["flags"].as_array().unwrap().iter().any(|f| f == "R-QUOTA"));
    let exempt =
        merit(&["classify", "--cohort", "--exemption", "unlimited", "--json", "--rules", "rules/reg366.merit", "-"], Some(&cohort));
    let v: serde_json::Value = serde_json::from_slice(&exempt.stdout).expect("json");
    assert_eq!(v[1]["outcome"]["id"], "excellent");
}

#[test]
fn a_missing_file_exits_5() {
    let out = merit(&["classify", "--rules", "rules/none.merit", "examples/staff_2025.json"], None);
    assert_eq!(out.status.code(), Some(5));
}

#[test]
fn bench_drives_a_real_server_and_counts_answers_and_errors() {
    // One second per phase against the in-process server: every phase answers, none fails.
    let out = merit(&["bench", "--duration-secs", "1", "--concurrency", "4", "--connections", "1", "--stored"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for phase in ["health check", "Classify, summary trace", "Classify, full trace", "Classify, stored (summary)"] {
        let line = report.lines().find(|l| l.starts_with(phase)).unwrap_or_else(|| panic!("no {phase} line in {report}"));
        assert!(line.ends_with(", 0 errors)"), "{line}");
        assert!(!line.contains("(0 ok"), "{line}");
    }
    // A rule set the server does not have: every Classify is an error, and the count says so.
    let out = merit(
        &["bench", "--duration-secs", "1", "--concurrency", "2", "--connections", "1", "--only", "summary", "--ruleset", "nope"],
        None,
    );
    let report = text(&out.stdout);
    assert!(report.contains("(0 ok,") && !report.contains(" 0 errors)"), "{report}");
}
