//! An exact calculator: arithmetic on rational numbers, parsed by hand (no code is ever
//! evaluated). `0.1 + 0.2` is `0.3`, `1/3 * 3` is `1`; a result too large for 128-bit parts
//! is an error, never a rounded answer.

use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::tool::{ToolError, TypedTool};

/// The calculator tool.
#[derive(Debug, Clone, Copy, Default)]
pub struct Calculator;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalculatorArgs {
    /// An arithmetic expression with numbers, + - * / % ^ and parentheses, e.g. "(12.5 + 7) * 3".
    pub expression: String,
}

impl TypedTool for Calculator {
    type Args = CalculatorArgs;

    fn name(&self) -> String {
        "calculator".into()
    }

    fn description(&self) -> String {
        "Evaluates an arithmetic expression exactly: numbers (decimals allowed), + - * / \
         % (remainder) ^ (whole-number powers) and parentheses."
            .into()
    }

    fn run(&self, args: CalculatorArgs) -> Result<String, ToolError> {
        evaluate(&args.expression)
            .map(|r| r.to_string())
            .map_err(ToolError::Failed)
    }
}

/// A rational number in lowest terms with a positive denominator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    num: i128,
    den: i128,
}

const OVERFLOW: &str = "the result is too large to compute exactly";

impl Ratio {
    pub fn new(num: i128, den: i128) -> Result<Self, String> {
        if den == 0 {
            return Err("division by zero".into());
        }
        let g = gcd(num, den);
        let (mut num, mut den) = (num / g, den / g);
        if den < 0 {
            num = num.checked_neg().ok_or(OVERFLOW)?;
            den = den.checked_neg().ok_or(OVERFLOW)?;
        }
        Ok(Self { num, den })
    }

    pub fn integer(n: i128) -> Self {
        Self { num: n, den: 1 }
    }

    pub fn numerator(&self) -> i128 {
        self.num
    }

    pub fn denominator(&self) -> i128 {
        self.den
    }

    fn add(self, o: Self) -> Result<Self, String> {
        // Over the least common denominator, so that sums of like fractions stay small.
        let g = gcd(self.den, o.den);
        let (a, b) = (self.den / g, o.den / g);
        let num = self
            .num
            .checked_mul(b)
            .zip(o.num.checked_mul(a))
            .and_then(|(x, y)| x.checked_add(y))
            .ok_or(OVERFLOW)?;
        Self::new(num, self.den.checked_mul(b).ok_or(OVERFLOW)?)
    }

    fn neg(self) -> Result<Self, String> {
        Ok(Self {
            num: self.num.checked_neg().ok_or(OVERFLOW)?,
            den: self.den,
        })
    }

    fn mul(self, o: Self) -> Result<Self, String> {
        // Cancel across first: (a/b)(c/d) with gcd(a,d) and gcd(c,b) divided out.
        let g1 = gcd(self.num, o.den);
        let g2 = gcd(o.num, self.den);
        let num = (self.num / g1).checked_mul(o.num / g2).ok_or(OVERFLOW)?;
        let den = (self.den / g2).checked_mul(o.den / g1).ok_or(OVERFLOW)?;
        Self::new(num, den)
    }

    fn recip(self) -> Result<Self, String> {
        Self::new(self.den, self.num)
    }

    /// Remainder of floored division, as Python's `%`: the sign of the divisor.
    fn rem(self, o: Self) -> Result<Self, String> {
        if o.num == 0 {
            return Err("remainder of a division by zero".into());
        }
        let q = self.mul(o.recip()?)?;
        let floor = q.num.div_euclid(q.den);
        self.add(o.mul(Self::integer(floor))?.neg()?)
    }

    fn pow(self, e: Self) -> Result<Self, String> {
        if e.den != 1 {
            return Err(format!(
                "only whole-number powers are exact; {e} is not a whole number"
            ));
        }
        if e.num.unsigned_abs() > 4096 {
            return Err(OVERFLOW.into());
        }
        let base = if e.num < 0 { self.recip()? } else { self };
        let mut result = Self::integer(1);
        let mut square = base;
        let mut k = e.num.unsigned_abs();
        while k > 0 {
            if k & 1 == 1 {
                result = result.mul(square)?;
            }
            k >>= 1;
            if k > 0 {
                square = square.mul(square)?;
            }
        }
        Ok(result)
    }
}

