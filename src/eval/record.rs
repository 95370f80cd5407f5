//! Records: JSON in, validated against a rule set's schema, out as typed slots.
//!
//! The rules of DESIGN.md "Settled interfaces": unknown keys are errors with a did-you-mean,
//! `null` is absent, decimals come as strings or JSON numbers and are read exactly from their
//! text, integers as JSON integers, dates `YYYY-MM-DD`, enum values exactly as declared, text
//! normalised to Unicode NFC.

use crate::check::ir::{Const, Field, FieldType, RecordTypeId, Role, Schema};
use crate::date;
use crate::diagnostic::did_you_mean;
use crate::num::Num;
use serde_json::Value as Json;
use std::fmt;

/// A field value of a validated record.
#[derive(Clone, Debug)]
pub enum Value {
    /// Not given, and no default.
    Absent,
    /// true / false
    Bool(bool),
    /// An exact number.
    Num(Num),
    /// NFC text.
    Text(Box<str>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Enum value: (enum type, value index).
    Enum(u16, u16),
    /// Level index.
    Level(u8),
    /// Items of a list.
    List(Vec<Record>),
    /// A nested record.
    Record(Box<Record>),
}

/// A validated record: one value per schema field, in declaration order.
#[derive(Clone, Debug)]
pub struct Record {
    /// Values by field slot.
    pub slots: Vec<Value>,
}

impl Record {
    /// The value in a slot (absent when out of range).
    #[inline]
    pub fn get(&self, slot: u16) -> &Value {
        self.slots.get(slot as usize).unwrap_or(&Value::Absent)
    }

