//! Item values a column at a time: an item value's expression is evaluated node by node over
//! all the items of its list at once, conditions as bit sets (one bit an item) and numbers as
//! arrays, so that a node costs one dispatch for the list instead of one an item. Each node runs
//! only for the items its enclosing `and`, `or`, `if` would evaluate it for (the mask). (An item
//! value read is computed for the whole list, and an aggregate's `all` or `any` does not stop at
//! the first decisive item, so more can be computed than per item: see the module above.) Shapes
//! without a column form are evaluated item by item. Lists of more than [`MAX`] items are left to
//! the per-item path.

use super::frac::Frac;
use super::lower::{B, N, X};
use super::{F, Machine};
use crate::check::ir::Op;
use crate::eval::program::holds;
use crate::eval::record::{Record, Value};
use std::cmp::Ordering;

/// The most items a column is computed for at once (one bit an item).
pub(super) const MAX: usize = 32;

/// A set of items, one bit an item.
pub(super) type Bits = u64;

/// A column of numbers.
pub(super) type Nums = [Frac; MAX];

/// The items `0..len`.
pub(super) fn all(len: usize) -> Bits {
    if len >= 64 { Bits::MAX } else { (1u64 << len) - 1 }
}

/// The indexes in a set, in order.
#[inline(always)]
pub(super) fn each(mut bits: Bits) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if bits == 0 {
            return None;
        }
        let i = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        Some(i)
    })
}

impl<'a> Machine<'a> {
    /// The items of `mask` for which the condition holds (the scope's frame 1 is the item).
    pub(super) fn vb(&mut self, e: &'a B, items: &'a [Record], mask: Bits) -> Bits {
        if mask == 0 {
            return 0;
        }
        match e {
            B::Lit(v) => {
                if *v {
                    mask
                } else {
                    0
                }
            }
            B::Field(1, s) => {
                let mut out = 0;
                for i in each(mask) {
                    match items.get(i).map(|r| r.get(*s)) {
                        Some(Value::Bool(true)) => out |= 1 << i,
                        Some(Value::Bool(false)) => {}
                        _ => return self.give_up(0),
                    }
                }
                out
            }
            B::Field(0, _) | B::Let(_) => {
                if self.b(e) {
                    mask
                } else {
                    0
                }
            }
            B::Item(1, id) => {
                let Some(start) = self.ready_column(*id) else { return self.give_up(0) };
                let mut out = 0;
                for i in each(mask) {
                    match self.cells.get(start + i) {
                        Some(F::Bool(true)) => out |= 1 << i,
                        Some(F::Bool(false)) => {}
                        _ => return self.give_up(0),
                    }
                }
                out
            }
            B::Not(a) => mask & !self.vb(a, items, mask),
            B::And(ab) => {
                let l = self.vb(&ab.0, items, mask);
                self.vb(&ab.1, items, l)
            }
            B::Or(ab) => {
                let l = self.vb(&ab.0, items, mask);
                l | self.vb(&ab.1, items, mask & !l)
            }
            B::If(cab) => {
                let c = self.vb(&cab.0, items, mask);
                self.vb(&cab.1, items, c) | self.vb(&cab.2, items, mask & !c)
            }
            B::Cmp(op, ab) => self.vb_cmp(*op, ab, items, mask),
            B::CmpAny(op, ab) if matches!(ab.0, X::Field(1, _)) && matches!(ab.1, X::Field(1, _)) => {
                let (X::Field(_, s), X::Field(_, t)) = (&ab.0, &ab.1) else { return 0 };
                let mut out = 0;
                for i in each(mask) {
                    let Some(item) = items.get(i) else { return self.give_up(0) };
                    match (F::of(item.get(*s)), F::of(item.get(*t))) {
                        (Some(x), Some(y)) => match super::compare(x, y) {
                            Some(o) if holds(*op, o) => out |= 1 << i,
                            Some(_) => {}
                            None => return self.give_up(0),
                        },
                        _ => return self.give_up(0),
                    }
                }
                out
            }
            B::Present(a, yes) if matches!(**a, X::Field(1, _)) => {
                let X::Field(_, s) = **a else { return 0 };
                let mut out = 0;
                for i in each(mask) {
                    let absent = matches!(items.get(i).map(|r| r.get(s)), Some(Value::Absent) | None);
                    if absent != *yes {
                        out |= 1 << i;
                    }
                }
                out
            }
            _ => {
                let mut out = 0;
                for i in each(mask) {
                    let Some(item) = items.get(i) else { return self.give_up(0) };
                    self.enter(1, item, i);
                    if self.b(e) {
                        out |= 1 << i;
                    }
                }
                out
            }
        }
    }

