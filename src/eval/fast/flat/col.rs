//! [`Col`]: a column of numbers over one shared denominator, the flat program's item values.
//!
//! Lane `i` holds `n[i] / d`. With one denominator a lane operation is one or two integer
//! operations, with no denominator to compare or reduce per lane, and the loops run over plain
//! arrays of `i64`. Operands over different denominators are first brought to their least
//! common multiple. Lanes outside an operation's mask hold junk: they are computed with
//! wrapping arithmetic and never read, and only the mask's lanes are checked for overflow, so a
//! junk lane never makes a run give up. Every operation is exact. An operation that cannot
//! answer returns `false` (or `None`): a lane or the shared denominator does not fit 64 bits, or
//! a divisor is zero; the program then gives up and the trees evaluate the record. A column
//! gives up sooner than per-lane fractions would where its lanes' denominators have a large
//! common multiple (a division by many different item values, for one): that costs time, never
//! a different outcome.

use crate::eval::fast::columns::{self, Bits, MAX};
use crate::eval::fast::frac::Frac;

/// Lanes `n[i] / d` (`d > 0`); only the lanes of the mask an operation ran for hold values.
#[derive(Clone, Copy, Debug)]
pub(in crate::eval::fast) struct Col {
    n: [i64; MAX],
    d: i64,
}

/// How many lanes from the first to cover `keep`'s highest item.
#[inline(always)]
fn span(keep: Bits) -> usize {
    ((Bits::BITS - keep.leading_zeros()) as usize).min(MAX)
}

/// The least common multiple of two positive numbers.
#[inline(always)]
fn lcm(a: i64, b: i64) -> Option<i64> {
    // Most denominators are 1 or equal.
    if a == b || b == 1 {
        return Some(a);
    }
    if a == 1 {
        return Some(b);
    }
    lcm_by_gcd(a, b)
}

#[cold]
#[inline(never)]
fn lcm_by_gcd(a: i64, b: i64) -> Option<i64> {
    let g = i64::try_from(crate::num::gcd(a.unsigned_abs().into(), b.unsigned_abs().into())).ok()?;
    a.checked_div(g)?.checked_mul(b)
}

/// `out[i] = f(x[i], y[i])` over `keep`'s span; `false` when `f` overflows on an item of `keep`.
#[inline(always)]
fn zip(keep: Bits, x: &[i64; MAX], y: &[i64; MAX], out: &mut [i64; MAX], f: impl Fn(i64, i64) -> (i64, bool)) -> bool {
    let mut over: Bits = 0;
    for (i, ((o, &a), &b)) in out.iter_mut().zip(x).zip(y).enumerate().take(span(keep)) {
        let (v, bad) = f(a, b);
        *o = v;
        over |= Bits::from(bad) << i;
    }
    over & keep == 0
}

impl Col {
    /// A column of zeros.
    pub(in crate::eval::fast) const ZERO: Col = Col { n: [0; MAX], d: 1 };

    /// Makes this a column for no items: its lanes stay as they are (junk), its denominator is
    /// 1, which costs nothing to bring another column to.
    #[inline(always)]
    pub(in crate::eval::fast) fn clear(&mut self) {
        self.d = 1;
    }

    /// Every lane `v`.
    pub(in crate::eval::fast) fn splat(v: Frac) -> Col {
        let (n, d) = v.parts();
        Col { n: [n; MAX], d }
    }

    /// Every lane junk (for tests: a lane read that was not written shows).
    #[cfg(test)]
    pub(in crate::eval::fast) fn junk() -> Col {
        Col { n: [0x5A5A_5A5A; MAX], d: 3 }
    }

    /// Lane `i`'s value.
    #[cfg(test)]
    pub(in crate::eval::fast) fn get(&self, i: usize) -> Option<Frac> {
        Frac::ratio(i128::from(*self.n.get(i)?), i128::from(self.d))
    }

