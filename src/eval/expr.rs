//! Evaluation of resolved expressions over a record. Values borrow from the record and the
//! rule set: nothing is cloned or looked up by name per record.

use super::record::{Record, Value};
use super::{ErrorKind, EvalError, RuleError};
use crate::check::ir::{AggKind, Builtin, Const, Ex, Op};
use crate::compile::RuleSet;
use crate::date;
use crate::num::{Num, NumError};
use crate::source::Span;
use std::cmp::Ordering;

/// A value during evaluation.
#[derive(Clone, Copy, Debug)]
pub enum V<'a> {
    /// absent
    Absent,
    /// bool
    Bool(bool),
    /// number
    Num(Num),
    /// text
    Text(&'a str),
    /// date
    Date(i32),
    /// enum value (type, index)
    Enum(u16, u16),
    /// level (index; lower is better)
    Level(u8),
    /// list items
    List(&'a [Record]),
    /// a record
    Rec(&'a Record),
}

impl<'a> V<'a> {
    #[inline]
    fn of(v: &'a Value) -> V<'a> {
        match v {
            Value::Absent => V::Absent,
            Value::Bool(b) => V::Bool(*b),
            Value::Num(n) => V::Num(*n),
            Value::Text(t) => V::Text(t),
            Value::Date(d) => V::Date(*d),
            Value::Enum(t, e) => V::Enum(*t, *e),
            Value::Level(l) => V::Level(*l),
            Value::List(items) => V::List(items),
            Value::Record(r) => V::Rec(r),
        }
    }

    fn of_const(c: &'a Const) -> V<'a> {
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
}

/// Deepest scope: the root record plus nested aggregates (the checker enforces it).
pub const MAX_FRAMES: usize = 9;

/// The records in scope: the root, then one item per enclosing aggregate.
#[derive(Clone, Copy)]
pub struct Stack<'a> {
    /// Each frame's record and its index in the list it came from (0 for the root).
    frames: [Option<(&'a Record, u32)>; MAX_FRAMES],
    len: usize,
}

impl<'a> Stack<'a> {
    /// A scope holding only the root record.
    pub fn root(r: &'a Record) -> Stack<'a> {
        let mut frames = [None; MAX_FRAMES];
        frames[0] = Some((r, 0));
        Stack { frames, len: 1 }
    }

    /// The root record and one item of a root list, at `index`.
    pub fn with_item(root: &'a Record, item: &'a Record, index: usize) -> Stack<'a> {
        let mut s = Stack::root(root);
        s.frames[1] = Some((item, u32::try_from(index).unwrap_or(u32::MAX)));
        s.len = 2;
        s
    }

    #[inline]
    fn frame(&self, i: u8) -> Option<(&'a Record, u32)> {
        self.frames.get(i as usize).copied().flatten()
    }
}

/// Per-record evaluation state: memoised named values.
pub struct Ctx<'a> {
    /// The rule set.
    pub rs: &'a RuleSet,
    /// The record.
    pub root: &'a Record,
    memo: Vec<Option<V<'a>>>,
    /// Item values, per item-level value and item: `item_memo[item_base[id] + index]`.
    item_memo: Vec<Option<V<'a>>>,
    item_base: Vec<usize>,
    /// The innermost named value that failed, for the error message.
    failed_in: Option<(&'a str, Span)>,
}

pub(crate) fn num_err(e: NumError) -> ErrorKind {
    match e {
        NumError::Overflow => ErrorKind::Overflow,
        NumError::DivisionByZero => ErrorKind::DivisionByZero,
    }
}

/// Compares two values of one type; levels compare by rank (the first declared is greatest).
pub fn compare(a: V<'_>, b: V<'_>) -> Result<Ordering, ErrorKind> {
    Ok(match (a, b) {
        (V::Num(x), V::Num(y)) => x.cmp(&y).map_err(num_err)?,
        (V::Date(x), V::Date(y)) => x.cmp(&y),
        (V::Level(x), V::Level(y)) => y.cmp(&x),
        (V::Text(x), V::Text(y)) => x.cmp(y),
        (V::Bool(x), V::Bool(y)) => x.cmp(&y),
        (V::Enum(t, x), V::Enum(u, y)) => (t, x).cmp(&(u, y)),
        (V::Absent, _) | (_, V::Absent) => return Err(ErrorKind::Absent),
        _ => return Err(ErrorKind::Type),
    })
}

fn equal(a: V<'_>, b: V<'_>) -> Result<bool, ErrorKind> {
    Ok(compare(a, b)? == Ordering::Equal)
}

fn const_eq(v: V<'_>, c: &Const) -> Result<bool, ErrorKind> {
    equal(v, V::of_const(c))
}

impl<'a> Ctx<'a> {
    /// A fresh context for one record.
    pub fn new(rs: &'a RuleSet, root: &'a Record) -> Ctx<'a> {
        let mut item_base = Vec::with_capacity(rs.checked.item_lets.len());
        let mut total = 0;
        for il in &rs.checked.item_lets {
            item_base.push(total);
            total += match root.get(il.list_slot) {
                Value::List(items) => items.len(),
                _ => 0,
            };
        }
        Ctx { rs, root, memo: vec![None; rs.checked.lets.len()], item_memo: vec![None; total], item_base, failed_in: None }
    }

    /// Turns an error kind into an error naming the innermost value that failed, or `rule`.
    pub fn error(&self, kind: ErrorKind, rule: Option<(&str, Span)>) -> EvalError {
        let at = self.failed_in.or(rule);
        EvalError::Rule(RuleError { kind, rule: at.map(|(n, _)| n.to_string()), span: at.map(|(_, s)| s), detail: "" })
    }

    /// The value that failed so far (see [`Ctx::restore_failed_in`]).
    pub fn failed_in_snapshot(&self) -> Option<(&'a str, Span)> {
        self.failed_in
    }

    /// Forgets failures since a snapshot (messages are rendered best effort).
    pub fn restore_failed_in(&mut self, saved: Option<(&'a str, Span)>) {
        self.failed_in = saved;
    }

    fn note_failure(&mut self, name: &'a str, span: Span) {
        if self.failed_in.is_none() {
            self.failed_in = Some((name, span));
        }
    }

    fn item_let_value(&mut self, id: usize, frame: u8, stack: &Stack<'a>) -> Result<V<'a>, ErrorKind> {
        let Some((item, index)) = stack.frame(frame) else {
            return Err(ErrorKind::Internal);
        };
        let key = self.item_base.get(id).map(|b| b + index as usize);
        if let Some(Some(v)) = key.and_then(|k| self.item_memo.get(k)) {
            return Ok(*v);
        }
        let rs = self.rs;
        let Some(def) = rs.checked.item_lets.get(id) else {
            return Err(ErrorKind::Internal);
        };
        let inner = Stack::with_item(self.root, item, index as usize);
        let v = match self.eval(&def.expr, &inner) {
            Ok(v) => v,
            Err(k) => {
                self.note_failure(&def.name, def.span);
                return Err(k);
            }
        };
        if let Some(slot) = key.and_then(|k| self.item_memo.get_mut(k)) {
            *slot = Some(v);
        }
        Ok(v)
    }

    /// The value of a top-level named value (computed once per record).
    pub fn let_value(&mut self, id: usize) -> Result<V<'a>, ErrorKind> {
        if let Some(Some(v)) = self.memo.get(id) {
            return Ok(*v);
        }
        let rs = self.rs;
        let Some(def) = rs.checked.lets.get(id) else {
            return Err(ErrorKind::Internal);
        };
        let v = match self.eval(&def.expr, &Stack::root(self.root)) {
            Ok(v) => v,
            Err(k) => {
                self.note_failure(&def.name, def.span);
                return Err(k);
            }
        };
        if let Some(slot) = self.memo.get_mut(id) {
            *slot = Some(v);
        }
        Ok(v)
    }

    /// Evaluates a condition.
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

    /// Evaluates an expression in a scope.
    pub fn eval(&mut self, ex: &'a Ex, stack: &Stack<'a>) -> Result<V<'a>, ErrorKind> {
        Ok(match ex {
            Ex::Const(c) => V::of_const(c),
            Ex::Field { frame, slot } => match stack.frame(*frame) {
                Some((r, _)) => V::of(r.get(*slot)),
                None => return Err(ErrorKind::Internal),
            },
            Ex::SubField(base, slot) => match self.eval(base, stack)? {
                V::Rec(r) => V::of(r.get(*slot)),
                V::Absent => return Err(ErrorKind::Absent),
                _ => return Err(ErrorKind::Type),
            },
            Ex::Let(id) => self.let_value(*id)?,
            Ex::ItemLet { frame, id } => self.item_let_value(*id, *frame, stack)?,
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

    #[inline(never)]
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

    #[inline(never)]
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
        let depth = stack.len;
        if depth >= MAX_FRAMES {
            return Err(ErrorKind::Internal);
        }
        let mut inner = *stack;
        inner.len = depth + 1;
        let mut count: i64 = 0;
        let mut sum = Num::ZERO;
        let mut best: Option<V<'a>> = None;
        for (index, it) in items.iter().enumerate() {
            if let Some(slot) = inner.frames.get_mut(depth) {
                *slot = Some((it, u32::try_from(index).unwrap_or(u32::MAX)));
            }
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

    #[inline(never)]
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