    /// Fills `out` for the items of `mask` with the number's value (frame 1 is the item).
    pub(super) fn vn(&mut self, e: &'a N, items: &'a [Record], mask: Bits, out: &mut Nums) {
        if mask == 0 {
            return;
        }
        match e {
            N::Lit(v) => {
                for i in each(mask) {
                    if let Some(o) = out.get_mut(i) {
                        *o = *v;
                    }
                }
            }
            N::Field(1, s) => {
                for i in each(mask) {
                    let v = match items.get(i).map(|r| r.get(*s)) {
                        Some(Value::Num(n)) => Frac::of(n),
                        _ => None,
                    };
                    match (v, out.get_mut(i)) {
                        (Some(v), Some(o)) => *o = v,
                        _ => return self.give_up(()),
                    }
                }
            }
            N::Field(0, _) | N::Let(_) => {
                let v = self.n(e);
                for i in each(mask) {
                    if let Some(o) = out.get_mut(i) {
                        *o = v;
                    }
                }
            }
            N::Item(1, id) => {
                let Some(start) = self.ready_column(*id) else { return self.give_up(()) };
                for i in each(mask) {
                    match (self.cells.get(start + i), out.get_mut(i)) {
                        (Some(F::Num(v)), Some(o)) => *o = *v,
                        _ => return self.give_up(()),
                    }
                }
            }
            N::Arith(op, ab) => self.vn_arith(*op, ab, items, mask, out),
            N::If(cab) => {
                let c = self.vb(&cab.0, items, mask);
                self.vn(&cab.1, items, c, out);
                self.vn(&cab.2, items, mask & !c, out);
            }
            N::Extreme(min, args) if !args.is_empty() => self.vn_extreme(*min, args, items, mask, out),
            _ => {
                for i in each(mask) {
                    let Some(item) = items.get(i) else { return self.give_up(()) };
                    self.enter(1, item, i);
                    let v = self.n(e);
                    if let Some(o) = out.get_mut(i) {
                        *o = v;
                    }
                }
            }
        }
    }

    // The shapes that need a column of their own keep it in their own frame, so that the
    // recursion through `and`, `or`, `not` and `if` stays small on the stack.

    #[inline(never)]
    fn vb_cmp(&mut self, op: Op, ab: &'a (N, N), items: &'a [Record], mask: Bits) -> Bits {
        let mut x = [Frac::ZERO; MAX];
        let mut y = [Frac::ZERO; MAX];
        self.vn(&ab.0, items, mask, &mut x);
        self.vn(&ab.1, items, mask, &mut y);
        let mut out = 0;
        for i in each(mask) {
            if let (Some(a), Some(b)) = (x.get(i), y.get(i))
                && holds(op, a.cmp(*b))
            {
                out |= 1 << i;
            }
        }
        out
    }

    #[inline(never)]
    fn vn_arith(&mut self, op: Op, ab: &'a (N, N), items: &'a [Record], mask: Bits, out: &mut Nums) {
        let mut y = [Frac::ZERO; MAX];
        self.vn(&ab.0, items, mask, out);
        self.vn(&ab.1, items, mask, &mut y);
        for i in each(mask) {
            let (Some(o), Some(b)) = (out.get_mut(i), y.get(i)) else { continue };
            let v = match op {
                Op::Add => o.add(*b),
                Op::Sub => o.sub(*b),
                Op::Mul => o.mul(*b),
                _ => o.div(*b),
            };
            match v {
                Some(v) => *o = v,
                None => return self.give_up(()),
            }
        }
    }

    #[inline(never)]
    fn vn_extreme(&mut self, min: bool, args: &'a [N], items: &'a [Record], mask: Bits, out: &mut Nums) {
        let want = if min { Ordering::Less } else { Ordering::Greater };
        let mut y = [Frac::ZERO; MAX];
        let mut rest = args.iter();
        if let Some(first) = rest.next() {
            self.vn(first, items, mask, out);
        }
        for a in rest {
            self.vn(a, items, mask, &mut y);
            for i in each(mask) {
                if let (Some(o), Some(v)) = (out.get_mut(i), y.get(i))
                    && v.cmp(*o) == want
                {
                    *o = *v;
                }
            }
        }
    }
}