    /// Writes `value(i)` into the lanes of `keep`, over the least common multiple of their
    /// denominators; `false` (and the column unusable) where a value is missing or the
    /// denominator or a lane does not fit.
    #[inline(never)]
    pub(in crate::eval::fast) fn gather(&mut self, keep: Bits, mut value: impl FnMut(usize) -> Option<Frac>) -> bool {
        let mut d = 0i64;
        for i in columns::each(keep) {
            let Some((n, den)) = value(i).map(Frac::parts) else { return false };
            let n = if den == d || d == 0 {
                d = den;
                n
            } else {
                // Another denominator: the lanes so far and this one over the common multiple.
                let Some(common) = lcm(d, den) else { return false };
                if common != d && !self.rescale(keep & !(Bits::MAX << i), common.checked_div(d).unwrap_or(0)) {
                    return false;
                }
                d = common;
                let k = if den == 1 { Some(common) } else { common.checked_div(den) };
                match k.and_then(|k| n.checked_mul(k)) {
                    Some(n) => n,
                    None => return false,
                }
            };
            match self.n.get_mut(i) {
                Some(x) => *x = n,
                None => return false,
            }
        }
        self.d = d.max(1);
        true
    }

    /// Multiplies the lanes of `keep` by `k` (to put them over a denominator `k` times theirs).
    #[cold]
    fn rescale(&mut self, keep: Bits, k: i64) -> bool {
        if k <= 0 {
            return false;
        }
        for i in columns::each(keep) {
            let Some(x) = self.n.get_mut(i) else { return false };
            match x.checked_mul(k) {
                Some(v) => *x = v,
                None => return false,
            }
        }
        true
    }

    /// Writes integer lanes (denominator 1): `value(i)` for the items of `keep`.
    #[inline(never)]
    pub(in crate::eval::fast) fn gather_ints(&mut self, keep: Bits, mut value: impl FnMut(usize) -> Option<i64>) -> bool {
        self.d = 1;
        for i in columns::each(keep) {
            match (value(i), self.n.get_mut(i)) {
                (Some(v), Some(x)) => *x = v,
                _ => return false,
            }
        }
        true
    }

    /// The two columns' lanes over one denominator: the multipliers of each and the common
    /// denominator.
    #[inline(always)]
    fn common(a: &Col, b: &Col) -> Option<(i64, i64, i64)> {
        if a.d == b.d {
            return Some((1, 1, a.d));
        }
        if a.d == 1 {
            return Some((b.d, 1, b.d));
        }
        if b.d == 1 {
            return Some((1, a.d, a.d));
        }
        let d = lcm(a.d, b.d)?;
        Some((d.checked_div(a.d)?, d.checked_div(b.d)?, d))
    }

    /// `self = a + b` (or `a - b`) lane by lane over `keep`; `false` on overflow.
    #[inline(always)]
    fn lanes(&mut self, keep: Bits, a: &Col, b: &Col, minus: bool) -> bool {
        let Some((ka, kb, d)) = Col::common(a, b) else { return false };
        self.d = d;
        match (ka, kb, minus) {
            (1, 1, false) => zip(keep, &a.n, &b.n, &mut self.n, i64::overflowing_add),
            (1, 1, true) => zip(keep, &a.n, &b.n, &mut self.n, i64::overflowing_sub),
            (1, _, false) => zip(keep, &a.n, &b.n, &mut self.n, |x, y| scaled(x, 1, y, kb, false)),
            (1, _, true) => zip(keep, &a.n, &b.n, &mut self.n, |x, y| scaled(x, 1, y, kb, true)),
            _ => zip(keep, &a.n, &b.n, &mut self.n, |x, y| scaled(x, ka, y, kb, minus)),
        }
    }

    /// `self = a + b` on `keep`.
    #[inline(never)]
    pub(in crate::eval::fast) fn add(&mut self, keep: Bits, a: &Col, b: &Col) -> bool {
        self.lanes(keep, a, b, false)
    }

    /// `self = a - b` on `keep`.
    #[inline(never)]
    pub(in crate::eval::fast) fn sub(&mut self, keep: Bits, a: &Col, b: &Col) -> bool {
        self.lanes(keep, a, b, true)
    }

