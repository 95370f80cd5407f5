//! Running a [`Flat`] program on one record: the dispatch loop and each instruction.

use super::{Flat, Ins, R, Regs};
use crate::check::ir::Op;
use crate::eval::fast::columns::{self, Bits, Nums};
use crate::eval::fast::frac::Frac;
use crate::eval::fast::lower::X;
use crate::eval::fast::{F, Machine};
use crate::eval::program::holds;
use crate::eval::record::{Record, Value};
use std::cmp::Ordering;

/// The arithmetic operators as [`Frac`] operations.
#[inline(always)]
fn arith(op: Op, x: Frac, y: Frac) -> Option<Frac> {
    match op {
        Op::Add => x.add(y),
        Op::Sub => x.sub(y),
        Op::Mul => x.mul(y),
        _ => x.div(y),
    }
}

/// Lane `i` of a column (`i` is below 64, as a bit of a mask; the `& 31` lets the compiler
/// drop the bounds check).
#[inline(always)]
fn at(c: &Nums, i: usize) -> Frac {
    c.get(i & (columns::MAX - 1)).copied().unwrap_or(Frac::ZERO)
}

#[inline(always)]
fn put(c: &mut Nums, i: usize, v: Frac) {
    if let Some(x) = c.get_mut(i & (columns::MAX - 1)) {
        *x = v;
    }
}

/// `out = f(x, y)` on the items of `keep`; `false` when `f` fails on one.
#[inline(always)]
fn lanes2(keep: Bits, x: &Nums, y: &Nums, out: &mut Nums, f: impl Fn(Frac, Frac) -> Option<Frac>) -> bool {
    for i in columns::each(keep) {
        match f(at(x, i), at(y, i)) {
            Some(v) => put(out, i, v),
            None => return false,
        }
    }
    true
}

/// Column register `d` to write and the registers below it to read: the compiler allocates a
/// column's register after those of its operands, so an instruction reads only lower ones.
#[inline(always)]
fn split(cols: &mut [Nums], d: R) -> Option<(&[Nums], &mut Nums)> {
    let (below, rest) = cols.split_at_mut_checked(d as usize)?;
    Some((below, rest.first_mut()?))
}

impl<'a> Machine<'a> {
    /// Runs the program; `false` when it did not run to the end (it gave up, or a list is too
    /// long for columns, in which case the trees evaluate the record alone).
    #[inline(never)]
    pub(in crate::eval::fast) fn run_flat(&mut self, flat: &'a Flat, regs: &mut Regs) -> bool {
        if regs.owner != flat.id {
            for &(r, v) in &flat.consts {
                regs.set_num(r, v);
            }
            for &(r, v) in &flat.col_consts {
                if let Some(x) = regs.col_mut(r) {
                    *x = [v; columns::MAX];
                }
            }
            regs.owner = flat.id;
        }
        for &(slot, r) in &flat.lists {
            // An absent list (an optional one) is the trees' to handle, as is a long one.
            let Value::List(items) = self.root.get(slot) else { return false };
            if items.len() > columns::MAX {
                return false;
            }
            regs.set_bit(r, columns::all(items.len()));
        }
        let mut pc = 0usize;
        while let Some(ins) = flat.code.get(pc) {
            pc += 1;
            if let Some(to) = self.step(flat, regs, ins) {
                // Jumps go forward only, so a run always ends.
                if (to as usize) < pc {
                    self.give_up(());
                    return false;
                }
                pc = to as usize;
            }
        }
        // An instruction that gives up ends the run (`stop`); an escape that gives up does not,
        // and the run goes on with dummy values, which only costs time.
        !self.gave_up
    }

    /// Gives up, and ends the run (a jump past the end).
    #[cold]
    fn stop(&mut self) -> Option<R> {
        self.gave_up = true;
        Some(R::MAX)
    }

    /// A field's value compared with constant `k` (`None`: absent, or another type).
    #[inline]
    fn compare_const(&self, v: &'a Value, flat: &'a Flat, k: R) -> Option<Ordering> {
        let k = match flat.values.get(k as usize)? {
            X::Text(t) => F::Text(t),
            X::Date(d) => F::Date(*d),
            X::Enum(t, v) => F::Enum(*t, *v),
            X::Level(l) => F::Level(*l),
            _ => return None,
        };
        let v = match v {
            Value::Text(t) => F::Text(t),
            Value::Date(d) => F::Date(*d),
            Value::Enum(t, e) => F::Enum(*t, *e),
            Value::Level(l) => F::Level(*l),
            _ => return None,
        };
        crate::eval::fast::compare(v, k)
    }