fn gcd(a: i128, b: i128) -> i128 {
    let (mut a, mut b) = (a.unsigned_abs(), b.unsigned_abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    // gcd(0, 0) is taken as 1 so that 0/1 stays 0/1; a gcd never exceeds i128::MAX here
    // unless both inputs are i128::MIN, which no parsed number reaches.
    i128::try_from(a.max(1)).unwrap_or(1)
}

/// Integers as integers, terminating fractions as decimals (`0.125`), others as the
/// fraction with a 12-digit decimal beside it (`1/3 ≈ 0.333333333333`).
impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            return write!(f, "{}", self.num);
        }
        let mut d = self.den;
        while d % 2 == 0 {
            d /= 2;
        }
        while d % 5 == 0 {
            d /= 5;
        }
        if d == 1 {
            // Terminates: at most as many digits as the larger power of 2 or 5 in den.
            return f.write_str(&self.decimal(usize::MAX));
        }
        write!(f, "{}/{} ≈ {}", self.num, self.den, self.decimal(12))
    }
}

impl Ratio {
    /// The decimal expansion to at most `digits` places (truncated: the approximation is
    /// marked as one).
    fn decimal(&self, digits: usize) -> String {
        let sign = if self.num < 0 { "-" } else { "" };
        let n = self.num.unsigned_abs();
        let d = self.den.unsigned_abs();
        let mut out = format!("{sign}{}.", n / d);
        let mut rem = n % d;
        let mut places = 0;
        while rem != 0 && places < digits {
            let Some(r10) = rem.checked_mul(10) else {
                break;
            };
            out.push(char::from(b'0' + (r10 / d) as u8));
            rem = r10 % d;
            places += 1;
        }
        if out.ends_with('.') {
            out.push('0');
        }
        out
    }
}

/// Parses and evaluates `expression`. Errors say where and what is wrong.
pub fn evaluate(expression: &str) -> Result<Ratio, String> {
    let mut p = Parser {
        chars: expression.chars().collect(),
        pos: 0,
    };
    let value = p.expr()?;
    p.skip_space();
    if let Some(c) = p.peek() {
        return Err(format!("unexpected {c:?} at position {}", p.pos + 1));
    }
    Ok(value)
}

