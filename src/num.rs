//! Exact rational numbers for scores.
//!
//! Scores are averages, ratios and weighted sums that end in a rounding step
//! (for example half-up to two places). Binary floating point, or a decimal
//! type with a fixed number of digits, can leave a value such as 89.995 a hair
//! below the tie so that it rounds the wrong way. [`Num`] keeps every
//! intermediate result as an exact fraction of two `i128`, reports overflow as
//! an error instead of rounding, and rounds only when asked to, in integer
//! arithmetic.
//!
//! Fractions are reduced lazily: operands with equal denominators combine
//! without a gcd, and a gcd is only computed when a result would overflow.

use std::cmp::Ordering;
use std::fmt;

/// An exact rational number `n / d` with `d > 0`, not necessarily in lowest terms.
///
/// There is deliberately no `PartialEq`, `Eq`, `Ord` or `Hash`: a derived one would
/// compare the representation (`12/14 != 6/7`). Use [`Num::eq`] and [`Num::cmp`].
#[derive(Clone, Copy, Debug)]
pub struct Num {
    n: i128,
    d: i128,
}

/// Why a checked arithmetic operation on [`Num`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumError {
    /// The exact result does not fit in an `i128` fraction.
    Overflow,
    /// The divisor (or denominator) was zero.
    DivisionByZero,
}

impl fmt::Display for NumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NumError::Overflow => "arithmetic overflow",
            NumError::DivisionByZero => "division by zero",
        })
    }
}

impl std::error::Error for NumError {}

/// Why [`Num::parse_decimal`] rejected its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumParseError {
    /// The text is not of the form `[+-]digits[.digits][(e|E)[+-]digits]`.
    Invalid,
    /// The value is well formed but cannot be held exactly in an `i128` fraction.
    TooManyDigits,
}

impl fmt::Display for NumParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NumParseError::Invalid => "not a decimal number",
            NumParseError::TooManyDigits => "too many digits",
        })
    }
}

impl std::error::Error for NumParseError {}

/// How [`Num::round`] resolves a value that lies between two representable results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// To nearest; an exact half goes away from zero (2.5 -> 3, -2.5 -> -3).
    HalfUp,
    /// To nearest; an exact half goes to the even neighbour (2.5 -> 2, 3.5 -> 4).
    HalfEven,
    /// Toward zero (truncation).
    Down,
    /// Away from zero.
    Up,
    /// Toward negative infinity.
    Floor,
    /// Toward positive infinity.
    Ceiling,
}

impl Rounding {
    /// Whether a value that is not a multiple of the unit rounds to the floor quotient plus one
    /// unit: given its sign, how its remainder compares with half a unit, and whether the floor
    /// quotient is odd.
    #[inline]
    pub(crate) fn rounds_up(self, negative: bool, remainder_vs_half: Ordering, odd: bool) -> bool {
        match self {
            Rounding::Floor => false,
            Rounding::Ceiling => true,
            Rounding::Down => negative,
            Rounding::Up => !negative,
            Rounding::HalfUp | Rounding::HalfEven => match remainder_vs_half {
                Ordering::Less => false,
                Ordering::Greater => true,
                Ordering::Equal if self == Rounding::HalfUp => !negative,
                Ordering::Equal => odd,
            },
        }
    }
}