    /// `self = a * b` on `keep`.
    #[inline(never)]
    pub(in crate::eval::fast) fn mul(&mut self, keep: Bits, a: &Col, b: &Col) -> bool {
        let Some(d) = a.d.checked_mul(b.d) else { return false };
        self.d = d;
        zip(keep, &a.n, &b.n, &mut self.n, i64::overflowing_mul)
    }

    /// `self = a / b` on `keep`; `false` where a divisor of `keep` is zero (the trees then
    /// report it) or a value does not fit. The lanes' denominators differ, so the common one is
    /// `a`'s times the least common multiple of the divisors' numerators.
    #[inline(never)]
    pub(in crate::eval::fast) fn div(&mut self, keep: Bits, a: &Col, b: &Col) -> bool {
        let mut l = 1i64;
        for i in columns::each(keep) {
            match b.n.get(i).copied() {
                Some(0) | None => return false,
                Some(y) => match lcm(l, y.checked_abs().unwrap_or(0)) {
                    Some(m) if m > 0 => l = m,
                    _ => return false,
                },
            }
        }
        // a/da ÷ y/db = a·db·(l/|y|)·sign(y) / (da·l)
        let Some(d) = a.d.checked_mul(l) else { return false };
        self.d = d;
        let db = b.d;
        zip(keep, &a.n, &b.n, &mut self.n, |x, y| {
            let Some(k) = l.checked_div(y) else { return (0, true) };
            let (v, o1) = x.overflowing_mul(db);
            let (v, o2) = v.overflowing_mul(k);
            (v, o1 | o2)
        })
    }

    /// The items of `keep` where `a op b` holds; `orderings` as [`crate::eval::program::orderings`]
    /// gives them (bit 0 less, 1 equal, 2 greater).
    #[inline(never)]
    pub(in crate::eval::fast) fn compare(keep: Bits, a: &Col, b: &Col, orderings: u8) -> Bits {
        let (mut less, mut greater): (Bits, Bits) = (0, 0);
        if a.d == b.d {
            for (i, (x, y)) in a.n.iter().zip(&b.n).enumerate().take(span(keep)) {
                less |= Bits::from(x < y) << i;
                greater |= Bits::from(x > y) << i;
            }
        } else {
            let (da, db) = (i128::from(a.d), i128::from(b.d));
            for (i, (&x, &y)) in a.n.iter().zip(&b.n).enumerate().take(span(keep)) {
                let (x, y) = (i128::from(x) * db, i128::from(y) * da);
                less |= Bits::from(x < y) << i;
                greater |= Bits::from(x > y) << i;
            }
        }
        // An item past the column's lanes (never in a mask today) holds for no operator.
        by_orderings(orderings, less, greater) & keep & columns::all(MAX)
    }

    /// `self = pick ? a : b` lane by lane on `keep` (`pick` one bit an item).
    #[inline(never)]
    pub(in crate::eval::fast) fn select(&mut self, keep: Bits, pick: Bits, a: &Col, b: &Col) -> bool {
        let Some((ka, kb, d)) = Col::common(a, b) else { return false };
        self.d = d;
        if (ka, kb) == (1, 1) {
            for (i, ((o, &x), &y)) in self.n.iter_mut().zip(&a.n).zip(&b.n).enumerate().take(span(keep)) {
                *o = if pick >> i & 1 == 1 { x } else { y };
            }
            return true;
        }
        let mut over: Bits = 0;
        for (i, ((o, &x), &y)) in self.n.iter_mut().zip(&a.n).zip(&b.n).enumerate().take(span(keep)) {
            let (v, bad) = if pick >> i & 1 == 1 { x.overflowing_mul(ka) } else { y.overflowing_mul(kb) };
            *o = v;
            over |= Bits::from(bad) << i;
        }
        over & keep == 0
    }

