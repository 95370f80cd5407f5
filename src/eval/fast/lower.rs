//! Lowering for the fast path: checked expressions become typed trees ([`B`] for conditions,
//! [`N`] for numbers, [`X`] for any value) whose leaves (constants, fields, named values) are
//! inline. A tree is typed by what its consumer wants; a value of another type at run time
//! makes the fast path give up, never answer differently, so a guess here can only cost speed.

use super::frac::Frac;
use crate::check::Checked;
use crate::check::ir::{AggKind, Builtin, Const, Ex, FieldType, Op, RecordTypeId, Ty};
use crate::eval::expr::MAX_FRAMES;
use crate::num::Rounding;

/// A condition.
#[derive(Clone)]
pub(super) enum B {
    Lit(bool),
    Field(u8, u16),
    Let(usize),
    Item(u8, usize),
    Not(Box<B>),
    And(Box<(B, B)>),
    Or(Box<(B, B)>),
    If(Box<(B, B, B)>),
    /// A comparison of two numbers.
    Cmp(Op, Box<(N, N)>),
    /// A comparison of two values of any (the same) type.
    CmpAny(Op, Box<(X, X)>),
    /// `present` (true) / `absent` (false).
    Present(Box<X>, bool),
    In(Box<X>, Vec<X>),
    /// `all` (true) or `any` (false), with an optional item condition.
    AllAny(bool, Box<Agg<Option<B>>>),
    Of(Box<X>),
}

/// A number.
#[derive(Clone)]
pub(super) enum N {
    Lit(Frac),
    Field(u8, u16),
    Let(usize),
    Item(u8, usize),
    Neg(Box<N>),
    Arith(Op, Box<(N, N)>),
    If(Box<(B, N, N)>),
    /// `a ?? b` where `a` may be absent.
    Coalesce(Box<(X, N)>),
    Count(Box<Agg<()>>),
    Sum(Box<Agg<N>>),
    Round(u32, Rounding, Box<N>),
    Floor(Box<N>),
    Ceil(Box<N>),
    Abs(Box<N>),
    Clamp(Box<(N, N, N)>),
    /// `min(..)` (true) or `max(..)` (false) of numbers.
    Extreme(bool, Vec<N>),
    Year(Box<X>),
    Of(Box<X>),
}

/// Any value.
#[derive(Clone)]
pub(super) enum X {
    Absent,
    EmptyList,
    Text(Box<str>),
    Date(i32),
    Enum(u16, u16),
    Level(u8),
    Field(u8, u16),
    Let(usize),
    Item(u8, usize),
    Sub(Box<X>, u16),
    Bool(B),
    Num(N),
    Coalesce(Box<(X, X)>),
    If(Box<(B, X, X)>),
    /// Scrutinee, arms of constants, fallback.
    Match(Box<X>, Vec<(Vec<X>, X)>, Option<Box<X>>),
    Avg(Box<Agg<N>>),
    /// `min(list: e)` (true) or `max(list: e)` (false).
    ExtremeOf(bool, Box<Agg<X>>),
    /// `min(..)` (true) or `max(..)` (false) of values of any (the same) type.
    Extreme(bool, Vec<X>),
    PeriodEnd(Box<X>),
    PeriodKind(Box<X>),
}

/// An aggregate: the list, the scope frame its items take, a filter and the item expression.
#[derive(Clone)]
pub(super) struct Agg<T> {
    pub list: X,
    pub frame: u8,
    pub filter: Option<B>,
    pub item: T,
}

/// The lowering context: the record type of each scope frame (for telling numbers apart).
pub(super) struct Lower<'c> {
    checked: &'c Checked,
    frames: Vec<Option<RecordTypeId>>,
}

