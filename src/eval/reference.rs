//! The tree-walking interpreter that evaluation used before expressions were lowered to
//! closures, kept for tests only: the lowered code must compute the same value or fail with
//! the same error, for every named value, item value and rule condition.

use super::ErrorKind;
use super::expr::{Stack, V, compare, num_err};
use super::record::{Record, Value};
use crate::check::ir::{AggKind, Builtin, Const, Ex, Op};
use crate::compile::RuleSet;
use crate::date;
use crate::num::Num;
use std::cmp::Ordering;

fn of_const(c: &Const) -> V<'_> {
    match c {
        Const::Absent => V::Absent,
        Const::Bool(b) => V::Bool(*b),
        Const::Num(n) => V::Num(*n),
        Const::Text(t) => V::Text(t),
        Const::Date(d) => V::Date(*d),
        Const::Enum(t, e) => V::Enum(*t, *e),
        Const::Level(l) => V::Level(*l),
        Const::EmptyList => V::List(&[]),
    }
}

fn equal(a: V<'_>, b: V<'_>) -> Result<bool, ErrorKind> {
    Ok(compare(a, b)? == Ordering::Equal)
}

fn const_eq(v: V<'_>, c: &Const) -> Result<bool, ErrorKind> {
    equal(v, of_const(c))
}

/// One record's reference evaluation, memoised as the old `Ctx` was.
pub struct RefCtx<'a> {
    rs: &'a RuleSet,
    root: &'a Record,
    memo: Vec<Option<V<'a>>>,
    item_memo: Vec<Option<V<'a>>>,
    item_base: Vec<usize>,
}

