//! Worked cases: run a rule file's `test` blocks against its own compiled rules.

use crate::answer::format_total;
use crate::cohort::{Exemption, classify_cohort};
use crate::compile::RuleSet;
use crate::eval::record::{self, Record};
use crate::eval::{self, EvalError, TraceLevel};
use crate::num::Num;
use crate::source::LineCol;
use crate::syntax::ast::{Expect, GivenValue, Literal, TestDecl};
use serde_json::{Map, Value as Json};

/// The result of one test block.
#[derive(Clone, Debug)]
pub struct TestResult {
    /// The test's name.
    pub name: String,
    /// Where it is declared.
    pub loc: LineCol,
    /// Each difference between expected and actual; empty when the test passed.
    pub failures: Vec<String>,
}

impl TestResult {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Turns a record literal into JSON (numbers keep their exact text).
pub fn literal_json(l: &Literal) -> Json {
    match l {
        Literal::Object(pairs, _) => {
            let mut m = Map::new();
            for (k, v) in pairs {
                m.insert(k.name.clone(), literal_json(v));
            }
            Json::Object(m)
        }
        Literal::Array(items, _) => Json::Array(items.iter().map(literal_json).collect()),
        Literal::Number(t, _) => serde_json::from_str(t).unwrap_or_else(|_| Json::String(t.clone())),
        Literal::Text(t, _) | Literal::Date(t, _) | Literal::Name(t, _) => Json::String(t.clone()),
        Literal::Bool(b, _) => Json::Bool(*b),
        Literal::Null(_) => Json::Null,
    }
}

fn given_json(rs: &RuleSet, g: &GivenValue) -> Json {
    let mut base = match &g.base {
        Some(name) => rs
            .checked
            .fixtures
            .iter()
            .find(|(n, _)| *n == name.name)
            .map(|(_, f)| given_json(rs, f))
            .unwrap_or_else(|| Json::Object(Map::new())),
        None => Json::Object(Map::new()),
    };
    if let (Json::Object(m), Some(Literal::Object(pairs, _))) = (&mut base, &g.object) {
        for (k, v) in pairs {
            m.insert(k.name.clone(), literal_json(v));
        }
    }
    base
}

/// Runs every test block of a rule set.
pub fn run_tests(rs: &RuleSet) -> Vec<TestResult> {
    rs.checked.tests.iter().map(|t| run_test(rs, t)).collect()
}

fn run_test(rs: &RuleSet, t: &TestDecl) -> TestResult {
    let mut failures = Vec::new();
    let mut records: Vec<Record> = Vec::new();
    for (i, g) in t.given.iter().enumerate() {
        match record::from_json(&rs.checked.schema, &given_json(rs, g)) {
            Ok(r) => records.push(r),
            Err(errors) => {
                let errs = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                match &t.expect {
                    Expect::Invalid(path) if errors.iter().any(|e| e.path == *path) => {}
                    _ => failures.push(if t.cohort {
                        format!("record {i} does not fit the schema: {errs}")
                    } else {
                        format!("the record does not fit the schema: {errs}")
                    }),
                }
            }
        }
    }
    if failures.is_empty() && records.len() == t.given.len() {
        check_expectations(rs, t, &records, &mut failures);
    }
    TestResult { name: t.name.clone(), loc: rs.source.line_col(t.span.lo), failures }
}

fn check_expectations(rs: &RuleSet, t: &TestDecl, records: &[Record], failures: &mut Vec<String>) {
    match &t.expect {
        Expect::Invalid(path) => match records.first().map(|r| eval::evaluate(rs, r, TraceLevel::None)) {
            Some(Err(EvalError::Invalid(errors))) if errors.iter().any(|e| e.path == *path) => {}
            Some(Err(e)) => failures.push(format!("expected the record to be rejected at `{path}`, got: {}", e.describe(rs))),
            Some(Ok(o)) => failures.push(format!("expected the record to be rejected at `{path}`, got outcome `{}`", rs.level_id(o.level))),
            None => {}
        },
        Expect::Cohort(expected) => {
            let exemption = match &t.exemption {
                None => Exemption::None,
                Some(None) => Exemption::Unlimited,
                Some(Some(n)) => Exemption::AtMost(n.parse().unwrap_or(0)),
            };
            let results = classify_cohort(rs, records, exemption, TraceLevel::None);
            for (i, (want, got)) in expected.iter().zip(&results).enumerate() {
                match got {
                    Ok(o) if rs.level_id(o.level) == want.name => {}
                    Ok(o) => failures.push(format!(
                        "record {i} ({}): expected `{}`, got `{}`{}",
                        crate::answer::subject_of(rs, records.get(i).unwrap_or(&Record { slots: Vec::new() })),
                        want.name,
                        rs.level_id(o.level),
                        o.total.map(|t| format!(" (total {})", format_total(&t))).unwrap_or_default()
                    )),
                    Err(e) => failures.push(format!("record {i}: expected `{}`, got an error: {}", want.name, e.describe(rs))),
                }
            }
        }
        Expect::One { outcome, total, flags, by } => {
            let Some(record) = records.first() else {
                return;
            };
            let o = match eval::evaluate(rs, record, TraceLevel::Full) {
                Ok(o) => o,
                Err(e) => {
                    failures.push(format!("expected `{}`, got an error: {}", outcome.name, e.describe(rs)));
                    return;
                }
            };
            if rs.level_id(o.level) != outcome.name {
                let why = o
                    .trace
                    .iter()
                    .filter_map(|s| {
                        let m = s.message.as_ref()?;
                        let who = rs.sources.get(s.source).map_or(s.kind.as_str(), |x| x.name.as_str());
                        Some(format!("{who}: {m}"))
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                failures.push(format!(
                    "outcome: expected `{}`, got `{}`{}{}",
                    outcome.name,
                    rs.level_id(o.level),
                    o.total.map(|t| format!(" (total {})", format_total(&t))).unwrap_or_default(),
                    if why.is_empty() { String::new() } else { format!(" — {why}") }
                ));
            }
            if let Some(want) = total {
                let got = o.total;
                let same = match (Num::parse_decimal(want), got) {
                    (Ok(w), Some(g)) => w.eq(&g).unwrap_or(false),
                    _ => false,
                };
                if !same {
                    failures
                        .push(format!("total: expected {want}, got {}", got.map(|g| format_total(&g)).unwrap_or_else(|| "none".into())));
                }
            }
            if let Some(want) = flags {
                let mut want: Vec<&str> = want.iter().map(String::as_str).collect();
                want.sort_unstable();
                want.dedup();
                let got = o.flag_codes(rs);
                if want != got {
                    failures.push(format!("flags: expected [{}], got [{}]", want.join(", "), got.join(", ")));
                }
            }
            for b in by {
                let applied = o.decided_by.iter().any(|&s| rs.sources.get(s).is_some_and(|x| x.name == b.name));
                if !applied {
                    let got: Vec<&str> = o.decided_by.iter().filter_map(|&s| rs.sources.get(s).map(|x| x.name.as_str())).collect();
                    failures.push(format!("expected rule `{}` to decide it; the deciding rules were [{}]", b.name, got.join(", ")));
                }
            }
        }
    }
}
