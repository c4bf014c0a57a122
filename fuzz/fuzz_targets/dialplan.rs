//! Any text as what a stranger's call puts in the dialplan: the first byte chooses
//! - an expression (`$[...]`'s inside, after substitution: a caller number can end up here);
//! - a string to substitute (`${VAR}`, `${VAR:o:l}`, `${FUNC(args)}`, `$[...]`, nested), with
//!   variables whose values come from the input too;
//! - an extension pattern and dialled digits (the first line and the second).
//!
//! Must hold: nothing panics; `$[e]` substituted is `e` evaluated (empty on an error) when `e`
//! has nothing to substitute; text with no `$` substitutes to itself; a pattern that matches
//! can match; the extension order is antisymmetric.
#![no_main]

use std::cmp::Ordering;

use libfuzzer_sys::fuzz_target;
use starling_dialplan::expr::evaluate;
use starling_dialplan::pattern::{early_match, ext_cmp, matches, Mode};
use starling_dialplan::substitute::{substitute, Scope};

/// Variables and the simplest of Asterisk's functions, as a channel would answer them.
struct Vars {
    values: Vec<(String, String)>,
}

impl Scope for Vars {
    fn variable(&self, name: &str) -> Option<String> {
        self.values.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
    fn function(&mut self, name: &str, args: &str) -> Result<String, String> {
        match name {
            "LEN" => Ok(args.chars().count().to_string()),
            "UPPER" => Ok(args.to_uppercase()),
            "IF" => {
                let (condition, choices) = args.split_once('?').ok_or("IF without '?'")?;
                let (yes, no) = choices.split_once(':').unwrap_or((choices, ""));
                Ok(if evaluate(condition).is_ok_and(|v| !v.is_empty() && v != "0") { yes } else { no }.to_owned())
            }
            "CALLERID" => Ok(self.variable("CALLERID(num)").unwrap_or_default()),
            other => Err(format!("no function {other}")),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    match choice % 3 {
        0 => {
            let value = evaluate(&text);
            if !text.contains(['$', '[', ']']) {
                let mut scope = Vars { values: Vec::new() };
                assert_eq!(substitute(&format!("$[{text}]"), &mut scope), value.unwrap_or_default());
            }
        }
        1 => {
            // The first lines are values: the caller's number, EXTEN, and a variable X.
            let mut lines = text.splitn(4, '\n');
            let mut next = || lines.next().unwrap_or("").to_owned();
            let (number, exten, x, template) = (next(), next(), next(), next());
            let mut scope =
                Vars { values: vec![("CALLERID(num)".into(), number), ("EXTEN".into(), exten), ("X".into(), x)] };
            let out = substitute(&template, &mut scope);
            if !template.contains('$') {
                assert_eq!(out, template);
            }
        }
        _ => {
            let (pattern, digits) = text.split_once('\n').unwrap_or((&text, ""));
            let matched = matches(pattern, digits, Mode::Match);
            let can = matches(pattern, digits, Mode::CanMatch);
            let _ = matches(pattern, digits, Mode::MatchMore);
            let _ = early_match(pattern, digits);
            // (Digits that are themselves a pattern match an equal pattern in Match mode only,
            // as pbx.c's "_x. will not match _x." case.)
            assert!(!matched || can || digits.starts_with('_'), "{pattern:?} matches {digits:?} but cannot match it");
            assert_eq!(ext_cmp(pattern, digits), ext_cmp(digits, pattern).reverse());
            assert_eq!(ext_cmp(pattern, pattern), Ordering::Equal);
        }
    }
});
