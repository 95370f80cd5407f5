//! Records as they arrive on the wire. A request's record is kept as the protobuf bytes of its
//! `merit.v1.RecordValue` ([`RawRecord`]) and decoded straight into the schema's slots
//! ([`record`]), without first building the value tree: each tree node would be one more
//! allocation, and each map key one more string. Anything the direct decoder does not take as
//! the JSON path would ([`record`] answers `None`) goes the long way, through the value tree and
//! the JSON path, which names every field at fault; so both paths accept and refuse the same
//! records, with the same errors.

use super::pb;
use crate::check::ir::{Field, FieldType, Role, Schema};
use crate::date;
use crate::eval::record::{Record, Value, from_const};
use crate::num::Num;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, check_wire_type, decode_varint, encode_key, encode_varint, skip_field};

/// A `merit.v1.RecordValue` message kept as its encoded fields, in arrival order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawRecord {
    encoded: Vec<u8>,
}

impl RawRecord {
    /// The record as a value tree (the long way, for error reporting).
    ///
    /// # Errors
    /// When the bytes are no `RecordValue`.
    pub fn tree(&self) -> Result<pb::RecordValue, prost::DecodeError> {
        pb::RecordValue::decode(self.encoded.as_slice())
    }

    /// A value tree, encoded (for tests and clients that hold a tree).
    pub fn from_tree(tree: &pb::RecordValue) -> RawRecord {
        RawRecord { encoded: tree.encode_to_vec() }
    }
}

impl Message for RawRecord {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.encoded);
    }

    fn merge_field(&mut self, tag: u32, wire_type: WireType, buf: &mut impl Buf, ctx: DecodeContext) -> Result<(), prost::DecodeError> {
        // Only the map's entries are kept (field 1, which must be length-delimited, as the tree's
        // decoder demands); other fields are skipped, as that decoder skips them.
        if tag != 1 {
            return skip_field(wire_type, tag, buf, ctx);
        }
        check_wire_type(WireType::LengthDelimited, wire_type)?;
        let declared = decode_varint(buf)?;
        let Some(len) = usize::try_from(declared).ok().filter(|l| *l <= buf.remaining()) else {
            // Longer than what is left: prost's own skip reports the underflow.
            let mut length = Vec::new();
            encode_varint(declared, &mut length);
            return skip_field(wire_type, tag, &mut length.as_slice(), ctx);
        };
        encode_key(tag, wire_type, &mut self.encoded);
        encode_varint(declared, &mut self.encoded);
        let start = self.encoded.len();
        self.encoded.resize(start + len, 0);
        if let Some(dst) = self.encoded.get_mut(start..) {
            buf.copy_to_slice(dst);
        }
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.encoded.len()
    }

    fn clear(&mut self) {
        self.encoded.clear();
    }
}

/// A protobuf field's payload.
enum Payload<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The fields of an encoded message, in order; `None` marks bytes that are no message (or use
/// wire types no `merit.v1` value uses), which the caller hands to the long way.
fn fields(mut buf: &[u8]) -> impl Iterator<Item = Option<(u32, Payload<'_>)>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let field = (|| {
            let key = decode_varint(&mut buf).ok()?;
            let tag = u32::try_from(key >> 3).ok()?;
            match key & 7 {
                0 => Some((tag, Payload::Varint(decode_varint(&mut buf).ok()?))),
                2 => {
                    let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                    let (bytes, rest) = (buf.get(..len)?, buf.get(len..)?);
                    buf = rest;
                    Some((tag, Payload::Bytes(bytes)))
                }
                _ => None,
            }
        })();
        if field.is_none() {
            buf = &[]; // stop after reporting the fault once
        }
        Some(field)
    })
}

