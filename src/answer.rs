//! The answer to a classification, as JSON (the shape of the service's Classify response,
//! DESIGN.md "Settled interfaces") and as human-readable text.

use crate::compile::RuleSet;
use crate::eval::record::Record;
use crate::eval::{Outcome, StepKind, TraceStep, TraceValue};
use crate::num::Num;
use serde_json::{Map, Value as Json, json};

/// A total as text: two places when it has at most two, the exact decimal when it has more,
/// and a fraction with a rounded decimal beside it when it does not terminate.
pub fn format_total(n: &Num) -> String {
    match n.to_decimal_string() {
        Some(s) => {
            let places = s.split_once('.').map_or(0, |(_, f)| f.len());
            if places <= 2 { n.to_fixed(2) } else { s }
        }
        None => n.to_string(),
    }
}

/// The subject's id, from the field with `role subject`.
pub fn subject_of<'r>(rs: &RuleSet, record: &'r Record) -> &'r str {
    record.text(rs.checked.subject_slot).unwrap_or("")
}

/// The `{"id", "version", "hash"}` object.
pub fn ruleset_json(rs: &RuleSet) -> Json {
    json!({ "id": rs.checked.id, "version": rs.checked.version, "hash": rs.hash })
}

/// The answer for one record as JSON.
pub fn to_json(rs: &RuleSet, record: &Record, outcome: &Outcome) -> Json {
    let mut m = Map::new();
    m.insert("ruleset".into(), ruleset_json(rs));
    m.insert("subject".into(), Json::String(subject_of(rs, record).to_string()));
    let mut o = Map::new();
    o.insert("id".into(), Json::String(rs.level_id(outcome.level).to_string()));
    o.insert("label".into(), Json::String(rs.level_label(outcome.level).to_string()));
    if rs.is_ordered(outcome.level) {
        o.insert("rank".into(), Json::from(u32::from(outcome.level) + 1));
    }
    m.insert("outcome".into(), Json::Object(o));
    if let Some(t) = &outcome.total {
        m.insert("total".into(), Json::String(format_total(t)));
    }
    // Keys in sorted order, as the service's proto map prints them.
    let criteria: Map<String, Json> = criteria_by_name(rs, outcome).into_iter().map(|(k, v)| (k, Json::String(v))).collect();
    m.insert("criteria".into(), Json::Object(criteria));
    m.insert("flags".into(), Json::Array(outcome.flag_codes(rs).into_iter().map(|f| Json::String(f.to_string())).collect()));
    m.insert("trace".into(), Json::Array(outcome.trace.iter().map(|s| step_json(rs, s)).collect()));
    if let Some(q) = &outcome.quota {
        m.insert("quota".into(), json!({ "position": q.position, "limit": q.limit, "tied": q.tied }));
    }
    Json::Object(m)
}

/// Criterion values by name, sorted by name.
pub fn criteria_by_name(rs: &RuleSet, outcome: &Outcome) -> std::collections::BTreeMap<String, String> {
    outcome.criteria.iter().filter_map(|(id, v)| rs.checked.lets.get(*id).map(|l| (l.name.clone(), v.to_string()))).collect()
}

/// A trace step's value as shown: the score like the total ("98.00"), others exactly.
pub fn step_value(rs: &RuleSet, s: &TraceStep) -> String {
    match (s.kind, s.value) {
        (StepKind::Score, TraceValue::Num(n)) => format_total(&n),
        _ => value_text(rs, &s.value).unwrap_or_default(),
    }
}

/// A trace step's value as text.
pub fn value_text(rs: &RuleSet, v: &TraceValue) -> Option<String> {
    match v {
        TraceValue::None => None,
        TraceValue::Num(n) => Some(n.to_string()),
        TraceValue::Level(l) => Some(rs.level_id(*l).to_string()),
        TraceValue::Bool(b) => Some(b.to_string()),
    }
}