/// Recursive descent over: expr = term (("+"|"-") term)*; term = unary (("*"|"/"|"%")
/// unary | "(" ...)*; unary = ("-"|"+") unary | power; power = atom ("^" unary)?;
/// atom = number | "(" expr ")". As in mathematics, `-2^2` is -4 and `2^3^2` is 2^9.
struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn skip_space(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.chars.get(self.pos).copied()
    }

    /// The next operator, with the spellings models write (`×`, `÷`, `−`, `**`).
    fn operator(&mut self) -> Option<char> {
        let c = self.peek()?;
        let op = match c {
            '×' => '*',
            '÷' => '/',
            '−' => '-',
            '*' if self.chars.get(self.pos + 1) == Some(&'*') => '^',
            c => c,
        };
        Some(op)
    }

    fn take_operator(&mut self) {
        let double =
            self.chars.get(self.pos) == Some(&'*') && self.chars.get(self.pos + 1) == Some(&'*');
        self.pos += if double { 2 } else { 1 };
    }

    fn expr(&mut self) -> Result<Ratio, String> {
        let mut value = self.term()?;
        while let Some(op @ ('+' | '-')) = self.operator() {
            self.take_operator();
            let rhs = self.term()?;
            value = if op == '+' {
                value.add(rhs)?
            } else {
                value.add(rhs.neg()?)?
            };
        }
        Ok(value)
    }

    fn term(&mut self) -> Result<Ratio, String> {
        let mut value = self.unary()?;
        loop {
            match self.operator() {
                Some(op @ ('*' | '/' | '%')) => {
                    self.take_operator();
                    let rhs = self.unary()?;
                    value = match op {
                        '*' => value.mul(rhs)?,
                        '/' => value.mul(rhs.recip()?)?,
                        _ => value.rem(rhs)?,
                    };
                }
                // Implicit multiplication before a parenthesis: 2(3 + 4).
                Some('(') => value = value.mul(self.unary()?)?,
                _ => return Ok(value),
            }
        }
    }

    fn unary(&mut self) -> Result<Ratio, String> {
        match self.operator() {
            Some('-') => {
                self.take_operator();
                self.unary()?.neg()
            }
            Some('+') => {
                self.take_operator();
                self.unary()
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Result<Ratio, String> {
        let base = self.atom()?;
        if self.operator() == Some('^') {
            self.take_operator();
            let exponent = self.unary()?;
            return base.pow(exponent);
        }
        Ok(base)
    }

    fn atom(&mut self) -> Result<Ratio, String> {
        match self.peek() {
            Some('(') => {
                self.pos += 1;
                let value = self.expr()?;
                if self.peek() != Some(')') {
                    return Err(format!("missing ')' at position {}", self.pos + 1));
                }
                self.pos += 1;
                Ok(value)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => self.number(),
            Some(c) if c.is_alphabetic() || c == '_' => {
                // Small models write `apples * 2` or `read_file('a.txt') * 2`: say what to
                // do instead, not just where parsing stopped.
                let start = self.pos;
                let word: String = self.chars[start..]
                    .iter()
                    .take_while(|c| c.is_alphanumeric() || **c == '_')
                    .collect();
                Err(format!(
                    "'{word}' at position {} is not a number: the calculator knows no names \
                     or functions, so write the figures themselves",
                    start + 1
                ))
            }
            Some(c) => Err(format!("unexpected {c:?} at position {}", self.pos + 1)),
            None => Err("the expression ends where a number was expected".into()),
        }
    }

    /// Digits with an optional fraction and exponent (`1.5e3`), read exactly.
    fn number(&mut self) -> Result<Ratio, String> {
        let start = self.pos;
        let digits = |p: &mut Self| -> String {
            let mut s = String::new();
            while let Some(&c) = p.chars.get(p.pos) {
                if c.is_ascii_digit() {
                    s.push(c);
                } else if c != '_' {
                    break;
                }
                p.pos += 1;
            }
            s
        };
        let whole = digits(self);
        let mut fraction = String::new();
        if self.chars.get(self.pos) == Some(&'.') {
            self.pos += 1;
            fraction = digits(self);
        }
        if whole.is_empty() && fraction.is_empty() {
            return Err(format!("a lone '.' at position {}", start + 1));
        }
        let parse = |s: &str| -> Result<i128, String> {
            s.parse::<i128>().map_err(|_| OVERFLOW.to_string())
        };
        let mantissa = parse(&format!("{whole}{fraction}"))?;
        let mut value = Ratio::new(mantissa, ten_to(fraction.len())?)?;
        if matches!(self.chars.get(self.pos), Some('e' | 'E')) {
            let save = self.pos;
            self.pos += 1;
            let negative = match self.chars.get(self.pos) {
                Some('-') => {
                    self.pos += 1;
                    true
                }
                Some('+') => {
                    self.pos += 1;
                    false
                }
                _ => false,
            };
            let exp = digits(self);
            if exp.is_empty() {
                self.pos = save;
            } else {
                let scale = Ratio::integer(ten_to(parse(&exp)? as usize)?);
                value = if negative {
                    value.mul(scale.recip()?)?
                } else {
                    value.mul(scale)?
                };
            }
        }
        Ok(value)
    }
}

fn ten_to(k: usize) -> Result<i128, String> {
    10i128
        .checked_pow(u32::try_from(k).map_err(|_| OVERFLOW)?)
        .ok_or_else(|| OVERFLOW.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(s: &str) -> String {
        evaluate(s)
            .map(|r| r.to_string())
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn arithmetic_is_exact() {
        assert_eq!(eval("0.1 + 0.2"), "0.3");
        assert_eq!(eval("1/3 * 3"), "1");
        assert_eq!(eval("1/3 + 1/6"), "0.5");
        assert_eq!(eval("2/3"), "2/3 ≈ 0.666666666666");
        assert_eq!(eval("-7 / 8"), "-0.875");
        assert_eq!(eval("(12.5 + 7) * 3"), "58.5");
        assert_eq!(eval("2^10 - 24"), "1000");
        assert_eq!(eval("2**-2"), "0.25");
        assert_eq!(eval("-2^2"), "-4");
        assert_eq!(eval("2^3^2"), "512");
        assert_eq!(eval("7 % 3"), "1");
        assert_eq!(eval("-7 % 3"), "2");
        assert_eq!(eval("2(3 + 4)"), "14");
        assert_eq!(eval("1.5e3 + 2E-1"), "1500.2");
        assert_eq!(eval("3 × 4 ÷ 6 − 1"), "1");
        assert_eq!(eval("1_000_000 * 1_000_000"), "1000000000000");
        assert_eq!(
            eval("99999999999999999999 * 99999999999999999"),
            "9999999999999999899900000000000000001"
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        assert_eq!(eval("1 / 0"), "error: division by zero");
        assert_eq!(
            eval("2 ^ 0.5"),
            "error: only whole-number powers are exact; 0.5 is not a whole number"
        );
        assert_eq!(eval("(1 + 2"), "error: missing ')' at position 7");
        assert_eq!(
            eval("1 + "),
            "error: the expression ends where a number was expected"
        );
        assert_eq!(eval("2 3"), "error: unexpected '3' at position 3");
        assert_eq!(
            eval("import os"),
            "error: 'import' at position 1 is not a number: the calculator knows no names or \
             functions, so write the figures themselves"
        );
        assert!(eval("(apples + 2) * 3").starts_with("error: 'apples' at position 2 is not"));
        assert_eq!(eval("10^40"), format!("error: {OVERFLOW}"));
        assert_eq!(
            eval("170141183460469231731687303715884105727 + 1"),
            format!("error: {OVERFLOW}")
        );
    }
}
