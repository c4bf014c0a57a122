//! `${VAR}`, `${VAR:offset:length}`, `${FUNC(args)}` and `$[expression]` in application
//! arguments, nested to any depth, as Asterisk's `pbx_substitute_variables_helper` does: the
//! inside of each `${...}`/`$[...]` is substituted first, then looked up or evaluated.

use crate::expr;

/// Where names are looked up: a channel's variables and the dialplan functions.
pub trait Scope {
    /// A variable's value (channel variables, then globals, then built-ins like `EXTEN`).
    fn variable(&self, name: &str) -> Option<String>;
    /// Reads a dialplan function (`LEN(abc)` → `function("LEN", "abc")`).
    fn function(&mut self, name: &str, args: &str) -> Result<String, String>;
    /// Told about a problem (an unknown function, a bad expression): the PBX logs a warning.
    fn warn(&mut self, message: String) {
        let _ = message;
    }
}

/// Replaces every `${...}` and `$[...]` in `text`.
pub fn substitute(text: &str, scope: &mut dyn Scope) -> String {
    substituted(text, scope).into_owned()
}

/// [`substitute`], borrowing `text` when there is nothing to replace.
fn substituted<'a>(text: &'a str, scope: &mut dyn Scope) -> std::borrow::Cow<'a, str> {
    if !text.contains('$') {
        return std::borrow::Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let opener = match (bytes[i], bytes.get(i + 1)) {
            (b'$', Some(b'{')) => Some((b'{', b'}')),
            (b'$', Some(b'[')) => Some((b'[', b']')),
            _ => None,
        };
        let Some((open, close)) = opener else {
            let next = text[i..].find('$').map_or(text.len(), |n| if n == 0 { i + 1 } else { i + n });
            out.push_str(&text[i..next]);
            i = next;
            continue;
        };
        // Find the matching close, counting nested openers of the same kind, with or without
        // their `$` (as pbx_substitute_variables_helper does: `$[${X} =~ "[0-9]+"]` is one).
        let mut depth = 0usize;
        let mut end = None;
        for (j, &b) in bytes.iter().enumerate().skip(i + 2) {
            if b == open {
                depth += 1;
            } else if b == close {
                if depth == 0 {
                    end = Some(j);
                    break;
                }
                depth -= 1;
            }
        }
        let Some(end) = end else {
            scope.warn(format!("unterminated '{}' in '{text}'", if open == b'{' { "${" } else { "$[" }));
            out.push_str(&text[i..]);
            break;
        };
        let inner = substituted(&text[i + 2..end], scope);
        if open == b'[' {
            match expr::evaluate(&inner) {
                Ok(value) => out.push_str(&value),
                Err(e) => scope.warn(e.to_string()),
            }
        } else {
            lookup(&inner, scope, &mut out);
        }
        i = end + 1;
    }
    std::borrow::Cow::Owned(out)
}

/// One `${...}`'s inside, already substituted: a function call or a variable with an
/// optional `:offset:length`.
fn lookup(inner: &str, scope: &mut dyn Scope, out: &mut String) {
    if let Some(open) = inner.find('(') {
        if let Some(close) = inner.rfind(')') {
            if close > open {
                let (name, args) = (&inner[..open], &inner[open + 1..close]);
                let value = match scope.function(name, args) {
                    Ok(v) => v,
                    Err(e) => {
                        scope.warn(e);
                        String::new()
                    }
                };
                out.push_str(&substring(&value, &inner[close + 1..]));
                return;
            }
        }
    }
    let (name, range) = match inner.find(':') {
        Some(c) => (&inner[..c], &inner[c..]),
        None => (inner, ""),
    };
    let value = scope.variable(name).unwrap_or_default();
    out.push_str(&substring(&value, range));
}

