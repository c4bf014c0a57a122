//! `$[...]` expressions, with Asterisk's operators and rules (ast_expr2.y).
//!
//! Lowest to highest precedence: `? ::` (conditional), `|`, `&`, comparisons `= == != < > <= >=`
//! and `~~` (concatenation), `+ -`, `* / %`, unary `-` and `!`, regex `:` (anchored) and `=~`,
//! parentheses. Operands are strings; where both sides of an arithmetic or comparison operator
//! are numbers the operation is numeric (floating point, printed without a fraction when whole),
//! otherwise comparisons compare strings. "True" is anything but the empty string and zero.
//! A quoted token (`"abc"`) is a string with its quotes, as ast_expr2.fl keeps it: it never
//! counts as a number, compares quotes and all, and is what `$["abc"]` gives.
//! `a : regex` (anchored) and `a =~ regex` are POSIX extended regular expressions, as
//! Asterisk compiles them (`REG_EXTENDED`): they return the first `(...)` group's text, or how
//! many characters matched. Arithmetic on a non-number follows ast_expr2.y: a warning, and
//! `x + 1` is `1`, `1 - x` is `1`, `x * 1` is `0`, `1 / x` and `1 / 0` are 2147483647
//! (`INT_MAX`), `1 % 0` is `0`; `!` reads a string's leading number (`!abc` is 1).
//! A syntax error gives an [`ExprError`]; the PBX then uses "" as Asterisk does, with a warning.
//! As in Asterisk, a regular expression with `-`, `(`, `)` or spaces must be quoted:
//! `$[${EXTEN} : "(1[0-9]*)"]`; unquoted, those are operators.
//!
//! The text often holds what a caller sent (`$[${CALLERID(num)} = 1]`), so nothing here costs
//! more than linear time or more than a bounded stack: nesting (parentheses, unary operators,
//! chained `?:`) past [`MAX_DEPTH`] is a syntax error, as ast_expr2's parser stack running out
//! ("memory exhausted") is in Asterisk.

use std::borrow::Cow;

use regex::Regex;

/// How deeply an expression may nest: parentheses, unary `-`/`!` and chained `?:` each
/// take a level (a parenthesis two). A level costs at most 425 bytes of stack in a release
/// build (measured: 20 unary minus 8,496 bytes, 20 parentheses 12,112), so 1,000 levels stay
/// inside 512 KiB, a quarter of the smallest stack the dialplan runs on (a tokio worker's or
/// a `spawn_blocking` thread's 2 MiB).
pub const MAX_DEPTH: usize = 1_000;

