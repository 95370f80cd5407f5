//! Property tests: random records under the bundled rules never panic and always get exactly
//! one outcome (or a field error); random and mutated rule text never panics the parser or
//! the checker.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, clippy::indexing_slicing, reason = "tests fail loudly")]

use merit::compile::{RuleSet, compile};
use merit::eval::record::from_json;
use merit::eval::{EvalError, TraceLevel, evaluate};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::LazyLock;

fn load(name: &str) -> RuleSet {
    let text = std::fs::read_to_string(format!("{}/rules/{name}", env!("CARGO_MANIFEST_DIR"))).expect("readable");
    compile(&format!("rules/{name}"), &text).expect("compiles").0
}

static REG366: LazyLock<RuleSet> = LazyLock::new(|| load("reg366.merit"));
static DECREE335: LazyLock<RuleSet> = LazyLock::new(|| load("decree335.merit"));

fn decimal(max_cents: u32) -> impl Strategy<Value = Value> {
    (0..=max_cents).prop_map(|c| Value::String(format!("{}.{:02}", c / 100, c % 100)))
}

fn date() -> impl Strategy<Value = String> {
    (2023i32..=2026, 1u32..=12, 1u32..=28).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
}

fn task() -> impl Strategy<Value = Value> {
    (date(), proptest::option::of(date()), 0u32..4, 0u32..3, any::<bool>(), any::<bool>(), prop_oneof![Just("1"), Just("0.5"), Just("1.5"), Just("3")])
        .prop_map(|(deadline, done, qf, delays, cause, exceeded, units)| {
            let mut t = json!({"id": "T", "deadline": deadline, "quality_failures": qf, "delays": delays, "objective_cause": cause, "exceeded": exceeded, "units": units});
            if let Some(d) = done {
                t["completed_on"] = Value::String(d);
            }
            t
        })
}

fn discipline() -> impl Strategy<Value = Value> {
    (prop_oneof![Just("reprimand"), Just("warning"), Just("dismissal")], date(), 0u8..3, any::<bool>(), any::<bool>()).prop_map(|(form, on, v, counted, remedied)| {
        json!({"form": form, "effective_on": on, "violation_id": format!("V{v}"), "already_counted": counted, "self_remedied": remedied})
    })
}

fn led_unit() -> impl Strategy<Value = Value> {
    (0u32..12, 0u32..12, 0u32..12, proptest::option::of(prop_oneof![Just("excellent"), Just("good"), Just("completed"), Just("not_completed")]), any::<bool>()).prop_map(
        |(total, ok, exceeded, level, corruption)| {
            let mut u = json!({"unit_id": "U", "tasks_total": total, "tasks_on_time_with_quality": ok.min(total), "tasks_exceeded": exceeded.min(total), "corruption_handled": corruption});
            if let Some(l) = level {
                u["level"] = Value::String(l.into());
            }
            u
        },
    )
}

fn quarter() -> impl Strategy<Value = Value> {
    (1u32..=4, prop_oneof![Just("present"), Just("justified_absence"), Just("missing")], decimal(10_000))
        .prop_map(|(i, status, total)| json!({"index": i, "status": status, "total": total}))
}

fn record() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("2025"), Just("2025-Q2"), Just("2026-07"), Just("2024")],
        prop_oneof![Just("staff"), Just("head"), Just("deputy")],
        proptest::option::of(decimal(3000)),
        proptest::option::of(decimal(7000)),
        proptest::collection::vec(task(), 0..12),
        proptest::collection::vec(discipline(), 0..3),
        proptest::collection::vec(led_unit(), 0..3),
        proptest::collection::vec(quarter(), 0..5),
        (0u32..3, 0u32..3, decimal(100), 0u32..9),
    )
        .prop_map(|(period, role, general, assessed, tasks, disciplines, led, quarters, (pointed, remedied, organising, absence))| {
            let mut r = json!({
                "subject_id": "S", "agency_id": "A", "period": period, "role": role,
                "tasks": tasks, "disciplines": disciplines, "led_units": led, "quarters": quarters,
                "shortcomings_pointed_out": pointed, "shortcomings_remedied": remedied,
                "organising_ratio": organising, "absence_months": absence, "managed_staff_total": 3, "managed_staff_not_completed": pointed.min(3)
            });
            if let Some(g) = general {
                r["general_points"] = g;
            }
            if let Some(a) = assessed {
                r["task_points_assessed"] = a;
            }
            r
        })
}

fn one_outcome(rs: &RuleSet, json: &Value) -> Result<(), TestCaseError> {
    let record = from_json(&rs.checked.schema, json).map_err(|e| TestCaseError::fail(format!("generated record rejected: {e:?}")))?;
    let full = evaluate(rs, &record, TraceLevel::Full);
    let off = evaluate(rs, &record, TraceLevel::None);
    match (&full, &off) {
        (Ok(a), Ok(b)) => {
            prop_assert_eq!(a.level, b.level, "the trace never changes the outcome");
            prop_assert!((a.level as usize) < rs.checked.schema.levels.len());
            prop_assert_eq!(a.flags.clone(), b.flags.clone());
            let total = |o: &merit::eval::Outcome| o.total.map(|t| merit::answer::format_total(&t));
            prop_assert_eq!(total(a), total(b));
            prop_assert_eq!(merit::answer::criteria_by_name(rs, a), merit::answer::criteria_by_name(rs, b));
        }
        (Err(EvalError::Invalid(a)), Err(EvalError::Invalid(b))) => {
            prop_assert!(!a.is_empty() && a == b, "field errors name fields");
        }
        (a, b) => {
            return Err(TestCaseError::fail(format!("expected one outcome or field errors, got {a:?} / {b:?}")));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_records_get_exactly_one_outcome(json in record()) {
        one_outcome(&REG366, &json)?;
        one_outcome(&DECREE335, &json)?;
    }

    #[test]
    fn mutated_rule_text_never_panics(cuts in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..40, "[ -~\n]{0,12}"), 1..6)) {
        let mut text = include_str!("../rules/reg366.merit").to_string();
        for (at, len, insert) in cuts {
            let mut start = at.index(text.len().max(1));
            while !text.is_char_boundary(start) { start -= 1; }
            let mut end = (start + len).min(text.len());
            while !text.is_char_boundary(end) { end -= 1; }
            text.replace_range(start..end, &insert);
        }
        let _ = compile("mutated.merit", &text);
    }

    #[test]
    fn random_text_never_panics(text in "(ruleset|record|let|score|classify|[a-z_]{1,8}|[0-9.%]{1,5}|[-+*/(){}\\[\\]=<>!?:,.\"#\n ]){0,80}") {
        let _ = compile("random.merit", &text);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("ruleset x \"t\" version \"1\" effective 2025-01-01\nlet a = {}1{}\n", "(".repeat(5000), ")".repeat(5000));
    let err = compile("deep.merit", &deep).expect_err("rejected");
    assert!(err.1.iter().any(|d| d.code == "nesting-too-deep"), "{:?}", err.1);
}