    /// The text in a slot, if it holds text.
    pub fn text(&self, slot: Option<u16>) -> Option<&str> {
        match self.get(slot?) {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// A record that does not fit the schema: where, and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Field path such as `tasks[3].deadline` (empty for the record itself).
    pub path: String,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { write!(f, "{}", self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

pub use crate::check::ir::nfc;

/// At most this many field errors are reported for one record.
const MAX_ERRORS: usize = 50;

/// Validates a JSON record against the schema's root record type.
pub fn from_json(schema: &Schema, json: &Json) -> Result<Record, Vec<FieldError>> {
    let mut errors = Vec::new();
    let record = decode_record(schema, 0, json, "", &mut errors);
    if errors.is_empty() { Ok(record) } else { Err(errors) }
}

/// Parses JSON text (decimals kept exact) and validates it: straight into a record when it
/// fits, through the checked path (which names every field at fault) when it does not.
pub fn from_json_text(schema: &Schema, text: &str) -> Result<Record, Vec<FieldError>> {
    if let Some(r) = decode_fast(schema, text) {
        return Ok(r);
    }
    let json: Json =
        serde_json::from_str(text).map_err(|e| vec![FieldError { path: String::new(), message: format!("not valid JSON: {e}") }])?;
    from_json(schema, &json)
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

fn shown(v: &Json) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 { format!("{}…", s.chars().take(40).collect::<String>()) } else { s }
}

fn decode_record(schema: &Schema, rt: RecordTypeId, json: &Json, path: &str, errors: &mut Vec<FieldError>) -> Record {
    let Some(fields) = schema.records.get(rt).map(|r| &r.fields) else {
        return Record { slots: Vec::new() };
    };
    let Json::Object(map) = json else {
        errors.push(FieldError { path: path.to_string(), message: format!("expected a record {{...}}, got {}", shown(json)) });
        return Record { slots: Vec::new() };
    };
    for key in map.keys() {
        if !fields.iter().any(|f| f.name == *key) && errors.len() < MAX_ERRORS {
            let hint = did_you_mean(key, fields.iter().map(|f| f.name.as_str()));
            let message = match hint {
                Some(h) => format!("unknown field; {h}"),
                None => "unknown field".to_string(),
            };
            errors.push(FieldError { path: join(path, key), message });
        }
    }
    let slots = fields
        .iter()
        .map(|f| {
            let p = join(path, &f.name);
            match map.get(&f.name) {
                None | Some(Json::Null) => absent(f, &p, errors),
                Some(v) => decode_value(schema, f, v, &p, errors),
            }
        })
        .collect();
    Record { slots }
}

fn absent(f: &Field, path: &str, errors: &mut Vec<FieldError>) -> Value {
    match &f.default {
        Some(c) => from_const(c),
        None if f.optional => Value::Absent,
        None => {
            if errors.len() < MAX_ERRORS {
                errors.push(FieldError { path: path.to_string(), message: "required field is missing".to_string() });
            }
            Value::Absent
        }
    }
}

/// A schema default as a value.
pub fn from_const(c: &Const) -> Value {
    match c {
        Const::Absent => Value::Absent,
        Const::Bool(b) => Value::Bool(*b),
        Const::Num(n) => Value::Num(*n),
        Const::Text(t) => Value::Text(t.clone().into_boxed_str()),
        Const::Date(d) => Value::Date(*d),
        Const::Enum(t, e) => Value::Enum(*t, *e),
        Const::Level(l) => Value::Level(*l),
        Const::EmptyList => Value::List(Vec::new()),
    }
}

fn decode_value(schema: &Schema, f: &Field, v: &Json, path: &str, errors: &mut Vec<FieldError>) -> Value {
    let mut err = |message: String| {
        if errors.len() < MAX_ERRORS {
            errors.push(FieldError { path: path.to_string(), message });
        }
        Value::Absent
    };
    match &f.ty {
        FieldType::Text => match v {
            Json::String(s) => {
                let t = nfc(s);
                if f.role == Some(Role::Period) && date::parse_period(&t).is_none() {
                    return err(format!("expected a period such as \"2025\", \"2025-Q3\" or \"2025-07\", got {}", shown(v)));
                }
                Value::Text(t.into_boxed_str())
            }
            _ => err(format!("expected a text, got {}", shown(v))),
        },
        FieldType::Bool => match v {
            Json::Bool(b) => Value::Bool(*b),
            _ => err(format!("expected true or false, got {}", shown(v))),
        },
        FieldType::Integer(b) => {
            let n = match v {
                Json::Number(n) if !n.as_str().contains(['.', 'e', 'E']) => Num::parse_decimal(n.as_str()).ok(),
                _ => None,
            };
            match n {
                Some(n) if b.contains(&n) => Value::Num(n),
                Some(_) => err(format!("expected a whole number {}, got {}", b.describe(), shown(v))),
                None => err(format!("expected a whole number, got {}", shown(v))),
            }
        }
        FieldType::Decimal(b) => {
            let text = match v {
                Json::Number(n) => Some(n.as_str()),
                Json::String(s) => Some(s.as_str()),
                _ => None,
            };
            match text.map(Num::parse_decimal) {
                Some(Ok(n)) => {
                    if b.contains(&n) {
                        Value::Num(n)
                    } else {
                        err(format!("expected a decimal {}, got {}", b.describe(), shown(v)))
                    }
                }
                Some(Err(e)) => err(format!("expected a decimal number, got {} ({e})", shown(v))),
                None => err(format!("expected a decimal number (as text such as \"62.99\" or a JSON number), got {}", shown(v))),
            }
        }
        FieldType::Date => match v {
            Json::String(s) => match date::parse_date(s) {
                Some(d) => Value::Date(d),
                None => err(format!("expected a date YYYY-MM-DD, got {}", shown(v))),
            },
            _ => err(format!("expected a date YYYY-MM-DD, got {}", shown(v))),
        },
        FieldType::Level => {
            let levels = schema.levels.get(..schema.ordered_levels).unwrap_or(&[]);
            match v {
                Json::String(s) => match levels.iter().position(|l| l == s).and_then(|i| u8::try_from(i).ok()) {
                    Some(i) => Value::Level(i),
                    None => err(format!("expected one of {}, got {}", levels.join(", "), shown(v))),
                },
                _ => err(format!("expected one of {}, got {}", levels.join(", "), shown(v))),
            }
        }
        FieldType::Enum(e) => {
            let values = schema.enums.get(*e).map(|e| e.values.as_slice()).unwrap_or(&[]);
            match v {
                Json::String(s) => match values.iter().position(|x| x == s).and_then(|i| u16::try_from(i).ok()) {
                    Some(i) => Value::Enum(u16::try_from(*e).unwrap_or(u16::MAX), i),
                    None => err(format!("expected one of {}, got {}", values.join(", "), shown(v))),
                },
                _ => err(format!("expected one of {}, got {}", values.join(", "), shown(v))),
            }
        }
        FieldType::List(rt) => match v {
            Json::Array(items) => Value::List(
                items.iter().enumerate().map(|(i, item)| decode_record(schema, *rt, item, &format!("{path}[{i}]"), errors)).collect(),
            ),
            _ => err(format!("expected a list [...], got {}", shown(v))),
        },
        FieldType::Record(rt) => Value::Record(Box::new(decode_record(schema, *rt, v, path, errors))),
    }
}

/// The canonical JSON of a record: schema order, defaults filled in, decimals as exact text.
pub fn to_json(schema: &Schema, record: &Record) -> Json {
    record_json(schema, 0, record)
}

fn record_json(schema: &Schema, rt: RecordTypeId, record: &Record) -> Json {
    let mut map = serde_json::Map::new();
    let Some(fields) = schema.records.get(rt).map(|r| &r.fields) else {
        return Json::Object(map);
    };
    for (f, v) in fields.iter().zip(&record.slots) {
        let j = match v {
            Value::Absent => continue,
            Value::Bool(b) => Json::Bool(*b),
            Value::Num(n) => match (&f.ty, n.to_i64()) {
                (FieldType::Integer(_), Some(i)) => Json::from(i),
                _ => Json::String(n.to_decimal_string().unwrap_or_else(|| n.to_string())),
            },
            Value::Text(t) => Json::String(t.to_string()),
            Value::Date(d) => Json::String(date::format_date(*d)),
            Value::Enum(t, e) => Json::String(enum_name(schema, *t, *e).to_string()),
            Value::Level(l) => Json::String(schema.levels.get(*l as usize).cloned().unwrap_or_default()),
            Value::List(items) => match f.ty {
                FieldType::List(irt) => Json::Array(items.iter().map(|i| record_json(schema, irt, i)).collect()),
                _ => Json::Array(Vec::new()),
            },
            Value::Record(r) => match f.ty {
                FieldType::Record(irt) => record_json(schema, irt, r),
                _ => Json::Null,
            },
        };
        map.insert(f.name.clone(), j);
    }
    Json::Object(map)
}

/// [`to_json`] as text, written straight out without building the JSON tree (the store keeps
/// one canonical record per evaluation); byte for byte the same as `to_json(..).to_string()`.
pub fn to_json_text(schema: &Schema, record: &Record) -> String {
    serde_json::to_string(&RecordJson { schema, rt: 0, record }).unwrap_or_else(|_| to_json(schema, record).to_string())
}

/// A record that serialises as its canonical JSON object.
struct RecordJson<'r> {
    schema: &'r Schema,
    rt: RecordTypeId,
    record: &'r Record,
}

impl serde::Serialize for RecordJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct Items<'r>(&'r Schema, RecordTypeId, &'r [Record]);
        impl serde::Serialize for Items<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.2.len()))?;
                for record in self.2 {
                    seq.serialize_element(&RecordJson { schema: self.0, rt: self.1, record })?;
                }
                seq.end()
            }
        }
        let schema = self.schema;
        let fields = schema.records.get(self.rt).map(|r| r.fields.as_slice()).unwrap_or(&[]);
        let mut map = s.serialize_map(None)?;
        for (f, v) in fields.iter().zip(&self.record.slots) {
            let key = f.name.as_str();
            match v {
                Value::Absent => {}
                Value::Bool(b) => map.serialize_entry(key, b)?,
                Value::Num(n) => match (&f.ty, n.to_i64()) {
                    (FieldType::Integer(_), Some(i)) => map.serialize_entry(key, &i)?,
                    _ => map.serialize_entry(key, &n.to_decimal_string().unwrap_or_else(|| n.to_string()))?,
                },
                Value::Text(t) => map.serialize_entry(key, &**t)?,
                Value::Date(d) => map.serialize_entry(key, &date::format_date(*d))?,
                Value::Enum(t, e) => map.serialize_entry(key, enum_name(schema, *t, *e))?,
                Value::Level(l) => map.serialize_entry(key, schema.levels.get(*l as usize).map_or("", String::as_str))?,
                Value::List(items) => match f.ty {
                    FieldType::List(irt) => map.serialize_entry(key, &Items(schema, irt, items))?,
                    _ => map.serialize_entry(key, &[(); 0])?,
                },
                Value::Record(r) => match f.ty {
                    FieldType::Record(irt) => map.serialize_entry(key, &RecordJson { schema, rt: irt, record: r })?,
                    _ => map.serialize_entry(key, &())?,
                },
            }
        }
        map.end()
    }
}