/// The part of an expression an error message shows: the whole text when short, otherwise
/// its start and its length (a caller may have sent 20,000 bytes of it).
pub(crate) fn excerpt(text: &str) -> String {
    const SHOWN: usize = 80;
    if text.len() <= SHOWN {
        return text.to_owned();
    }
    let mut end = SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExprError {
    /// The text does not parse; it holds an excerpt of the expression.
    #[error("syntax error in expression '{0}'")]
    Syntax(String),
    /// Nested deeper than [`MAX_DEPTH`]; it holds an excerpt of the expression.
    #[error("syntax error: nested deeper than {MAX_DEPTH} levels in expression '{0}'")]
    TooDeep(String),
    #[error("bad regular expression '{0}'")]
    Regex(String),
}

/// A token; values borrow the expression text (most are never copied).
#[derive(Clone, Debug, PartialEq)]
enum Token<'a> {
    Value(Cow<'a, str>),
    Op(&'static str),
}

type Value<'a> = Cow<'a, str>;

/// The operator starting at `i`, longest first (`::` before `:`, `<=` before `<`).
fn operator_at(bytes: &[u8], i: usize) -> Option<&'static str> {
    let next = bytes.get(i + 1).copied();
    Some(match (bytes[i], next) {
        (b':', Some(b':')) => "::",
        (b'=', Some(b'~')) => "=~",
        (b'~', Some(b'~')) => "~~",
        (b'=', Some(b'=')) => "==",
        (b'!', Some(b'=')) => "!=",
        (b'<', Some(b'=')) => "<=",
        (b'>', Some(b'=')) => ">=",
        (b'|', _) => "|",
        (b'&', _) => "&",
        (b'=', _) => "=",
        (b'<', _) => "<",
        (b'>', _) => ">",
        (b'+', _) => "+",
        (b'-', _) => "-",
        (b'*', _) => "*",
        (b'/', _) => "/",
        (b'%', _) => "%",
        (b'!', _) => "!",
        (b':', _) => ":",
        (b'?', _) => "?",
        _ => return None,
    })
}

fn tokenize(text: &str) -> Result<Vec<Token<'_>>, ExprError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::with_capacity(16);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'(' || c == b')' {
            tokens.push(Token::Op(if c == b'(' { "(" } else { ")" }));
            i += 1;
            continue;
        }
        if c == b'"' {
            let end = text[i + 1..].find('"').ok_or_else(|| ExprError::Syntax(excerpt(text)))?;
            // As ast_expr2.fl, a quoted token is a string with its quotes: it compares as a
            // string (quotes included) and never as a number; `:`, `=~` and `~~` drop them.
            tokens.push(Token::Value(Cow::Borrowed(&text[i..i + 2 + end])));
            i += end + 2;
            continue;
        }
        if let Some(op) = operator_at(bytes, i) {
            tokens.push(Token::Op(op));
            i += op.len();
            continue;
        }
        let start = i;
        while i < bytes.len()
            && !bytes[i].is_ascii_whitespace()
            && !b"()\"".contains(&bytes[i])
            && operator_at(bytes, i).is_none()
        {
            i += 1;
        }
        tokens.push(Token::Value(Cow::Borrowed(&text[start..i])));
    }
    Ok(tokens)
}

/// A value as a number, as ast_expr2's `is_really_num` + `strtod`: only `-0123456789.` and
/// blanks, read as far as they make a number (`1.2.3` is 1.2). One pass over the text: the
/// longest prefix `strtod` would read is `-`? digits (`.` digits)?.
fn number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b' ' || b == b'\t') {
        return None;
    }
    let bytes = t.as_bytes();
    let digits_from = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let sign = usize::from(bytes[0] == b'-');
    let whole = digits_from(sign);
    let mut end = whole;
    if bytes.get(whole) == Some(&b'.') {
        let fraction = digits_from(whole + 1);
        if whole > sign || fraction > whole + 1 {
            end = fraction;
        }
    }
    Some(if end > sign { t[..end].parse::<f64>().unwrap_or(0.0) } else { 0.0 })
}

/// C's `atoi`: the leading integer of a string, 0 without one.
fn atoi(s: &str) -> i64 {
    let t = s.trim_start();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    let len = digits.bytes().take_while(u8::is_ascii_digit).count();
    let value: i64 = digits[..len].parse().unwrap_or(0);
    if t.starts_with('-') {
        -value
    } else {
        value
    }
}

/// `INT_MAX`, what Asterisk gives for a division by zero or by a non-number.
const INT_MAX: f64 = 2_147_483_647.0;

/// Prints a number as Asterisk does: whole numbers without a fraction.
fn format_number(n: f64) -> String {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < 1e18 {
        format!("{}", n as i64)
    } else {
        let s = format!("{n:.15}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn truthy(s: &str) -> bool {
    !(s.is_empty() || number(s) == Some(0.0))
}

/// `?:`'s truth (op_cond): a string is false when empty, `""` or `0`.
fn cond_truthy(s: &str) -> bool {
    match number(s) {
        Some(n) => n != 0.0,
        None => !(s.is_empty() || s == "\"\"" || s == "0"),
    }
}

/// ast_expr2's `strip_quotes`: a value wrapped in quotes loses every quote.
fn strip_quotes(s: &str) -> Cow<'_, str> {
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        Cow::Owned(s.replace('"', ""))
    } else {
        Cow::Borrowed(s)
    }
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    at: usize,
    text: &'a str,
    /// Levels of [`Parser::expression`] and [`Parser::unary`] on the stack now: every cycle
    /// of the recursion passes through one of them.
    depth: usize,
}

