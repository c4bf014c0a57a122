//! `extensions.conf`: contexts, extensions and priorities, includes, and finding where a call
//! goes — the data the PBX loop walks.
//!
//! ```text
//! [general]
//! static = yes
//! [globals]
//! TRUNK = SIP/provider
//! [default]
//! exten => 100,1,Answer()
//!  same => n(again),Playback(hello-world)
//! exten => _9NXX.,1,Dial(${TRUNK}/${EXTEN:1})
//! exten => 200/5551212,1,Hangup()          ; only for caller ID 5551212
//! include => office,9:00-17:00,mon-fri,*,*
//! ignorepat => 9
//! ```
//!
//! Every problem is reported as `extensions.conf:LINE: what`, all at once; `switch =>` is refused
//! clearly (not supported). Within a context extensions are kept in Asterisk's order
//! ([`crate::pattern::ext_cmp`]), so the first match found is Asterisk's.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use starling_core::config::{parse_bool, Config, ConfigError, ConfigErrors, Location, Variable};

use crate::matcher::Index;
use crate::pattern::{early_match, ext_cmp, matches, Mode};
use crate::timing::{TimeOfDay, Timing};

/// The priority number Asterisk gives hints.
pub const PRIORITY_HINT: u32 = u32::MAX;

/// One step of an extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Priority {
    pub number: u32,
    pub label: Option<String>,
    pub app: String,
    pub data: String,
    pub location: Location,
}

/// An extension (with an optional caller ID pattern) and its priorities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    pub name: String,
    pub cid: Option<String>,
    pub priorities: BTreeMap<u32, Priority>,
}

impl Extension {
    pub fn priority(&self, number: u32) -> Option<&Priority> {
        self.priorities.get(&number)
    }
    /// The priority with this label.
    pub fn label(&self, label: &str) -> Option<&Priority> {
        self.priorities.values().find(|p| p.label.as_deref() == Some(label))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Include {
    pub context: String,
    pub timing: Option<Timing>,
    pub spec: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    pub name: String,
    /// In Asterisk's order.
    pub extensions: Vec<Extension>,
    pub includes: Vec<Include>,
    pub ignore_patterns: Vec<String>,
    /// For `Match` lookups (built once the extensions are sorted).
    index: Index,
    /// Extensions the index cannot hold, tried one by one.
    unindexed: Vec<usize>,
}

/// `[general]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct General {
    pub static_: bool,
    pub writeprotect: bool,
    pub clearglobalvars: bool,
    pub autofallthrough: bool,
}

impl Default for General {
    fn default() -> Self {
        General { static_: true, writeprotect: false, clearglobalvars: false, autofallthrough: true }
    }
}

/// The whole dialplan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dialplan {
    pub general: General,
    pub globals: Vec<(String, String)>,
    contexts: BTreeMap<String, Context>,
}

/// Where a search led.
#[derive(Clone, Copy, Debug)]
pub struct Found<'a> {
    pub context: &'a Context,
    pub extension: &'a Extension,
}

/// Splits `App(args)` (or the old `App,args`) into name and data.
pub fn split_application(text: &str) -> (String, String) {
    let text = text.trim();
    match text.find(['(', ',']) {
        Some(i) if text.as_bytes()[i] == b'(' => {
            let data = &text[i + 1..];
            let data = data.strip_suffix(')').unwrap_or(data);
            (text[..i].trim().to_owned(), data.to_owned())
        }
        Some(i) => (text[..i].trim().to_owned(), text[i + 1..].to_owned()),
        None => (text.to_owned(), String::new()),
    }
}