/// The declared name of an enum value.
pub fn enum_name(schema: &Schema, t: u16, e: u16) -> &str {
    schema.enums.get(t as usize).and_then(|en| en.values.get(e as usize)).map_or("", String::as_str)
}

/// Decodes JSON text straight into a record, without building a JSON tree first (replay reads
/// millions of stored canonical records). `None` when anything does not fit: the caller then
/// takes the checked path, which names every field at fault.
pub fn decode_fast(schema: &Schema, text: &str) -> Option<Record> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(text);
    let record = RecordSeed { schema, rt: 0 }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(record)
}

mod fast {
    use super::{Record, Value};
    use crate::check::ir::{Field, FieldType, RecordTypeId, Role, Schema};
    use crate::date;
    use crate::num::Num;
    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    fn fail<E: de::Error>() -> E {
        E::custom("does not fit")
    }

    pub struct RecordSeed<'s> {
        pub schema: &'s Schema,
        pub rt: RecordTypeId,
    }

    impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
        type Value = Record;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Record, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for RecordSeed<'_> {
        type Value = Record;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a record")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
            let fields = self.schema.records.get(self.rt).map(|r| r.fields.as_slice()).ok_or_else(fail)?;
            let mut slots: Vec<Option<Value>> = vec![None; fields.len()];
            while let Some(i) = map.next_key_seed(KeySeed(fields))? {
                let field = fields.get(i).ok_or_else(fail)?;
                let v = map.next_value_seed(FieldSeed { schema: self.schema, field })?;
                *slots.get_mut(i).ok_or_else(fail)? = Some(v);
            }
            let mut out = Vec::with_capacity(fields.len());
            for (f, v) in fields.iter().zip(slots) {
                out.push(match v {
                    Some(Value::Absent) | None => match &f.default {
                        Some(c) => super::from_const(c),
                        None if f.optional => Value::Absent,
                        None => return Err(fail()),
                    },
                    Some(v) => v,
                });
            }
            Ok(Record { slots: out })
        }
    }

    struct KeySeed<'s>(&'s [Field]);

    impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
        type Value = usize;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for KeySeed<'_> {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a field name")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
            self.0.iter().position(|f| f.name == v).ok_or_else(fail)
        }
    }

    struct FieldSeed<'s> {
        schema: &'s Schema,
        field: &'s Field,
    }

    impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_option(self)
        }
    }

    impl<'de> Visitor<'de> for FieldSeed<'_> {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a field value")
        }
        fn visit_none<E: de::Error>(self) -> Result<Value, E> {
            Ok(Value::Absent)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
            Ok(Value::Absent)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            match &self.field.ty {
                FieldType::List(rt) => d.deserialize_seq(ListSeed { schema: self.schema, rt: *rt }),
                FieldType::Record(rt) => RecordSeed { schema: self.schema, rt: *rt }.deserialize(d).map(|r| Value::Record(Box::new(r))),
                _ => d.deserialize_any(Scalar { schema: self.schema, field: self.field }),
            }
        }
    }

    struct ListSeed<'s> {
        schema: &'s Schema,
        rt: RecordTypeId,
    }

    impl<'de> Visitor<'de> for ListSeed<'_> {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
            while let Some(r) = seq.next_element_seed(RecordSeed { schema: self.schema, rt: self.rt })? {
                items.push(r);
            }
            Ok(Value::List(items))
        }
    }

    struct Scalar<'s> {
        schema: &'s Schema,
        field: &'s Field,
    }

    impl Scalar<'_> {
        fn number<E: de::Error>(&self, text: &str, is_integer_text: bool) -> Result<Value, E> {
            let n = Num::parse_decimal(text).map_err(|_| fail())?;
            match &self.field.ty {
                FieldType::Integer(b) if is_integer_text && b.contains(&n) => Ok(Value::Num(n)),
                FieldType::Decimal(b) if b.contains(&n) => Ok(Value::Num(n)),
                _ => Err(fail()),
            }
        }
    }

    impl<'de> Visitor<'de> for Scalar<'_> {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a value")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
            match self.field.ty {
                FieldType::Bool => Ok(Value::Bool(v)),
                _ => Err(fail()),
            }
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
            self.number(&v.to_string(), true)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
            self.number(&v.to_string(), true)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            // serde_json's exact (arbitrary-precision) number: one entry whose value is its text.
            let _key: Option<String> = map.next_key()?;
            let text: String = map.next_value()?;
            let integer = !text.contains(['.', 'e', 'E']);
            self.number(&text, integer)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
            match &self.field.ty {
                FieldType::Text => {
                    if self.field.role == Some(Role::Period) && date::parse_period(v).is_none() {
                        return Err(fail());
                    }
                    let text = if unicode_normalization::is_nfc(v) { v.to_string() } else { super::nfc(v) };
                    Ok(Value::Text(text.into_boxed_str()))
                }
                FieldType::Decimal(_) => self.number(v, false),
                FieldType::Date => date::parse_date(v).map(Value::Date).ok_or_else(fail),
                FieldType::Level => {
                    let levels = self.schema.levels.get(..self.schema.ordered_levels).unwrap_or(&[]);
                    levels.iter().position(|l| l == v).and_then(|i| u8::try_from(i).ok()).map(Value::Level).ok_or_else(fail)
                }
                FieldType::Enum(e) => {
                    let values = self.schema.enums.get(*e).map(|x| x.values.as_slice()).unwrap_or(&[]);
                    let t = u16::try_from(*e).map_err(|_| fail())?;
                    values.iter().position(|x| x == v).and_then(|i| u16::try_from(i).ok()).map(|i| Value::Enum(t, i)).ok_or_else(fail)
                }
                _ => Err(fail()),
            }
        }
    }
}

