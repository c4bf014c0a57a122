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
//! clearly (not supported). As pbx_config reads it: `[globals]` values, extension names,
//! `include =>` and `ignorepat =>` are substituted with the globals read so far; a priority is
//! a number, `n`/`next` (one more than the last line's, in this context), `s`/`same`, `hint`, or
//! a label of the extension, each optionally `+N`. Within a context extensions are kept in
//! Asterisk's order ([`crate::pattern::ext_cmp`]), so the first match found is Asterisk's; a
//! search asks for a priority too, and an extension that matches but lacks it lets the next
//! match (or include) answer, as pbx.c's `pbx_find_extension` does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use starling_core::config::{parse_bool, Config, ConfigError, ConfigErrors, Location, Variable};

use crate::matcher::Index;
use crate::pattern::{early_match, ext_cmp, matches, Mode};
use crate::substitute::{substitute, Scope};
use crate::timing::{TimeOfDay, Timing};

/// The priority number Asterisk gives hints.
pub const PRIORITY_HINT: u32 = u32::MAX;

/// How many contexts one search may look in, following includes ([`Dialplan::find`]):
/// Asterisk's `AST_PBX_MAX_STACK`. Past it the search finds nothing, with pbx.c's warning;
/// it also bounds the search's recursion (a chain of contexts, each including the next).
pub const MAX_PBX_STACK: usize = 512;

/// Who registered what `dialplan show` lists without a file line (the CLI's additions).
pub const REGISTRAR: &str = "pbx_config";

/// One step of an extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Priority {
    pub number: u32,
    pub label: Option<String>,
    pub app: String,
    pub data: String,
    /// The file line it came from; `None` when added at run time (`dialplan add extension`).
    pub location: Option<Location>,
}

/// An extension (with an optional caller ID pattern) and its priorities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    pub name: String,
    /// `exten => name/cid`: the caller ID pattern (empty: only calls without a caller ID).
    pub cid: Option<String>,
    pub priorities: BTreeMap<u32, Priority>,
}

impl Extension {
    /// The priorities in Asterisk's order: the hint (priority -1 there) first.
    pub fn in_order(&self) -> impl Iterator<Item = &Priority> {
        self.priorities.get(&PRIORITY_HINT).into_iter().chain(self.priorities.range(..PRIORITY_HINT).map(|(_, p)| p))
    }
    pub fn priority(&self, number: u32) -> Option<&Priority> {
        self.priorities.get(&number)
    }
    /// The priority with this label.
    pub fn label(&self, label: &str) -> Option<&Priority> {
        self.priorities.values().find(|p| p.label.as_deref() == Some(label))
    }
    fn wanted(&self, want: Want<'_>) -> Option<&Priority> {
        match want {
            Want::Priority(n) => self.priority(n),
            Want::Label(l) => self.label(l),
        }
    }
}