/// Splits at commas outside parentheses, brackets and braces (`${CUT(a,b,c)},2` is two fields).
fn split_top(text: &str, max: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth <= 0 && parts.len() + 1 < max => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

impl Dialplan {
    /// Reads an extensions.conf already parsed by the core's `.conf` parser.
    pub fn from_config(config: &Config) -> Result<Dialplan, ConfigErrors> {
        let mut plan = Dialplan::default();
        let mut errors = ConfigErrors::default();
        for section in config.sections() {
            match section.name.as_str() {
                "general" => {
                    for var in &section.variables {
                        let slot = match var.name.to_ascii_lowercase().as_str() {
                            "static" => &mut plan.general.static_,
                            "writeprotect" => &mut plan.general.writeprotect,
                            "clearglobalvars" => &mut plan.general.clearglobalvars,
                            "autofallthrough" => &mut plan.general.autofallthrough,
                            // Asterisk's other [general] options; not used here yet.
                            "extenpatternmatchnew" | "userscontext" | "priorityjumping" => continue,
                            _ => {
                                errors.push(ConfigError::at(
                                    &var.location,
                                    format!("unknown option '{}' in [general]", var.name),
                                ));
                                continue;
                            }
                        };
                        match parse_bool(&var.value) {
                            Some(b) => *slot = b,
                            None => errors.push(var.error("expected yes or no")),
                        }
                    }
                }
                "globals" => {
                    for var in &section.variables {
                        plan.globals.push((var.name.clone(), var.value.clone()));
                    }
                }
                name => {
                    let mut context = plan.contexts.remove(name).unwrap_or_else(|| Context {
                        name: name.to_owned(),
                        extensions: Vec::new(),
                        includes: Vec::new(),
                        ignore_patterns: Vec::new(),
                        index: Index::default(),
                        unindexed: Vec::new(),
                    });
                    let mut last: Option<(String, Option<String>, u32)> = None;
                    for var in &section.variables {
                        if let Err(e) = add_line(&mut context, var, &mut last) {
                            errors.push(e);
                        }
                    }
                    plan.contexts.insert(name.to_owned(), context);
                }
            }
        }
        for context in plan.contexts.values_mut() {
            // Caller-ID variants of one extension come before the plain one.
            context.extensions.sort_by(|a, b| {
                ext_cmp(&a.name, &b.name).then_with(|| a.cid.is_some().cmp(&b.cid.is_some()).reverse())
            });
            let (index, unindexed) = Index::build(context.extensions.iter().map(|e| e.name.as_str()));
            context.index = index;
            context.unindexed = unindexed;
        }
        errors.into_result(plan)
    }

    pub fn context(&self, name: &str) -> Option<&Context> {
        self.contexts.get(name)
    }

    pub fn contexts(&self) -> impl Iterator<Item = &Context> {
        self.contexts.values()
    }

    /// Includes that name a context that does not exist (Asterisk warns about them).
    pub fn dangling_includes(&self) -> Vec<(String, String)> {
        self.contexts
            .values()
            .flat_map(|c| {
                c.includes
                    .iter()
                    .filter(|i| !self.contexts.contains_key(&i.context))
                    .map(move |i| (c.name.clone(), i.context.clone()))
            })
            .collect()
    }

    /// Finds the extension `exten` in `context` (and what it includes, in order, those whose
    /// time condition holds `now`) for `mode`; `callerid` is matched against `/cid` patterns.
    pub fn find(
        &self,
        context: &str,
        exten: &str,
        callerid: Option<&str>,
        mode: Mode,
        now: &TimeOfDay,
    ) -> Option<Found<'_>> {
        let mut visited = HashSet::new();
        match self.find_in(context, exten, callerid, mode, now, &mut visited) {
            Search::Found(f) => Some(f),
            Search::Stop | Search::NotFound => None,
        }
    }

    fn find_in<'a>(
        &'a self,
        name: &str,
        exten: &str,
        callerid: Option<&str>,
        mode: Mode,
        now: &TimeOfDay,
        visited: &mut HashSet<String>,
    ) -> Search<'a> {
        if !visited.insert(name.to_owned()) {
            return Search::NotFound; // an include loop
        }
        let Some(context) = self.contexts.get(name) else { return Search::NotFound };
        let cid_ok = |extension: &Extension| {
            extension.cid.as_ref().is_none_or(|cid| callerid.is_some_and(|c| matches(cid, c, Mode::Match)))
        };
        if mode == Mode::Match {
            // Through the index: every candidate, then the first in Asterisk's order.
            let mut candidates = Vec::new();
            context.index.candidates(exten, &mut candidates);
            candidates.extend(
                context.unindexed.iter().copied().filter(|i| matches(&context.extensions[*i].name, exten, mode)),
            );
            candidates.sort_unstable();
            candidates.dedup();
            if let Some(extension) = candidates.into_iter().map(|i| &context.extensions[i]).find(|e| cid_ok(e)) {
                return Search::Found(Found { context, extension });
            }
        }
        for extension in context.extensions.iter().filter(|_| mode != Mode::Match) {
            if mode == Mode::MatchMore && early_match(&extension.name, exten) {
                return Search::Stop;
            }
            if matches(&extension.name, exten, mode) && cid_ok(extension) {
                return Search::Found(Found { context, extension });
            }
        }
        for include in &context.includes {
            if include.timing.as_ref().is_some_and(|t| !t.matches(now)) {
                continue;
            }
            match self.find_in(&include.context, exten, callerid, mode, now, visited) {
                Search::NotFound => {}
                other => return other,
            }
        }
        Search::NotFound
    }

    /// `dialplan show [context]`, in Asterisk's layout.
    pub fn show(&self, only: Option<&str>) -> String {
        let mut out = String::new();
        let (mut extensions, mut priorities, mut contexts) = (0, 0, 0);
        for context in self.contexts.values().filter(|c| only.is_none_or(|o| o == c.name)) {
            contexts += 1;
            let _ = writeln!(out, "[ Context '{}' created by 'pbx_config' ]", context.name);
            for e in &context.extensions {
                extensions += 1;
                let mut first = true;
                for p in e.priorities.values() {
                    priorities += 1;
                    let head = if first {
                        match &e.cid {
                            Some(cid) => format!("'{}' (CID match '{}') =>", e.name, cid),
                            None => format!("'{}' =>", e.name),
                        }
                    } else {
                        String::new()
                    };
                    first = false;
                    let step = if p.number == PRIORITY_HINT {
                        format!("hint: {}", p.app)
                    } else {
                        match &p.label {
                            Some(label) => format!("{}. {}({}) [{label}]", p.number, p.app, p.data),
                            None => format!("{}. {}({})", p.number, p.app, p.data),
                        }
                    };
                    let _ = writeln!(out, "  {head:<17} {step:<45} [{}]", p.location);
                }
            }
            for include in &context.includes {
                let _ = writeln!(out, "  Include =>        {:<45} [pbx_config]", format!("'{}'", include.spec));
            }
            for pattern in &context.ignore_patterns {
                let _ = writeln!(out, "  Ignore pattern => {:<45} [pbx_config]", format!("'{pattern}'"));
            }
            out.push('\n');
        }
        let plural = |n: usize, word: &str| if n == 1 { format!("{n} {word}") } else { format!("{n} {word}s") };
        let _ = writeln!(
            out,
            "-= {} ({}) in {}. =-",
            plural(extensions, "extension"),
            plural(priorities, "priority").replace("prioritys", "priorities"),
            plural(contexts, "context")
        );
        out
    }
}