    /// `self = min(a, b)` (or max) lane by lane on `keep`.
    #[inline(never)]
    pub(in crate::eval::fast) fn extreme(&mut self, keep: Bits, min: bool, a: &Col, b: &Col) -> bool {
        let Some((ka, kb, d)) = Col::common(a, b) else { return false };
        self.d = d;
        match (ka, kb, min) {
            (1, 1, true) => zip(keep, &a.n, &b.n, &mut self.n, |x, y| (x.min(y), false)),
            (1, 1, false) => zip(keep, &a.n, &b.n, &mut self.n, |x, y| (x.max(y), false)),
            _ => zip(keep, &a.n, &b.n, &mut self.n, |x, y| {
                let ((x, o1), (y, o2)) = (x.overflowing_mul(ka), y.overflowing_mul(kb));
                (if min { x.min(y) } else { x.max(y) }, o1 | o2)
            }),
        }
    }

    /// The sum of the lanes of `keep`, over the column's denominator: in 64 bits, or in 128
    /// where that overflows.
    #[inline(always)]
    fn total(&self, keep: Bits) -> Result<i64, i128> {
        let (mut s, mut over) = (0i64, false);
        for (i, &x) in self.n.iter().enumerate().take(span(keep)) {
            // Branch-free: a lane outside `keep` adds 0.
            let inside = 0i64.wrapping_sub(i64::from(keep >> i & 1 == 1));
            let (v, o) = s.overflowing_add(x & inside);
            (s, over) = (v, over | o);
        }
        if over { Err(self.total_wide(keep)) } else { Ok(s) }
    }

    #[cold]
    #[inline(never)]
    fn total_wide(&self, keep: Bits) -> i128 {
        columns::each(keep).filter_map(|i| self.n.get(i)).map(|&x| i128::from(x)).sum()
    }

    /// The sum of the lanes of `keep`.
    #[inline(never)]
    pub(in crate::eval::fast) fn sum(&self, keep: Bits) -> Option<Frac> {
        match self.total(keep) {
            Ok(s) => Frac::new(s, self.d),
            Err(s) => Frac::ratio(s, i128::from(self.d)),
        }
    }

    /// The sum over the lanes of `keep` of `a` times `b`: in 64 bits, or in 128 where that
    /// overflows; `None` where even that does not fit.
    #[inline(never)]
    pub(in crate::eval::fast) fn dot(keep: Bits, a: &Col, b: &Col) -> Option<Frac> {
        let d = a.d.checked_mul(b.d)?;
        let (mut s, mut over) = (0i64, false);
        for (i, (&x, &y)) in a.n.iter().zip(&b.n).enumerate().take(span(keep)) {
            // Branch-free: a lane outside `keep` adds 0 (and its overflow is dropped).
            let inside = keep >> i & 1 == 1;
            let (p, o1) = x.overflowing_mul(y);
            let (v, o2) = s.overflowing_add(p & 0i64.wrapping_sub(i64::from(inside)));
            (s, over) = (v, over | (inside & o1) | o2);
        }
        if !over {
            return Frac::new(s, d);
        }
        let mut wide = 0i128;
        for i in columns::each(keep) {
            let (x, y) = (i128::from(*a.n.get(i)?), i128::from(*b.n.get(i)?));
            wide = wide.checked_add(x * y)?;
        }
        Frac::ratio(wide, i128::from(d))
    }

    /// The mean of the lanes of `keep` (`None` for no lanes).
    #[inline(never)]
    pub(in crate::eval::fast) fn mean(&self, keep: Bits) -> Option<Frac> {
        let count = i128::from(keep.count_ones());
        if count == 0 {
            return None;
        }
        let s = match self.total(keep) {
            Ok(s) => i128::from(s),
            Err(s) => s,
        };
        Frac::ratio(s, i128::from(self.d) * count)
    }
}

/// The items where an operator with `orderings` holds, from those where its operands compare
/// less and greater.
#[inline(always)]
pub(in crate::eval::fast) fn by_orderings(orderings: u8, less: Bits, greater: Bits) -> Bits {
    let all = |bit: u8| if orderings & bit != 0 { Bits::MAX } else { 0 };
    (less & all(1)) | (!(less | greater) & all(2)) | (greater & all(4))
}