/// One trace step as JSON: every field of the proto's `TraceStep`, in its order (empty when
/// not applicable), so the CLI and the service print the same text.
pub fn step_json(rs: &RuleSet, s: &TraceStep) -> Json {
    let src = rs.sources.get(s.source);
    let mut m = Map::new();
    m.insert("step".into(), Json::String(s.kind.as_str().into()));
    m.insert("rule".into(), Json::String(src.map(|x| x.name.clone()).unwrap_or_default()));
    m.insert("at".into(), Json::String(src.map(|x| format!("{}:{}", rs.source.name, x.loc)).unwrap_or_default()));
    m.insert("text".into(), Json::String(src.map(|x| x.text.clone()).unwrap_or_default()));
    m.insert("inputs".into(), Json::Array(src.map(|x| x.inputs.iter().map(|i| Json::String(i.clone())).collect()).unwrap_or_default()));
    m.insert("value".into(), Json::String(step_value(rs, s)));
    let effect = match s.levels {
        Some((from, to)) if from != to => format!("{} → {}", rs.level_id(from), rs.level_id(to)),
        _ => String::new(),
    };
    m.insert("effect".into(), Json::String(effect));
    m.insert("message".into(), Json::String(s.message.clone().unwrap_or_default()));
    Json::Object(m)
}

/// A plain-language explanation, one line per step.
pub fn to_human(rs: &RuleSet, record: &Record, outcome: &Outcome) -> String {
    let mut out = String::new();
    let subject = subject_of(rs, record);
    let short = rs.hash.get(..12).unwrap_or(&rs.hash);
    out.push_str(&format!("{subject}: {} \"{}\"", rs.level_id(outcome.level), rs.level_label(outcome.level)));
    if let Some(t) = &outcome.total {
        out.push_str(&format!(", total {}", format_total(t)));
    }
    out.push('\n');
    out.push_str(&format!("  rules: {} {} (sha256 {short}…)\n", rs.checked.id, rs.checked.version));
    for s in &outcome.trace {
        let src = rs.sources.get(s.source);
        let name = src.map_or("", |x| x.name.as_str());
        let at = src.map(|x| format!("  [{}:{}]", rs.source.name, x.loc)).unwrap_or_default();
        let value = value_text(rs, &s.value).unwrap_or_default();
        let effect = match s.levels {
            Some((a, b)) if a != b => format!(" ({} → {})", rs.level_id(a), rs.level_id(b)),
            _ => String::new(),
        };
        let msg = s.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
        let line = match s.kind {
            StepKind::Criterion => {
                let label = rs.checked.lets.get(s.source).and_then(|l| l.label.clone()).unwrap_or_default();
                let max = rs.checked.lets.get(s.source).and_then(|l| l.max).map(|m| format!(" of {m}")).unwrap_or_default();
                let reads = src.filter(|x| !x.inputs.is_empty()).map(|x| format!(" — reads {}", x.inputs.join(", "))).unwrap_or_default();
                format!("criterion {name} \"{label}\" = {value}{max}{reads}{at}")
            }
            StepKind::Score => {
                let shown = match s.value {
                    TraceValue::Num(n) => format_total(&n),
                    _ => value,
                };
                format!("score {name} = {shown}{at}")
            }
            StepKind::Eligibility => format!("eligibility {name} gives {value}{msg}{at}"),
            StepKind::Band => format!("band: {value}{at}"),
            StepKind::Gate => format!("condition for {name} does not hold{effect}{msg}{at}"),
            StepKind::Veto => format!("veto {name}{effect}{msg}{at}"),
            StepKind::Cap => {
                if effect.is_empty() {
                    format!("cap {name} at {value} (not lower){msg}{at}")
                } else {
                    format!("cap {name}{effect}{msg}{at}")
                }
            }
            StepKind::Flag => format!("flag {name}{msg}{at}"),
            StepKind::Quota => format!("quota {name}{effect}{msg}{at}"),
            StepKind::Final => format!(
                "outcome: {value} \"{}\"",
                match s.value {
                    TraceValue::Level(l) => rs.level_label(l),
                    _ => "",
                }
            ),
            StepKind::Next => format!("for {value}: {}", s.message.as_deref().unwrap_or("")),
        };
        out.push_str("  ");
        out.push_str(&line);
        out.push('\n');
    }
    let flags = outcome.flag_codes(rs);
    if !flags.is_empty() {
        out.push_str(&format!("  flags: {}\n", flags.join(", ")));
    }
    if let Some(q) = &outcome.quota {
        out.push_str(&format!(
            "  quota: ranked {}, {} keep the level{}\n",
            q.position,
            q.limit,
            if q.tied { "; tied at the cut" } else { "" }
        ));
    }
    out
}
