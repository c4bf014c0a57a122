//! `${VAR}`, `${VAR:offset:length}`, `${FUNC(args)}` and `$[expression]` in application
//! arguments, nested, as Asterisk's `pbx_substitute_variables_helper` does: the inside of each
//! `${...}`/`$[...]` is substituted first, then looked up or evaluated.
//!
//! Bounded: nesting deeper than [`MAX_DEPTH`] (counted on the thread, so a function that
//! substitutes again counts on from where its caller was) is an error in extension logic, as
//! Asterisk calls a missing `}`: the too-deep `${...}` or `$[...]` is empty, with one warning
//! per substitution. The closing bracket of every opener is found in one pass over the text
//! before anything is substituted, so the work is linear in the text at any depth.

use std::cell::Cell;

use crate::expr;

/// How deeply `${...}` and `$[...]` may nest (function arguments included: `${LEN(${X})}` is
/// two levels). A level costs under 500 bytes of stack in a release build (measured: 20
/// levels of `${LEN(...)}` 9,280 bytes, of `${...}` or `$[...]` 8,816), so 200 levels stay
/// under 128 KiB; an expression at any level may add [`expr::MAX_DEPTH`]'s 512 KiB.
pub const MAX_DEPTH: usize = 200;

thread_local! {
    /// Levels of substitution on this thread's stack now (see the module docs).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

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
    if !text.contains('$') {
        return text.to_owned();
    }
    let mut run = Substitution { text, closes: closing_brackets(text), too_deep: false };
    run.substituted(0, text.len(), scope).into_owned()
}

/// The `${`/`$[` openers of a text, in order: the position of the `$` and of the bracket that
/// closes it (`None`: unterminated). A close is the first one of the same kind that balances
/// the openers of that kind after it, with or without their `$` (as
/// pbx_substitute_variables_helper counts: `$[${X} =~ "[0-9]+"]` is one expression). One pass
/// with a stack per kind gives the same answer as a scan from each opener, in linear time.
fn closing_brackets(text: &str) -> Vec<(usize, Option<usize>)> {
    let bytes = text.as_bytes();
    let mut closes = Vec::new();
    // Open brackets of each kind: the index in `closes` of a `$` opener, or None.
    let (mut braces, mut squares): (Vec<Option<usize>>, Vec<Option<usize>>) = (Vec::new(), Vec::new());
    for (j, &b) in bytes.iter().enumerate() {
        let stack = match b {
            b'{' | b'}' => &mut braces,
            b'[' | b']' => &mut squares,
            _ => continue,
        };
        if b == b'{' || b == b'[' {
            let dollar = j > 0 && bytes[j - 1] == b'$';
            stack.push(dollar.then(|| {
                closes.push((j - 1, None));
                closes.len() - 1
            }));
        } else if let Some(Some(index)) = stack.pop() {
            closes[index].1 = Some(j);
        }
    }
    closes
}

/// One level of substitution on this thread: entered with the depth before it, which it puts
/// back when dropped (also when a function panics and the call's task is contained).
struct Level(usize);

impl Level {
    fn enter(depth: usize) -> Level {
        DEPTH.set(depth + 1);
        Level(depth)
    }
}

impl Drop for Level {
    fn drop(&mut self) {
        DEPTH.set(self.0);
    }
}

/// One call of [`substitute`]: the text, its openers' closes, and whether the depth warning
/// has been given.
struct Substitution<'t> {
    text: &'t str,
    closes: Vec<(usize, Option<usize>)>,
    too_deep: bool,
}