/// `:offset[:length]` (Asterisk's `substring`): a negative offset counts from the end, a
/// negative length leaves that many characters off the end.
fn substring<'a>(value: &'a str, range: &str) -> std::borrow::Cow<'a, str> {
    let Some(range) = range.strip_prefix(':') else { return std::borrow::Cow::Borrowed(value) };
    let (offset, length) = match range.split_once(':') {
        Some((o, l)) => (o, Some(l)),
        None => (range, None),
    };
    let chars: Vec<char> = value.chars().collect();
    let len = chars.len() as i64;
    let offset: i64 = offset.trim().parse().unwrap_or(0);
    let start = if offset < 0 { (len + offset).max(0) } else { offset.min(len) };
    let end = match length.map(|l| l.trim().parse::<i64>().unwrap_or(0)) {
        None => len,
        Some(l) if l < 0 => (len + l).max(start),
        Some(0) if length.is_some_and(|l| l.trim().is_empty()) => len,
        Some(l) => (start + l).min(len),
    };
    std::borrow::Cow::Owned(chars[start as usize..end.max(start) as usize].iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Vars {
        vars: HashMap<String, String>,
        warnings: Vec<String>,
    }

    impl Scope for Vars {
        fn variable(&self, name: &str) -> Option<String> {
            self.vars.get(name).cloned()
        }
        fn function(&mut self, name: &str, args: &str) -> Result<String, String> {
            match name {
                "LEN" => Ok(args.chars().count().to_string()),
                "UPPER" => Ok(args.to_uppercase()),
                other => Err(format!("no function {other}")),
            }
        }
        fn warn(&mut self, message: String) {
            self.warnings.push(message);
        }
    }

    fn scope() -> Vars {
        let mut v = Vars::default();
        for (k, val) in [("EXTEN", "18005551212"), ("X", "3"), ("Y", "abcd"), ("NAME", "Y")] {
            v.vars.insert(k.into(), val.into());
        }
        v
    }

    #[test]
    fn variables_offsets_and_functions() {
        let mut s = scope();
        assert_eq!(substitute("call ${EXTEN}", &mut s), "call 18005551212");
        assert_eq!(substitute("${EXTEN:1}", &mut s), "8005551212");
        assert_eq!(substitute("${EXTEN:-7}", &mut s), "5551212");
        assert_eq!(substitute("${EXTEN:1:3}", &mut s), "800");
        assert_eq!(substitute("${EXTEN:-4:2}", &mut s), "12");
        assert_eq!(substitute("${EXTEN:0:-4}", &mut s), "1800555");
        assert_eq!(substitute("${EXTEN:20}", &mut s), "");
        assert_eq!(substitute("${MISSING}x", &mut s), "x");
        assert_eq!(substitute("${LEN(${Y})}", &mut s), "4");
        assert_eq!(substitute("${UPPER(${Y})}:1", &mut s), "ABCD:1");
        assert_eq!(substitute("${UPPER(abc):1}", &mut s), "BC");
        assert_eq!(substitute("${${NAME}}", &mut s), "abcd", "a variable named by a variable");
        assert_eq!(substitute("no dollars", &mut s), "no dollars");
        assert_eq!(substitute("costs $5", &mut s), "costs $5");
    }

    #[test]
    fn expressions_nested() {
        let mut s = scope();
        assert_eq!(substitute("$[${X} + 1 = 5 & ${LEN(${Y})} > 3]", &mut s), "0");
        assert_eq!(substitute("$[${X} + 1 = 4 & ${LEN(${Y})} > 3]", &mut s), "1");
        assert_eq!(substitute("n=$[$[1+2]*2]", &mut s), "n=6");
        assert_eq!(substitute("$[x${X}4 =~ \"[0-9]+\"]!", &mut s), "2!", "a bracket inside counts");
        assert_eq!(substitute("${LEN(a{b}c)}${X}", &mut s), "53", "and a brace inside ${{...}}");
    }

    #[test]
    fn problems_warn_and_give_empty() {
        let mut s = scope();
        assert_eq!(substitute("a${NOPE(1)}b", &mut s), "ab");
        assert_eq!(substitute("$[1 +]", &mut s), "");
        assert_eq!(substitute("${UNTERMINATED", &mut s), "${UNTERMINATED");
        assert_eq!(s.warnings.len(), 3, "{:?}", s.warnings);
    }
}