impl<'a> Parser<'a> {
    fn error(&self) -> ExprError {
        ExprError::Syntax(excerpt(self.text))
    }

    /// Runs `parse` one level deeper, or fails past [`MAX_DEPTH`].
    fn nested<T>(&mut self, parse: impl FnOnce(&mut Self) -> Result<T, ExprError>) -> Result<T, ExprError> {
        if self.depth >= MAX_DEPTH {
            return Err(ExprError::TooDeep(excerpt(self.text)));
        }
        self.depth += 1;
        let result = parse(self);
        self.depth -= 1;
        result
    }

    fn peek_op(&self) -> Option<&'static str> {
        match self.tokens.get(self.at) {
            Some(Token::Op(op)) => Some(op),
            _ => None,
        }
    }

    fn binding(op: &str) -> Option<u8> {
        Some(match op {
            "?" => 1,
            "|" => 2,
            "&" => 3,
            "=" | "==" | "!=" | "<" | ">" | "<=" | ">=" | "~~" => 4,
            "+" | "-" => 5,
            "*" | "/" | "%" => 6,
            ":" | "=~" => 8,
            _ => return None,
        })
    }

    fn expression(&mut self, min: u8) -> Result<Value<'a>, ExprError> {
        self.nested(|p| p.expression_at(min))
    }

    fn expression_at(&mut self, min: u8) -> Result<Value<'a>, ExprError> {
        let mut left = self.unary()?;
        while let Some(op) = self.peek_op() {
            let Some(power) = Self::binding(op) else { break };
            if power < min {
                break;
            }
            self.at += 1;
            if op == "?" {
                // a ? b :: c, right associative.
                let then = self.expression(2)?;
                if self.peek_op() != Some("::") {
                    return Err(self.error());
                }
                self.at += 1;
                let otherwise = self.expression(1)?;
                left = if cond_truthy(&left) { then } else { otherwise };
                continue;
            }
            let right = self.expression(power + 1)?;
            left = apply(op, left, right)?;
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Value<'a>, ExprError> {
        self.nested(Self::unary_at)
    }

    fn unary_at(&mut self) -> Result<Value<'a>, ExprError> {
        match self.tokens.get(self.at) {
            Some(Token::Op("!")) => {
                self.at += 1;
                let v = self.regex_level()?;
                // op_compl: a number is true unless 0; a string by its leading integer.
                let truth = match number(&v) {
                    Some(n) => n != 0.0,
                    None => atoi(&v) != 0,
                };
                Ok(Cow::Borrowed(if truth { "0" } else { "1" }))
            }
            Some(Token::Op("-")) => {
                self.at += 1;
                let v = self.regex_level()?;
                // op_negate: a non-number is 0.
                Ok(Cow::Owned(format_number(-number(&v).unwrap_or(0.0))))
            }
            _ => self.regex_level(),
        }
    }

    /// `:` and `=~` bind tighter than unary operators.
    fn regex_level(&mut self) -> Result<Value<'a>, ExprError> {
        let mut left = self.primary()?;
        while let Some(op @ (":" | "=~")) = self.peek_op() {
            self.at += 1;
            let right = self.primary()?;
            left = apply(op, left, right)?;
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Value<'a>, ExprError> {
        // A value is read once: take it rather than copy it.
        if let Some(Token::Value(v)) = self.tokens.get_mut(self.at) {
            let v = std::mem::take(v);
            self.at += 1;
            return Ok(v);
        }
        match self.tokens.get(self.at) {
            Some(Token::Op("(")) => {
                self.at += 1;
                let v = self.expression(0)?;
                if self.tokens.get(self.at) != Some(&Token::Op(")")) {
                    return Err(self.error());
                }
                self.at += 1;
                Ok(v)
            }
            Some(Token::Op("!" | "-")) => self.unary(),
            _ => Err(self.error()),
        }
    }
}

