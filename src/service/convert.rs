//! Conversions between `merit.v1` messages and the library's types. Records become the same
//! JSON the CLI reads, so both paths validate a record identically.

use super::pb;
use crate::answer;
use crate::check::ir::{Const, Field, FieldType, Role, Schema};
use crate::compile::RuleSet;
use crate::date;
use crate::diagnostic::{Diagnostic, Severity};
use crate::eval::Outcome;
use crate::eval::record::Record;
use crate::registry::Loaded;
use crate::source::SourceFile;
use serde_json::{Map, Value as Json};

/// A record value tree as JSON: decimals as exact JSON numbers (read from their text), dates
/// and text as strings, an unset value as null (absent).
pub fn record_json(r: &pb::RecordValue) -> Json {
    Json::Object(r.fields.iter().map(|(k, v)| (k.clone(), value_json(v))).collect::<Map<_, _>>())
}

fn value_json(v: &pb::Value) -> Json {
    use pb::value::Kind;
    match &v.kind {
        None => Json::Null,
        Some(Kind::Text(t)) | Some(Kind::Date(t)) => Json::String(t.clone()),
        Some(Kind::Boolean(b)) => Json::Bool(*b),
        Some(Kind::Integer(i)) => Json::from(*i),
        // Kept as text when it is no number, so the schema check reports it with its path.
        Some(Kind::Decimal(d)) => match serde_json::from_str::<Json>(d) {
            Ok(n @ Json::Number(_)) => n,
            _ => Json::String(d.clone()),
        },
        Some(Kind::List(l)) => Json::Array(l.items.iter().map(value_json).collect()),
        Some(Kind::Record(r)) => record_json(r),
    }
}

/// A JSON record as a value tree (for clients and tests that hold JSON).
pub fn json_record(j: &Json) -> pb::RecordValue {
    match j {
        Json::Object(m) => pb::RecordValue { fields: m.iter().map(|(k, v)| (k.clone(), json_value(v))).collect() },
        _ => pb::RecordValue::default(),
    }
}

fn json_value(j: &Json) -> pb::Value {
    use pb::value::Kind;
    let kind = match j {
        Json::Null => None,
        Json::Bool(b) => Some(Kind::Boolean(*b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) if !n.as_str().contains(['.', 'e', 'E']) => Some(Kind::Integer(i)),
            _ => Some(Kind::Decimal(n.as_str().to_string())),
        },
        Json::String(s) => Some(if date::parse_date(s).is_some() { Kind::Date(s.clone()) } else { Kind::Text(s.clone()) }),
        Json::Array(items) => Some(Kind::List(pb::ListValue { items: items.iter().map(json_value).collect() })),
        Json::Object(_) => Some(Kind::Record(json_record(j))),
    };
    pb::Value { kind }
}

/// The rule set's identity.
pub fn identity(rs: &RuleSet) -> pb::RuleSetIdentity {
    pb::RuleSetIdentity { id: rs.checked.id.clone(), version: rs.checked.version.clone(), hash: rs.hash.clone() }
}

/// A level or outcome outside the order, as a message.
pub fn outcome(rs: &RuleSet, level: u8) -> pb::Outcome {
    pb::Outcome {
        id: rs.level_id(level).to_string(),
        label: rs.level_label(level).to_string(),
        rank: rs.is_ordered(level).then_some(u32::from(level) + 1),
    }
}

/// The answer for one record: the same fields as `merit classify --json`.
pub fn classification(rs: &RuleSet, record: &Record, o: &Outcome) -> pb::Classification {
    let trace = o
        .trace
        .iter()
        .map(|s| {
            let src = rs.sources.get(s.source);
            pb::TraceStep {
                step: s.kind.as_str().to_string(),
                rule: src.map(|x| x.name.clone()).unwrap_or_default(),
                at: src.map(|x| format!("{}:{}", rs.source.name, x.loc)).unwrap_or_default(),
                text: src.map(|x| x.text.clone()).unwrap_or_default(),
                inputs: src.map(|x| x.inputs.clone()).unwrap_or_default(),
                value: answer::step_value(rs, s),
                effect: match s.levels {
                    Some((a, b)) if a != b => format!("{} → {}", rs.level_id(a), rs.level_id(b)),
                    _ => String::new(),
                },
                message: s.message.clone().unwrap_or_default(),
            }
        })
        .collect();
    pb::Classification {
        ruleset: Some(identity(rs)),
        subject: answer::subject_of(rs, record).to_string(),
        outcome: Some(outcome(rs, o.level)),
        total: o.total.map(|t| answer::format_total(&t)),
        criteria: answer::criteria_by_name(rs, o),
        flags: o.flag_codes(rs).into_iter().map(str::to_string).collect(),
        trace,
        quota: o.quota.map(|q| pb::QuotaPlace { position: q.position, limit: q.limit, tied: q.tied }),
    }
}

