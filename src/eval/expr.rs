//! Evaluation of resolved expressions over a record. Values borrow from the record and the
//! rule set: nothing is cloned or looked up by name per record.

use super::record::{Record, Value};
use super::{ErrorKind, EvalError};
use crate::check::ir::{AggKind, Builtin, Const, Ex, Op};
use crate::compile::RuleSet;
use crate::eval::date;
use crate::num::{Num, NumError};
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
    frames: [Option<&'a Record>; MAX_FRAMES],
    len: usize,
}

impl<'a> Stack<'a> {
    /// A scope holding only the root record.
    pub fn root(r: &'a Record) -> Stack<'a> {
        let mut frames = [None; MAX_FRAMES];
        frames[0] = Some(r);
        Stack { frames, len: 1 }
    }

    /// The root record and one item.
    pub fn with_item(root: &'a Record, item: &'a Record) -> Stack<'a> {
        let mut s = Stack::root(root);
        s.frames[1] = Some(item);
        s.len = 2;
        s
    }

    #[inline]
    fn frame(&self, i: u8) -> Option<&'a Record> {
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
        Ctx {
            rs,
            root,
            memo: vec![None; rs.checked.lets.len()],
        }
    }

    /// The value of a top-level named value (computed once per record).
    pub fn let_value(&mut self, id: usize) -> Result<V<'a>, EvalError> {
        if let Some(Some(v)) = self.memo.get(id) {
            return Ok(*v);
        }
        let rs = self.rs;
        let Some(def) = rs.checked.lets.get(id) else {
            return Err(EvalError::internal("unknown value"));
        };
        let v = self
            .eval(&def.expr, &Stack::root(self.root))
            .map_err(|e| e.in_rule(&def.name, def.span))?;
        if let Some(slot) = self.memo.get_mut(id) {
            *slot = Some(v);
        }
        Ok(v)
    }

    /// Evaluates a condition.
    pub fn truth(&mut self, ex: &'a Ex, stack: &Stack<'a>) -> Result<bool, EvalError> {
        match self.eval(ex, stack)? {
            V::Bool(b) => Ok(b),
            V::Absent => Err(EvalError::kind(ErrorKind::Absent)),
            _ => Err(EvalError::kind(ErrorKind::Type)),
        }
    }

    fn num(&mut self, ex: &'a Ex, stack: &Stack<'a>) -> Result<Num, EvalError> {
        match self.eval(ex, stack)? {
            V::Num(n) => Ok(n),
            V::Absent => Err(EvalError::kind(ErrorKind::Absent)),
            _ => Err(EvalError::kind(ErrorKind::Type)),
        }
    }

    /// Evaluates an expression in a scope.
    pub fn eval(&mut self, ex: &'a Ex, stack: &Stack<'a>) -> Result<V<'a>, EvalError> {
        let k = EvalError::kind;
        Ok(match ex {
            Ex::Const(c) => V::of_const(c),
            Ex::Field { frame, slot } => match stack.frame(*frame) {
                Some(r) => V::of(r.get(*slot)),
                None => return Err(EvalError::internal("scope")),
            },
            Ex::SubField(base, slot) => match self.eval(base, stack)? {
                V::Rec(r) => V::of(r.get(*slot)),
                V::Absent => return Err(k(ErrorKind::Absent)),
                _ => return Err(k(ErrorKind::Type)),
            },
            Ex::Let(id) => self.let_value(*id)?,
            Ex::ItemLet { frame, id } => {
                let rs = self.rs;
                let Some(def) = rs.checked.item_lets.get(*id) else {
                    return Err(EvalError::internal("unknown item value"));
                };
                let Some(item) = stack.frame(*frame) else {
                    return Err(EvalError::internal("scope"));
                };
                let inner = Stack::with_item(self.root, item);
                self.eval(&def.expr, &inner)
                    .map_err(|e| e.in_rule(&def.name, def.span))?
            }
            Ex::Not(e) => V::Bool(!self.truth(e, stack)?),
            Ex::Neg(e) => V::Num(self.num(e, stack)?.neg().map_err(|e| k(num_err(e)))?),
            Ex::Present(e, yes) => V::Bool(matches!(self.eval(e, stack)?, V::Absent) != *yes),
            Ex::In(e, items) => {
                let v = self.eval(e, stack)?;
                let mut found = false;
                for i in items {
                    if equal(v, self.eval(i, stack)?).map_err(k)? {
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
                        if const_eq(v, c).map_err(k)? {
                            return self.eval(value, stack);
                        }
                    }
                }
                match fallback {
                    Some(f) => self.eval(f, stack)?,
                    None => return Err(k(ErrorKind::NoArm)),
                }
            }
            Ex::Agg {
                kind,
                list,
                filter,
                item,
            } => self.aggregate(*kind, list, filter.as_deref(), item.as_deref(), stack)?,
            Ex::Call(b, args) => self.call(*b, args, stack)?,
        })
    }

    fn binary(
        &mut self,
        op: Op,
        a: &'a Ex,
        b: &'a Ex,
        stack: &Stack<'a>,
    ) -> Result<V<'a>, EvalError> {
        let k = EvalError::kind;
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
                V::Num(r.map_err(|e| k(num_err(e)))?)
            }
            _ => {
                let (x, y) = (self.eval(a, stack)?, self.eval(b, stack)?);
                let ord = compare(x, y).map_err(k)?;
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
    ) -> Result<V<'a>, EvalError> {
        let k = EvalError::kind;
        let items = match self.eval(list, stack)? {
            V::List(items) => items,
            V::Absent => return Err(k(ErrorKind::Absent)),
            _ => return Err(k(ErrorKind::Type)),
        };
        let depth = stack.len;
        if depth >= MAX_FRAMES {
            return Err(EvalError::internal("nesting"));
        }
        let mut inner = *stack;
        inner.len = depth + 1;
        let mut count: i64 = 0;
        let mut sum = Num::ZERO;
        let mut best: Option<V<'a>> = None;
        for it in items {
            if let Some(slot) = inner.frames.get_mut(depth) {
                *slot = Some(it);
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
                        return Err(EvalError::internal("aggregate"));
                    };
                    sum = sum.add(self.num(e, &inner)?).map_err(|e| k(num_err(e)))?;
                    count += 1;
                }
                AggKind::Min | AggKind::Max => {
                    let Some(e) = item else {
                        return Err(EvalError::internal("aggregate"));
                    };
                    let v = self.eval(e, &inner)?;
                    best = Some(match best {
                        None => v,
                        Some(b) => {
                            let ord = compare(v, b).map_err(k)?;
                            let take = if kind == AggKind::Min {
                                ord == Ordering::Less
                            } else {
                                ord == Ordering::Greater
                            };
                            if take { v } else { b }
                        }
                    });
                }
                AggKind::All => {
                    let Some(e) = item else {
                        return Err(EvalError::internal("aggregate"));
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
            AggKind::Avg => V::Num(sum.div(Num::from_int(count)).map_err(|e| k(num_err(e)))?),
            AggKind::Min | AggKind::Max => best.unwrap_or(V::Absent),
            AggKind::All => V::Bool(true),
            AggKind::Any => V::Bool(false),
        })
    }

    fn call(&mut self, b: Builtin, args: &'a [Ex], stack: &Stack<'a>) -> Result<V<'a>, EvalError> {
        let k = EvalError::kind;
        let arg = |i: usize| args.get(i).ok_or_else(|| EvalError::internal("arity"));
        Ok(match b {
            Builtin::Round(places, mode) => V::Num(
                self.num(arg(0)?, stack)?
                    .round(places, mode)
                    .map_err(|e| k(num_err(e)))?,
            ),
            Builtin::Min | Builtin::Max => {
                let mut best: Option<V<'a>> = None;
                for a in args {
                    let v = self.eval(a, stack)?;
                    best = Some(match best {
                        None => v,
                        Some(cur) => {
                            let ord = compare(v, cur).map_err(k)?;
                            let take = if b == Builtin::Min {
                                ord == Ordering::Less
                            } else {
                                ord == Ordering::Greater
                            };
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
                let x = if x.cmp(&lo).map_err(|e| k(num_err(e)))? == Ordering::Less {
                    lo
                } else {
                    x
                };
                V::Num(
                    if x.cmp(&hi).map_err(|e| k(num_err(e)))? == Ordering::Greater {
                        hi
                    } else {
                        x
                    },
                )
            }
            Builtin::Abs => {
                let x = self.num(arg(0)?, stack)?;
                V::Num(if x.is_negative() {
                    x.neg().map_err(|e| k(num_err(e)))?
                } else {
                    x
                })
            }
            Builtin::Floor => V::Num(self.num(arg(0)?, stack)?.floor()),
            Builtin::Ceil => V::Num(self.num(arg(0)?, stack)?.ceil()),
            Builtin::Year => match self.eval(arg(0)?, stack)? {
                V::Date(d) => V::Num(Num::from_int(date::year_of(d))),
                _ => return Err(k(ErrorKind::Type)),
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
                    None => return Err(k(ErrorKind::BadPeriod)),
                },
                _ => return Err(k(ErrorKind::Type)),
            },
        })
    }
}