/// `x·kx ± y·ky` with its overflow.
#[inline(always)]
fn scaled(x: i64, kx: i64, y: i64, ky: i64, minus: bool) -> (i64, bool) {
    let (x, o1) = x.overflowing_mul(kx);
    let (y, o2) = y.overflowing_mul(ky);
    let (v, o3) = if minus { x.overflowing_sub(y) } else { x.overflowing_add(y) };
    (v, o1 | o2 | o3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::ir::Op;
    use crate::eval::program::{holds, orderings};
    use proptest::prelude::*;
    use std::cmp::Ordering;

    /// A column of small decimals (denominators dividing 100) and thirds.
    fn decimals() -> impl Strategy<Value = Vec<(i64, i64)>> {
        let den = prop_oneof![Just(1i64), Just(2), Just(4), Just(5), Just(10), Just(20), Just(25), Just(100), Just(3)];
        proptest::collection::vec((-10_000i64..10_000, den), MAX)
    }

    /// A column of wide fractions: numerators up to `i64::MAX / 60` over denominators whose
    /// common multiple divides 60, so that a column holds them, and an operation on two of
    /// them may overflow.
    fn wide() -> impl Strategy<Value = Vec<(i64, i64)>> {
        let den = prop_oneof![Just(1i64), Just(2), Just(3), Just(4), Just(5), Just(10)];
        proptest::collection::vec((-(i64::MAX / 60)..=i64::MAX / 60, den), MAX)
    }

    /// Divisors: small numbers of a few kinds (their common multiple stays small).
    fn divisors() -> impl Strategy<Value = Vec<(i64, i64)>> {
        let n = prop_oneof![Just(1i64), Just(-2), Just(3), Just(4), Just(-5), Just(10), Just(25)];
        let den = prop_oneof![Just(1i64), Just(2), Just(4), Just(10)];
        proptest::collection::vec((n, den), MAX)
    }

    /// A mask of one to four items.
    fn few() -> impl Strategy<Value = Bits> {
        proptest::collection::vec(0u32..32, 1..5).prop_map(|v| v.iter().fold(0, |m, i| m | 1 << i))
    }

    fn frac(n: i64, d: i64) -> Frac {
        Frac::ratio(i128::from(n), i128::from(d)).unwrap_or(Frac::ZERO)
    }

    fn gathered(v: &[(i64, i64)], keep: Bits) -> Option<Col> {
        let mut c = Col::junk();
        c.gather(keep, |i| v.get(i).map(|&(n, d)| frac(n, d))).then_some(c)
    }

    fn column(v: &[(i64, i64)], keep: Bits) -> Col {
        gathered(v, keep).unwrap_or_else(|| panic!("small lanes gather: {v:?}"))
    }

    fn at(v: &[(i64, i64)], i: usize) -> Frac {
        v.get(i).map(|&(n, d)| frac(n, d)).unwrap_or(Frac::ZERO)
    }

    /// Lane `i` of `c` equals `want` (as values).
    fn lane_is(c: &Col, i: usize, want: Option<Frac>) -> Result<(), TestCaseError> {
        let got = c.get(i);
        prop_assert!(matches!((got, want), (Some(g), Some(w)) if g.cmp(w) == Ordering::Equal), "lane {i}: {got:?}, want {want:?}");
        Ok(())
    }

    proptest! {
        /// Every operation agrees with `Frac` on each lane of the mask, and never gives up on
        /// small values; division by any small decimals gives up where a divisor is zero, and
        /// by divisors of a few kinds (`z`) never.
        #[test]
        fn lanes_agree_with_frac(x in decimals(), y in decimals(), z in divisors(), keep in any::<u32>(), pick in any::<u32>()) {
            let keep = Bits::from(keep);
            let (a, b) = (column(&x, keep), column(&y, keep));
            let mut out = Col::junk();
            prop_assert!(out.add(keep, &a, &b));
            for i in columns::each(keep) { lane_is(&out, i, at(&x, i).add(at(&y, i)))?; }
            prop_assert!(out.sub(keep, &a, &b));
            for i in columns::each(keep) { lane_is(&out, i, at(&x, i).sub(at(&y, i)))?; }
            prop_assert!(out.mul(keep, &a, &b));
            for i in columns::each(keep) { lane_is(&out, i, at(&x, i).mul(at(&y, i)))?; }
            let zero_divisor = columns::each(keep).any(|i| y.get(i).is_some_and(|&(n, _)| n == 0));
            let divided = out.div(keep, &a, &b);
            prop_assert!(!zero_divisor || !divided, "a zero divisor fails");
            if divided {
                for i in columns::each(keep) { lane_is(&out, i, at(&x, i).div(at(&y, i)))?; }
            }
            prop_assert!(out.div(keep, &a, &column(&z, keep)), "divisors of a few kinds");
            for i in columns::each(keep) { lane_is(&out, i, at(&x, i).div(at(&z, i)))?; }
            for min in [false, true] {
                prop_assert!(out.extreme(keep, min, &a, &b));
                for i in columns::each(keep) {
                    let (p, q) = (at(&x, i), at(&y, i));
                    lane_is(&out, i, Some(if (q.cmp(p) == Ordering::Less) == min && q.cmp(p) != Ordering::Equal { q } else { p }))?;
                }
            }
            let pick = Bits::from(pick);
            prop_assert!(out.select(keep, pick, &a, &b));
            for i in columns::each(keep) { lane_is(&out, i, Some(if pick >> i & 1 == 1 { at(&x, i) } else { at(&y, i) }))?; }
            for op in [Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge] {
                let got = Col::compare(keep, &a, &b, orderings(op));
                let want = columns::each(keep).filter(|&i| holds(op, at(&x, i).cmp(at(&y, i)))).fold(0, |m, i| m | 1 << i);
                prop_assert_eq!(got, want, "{:?}", op);
            }
            let sum = columns::each(keep).try_fold(Frac::ZERO, |s, i| s.add(at(&x, i)));
            prop_assert!(matches!((a.sum(keep), sum), (Some(g), Some(w)) if g.cmp(w) == Ordering::Equal));
            let dot = columns::each(keep).try_fold(Frac::ZERO, |s, i| s.add(at(&x, i).mul(at(&y, i))?));
            prop_assert!(matches!((Col::dot(keep, &a, &b), dot), (Some(g), Some(w)) if g.cmp(w) == Ordering::Equal));
            let mean = sum.and_then(|s| s.div(Frac::int(i64::from(keep.count_ones()))));
            prop_assert_eq!(a.mean(keep).map(|m| mean.map(|w| m.cmp(w))), mean.map(|_| Some(Ordering::Equal)));
        }
    }

    proptest! {
        /// On any fractions an operation may give up (a value or the common denominator does
        /// not fit), but what it answers is exact.
        #[test]
        fn answers_on_wide_values_are_exact(x in wide(), y in wide(), keep in few(), pick in any::<u32>()) {
            let (a, b) = (column(&x, keep), column(&y, keep));
            for i in columns::each(keep) {
                lane_is(&a, i, Some(at(&x, i)))?;
            }
            let mut out = Col::junk();
            if out.select(keep, Bits::from(pick), &a, &b) {
                for i in columns::each(keep) { lane_is(&out, i, Some(if pick >> i & 1 == 1 { at(&x, i) } else { at(&y, i) }))?; }
            }
            let less = Col::compare(keep, &a, &b, 0b001);
            prop_assert_eq!(less, columns::each(keep).filter(|&i| at(&x, i).cmp(at(&y, i)) == Ordering::Less).fold(0, |m, i| m | 1 << i));
            let sum = columns::each(keep).try_fold(Frac::ZERO, |s, i| s.add(at(&x, i)));
            if let Some(got) = a.sum(keep) {
                prop_assert!(sum.is_some_and(|w| got.cmp(w) == Ordering::Equal));
            }
            let dot = columns::each(keep).try_fold(Frac::ZERO, |s, i| s.add(at(&x, i).mul(at(&y, i))?));
            if let (Some(got), Some(want)) = (Col::dot(keep, &a, &b), dot) {
                prop_assert_eq!(got.cmp(want), Ordering::Equal);
            }
            type ColOp = fn(&mut Col, Bits, &Col, &Col) -> bool;
            type FracOp = fn(Frac, Frac) -> Option<Frac>;
            let ops: [(ColOp, FracOp); 4] =
                [(Col::add, Frac::add), (Col::sub, Frac::sub), (Col::mul, Frac::mul), (Col::div, Frac::div)];
            for (op, exact) in ops {
                let mut out = Col::junk();
                if op(&mut out, keep, &a, &b) {
                    for i in columns::each(keep) {
                        let want = exact(at(&x, i), at(&y, i));
                        prop_assert!(want.is_some(), "lane {i} answered where Frac does not fit");
                        lane_is(&out, i, want)?;
                    }
                }
            }
        }
    }

    #[test]
    fn overflow_in_a_lane_of_the_mask_gives_up_and_outside_it_does_not() {
        let big = [(i64::MAX / 2 + 1, 1); MAX];
        let (a, b) = (column(&big, 0b11), column(&big, 0b11));
        let mut out = Col::junk();
        assert!(!out.add(0b11, &a, &b), "an overflowing lane of the mask gives up");
        assert!(!out.mul(0b01, &a, &b));
        // Lanes 2.. hold junk from `column`'s gather over 0b11; any value there is ignored.
        let mut wide = [(1, 1); MAX];
        wide[5] = (i64::MAX, 1);
        let w = column(&wide, 0b10_0011);
        assert!(out.add(0b11, &w, &w), "lane 5 is outside the mask");
    }

    #[test]
    fn a_sum_that_overflows_on_the_way_is_summed_again_wide() {
        let mut lanes = [(0, 1); MAX];
        lanes[0] = (i64::MAX, 1);
        lanes[1] = (1, 1);
        lanes[2] = (-2, 1);
        let c = column(&lanes, 0b111);
        assert_eq!(c.sum(0b111).map(Frac::parts), Some((i64::MAX - 1, 1)));
        assert!(c.sum(0b011).is_none(), "MAX + 1 does not fit");
    }

    #[test]
    fn a_weighted_sum_that_overflows_64_bits_is_exact_in_128() {
        let mut lanes = [(0, 1); MAX];
        lanes[0] = (i64::MAX, 1);
        lanes[1] = (i64::MAX, 1);
        let big = column(&lanes, 0b11);
        let halves = column(&[(1, 2); MAX], 0b11);
        // MAX·1 twice over 2: the numerators' sum overflows 64 bits, the value is MAX.
        assert_eq!(Col::dot(0b11, &big, &halves).map(Frac::parts), Some((i64::MAX, 1)));
        let twos = column(&[(2, 1); MAX], 0b11);
        // MAX·2: the product itself does not fit, and neither does the sum in lowest terms.
        assert!(Col::dot(0b11, &big, &twos).is_none());
        assert_eq!(Col::dot(0b01, &big, &halves).map(Frac::parts), Some((i64::MAX, 2)));
    }

    #[test]
    fn a_column_over_one_denominator_keeps_it() {
        let quarters = column(&[(1, 4); MAX], 0b111);
        let ints = column(&[(3, 1); MAX], 0b111);
        let mut out = Col::junk();
        assert!(out.sub(0b111, &ints, &quarters));
        assert_eq!(out.d, 4);
        assert_eq!(out.n.get(..3), Some(&[11i64, 11, 11][..]));
        assert_eq!(out.sum(0b111).map(Frac::parts), Some((33, 4)));
        // Mixed denominators: over their least common multiple.
        let mixed = column(&[(1, 1), (3, 2), (1, 10)].repeat(11), 0b111);
        assert_eq!(mixed.d, 10);
        assert_eq!(mixed.n.get(..3), Some(&[10i64, 15, 1][..]));
    }
}