/// A diagnostic as a message.
pub fn diagnostic(source: &SourceFile, d: &Diagnostic) -> pb::Diagnostic {
    let a = source.line_col(d.span.lo);
    let b = source.line_col(d.span.hi);
    pb::Diagnostic {
        severity: match d.severity {
            Severity::Error => pb::Severity::Error as i32,
            Severity::Warning => pb::Severity::Warning as i32,
        },
        code: d.code.to_string(),
        message: d.message.clone(),
        hint: d.help.clone().unwrap_or_default(),
        range: Some(pb::SourceRange { start_line: a.line, start_column: a.col, end_line: b.line, end_column: b.col }),
    }
}

/// A served rule set's summary.
pub fn summary(l: &Loaded) -> pb::RuleSetSummary {
    pb::RuleSetSummary {
        ruleset: Some(identity(&l.rs)),
        title: l.rs.checked.title.clone(),
        effective_date: l.rs.effective(),
        file: l.file.clone(),
    }
}

/// The record schema as messages.
pub fn schema(schema: &Schema) -> Vec<pb::FieldSchema> {
    fields(schema, 0)
}

fn fields(schema: &Schema, rt: usize) -> Vec<pb::FieldSchema> {
    schema.records.get(rt).map(|r| r.fields.iter().map(|f| field(schema, f)).collect()).unwrap_or_default()
}

fn field(schema: &Schema, f: &Field) -> pb::FieldSchema {
    let (ty, values, nested, range) = match &f.ty {
        FieldType::Text => ("text", Vec::new(), Vec::new(), String::new()),
        FieldType::Bool => ("bool", Vec::new(), Vec::new(), String::new()),
        FieldType::Integer(b) => ("integer", Vec::new(), Vec::new(), b.describe()),
        FieldType::Decimal(b) => ("decimal", Vec::new(), Vec::new(), b.describe()),
        FieldType::Date => ("date", Vec::new(), Vec::new(), String::new()),
        FieldType::Level => ("level", schema.levels.iter().take(schema.ordered_levels).cloned().collect(), Vec::new(), String::new()),
        FieldType::Enum(e) => ("choice", schema.enums.get(*e).map(|x| x.values.clone()).unwrap_or_default(), Vec::new(), String::new()),
        FieldType::List(r) => ("list", Vec::new(), fields(schema, *r), String::new()),
        FieldType::Record(r) => ("record", Vec::new(), fields(schema, *r), String::new()),
    };
    let default_value = f.default.as_ref().map(|c| match c {
        Const::Absent => String::new(),
        Const::Bool(b) => b.to_string(),
        Const::Num(n) => n.to_string(),
        Const::Text(t) => t.clone(),
        Const::Date(d) => date::format_date(*d),
        Const::Enum(t, e) => crate::eval::record::enum_name(schema, *t, *e).to_string(),
        Const::Level(l) => schema.levels.get(*l as usize).cloned().unwrap_or_default(),
        Const::EmptyList => "[]".to_string(),
    });
    pb::FieldSchema {
        name: f.name.clone(),
        r#type: ty.to_string(),
        optional: f.optional,
        default_value,
        role: match f.role {
            Some(Role::Subject) => "subject",
            Some(Role::Period) => "period",
            Some(Role::Cohort) => "cohort",
            None => "",
        }
        .to_string(),
        values,
        fields: nested,
        range,
    }
}

/// The text of a field of a value tree (for choosing the rule-set version by period).
pub fn tree_text<'a>(r: &'a pb::RecordValue, field: &str) -> Option<&'a str> {
    match r.fields.get(field)?.kind.as_ref()? {
        pb::value::Kind::Text(t) | pb::value::Kind::Date(t) => Some(t),
        _ => None,
    }
}