/// Which priority a search wants (pbx.c passes a priority or a label to every search).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want<'a> {
    Priority(u32),
    Label(&'a str),
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

impl Context {
    fn new(name: &str) -> Context {
        Context {
            name: name.to_owned(),
            extensions: Vec::new(),
            includes: Vec::new(),
            ignore_patterns: Vec::new(),
            index: Index::default(),
            unindexed: Vec::new(),
        }
    }

    /// Sorts the extensions in Asterisk's order and rebuilds the index (after any change).
    fn sort(&mut self) {
        // As ast_add_extension2: same extension, the caller-ID variants first, in their order.
        self.extensions.sort_by(|a, b| {
            ext_cmp(&a.name, &b.name).then_with(|| match (&a.cid, &b.cid) {
                (Some(x), Some(y)) => ext_cmp(x, y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
        });
        let (index, unindexed) = Index::build(self.extensions.iter().map(|e| e.name.as_str()));
        self.index = index;
        self.unindexed = unindexed;
    }

    /// Adds one priority (a file line, or `dialplan add extension`); `replace` overwrites a
    /// priority that exists.
    fn add_priority(
        &mut self,
        name: &str,
        cid: Option<&str>,
        priority: Priority,
        replace: bool,
    ) -> Result<(), AddError> {
        let index = match self.extensions.iter().position(|e| e.name == name && e.cid.as_deref() == cid) {
            Some(i) => i,
            None => {
                self.extensions.push(Extension {
                    name: name.to_owned(),
                    cid: cid.map(str::to_owned),
                    priorities: BTreeMap::new(),
                });
                self.extensions.len() - 1
            }
        };
        let extension = &mut self.extensions[index];
        if !replace {
            if let Some(existing) = extension.priorities.get(&priority.number) {
                return Err(AddError::PriorityExists(existing.location.clone()));
            }
        }
        if let Some(label) = &priority.label {
            if extension.label(label).is_some_and(|p| p.number != priority.number) {
                return Err(AddError::LabelExists(label.clone()));
            }
        }
        extension.priorities.insert(priority.number, priority);
        Ok(())
    }
}

#[derive(Debug)]
enum AddError {
    PriorityExists(Option<Location>),
    LabelExists(String),
}

/// `[general]`. Asterisk reads `static`, `writeprotect` and `clearglobalvars` with `ast_true`:
/// absent means no. `dialplan save` works only with `static = yes` and `writeprotect = no`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct General {
    pub static_: bool,
    pub writeprotect: bool,
    pub clearglobalvars: bool,
    pub autofallthrough: bool,
}

impl Default for General {
    fn default() -> Self {
        General { static_: false, writeprotect: false, clearglobalvars: false, autofallthrough: true }
    }
}

/// The whole dialplan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dialplan {
    pub general: General,
    /// `[globals]`, in file order, values substituted.
    pub globals: Vec<(String, String)>,
    contexts: BTreeMap<String, Context>,
    /// Context names in the order they were created (Asterisk lists the newest first).
    order: Vec<String>,
}

/// Where a search led.
#[derive(Clone, Copy, Debug)]
pub struct Found<'a> {
    pub context: &'a Context,
    pub extension: &'a Extension,
    /// The priority the search asked for.
    pub priority: &'a Priority,
}

/// Splits a file line's `App(args)` into name and data as pbx_config does: the data ends at
/// the last `)`; without a `(` the whole text is the application's name (so the old `App,args`
/// form names an application that does not exist, as in Asterisk).
pub fn split_file_application(text: &str) -> (String, String) {
    let text = text.trim();
    match text.find('(') {
        Some(i) => {
            let data = &text[i + 1..];
            let data = data.rfind(')').map_or(data, |end| &data[..end]);
            (text[..i].trim().to_owned(), data.to_owned())
        }
        None => (text.to_owned(), String::new()),
    }
}

/// Splits `App(args)` or the old `App,args` (which the CLI's `dialplan add extension` accepts)
/// into name and data.
pub fn split_application(text: &str) -> (String, String) {
    let text = text.trim();
    match text.find(['(', ',']) {
        Some(i) if text.as_bytes()[i] == b'(' => {
            let data = &text[i + 1..];
            let data = match data.rfind(')') {
                Some(end) => &data[..end],
                None => data,
            };
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

/// Asterisk's `ast_shrink_phone_number` for `exten => x/cid`: drops `( ) -` spaces and
/// inner dots outside sets.
fn shrink_phone_number(n: &str) -> String {
    let mut out = String::new();
    let mut bracketed = 0i32;
    let chars: Vec<char> = n.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '[' => {
                bracketed += 1;
                out.push(c);
            }
            ']' => {
                bracketed -= 1;
                out.push(c);
            }
            '-' if bracketed > 0 => out.push(c),
            '-' => {}
            '.' if i + 1 == chars.len() => out.push(c),
            '.' => {}
            '(' | ')' | ' ' => {}
            _ => out.push(c),
        }
    }
    out
}

/// Substitution while reading the file: only the globals read so far (pbx_config substitutes
/// with no channel).
struct GlobalsScope<'a>(&'a HashMap<String, String>);

impl Scope for GlobalsScope<'_> {
    fn variable(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
    fn function(&mut self, name: &str, _: &str) -> Result<String, String> {
        Err(format!("{name}() cannot be used in extensions.conf outside a call"))
    }
}

/// The running state of one context while its lines are read (pbx_config's `lastextension`
/// and `lastpri`, reset at each context).
#[derive(Default)]
struct Cursor {
    /// `name` or `name/cid`, as `same =>` repeats it.
    extension: Option<String>,
    priority: Option<u32>,
}

impl Dialplan {
    /// Reads an extensions.conf already parsed by the core's `.conf` parser.
    pub fn from_config(config: &Config) -> Result<Dialplan, ConfigErrors> {
        let mut plan = Dialplan::default();
        let mut errors = ConfigErrors::default();
        let mut globals = HashMap::new();
        // [general] and [globals] first, wherever they are, as pbx_config reads them.
        for section in config.sections() {
            if section.name.eq_ignore_ascii_case("general") {
                for var in &section.variables {
                    let slot = match var.name.to_ascii_lowercase().as_str() {
                        "static" => &mut plan.general.static_,
                        "writeprotect" => &mut plan.general.writeprotect,
                        "clearglobalvars" => &mut plan.general.clearglobalvars,
                        "autofallthrough" => &mut plan.general.autofallthrough,
                        "overrideswitch" if var.value.trim().is_empty() => continue,
                        "overrideswitch" => {
                            errors.push(var.error("switches are not supported (use include => instead)"));
                            continue;
                        }
                        // Asterisk's other [general] options; they change nothing here.
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
            } else if section.name.eq_ignore_ascii_case("globals") {
                for var in &section.variables {
                    let value = substitute(&var.value, &mut GlobalsScope(&globals));
                    globals.insert(var.name.clone(), value.clone());
                    plan.globals.push((var.name.clone(), value));
                }
            }
        }
        for section in config.sections() {
            let name = section.name.as_str();
            if name.eq_ignore_ascii_case("general") || name.eq_ignore_ascii_case("globals") {
                continue;
            }
            let mut context = match plan.contexts.remove(name) {
                Some(c) => c,
                None => {
                    plan.order.push(name.to_owned());
                    Context::new(name)
                }
            };
            let mut cursor = Cursor::default();
            for var in &section.variables {
                if let Err(e) = add_line(&mut context, var, &mut cursor, &globals) {
                    errors.push(e);
                }
            }
            plan.contexts.insert(name.to_owned(), context);
        }
        for context in plan.contexts.values_mut() {
            context.sort();
        }
        errors.into_result(plan)
    }

    /// Every hint: `(context, exten, devices)`, in the dialplan's order.
    pub fn hints(&self) -> Vec<(String, String, String)> {
        self.contexts()
            .flat_map(|c| {
                c.extensions.iter().filter_map(|e| {
                    e.priorities.get(&PRIORITY_HINT).map(|p| (c.name.clone(), e.name.clone(), p.app.clone()))
                })
            })
            .collect()
    }

    pub fn context(&self, name: &str) -> Option<&Context> {
        self.contexts.get(name)
    }

    /// The contexts, in the order `dialplan show` lists them (the newest first, as Asterisk).
    pub fn contexts(&self) -> impl Iterator<Item = &Context> {
        self.order.iter().rev().filter_map(|n| self.contexts.get(n))
    }

    /// Includes that name a context that does not exist (Asterisk warns about them).
    pub fn dangling_includes(&self) -> Vec<(String, String)> {
        self.contexts()
            .flat_map(|c| {
                c.includes
                    .iter()
                    .filter(|i| !self.contexts.contains_key(&i.context))
                    .map(move |i| (c.name.clone(), i.context.clone()))
            })
            .collect()
    }

    /// Finds the extension `exten` in `context` (and what it includes, in order, those whose
    /// time condition holds `now`) for `mode`, at priority 1 — Asterisk's
    /// `ast_exists_extension`/`ast_canmatch_extension`/`ast_matchmore_extension`.
    /// `callerid` is matched against `/cid` patterns.
    pub fn find(
        &self,
        context: &str,
        exten: &str,
        callerid: Option<&str>,
        mode: Mode,
        now: &TimeOfDay,
    ) -> Option<Found<'_>> {
        self.find_at(context, exten, callerid, mode, Want::Priority(1), now)
    }

    /// As [`Dialplan::find`], for the priority (or label) `want`: the first extension in
    /// Asterisk's order that matches and has it.
    pub fn find_at(
        &self,
        context: &str,
        exten: &str,
        callerid: Option<&str>,
        mode: Mode,
        want: Want<'_>,
        now: &TimeOfDay,
    ) -> Option<Found<'_>> {
        let mut visited = HashSet::new();
        let callerid = callerid.filter(|c| !c.is_empty());
        match self.find_in(context, exten, callerid, mode, want, now, &mut visited) {
            Search::Found(f) => Some(f),
            Search::Stop | Search::NotFound => None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn find_in<'a>(
        &'a self,
        name: &str,
        exten: &str,
        callerid: Option<&str>,
        mode: Mode,
        want: Want<'_>,
        now: &TimeOfDay,
        visited: &mut HashSet<String>,
    ) -> Search<'a> {
        if visited.len() >= MAX_PBX_STACK {
            starling_core::tracing::warn!("Maximum PBX stack ({MAX_PBX_STACK}) exceeded. Too many includes?");
            return Search::Stop;
        }
        if !visited.insert(name.to_ascii_lowercase()) {
            return Search::NotFound; // an include loop
        }
        let Some(context) = self.contexts.get(name) else { return Search::NotFound };
        // pbx.c's matchcid: an empty pattern matches calls without a caller ID.
        let cid_ok = |extension: &Extension| match &extension.cid {
            None => true,
            Some(cid) => callerid.map_or(cid.is_empty(), |c| matches(cid, c, Mode::Match)),
        };
        if mode == Mode::Match {
            // Through the index: every candidate, then the first in Asterisk's order.
            let mut candidates = Vec::new();
            context.index.candidates(exten, &mut candidates);
            candidates.extend(
                context.unindexed.iter().copied().filter(|i| matches(&context.extensions[*i].name, exten, mode)),
            );
            if exten.starts_with('_') {
                // A pattern asked for by name (pbx.c compares it as a pattern first).
                candidates.extend((0..context.extensions.len()).filter(|i| {
                    let name = &context.extensions[*i].name;
                    name.starts_with('_') && ext_cmp(name, exten).is_eq()
                }));
            }
            candidates.sort_unstable();
            candidates.dedup();
            for extension in candidates.into_iter().map(|i| &context.extensions[i]) {
                if !cid_ok(extension) {
                    continue;
                }
                if let Some(priority) = extension.wanted(want) {
                    return Search::Found(Found { context, extension, priority });
                }
            }
        } else {
            for extension in &context.extensions {
                if !matches(&extension.name, exten, Mode::CanMatch) || !cid_ok(extension) {
                    continue;
                }
                if mode == Mode::MatchMore && early_match(&extension.name, exten) {
                    // "The decision in this case is final and is NULL (no match)."
                    return Search::Stop;
                }
                if !matches(&extension.name, exten, mode) {
                    continue;
                }
                if let Some(priority) = extension.wanted(want) {
                    return Search::Found(Found { context, extension, priority });
                }
            }
        }
        for include in &context.includes {
            if include.timing.as_ref().is_some_and(|t| !t.matches(now)) {
                continue;
            }
            // An early match (`!`) in an included context ends only that context's search;
            // a search that has looked in too many contexts ends (pbx.c returns NULL).
            match self.find_in(&include.context, exten, callerid, mode, want, now, visited) {
                Search::Found(f) => return Search::Found(f),
                Search::Stop if visited.len() >= MAX_PBX_STACK => return Search::Stop,
                Search::Stop | Search::NotFound => {}
            }
        }
        Search::NotFound
    }

    /// `dialplan show [[exten@]context]`, in Asterisk's layout (pbx.c's `show_dialplan_helper`
    /// and `handle_show_dialplan`). `Err` carries Asterisk's message for a context or
    /// extension that does not exist.
    pub fn show(&self, context: Option<&str>, exten: Option<&str>) -> Result<String, String> {
        let mut out = String::new();
        let mut counters = Counters::default();
        let mut stack = Vec::new();
        self.show_helper(&mut out, context, exten, &mut counters, false, &mut stack);
        if let (Some(c), false) = (context, counters.context_existence) {
            return Err(format!("There is no existence of '{c}' context\n"));
        }
        if let (Some(e), false) = (exten, counters.extension_existence) {
            return Err(match context {
                Some(c) => format!("There is no existence of {e}@{c} extension\n"),
                None => format!("There is no existence of '{e}' extension in all contexts\n"),
            });
        }
        let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let _ = writeln!(
            out,
            "-= {} ({}) in {}. =-",
            plural(counters.extensions, "extension", "extensions"),
            plural(counters.priorities, "priority", "priorities"),
            plural(counters.contexts, "context", "contexts")
        );
        Ok(out)
    }

    fn show_helper(
        &self,
        out: &mut String,
        only: Option<&str>,
        exten: Option<&str>,
        counters: &mut Counters,
        included: bool,
        stack: &mut Vec<String>,
    ) {
        // One context is looked up, not found among all (an include chain is shown level by level).
        let selected: Box<dyn Iterator<Item = &Context>> = match only {
            Some(name) => Box::new(self.context(name).into_iter()),
            None => Box::new(self.contexts()),
        };
        for context in selected {
            counters.context_existence = true;
            let mut printed = false;
            let header = |out: &mut String, counters: &mut Counters| {
                counters.contexts += 1;
                let kind = if included { "Included context" } else { "Context" };
                let _ = writeln!(out, "[ {kind} '{}' created by '{REGISTRAR}' ]", context.name);
            };
            if exten.is_none() {
                header(out, counters);
                printed = true;
            }
            for e in &context.extensions {
                if exten.is_some_and(|x| !matches(&e.name, x, Mode::Match)) {
                    continue;
                }
                counters.extension_existence = true;
                if !printed {
                    header(out, counters);
                    printed = true;
                }
                counters.extensions += 1;
                for (i, p) in e.in_order().enumerate() {
                    counters.priorities += 1;
                    let head = match (i, &e.cid, &p.label) {
                        (0, Some(cid), _) => format!("'{}' (CID match '{cid}') => ", e.name),
                        (0, None, _) => format!("'{}' =>", e.name),
                        (_, _, Some(label)) => format!("   [{label}]"),
                        (_, _, None) => String::new(),
                    };
                    let step = if p.number == PRIORITY_HINT {
                        format!("hint: {}", p.app)
                    } else {
                        format!("{}. {}({})", p.number, p.app, p.data)
                    };
                    let source = p.location.as_ref().map_or_else(|| REGISTRAR.to_owned(), ToString::to_string);
                    let _ = writeln!(out, "  {head:<17} {step:<45} [{source}]");
                }
            }
            for include in &context.includes {
                match exten {
                    Some(_)
                        if stack.len() >= MAX_PBX_STACK
                            || stack.iter().any(|s| s.eq_ignore_ascii_case(&include.context)) => {}
                    Some(_) => {
                        stack.push(include.context.clone());
                        self.show_helper(out, Some(&include.context), exten, counters, true, stack);
                        stack.pop();
                    }
                    None => {
                        let _ =
                            writeln!(out, "  Include =>        {:<45} [{REGISTRAR}]", format!("'{}'", include.spec));
                    }
                }
            }
            for pattern in &context.ignore_patterns {
                if exten.is_none_or(|x| matches(&format!("_{pattern}."), x, Mode::Match)) {
                    let _ = writeln!(out, "  Ignore pattern => {:<45} [{REGISTRAR}]", format!("'{pattern}'"));
                }
            }
            if printed {
                out.push('\n');
            }
        }
    }

    /// Whether the digits dialled so far match one of the context's `ignorepat`s, so an
    /// overlap-dialling driver keeps playing dial tone (Asterisk's `ast_ignore_pattern`).
    pub fn is_ignored(&self, context: &str, digits: &str) -> bool {
        self.contexts.get(context).is_some_and(|c| c.ignore_patterns.iter().any(|p| matches(p, digits, Mode::Match)))
    }

    /// `dialplan add extension <exten>[/cid],<priority>,<app> into <context> [replace]`:
    /// the line as the CLI gives it; the message is Asterisk's.
    pub fn add_extension(&mut self, line: &str, into: &str, replace: bool) -> Result<String, String> {
        let mut parts = line.splitn(3, ',');
        let exten = parts.next().unwrap_or("").trim();
        let (Some(prio), Some(app)) = (parts.next(), parts.next()) else {
            return Err("Usage".into());
        };
        if exten.is_empty() {
            return Err("Usage".into());
        }
        let (name, cid) = match exten.split_once('/') {
            Some((n, c)) => (n, Some(c)),
            None => (exten, None),
        };
        let number = match prio.trim() {
            "hint" => PRIORITY_HINT,
            p => match p.parse::<u32>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("'{p}' is not a valid priority\n")),
            },
        };
        let (app_name, data) =
            if number == PRIORITY_HINT { (app.to_owned(), String::new()) } else { split_application(app) };
        let mut note = String::new();
        if !self.contexts.contains_key(into) {
            let _ =
                writeln!(note, "Context '{into}' did not exist prior to add extension - the context will be created.");
            self.order.push(into.to_owned());
            self.contexts.insert(into.to_owned(), Context::new(into));
        }
        let context = self.contexts.get_mut(into).unwrap_or_else(|| unreachable!("inserted above"));
        let priority = Priority { number, label: None, app: app_name.clone(), data: data.clone(), location: None };
        if context.add_priority(name, cid, priority, replace).is_err() {
            return Err(format!("{note}Extension {exten}@{into} with priority {} already exists\n", prio.trim()));
        }
        context.sort();
        if replace {
            let _ = writeln!(
                note,
                "Extension {exten}@{into} ({}) replace by '{exten},{},{app_name}({data})'",
                prio.trim(),
                prio.trim()
            );
        } else {
            let _ =
                writeln!(note, "Extension '{exten},{},{app_name}({data})' added into '{into}' context", prio.trim());
        }
        Ok(note)
    }

    /// `dialplan remove extension exten[/cid]@context [priority]`.
    pub fn remove_extension(&mut self, target: &str, priority: Option<&str>) -> Result<String, String> {
        let number = match priority {
            None => None,
            Some("hint") => Some(PRIORITY_HINT),
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u32>() {
                Ok(0) | Err(_) => {
                    return Err("If you want to remove whole extension, please omit priority argument\n".into())
                }
                Ok(n) => Some(n),
            },
            Some(p) => return Err(format!("Invalid priority '{p}'\n")),
        };
        let (exten, context_name) = target.split_once('@').unwrap_or((target, ""));
        if exten.is_empty() || context_name.is_empty() || context_name.contains('@') {
            return Err(format!("Missing extension or context name in third argument '{target}'\n"));
        }
        let (name, cid) = match exten.split_once('/') {
            Some((n, c)) => (n, Some(c)),
            None => (exten, None),
        };
        let failed = || match cid {
            Some(c) => format!("Failed to remove extension {name}/{c}@{context_name}\n"),
            None => format!("Failed to remove extension {name}@{context_name}\n"),
        };
        let context = self.contexts.get_mut(context_name).ok_or_else(failed)?;
        let before = context.extensions.len();
        let mut removed = false;
        context.extensions.retain_mut(|e| {
            if e.name != name || (cid.is_some() && e.cid.as_deref() != cid) {
                return true;
            }
            match number {
                None => {
                    removed = true;
                    false
                }
                Some(n) => {
                    removed |= e.priorities.remove(&n).is_some();
                    !e.priorities.is_empty()
                }
            }
        });
        if !removed && context.extensions.len() == before {
            return Err(failed());
        }
        context.sort();
        Ok(match number {
            None => format!("Whole extension {name}@{context_name} removed\n"),
            Some(n) => format!("Extension {name}@{context_name} with priority {n} removed\n"),
        })
    }

    /// `dialplan add include <context> into <context>`.
    pub fn add_include(&mut self, include: &str, into: &str) -> Result<String, String> {
        let timing = match include.split_once(',') {
            Some((_, spec)) => Some(Timing::parse(spec).map_err(|e| format!("{e}\n"))?),
            None => None,
        };
        let target = include.split(',').next().unwrap_or(include).to_owned();
        let mut note = String::new();
        if !self.contexts.contains_key(into) {
            let _ =
                writeln!(note, "Context '{into}' did not exist prior to add include - the context will be created.");
            self.order.push(into.to_owned());
            self.contexts.insert(into.to_owned(), Context::new(into));
        }
        let context = self.contexts.get_mut(into).unwrap_or_else(|| unreachable!("inserted above"));
        if context.includes.iter().any(|i| i.spec == include) {
            return Err(format!("{note}Context '{include}' already included in '{into}' context\n"));
        }
        context.includes.push(Include { context: target, timing, spec: include.to_owned() });
        let _ = writeln!(note, "Context '{include}' included in '{into}' context");
        Ok(note)
    }

    /// `dialplan remove include <context> from <context>`.
    pub fn remove_include(&mut self, include: &str, from: &str) -> Result<String, String> {
        let failed = || format!("Failed to remove '{include}' include from '{from}' context\n");
        let context = self.contexts.get_mut(from).ok_or_else(failed)?;
        let before = context.includes.len();
        context.includes.retain(|i| i.spec != include && i.context != include);
        if context.includes.len() == before {
            return Err(failed());
        }
        Ok(format!("We are not including '{include}' into '{from}' now\n"))
    }

    /// `dialplan add ignorepat <pattern> into <context>`.
    pub fn add_ignorepat(&mut self, pattern: &str, into: &str) -> Result<String, String> {
        let context =
            self.contexts.get_mut(into).ok_or_else(|| format!("There is no existence of '{into}' context\n"))?;
        if context.ignore_patterns.iter().any(|p| p == pattern) {
            return Err(format!("Ignore pattern '{pattern}' already included in '{into}' context\n"));
        }
        context.ignore_patterns.push(pattern.to_owned());
        Ok(format!("Ignore pattern '{pattern}' added into '{into}' context\n"))
    }

    /// `dialplan remove ignorepat <pattern> from <context>`.
    pub fn remove_ignorepat(&mut self, pattern: &str, from: &str) -> Result<String, String> {
        let context =
            self.contexts.get_mut(from).ok_or_else(|| format!("There is no existence of '{from}' context\n"))?;
        let before = context.ignore_patterns.len();
        context.ignore_patterns.retain(|p| p != pattern);
        if context.ignore_patterns.len() == before {
            return Err(format!("There is no existence of '{pattern}' ignore pattern in '{from}' context\n"));
        }
        Ok(format!("Ignore pattern '{pattern}' removed from '{from}' context\n"))
    }

    /// `dialplan remove context <context>`.
    pub fn remove_context(&mut self, name: &str) -> String {
        if self.contexts.remove(name).is_none() {
            return format!("There is no such context as '{name}'\n");
        }
        self.order.retain(|n| n != name);
        format!("Removing context '{name}'\n")
    }

    /// The dialplan as `dialplan save` writes it (pbx_config's `handle_cli_dialplan_save`):
    /// `[general]`, `[globals]` (`globals` as the file has them now), then every context.
    pub fn save_text(&self, globals: &[(String, String)]) -> String {
        let yes = |b: bool| if b { "yes" } else { "no" };
        let mut out = format!(
            "[general]\nstatic={}\nwriteprotect={}\nautofallthrough={}\nclearglobalvars={}\nextenpatternmatchnew=no\n\n",
            yes(self.general.static_),
            yes(self.general.writeprotect),
            yes(self.general.autofallthrough),
            yes(self.general.clearglobalvars)
        );
        if !globals.is_empty() {
            out.push_str("[globals]\n");
            for (name, value) in globals {
                let _ = writeln!(out, "{name} => {}", value.replace(';', "\\;"));
            }
            out.push('\n');
        }
        for context in self.contexts() {
            let _ = writeln!(out, "[{}]", context.name);
            let mut last: Option<&str> = None;
            for e in &context.extensions {
                if last.is_some_and(|l| l != e.name) {
                    out.push('\n');
                }
                last = Some(&e.name);
                let name = match &e.cid {
                    Some(cid) => format!("{}/{cid}", e.name),
                    None => e.name.clone(),
                };
                for p in e.in_order() {
                    if p.number == PRIORITY_HINT {
                        let _ = writeln!(out, "exten => {},hint,{}", e.name, p.app);
                        continue;
                    }
                    let label = p.label.as_ref().map(|l| format!("({l})")).unwrap_or_default();
                    let _ =
                        writeln!(out, "exten => {name},{}{label},{}({})", p.number, p.app, p.data.replace(';', "\\;"));
                }
            }
            if last.is_some() {
                out.push('\n');
            }
            for include in &context.includes {
                let _ = writeln!(out, "include => {}", include.spec);
            }
            if !context.includes.is_empty() {
                out.push('\n');
            }
            for pattern in &context.ignore_patterns {
                let _ = writeln!(out, "ignorepat => {pattern}");
            }
        }
        out
    }
}