impl<'t> Substitution<'t> {
    /// `text[from..to]` substituted, borrowed when there is nothing to replace.
    fn substituted(&mut self, from: usize, to: usize, scope: &mut dyn Scope) -> std::borrow::Cow<'t, str> {
        let text = self.text;
        let part = &text[from..to];
        if !part.contains('$') {
            return std::borrow::Cow::Borrowed(part);
        }
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(part.len());
        let mut i = from;
        while i < to {
            let is_opener = bytes[i] == b'$' && i + 1 < to && matches!(bytes[i + 1], b'{' | b'[');
            if !is_opener {
                let next = text[i..to].find('$').map_or(to, |n| if n == 0 { i + 1 } else { i + n });
                out.push_str(&text[i..next]);
                i = next;
                continue;
            }
            let expression = bytes[i + 1] == b'[';
            let close = match self.closes.binary_search_by_key(&i, |&(at, _)| at) {
                Ok(index) => self.closes[index].1,
                Err(_) => None,
            };
            // Inside a part, a close past the part's end belongs to a bracket of another kind
            // that the part's own close cut short: unterminated here.
            let Some(end) = close.filter(|&end| end < to) else {
                scope.warn(format!(
                    "unterminated '{}' in '{}'",
                    if expression { "$[" } else { "${" },
                    expr::excerpt(part)
                ));
                out.push_str(&text[i..to]);
                break;
            };
            let depth = DEPTH.get();
            if depth >= MAX_DEPTH {
                if !self.too_deep {
                    self.too_deep = true;
                    scope.warn(format!(
                        "Error in extension logic (nested deeper than {MAX_DEPTH} levels): '{}' is empty",
                        expr::excerpt(&text[i..=end])
                    ));
                }
                i = end + 1;
                continue;
            }
            let level = Level::enter(depth);
            let inner = self.substituted(i + 2, end, scope);
            if expression {
                match expr::evaluate(&inner) {
                    Ok(value) => out.push_str(&value),
                    Err(e) => scope.warn(e.to_string()),
                }
            } else {
                lookup(&inner, scope, &mut out);
            }
            drop(level);
            i = end + 1;
        }
        std::borrow::Cow::Owned(out)
    }
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

    /// Levels nested `depth` deep around `${Y}`: `${LEN(` (a function's argument), `${` (a
    /// variable named by a variable) or `$[` (an expression).
    fn nested(open: &str, close: &str, depth: usize) -> String {
        format!("{}${{Y}}{}", open.repeat(depth - 1), close.repeat(depth - 1))
    }

    #[test]
    fn nesting_is_bounded() {
        let at_limit = nested("${LEN(", ")}", MAX_DEPTH);
        let (value, warnings) = crate::on_stack(256 * 1024, move || {
            let mut s = scope();
            (substitute(&at_limit, &mut s), s.warnings)
        });
        assert_eq!((value.as_str(), warnings.len()), ("1", 0), "{warnings:?}");

        for (open, close) in [("${LEN(", ")}"), ("${", "}"), ("$[", "]"), ("${LEN($[", "])}"), ("$[1+${LEN(", ")}]")] {
            for depth in [MAX_DEPTH + 1, 20_000, 100_000] {
                let text = nested(open, close, depth);
                let (value, warnings) = crate::on_stack(256 * 1024 + 512 * 1024, move || {
                    let mut s = scope();
                    (substitute(&text, &mut s), s.warnings)
                });
                assert!(value.len() < 100, "{open}: {value}");
                assert_eq!(warnings.iter().filter(|w| w.contains("nested deeper")).count(), 1, "{open}: {warnings:?}");
                assert!(warnings.len() <= 2 && warnings.iter().all(|w| w.len() < 200), "{open}: {warnings:?}");
            }
        }
        assert_eq!(DEPTH.get(), 0);
    }

    /// A function that panics (a bug, contained by the call's task) leaves the depth as it was.
    #[test]
    fn the_depth_is_put_back_after_a_panic() {
        struct Panics;
        impl Scope for Panics {
            fn variable(&self, _: &str) -> Option<String> {
                None
            }
            fn function(&mut self, _: &str, _: &str) -> Result<String, String> {
                panic!("a function with a bug")
            }
        }
        let result = std::panic::catch_unwind(|| substitute("${A${B${C${BOOM()}}}}", &mut Panics));
        assert!(result.is_err());
        assert_eq!(DEPTH.get(), 0);
    }

    /// The substitution before closing brackets were found in one pass: every opener scanned
    /// forward to its close, the inside substituted as a new text. The reference for the new.
    fn substitute_by_scanning(text: &str, scope: &mut dyn Scope) -> String {
        let bytes = text.as_bytes();
        let mut out = String::new();
        let mut i = 0;
        while i < bytes.len() {
            let opener = match (bytes[i], bytes.get(i + 1)) {
                (b'$', Some(b'{')) => Some((b'{', b'}')),
                (b'$', Some(b'[')) => Some((b'[', b']')),
                _ => None,
            };
            let Some((open, close)) = opener else {
                out.push(bytes[i] as char);
                i += 1;
                continue;
            };
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
                scope.warn("unterminated".into());
                out.push_str(&text[i..]);
                break;
            };
            let inner = substitute_by_scanning(&text[i + 2..end], scope);
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
        out
    }

    fn pieces() -> impl proptest::strategy::Strategy<Value = Vec<&'static str>> {
        proptest::collection::vec(
            proptest::sample::select(vec![
                "${", "$[", "}", "]", "{", "[", "(", ")", "\"", "Y", "X", "NAME", "LEN(", "UPPER(", "NOPE(", ":", "1",
                "-", "+", " ", "=~", "?", "::", "$",
            ]),
            0..60,
        )
    }

    proptest::proptest! {
        /// Shallow random texts substitute exactly as the scan from every opener did.
        #[test]
        fn one_pass_matches_the_scan(pieces in pieces()) {
            let text: String = pieces.concat();
            let (mut new, mut old) = (scope(), scope());
            let ours = substitute(&text, &mut new);
            let reference = substitute_by_scanning(&text, &mut old);
            proptest::prop_assert_eq!(&ours, &reference, "{:?}", text);
            proptest::prop_assert_eq!(new.warnings.len(), old.warnings.len(), "{:?}", text);
        }

        /// Random mixes repeated up to 10^5 bytes: never a panic or an overflow, and bounded
        /// output and warnings.
        #[test]
        fn random_mixes_are_bounded(pieces in pieces(), repeat in 1usize..5_000) {
            let unit: String = pieces.concat();
            let text = unit.repeat(if unit.len() * repeat > 100_000 { 1 } else { repeat });
            let (len, dollars) = (text.len(), text.matches('$').count());
            let (value, warnings) = crate::on_stack(256 * 1024 + 512 * 1024, move || {
                let mut s = scope();
                (substitute(&text, &mut s), s.warnings)
            });
            proptest::prop_assert!(value.len() <= 2 * len + 400, "{} from {}", value.len(), len);
            proptest::prop_assert!(warnings.len() <= dollars + 1);
            proptest::prop_assert!(warnings.iter().all(|w| w.len() < 300), "{:?}", warnings);
        }
    }
}