/// A value as given in the bytes, borrowed from them.
enum Given<'a> {
    Text(&'a str),
    Boolean(bool),
    Integer(i64),
    Decimal(&'a str),
    Date(&'a str),
    List(&'a [u8]),
    Record(&'a [u8]),
}

/// A `Value` message's kind; `Ok(None)` for an unset value, `Err` for anything the direct path
/// leaves to the long way (more than one kind set, malformed text).
fn kind(bytes: &[u8]) -> Result<Option<Given<'_>>, ()> {
    let mut found = None;
    for field in fields(bytes) {
        let k = match field.ok_or(())? {
            (1, Payload::Bytes(b)) => Given::Text(std::str::from_utf8(b).map_err(|_| ())?),
            (2, Payload::Varint(v)) => Given::Boolean(v != 0),
            // int64 travels as its two's-complement bits.
            (3, Payload::Varint(v)) => Given::Integer(v.cast_signed()),
            (4, Payload::Bytes(b)) => Given::Decimal(std::str::from_utf8(b).map_err(|_| ())?),
            (5, Payload::Bytes(b)) => Given::Date(std::str::from_utf8(b).map_err(|_| ())?),
            (6, Payload::Bytes(b)) => Given::List(b),
            (7, Payload::Bytes(b)) => Given::Record(b),
            _ => return Err(()),
        };
        if found.replace(k).is_some() {
            return Err(());
        }
    }
    Ok(found)
}

/// A map entry's key and value bytes (an unset value is `None`). The key is left as bytes: it
/// is only compared with field names, and one that is no UTF-8 matches none.
fn entry(bytes: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let (mut key, mut value) = (None, None);
    for field in fields(bytes) {
        match field? {
            (1, Payload::Bytes(b)) if key.is_none() => key = Some(b),
            (2, Payload::Bytes(b)) if value.is_none() => value = Some(b),
            _ => return None,
        }
    }
    Some((key.unwrap_or_default(), value))
}

/// Decodes a record straight into the schema's slots, when it fits the schema exactly as the
/// JSON path would accept it; `None` otherwise (the caller then takes the long way).
pub fn record(schema: &Schema, raw: &RawRecord) -> Option<Record> {
    record_at(schema, 0, &raw.encoded)
}

fn record_at(schema: &Schema, rt: usize, bytes: &[u8]) -> Option<Record> {
    let fields_of = &schema.records.get(rt)?.fields;
    // Which fields were given, as bits (a wider record goes the long way).
    let mut seen: u128 = 0;
    if fields_of.len() > 128 {
        return None;
    }
    // Values are written in place: moving a freshly built value costs more than building it.
    let mut slots = Vec::with_capacity(fields_of.len());
    slots.resize_with(fields_of.len(), || Value::Absent);
    for field in fields(bytes) {
        let (1, Payload::Bytes(e)) = field? else { return None };
        let (name, value) = entry(e)?;
        // An unknown or repeated key goes the long way, which names it (or keeps the last).
        let i = fields_of.iter().position(|f| f.name.as_bytes() == name)?;
        let bit = 1u128 << i;
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        // Given without a value, it stays absent and its default applies.
        if let Some(k) = value.map(kind).transpose().ok()?.flatten() {
            set_value(schema, fields_of.get(i)?, k, slots.get_mut(i)?)?;
        }
    }
    // A given value is never `Absent`: what is still absent was not given.
    for (f, slot) in fields_of.iter().zip(slots.iter_mut()) {
        if matches!(slot, Value::Absent) {
            match &f.default {
                Some(c) => *slot = from_const(c),
                None if f.optional => {}
                None => return None,
            }
        }
    }
    Some(Record { slots })
}

/// Writes a given value into its slot; `None` when it does not fit the field.
fn set_value(schema: &Schema, f: &Field, k: Given<'_>, slot: &mut Value) -> Option<()> {
    let bounds = match &f.ty {
        FieldType::Integer(b) | FieldType::Decimal(b) => Some(b),
        _ => None,
    };
    // A number fits a decimal field, or an integer field when it is written as an integer.
    let mut number = |text: &str, integer_only: bool| -> Option<()> {
        let n = Num::parse_decimal(text).ok()?;
        let integer = matches!(f.ty, FieldType::Integer(_));
        if !bounds?.contains(&n) || (integer && integer_only && text.contains(['.', 'e', 'E'])) {
            return None;
        }
        *slot = Value::Num(n);
        Some(())
    };
    match (&f.ty, k) {
        (FieldType::Text, Given::Text(t) | Given::Date(t)) => {
            if f.role == Some(Role::Period) && date::parse_period(t).is_none() {
                return None;
            }
            let text = if unicode_normalization::is_nfc(t) { t.to_string() } else { crate::check::ir::nfc(t) };
            *slot = Value::Text(text.into_boxed_str());
        }
        (FieldType::Bool, Given::Boolean(b)) => *slot = Value::Bool(b),
        (FieldType::Integer(b) | FieldType::Decimal(b), Given::Integer(i)) => {
            let n = Num::from_int(i);
            if !b.contains(&n) {
                return None;
            }
            *slot = Value::Num(n);
        }
        // As the JSON path reads it: only text that is a JSON number.
        (FieldType::Integer(_), Given::Decimal(d)) if is_json_number(d) => number(d, true)?,
        (FieldType::Decimal(_), Given::Decimal(d)) if is_json_number(d) => number(d, false)?,
        (FieldType::Decimal(_), Given::Text(d)) => number(d, false)?,
        (FieldType::Date, Given::Date(d) | Given::Text(d)) => *slot = Value::Date(date::parse_date(d)?),
        (FieldType::Level, Given::Text(t)) => {
            let i = schema.levels.get(..schema.ordered_levels)?.iter().position(|l| l == t)?;
            *slot = Value::Level(u8::try_from(i).ok()?);
        }
        (FieldType::Enum(e), Given::Text(t)) => {
            let i = schema.enums.get(*e)?.values.iter().position(|v| v == t)?;
            *slot = Value::Enum(u16::try_from(*e).ok()?, u16::try_from(i).ok()?);
        }
        (FieldType::List(rt), Given::List(l)) => {
            let mut items = Vec::new();
            for field in fields(l) {
                let (1, Payload::Bytes(item)) = field? else { return None };
                let Ok(Some(Given::Record(r))) = kind(item) else { return None };
                items.push(record_at(schema, *rt, r)?);
            }
            *slot = Value::List(items);
        }
        (FieldType::Record(rt), Given::Record(r)) => *slot = Value::Record(Box::new(record_at(schema, *rt, r)?)),
        _ => return None,
    }
    Some(())
}

/// Whether `text` is exactly a JSON number, `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`
/// (JSON's whitespace around it is left to the long way).
fn is_json_number(text: &str) -> bool {
    fn digits(b: &[u8]) -> usize {
        b.iter().take_while(|c| c.is_ascii_digit()).count()
    }
    let b = text.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let int = digits(b.get(i..).unwrap_or_default());
    if int == 0 || (int > 1 && b.get(i) == Some(&b'0')) {
        return false;
    }
    i += int;
    if b.get(i) == Some(&b'.') {
        let frac = digits(b.get(i + 1..).unwrap_or_default());
        if frac == 0 {
            return false;
        }
        i += 1 + frac;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = digits(b.get(i..).unwrap_or_default());
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == b.len()
}

/// The text of a top-level field (for choosing the rule-set version by period); the last entry
/// wins, as in the value tree. `Err` when the bytes hold anything the direct reading does not
/// take exactly as the value tree would (an entry or value with unknown or repeated fields):
/// the caller then reads the tree.
pub fn text_field<'a>(raw: &'a RawRecord, name: &str) -> Result<Option<&'a str>, Doubt> {
    let mut found = None;
    for field in fields(&raw.encoded) {
        let Some((1, Payload::Bytes(e))) = field else { return Err(Doubt) };
        let (key, value) = entry(e).ok_or(Doubt)?;
        if key == name.as_bytes() {
            found = match value.map(kind).transpose().map_err(|()| Doubt)?.flatten() {
                Some(Given::Text(t) | Given::Date(t)) => Some(t),
                _ => None,
            };
        }
    }
    Ok(found)
}

/// The direct reading cannot tell: read the value tree instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Doubt;

#[cfg(test)]
mod tests {
    use super::{RawRecord, record, text_field};
    use crate::compile::compile;
    use crate::eval::record::{from_json, to_json_text};
    use crate::service::convert::json_record;
    use prost::Message;

    fn raw(json: &serde_json::Value) -> RawRecord {
        RawRecord::from_tree(&json_record(json))
    }

    #[test]
    fn the_direct_path_reads_what_the_json_path_reads_and_refuses_unknown_fields() {
        let (rs, _) = compile("rules/reg366.merit", include_str!("../../rules/reg366.merit")).expect("bundled rules compile");
        let schema = &rs.checked.schema;
        let json: serde_json::Value = serde_json::from_str(include_str!("../../examples/staff_2025.json")).expect("example is JSON");
        let fast = record(schema, &raw(&json)).expect("the example fits");
        let checked = from_json(schema, &json).expect("the example fits");
        assert_eq!(to_json_text(schema, &fast), to_json_text(schema, &checked));
        assert_eq!(text_field(&raw(&json), "period"), Ok(json["period"].as_str()));
        // An unknown field, at the root or in a list item, goes the long way, which names it.
        let mut root = json.clone();
        root["general_point"] = 27.into();
        assert!(record(schema, &raw(&root)).is_none());
        let mut item = json.clone();
        item["tasks"][2]["deadlines"] = "2025-01-01".into();
        assert!(record(schema, &raw(&item)).is_none());
        let errors = from_json(schema, &item).expect_err("unknown field");
        assert_eq!(errors[0].path, "tasks[2].deadlines");
        // A value out of range, or of the wrong kind, too.
        let mut bad = json.clone();
        bad["general_points"] = "31".into();
        assert!(record(schema, &raw(&bad)).is_none());
        bad["general_points"] = true.into();
        assert!(record(schema, &raw(&bad)).is_none());
    }

    #[test]
    fn the_direct_path_agrees_with_the_json_path_on_every_conformance_record_and_its_mutants() {
        let Some(records) = crate::testdata::conformance_records() else { return };
        let rules = [crate::testdata::bundled("reg366.merit"), crate::testdata::bundled("decree335.merit")];
        // Each record as given, then with a field out of range, of another kind, misspelt, null.
        let mutants = |json: &serde_json::Value| -> Vec<serde_json::Value> {
            let mut out = vec![json.clone()];
            for (key, value) in [
                ("general_points", serde_json::json!("30.5")),
                ("general_points", serde_json::json!(12)),
                ("role", serde_json::json!("chief")),
                ("period", serde_json::json!("2025-13")),
                ("absence_months", serde_json::Value::Null),
                ("general_point", serde_json::json!(1)),
                ("tasks", serde_json::json!([{"id": "T", "deadline": "31/12/2025"}])),
                ("tasks", serde_json::json!([{"id": "T", "deadline": "2025-12-31", "units": "0.125"}])),
            ] {
                let mut m = json.clone();
                m[key] = value;
                out.push(m);
            }
            out
        };
        let (mut accepted, mut refused) = (0, 0);
        for (file, json) in &records {
            let rs = if *file == "decree335.merit" { &rules[1] } else { &rules[0] };
            let schema = &rs.checked.schema;
            for m in mutants(json) {
                match (from_json(schema, &m), record(schema, &raw(&m))) {
                    (Ok(checked), Some(fast)) => {
                        accepted += 1;
                        assert_eq!(to_json_text(schema, &fast), to_json_text(schema, &checked), "{m}");
                    }
                    (Err(_), None) => refused += 1,
                    (Ok(_), None) => panic!("the direct path refused a record the JSON path takes: {m}"),
                    (Err(e), Some(_)) => panic!("the direct path took a record the JSON path refuses ({}): {m}", e[0].path),
                }
            }
        }
        assert!(accepted > 4000 && refused > 4000, "{accepted} accepted, {refused} refused");
    }

    #[test]
    fn a_json_number_is_what_serde_json_reads_as_one() {
        for text in [
            "0",
            "-0",
            "5",
            "27.5",
            "-3.25",
            "1e3",
            "1E+3",
            "2.5e-2",
            "00",
            "01",
            "-",
            "",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "1.2.3",
            "0x1",
            "1_000",
            " 1",
            "1 ",
            "NaN",
            "9".repeat(40).as_str(),
        ] {
            let strict = text.trim() == text;
            assert_eq!(super::is_json_number(text), strict && serde_json::from_str::<serde_json::Number>(text).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn kept_bytes_encode_back_to_the_same_message_and_skip_unknown_fields() {
        let json: serde_json::Value = serde_json::from_str(include_str!("../../examples/staff_2025.json")).expect("example is JSON");
        let tree = json_record(&json);
        let bytes = tree.encode_to_vec();
        // An unknown varint field 9 before the entries is skipped, as the tree decoder skips it.
        let mut with_unknown = vec![9 << 3, 1];
        with_unknown.extend_from_slice(&bytes);
        let kept = RawRecord::decode(with_unknown.as_slice()).expect("decodes");
        assert_eq!(kept.encode_to_vec(), bytes);
        assert_eq!(kept.tree().expect("a tree"), tree);
        // Truncated bytes are an error, not a panic.
        assert!(RawRecord::decode(bytes.get(..bytes.len() - 3).expect("long enough")).is_err());
    }

    #[test]
    fn the_period_is_read_directly_only_when_the_bytes_leave_no_doubt() {
        use super::Doubt;
        // Entry {key: "period", value: <value>}.
        let entry = |value: &[u8]| {
            let mut e = vec![0x0a, 6];
            e.extend_from_slice(b"period");
            e.push(0x12);
            e.push(value.len() as u8);
            e.extend_from_slice(value);
            let mut m = vec![0x0a, e.len() as u8];
            m.extend_from_slice(&e);
            m
        };
        let read = |bytes: Vec<u8>| {
            let raw = RawRecord::decode(bytes.as_slice()).expect("protobuf");
            text_field(&raw, "period").map(|t| t.map(str::to_string))
        };
        assert_eq!(read(entry(b"\x0a\x042025")), Ok(Some("2025".to_string())));
        // The last entry wins, as in a map.
        assert_eq!(read([entry(b"\x0a\x042024"), entry(b"\x0a\x042025")].concat()), Ok(Some("2025".to_string())));
        // A value with an unknown field, or with its text twice: the tree decides.
        assert_eq!(read(entry(b"\x0a\x042024\x78\x00")), Err(Doubt));
        assert_eq!(read(entry(b"\x0a\x042024\x0a\x042025")), Err(Doubt));
        // An entry with an unknown field, even after an entry that reads well.
        let mut odd = entry(b"\x0a\x042024");
        odd[1] += 2;
        odd.extend_from_slice(&[0x18, 0x00]);
        assert_eq!(read([entry(b"\x0a\x042025"), odd].concat()), Err(Doubt));
    }

    #[test]
    fn a_map_field_of_the_wrong_wire_type_is_no_record() {
        // Field 1 as a varint, before well-formed entries: the tree's decoder refuses it too.
        let json: serde_json::Value = serde_json::from_str(include_str!("../../examples/staff_2025.json")).expect("example is JSON");
        let mut bytes = vec![0x08, 0x00];
        bytes.extend_from_slice(&json_record(&json).encode_to_vec());
        assert!(RawRecord::decode(bytes.as_slice()).is_err());
        assert!(crate::service::pb::RecordValue::decode(bytes.as_slice()).is_err());
    }

    #[test]
    fn malformed_or_ambiguous_values_go_the_long_way() {
        let (rs, _) = compile("rules/reg366.merit", include_str!("../../rules/reg366.merit")).expect("bundled rules compile");
        let schema = &rs.checked.schema;
        // Entry {key: "subject_id", value: {text: "a", integer: 1}}: two kinds in one value.
        let value = [0x0a, 1, b'a', 0x18, 1];
        let mut e = vec![0x0a, 10];
        e.extend_from_slice(b"subject_id");
        e.extend_from_slice(&[0x12, value.len() as u8]);
        e.extend_from_slice(&value);
        let mut m = vec![0x0a, e.len() as u8];
        m.extend_from_slice(&e);
        let kept = RawRecord::decode(m.as_slice()).expect("well-formed protobuf");
        assert!(record(schema, &kept).is_none());
        // Bytes that end inside a field.
        assert!(record(schema, &RawRecord { encoded: vec![0x0a, 40, 1] }).is_none());
    }
}