enum Search<'a> {
    Found(Found<'a>),
    /// A MatchMore search met `!`: no more digits needed, stop looking.
    Stop,
    NotFound,
}

fn add_line(
    context: &mut Context,
    var: &Variable,
    last: &mut Option<(String, Option<String>, u32)>,
) -> Result<(), ConfigError> {
    let key = var.name.to_ascii_lowercase();
    match key.as_str() {
        "exten" | "same" => {
            let (name, cid, rest) = if key == "same" {
                let (name, cid, _) =
                    last.clone().ok_or_else(|| var.error("'same =>' needs an 'exten =>' before it"))?;
                (name, cid, var.value.as_str())
            } else {
                let mut parts = split_top(&var.value, 2).into_iter();
                let ext = parts.next().unwrap_or("").trim();
                let rest = parts
                    .next()
                    .ok_or_else(|| var.error("expected exten => extension,priority,Application(arguments)"))?;
                if ext.is_empty() {
                    return Err(var.error("the extension is empty"));
                }
                let (name, cid) = match ext.split_once('/') {
                    Some((n, c)) => (n.trim().to_owned(), Some(c.trim().to_owned())),
                    None => (ext.to_owned(), None),
                };
                (name, cid, rest)
            };
            let mut parts = split_top(rest, 2).into_iter();
            let priority_text = parts.next().unwrap_or("").trim();
            let app_text = parts.next().unwrap_or("").trim();
            let (priority_word, label) = match priority_text.split_once('(') {
                Some((p, l)) => (p.trim(), Some(l.trim_end_matches(')').trim().to_owned())),
                None => (priority_text, None),
            };
            let previous = last.as_ref().filter(|(n, c, _)| *n == name && *c == cid).map(|(_, _, p)| *p);
            let number = match priority_word.to_ascii_lowercase().as_str() {
                "n" => {
                    previous.ok_or_else(|| var.error("priority 'n' needs an earlier priority of the same extension"))?
                        + 1
                }
                "hint" => PRIORITY_HINT,
                "s" => previous.unwrap_or(0) + 1,
                word => match word.parse::<u32>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(var.error(format!("bad priority '{priority_word}'"))),
                },
            };
            if app_text.is_empty() && number != PRIORITY_HINT {
                return Err(var.error("no application"));
            }
            let (app, data) = if number == PRIORITY_HINT {
                (app_text.to_owned(), String::new())
            } else {
                split_application(app_text)
            };
            let index = match context.extensions.iter().position(|e| e.name == name && e.cid == cid) {
                Some(i) => i,
                None => {
                    context.extensions.push(Extension {
                        name: name.clone(),
                        cid: cid.clone(),
                        priorities: BTreeMap::new(),
                    });
                    context.extensions.len() - 1
                }
            };
            let extension = &mut context.extensions[index];
            if let Some(existing) = extension.priorities.get(&number) {
                return Err(var.error(format!(
                    "priority {number} of {name}@{} is already defined at {}",
                    context.name, existing.location
                )));
            }
            if let Some(label) = &label {
                if extension.label(label).is_some() {
                    return Err(var.error(format!("label '{label}' is already used in {name}@{}", context.name)));
                }
            }
            extension.priorities.insert(number, Priority { number, label, app, data, location: var.location.clone() });
            if number != PRIORITY_HINT {
                *last = Some((name, cid, number));
            }
            Ok(())
        }
        "include" => {
            let mut parts = split_top(&var.value, 2).into_iter();
            let name = parts.next().unwrap_or("").trim().to_owned();
            if name.is_empty() {
                return Err(var.error("expected a context name"));
            }
            let timing = match parts.next() {
                Some(spec) => Some(Timing::parse(spec).map_err(|e| var.error(e))?),
                None => None,
            };
            context.includes.push(Include { context: name, timing, spec: var.value.trim().to_owned() });
            Ok(())
        }
        "ignorepat" => {
            context.ignore_patterns.push(var.value.trim().to_owned());
            Ok(())
        }
        "switch" | "lswitch" | "eswitch" => {
            Err(var.error("switches are not supported (use include => or Dial(IAX2/...) instead)"))
        }
        _ => Err(ConfigError::at(
            &var.location,
            format!("unknown line '{}' in [{}]: expected exten, same, include, ignorepat", var.name, context.name),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "[general]\nstatic=yes\nwriteprotect=no\n[globals]\nTRUNK=SIP/provider\n\
[default]\n\
exten => 100,1,Answer()\n\
 same => n(again),Playback(hello-world)\n\
 same => n,Goto(again)\n\
exten => _1XX,1,NoOp(pattern ${EXTEN})\n\
exten => _9NXX.,1,Dial(${TRUNK}/${EXTEN:1},30)\n\
exten => 200/5551212,1,Hangup(21)\n\
exten => 200,1,Answer\n\
exten => 100,hint,SIP/alice\n\
include => office,9:00-17:00,mon-fri,*,*\n\
include => always\n\
ignorepat => 9\n\
[office]\nexten => 300,1,Dial(SIP/reception)\n\
[always]\nexten => _3XX,1,Playback(closed)\nexten => _7!,1,NoOp(early)\n";

    fn plan() -> Dialplan {
        Dialplan::from_config(&Config::parse_str("extensions.conf", CONF).unwrap()).unwrap_or_else(|e| panic!("{e}"))
    }

    const MONDAY_NOON: TimeOfDay = TimeOfDay { weekday: 1, mday: 2, month: 3, hour: 12, minute: 0 };
    const SUNDAY: TimeOfDay = TimeOfDay { weekday: 0, mday: 1, month: 3, hour: 12, minute: 0 };

    #[test]
    fn parses_priorities_labels_hints_and_apps() {
        let p = plan();
        let default = p.context("default").unwrap();
        let e100 = default.extensions.iter().find(|e| e.name == "100").unwrap();
        assert_eq!(e100.priority(1).unwrap().app, "Answer");
        let again = e100.label("again").unwrap();
        assert_eq!((again.number, again.app.as_str(), again.data.as_str()), (2, "Playback", "hello-world"));
        assert_eq!(e100.priority(3).unwrap().data, "again");
        assert_eq!(e100.priority(PRIORITY_HINT).unwrap().app, "SIP/alice");
        assert_eq!(e100.priority(2).unwrap().location.to_string(), "extensions.conf:8");
        let dial = &default.extensions.iter().find(|e| e.name == "_9NXX.").unwrap().priorities[&1];
        assert_eq!((dial.app.as_str(), dial.data.as_str()), ("Dial", "${TRUNK}/${EXTEN:1},30"));
        assert_eq!(p.globals, [("TRUNK".to_owned(), "SIP/provider".to_owned())]);
        assert_eq!(split_application("Goto,ctx,s,1"), ("Goto".into(), "ctx,s,1".into()));
        assert_eq!(split_application("Set(X=${CUT(a,b)})"), ("Set".into(), "X=${CUT(a,b)}".into()));
    }

    #[test]
    fn finds_exact_before_pattern_and_through_includes_by_time() {
        let p = plan();
        let find = |ext: &str, cid: Option<&str>, now: &TimeOfDay| {
            p.find("default", ext, cid, Mode::Match, now).map(|f| (f.context.name.clone(), f.extension.name.clone()))
        };
        assert_eq!(find("100", None, &MONDAY_NOON), Some(("default".into(), "100".into())));
        assert_eq!(find("150", None, &MONDAY_NOON), Some(("default".into(), "_1XX".into())));
        assert_eq!(
            find("300", None, &MONDAY_NOON),
            Some(("office".into(), "300".into())),
            "office hours: office first"
        );
        assert_eq!(find("300", None, &SUNDAY), Some(("always".into(), "_3XX".into())), "closed: the next include");
        assert_eq!(find("999", None, &MONDAY_NOON), None);
        let hangup = p.find("default", "200", Some("5551212"), Mode::Match, &SUNDAY).unwrap();
        assert_eq!(hangup.extension.cid.as_deref(), Some("5551212"), "caller ID match first");
        let answer = p.find("default", "200", Some("5550000"), Mode::Match, &SUNDAY).unwrap();
        assert_eq!(answer.extension.cid, None);
        assert!(p.find("default", "9", None, Mode::MatchMore, &SUNDAY).is_some(), "9 could become _9NXX.");
        assert!(p.find("default", "7", None, Mode::MatchMore, &SUNDAY).is_none(), "_7! says do not wait");
        assert!(p.find("default", "7", None, Mode::Match, &SUNDAY).is_some());
    }

    #[test]
    fn errors_name_their_lines_and_switch_is_refused() {
        let text = "[c]\nexten => 1,1,NoOp\nexten => 1,1,NoOp\n same => n\nexten => 2,n,NoOp\nexten => 3,x,NoOp\nswitch => IAX2/box\nfoo => bar\n[d]\nsame => n,NoOp\ninclude => x,25:00-26:00,*,*,*\n";
        let e = Dialplan::from_config(&Config::parse_str("extensions.conf", text).unwrap()).unwrap_err().to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 8, "{e}");
        assert!(
            lines[0].starts_with(
                "extensions.conf:3: exten '1,1,NoOp': priority 1 of 1@c is already defined at extensions.conf:2"
            ),
            "{e}"
        );
        assert!(lines[1].starts_with("extensions.conf:4:") && lines[1].contains("no application"), "{e}");
        assert!(lines[2].starts_with("extensions.conf:5:") && lines[2].contains("priority 'n' needs"), "{e}");
        assert!(lines[3].starts_with("extensions.conf:6:") && lines[3].contains("bad priority 'x'"), "{e}");
        assert!(lines[4].starts_with("extensions.conf:7:") && lines[4].contains("switches are not supported"), "{e}");
        assert!(lines[5].starts_with("extensions.conf:8: unknown line 'foo'"), "{e}");
        assert!(lines[6].starts_with("extensions.conf:10:") && lines[6].contains("'same =>' needs"), "{e}");
        assert!(lines[7].starts_with("extensions.conf:11:") && lines[7].contains("bad time condition"), "{e}");
    }

    #[test]
    fn dialplan_show_layout() {
        let p = plan();
        let out = p.show(Some("default"));
        // "  %-17s %-45s [%s]" as Asterisk's show_dialplan_helper prints.
        let expected_head = "[ Context 'default' created by 'pbx_config' ]\n  '100' =>          1. Answer()                                   [extensions.conf:7]\n                    2. Playback(hello-world) [again]              [extensions.conf:8]\n";
        assert!(out.starts_with(expected_head), "{out}");
        assert!(out.contains("hint: SIP/alice"), "{out}");
        assert!(out.contains("  '200' (CID match '5551212') =>"), "{out}");
        assert!(out.contains("  Include =>        'office,9:00-17:00,mon-fri,*,*'"), "{out}");
        assert!(out.contains("  Ignore pattern => '9'"), "{out}");
        assert!(out.ends_with("-= 5 extensions (8 priorities) in 1 context. =-\n"), "{out}");
        // Extensions listed in Asterisk's order: exact ones, then patterns by specificity.
        let order: Vec<&str> = out
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix('\''))
            .map(|l| l.split('\'').next().unwrap())
            .collect();
        assert_eq!(order, ["100", "200", "200", "_1XX", "_9NXX."]);
        assert!(p.dangling_includes().is_empty());
    }
}