impl<'a> RefCtx<'a> {
    /// A fresh context for one record.
    pub fn new(rs: &'a RuleSet, root: &'a Record) -> RefCtx<'a> {
        let mut item_base = Vec::new();
        let mut total = 0;
        for il in &rs.checked.item_lets {
            item_base.push(total);
            total += match root.get(il.list_slot) {
                Value::List(items) => items.len(),
                _ => 0,
            };
        }
        RefCtx { rs, root, memo: vec![None; rs.checked.lets.len()], item_memo: vec![None; total], item_base }
    }

    /// An item value of the item at `index` of its list.
    pub fn item_let_value(&mut self, id: usize, item: &'a Record, index: usize) -> Result<V<'a>, ErrorKind> {
        let key = self.item_base.get(id).map(|b| b + index);
        if let Some(Some(v)) = key.and_then(|k| self.item_memo.get(k)) {
            return Ok(*v);
        }
        let rs = self.rs;
        let def = rs.checked.item_lets.get(id).ok_or(ErrorKind::Internal)?;
        let v = self.eval(&def.expr, &Stack::with_item(self.root, item, index))?;
        if let Some(slot) = key.and_then(|k| self.item_memo.get_mut(k)) {
            *slot = Some(v);
        }
        Ok(v)
    }

    /// A top-level named value.
    pub fn let_value(&mut self, id: usize) -> Result<V<'a>, ErrorKind> {
        if let Some(Some(v)) = self.memo.get(id) {
            return Ok(*v);
        }
        let rs = self.rs;
        let def = rs.checked.lets.get(id).ok_or(ErrorKind::Internal)?;
        let v = self.eval(&def.expr, &Stack::root(self.root))?;
        if let Some(slot) = self.memo.get_mut(id) {
            *slot = Some(v);
        }
        Ok(v)
    }

    /// A condition.
    pub fn truth(&mut self, ex: &'a Ex, stack: &Stack<'a>) -> Result<bool, ErrorKind> {
        match self.eval(ex, stack)? {
            V::Bool(b) => Ok(b),
            V::Absent => Err(ErrorKind::Absent),
            _ => Err(ErrorKind::Type),
        }
    }

    fn num(&mut self, ex: &'a Ex, stack: &Stack<'a>) -> Result<Num, ErrorKind> {
        match self.eval(ex, stack)? {
            V::Num(n) => Ok(n),
            V::Absent => Err(ErrorKind::Absent),
            _ => Err(ErrorKind::Type),
        }
    }

    /// An expression's value.
    pub fn eval(&mut self, ex: &'a Ex, stack: &Stack<'a>) -> Result<V<'a>, ErrorKind> {
        Ok(match ex {
            Ex::Const(c) => of_const(c),
            Ex::Field { frame, slot } => V::of(stack.value(*frame, *slot)?),
            Ex::SubField(base, slot) => match self.eval(base, stack)? {
                V::Rec(r) => V::of(r.get(*slot)),
                V::Absent => return Err(ErrorKind::Absent),
                _ => return Err(ErrorKind::Type),
            },
            Ex::Let(id) => self.let_value(*id)?,
            Ex::ItemLet { frame, id } => {
                let (item, index) = stack.item_in(*frame).ok_or(ErrorKind::Internal)?;
                self.item_let_value(*id, item, index)?
            }
            Ex::Not(e) => V::Bool(!self.truth(e, stack)?),
            Ex::Neg(e) => V::Num(self.num(e, stack)?.neg().map_err(num_err)?),
            Ex::Present(e, yes) => V::Bool(matches!(self.eval(e, stack)?, V::Absent) != *yes),
            Ex::In(e, items) => {
                let v = self.eval(e, stack)?;
                let mut found = false;
                for i in items {
                    if equal(v, self.eval(i, stack)?)? {
                        found = true;
                        break;
                    }
                }
                V::Bool(found)
            }
            Ex::Bin(op, a, b) => self.binary(*op, a, b, stack)?,
            Ex::If(c, a, b) => {
                if self.truth(c, stack)? {
                    self.eval(a, stack)?
                } else {
                    self.eval(b, stack)?
                }
            }
            Ex::Match(s, arms, fallback) => {
                let v = self.eval(s, stack)?;
                for (consts, value) in arms {
                    for c in consts {
                        if const_eq(v, c)? {
                            return self.eval(value, stack);
                        }
                    }
                }
                match fallback {
                    Some(f) => self.eval(f, stack)?,
                    None => return Err(ErrorKind::NoArm),
                }
            }
            Ex::Agg { kind, list, filter, item } => self.aggregate(*kind, list, filter.as_deref(), item.as_deref(), stack)?,
            Ex::Call(b, args) => self.call(*b, args, stack)?,
        })
    }

    fn binary(&mut self, op: Op, a: &'a Ex, b: &'a Ex, stack: &Stack<'a>) -> Result<V<'a>, ErrorKind> {
        Ok(match op {
            Op::And => V::Bool(self.truth(a, stack)? && self.truth(b, stack)?),
            Op::Or => V::Bool(self.truth(a, stack)? || self.truth(b, stack)?),
            Op::Coalesce => match self.eval(a, stack)? {
                V::Absent => self.eval(b, stack)?,
                v => v,
            },
            Op::Add | Op::Sub | Op::Mul | Op::Div => {
                let (x, y) = (self.num(a, stack)?, self.num(b, stack)?);
                let r = match op {
                    Op::Add => x.add(y),
                    Op::Sub => x.sub(y),
                    Op::Mul => x.mul(y),
                    _ => x.div(y),
                };
                V::Num(r.map_err(num_err)?)
            }
            _ => {
                let (x, y) = (self.eval(a, stack)?, self.eval(b, stack)?);
                let ord = compare(x, y)?;
                V::Bool(match op {
                    Op::Eq => ord == Ordering::Equal,
                    Op::Ne => ord != Ordering::Equal,
                    Op::Lt => ord == Ordering::Less,
                    Op::Le => ord != Ordering::Greater,
                    Op::Gt => ord == Ordering::Greater,
                    _ => ord != Ordering::Less,
                })
            }
        })
    }

    fn aggregate(
        &mut self,
        kind: AggKind,
        list: &'a Ex,
        filter: Option<&'a Ex>,
        item: Option<&'a Ex>,
        stack: &Stack<'a>,
    ) -> Result<V<'a>, ErrorKind> {
        let items = match self.eval(list, stack)? {
            V::List(items) => items,
            V::Absent => return Err(ErrorKind::Absent),
            _ => return Err(ErrorKind::Type),
        };
        let (mut inner, depth) = stack.push()?;
        let mut count: i64 = 0;
        let mut sum = Num::ZERO;
        let mut best: Option<V<'a>> = None;
        for (index, it) in items.iter().enumerate() {
            inner.set(depth, it, index);
            if let Some(f) = filter
                && !self.truth(f, &inner)?
            {
                continue;
            }
            match kind {
                AggKind::Count => count += 1,
                AggKind::Sum | AggKind::Avg => {
                    let Some(e) = item else {
                        return Err(ErrorKind::Internal);
                    };
                    sum = sum.add(self.num(e, &inner)?).map_err(num_err)?;
                    count += 1;
                }
                AggKind::Min | AggKind::Max => {
                    let Some(e) = item else {
                        return Err(ErrorKind::Internal);
                    };
                    let v = self.eval(e, &inner)?;
                    best = Some(match best {
                        None => v,
                        Some(b) => {
                            let ord = compare(v, b)?;
                            let take = if kind == AggKind::Min { ord == Ordering::Less } else { ord == Ordering::Greater };
                            if take { v } else { b }
                        }
                    });
                }
                AggKind::All => {
                    let Some(e) = item else {
                        return Err(ErrorKind::Internal);
                    };
                    if !self.truth(e, &inner)? {
                        return Ok(V::Bool(false));
                    }
                }
                AggKind::Any => {
                    let holds = match item {
                        Some(e) => self.truth(e, &inner)?,
                        None => true,
                    };
                    if holds {
                        return Ok(V::Bool(true));
                    }
                }
            }
        }
        Ok(match kind {
            AggKind::Count => V::Num(Num::from_int(count)),
            AggKind::Sum => V::Num(sum),
            AggKind::Avg if count == 0 => V::Absent,
            AggKind::Avg => V::Num(sum.div(Num::from_int(count)).map_err(num_err)?),
            AggKind::Min | AggKind::Max => best.unwrap_or(V::Absent),
            AggKind::All => V::Bool(true),
            AggKind::Any => V::Bool(false),
        })
    }

    fn call(&mut self, b: Builtin, args: &'a [Ex], stack: &Stack<'a>) -> Result<V<'a>, ErrorKind> {
        let arg = |i: usize| args.get(i).ok_or(ErrorKind::Internal);
        Ok(match b {
            Builtin::Round(places, mode) => V::Num(self.num(arg(0)?, stack)?.round(places, mode).map_err(num_err)?),
            Builtin::Min | Builtin::Max => {
                let mut best: Option<V<'a>> = None;
                for a in args {
                    let v = self.eval(a, stack)?;
                    best = Some(match best {
                        None => v,
                        Some(cur) => {
                            let ord = compare(v, cur)?;
                            let take = if b == Builtin::Min { ord == Ordering::Less } else { ord == Ordering::Greater };
                            if take { v } else { cur }
                        }
                    });
                }
                best.unwrap_or(V::Absent)
            }
            Builtin::Clamp => {
                let x = self.num(arg(0)?, stack)?;
                let lo = self.num(arg(1)?, stack)?;
                let hi = self.num(arg(2)?, stack)?;
                let x = if x.cmp(&lo).map_err(num_err)? == Ordering::Less { lo } else { x };
                V::Num(if x.cmp(&hi).map_err(num_err)? == Ordering::Greater { hi } else { x })
            }
            Builtin::Abs => {
                let x = self.num(arg(0)?, stack)?;
                V::Num(if x.is_negative() { x.neg().map_err(num_err)? } else { x })
            }
            Builtin::Floor => V::Num(self.num(arg(0)?, stack)?.floor()),
            Builtin::Ceil => V::Num(self.num(arg(0)?, stack)?.ceil()),
            Builtin::Year => match self.eval(arg(0)?, stack)? {
                V::Date(d) => V::Num(Num::from_int(date::year_of(d))),
                _ => return Err(ErrorKind::Type),
            },
            Builtin::PeriodEnd | Builtin::PeriodKind => match self.eval(arg(0)?, stack)? {
                V::Text(t) => match date::parse_period(t) {
                    Some((kind, d)) => {
                        if b == Builtin::PeriodEnd {
                            V::Date(d)
                        } else {
                            V::Text(kind.as_str())
                        }
                    }
                    None => return Err(ErrorKind::BadPeriod),
                },
                _ => return Err(ErrorKind::Type),
            },
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::RefCtx;
    use crate::compile::{RuleSet, compile};
    use crate::eval::record::{Record, Value, from_json};
    use crate::eval::{Ctx, ErrorKind, Stack, V, show_value};

    /// Every named value, item value, condition, target, message placeholder and quota
    /// expression of `rs` on `rec`, lowered and reference; the descriptions of those that differ.
    fn differences(rs: &RuleSet, rec: &Record) -> Vec<String> {
        let show = |r: Result<V<'_>, ErrorKind>| match r {
            Ok(v) => show_value(rs, v),
            Err(k) => format!("error: {k}"),
        };
        let (c, p) = (&rs.checked, &*rs.program);
        let mut new = Ctx::new(rs, rec);
        let mut old = RefCtx::new(rs, rec);
        let root = Stack::root(rec);
        let mut out = Vec::new();
        let mut check = |what: String, a: String, b: String| {
            if a != b {
                out.push(format!("{what}: lowered {a}, reference {b}"));
            }
        };
        for (id, l) in c.lets.iter().enumerate() {
            check(format!("let {}", l.name), show(new.let_value(id)), show(old.let_value(id)));
        }
        for (id, l) in c.item_lets.iter().enumerate() {
            let Value::List(items) = rec.get(l.list_slot) else { continue };
            for (i, item) in items.iter().enumerate() {
                let a = show(new.item_let_value(id, 1, &Stack::with_item(rec, item, i)));
                check(format!("item value {}[{i}]", l.name), a, show(old.item_let_value(id, item, i)));
            }
        }
        let rules = [(&c.eligibility, &p.eligibility), (&c.vetoes, &p.vetoes), (&c.caps, &p.caps), (&c.flags, &p.flags)];
        for (defs, codes) in rules {
            for (r, code) in defs.iter().zip(codes) {
                let (a, b) = (code.when.truth(&mut new, &root), old.truth(&r.when, &root));
                check(format!("rule {} when", r.name), format!("{a:?}"), format!("{b:?}"));
                if let (Some(t), Some(rt)) = (&code.target, &r.target) {
                    check(format!("rule {} target", r.name), show(t.eval(&mut new, &root)), show(old.eval(rt, &root)));
                }
                for (part, compiled) in r.because.parts.iter().zip(&code.because.parts) {
                    if let (crate::check::ir::MessagePart::Expr(e), Some(code)) = (part, compiled) {
                        check(format!("rule {} message", r.name), show(code.eval(&mut new, &root)), show(old.eval(e, &root)));
                    }
                }
            }
        }
        for (b, gate) in c.classify.bands.iter().zip(&p.gates) {
            if let (Some((g, _, _)), Some(code)) = (&b.gate, gate) {
                let (x, y) = (code.when.truth(&mut new, &root), old.truth(g, &root));
                check(format!("gate of band {}", b.level), format!("{x:?}"), format!("{y:?}"));
            }
        }
        for (q, code) in c.quotas.iter().zip(&p.quotas) {
            if let (Some(a), Some(ca)) = (&q.applies, &code.applies) {
                let (x, y) = (ca.truth(&mut new, &root), old.truth(a, &root));
                check(format!("quota {} applies", q.name), format!("{x:?}"), format!("{y:?}"));
            }
            for ((e, _), ce) in q.rank.iter().zip(&code.rank) {
                check(format!("quota {} rank key", q.name), show(ce.eval(&mut new, &root)), show(old.eval(e, &root)));
            }
        }
        out
    }

    /// A language workout: optional values of every kind through named values, item values and
    /// messages, and most expression shapes.
    pub(crate) const WORKOUT: &str = r#"ruleset workout "Workout" version "1" effective 2020-01-01
record {
  subject_id: text role subject
  agency:     text = "A" role cohort
  period:     text role period
  flag:       bool?
  n:          integer?
  d:          decimal?
  day:        date?
  kind:       one of a, b, c = a
  lvl:        level?
  office:     { city: text?, weight: decimal? }?
  items: list of { v: decimal?, ok: bool?, when: date?, tag: one of x, y = x, w: integer in 0..5 = 1 } = []
}
levels { good "Good" fair "Fair" weak "Weak" }
table tag_weight { x => 2, y => 3 }
let f = flag
let nn = n
let dd = d
let both = (f ?? false) and (nn ?? 0) > 1
let items.k = ok
let items.vv = v ?? 0
let items.ratio = if w == 0 then 0 else vv / w
let items.late = if when present and day present then when > day else false
let items.others = count(items as o where o.tag == tag)
let known = count(items where k ?? false)
let mean = avg(items where v present: v)
let lowest = min(items: vv)
let highest = max(items where late: ratio)
let any_y = any(items where tag == y)
let all_ok = all(items: k ?? true)
let weights = sum(items: tag_weight(tag) * w)
let city = if office present then office.city ?? "none" else "none"
let spread = match kind { a => 1, b | c => -2.5 }
let lvl_score = if lvl present then match lvl { good => 3, fair => 2, weak => 1 } else 0
let yr = year(period_end(period))
let q = period_kind(period)
let extra = clamp(abs(dd ?? 0) + floor(nn ?? 0) - ceil(0.5), -3, 7)
score total = round((if both then 10 else 0) + known + (mean ?? 1) + (lowest ?? 0) + weights / 3 + spread + lvl_score + extra + (if q == "year" then 1 else 0), 2, half_up)
classify by total {
  good when total >= 12 require all_ok or any_y because "needs {known} ok of {count(items)}, mean {mean}, flag {f}"
  fair when total >= 5
  weak otherwise
}
veto v1 when kind in [c] and (nn ?? 0) < 0 then weak because "n {nn}, d {dd}, city {city}"
cap c1 at fair when f absent because "flag {f} day {day}"
flag f1 "F1" when highest present and (highest ?? 0) > 1 because "highest {highest} lowest {lowest} yr {yr}"
quota q1 {
  keep good at most 50% of final fair, rounding down
  per agency, period
  rank by total desc, known desc
  ties demote all flag "TIE"
  demote to fair flag "Q"
}
"#;

    /// A small deterministic generator (xorshift), so failures reproduce.
    pub(crate) struct Gen(pub(crate) u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
            from[(self.next() % from.len() as u64) as usize]
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    pub(crate) fn workout_record(g: &mut Gen) -> serde_json::Value {
        use serde_json::json;
        let mut r = serde_json::Map::new();
        r.insert("subject_id".into(), json!("S"));
        r.insert("period".into(), json!(g.pick(&["2025", "2025-Q3", "2025-07", "2026"])));
        let mut maybe = |g: &mut Gen, key: &str, v: serde_json::Value| {
            if g.chance(70) {
                r.insert(key.into(), v);
            }
        };
        let b = g.chance(50);
        maybe(g, "flag", json!(b));
        let n = g.next() % 7;
        maybe(g, "n", json!(n as i64 - 3));
        let d = g.pick(&["0", "1.5", "-2.25", "3", "0.125"]);
        maybe(g, "d", json!(d));
        let day = g.pick(&["2025-01-31", "2025-06-30", "2026-02-28"]);
        maybe(g, "day", json!(day));
        let kind = g.pick(&["a", "b", "c"]);
        maybe(g, "kind", json!(kind));
        let lvl = g.pick(&["good", "fair", "weak"]);
        maybe(g, "lvl", json!(lvl));
        let city = g.chance(50).then_some("Hà Nội");
        let office = json!({"city": city, "weight": if g.chance(50) { Some("2.5") } else { None }});
        maybe(g, "office", office);
        let items: Vec<serde_json::Value> = (0..g.next() % 5)
            .map(|_| {
                let mut it = serde_json::Map::new();
                if g.chance(70) {
                    it.insert("v".into(), json!(g.pick(&["0", "1", "2.5", "-1", "0.75"])));
                }
                if g.chance(70) {
                    it.insert("ok".into(), json!(g.chance(50)));
                }
                if g.chance(70) {
                    it.insert("when".into(), json!(g.pick(&["2025-01-15", "2025-07-01", "2026-03-01"])));
                }
                it.insert("tag".into(), json!(g.pick(&["x", "y"])));
                it.insert("w".into(), json!(g.next() % 6));
                serde_json::Value::Object(it)
            })
            .collect();
        r.insert("items".into(), json!(items));
        serde_json::Value::Object(r)
    }

    #[test]
    fn lowered_code_agrees_with_the_reference_on_random_workout_records() {
        let (rs, _) = compile("workout.merit", WORKOUT).unwrap_or_else(|(_, d)| panic!("workout compiles: {d:?}"));
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        let mut checked = 0;
        for _ in 0..3000 {
            let json = workout_record(&mut g);
            let Ok(rec) = from_json(&rs.checked.schema, &json) else { continue };
            checked += 1;
            let diffs = differences(&rs, &rec);
            assert!(diffs.is_empty(), "{json}\n{}", diffs.join("\n"));
        }
        assert!(checked > 2500, "most generated records fit the schema ({checked})");
    }

    #[test]
    fn lowered_code_agrees_with_the_reference_on_the_conformance_records() {
        let Some(records) = crate::testdata::conformance_records() else { return };
        let (reg366, decree335) = (crate::testdata::bundled("reg366.merit"), crate::testdata::bundled("decree335.merit"));
        let mut checked = 0;
        for (rules, record) in &records {
            let rs = if *rules == "decree335.merit" { &decree335 } else { &reg366 };
            let Ok(rec) = from_json(&rs.checked.schema, record) else { continue };
            checked += 1;
            let diffs = differences(rs, &rec);
            assert!(diffs.is_empty(), "{record}\n{}", diffs.join("\n"));
        }
        assert!(checked >= 2000, "{checked} records compared");
    }
}