use fast::RecordSeed;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;

    const RULES: &str = "ruleset t \"t\" version \"1\" effective 2025-01-01
record {
  subject_id: text role subject
  period: text role period
  n: integer >= 0 = 0
  d: decimal in 0..100?
  when: date?
  kind: one of \"present\", other = other
  items: list of { v: decimal, ok: bool = false } = []
}
levels { good \"G\" weak \"W\" }
score total = d ?? 0
classify by total { good when total >= 50 weak otherwise }
";

    #[test]
    fn the_fast_decoder_accepts_exactly_what_fits() {
        let rs = compile("t.merit", RULES).expect("compiles").0;
        let schema = &rs.checked.schema;
        let fits = [
            r#"{"subject_id": "a", "period": "2025", "d": "62.99", "items": [{"v": 1}, {"v": "0.5", "ok": true}]}"#,
            r#"{"subject_id": "a", "period": "2025-Q3", "d": 62.99, "n": 3, "kind": "present", "when": "2025-02-28"}"#,
            r#"{"subject_id": "Nguyễn", "period": "2025-07", "d": null}"#,
        ];
        for text in fits {
            let fast = decode_fast(schema, text).expect(text);
            let slow = from_json(schema, &serde_json::from_str(text).expect("json")).expect(text);
            assert_eq!(to_json(schema, &fast), to_json(schema, &slow), "{text}");
        }
        let misfits = [
            r#"{"subject_id": "a", "period": "2025", "n": "3"}"#,
            r#"{"subject_id": "a", "period": "2025", "n": 3.5}"#,
            r#"{"subject_id": "a", "period": "2025", "n": -1}"#,
            r#"{"subject_id": "a", "period": "2025", "d": "100.01"}"#,
            r#"{"subject_id": "a", "period": "2025", "typo": 1}"#,
            r#"{"subject_id": "a", "period": "25"}"#,
            r#"{"subject_id": "a"}"#,
            r#"{"subject_id": "a", "period": "2025", "when": "2025-02-30"}"#,
            r#"{"subject_id": "a", "period": "2025", "kind": "absent"}"#,
            r#"{"subject_id": "a", "period": "2025", "items": [{"ok": true}]}"#,
            r#"{"subject_id": "a", "period": "2025"} trailing"#,
        ];
        for text in misfits {
            assert!(decode_fast(schema, text).is_none(), "{text}");
            assert!(from_json_text(schema, text).is_err(), "{text}");
        }
    }
}
