//! [`Frac`]: an exact fraction of two `i64`, the fast path's number. It holds every value a
//! realistic record produces in two machine words, so it travels in registers where a
//! [`Num`] (two `i128`) goes through memory. Every operation is checked: `None` means the exact
//! result does not fit, and the fast path then leaves the record to [`Num`] arithmetic, which
//! has twice the range. A `Frac` never rounds.

use crate::num::{Num, Rounding};
use std::cmp::Ordering;

/// `n / d` with `d > 0`, not necessarily in lowest terms.
#[derive(Clone, Copy, Debug)]
pub(super) struct Frac {
    n: i64,
    d: i64,
}

/// The fraction `n / d` (`d > 0`) in 64 bits: common factors of two dropped first (a few
/// instructions), then, only if it still does not fit, all common factors.
#[inline]
fn fit(n: i128, d: i128) -> Option<Frac> {
    let (n, d) = if d & 1 == 0 {
        // d > 0, so fewer than 128 shared zeros; both shifts divide exactly.
        let k = (n | d).trailing_zeros();
        (n >> k, d >> k)
    } else {
        (n, d)
    };
    match (i64::try_from(n), i64::try_from(d)) {
        (Ok(n), Ok(d)) => Some(Frac { n, d }),
        _ => fit_reduced(n, d),
    }
}

#[cold]
#[inline(never)]
fn fit_reduced(n: i128, d: i128) -> Option<Frac> {
    let (n, d) = Num::from_ratio(n, d).ok()?.reduced().parts();
    Some(Frac { n: i64::try_from(n).ok()?, d: i64::try_from(d).ok()? })
}

impl Frac {
    /// 0.
    pub(super) const ZERO: Frac = Frac { n: 0, d: 1 };

    /// The integer `i`.
    #[inline]
    pub(super) const fn int(i: i64) -> Frac {
        Frac { n: i, d: 1 }
    }

    /// The numerator and denominator as they are (not in lowest terms; the denominator is
    /// positive).
    #[inline(always)]
    pub(super) fn parts(self) -> (i64, i64) {
        (self.n, self.d)
    }

    /// `n / d`; `None` unless `d > 0`.
    #[inline]
    pub(super) fn new(n: i64, d: i64) -> Option<Frac> {
        (d > 0).then(|| Frac::halved(n, d))
    }

    /// `n / d` (`d > 0`), if it fits 64 bits (in lowest terms if need be).
    #[inline]
    pub(super) fn ratio(n: i128, d: i128) -> Option<Frac> {
        if d <= 0 {
            return None;
        }
        fit(n, d)
    }

    /// Whether the two have the same parts (and so the same value).
    #[inline]
    pub(super) fn same(self, other: Frac) -> bool {
        self.n == other.n && self.d == other.d
    }

    /// A [`Num`] as a `Frac`, if its parts fit in 64 bits as they are or in lowest terms.
    #[inline(always)]
    pub(super) fn of(x: &Num) -> Option<Frac> {
        let (n, d) = x.parts();
        match (i64::try_from(n), i64::try_from(d)) {
            (Ok(n), Ok(d)) => Some(Frac { n, d }),
            _ => fit_reduced(n, d),
        }
    }

    /// The same value as a [`Num`].
    #[inline]
    pub(super) fn to_num(self) -> Num {
        // d > 0, so this is always a fraction; ZERO is never the answer for a valid Frac.
        Num::from_ratio(i128::from(self.n), i128::from(self.d)).unwrap_or(Num::ZERO)
    }

    /// `self + other`.
    #[inline(always)]
    pub(super) fn add(self, other: Frac) -> Option<Frac> {
        if self.d == other.d {
            return match self.n.checked_add(other.n) {
                Some(n) => Some(Frac::halved(n, self.d)),
                None => fit(i128::from(self.n) + i128::from(other.n), i128::from(self.d)),
            };
        }
        self.cross(other, false)
    }

    /// `self - other`.
    #[inline(always)]
    pub(super) fn sub(self, other: Frac) -> Option<Frac> {
        if self.d == other.d {
            return match self.n.checked_sub(other.n) {
                Some(n) => Some(Frac::halved(n, self.d)),
                None => fit(i128::from(self.n) - i128::from(other.n), i128::from(self.d)),
            };
        }
        self.cross(other, true)
    }

    /// `n / d` (`d > 0`) without the factors of two both share.
    #[inline(always)]
    fn halved(n: i64, d: i64) -> Frac {
        if d & 1 != 0 {
            return Frac { n, d };
        }
        // d > 0, so fewer than 64 shared zeros; both shifts divide exactly.
        let k = (n | d).trailing_zeros();
        Frac { n: n >> k, d: d >> k }
    }