/// Greatest common divisor (binary algorithm); `gcd(0, b) == b`.
#[inline]
pub(crate) fn gcd(a: u128, b: u128) -> u128 {
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    let shift = (a | b).trailing_zeros();
    let mut a = a >> a.trailing_zeros();
    let mut b = b;
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

/// Builds a fraction from a sign and magnitudes, if both fit (`d` must be non-zero).
#[inline]
fn from_parts(negative: bool, n: u128, d: u128) -> Option<Num> {
    let d = i128::try_from(d).ok()?;
    let n = if negative { 0i128.checked_sub_unsigned(n)? } else { i128::try_from(n).ok()? };
    Some(Num { n, d })
}

/// The next decimal digit of the fraction `r / d` (`r < d`): returns `(digit, r')`
/// with `10 * r = digit * d + r'`, without overflowing for any `d <= u128::MAX / 2`.
#[inline]
fn next_digit(r: u128, d: u128) -> (u8, u128) {
    if let Some(t) = r.checked_mul(10) {
        // t / d < 10, so the cast is lossless.
        return ((t / d) as u8, t % d);
    }
    // r, acc < d <= 2^127, so acc + r cannot overflow a u128.
    let mut acc = 0u128;
    let mut digit = 0u8;
    for _ in 0..10 {
        acc += r;
        if acc >= d {
            acc -= d;
            digit += 1;
        }
    }
    (digit, acc)
}

/// Writes ASCII digit bytes to a string.
fn push_ascii(out: &mut String, bytes: &[u8]) {
    out.extend(bytes.iter().map(|&b| char::from(b)));
}

/// `a * b`, checked. When both fit in 64 bits the product cannot overflow 128 bits, so the
/// slow overflow-checked 128-bit multiply (a library call) is needed only for large operands.
#[inline(always)]
fn mul128(a: i128, b: i128) -> Option<i128> {
    match (i64::try_from(a), i64::try_from(b)) {
        (Ok(x), Ok(y)) => Some(i128::from(x) * i128::from(y)),
        _ => a.checked_mul(b),
    }
}

impl Num {
    /// The number 0.
    pub const ZERO: Num = Num { n: 0, d: 1 };
    /// The number 1.
    pub const ONE: Num = Num { n: 1, d: 1 };

    /// The integer `i`.
    #[inline]
    pub const fn from_int(i: i64) -> Num {
        Num { n: i as i128, d: 1 }
    }

    /// The fraction `n / d`; fails if `d` is zero (or `d < 0` and the sign cannot be moved).
    #[inline]
    pub fn from_ratio(n: i128, d: i128) -> Result<Num, NumError> {
        if d > 0 {
            return Ok(Num { n, d });
        }
        if d == 0 {
            return Err(NumError::DivisionByZero);
        }
        if let (Some(n), Some(d)) = (n.checked_neg(), d.checked_neg()) {
            return Ok(Num { n, d });
        }
        let (an, ad) = (n.unsigned_abs(), d.unsigned_abs());
        let g = gcd(an, ad);
        from_parts(n > 0, an / g, ad / g).ok_or(NumError::Overflow)
    }

    /// Parses decimal text exactly: `[+-]digits[.digits][(e|E)[+-]digits]`.
    ///
    /// Leading zeros are allowed (`"007"`); `".5"`, `"1."`, `"1e"`, blanks and any
    /// surrounding whitespace are rejected. After trailing zeros are dropped the
    /// significant digits must fit an `i128`, and so must the value's numerator and
    /// denominator; anything else is [`NumParseError::TooManyDigits`], never rounded.
    pub fn parse_decimal(text: &str) -> Result<Num, NumParseError> {
        use NumParseError::{Invalid, TooManyDigits};

        fn digits(s: &[u8]) -> (&[u8], &[u8]) {
            let k = s.iter().take_while(|b| b.is_ascii_digit()).count();
            s.split_at_checked(k).unwrap_or((s, &[]))
        }

        let (negative, rest) = match text.as_bytes().split_first() {
            Some((b'-', rest)) => (true, rest),
            Some((b'+', rest)) => (false, rest),
            _ => (false, text.as_bytes()),
        };
        let (int, rest) = digits(rest);
        if int.is_empty() {
            return Err(Invalid);
        }
        let (frac, rest) = match rest.split_first() {
            Some((b'.', rest)) => {
                let (frac, rest) = digits(rest);
                if frac.is_empty() {
                    return Err(Invalid);
                }
                (frac, rest)
            }
            _ => (&[][..], rest),
        };
        // `None` means the exponent does not fit an i64.
        let (exponent, rest) = match rest.split_first() {
            Some((b'e' | b'E', rest)) => {
                let (exp_negative, rest) = match rest.split_first() {
                    Some((b'-', rest)) => (true, rest),
                    Some((b'+', rest)) => (false, rest),
                    _ => (false, rest),
                };
                let (exp, rest) = digits(rest);
                if exp.is_empty() {
                    return Err(Invalid);
                }
                let value = exp.iter().try_fold(0i64, |acc, &b| {
                    let digit = i64::from(b - b'0');
                    let acc = acc.checked_mul(10)?;
                    if exp_negative { acc.checked_sub(digit) } else { acc.checked_add(digit) }
                });
                (value, rest)
            }
            _ => (Some(0), rest),
        };
        if !rest.is_empty() {
            return Err(Invalid);
        }

        let all = || int.iter().chain(frac.iter());
        let total = int.len() + frac.len();
        let leading = all().take_while(|&&b| b == b'0').count();
        if leading == total {
            return Ok(Num::ZERO);
        }
        let trailing = all().rev().take_while(|&&b| b == b'0').count();
        let mantissa = all()
            .skip(leading)
            .take(total - leading - trailing)
            .try_fold(0u128, |acc, &b| acc.checked_mul(10)?.checked_add(u128::from(b - b'0')))
            .ok_or(TooManyDigits)?;
        // value = mantissa * 10^scale
        let scale = exponent
            .and_then(|e| {
                let frac_len = i64::try_from(frac.len()).ok()?;
                let trailing = i64::try_from(trailing).ok()?;
                e.checked_sub(frac_len)?.checked_add(trailing)
            })
            .ok_or(TooManyDigits)?;

        let (n, d) = if scale >= 0 {
            let power = u32::try_from(scale).ok().and_then(|s| 10u128.checked_pow(s));
            (power.and_then(|p| mantissa.checked_mul(p)), Some(1))
        } else {
            let s = scale.unsigned_abs();
            match u32::try_from(s).ok().and_then(|s| 10u128.checked_pow(s)) {
                Some(p) if p <= i128::MAX.unsigned_abs() => (Some(mantissa), Some(p)),
                _ => {
                    // 10^s is too big, but factors of 2 and 5 in the mantissa may cancel.
                    let twos = u64::from(mantissa.trailing_zeros()).min(s);
                    let mut m = mantissa >> twos;
                    let mut fives = 0u64;
                    while fives < s && m.is_multiple_of(5) {
                        m /= 5;
                        fives += 1;
                    }
                    let pow = |base: u128, e: u64| u32::try_from(e).ok().and_then(|e| base.checked_pow(e));
                    let d = pow(2, s - twos).zip(pow(5, s - fives)).and_then(|(a, b)| a.checked_mul(b));
                    (Some(m), d)
                }
            }
        };
        // In lowest terms, so denominators start small (results keep them small: see `halved`).
        n.zip(d).and_then(|(n, d)| from_parts(negative, n, d)).map(Num::reduced).ok_or(TooManyDigits)
    }

    /// `self + other`.
    #[allow(clippy::should_implement_trait, reason = "checked: returns a Result, which the operator traits cannot")]
    #[inline]
    pub fn add(self, other: Num) -> Result<Num, NumError> {
        self.add_sub(other, i128::checked_add)
    }

    /// `self - other`.
    #[allow(clippy::should_implement_trait, reason = "checked: returns a Result, which the operator traits cannot")]
    #[inline]
    pub fn sub(self, other: Num) -> Result<Num, NumError> {
        self.add_sub(other, i128::checked_sub)
    }

    #[inline]
    fn add_sub(self, other: Num, op: fn(i128, i128) -> Option<i128>) -> Result<Num, NumError> {
        if self.d == other.d {
            if let Some(n) = op(self.n, other.n) {
                return Ok(Num { n, d: self.d }.halved());
            }
        } else if other.d == 1 {
            // An integer keeps the other denominator: one product, and no growth.
            if let Some(n) = mul128(other.n, self.d).and_then(|b| op(self.n, b)) {
                return Ok(Num { n, d: self.d }.halved());
            }
        } else if self.d == 1 {
            if let Some(n) = mul128(self.n, other.d).and_then(|a| op(a, other.n)) {
                return Ok(Num { n, d: other.d }.halved());
            }
        } else if let (Some(a), Some(b), Some(d)) = (mul128(self.n, other.d), mul128(other.n, self.d), mul128(self.d, other.d))
            && let Some(n) = op(a, b)
        {
            return Ok(Num { n, d }.halved());
        }
        Self::add_sub_reduced(self, other, op)
    }

    /// The same value without the factors of two its numerator and denominator share (`4/4` is
    /// `1/1`, `12/8` is `3/2`): a few instructions, where a full reduction needs a gcd. It keeps
    /// the denominators of sums and products of decimals from growing at every step, so they
    /// stay equal and small, on the fast paths.
    #[inline(always)]
    fn halved(self) -> Num {
        if self.d & 1 != 0 {
            return self;
        }
        // d > 0, so fewer than 128 shared zeros; both divide exactly (arithmetic shift).
        let k = (self.n | self.d).trailing_zeros();
        Num { n: self.n >> k, d: self.d >> k }
    }

    #[cold]
    #[inline(never)]
    fn add_sub_reduced(a: Num, b: Num, op: fn(i128, i128) -> Option<i128>) -> Result<Num, NumError> {
        let (a, b) = (a.reduced(), b.reduced());
        // Both denominators are positive, so g fits and is at least 1.
        let g = gcd(a.d.unsigned_abs(), b.d.unsigned_abs());
        let g = i128::try_from(g).map_err(|_| NumError::Overflow)?;
        let (ad, bd) = (a.d / g, b.d / g);
        let n = a.n.checked_mul(bd).zip(b.n.checked_mul(ad)).and_then(|(x, y)| op(x, y));
        let d = a.d.checked_mul(bd);
        match (n, d) {
            (Some(n), Some(d)) => Ok(Num { n, d }.reduced()),
            _ => Err(NumError::Overflow),
        }
    }

    /// `self * other`.
    #[allow(clippy::should_implement_trait, reason = "checked: returns a Result, which the operator traits cannot")]
    #[inline]
    pub fn mul(self, other: Num) -> Result<Num, NumError> {
        if let (Some(n), Some(d)) = (mul128(self.n, other.n), mul128(self.d, other.d)) {
            return Ok(Num { n, d }.halved());
        }
        Self::mul_reduced(self, other)
    }

    #[cold]
    #[inline(never)]
    fn mul_reduced(a: Num, b: Num) -> Result<Num, NumError> {
        let (a, b) = (a.reduced(), b.reduced());
        let (an, ad, bn, bd) = (a.n.unsigned_abs(), a.d.unsigned_abs(), b.n.unsigned_abs(), b.d.unsigned_abs());
        // Cross factors; both are at least 1 because denominators are positive.
        let g1 = gcd(an, bd);
        let g2 = gcd(bn, ad);
        let n = (an / g1).checked_mul(bn / g2);
        let d = (ad / g2).checked_mul(bd / g1);
        n.zip(d).and_then(|(n, d)| from_parts((a.n < 0) != (b.n < 0), n, d)).ok_or(NumError::Overflow)
    }

    /// `self / other`; [`NumError::DivisionByZero`] if `other` is zero.
    #[allow(clippy::should_implement_trait, reason = "checked: returns a Result, which the operator traits cannot")]
    #[inline]
    pub fn div(self, other: Num) -> Result<Num, NumError> {
        if other.n == 0 {
            return Err(NumError::DivisionByZero);
        }
        if let (Some(n), Some(d)) = (mul128(self.n, other.d), mul128(self.d, other.n)) {
            if d > 0 {
                return Ok(Num { n, d }.halved());
            }
            if let (Some(n), Some(d)) = (n.checked_neg(), d.checked_neg()) {
                return Ok(Num { n, d }.halved());
            }
        }
        Self::div_reduced(self, other)
    }

    #[cold]
    #[inline(never)]
    fn div_reduced(a: Num, b: Num) -> Result<Num, NumError> {
        let (a, b) = (a.reduced(), b.reduced());
        let (an, ad, bn, bd) = (a.n.unsigned_abs(), a.d.unsigned_abs(), b.n.unsigned_abs(), b.d.unsigned_abs());
        // bn != 0 and the denominators are positive, so both factors are at least 1.
        let g1 = gcd(an, bn);
        let g2 = gcd(ad, bd);
        let n = (an / g1).checked_mul(bd / g2);
        let d = (ad / g2).checked_mul(bn / g1);
        n.zip(d).and_then(|(n, d)| from_parts((a.n < 0) != (b.n < 0), n, d)).ok_or(NumError::Overflow)
    }

    /// `-self`.
    #[allow(clippy::should_implement_trait, reason = "checked: returns a Result, which the operator traits cannot")]
    #[inline]
    pub fn neg(self) -> Result<Num, NumError> {
        match self.n.checked_neg() {
            Some(n) => Ok(Num { n, d: self.d }),
            None => {
                let r = self.reduced();
                r.n.checked_neg().map(|n| Num { n, d: r.d }).ok_or(NumError::Overflow)
            }
        }
    }

    /// Compares the values exactly.
    ///
    /// Uses cross-multiplication and, when that would overflow, a continued-fraction
    /// comparison that cannot overflow, so it never actually returns an error; the
    /// `Result` matches the other checked operations.
    #[allow(clippy::should_implement_trait, reason = "checked: returns a Result, which Ord::cmp cannot")]
    #[inline]
    pub fn cmp(&self, other: &Num) -> Result<Ordering, NumError> {
        if self.d == other.d {
            return Ok(self.n.cmp(&other.n));
        }
        let (sa, sb) = (self.n.signum(), other.n.signum());
        if sa != sb {
            return Ok(sa.cmp(&sb));
        }
        match (mul128(self.n, other.d), mul128(other.n, self.d)) {
            (Some(l), Some(r)) => Ok(l.cmp(&r)),
            _ => Ok(Self::cmp_euclid(*self, *other)),
        }
    }

    /// Overflow-free comparison by comparing continued-fraction expansions.
    #[cold]
    #[inline(never)]
    fn cmp_euclid(a: Num, b: Num) -> Ordering {
        // With d > 0 these never overflow and give 0 <= r < d.
        let (qa, qb) = (a.n.div_euclid(a.d), b.n.div_euclid(b.d));
        if qa != qb {
            return qa.cmp(&qb);
        }
        let (mut an, mut ad) = (a.n.rem_euclid(a.d).unsigned_abs(), a.d.unsigned_abs());
        let (mut bn, mut bd) = (b.n.rem_euclid(b.d).unsigned_abs(), b.d.unsigned_abs());
        // Invariant: the answer is cmp(an/ad, bn/bd) with both fractions in [0, 1).
        loop {
            match (an == 0, bn == 0) {
                (true, true) => return Ordering::Equal,
                (true, false) => return Ordering::Less,
                (false, true) => return Ordering::Greater,
                (false, false) => {}
            }
            // an/ad vs bn/bd has the same answer as bd/bn vs ad/an.
            let (qa, qb) = (bd / bn, ad / an);
            if qa != qb {
                return qa.cmp(&qb);
            }
            (an, ad, bn, bd) = (bd % bn, bn, ad % an, an);
        }
    }

    /// Whether the values are equal (`12/14` equals `6/7`). Never actually fails.
    #[inline]
    pub fn eq(&self, other: &Num) -> Result<bool, NumError> {
        if self.d == other.d {
            return Ok(self.n == other.n);
        }
        match (self.n.checked_mul(other.d), other.n.checked_mul(self.d)) {
            (Some(l), Some(r)) => Ok(l == r),
            _ => {
                let (a, b) = (self.reduced(), other.reduced());
                Ok(a.n == b.n && a.d == b.d)
            }
        }
    }

    /// The same value in lowest terms.
    #[inline]
    pub fn reduced(self) -> Num {
        let g = gcd(self.n.unsigned_abs(), self.d.unsigned_abs());
        // g divides d > 0, so 1 <= g <= i128::MAX.
        match i128::try_from(g) {
            Ok(g) if g > 1 => Num { n: self.n / g, d: self.d / g },
            _ => self,
        }
    }

    /// The numerator and denominator as stored (not reduced; the denominator is positive).
    #[inline]
    pub(crate) fn parts(&self) -> (i128, i128) {
        (self.n, self.d)
    }

    /// Numerator of the value in lowest terms (carries the sign).
    #[inline]
    pub fn numer(&self) -> i128 {
        self.reduced().n
    }

    /// Denominator of the value in lowest terms (always positive).
    #[inline]
    pub fn denom(&self) -> i128 {
        self.reduced().d
    }

    /// Whether the value is 0.
    #[inline]
    pub fn is_zero(&self) -> bool {
        self.n == 0
    }

    /// Whether the value is below 0.
    #[inline]
    pub fn is_negative(&self) -> bool {
        self.n < 0
    }

    /// Whether the value is a whole number.
    #[inline]
    pub fn is_integer(&self) -> bool {
        self.n.rem_euclid(self.d) == 0
    }

    /// The value as an `i64`, if it is a whole number in range.
    #[inline]
    pub fn to_i64(&self) -> Option<i64> {
        if self.is_integer() { i64::try_from(self.n.div_euclid(self.d)).ok() } else { None }
    }

    /// Rounds to `places` decimal places with the given mode, exactly.
    ///
    /// Computes `self * 10^places` as an integer quotient and remainder once and
    /// decides from the remainder; there is no intermediate decimal. The result has
    /// denominator `10^places`, so `places > 38` is [`NumError::Overflow`].
    #[inline]
    pub fn round(self, places: u32, mode: Rounding) -> Result<Num, NumError> {
        let scale = 10i128.checked_pow(places).ok_or(NumError::Overflow)?;
        let (q, r) = match self.n.checked_mul(scale) {
            // Floor quotient and remainder 0 <= r < d.
            Some(m) => (m.div_euclid(self.d), m.rem_euclid(self.d)),
            None => self.scaled_divmod(places, scale)?,
        };
        if r == 0 {
            return Ok(Num { n: q, d: scale });
        }
        // 2r vs d, written so that it cannot overflow.
        let up = mode.rounds_up(self.n < 0, r.cmp(&(self.d - r)), q % 2 != 0);
        let n = if up { q.checked_add(1) } else { Some(q) };
        n.map(|n| Num { n, d: scale }).ok_or(NumError::Overflow)
    }

    /// Floor quotient and remainder of `n * 10^places / d` when `n * 10^places`
    /// overflows: whole part times `scale` plus the fraction's digits.
    #[cold]
    #[inline(never)]
    fn scaled_divmod(self, places: u32, scale: i128) -> Result<(i128, i128), NumError> {
        let whole = self.n.div_euclid(self.d);
        let d = self.d.unsigned_abs();
        let mut r = self.n.rem_euclid(self.d).unsigned_abs();
        let mut frac = 0i128;
        for _ in 0..places {
            let (digit, rest) = next_digit(r, d);
            frac = frac * 10 + i128::from(digit); // < 10^places = scale
            r = rest;
        }
        let q = whole.checked_mul(scale).and_then(|w| w.checked_add(frac)).ok_or(NumError::Overflow)?;
        let r = i128::try_from(r).map_err(|_| NumError::Overflow)?;
        Ok((q, r))
    }

    /// The largest integer not above the value.
    #[inline]
    pub fn floor(self) -> Num {
        Num { n: self.n.div_euclid(self.d), d: 1 }
    }

    /// The smallest integer not below the value.
    #[inline]
    pub fn ceil(self) -> Num {
        let q = self.n.div_euclid(self.d);
        // A non-zero remainder implies d >= 2, so q <= i128::MAX / 2 and q + 1 fits.
        let n = if self.n.rem_euclid(self.d) == 0 { q } else { q + 1 };
        Num { n, d: 1 }
    }

    /// The exact decimal text ("0.75", "90", "-1.5") if the value has a terminating
    /// decimal expansion (its reduced denominator has no prime factors but 2 and 5);
    /// `None` otherwise. No exponent and no trailing zeros.
    pub fn to_decimal_string(&self) -> Option<String> {
        let r = self.reduced();
        let d = r.d.unsigned_abs();
        let mut rest = d >> d.trailing_zeros();
        while rest.is_multiple_of(5) {
            rest /= 5;
        }
        if rest != 1 {
            return None;
        }
        let n = r.n.unsigned_abs();
        let mut out = String::new();
        if r.n < 0 {
            out.push('-');
        }
        out.push_str(&(n / d).to_string());
        let mut rem = n % d;
        if rem != 0 {
            out.push('.');
            // Terminates after at most max(twos, fives) <= 127 digits.
            while rem != 0 {
                let (digit, next) = next_digit(rem, d);
                out.push(char::from(b'0' + digit));
                rem = next;
            }
        }
        Some(out)
    }

    /// The value rounded half-up (away from zero) to exactly `places` decimal places:
    /// 89.995 -> "90.00", 84 -> "84.00", -0.005 -> "-0.01"; no "-" on a zero result.
    ///
    /// Never overflows: the digits come from long division.
    pub fn to_fixed(&self, places: u32) -> String {
        let n = self.n.unsigned_abs();
        let d = self.d.unsigned_abs();
        let mut int = (n / d).to_string().into_bytes();
        let mut rem = n % d;
        let mut frac = Vec::with_capacity(usize::try_from(places).unwrap_or(0));
        for _ in 0..places {
            let (digit, next) = next_digit(rem, d);
            frac.push(b'0' + digit);
            rem = next;
        }
        // Half-up on the magnitude: round up when 2 * rem >= d.
        if rem != 0 && rem >= d - rem {
            let mut carry = true;
            for b in frac.iter_mut().rev().chain(int.iter_mut().rev()) {
                if *b == b'9' {
                    *b = b'0';
                } else {
                    *b += 1;
                    carry = false;
                    break;
                }
            }
            if carry {
                int.insert(0, b'1');
            }
        }
        let nonzero = int.iter().chain(frac.iter()).any(|&b| b != b'0');
        let mut out = String::with_capacity(int.len() + frac.len() + 2);
        if self.n < 0 && nonzero {
            out.push('-');
        }
        push_ascii(&mut out, &int);
        if places > 0 {
            out.push('.');
            push_ascii(&mut out, &frac);
        }
        out
    }
}

impl fmt::Display for Num {
    /// Exact decimal when it terminates, else `"6/7 (≈0.857143)"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_decimal_string() {
            Some(text) => f.pad(&text),
            None => {
                let r = self.reduced();
                f.pad(&format!("{}/{} (≈{})", r.n, r.d, r.to_fixed(6)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[track_caller]
    #[allow(clippy::expect_used, reason = "test helper; failing is failing the test")]
    fn num(text: &str) -> Num {
        Num::parse_decimal(text).expect("test input parses")
    }

    #[track_caller]
    #[allow(clippy::expect_used, reason = "test helper; failing is failing the test")]
    fn ratio(n: i128, d: i128) -> Num {
        Num::from_ratio(n, d).expect("test ratio is valid")
    }

    fn same(a: Num, b: Num) -> bool {
        a.eq(&b) == Ok(true)
    }

    #[track_caller]
    fn assert_same(a: Num, b: Num) {
        assert!(same(a, b), "{a} != {b} ({a:?} vs {b:?})");
    }

    #[track_caller]
    #[allow(clippy::expect_used, reason = "test helper; failing is failing the test")]
    fn ok(r: Result<Num, NumError>) -> Num {
        r.expect("no overflow")
    }

    /// REGULATION case 15: A = 14, q = 13.5/A, c = 13.125/A, p = 13.5/A,
    /// task = 70 * (q + c + p) / 3 = 66.875, final = task + 23.12 = 89.995 -> 90.00.
    #[test]
    fn regulation_case_15() {
        let a = Num::from_int(14);
        let q = ok(num("13.5").div(a));
        let c = ok(num("13.125").div(a));
        let p = ok(num("13.5").div(a));
        let sum = ok(ok(q.add(c)).add(p));
        let task = ok(ok(Num::from_int(70).mul(sum)).div(Num::from_int(3)));
        assert_same(task, num("66.875"));
        assert_eq!(task.to_decimal_string().as_deref(), Some("66.875"));
        let total = ok(task.add(num("23.12")));
        assert_same(total, num("89.995"));
        assert_eq!(total.to_string(), "89.995");
        let rounded = ok(total.round(2, Rounding::HalfUp));
        assert_eq!(rounded.to_fixed(2), "90.00");
        assert_eq!(total.to_fixed(2), "90.00");

        // Every grouping is exact, including those that trip a 28-digit decimal.
        let seventy = Num::from_int(70);
        let three = Num::from_int(3);
        let t2 = ok(ok(sum.div(three)).mul(seventy));
        let t3 = ok(ok(seventy.div(three)).mul(sum));
        assert_same(t2, task);
        assert_same(t3, task);
    }

    /// Rounds to `sig` significant digits, half-even, like a decimal context
    /// (e.g. Python's `decimal` with its default precision of 28).
    fn decimal_context(x: Num, sig: u32) -> Num {
        if x.is_zero() {
            return x;
        }
        let abs = if x.is_negative() { ok(x.neg()) } else { x };
        // Smallest k with |x| < 10^k; then keep sig - k places.
        let mut k: i64 = 0;
        let ten = Num::from_int(10);
        let mut power = Num::ONE; // 10^k
        while abs.cmp(&power) != Ok(Ordering::Less) {
            power = ok(power.mul(ten));
            k += 1;
        }
        loop {
            let lower = ok(power.div(ten));
            if abs.cmp(&lower) == Ok(Ordering::Less) {
                power = lower;
                k -= 1;
            } else {
                break;
            }
        }
        let places = u32::try_from(i64::from(sig) - k).unwrap_or(0);
        ok(x.round(places, Rounding::HalfEven))
    }

    #[test]
    fn regulation_case_15_with_28_digit_decimal() {
        let ctx = |x: Result<Num, NumError>| decimal_context(ok(x), 28);
        let a = Num::from_int(14);
        let q = ctx(num("13.5").div(a));
        assert_eq!(q.to_string(), "0.9642857142857142857142857143");
        let c = ctx(num("13.125").div(a));
        let p = q;
        let sum = ctx(ctx(q.add(c)).add(p));
        // (q + c + p) / 3 * 70 in 28 digits lands below the tie ...
        let task = ctx(ctx(sum.div(Num::from_int(3))).mul(Num::from_int(70)));
        assert_eq!(task.to_string(), "66.87499999999999999999999999");
        let total = ctx(task.add(num("23.12")));
        // ... so the score rounds to 89.99 instead of 90.00.
        assert_eq!(total.to_fixed(2), "89.99");
    }

    #[test]
    fn sums_of_decimals_keep_small_denominators() {
        // The shape of R-SCORE-2: units × max(0, 1 − 0.25 × failures), summed over many tasks.
        let quarter = num("0.25");
        let mut sum = Num::ZERO;
        for i in 0..200i64 {
            let units = if i % 3 == 0 { num("1.5") } else { Num::ONE };
            let factor = ok(Num::ONE.sub(ok(quarter.mul(Num::from_int(i % 5)))));
            let factor = if factor.is_negative() { Num::ZERO } else { factor };
            sum = ok(sum.add(ok(units.mul(factor))));
            // The stored denominator, not the reduced one: it must not grow from step to step.
            assert!(sum.d <= 8, "step {i}: {}/{}", sum.n, sum.d);
        }
        // 67 tasks of 1.5 units and 133 of 1, with factors 1, 0.75, 0.5, 0.25, 0 in turn.
        // In eighths: units (3/2 or 1) × factor (k/4) is 3k/8 or 2k/8.
        let eighths: i128 = (0..200i128).map(|i| if i % 3 == 0 { 3 } else { 2 } * (4 - i % 5)).sum();
        assert_same(sum, ratio(eighths, 8));
        assert_eq!(ok(Num::ONE.sub(ok(quarter.mul(Num::ZERO)))).d, 1, "1 − 0 is 1/1, not 4/4");
    }

    #[test]
    fn equality_ignores_representation() {
        let a = ratio(12, 14);
        let b = ratio(6, 7);
        assert_eq!(a.eq(&b), Ok(true));
        assert_eq!(a.cmp(&b), Ok(Ordering::Equal));
        assert_eq!(a.numer(), 6);
        assert_eq!(a.denom(), 7);
        assert_eq!(ratio(-12, 14).eq(&ratio(6, -7)), Ok(true));
        assert_eq!(ratio(12, 14).eq(&ratio(5, 7)), Ok(false));
        assert_eq!(ratio(0, 5).eq(&Num::ZERO), Ok(true));
        assert_eq!(ratio(0, 5).denom(), 1);
    }

    #[test]
    fn constructors() {
        assert_eq!(Num::from_ratio(1, 0).err(), Some(NumError::DivisionByZero));
        let x = ratio(3, -6);
        assert!(x.is_negative());
        assert_eq!((x.numer(), x.denom()), (-1, 2));
        // The sign of i128::MIN / -2 can only move after reduction.
        let y = ratio(i128::MIN, -2);
        assert_eq!((y.numer(), y.denom()), (1i128 << 126, 1));
        assert_eq!(Num::from_ratio(i128::MIN, -1).err(), Some(NumError::Overflow));
        assert_eq!(Num::from_ratio(i128::MIN, -3).err(), Some(NumError::Overflow));
        assert_eq!(Num::from_int(i64::MIN).to_i64(), Some(i64::MIN));
        assert!(Num::ONE.is_integer() && !Num::ONE.is_zero() && Num::ZERO.is_zero());
    }

    #[test]
    fn parse_accepts() {
        let cases: &[(&str, i128, i128)] = &[
            ("0", 0, 1),
            ("-0", 0, 1),
            ("+0.000", 0, 1),
            ("100", 100, 1),
            ("007", 7, 1),
            ("62.99", 6299, 100),
            ("-0.25", -1, 4),
            ("+1.50", 3, 2),
            ("1e3", 1000, 1),
            ("1E+3", 1000, 1),
            ("1.5E-2", 3, 200),
            ("12.5e1", 125, 1),
            ("0e999999999999999999999", 0, 1),
            ("-1e-38", -1, 10i128.pow(38)),
            ("-0.00000000000000000000000000000000000001", -1, 10i128.pow(38)),
            ("170141183460469231731687303715884105727", i128::MAX, 1),
            ("-170141183460469231731687303715884105728", i128::MIN, 1),
            ("1700000000000000000000000000000000000000e-1", 17 * 10i128.pow(37), 1),
            // 2^-39 needs 10^39 before cancelling factors of 5.
            ("0.000000000001818989403545856475830078125", 1, 1 << 39),
        ];
        for &(text, n, d) in cases {
            let x = num(text);
            assert_eq!((x.numer(), x.denom()), (n, d), "{text}");
        }
    }

    #[test]
    fn parse_rejects() {
        use NumParseError::{Invalid, TooManyDigits};
        let cases: &[(&str, NumParseError)] = &[
            ("", Invalid),
            (" ", Invalid),
            (" 1", Invalid),
            ("1 ", Invalid),
            ("-", Invalid),
            ("+", Invalid),
            ("--1", Invalid),
            ("+-1", Invalid),
            (".5", Invalid),
            ("1.", Invalid),
            ("1.e3", Invalid),
            ("1e", Invalid),
            ("1e+", Invalid),
            ("e5", Invalid),
            ("1_000", Invalid),
            ("1,5", Invalid),
            ("0x10", Invalid),
            ("inf", Invalid),
            ("NaN", Invalid),
            ("1/2", Invalid),
            ("١", Invalid),
            ("170141183460469231731687303715884105728", TooManyDigits),
            ("1234567890123456789012345678901234567890", TooManyDigits),
            ("1e39", TooManyDigits),
            ("1e-39", TooManyDigits),
            ("1e99999999999999999999999", TooManyDigits),
            ("1e-99999999999999999999999", TooManyDigits),
        ];
        for &(text, want) in cases {
            assert_eq!(Num::parse_decimal(text).err(), Some(want), "{text:?}");
        }
        assert_eq!(Invalid.to_string(), "not a decimal number");
        assert_eq!(TooManyDigits.to_string(), "too many digits");
    }

    #[test]
    fn display_and_decimal_strings() {
        assert_eq!(ratio(3, 4).to_decimal_string().as_deref(), Some("0.75"));
        assert_eq!(ratio(900, 10).to_decimal_string().as_deref(), Some("90"));
        assert_eq!(ratio(-3, 2).to_decimal_string().as_deref(), Some("-1.5"));
        assert_eq!(ratio(-1, 8).to_decimal_string().as_deref(), Some("-0.125"));
        assert_eq!(ratio(6, 7).to_decimal_string(), None);
        assert_eq!(ratio(1, 3).to_string(), "1/3 (≈0.333333)");
        assert_eq!(ratio(12, 14).to_string(), "6/7 (≈0.857143)");
        assert_eq!(ratio(-2, 3).to_string(), "-2/3 (≈-0.666667)");
        assert_eq!(ratio(1, 3_000_000_000).to_string(), "1/3000000000 (≈0.000000)");
        assert_eq!(Num::ZERO.to_string(), "0");
        assert_eq!(format!("{:>6}", ratio(3, 2)), "   1.5");
        let tiny = ratio(1, 1 << 126);
        let text = tiny.to_string();
        assert!(text.starts_with("0.0000000000000000000000000000000000000117549435"));
        assert!(text.ends_with('5'));
        assert_eq!(text.len(), 128);
    }

    #[test]
    fn fixed() {
        assert_eq!(num("89.995").to_fixed(2), "90.00");
        assert_eq!(num("84").to_fixed(2), "84.00");
        assert_eq!(num("-0.005").to_fixed(2), "-0.01");
        assert_eq!(num("-0.004").to_fixed(2), "0.00");
        assert_eq!(num("89.5").to_fixed(0), "90");
        assert_eq!(num("99.999").to_fixed(2), "100.00");
        assert_eq!(num("-9.96").to_fixed(1), "-10.0");
        assert_eq!(ratio(2, 3).to_fixed(3), "0.667");
        assert_eq!(ratio(i128::MAX, i128::MAX - 1).to_fixed(40), "1.0000000000000000000000000000000000000059");
    }

    #[test]
    fn rounding_modes() {
        use Rounding::*;
        let cases: &[(&str, u32, [&str; 6])] = &[
            // value, places, [HalfUp, HalfEven, Down, Up, Floor, Ceiling]
            ("2.5", 0, ["3", "2", "2", "3", "2", "3"]),
            ("-2.5", 0, ["-3", "-2", "-2", "-3", "-3", "-2"]),
            ("3.5", 0, ["4", "4", "3", "4", "3", "4"]),
            ("-3.5", 0, ["-4", "-4", "-3", "-4", "-4", "-3"]),
            ("-2.4", 0, ["-2", "-2", "-2", "-3", "-3", "-2"]),
            ("-2.6", 0, ["-3", "-3", "-2", "-3", "-3", "-2"]),
            ("1.005", 2, ["1.01", "1", "1", "1.01", "1", "1.01"]),
            ("-1.005", 2, ["-1.01", "-1", "-1", "-1.01", "-1.01", "-1"]),
            ("-0.125", 2, ["-0.13", "-0.12", "-0.12", "-0.13", "-0.13", "-0.12"]),
            ("7", 3, ["7", "7", "7", "7", "7", "7"]),
        ];
        let modes = [HalfUp, HalfEven, Down, Up, Floor, Ceiling];
        for &(text, places, want) in cases {
            for (mode, want) in modes.into_iter().zip(want) {
                let got = ok(num(text).round(places, mode));
                assert_same(got, num(want));
            }
        }
        assert_same(ok(ratio(2, 3).round(4, HalfUp)), num("0.6667"));
        assert_same(num("-2.5").floor(), Num::from_int(-3));
        assert_same(num("-2.5").ceil(), Num::from_int(-2));
        assert_same(num("2").ceil(), Num::from_int(2));
        assert_same(ok(ratio(i128::MAX, 2).round(0, HalfUp)), ratio(i128::MAX / 2 + 1, 1));
        assert_eq!(Num::ONE.round(39, HalfUp).err(), Some(NumError::Overflow));
        // n * 10^places overflows but the rounded value fits.
        let big = ratio(i128::MAX - 1, 3 * 10i128.pow(30));
        let r = ok(big.round(6, HalfUp));
        assert_eq!(r.to_fixed(6), big.to_fixed(6));
        assert_eq!(ratio(i128::MAX, 1).round(1, HalfUp).err(), Some(NumError::Overflow));
    }

    #[test]
    fn errors_not_panics() {
        let huge = ratio(i128::MAX, 1);
        assert_eq!(huge.mul(huge).err(), Some(NumError::Overflow));
        assert_eq!(huge.add(Num::ONE).err(), Some(NumError::Overflow));
        assert_eq!(ratio(i128::MIN, 1).sub(Num::ONE).err(), Some(NumError::Overflow));
        assert_eq!(ratio(i128::MIN, 1).neg().err(), Some(NumError::Overflow));
        assert_same(ok(ratio(i128::MIN, 2).neg()), ratio(1 << 126, 1));
        assert_eq!(ratio(1, i128::MAX).mul(ratio(1, 2)).err(), Some(NumError::Overflow));
        assert_eq!(Num::ONE.div(Num::ZERO).err(), Some(NumError::DivisionByZero));
        assert_eq!(Num::ZERO.div(ratio(0, 7)).err(), Some(NumError::DivisionByZero));
        assert_eq!(huge.div(ratio(1, 2)).err(), Some(NumError::Overflow));
        assert_eq!(NumError::Overflow.to_string(), "arithmetic overflow");
        assert_eq!(NumError::DivisionByZero.to_string(), "division by zero");
        // Overflow in the fast path, recovered by reducing.
        let a = ratio(i128::MAX / 7 * 7, 7 * 7);
        assert_same(ok(a.mul(ratio(7, 1))), ratio(i128::MAX / 7, 1));
        let third = ratio(10i128.pow(37), 3 * 10i128.pow(37));
        assert_same(ok(third.add(ratio(1, 6))), ratio(1, 2));
        assert_same(ok(ratio(i128::MIN, 3).div(ratio(i128::MIN, 5))), ratio(5, 3));
        // 1 / (3 * 2^127) has no i128 denominator.
        assert_eq!(ratio(-1, 3).div(ratio(i128::MIN, 1)).err(), Some(NumError::Overflow));
    }

    #[test]
    fn comparison_without_overflow() {
        let a = ratio(i128::MAX, i128::MAX - 1);
        let b = ratio(i128::MAX - 1, i128::MAX - 2);
        // a = 1 + 1/(M-1) < b = 1 + 1/(M-2)
        assert_eq!(a.cmp(&b), Ok(Ordering::Less));
        assert_eq!(b.cmp(&a), Ok(Ordering::Greater));
        assert_eq!(a.eq(&b), Ok(false));
        let c = ratio(-(i128::MAX - 1), i128::MAX);
        let d = ratio(-(i128::MAX - 2), i128::MAX - 1);
        assert_eq!(c.cmp(&d), Ok(Ordering::Less));
        assert_eq!(ratio(i128::MIN, 3).cmp(&ratio(i128::MIN, 5)), Ok(Ordering::Less));
        assert_eq!(ratio(-1, 2).cmp(&ratio(1, 3)), Ok(Ordering::Less));
    }

    fn small() -> impl Strategy<Value = i64> {
        -1_000_000i64..=1_000_000
    }

    /// Fractions with moderate numerators and denominators.
    fn frac() -> impl Strategy<Value = Num> {
        (-1_000_000_000i128..=1_000_000_000, 1i128..=1_000_000).prop_map(|(n, d)| Num { n, d })
    }

    /// Any valid fraction, to exercise the overflow paths.
    fn any_num() -> impl Strategy<Value = Num> {
        prop_oneof![
            frac(),
            (any::<i128>(), 1i128..=i128::MAX).prop_map(|(n, d)| Num { n, d }),
            (any::<i64>(), 1i128..=1_000_000).prop_map(|(n, d)| Num { n: i128::from(n), d }),
        ]
    }

    fn rounding() -> impl Strategy<Value = Rounding> {
        prop_oneof![
            Just(Rounding::HalfUp),
            Just(Rounding::HalfEven),
            Just(Rounding::Down),
            Just(Rounding::Up),
            Just(Rounding::Floor),
            Just(Rounding::Ceiling),
        ]
    }

    proptest! {
        #[test]
        fn arithmetic_with_an_integer_agrees(a in frac(), i in small()) {
            // Against plain cross-multiplication, both operand orders (the integer fast paths).
            let int = Num::from_int(i);
            let (n, d, i) = (a.n, a.d, i128::from(i));
            prop_assert!(ok(a.add(int)).eq(&ratio(n + i * d, d)).unwrap_or(false));
            prop_assert!(ok(int.add(a)).eq(&ratio(i * d + n, d)).unwrap_or(false));
            prop_assert!(ok(a.sub(int)).eq(&ratio(n - i * d, d)).unwrap_or(false));
            prop_assert!(ok(int.sub(a)).eq(&ratio(i * d - n, d)).unwrap_or(false));
        }

        #[test]
        fn halving_keeps_the_value(n in any::<i64>(), d in 1i64..i64::MAX, shift in 0u32..60) {
            let x = Num { n: i128::from(n) << shift, d: i128::from(d) << shift };
            let h = x.halved();
            prop_assert!(x.eq(&h).unwrap_or(false));
            prop_assert!(h.d > 0 && (h.d & 1 == 1 || h.n & 1 == 1));
        }

        #[test]
        fn integer_arithmetic_agrees(a in small(), b in small()) {
            let (x, y) = (Num::from_int(a), Num::from_int(b));
            let (a, b) = (i128::from(a), i128::from(b));
            prop_assert_eq!(x.add(y).map(|r| r.numer()), Ok(a + b));
            prop_assert_eq!(x.sub(y).map(|r| r.numer()), Ok(a - b));
            prop_assert_eq!(x.mul(y).map(|r| r.numer()), Ok(a * b));
            if b == 0 {
                prop_assert_eq!(x.div(y).err(), Some(NumError::DivisionByZero));
            } else {
                let q = ok(x.div(y));
                prop_assert!(q.denom() > 0);
                prop_assert!(same(q, ratio(a, b)));
                prop_assert_eq!(q.is_integer(), a % b == 0);
                if a % b == 0 {
                    prop_assert_eq!(q.to_i64(), i64::try_from(a / b).ok());
                }
            }
            prop_assert_eq!(x.cmp(&y), Ok(a.cmp(&b)));
        }

        #[test]
        fn div_then_mul_round_trips(a in any_num(), b in any_num()) {
            if b.is_zero() {
                prop_assert_eq!(a.div(b).err(), Some(NumError::DivisionByZero));
            } else if let Ok(q) = a.div(b) {
                prop_assert!(q.d > 0);
                if let Ok(back) = q.mul(b) {
                    prop_assert!(same(back, a), "{:?} / {:?} * b = {:?}", a, b, back);
                }
            }
        }

        #[test]
        fn small_fractions_never_overflow(a in frac(), b in frac()) {
            let s = ok(a.add(b));
            prop_assert!(same(ok(s.sub(b)), a));
            let p = ok(a.mul(b));
            if !b.is_zero() {
                prop_assert!(same(ok(p.div(b)), a));
            }
            prop_assert!(same(ok(ok(a.neg()).neg()), a));
            prop_assert!(same(ok(a.sub(b)), ok(ok(b.sub(a)).neg())));
        }

        #[test]
        fn results_keep_positive_denominator(a in any_num(), b in any_num()) {
            for r in [a.add(b), a.sub(b), a.mul(b), a.div(b), a.neg()].into_iter().flatten() {
                prop_assert!(r.d > 0);
            }
        }

        #[test]
        fn round_is_idempotent(x in any_num(), places in 0u32..8, mode in rounding()) {
            if let Ok(r) = x.round(places, mode) {
                prop_assert!(same(ok(r.round(places, mode)), r));
                // The result lies within one unit of the last place.
                let ulp = ratio(1, 10i128.pow(places));
                if let Ok(diff) = r.sub(x) {
                    prop_assert_eq!(diff.cmp(&ulp), Ok(Ordering::Less));
                    prop_assert_eq!(ok(diff.neg()).cmp(&ulp), Ok(Ordering::Less));
                }
            }
        }

        #[test]
        fn round_matches_scaled_integer_division(x in frac(), places in 0u32..6) {
            // Reference: floor/ceil by i128 division on the scaled numerator.
            let scale = 10i128.pow(places);
            let m = x.n * scale;
            let floor = m.div_euclid(x.d);
            let ceil = if m.rem_euclid(x.d) == 0 { floor } else { floor + 1 };
            let at = |n: i128| ratio(n, scale);
            prop_assert!(same(ok(x.round(places, Rounding::Floor)), at(floor)));
            prop_assert!(same(ok(x.round(places, Rounding::Ceiling)), at(ceil)));
            let toward_zero = if m < 0 { ceil } else { floor };
            prop_assert!(same(ok(x.round(places, Rounding::Down)), at(toward_zero)));
            // Half-up against 2r vs d on the magnitude.
            let (am, r) = (m.abs() / x.d, m.abs() % x.d);
            let half_up = if 2 * r >= x.d { am + 1 } else { am };
            prop_assert!(same(ok(x.round(places, Rounding::HalfUp)), at(m.signum() * half_up)));
        }

        #[test]
        fn decimal_string_round_trips(n in any::<i64>(), twos in 0u32..40, fives in 0u32..17) {
            let d = (1i128 << twos) * 5i128.pow(fives);
            let x = ratio(i128::from(n), d);
            let text = x.to_decimal_string();
            prop_assert!(text.is_some());
            let text = text.unwrap_or_default();
            prop_assert!(!text.contains('e'));
            prop_assert!(!(text.contains('.') && text.ends_with('0')));
            prop_assert_eq!(x.to_string(), text.clone());
            if let Ok(back) = Num::parse_decimal(&text) {
                prop_assert!(same(back, x), "{} -> {:?}", text, back);
            } else {
                // Only when the significant digits exceed an i128.
                prop_assert!(text.len() > 38);
            }
        }

        #[test]
        fn decimal_string_round_trips_any(x in any_num()) {
            match x.to_decimal_string() {
                Some(text) => {
                    if let Ok(back) = Num::parse_decimal(&text) {
                        prop_assert!(same(back, x));
                    }
                }
                None => prop_assert!(x.to_string().contains('≈')),
            }
        }

        #[test]
        fn cmp_is_antisymmetric(a in any_num(), b in any_num()) {
            let ab = a.cmp(&b);
            let ba = b.cmp(&a);
            prop_assert!(ab.is_ok());
            prop_assert_eq!(ab.map(Ordering::reverse), ba);
            prop_assert_eq!(a.cmp(&a), Ok(Ordering::Equal));
            prop_assert_eq!(a.eq(&b), ab.map(|o| o == Ordering::Equal));
        }

        #[test]
        fn cmp_euclid_matches_cross_multiplication(a in frac(), b in frac()) {
            let want = (a.n * b.d).cmp(&(b.n * a.d));
            prop_assert_eq!(Num::cmp_euclid(a, b), want);
            prop_assert_eq!(a.cmp(&b), Ok(want));
        }

        #[test]
        fn cmp_agrees_with_subtraction(a in any_num(), b in any_num()) {
            if let Ok(diff) = a.sub(b) {
                let sign = if diff.is_zero() {
                    Ordering::Equal
                } else if diff.is_negative() {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
                prop_assert_eq!(a.cmp(&b), Ok(sign));
            }
        }

        #[test]
        fn to_fixed_matches_round_then_print(x in any_num(), places in 0u32..8) {
            let text = x.to_fixed(places);
            let dot = text.find('.');
            prop_assert_eq!(dot.map(|i| text.len() - i - 1).unwrap_or(0), places as usize);
            if let Ok(r) = x.round(places, Rounding::HalfUp) {
                prop_assert!(same(num(&text), r), "{} vs {}", text, r);
                prop_assert_eq!(r.to_fixed(places), text.clone());
                // The rounded value prints the same, padded with zeros.
                let exact = r.to_decimal_string().unwrap_or_default();
                prop_assert!(text.trim_start_matches('-').starts_with(exact.trim_start_matches('-')));
            }
        }

        #[test]
        fn floor_and_ceil_bracket(x in any_num()) {
            let (f, c) = (x.floor(), x.ceil());
            prop_assert!(f.is_integer() && c.is_integer());
            prop_assert!(f.cmp(&x) != Ok(Ordering::Greater));
            prop_assert!(c.cmp(&x) != Ok(Ordering::Less));
            prop_assert_eq!(f.eq(&c), Ok(x.is_integer()));
        }
    }
}