    fn list_items(&mut self, l: u16) -> &'a [Record] {
        match self.root.get(l) {
            Value::List(items) => items,
            _ => self.give_up(&[]),
        }
    }

    /// Runs a tree over a column's items, with frame 1 as the item (as `compute_column` does).
    fn in_column<T>(&mut self, run: impl FnOnce(&mut Self) -> T) -> T {
        let (frames, index, depth) = (self.frames, self.index, self.depth);
        self.depth = 2;
        let v = run(self);
        (self.frames, self.index, self.depth) = (frames, index, depth);
        v
    }

    /// One instruction; `Some(pc)` for a jump taken.
    #[inline(always)]
    fn step(&mut self, flat: &'a Flat, r: &mut Regs, ins: &Ins) -> Option<R> {
        #[cfg(test)]
        super::tests::ran(ins);
        let n = |r: &Regs, i: R| r.num(i);
        let b = |r: &Regs, i: R| r.bit(i);
        let set_n = |r: &mut Regs, i: R, v: Frac| r.set_num(i, v);
        let set_b = |r: &mut Regs, i: R, v: Bits| r.set_bit(i, v);
        match *ins {
            Ins::NField { d, slot } => {
                let v = self.num_field(0, slot);
                set_n(r, d, v);
            }
            Ins::NFieldOr { d, slot, to } => match self.root.get(slot) {
                Value::Absent => {}
                Value::Num(v) => {
                    let v = Frac::of(v);
                    let v = self.num(v);
                    set_n(r, d, v);
                    return Some(to);
                }
                _ => self.give_up(()),
            },
            Ins::NLet { d, id } => {
                let v = self.n_let(id as usize);
                set_n(r, d, v);
            }
            Ins::NTree { d, t } => {
                let v = match flat.trees_n.get(t as usize) {
                    Some(e) => self.n(e),
                    None => self.give_up(Frac::ZERO),
                };
                set_n(r, d, v);
            }
            Ins::NMove { d, a } => set_n(r, d, n(r, a)),
            Ins::NSelect { d, c, a, b: y } => set_n(r, d, if b(r, c) != 0 { n(r, a) } else { n(r, y) }),
            Ins::NArith { op, d, a, b } => {
                let v = arith(op, n(r, a), n(r, b));
                let v = self.num(v);
                set_n(r, d, v);
            }
            Ins::NNeg { d, a } => {
                let v = n(r, a).neg();
                let v = self.num(v);
                set_n(r, d, v);
            }
            Ins::NRound { d, a, places, mode } => {
                let v = n(r, a).round(places, mode);
                let v = self.num(v);
                set_n(r, d, v);
            }
            Ins::NExtreme { min, d, a, b } => {
                let (x, y) = (n(r, a), n(r, b));
                let want = if min { Ordering::Less } else { Ordering::Greater };
                set_n(r, d, if y.cmp(x) == want { y } else { x });
            }
            Ins::NLen { d, slot } => {
                let v = match self.root.get(slot) {
                    Value::List(items) => Frac::int(i64::try_from(items.len()).unwrap_or(i64::MAX)),
                    _ => self.give_up(Frac::ZERO),
                };
                set_n(r, d, v);
            }
            Ins::NPopcnt { d, a } => set_n(r, d, Frac::int(i64::from(b(r, a).count_ones()))),
            Ins::NSum { d, c, m } => {
                let col = r.col(c);
                let mut sum = Some(Frac::ZERO);
                for i in columns::each(b(r, m)) {
                    sum = sum.and_then(|s| s.add(at(col, i)));
                }
                let v = self.num(sum);
                set_n(r, d, v);
            }
            Ins::NPeriodYear { d, slot } => {
                let v = match self.root.get(slot) {
                    Value::Text(t) => match crate::date::parse_period(t) {
                        Some((_, end)) => Frac::int(crate::date::year_of(end)),
                        None => self.give_up(Frac::ZERO),
                    },
                    _ => self.give_up(Frac::ZERO),
                };
                set_n(r, d, v);
            }
            Ins::NAvgOr { d, c, m, to } => {
                let keep = b(r, m);
                if keep == 0 {
                    return None;
                }
                let col = r.col(c);
                let mut sum = Some(Frac::ZERO);
                for i in columns::each(keep) {
                    sum = sum.and_then(|s| s.add(at(col, i)));
                }
                let v = sum.and_then(|s| s.div(Frac::int(i64::from(keep.count_ones()))));
                let v = self.num(v);
                set_n(r, d, v);
                return Some(to);
            }
            Ins::BCmpConst { op, d, slot, k } => {
                let v = self.compare_const(self.root.get(slot), flat, k);
                match v {
                    Some(o) => set_b(r, d, Bits::from(holds(op, o))),
                    None => return self.stop(),
                }
            }
            Ins::BInConsts { d, slot, k, n } => {
                let field = self.root.get(slot);
                let mut found = false;
                for j in k..k.saturating_add(n) {
                    match self.compare_const(field, flat, j) {
                        Some(Ordering::Equal) => {
                            found = true;
                            break;
                        }
                        Some(_) => {}
                        None => return self.stop(),
                    }
                }
                set_b(r, d, Bits::from(found));
            }
            Ins::BLit { d, v } => set_b(r, d, Bits::from(v)),
            Ins::BField { d, slot } => {
                let v = match self.root.get(slot) {
                    Value::Bool(v) => *v,
                    _ => self.give_up(false),
                };
                set_b(r, d, Bits::from(v));
            }
            Ins::BPresent { d, slot, yes } => set_b(r, d, Bits::from(matches!(self.root.get(slot), Value::Absent) != yes)),
            Ins::BLet { d, id } => {
                let v = self.b_let(id as usize);
                set_b(r, d, Bits::from(v));
            }
            Ins::BTree { d, t } => {
                let v = match flat.trees_b.get(t as usize) {
                    Some(e) => self.b(e),
                    None => self.give_up(false),
                };
                set_b(r, d, Bits::from(v));
            }
            Ins::BMove { d, a } => set_b(r, d, b(r, a)),
            Ins::BNot { d, a } => set_b(r, d, Bits::from(b(r, a) == 0)),
            Ins::BCmp { op, d, a, b: y } => set_b(r, d, Bits::from(holds(op, n(r, a).cmp(n(r, y))))),
            Ins::BEq { d, a, b: y } => set_b(r, d, Bits::from(b(r, a) == b(r, y))),
            Ins::BAny { d, a } => set_b(r, d, Bits::from(b(r, a) != 0)),
            Ins::Jump { to } => return Some(to),
            Ins::JumpSet { d, a, on, to } => {
                let v = b(r, a);
                set_b(r, d, v);
                if (v != 0) == on {
                    return Some(to);
                }
            }
            Ins::JumpIf { b: c, to } => {
                if b(r, c) != 0 {
                    return Some(to);
                }
            }
            Ins::JumpIfNot { b: c, to } => {
                if b(r, c) == 0 {
                    return Some(to);
                }
            }
            Ins::BitsZero { d } => set_b(r, d, 0),
            Ins::BitAnd { d, a, b: y } => set_b(r, d, b(r, a) & b(r, y)),
            Ins::BitOr { d, a, b: y } => set_b(r, d, b(r, a) | b(r, y)),
            Ins::BitAndNot { d, a, b: y } => set_b(r, d, b(r, a) & !b(r, y)),
            Ins::CFieldN { d, slot, m, l } => {
                let items = self.list_items(l);
                let keep = b(r, m);
                let Some(out) = r.col_mut(d) else { return self.stop() };
                for i in columns::each(keep) {
                    let v = match items.get(i).map(|it| it.get(slot)) {
                        Some(Value::Num(v)) => Frac::of(v),
                        _ => None,
                    };
                    match v {
                        Some(v) => put(out, i, v),
                        None => return self.stop(),
                    }
                }
            }
            Ins::CFieldB { d, slot, m, l } => {
                let items = self.list_items(l);
                let mut out = 0;
                for i in columns::each(b(r, m)) {
                    match items.get(i).map(|it| it.get(slot)) {
                        Some(Value::Bool(true)) => out |= 1 << i,
                        Some(Value::Bool(false)) => {}
                        _ => return self.stop(),
                    }
                }
                set_b(r, d, out);
            }
            Ins::CPresent { d, slot, m, l } => {
                let items = self.list_items(l);
                let mut out = 0;
                for i in columns::each(b(r, m)) {
                    if !matches!(items.get(i).map(|it| it.get(slot)), Some(Value::Absent) | None) {
                        out |= 1 << i;
                    }
                }
                set_b(r, d, out);
            }
            Ins::CCmpConst { op, d, slot, k, m, l } => {
                let items = self.list_items(l);
                let mut out = 0;
                for i in columns::each(b(r, m)) {
                    let Some(item) = items.get(i) else { return self.stop() };
                    match self.compare_const(item.get(slot), flat, k) {
                        Some(o) if holds(op, o) => out |= 1 << i,
                        Some(_) => {}
                        None => return self.stop(),
                    }
                }
                set_b(r, d, out);
            }
            Ins::CCmpFields { op, d, s, t, m, l } => {
                let items = self.list_items(l);
                let mut out = 0;
                for i in columns::each(b(r, m)) {
                    let Some(item) = items.get(i) else { return self.stop() };
                    let o = match (item.get(s), item.get(t)) {
                        (Value::Date(x), Value::Date(y)) => Some(x.cmp(y)),
                        (x, y) => match (F::of(x), F::of(y)) {
                            (Some(x), Some(y)) => crate::eval::fast::compare(x, y),
                            _ => None,
                        },
                    };
                    match o {
                        Some(o) if holds(op, o) => out |= 1 << i,
                        Some(_) => {}
                        None => return self.stop(),
                    }
                }
                set_b(r, d, out);
            }
            Ins::CBcastN { d, a, m } => {
                let (v, keep) = (n(r, a), b(r, m));
                let Some(out) = r.col_mut(d) else { return self.stop() };
                for i in columns::each(keep) {
                    put(out, i, v);
                }
            }
            Ins::CYear { d, slot, m, l } => {
                let items = self.list_items(l);
                let keep = b(r, m);
                let Some(out) = r.col_mut(d) else { return self.stop() };
                for i in columns::each(keep) {
                    match items.get(i).map(|it| it.get(slot)) {
                        Some(Value::Date(v)) => put(out, i, Frac::int(crate::date::year_of(*v))),
                        _ => return self.stop(),
                    }
                }
            }
            Ins::CBcastB { d, a, m } => set_b(r, d, if b(r, a) != 0 { b(r, m) } else { 0 }),
            Ins::CArith { op, d, a, b: y, m } => {
                let keep = b(r, m);
                let Some((below, out)) = split(r.cols.as_mut_slice(), d) else { return self.stop() };
                let (Some(x), Some(y)) = (below.get(a as usize), below.get(y as usize)) else { return self.stop() };
                // One loop an operator, so that each is inlined.
                let ok = match op {
                    Op::Add => lanes2(keep, x, y, out, Frac::add),
                    Op::Sub => lanes2(keep, x, y, out, Frac::sub),
                    Op::Mul => lanes2(keep, x, y, out, Frac::mul),
                    _ => lanes2(keep, x, y, out, Frac::div),
                };
                if !ok {
                    return self.stop();
                }
            }
            Ins::CCmp { op, d, a, b: y, m } => {
                let keep = b(r, m);
                let (x, y) = (r.col(a), r.col(y));
                let mut out = 0;
                for i in columns::each(keep) {
                    if holds(op, at(x, i).cmp(at(y, i))) {
                        out |= 1 << i;
                    }
                }
                set_b(r, d, out);
            }
            Ins::CExtreme { min, d, a, b: y, m } => {
                let want = if min { Ordering::Less } else { Ordering::Greater };
                let keep = b(r, m);
                let Some((below, out)) = split(r.cols.as_mut_slice(), d) else { return self.stop() };
                let (Some(x), Some(y)) = (below.get(a as usize), below.get(y as usize)) else { return self.stop() };
                for i in columns::each(keep) {
                    let (x, v) = (at(x, i), at(y, i));
                    put(out, i, if v.cmp(x) == want { v } else { x });
                }
            }
            Ins::CSelect { d, c, a, b: y, m } => {
                let (pick, keep) = (b(r, c), b(r, m));
                let Some((below, out)) = split(r.cols.as_mut_slice(), d) else { return self.stop() };
                let (Some(x), Some(y)) = (below.get(a as usize), below.get(y as usize)) else { return self.stop() };
                for i in columns::each(keep) {
                    put(out, i, if pick >> i & 1 == 1 { at(x, i) } else { at(y, i) });
                }
            }
            Ins::CTreeN { d, t, m, l } => {
                let items = self.list_items(l);
                let mask = b(r, m);
                let mut out = [Frac::ZERO; columns::MAX];
                match flat.trees_n.get(t as usize) {
                    Some(e) => self.in_column(|me| me.vn(e, items, mask, &mut out)),
                    None => self.give_up(()),
                }
                let Some(dst) = r.col_mut(d) else { return self.stop() };
                for i in columns::each(mask) {
                    put(dst, i, at(&out, i));
                }
            }
            Ins::CTreeB { d, t, m, l } => {
                let items = self.list_items(l);
                let mask = b(r, m);
                let v = match flat.trees_b.get(t as usize) {
                    Some(e) => self.in_column(|me| me.vb(e, items, mask)),
                    None => self.give_up(0),
                };
                set_b(r, d, v & mask);
            }
            Ins::SetLetN { id, a } => {
                if let Some(c) = self.cells.get_mut(id as usize) {
                    *c = F::Num(n(r, a));
                }
            }
            Ins::SetLetB { id, a } => {
                if let Some(c) = self.cells.get_mut(id as usize) {
                    *c = F::Bool(b(r, a) != 0);
                }
            }
        }
        None
    }
}