#[derive(Default)]
struct Counters {
    contexts: usize,
    extensions: usize,
    priorities: usize,
    context_existence: bool,
    extension_existence: bool,
}

enum Search<'a> {
    Found(Found<'a>),
    /// A MatchMore search met `!`: no more digits needed, stop looking in this context.
    Stop,
    NotFound,
}

fn add_line(
    context: &mut Context,
    var: &Variable,
    cursor: &mut Cursor,
    globals: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    let key = var.name.to_ascii_lowercase();
    let substituted = |text: &str| {
        if text.contains('$') {
            substitute(text, &mut GlobalsScope(globals))
        } else {
            text.to_owned()
        }
    };
    match key.as_str() {
        "exten" | "same" => {
            let (ext, rest) = if key == "same" {
                let ext = cursor
                    .extension
                    .clone()
                    .ok_or_else(|| var.error("'same =>' needs an 'exten =>' before it in this context"))?;
                (ext, var.value.as_str())
            } else {
                let mut parts = split_top(&var.value, 2).into_iter();
                let ext = substituted(parts.next().unwrap_or("").trim());
                let rest = parts
                    .next()
                    .ok_or_else(|| var.error("expected exten => extension,priority,Application(arguments)"))?;
                if ext.is_empty() {
                    return Err(var.error("the extension is empty"));
                }
                cursor.extension = Some(ext.clone());
                (ext, rest)
            };
            let (name, cid) = match ext.split_once('/') {
                Some((n, c)) => (n.trim().to_owned(), Some(shrink_phone_number(c))),
                None => (ext.trim().to_owned(), None),
            };
            // Spaces are not part of an extension outside a set (pbx.c's ext_strncpy).
            let name = strip_spaces(&name);
            let mut parts = split_top(rest, 2).into_iter();
            let priority_text = parts.next().unwrap_or("").trim();
            let app_text = parts.next().unwrap_or("").trim();
            let (priority_word, label) = match priority_text.split_once('(') {
                Some((p, l)) => {
                    let l = l.strip_suffix(')').ok_or_else(|| var.error("label missing its trailing ')'"))?;
                    (p.trim(), Some(l.trim().to_owned()))
                }
                None => (priority_text, None),
            };
            let (word, plus) = match priority_word.split_once('+') {
                Some((w, p)) => {
                    let plus: u32 =
                        p.trim().parse().map_err(|_| var.error(format!("bad priority '{priority_word}'")))?;
                    (w.trim(), plus)
                }
                None => (priority_word, 0),
            };
            let last = cursor.priority;
            let number = match word {
                "hint" => PRIORITY_HINT,
                "n" | "next" => last.ok_or_else(|| var.error("can't use 'next' priority on the first entry"))? + 1,
                "s" | "same" => last.ok_or_else(|| var.error("can't use 'same' priority on the first entry"))?,
                word => match word.parse::<i64>() {
                    Ok(n) if n >= 1 => u32::try_from(n).map_err(|_| var.error(format!("bad priority '{word}'")))?,
                    Ok(_) => return Err(var.error(format!("bad priority '{word}'"))),
                    // A label of this extension names its priority.
                    Err(_) => context
                        .extensions
                        .iter()
                        .find(|e| e.name == name && e.cid == cid)
                        .and_then(|e| e.label(word))
                        .map(|p| p.number)
                        .ok_or_else(|| var.error(format!("bad priority '{word}'")))?,
                },
            };
            let number = if number == PRIORITY_HINT { number } else { number.saturating_add(plus) };
            if app_text.is_empty() && number != PRIORITY_HINT {
                return Err(var.error("no application"));
            }
            let (app, data) = if number == PRIORITY_HINT {
                (app_text.to_owned(), String::new())
            } else {
                split_file_application(app_text)
            };
            let priority = Priority { number, label: label.clone(), app, data, location: Some(var.location.clone()) };
            let context_name = context.name.clone();
            context.add_priority(&name, cid.as_deref(), priority, false).map_err(|e| match e {
                AddError::PriorityExists(at) => var.error(format!(
                    "priority {number} of {name}@{context_name} is already defined at {}",
                    at.map_or_else(|| REGISTRAR.to_owned(), |l| l.to_string())
                )),
                AddError::LabelExists(label) => {
                    var.error(format!("label '{label}' is already used in {name}@{context_name}"))
                }
            })?;
            cursor.priority = Some(number);
            Ok(())
        }
        "include" => {
            let value = substituted(var.value.trim());
            let mut parts = split_top(&value, 2).into_iter();
            let name = parts.next().unwrap_or("").trim().to_owned();
            if name.is_empty() {
                return Err(var.error("expected a context name"));
            }
            let timing = match parts.next() {
                Some(spec) => Some(Timing::parse(spec).map_err(|e| var.error(e))?),
                None => None,
            };
            if context.includes.iter().any(|i| i.spec == value) {
                return Err(var.error(format!("context '{name}' is already included in '{}'", context.name)));
            }
            context.includes.push(Include { context: name, timing, spec: value.clone() });
            Ok(())
        }
        "ignorepat" => {
            context.ignore_patterns.push(substituted(var.value.trim()));
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

/// Removes spaces outside `[...]` sets.
fn strip_spaces(name: &str) -> String {
    if !name.contains(' ') {
        return name.to_owned();
    }
    let mut in_set = false;
    name.chars()
        .filter(|c| {
            match c {
                '[' => in_set = true,
                ']' => in_set = false,
                _ => {}
            }
            *c != ' ' || in_set
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `exten => N,hint,devices` lines are listed with their context.
    #[test]
    fn hints_are_listed() {
        let config = Config::parse_str("extensions.conf", "[a]\nexten => 1001,hint,SIP/1001&Custom:dnd1001\nexten => 1001,1,NoOp\n[b]\nexten => 7,1,NoOp\nexten => 8,hint,Custom:x\n").unwrap();
        let plan = Dialplan::from_config(&config).unwrap();
        let hints = plan.hints();
        assert_eq!(hints.len(), 2, "{hints:?}");
        assert!(hints.contains(&("a".into(), "1001".into(), "SIP/1001&Custom:dnd1001".into())), "{hints:?}");
        assert!(hints.contains(&("b".into(), "8".into(), "Custom:x".into())), "{hints:?}");
    }

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
        parse(CONF)
    }

    /// A chain of 10,000 contexts, each including the next: a search follows it through
    /// MAX_PBX_STACK contexts, then finds nothing (as pbx.c), in bounded stack.
    #[test]
    fn include_chains_are_searched_to_asterisks_limit() {
        let mut text = String::new();
        for n in 0..10_000 {
            text.push_str(&format!("[c{n}]\ninclude => c{}\n", n + 1));
        }
        text.push_str("[c10000]\nexten => 1,1,NoOp()\n");
        let plan = parse(&text);
        let found = |from: usize| {
            let plan = plan.clone();
            crate::on_stack(512 * 1024, move || {
                let now = TimeOfDay { weekday: 1, mday: 1, month: 1, hour: 12, minute: 0 };
                plan.find(&format!("c{from}"), "1", None, Mode::Match, &now).is_some()
            })
        };
        assert!(found(10_000 - (MAX_PBX_STACK - 1)));
        assert!(!found(10_000 - MAX_PBX_STACK));
        assert!(!found(0));
        let shown = crate::on_stack(512 * 1024, move || plan.show(Some("c0"), Some("1")));
        assert!(shown.is_err(), "1@c0 is past the limit for dialplan show too: {shown:?}");
    }

    fn parse(text: &str) -> Dialplan {
        Dialplan::from_config(&Config::parse_str("extensions.conf", text).unwrap()).unwrap_or_else(|e| panic!("{e}"))
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
        assert_eq!(e100.priority(2).unwrap().location.as_ref().unwrap().to_string(), "extensions.conf:8");
        let dial = &default.extensions.iter().find(|e| e.name == "_9NXX.").unwrap().priorities[&1];
        assert_eq!((dial.app.as_str(), dial.data.as_str()), ("Dial", "${TRUNK}/${EXTEN:1},30"));
        assert_eq!(p.globals, [("TRUNK".to_owned(), "SIP/provider".to_owned())]);
        assert_eq!(split_application("Goto,ctx,s,1"), ("Goto".into(), "ctx,s,1".into()));
        assert_eq!(split_application("Set(X=${CUT(a,b)})"), ("Set".into(), "X=${CUT(a,b)}".into()));
        assert_eq!(split_application("NoOp(a)b"), ("NoOp".into(), "a".into()), "the data ends at the last ')'");
        assert_eq!(split_file_application("Dial,SIP/x"), ("Dial,SIP/x".into(), "".into()), "as pbx_config");
        assert_eq!(split_file_application("Answer"), ("Answer".into(), "".into()));
    }

    /// pbx_config's priority words: `n` counts on from the last line of the context (whatever
    /// its extension), `s` repeats it, `+N` adds, a label names a priority; globals are
    /// substituted in `[globals]`, extension names and includes.
    #[test]
    fn priority_words_and_global_substitution_as_pbx_config() {
        let p = parse(
            "[globals]\nBASE=70\nEXT=${BASE}1\nCTX=other\n[c]\nexten => ${EXT},1(start),NoOp(a)\n\
exten => 702,n,NoOp(b)\nexten => 703,n+2,NoOp(c)\nexten => 701,start+5,NoOp(d)\n\
exten => 704/(555) 12-12,1,NoOp(e)\nexten => 704/5550000,s,NoOp(f)\ninclude => ${CTX}\n[other]\n",
        );
        assert_eq!(p.globals[1], ("EXT".into(), "701".into()), "a global sees the ones before it");
        let c = p.context("c").unwrap();
        let number = |name: &str, app_data: &str| {
            c.extensions
                .iter()
                .filter(|e| e.name == name)
                .flat_map(|e| e.priorities.values())
                .find(|p| p.data == app_data)
                .map(|p| p.number)
        };
        assert_eq!(number("701", "a"), Some(1));
        assert_eq!(number("702", "b"), Some(2), "n follows the previous line, not the extension");
        assert_eq!(number("703", "c"), Some(5));
        assert_eq!(number("701", "d"), Some(6));
        assert_eq!(number("704", "f"), Some(1), "s: the same priority, another caller ID");
        assert_eq!(c.extensions.iter().find(|e| e.data_is("e")).and_then(|e| e.cid.clone()), Some("5551212".into()));
        assert_eq!(c.includes[0].context, "other");
    }

    impl Extension {
        fn data_is(&self, data: &str) -> bool {
            self.priorities.values().any(|p| p.data == data)
        }
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

    /// pbx.c looks for the extension *and* the priority: an extension that matches but lacks
    /// the priority lets the next match answer; a hint alone is not an extension that exists.
    #[test]
    fn the_priority_takes_part_in_the_search() {
        let p = parse(
            "[c]\nexten => 100,1,NoOp(exact)\nexten => _1XX,1,NoOp(p1)\n same => n,NoOp(p2)\n same => n(end),NoOp(p3)\n\
exten => 200,hint,SIP/alice\nexten => 300/,1,NoOp(anonymous)\nexten => 300,1,NoOp(known)\n\
exten => _4!,1,NoOp(early)\nexten => _6!/555,1,NoOp(cid)\n\
include => more\n[more]\nexten => _4XX,1,NoOp(more)\nexten => _6XX,1,NoOp(six)\n",
        );
        let data = |exten: &str, cid: Option<&str>, want: Want<'_>| {
            p.find_at("c", exten, cid, Mode::Match, want, &SUNDAY).map(|f| f.priority.data.clone())
        };
        assert_eq!(data("100", None, Want::Priority(1)).as_deref(), Some("exact"));
        assert_eq!(data("100", None, Want::Priority(2)).as_deref(), Some("p2"), "100 has no 2: _1XX's");
        assert_eq!(data("100", None, Want::Label("end")).as_deref(), Some("p3"));
        assert_eq!(data("100", None, Want::Priority(4)), None);
        assert!(p.find("c", "200", None, Mode::Match, &SUNDAY).is_none(), "only a hint");
        assert!(p.find_at("c", "200", None, Mode::Match, Want::Priority(PRIORITY_HINT), &SUNDAY).is_some());
        assert_eq!(data("300", None, Want::Priority(1)).as_deref(), Some("anonymous"), "an empty /cid: no caller ID");
        assert_eq!(data("300", Some("555"), Want::Priority(1)).as_deref(), Some("known"));
        // The early match stops MatchMore only for the caller IDs it applies to, and only in
        // its own context: an included context is not asked past it, others are.
        assert!(p.find("c", "4", None, Mode::MatchMore, &SUNDAY).is_none());
        assert!(p.find("more", "4", None, Mode::MatchMore, &SUNDAY).is_some());
        assert!(p.find("c", "6", None, Mode::MatchMore, &SUNDAY).is_some(), "_6! is not for this caller");
        assert!(p.find("c", "6", Some("555"), Mode::MatchMore, &SUNDAY).is_none());
    }

    #[test]
    fn an_early_match_in_an_include_stops_only_that_include() {
        let p = parse("[top]\ninclude => a\ninclude => b\n[a]\nexten => _5!,1,NoOp\n[b]\nexten => _5XX,1,NoOp\n");
        assert!(p.find("top", "5", None, Mode::MatchMore, &SUNDAY).is_some(), "b still says 5 could go on");
        assert!(p.find("a", "5", None, Mode::MatchMore, &SUNDAY).is_none());
    }

    #[test]
    fn caller_id_variants_sort_by_their_pattern_before_the_plain_one() {
        let p = parse("[c]\nexten => 1/_X.,1,NoOp\nexten => 1,1,NoOp\nexten => 1/555,1,NoOp\n");
        let cids: Vec<Option<&str>> = p.context("c").unwrap().extensions.iter().map(|e| e.cid.as_deref()).collect();
        assert_eq!(cids, [Some("555"), Some("_X."), None]);
    }

    #[test]
    fn errors_name_their_lines_and_switch_is_refused() {
        let text = "[c]\nexten => 1,1,NoOp\nexten => 1,1,NoOp\n same => n\nexten => 3,x,NoOp\nswitch => IAX2/box\nfoo => bar\n[d]\nsame => n,NoOp\ninclude => x,25:00-26:00,*,*,*\nexten => 5,n,NoOp\n";
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
        assert!(lines[2].starts_with("extensions.conf:5:") && lines[2].contains("bad priority 'x'"), "{e}");
        assert!(lines[3].starts_with("extensions.conf:6:") && lines[3].contains("switches are not supported"), "{e}");
        assert!(lines[4].starts_with("extensions.conf:7: unknown line 'foo'"), "{e}");
        assert!(lines[5].starts_with("extensions.conf:9:") && lines[5].contains("'same =>' needs"), "{e}");
        assert!(lines[6].starts_with("extensions.conf:10:") && lines[6].contains("bad time condition"), "{e}");
        assert!(
            lines[7].starts_with("extensions.conf:11:") && lines[7].contains("'next' priority on the first"),
            "{e}"
        );
    }

    #[test]
    fn dialplan_show_layout() {
        let p = plan();
        let out = p.show(Some("default"), None).unwrap();
        // "  %-17s %-45s [%s]" as Asterisk's show_dialplan_helper prints; later priorities
        // carry their label in the first column.
        let expected_head = "[ Context 'default' created by 'pbx_config' ]\n  '100' =>          hint: SIP/alice                               [extensions.conf:14]\n                    1. Answer()                                   [extensions.conf:7]\n     [again]        2. Playback(hello-world)                      [extensions.conf:8]\n";
        assert!(out.starts_with(expected_head), "{out}");
        assert!(out.contains("hint: SIP/alice"), "{out}");
        assert!(out.contains("  '200' (CID match '5551212') =>  1. Hangup(21)"), "{out}");
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
        // Contexts: the newest first, as Asterisk's context list.
        let all = p.show(None, None).unwrap();
        let contexts: Vec<&str> = all.lines().filter(|l| l.starts_with("[ Context")).collect();
        assert_eq!(contexts[0], "[ Context 'always' created by 'pbx_config' ]", "{all}");
        assert_eq!(contexts[2], "[ Context 'default' created by 'pbx_config' ]", "{all}");
        assert_eq!(p.show(Some("nosuch"), None).unwrap_err(), "There is no existence of 'nosuch' context\n");
    }

    #[test]
    fn dialplan_show_of_one_extension_follows_includes() {
        let p = plan();
        let out = p.show(Some("default"), Some("350")).unwrap();
        assert!(out.starts_with("[ Included context 'always' created by 'pbx_config' ]\n  '_3XX' =>"), "{out}");
        assert!(out.ends_with("-= 1 extension (1 priority) in 1 context. =-\n"), "{out}");
        let out = p.show(Some("default"), Some("_9NXX.")).unwrap();
        assert!(
            out.contains("'_9NXX.' =>") && out.ends_with("-= 1 extension (1 priority) in 1 context. =-\n"),
            "{out}"
        );
        assert!(p.find("default", "_1XX", None, Mode::Match, &SUNDAY).is_some(), "a pattern by its name");
        let out = p.show(None, Some("100")).unwrap();
        assert!(out.starts_with("[ Context 'default' created by 'pbx_config' ]\n  '100' =>"), "{out}");
        assert!(out.contains("'_1XX' =>"), "a pattern that matches is shown too: {out}");
        assert!(out.ends_with("-= 2 extensions (5 priorities) in 1 context. =-\n"), "{out}");
        assert_eq!(p.show(Some("office"), Some("9")).unwrap_err(), "There is no existence of 9@office extension\n");
        assert_eq!(p.show(None, Some("55")).unwrap_err(), "There is no existence of '55' extension in all contexts\n");
        // As Asterisk, a context shows both on its own and where it is included.
        let out = p.show(None, Some("77")).unwrap();
        assert!(out.starts_with("[ Context 'always' created by 'pbx_config' ]\n  '_7!' =>"), "{out}");
        assert!(out.contains("[ Included context 'always' created by 'pbx_config' ]\n  '_7!' =>"), "{out}");
    }

    #[test]
    fn cli_changes_and_save() {
        let mut p = plan();
        assert_eq!(
            p.add_extension("555,1,Playback(tt-weasels)", "office", false).unwrap(),
            "Extension '555,1,Playback(tt-weasels)' added into 'office' context\n"
        );
        assert!(p.find("default", "555", None, Mode::Match, &MONDAY_NOON).is_some(), "through the include");
        assert_eq!(
            p.add_extension("555,1,NoOp", "office", false).unwrap_err(),
            "Extension 555@office with priority 1 already exists\n"
        );
        assert!(p
            .add_extension("556,1,Dial,SIP/x", "newctx", false)
            .unwrap()
            .starts_with("Context 'newctx' did not exist"));
        let show = p.show(Some("office"), None).unwrap();
        assert!(
            show.contains("  '555' =>          1. Playback(tt-weasels)                       [pbx_config]"),
            "{show}"
        );
        assert_eq!(
            p.remove_extension("555@office", Some("1")).unwrap(),
            "Extension 555@office with priority 1 removed\n"
        );
        assert!(p.find("office", "555", None, Mode::Match, &MONDAY_NOON).is_none());
        assert_eq!(p.remove_extension("555@office", None).unwrap_err(), "Failed to remove extension 555@office\n");
        assert_eq!(p.remove_extension("x@office", Some("a")).unwrap_err(), "Invalid priority 'a'\n");
        assert_eq!(p.add_include("newctx", "office").unwrap(), "Context 'newctx' included in 'office' context\n");
        assert!(p.find("office", "556", None, Mode::Match, &MONDAY_NOON).is_some());
        assert_eq!(p.remove_include("newctx", "office").unwrap(), "We are not including 'newctx' into 'office' now\n");
        assert_eq!(p.add_ignorepat("8", "office").unwrap(), "Ignore pattern '8' added into 'office' context\n");
        assert!(p.is_ignored("office", "8") && !p.is_ignored("office", "7") && !p.is_ignored("office", "81"));
        assert_eq!(p.remove_ignorepat("8", "office").unwrap(), "Ignore pattern '8' removed from 'office' context\n");
        assert_eq!(p.remove_context("newctx"), "Removing context 'newctx'\n");
        // What save writes reads back as the same dialplan.
        let text = p.save_text(&p.globals.clone());
        assert!(text.starts_with("[general]\nstatic=yes\nwriteprotect=no\n"), "{text}");
        let again = parse(&text);
        for context in p.contexts() {
            let other = again.context(&context.name).unwrap();
            let shape = |c: &Context| {
                c.extensions
                    .iter()
                    .map(|e| {
                        (
                            e.name.clone(),
                            e.cid.clone(),
                            e.priorities
                                .values()
                                .map(|p| (p.number, p.label.clone(), p.app.clone(), p.data.clone()))
                                .collect::<Vec<_>>(),
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(shape(context), shape(other), "{text}");
            assert_eq!(context.includes, other.includes);
        }
    }
}