fn apply<'a>(op: &str, left: Value<'a>, right: Value<'a>) -> Result<Value<'a>, ExprError> {
    // Only comparisons and arithmetic look at the values as numbers.
    let nums = || (number(&left), number(&right));
    let bool_str = |b: bool| Cow::Borrowed(if b { "1" } else { "0" });
    Ok(match op {
        "|" => {
            if truthy(&left) {
                left
            } else {
                right
            }
        }
        "&" => {
            if truthy(&left) && truthy(&right) {
                left
            } else {
                Cow::Borrowed("0")
            }
        }
        "=" | "==" | "!=" | "<" | ">" | "<=" | ">=" => {
            let ordering = match nums() {
                (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
                _ => left.cmp(&right),
            };
            use std::cmp::Ordering::*;
            bool_str(match op {
                "=" | "==" => ordering == Equal,
                "!=" => ordering != Equal,
                "<" => ordering == Less,
                ">" => ordering == Greater,
                "<=" => ordering != Greater,
                _ => ordering != Less,
            })
        }
        "~~" => Cow::Owned(format!("{}{}", strip_quotes(&left), strip_quotes(&right))),
        "+" | "-" | "*" | "/" | "%" => {
            // ast_expr2.y's op_plus, op_minus, op_times, op_div, op_rem, non-numbers included.
            let value = match (op, nums()) {
                ("+", (Some(a), Some(b))) => a + b,
                ("+", (Some(a), None)) | ("-", (Some(a), None)) => a,
                ("+", (None, Some(b))) => b,
                ("-", (Some(a), Some(b))) => a - b,
                ("-", (None, Some(b))) => -b,
                ("*", (Some(a), Some(b))) => a * b,
                ("/", (None, _)) => 0.0,
                ("/", (Some(_), None)) => INT_MAX,
                ("/", (Some(_), Some(0.0))) => INT_MAX,
                ("/", (Some(a), Some(b))) => a / b,
                ("%", (Some(_), Some(b))) if b == 0.0 => b,
                ("%", (Some(a), Some(b))) => a % b,
                _ => 0.0,
            };
            Cow::Owned(format_number(value))
        }
        ":" | "=~" => {
            // Extended regular expressions, as Asterisk's regcomp(REG_EXTENDED).
            let (left, right) = (strip_quotes(&left), strip_quotes(&right));
            let left = left.as_ref();
            let pattern = if op == ":" { format!("^(?:{right})") } else { right.to_string() };
            let re = Regex::new(&pattern).map_err(|_| ExprError::Regex(right.to_string()))?;
            Cow::Owned(match re.captures(left) {
                Some(caps) if caps.len() > 1 => caps.get(1).map_or(String::new(), |m| m.as_str().to_owned()),
                Some(caps) => caps.get(0).map_or(0, |m| m.as_str().chars().count()).to_string(),
                None if re.captures_len() > 1 => String::new(),
                None => "0".to_owned(),
            })
        }
        _ => return Err(ExprError::Syntax(op.to_owned())),
    })
}

/// Evaluates the text between `$[` and `]` (after `${...}` substitution).
pub fn evaluate(text: &str) -> Result<String, ExprError> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Ok(String::new());
    }
    let mut parser = Parser { tokens, at: 0, text, depth: 0 };
    let value = parser.expression(0)?;
    if parser.at != parser.tokens.len() {
        return Err(parser.error());
    }
    Ok(value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(s: &str) -> String {
        evaluate(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn arithmetic_and_precedence() {
        assert_eq!(eval("1 + 2 * 3"), "7");
        assert_eq!(eval("(1 + 2) * 3"), "9");
        assert_eq!(eval("3/2"), "1.5");
        assert_eq!(eval("7 % 3"), "1");
        assert_eq!(eval("-3 + 5"), "2");
        assert_eq!(eval("10 - 2 - 3"), "5", "left associative");
        assert_eq!(eval("1/0"), "2147483647", "division by zero is INT_MAX, as ast_expr2");
        assert_eq!(eval("7 % 0"), "0");
        assert_eq!(eval("7.5 % 2"), "1.5", "fmod");
    }

    /// ast_expr2.y's rules for non-numbers: a warning there, and these values.
    #[test]
    fn arithmetic_with_non_numbers_as_asterisk() {
        assert_eq!(eval("a + 1"), "1");
        assert_eq!(eval("1 + a"), "1");
        assert_eq!(eval("a + b"), "0");
        assert_eq!(eval("a - 1"), "-1");
        assert_eq!(eval("5 - a"), "5");
        assert_eq!(eval("a * 3"), "0");
        assert_eq!(eval("a / 3"), "0");
        assert_eq!(eval("3 / a"), "2147483647");
        assert_eq!(eval("-a"), "0");
        assert_eq!(eval("1.2.3 + 1"), "2.2", "strtod reads as far as it can");
    }

    #[test]
    fn comparisons_numeric_or_string() {
        assert_eq!(eval("10 > 9"), "1", "numbers compare as numbers");
        assert_eq!(eval("abc < abd"), "1", "strings as strings");
        assert_eq!(eval("10 = 10.0"), "1");
        assert_eq!(eval("\"\" = \"\""), "1");
        // Quoted tokens are strings, quotes and all (ast_expr2.fl's SET_STRING).
        assert_eq!(eval("\"10\" > \"9\""), "0", "compared as strings");
        assert_eq!(eval("\"abc\" = abc"), "0", "the quotes are part of the string");
        assert_eq!(eval("\"abc\""), "\"abc\"");
        assert_eq!(eval("\"a\" ~~ b"), "ab");
        assert_eq!(eval("\"\" ? yes :: no"), "no");
        assert_eq!(eval("\"\" | x"), "\"\"", "but for | a quoted empty string is not empty");
        assert_eq!(eval("foo != bar"), "1");
        assert_eq!(eval("3 + 1 = 5 & 4 > 3"), "0", "the issue's benchmark expression, false");
        assert_eq!(eval("3 + 1 = 4 & 4 > 3"), "1");
        assert_eq!(eval("5 <= 5"), "1");
        assert_eq!(eval("10 <= 9"), "0", "numerically, not as text");
        assert_eq!(eval("9 >= 10"), "0");
        assert_eq!(eval("b >= a"), "1");
        assert_eq!(eval("abc <= abb"), "0");
        assert_eq!(eval("2 < 10"), "1");
    }

    #[test]
    fn logic_and_conditional() {
        assert_eq!(eval("0 | foo"), "foo");
        assert_eq!(eval("bar | foo"), "bar");
        assert_eq!(eval("bar & 0"), "0");
        assert_eq!(eval("!0"), "1");
        assert_eq!(eval("!abc"), "1", "op_compl: atoi(\"abc\") is 0");
        assert_eq!(eval("!5abc"), "0");
        assert_eq!(eval("1 ? yes :: no"), "yes");
        assert_eq!(eval("0 ? yes :: no"), "no");
        assert_eq!(eval("2 > 3 ? big :: small"), "small");
        assert_eq!(eval("abc ~~ def"), "abcdef");
    }

    #[test]
    fn regex_operators() {
        assert_eq!(eval("12345 : 1.."), "3", "anchored: characters matched");
        assert_eq!(eval("abc12 : \"([a-z]*)\""), "abc", "a group gives its text (quoted: parentheses group)");
        assert_eq!(eval("\"(555)1212\" : \"\\(555\\)\""), "5", "extended: \\( is a literal parenthesis");
        assert_eq!(eval("x12 : \"[0-9]\""), "0", "anchored at the start");
        assert_eq!(eval("x12 =~ \"[0-9]+\""), "2", "=~ is not anchored");
        assert_eq!(eval("5551212 : \"(555)\""), "555");
    }

    /// The recursion at its limit fits in a quarter of a 2 MiB stack; past it, at any depth,
    /// the expression is a syntax error and the message shows only its start.
    #[test]
    fn nesting_is_bounded() {
        let levels = MAX_DEPTH / 2 - 1;
        let deepest = format!("{}1{}", "(".repeat(levels), ")".repeat(levels));
        assert_eq!(crate::on_stack(512 * 1024, move || evaluate(&deepest)), Ok("1".into()));
        let unary = format!("{}1", "- ".repeat(MAX_DEPTH - 2));
        assert_eq!(crate::on_stack(512 * 1024, move || evaluate(&unary)), Ok("1".into()));

        let over = format!("{}1{}", "(".repeat(levels + 1), ")".repeat(levels + 1));
        assert!(matches!(evaluate(&over), Err(ExprError::TooDeep(_))));
        for n in [MAX_DEPTH, 20_000, 100_000] {
            for text in [
                format!("{}1 = 1", "(".repeat(n)),
                format!("{}1{}", "(".repeat(n), ")".repeat(n)),
                format!("{}1", "-".repeat(n)),
                format!("{}1", "! ".repeat(n)),
                format!("{}2", "1 ? 2 :: ".repeat(n)),
                format!("{}1", "( - ! ".repeat(n)),
            ] {
                let len = text.len();
                let error = crate::on_stack(512 * 1024, move || evaluate(&text)).unwrap_err();
                assert!(matches!(error, ExprError::TooDeep(_)), "{error}");
                let message = error.to_string();
                assert!(message.len() < 200 && message.contains(&format!("({len} bytes)")), "{message}");
            }
        }
    }

    /// The old quadratic `number` (every prefix tried, longest first), the reference for the
    /// one-pass one.
    fn number_by_prefixes(s: &str) -> Option<f64> {
        let t = s.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b' ' || b == b'\t') {
            return None;
        }
        (1..=t.len()).rev().find_map(|end| t[..end].parse::<f64>().ok()).or(Some(0.0))
    }

    proptest::proptest! {
        #[test]
        fn number_reads_what_strtod_reads(s in "[-0-9. \t]{0,12}|[-0-9.a]{0,6}") {
            let (ours, reference) = (number(&s), number_by_prefixes(&s));
            proptest::prop_assert_eq!(ours.map(f64::to_bits), reference.map(f64::to_bits), "{:?}", s);
        }

        /// Random mixes of everything that nests or pairs: never a panic or an overflow, and a
        /// value no longer than the input (plus one number's digits).
        #[test]
        fn random_mixes_are_bounded(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "(", ")", "-", "!", "1", "0", "a", "\"", "\"x\"", "?", "::", ":", "=~", "~~", "+", "*", "/",
                    "%", "=", "<", "|", "&", " ", "9999999999", ".", "[0-9]", "\"(\"",
                ]),
                0..400,
            ),
            repeat in 1usize..300,
        ) {
            let unit: String = pieces.concat();
            let text = unit.repeat(if unit.len() * repeat > 100_000 { 1 } else { repeat });
            let len = text.len();
            let result = crate::on_stack(512 * 1024, move || evaluate(&text));
            if let Ok(value) = result {
                proptest::prop_assert!(value.len() <= len + 400, "{} from {}", value.len(), len);
            }
        }
    }

    #[test]
    fn errors() {
        assert!(evaluate("1 +").is_err());
        assert!(evaluate("(1").is_err());
        assert!(evaluate("1 ? 2").is_err());
        assert!(evaluate("x : (").is_err());
        assert_eq!(eval(""), "");
    }
}
