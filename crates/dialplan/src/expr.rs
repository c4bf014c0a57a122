//! `$[...]` expressions, with Asterisk's operators and rules (ast_expr2.y).
//!
//! Lowest to highest precedence: `? ::` (conditional), `|`, `&`, comparisons `= == != < > <= >=`
//! and `~~` (concatenation), `+ -`, `* / %`, unary `-` and `!`, regex `:` (anchored) and `=~`,
//! parentheses. Operands are strings; where both sides of an arithmetic or comparison operator
//! are numbers the operation is numeric (floating point, printed without a fraction when whole),
//! otherwise comparisons compare strings. "True" is anything but the empty string and zero.
//! `a : regex` returns the first `\(...\)`/`(...)` group's text, or how many characters matched.
//! A syntax error gives an [`ExprError`]; the PBX then uses "" as Asterisk does, with a warning.
//! As in Asterisk, a regular expression with `-`, `(`, `)` or spaces must be quoted:
//! `$[${EXTEN} : "\(1[0-9]*\)"]`; unquoted, those are operators.

use regex::Regex;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExprError {
    #[error("syntax error in expression '{0}'")]
    Syntax(String),
    #[error("bad regular expression '{0}'")]
    Regex(String),
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Value(String),
    Op(&'static str),
}

const OPERATORS: [&str; 20] =
    ["::", "=~", "~~", "==", "!=", "<=", ">=", "|", "&", "=", "<", ">", "+", "-", "*", "/", "%", "!", ":", "?"];

fn tokenize(text: &str) -> Result<Vec<Token>, ExprError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
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
            let end = text[i + 1..].find('"').ok_or_else(|| ExprError::Syntax(text.to_owned()))?;
            tokens.push(Token::Value(text[i + 1..i + 1 + end].to_owned()));
            i += end + 2;
            continue;
        }
        if let Some(op) = OPERATORS.iter().find(|op| text[i..].starts_with(**op)) {
            tokens.push(Token::Op(op));
            i += op.len();
            continue;
        }
        let start = i;
        while i < bytes.len()
            && !bytes[i].is_ascii_whitespace()
            && !b"()\"".contains(&bytes[i])
            && !OPERATORS.iter().any(|op| text[i..].starts_with(*op))
        {
            i += 1;
        }
        tokens.push(Token::Value(text[start..i].to_owned()));
    }
    Ok(tokens)
}

fn number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+') {
        return None;
    }
    t.parse::<f64>().ok()
}

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

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn error(&self) -> ExprError {
        ExprError::Syntax(self.text.to_owned())
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

    fn expression(&mut self, min: u8) -> Result<String, ExprError> {
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
                left = if truthy(&left) { then } else { otherwise };
                continue;
            }
            let right = self.expression(power + 1)?;
            left = apply(op, &left, &right)?;
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<String, ExprError> {
        match self.tokens.get(self.at).cloned() {
            Some(Token::Op("!")) => {
                self.at += 1;
                let v = self.regex_level()?;
                Ok(if truthy(&v) { "0".into() } else { "1".into() })
            }
            Some(Token::Op("-")) => {
                self.at += 1;
                let v = self.regex_level()?;
                let n = number(&v).ok_or_else(|| self.error())?;
                Ok(format_number(-n))
            }
            _ => self.regex_level(),
        }
    }

    /// `:` and `=~` bind tighter than unary operators.
    fn regex_level(&mut self) -> Result<String, ExprError> {
        let mut left = self.primary()?;
        while let Some(op @ (":" | "=~")) = self.peek_op() {
            self.at += 1;
            let right = self.primary()?;
            left = apply(op, &left, &right)?;
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<String, ExprError> {
        match self.tokens.get(self.at).cloned() {
            Some(Token::Value(v)) => {
                self.at += 1;
                Ok(v)
            }
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

fn apply(op: &str, left: &str, right: &str) -> Result<String, ExprError> {
    let nums = (number(left), number(right));
    let bool_str = |b: bool| if b { "1".to_owned() } else { "0".to_owned() };
    Ok(match op {
        "|" => {
            if truthy(left) {
                left.to_owned()
            } else {
                right.to_owned()
            }
        }
        "&" => {
            if truthy(left) && truthy(right) {
                left.to_owned()
            } else {
                "0".to_owned()
            }
        }
        "=" | "==" | "!=" | "<" | ">" | "<=" | ">=" => {
            let ordering = match nums {
                (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
                _ => left.cmp(right),
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
        "~~" => format!("{left}{right}"),
        "+" | "-" | "*" | "/" | "%" => {
            let (Some(a), Some(b)) = nums else {
                return Err(ExprError::Syntax(format!("{left} {op} {right}")));
            };
            let value = match op {
                "+" => a + b,
                "-" => a - b,
                "*" => a * b,
                // Asterisk: division by zero gives a warning and... we give 0 rather than inf.
                "/" if b == 0.0 => 0.0,
                "/" => a / b,
                _ if b == 0.0 => 0.0,
                _ => a.trunc() % b.trunc(),
            };
            format_number(value)
        }
        ":" | "=~" => {
            // POSIX basic groups \( \) are Rust's ( ).
            let pattern = right.replace("\\(", "(").replace("\\)", ")");
            let pattern = if op == ":" { format!("^(?:{pattern})") } else { pattern };
            let re = Regex::new(&pattern).map_err(|_| ExprError::Regex(right.to_owned()))?;
            match re.captures(left) {
                Some(caps) if caps.len() > 1 => caps.get(1).map_or(String::new(), |m| m.as_str().to_owned()),
                Some(caps) => caps.get(0).map_or(0, |m| m.as_str().chars().count()).to_string(),
                None if re.captures_len() > 1 => String::new(),
                None => "0".to_owned(),
            }
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
    let mut parser = Parser { tokens, at: 0, text };
    let value = parser.expression(0)?;
    if parser.at != parser.tokens.len() {
        return Err(parser.error());
    }
    Ok(value)
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
        assert_eq!(eval("1/0"), "0");
    }

    #[test]
    fn comparisons_numeric_or_string() {
        assert_eq!(eval("10 > 9"), "1", "numbers compare as numbers");
        assert_eq!(eval("abc < abd"), "1", "strings as strings");
        assert_eq!(eval("10 = 10.0"), "1");
        assert_eq!(eval("\"\" = \"\""), "1");
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
        assert_eq!(eval("!abc"), "0");
        assert_eq!(eval("1 ? yes :: no"), "yes");
        assert_eq!(eval("0 ? yes :: no"), "no");
        assert_eq!(eval("2 > 3 ? big :: small"), "small");
        assert_eq!(eval("abc ~~ def"), "abcdef");
    }

    #[test]
    fn regex_operators() {
        assert_eq!(eval("12345 : 1.."), "3", "anchored: characters matched");
        assert_eq!(eval("abc12 : \"\\([a-z]*\\)\""), "abc", "a group gives its text (quoted: parentheses group)");
        assert_eq!(eval("x12 : \"[0-9]\""), "0", "anchored at the start");
        assert_eq!(eval("x12 =~ \"[0-9]+\""), "2", "=~ is not anchored");
        assert_eq!(eval("5551212 : \"(555)\""), "555");
    }

    #[test]
    fn errors() {
        assert!(evaluate("1 +").is_err());
        assert!(evaluate("(1").is_err());
        assert!(evaluate("a + 1").is_err());
        assert!(evaluate("1 ? 2").is_err());
        assert!(evaluate("x : (").is_err());
        assert_eq!(eval(""), "");
    }
}