    /// `self ± other` over the product of the denominators: in 64 bits when the products fit,
    /// else in 128 bits (where they cannot overflow).
    #[inline]
    fn cross(self, other: Frac, minus: bool) -> Option<Frac> {
        // An integer and a fraction (`1 - k/4`): one product.
        if self.d == 1
            && let Some(a) = self.n.checked_mul(other.d)
            && let Some(n) = if minus { a.checked_sub(other.n) } else { a.checked_add(other.n) }
        {
            return Some(Frac::halved(n, other.d));
        }
        if other.d == 1
            && let Some(b) = other.n.checked_mul(self.d)
            && let Some(n) = if minus { self.n.checked_sub(b) } else { self.n.checked_add(b) }
        {
            return Some(Frac::halved(n, self.d));
        }
        if let (Some(a), Some(b), Some(d)) = (self.n.checked_mul(other.d), other.n.checked_mul(self.d), self.d.checked_mul(other.d))
            && let Some(n) = if minus { a.checked_sub(b) } else { a.checked_add(b) }
        {
            return Some(Frac::halved(n, d));
        }
        let a = i128::from(self.n) * i128::from(other.d);
        let b = i128::from(other.n) * i128::from(self.d);
        let n = if minus { a - b } else { a + b };
        fit(n, i128::from(self.d) * i128::from(other.d))
    }

    /// `self * other`.
    #[inline(always)]
    pub(super) fn mul(self, other: Frac) -> Option<Frac> {
        if let (Some(n), Some(d)) = (self.n.checked_mul(other.n), self.d.checked_mul(other.d)) {
            return Some(Frac::halved(n, d));
        }
        fit(i128::from(self.n) * i128::from(other.n), i128::from(self.d) * i128::from(other.d))
    }

    /// `self / other`; `None` when `other` is zero.
    #[inline]
    pub(super) fn div(self, other: Frac) -> Option<Frac> {
        if other.n == 0 {
            return None;
        }
        if let (Some(n), Some(d)) = (self.n.checked_mul(other.d), self.d.checked_mul(other.n))
            && let (Some(n), Some(d)) = if d > 0 { (Some(n), Some(d)) } else { (n.checked_neg(), d.checked_neg()) }
        {
            return Some(Frac::halved(n, d));
        }
        let n = i128::from(self.n) * i128::from(other.d);
        let d = i128::from(self.d) * i128::from(other.n);
        if d > 0 { fit(n, d) } else { fit(-n, -d) }
    }

    /// `-self`.
    #[inline]
    pub(super) fn neg(self) -> Option<Frac> {
        Some(Frac { n: self.n.checked_neg()?, d: self.d })
    }

    /// Compares the values exactly (the cross products fit in 128 bits).
    #[inline(always)]
    pub(super) fn cmp(self, other: Frac) -> Ordering {
        if self.d == other.d {
            return self.n.cmp(&other.n);
        }
        (i128::from(self.n) * i128::from(other.d)).cmp(&(i128::from(other.n) * i128::from(self.d)))
    }

    /// Whether the value is 0.
    #[inline]
    pub(super) fn is_zero(self) -> bool {
        self.n == 0
    }

    /// Whether the value is below 0.
    #[inline]
    pub(super) fn is_negative(self) -> bool {
        self.n < 0
    }

    /// Rounded as [`Num::round`] rounds: in 64 bits when the scaled numerator fits, else by
    /// [`Num::round`] itself.
    pub(super) fn round(self, places: u32, mode: Rounding) -> Option<Frac> {
        if let Some(scale) = 10i64.checked_pow(places)
            && let Some(m) = self.n.checked_mul(scale)
        {
            // Floor quotient and remainder 0 <= r < d; d > 0, so neither overflows.
            let (q, r) = (m.div_euclid(self.d), m.rem_euclid(self.d));
            if r == 0 {
                return Some(Frac { n: q, d: scale });
            }
            let up = mode.rounds_up(self.n < 0, r.cmp(&(self.d - r)), q % 2 != 0);
            return Some(Frac { n: if up { q.checked_add(1)? } else { q }, d: scale });
        }
        Frac::of(&self.to_num().round(places, mode).ok()?)
    }

    /// The largest integer not above the value.
    pub(super) fn floor(self) -> Frac {
        Frac { n: self.n.div_euclid(self.d), d: 1 }
    }