impl<'c> Lower<'c> {
    /// A context at root scope, or (`item: Some(list slot)`) in the scope of a root list's item.
    pub(super) fn new(checked: &'c Checked, item: Option<u16>) -> Lower<'c> {
        let mut cx = Lower { checked, frames: vec![Some(0)] };
        if let Some(slot) = item {
            let rt = cx.list_type(&Ex::Field { frame: 0, slot });
            cx.frames.push(rt);
        }
        cx
    }

    fn field_type(&self, frame: u8, slot: u16) -> Option<&'c FieldType> {
        let rt = self.frames.get(frame as usize).copied().flatten()?;
        Some(&self.checked.schema.records.get(rt)?.fields.get(slot as usize)?.ty)
    }

    fn list_type(&self, list: &Ex) -> Option<RecordTypeId> {
        match list {
            Ex::Field { frame, slot } => match self.field_type(*frame, *slot)? {
                FieldType::List(rt) => Some(*rt),
                _ => None,
            },
            Ex::Let(id) => match self.checked.lets.get(*id)?.ty.ty {
                Ty::List(rt) => Some(rt),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether an expression is a number whenever it is present. `false` only costs speed.
    fn is_num(&mut self, ex: &Ex) -> bool {
        match ex {
            Ex::Const(c) => matches!(c, Const::Num(_)),
            Ex::Field { frame, slot } => matches!(self.field_type(*frame, *slot), Some(FieldType::Integer(_) | FieldType::Decimal(_))),
            Ex::Let(id) => self.checked.lets.get(*id).is_some_and(|l| l.ty.ty == Ty::Num),
            Ex::ItemLet { id, .. } => self.checked.item_lets.get(*id).is_some_and(|l| l.ty.ty == Ty::Num),
            Ex::Neg(_) | Ex::Bin(Op::Add | Op::Sub | Op::Mul | Op::Div, ..) => true,
            Ex::Bin(Op::Coalesce, a, _) | Ex::If(_, a, _) => self.is_num(a),
            Ex::Agg { kind: AggKind::Count | AggKind::Sum | AggKind::Avg, .. } => true,
            Ex::Call(b, args) => match b {
                Builtin::Min | Builtin::Max => args.first().is_some_and(|a| self.is_num(a)),
                Builtin::PeriodEnd | Builtin::PeriodKind => false,
                _ => true,
            },
            _ => false,
        }
    }

    /// Lowers an aggregate's parts, its item scope one frame deeper.
    fn agg<T>(&mut self, list: &Ex, filter: Option<&Ex>, item: impl FnOnce(&mut Self) -> Option<T>) -> Option<Agg<T>> {
        let frame = u8::try_from(self.frames.len()).ok().filter(|&f| (f as usize) < MAX_FRAMES)?;
        let list_x = self.x(list)?;
        let rt = self.list_type(list);
        self.frames.push(rt);
        // `None` when the filter has no fast form; `Some(None)` when there is none.
        let filter = match filter {
            Some(f) => self.b(f).map(Some),
            None => Some(None),
        };
        let item = item(self);
        self.frames.pop();
        Some(Agg { list: list_x, frame, filter: filter?, item: item? })
    }

    /// A named value's expression, lowered by its declared type: a condition or a number when
    /// it can never be absent.
    pub(super) fn named(&mut self, ex: &Ex, ty: crate::check::ir::Type) -> Option<X> {
        Some(match ty.ty {
            Ty::Bool if !ty.optional => X::Bool(self.b(ex)?),
            Ty::Num if !ty.optional => X::Num(self.n(ex)?),
            _ => self.x(ex)?,
        })
    }

    /// A condition.
    pub(super) fn b(&mut self, ex: &Ex) -> Option<B> {
        Some(match ex {
            Ex::Const(Const::Bool(v)) => B::Lit(*v),
            Ex::Field { frame, slot } => B::Field(*frame, *slot),
            Ex::Let(id) => B::Let(*id),
            Ex::ItemLet { frame, id } => B::Item(*frame, *id),
            Ex::Not(e) => B::Not(Box::new(self.b(e)?)),
            Ex::Present(e, yes) => B::Present(Box::new(self.x(e)?), *yes),
            Ex::In(e, items) => B::In(Box::new(self.x(e)?), items.iter().map(|i| self.x(i)).collect::<Option<_>>()?),
            Ex::Bin(Op::And, a, b) => B::And(Box::new((self.b(a)?, self.b(b)?))),
            Ex::Bin(Op::Or, a, b) => B::Or(Box::new((self.b(a)?, self.b(b)?))),
            Ex::Bin(op @ (Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge), a, b) => {
                if self.is_num(a) && self.is_num(b) {
                    B::Cmp(*op, Box::new((self.n(a)?, self.n(b)?)))
                } else {
                    B::CmpAny(*op, Box::new((self.x(a)?, self.x(b)?)))
                }
            }
            Ex::If(c, a, b) => B::If(Box::new((self.b(c)?, self.b(a)?, self.b(b)?))),
            Ex::Agg { kind: kind @ (AggKind::All | AggKind::Any), list, filter, item } => {
                let all = *kind == AggKind::All;
                if all && item.is_none() {
                    // As the closures: the checker gives `all` an item; without one it holds.
                    return Some(B::Lit(true));
                }
                let agg = self.agg(list, filter.as_deref(), |cx| match item.as_deref() {
                    Some(e) => cx.b(e).map(Some),
                    None => Some(None),
                })?;
                B::AllAny(all, Box::new(agg))
            }
            _ => B::Of(Box::new(self.x(ex)?)),
        })
    }

    /// A number.
    pub(super) fn n(&mut self, ex: &Ex) -> Option<N> {
        Some(match ex {
            Ex::Const(Const::Num(v)) => N::Lit(Frac::of(v)?),
            Ex::Field { frame, slot } => N::Field(*frame, *slot),
            Ex::Let(id) => N::Let(*id),
            Ex::ItemLet { frame, id } => N::Item(*frame, *id),
            Ex::Neg(e) => N::Neg(Box::new(self.n(e)?)),
            Ex::Bin(op @ (Op::Add | Op::Sub | Op::Mul | Op::Div), a, b) => N::Arith(*op, Box::new((self.n(a)?, self.n(b)?))),
            Ex::Bin(Op::Coalesce, a, b) => N::Coalesce(Box::new((self.x(a)?, self.n(b)?))),
            Ex::If(c, a, b) => N::If(Box::new((self.b(c)?, self.n(a)?, self.n(b)?))),
            Ex::Agg { kind: AggKind::Count, list, filter, .. } => N::Count(Box::new(self.agg(list, filter.as_deref(), |_| Some(()))?)),
            Ex::Agg { kind: AggKind::Sum, list, filter, item: Some(item) } => {
                N::Sum(Box::new(self.agg(list, filter.as_deref(), |cx| cx.n(item))?))
            }
            Ex::Call(b, args) => match (b, args.as_slice()) {
                (Builtin::Round(places, mode), [x]) => N::Round(*places, *mode, Box::new(self.n(x)?)),
                (Builtin::Floor, [x]) => N::Floor(Box::new(self.n(x)?)),
                (Builtin::Ceil, [x]) => N::Ceil(Box::new(self.n(x)?)),
                (Builtin::Abs, [x]) => N::Abs(Box::new(self.n(x)?)),
                (Builtin::Clamp, [x, lo, hi]) => N::Clamp(Box::new((self.n(x)?, self.n(lo)?, self.n(hi)?))),
                (Builtin::Year, [d]) => N::Year(Box::new(self.x(d)?)),
                (Builtin::Min | Builtin::Max, [_, ..]) if args.iter().all(|a| self.is_num(a)) => {
                    N::Extreme(*b == Builtin::Min, args.iter().map(|a| self.n(a)).collect::<Option<_>>()?)
                }
                // `x` lowers these itself (never back here).
                (Builtin::Min | Builtin::Max | Builtin::PeriodEnd | Builtin::PeriodKind, _) => N::Of(Box::new(self.x(ex)?)),
                _ => return None,
            },
            _ => N::Of(Box::new(self.x(ex)?)),
        })
    }

    fn constant(c: &Const) -> Option<X> {
        Some(match c {
            Const::Absent => X::Absent,
            Const::Bool(v) => X::Bool(B::Lit(*v)),
            Const::Num(v) => X::Num(N::Lit(Frac::of(v)?)),
            Const::Text(t) => X::Text(t.as_str().into()),
            Const::Date(d) => X::Date(*d),
            Const::Enum(t, v) => X::Enum(*t, *v),
            Const::Level(l) => X::Level(*l),
            Const::EmptyList => X::EmptyList,
        })
    }

    /// Any value.
    pub(super) fn x(&mut self, ex: &Ex) -> Option<X> {
        Some(match ex {
            Ex::Const(c) => Self::constant(c)?,
            Ex::Field { frame, slot } => X::Field(*frame, *slot),
            Ex::Let(id) => X::Let(*id),
            Ex::ItemLet { frame, id } => X::Item(*frame, *id),
            Ex::SubField(base, slot) => X::Sub(Box::new(self.x(base)?), *slot),
            Ex::Neg(_) | Ex::Bin(Op::Add | Op::Sub | Op::Mul | Op::Div, ..) | Ex::Agg { kind: AggKind::Count, .. } => X::Num(self.n(ex)?),
            Ex::Agg { kind: AggKind::Sum, item: Some(_), .. } => X::Num(self.n(ex)?),
            Ex::Not(_) | Ex::Present(..) | Ex::In(..) | Ex::Agg { kind: AggKind::All | AggKind::Any, .. } => X::Bool(self.b(ex)?),
            Ex::Bin(Op::Coalesce, a, b) => X::Coalesce(Box::new((self.x(a)?, self.x(b)?))),
            Ex::Bin(..) => X::Bool(self.b(ex)?),
            Ex::If(c, a, b) => X::If(Box::new((self.b(c)?, self.x(a)?, self.x(b)?))),
            Ex::Match(scrutinee, arms, fallback) => {
                let scrutinee = self.x(scrutinee)?;
                let mut lowered = Vec::with_capacity(arms.len());
                for (consts, e) in arms {
                    lowered.push((consts.iter().map(Self::constant).collect::<Option<_>>()?, self.x(e)?));
                }
                let fallback = match fallback {
                    Some(f) => Some(Box::new(self.x(f)?)),
                    None => None,
                };
                X::Match(Box::new(scrutinee), lowered, fallback)
            }
            Ex::Agg { kind: AggKind::Avg, list, filter, item: Some(item) } => {
                X::Avg(Box::new(self.agg(list, filter.as_deref(), |cx| cx.n(item))?))
            }
            Ex::Agg { kind: kind @ (AggKind::Min | AggKind::Max), list, filter, item: Some(item) } => {
                X::ExtremeOf(*kind == AggKind::Min, Box::new(self.agg(list, filter.as_deref(), |cx| cx.x(item))?))
            }
            Ex::Agg { .. } => return None,
            Ex::Call(b, args) => match (b, args.as_slice()) {
                (Builtin::PeriodEnd, [t]) => X::PeriodEnd(Box::new(self.x(t)?)),
                (Builtin::PeriodKind, [t]) => X::PeriodKind(Box::new(self.x(t)?)),
                (Builtin::Min | Builtin::Max, _) if !args.iter().all(|a| self.is_num(a)) || args.is_empty() => {
                    X::Extreme(*b == Builtin::Min, args.iter().map(|a| self.x(a)).collect::<Option<_>>()?)
                }
                (Builtin::PeriodEnd | Builtin::PeriodKind, _) => return None,
                _ => X::Num(self.n(ex)?),
            },
        })
    }
}