    /// The smallest integer not below the value.
    pub(super) fn ceil(self) -> Frac {
        let q = self.n.div_euclid(self.d);
        Frac { n: if self.n.rem_euclid(self.d) == 0 { q } else { q + 1 }, d: 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frac() -> impl Strategy<Value = Frac> {
        prop_oneof![
            (-1000i64..1000, 1i64..1000).prop_map(|(n, d)| Frac { n, d }),
            (any::<i64>(), 1i64..i64::MAX).prop_map(|(n, d)| Frac { n, d }),
        ]
    }

    /// A `Frac` result agrees with the exact `Num` one: the same value, and given up only where
    /// the value does not fit 64 bits even in lowest terms (or `Num` fails too).
    fn agrees(fast: Option<Frac>, exact: Result<Num, crate::num::NumError>) -> Result<(), TestCaseError> {
        match (fast, exact) {
            (Some(f), Ok(x)) => prop_assert_eq!(f.to_num().cmp(&x), Ok(Ordering::Equal)),
            (None, Ok(x)) => {
                let (n, d) = x.reduced().parts();
                prop_assert!(i64::try_from(n).is_err() || i64::try_from(d).is_err(), "gave up on {x:?}, which fits");
            }
            (None, Err(_)) => {}
            (Some(f), Err(e)) => prop_assert!(false, "{f:?} where Num fails with {e:?}"),
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn arithmetic_agrees_with_num(a in frac(), b in frac()) {
            let (x, y) = (a.to_num(), b.to_num());
            agrees(a.add(b), x.add(y))?;
            agrees(a.sub(b), x.sub(y))?;
            agrees(a.mul(b), x.mul(y))?;
            agrees(a.div(b), x.div(y))?;
            agrees(a.neg(), x.neg())?;
            prop_assert_eq!(Ok(a.cmp(b)), x.cmp(&y));
            prop_assert_eq!(a.floor().to_num().cmp(&x.floor()), Ok(Ordering::Equal));
            prop_assert_eq!(a.ceil().to_num().cmp(&x.ceil()), Ok(Ordering::Equal));
            for mode in [Rounding::HalfUp, Rounding::HalfEven, Rounding::Down, Rounding::Up, Rounding::Floor, Rounding::Ceiling] {
                for places in [0, 2, 5] {
                    agrees(a.round(places, mode), x.round(places, mode))?;
                }
            }
        }

        #[test]
        fn small_values_never_give_up(a in -1000i64..1000, b in 1i64..1000, c in -1000i64..1000, d in 1i64..1000) {
            let (x, y) = (Frac { n: a, d: b }, Frac { n: c, d });
            prop_assert!(x.add(y).is_some() && x.sub(y).is_some() && x.mul(y).is_some());
            prop_assert_eq!(x.div(y).is_some(), c != 0);
        }

        #[test]
        fn nums_too_wide_as_given_fit_in_lowest_terms(n in any::<i64>(), d in 1i64..i64::MAX, k in 2i64..1000) {
            // The same value with both parts multiplied by k: wider than 64 bits when k is large.
            let wide = Num::from_ratio(i128::from(n) * i128::from(k), i128::from(d) * i128::from(k)).unwrap_or(Num::ZERO);
            let f = Frac::of(&wide);
            prop_assert!(f.is_some());
            prop_assert_eq!(f.map(|f| f.to_num().cmp(&wide)), Some(Ok(Ordering::Equal)));
        }
    }

    #[test]
    fn exact_halves_round_by_the_mode() {
        let half = |n, d, places, mode| Frac { n, d }.round(places, mode).map(|f| f.to_num().to_string());
        // Case 15 of REGULATION.md: exactly 89.995 rounds half-up to 90.00.
        assert_eq!(half(89_995, 1000, 2, Rounding::HalfUp).as_deref(), Some("90"));
        assert_eq!(half(5, 2, 0, Rounding::HalfEven).as_deref(), Some("2"));
        assert_eq!(half(7, 2, 0, Rounding::HalfEven).as_deref(), Some("4"));
        assert_eq!(half(-5, 2, 0, Rounding::HalfUp).as_deref(), Some("-3"));
        assert_eq!(half(-5, 2, 0, Rounding::Floor).as_deref(), Some("-3"));
        assert_eq!(half(-5, 2, 0, Rounding::Down).as_deref(), Some("-2"));
    }

    #[test]
    fn sums_of_decimals_keep_their_denominator() {
        let quarter = Frac { n: 1, d: 4 };
        let mut sum = Frac::ZERO;
        for _ in 0..1000 {
            sum = sum.add(quarter).unwrap_or(Frac::ZERO);
        }
        assert_eq!((sum.n, sum.d), (250, 1));
        let third = Frac::int(1).div(Frac::int(3)).unwrap_or(Frac::ZERO);
        assert_eq!((third.n, third.d), (1, 3));
        // Beyond 64 bits a sum is reduced rather than given up.
        let big = Frac { n: i64::MAX - 1, d: 2 };
        let twice = big.add(big);
        assert_eq!(twice.map(|t| (t.n, t.d)), Some((i64::MAX - 1, 1)));
    }
}
