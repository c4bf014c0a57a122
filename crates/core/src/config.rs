//! Asterisk's `.conf` syntax, in full, with the file and line of every value.
//!
//! ```text
//! [general]                 ; a section
//! bindport = 5060           ; key = value
//! register => alice@trunk   ; key => value (an "object"; same meaning to most readers)
//! [peer-tmpl](!)            ; a template: not a section of its own, only inherited
//! [bob](peer-tmpl,nat-tmpl) ; inherits the templates' keys, in that order, before its own
//! [bob](+)                  ; appends to the earlier [bob]
//! #include "sip-peers.conf" ; relative to the including file; "dir/*.conf" globs
//! ```
//!
//! `;` starts a comment and `\;` is a literal semicolon; `;-- ... --;` is a block comment.
//! Repeated keys are kept in order (several `allow`, several `register =>`):
//! [`Section::get`] returns the last, [`Section::get_all`] all of them.
//! `#exec` is refused: a config file never runs a program here.
//!
//! Parsing keeps going after an error and reports every bad line at once, each as
//! `file:line: what is wrong` ([`ConfigErrors`]). No input makes it panic: the
//! property tests below feed it arbitrary bytes.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// How many `#include`s may nest below the main file, as Asterisk's `MAX_INCLUDE_LEVEL`
/// (main/config.c): deeper is an error at the `#include` line. A cycle is refused at once;
/// this bounds the rest (a runaway tree, a file that includes another twice at every level).
pub const MAX_INCLUDE_LEVEL: usize = 10;

/// How many files one configuration may read, its includes counted each time they are read
/// (Starling's own; Asterisk has no such bound). Ten levels bound the depth, not the breadth:
/// files that include a glob of each other several times are read exponentially often, and
/// found by fuzzing to take gigabytes; past this the reading stops with an error.
pub const MAX_INCLUDE_READS: usize = 1000;

/// Where a value came from: the file (as the user would name it) and the 1-based line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: Arc<str>,
    pub line: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One problem in a config file, at its place.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", match .location { Some(l) => format!("{l}: "), None => String::new() })]
pub struct ConfigError {
    pub location: Option<Location>,
    pub message: String,
}

impl ConfigError {
    pub fn new(location: Option<Location>, message: impl Into<String>) -> Self {
        ConfigError { location, message: message.into() }
    }
    pub fn at(location: &Location, message: impl Into<String>) -> Self {
        Self::new(Some(location.clone()), message)
    }
}

/// Every problem found in one pass, one per line when displayed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl ConfigErrors {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e)
    }
    /// `Ok(value)` when nothing was reported, else every error.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

/// `key = value` or `key => value`, with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub value: String,
    pub location: Location,
    /// Written with `=>` (Asterisk's "object" flag).
    pub object: bool,
    /// Copied from a template rather than written in the section itself.
    pub inherited: bool,
}

impl Variable {
    /// An error about this value, at its place.
    pub fn error(&self, message: impl fmt::Display) -> ConfigError {
        ConfigError::at(&self.location, format!("{} '{}': {message}", self.name, self.value))
    }

    /// Asterisk's `ast_true`/`ast_false`: yes/no, true/false, y/n, t/f, 1/0, on/off.
    pub fn parse_bool(&self) -> Result<bool, ConfigError> {
        parse_bool(&self.value).ok_or_else(|| self.error("expected yes or no"))
    }

    /// The value parsed as `T`, or an error naming the place and the value.
    pub fn parse<T: FromStr>(&self) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.value.trim().parse::<T>().map_err(|e| self.error(e))
    }
}

/// Asterisk's `ast_true` / `ast_false` on a string; `None` if it is neither.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "y" | "t" | "1" | "on" => Some(true),
        "no" | "false" | "n" | "f" | "0" | "off" => Some(false),
        _ => None,
    }
}

/// A `[section]` and its variables in file order (inherited ones first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub location: Location,
    /// Declared `[name](!)`: a template, skipped by [`Config::sections`].
    pub is_template: bool,
    /// The templates named in `[name](t1,t2)`, in order.
    pub templates: Vec<String>,
    pub variables: Vec<Variable>,
}

impl Section {
    /// The last value of `key` (keys compare case-insensitively, as Asterisk's do).
    pub fn get(&self, key: &str) -> Option<&Variable> {
        self.variables.iter().rev().find(|v| v.name.eq_ignore_ascii_case(key))
    }
    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Variable> + 'a {
        self.variables.iter().filter(move |v| v.name.eq_ignore_ascii_case(key))
    }
    /// The last value of `key` as a string.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key).map(|v| v.value.as_str())
    }
}

impl Section {
    /// Reads a section made of yes/no keys (cdr.conf's `[general]`, `[csv]`): each of `flags`
    /// by name, `accepted` keys silently (known to Asterisk, not acted on), any other key
    /// warned about with its file:line; bad values are errors at their line.
    pub fn read_flags(&self, flags: &mut [(&str, &mut bool)], accepted: &[&str]) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::default();
        for var in &self.variables {
            let name = var.name.to_ascii_lowercase();
            match flags.iter_mut().find(|(key, _)| *key == name) {
                Some((_, flag)) => match var.parse_bool() {
                    Ok(value) => **flag = value,
                    Err(e) => errors.push(e),
                },
                None if accepted.contains(&name.as_str()) => {}
                None => crate::tracing::warn!("{}: unknown [{}] option '{name}' ignored", var.location, self.name),
            }
        }
        errors.into_result(())
    }
}

/// A parsed file with everything it included.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    sections: Vec<Section>,
    /// Every file read, the main one first.
    pub files: Vec<PathBuf>,
}

impl Config {
    /// Reads `path` and its includes from the file system.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Parser::new(&FileSystem, path).run(path)
    }

    /// Parses `text` as if it were the file `name`; includes are looked up in `source`.
    pub fn parse_with(source: &dyn Source, name: &Path, text: &[u8]) -> Result<Config, ConfigErrors> {
        let mut parser = Parser::new(source, name);
        parser.parse_file(name, text, 0);
        parser.finish()
    }

    /// Parses `text` as the file `name`; any `#include` is an error (there is nothing to read).
    pub fn parse_str(name: &str, text: &str) -> Result<Config, ConfigErrors> {
        Self::parse_with(&MemSource::default(), Path::new(name), text.as_bytes())
    }

    /// The sections that are not templates, in file order.
    pub fn sections(&self) -> impl Iterator<Item = &Section> {
        self.sections.iter().filter(|s| !s.is_template)
    }
    /// Every section, templates included.
    pub fn all_sections(&self) -> &[Section] {
        &self.sections
    }
    /// The first non-template section called `name` (case-insensitive, as Asterisk compares).
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections().find(|s| s.name.eq_ignore_ascii_case(name))
    }
}

/// Where the parser reads files from: the file system, or memory in tests and fuzzing.
pub trait Source {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The files a glob pattern names, sorted; an empty list is not an error.
    fn glob(&self, pattern: &Path) -> Vec<PathBuf>;
    /// A name that is the same for every spelling of one file (for cycle detection).
    fn identity(&self, path: &Path) -> PathBuf;
}

/// The real file system.
pub struct FileSystem;

impl Source for FileSystem {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn glob(&self, pattern: &Path) -> Vec<PathBuf> {
        let Some(pattern) = pattern.to_str() else { return Vec::new() };
        let mut found: Vec<PathBuf> = glob::glob(pattern)
            .map(|paths| paths.filter_map(Result::ok).filter(|p| p.is_file()).collect())
            .unwrap_or_default();
        found.sort();
        found
    }
    fn identity(&self, path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    }
}

/// Files held in memory, for tests and fuzzing. Globs support `*` in the last component.
#[derive(Default)]
pub struct MemSource(pub HashMap<PathBuf, Vec<u8>>);

impl Source for MemSource {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.0.get(path).cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn glob(&self, pattern: &Path) -> Vec<PathBuf> {
        let Some(pattern) = pattern.to_str() else { return Vec::new() };
        let Ok(pattern) = glob::Pattern::new(pattern) else { return Vec::new() };
        let mut found: Vec<PathBuf> = self.0.keys().filter(|p| pattern.matches_path(p)).cloned().collect();
        found.sort();
        found
    }
    fn identity(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }
}

struct Parser<'s> {
    source: &'s dyn Source,
    /// File names are shown relative to the main file's folder, as an admin names them.
    base: PathBuf,
    sections: Vec<Section>,
    /// The section that `key = value` lines go to now (an index into `sections`).
    current: Option<usize>,
    /// Files being read, innermost last, for cycle detection.
    stack: Vec<PathBuf>,
    files: Vec<PathBuf>,
    /// Files read so far (bounded by [`MAX_INCLUDE_READS`]).
    reads: usize,
    errors: ConfigErrors,
}

impl<'s> Parser<'s> {
    fn new(source: &'s dyn Source, main: &Path) -> Self {
        Parser {
            source,
            base: main.parent().map(Path::to_path_buf).unwrap_or_default(),
            sections: Vec::new(),
            current: None,
            stack: Vec::new(),
            files: Vec::new(),
            reads: 0,
            errors: ConfigErrors::default(),
        }
    }

    fn run(mut self, path: &Path) -> Result<Config, ConfigErrors> {
        match self.source.read(path) {
            Ok(text) => self.parse_file(path, &text, 0),
            Err(e) => self.errors.push(ConfigError::new(None, format!("cannot read {}: {e}", path.display()))),
        }
        self.finish()
    }

    fn finish(self) -> Result<Config, ConfigErrors> {
        let config = Config { sections: self.sections, files: self.files };
        self.errors.into_result(config)
    }

    fn display_name(&self, path: &Path) -> Arc<str> {
        let shown = path.strip_prefix(&self.base).unwrap_or(path);
        Arc::from(shown.to_string_lossy().as_ref())
    }

    fn parse_file(&mut self, path: &Path, text: &[u8], depth: usize) {
        let identity = self.source.identity(path);
        self.stack.push(identity);
        self.files.push(path.to_path_buf());
        let file = self.display_name(path);
        let text = String::from_utf8_lossy(text);
        let mut in_block_comment = 0usize;
        for (index, raw) in text.split('\n').enumerate() {
            let location = Location { file: file.clone(), line: u32::try_from(index + 1).unwrap_or(u32::MAX) };
            let line = strip_comments(raw, &mut in_block_comment);
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Err(message) = self.parse_line(path, line, &location, depth) {
                self.errors.push(ConfigError::at(&location, message));
            }
        }
        if in_block_comment > 0 {
            self.errors.push(ConfigError::new(
                Some(Location { file, line: u32::try_from(text.split('\n').count()).unwrap_or(u32::MAX) }),
                "block comment ';--' is not closed by '--;'",
            ));
        }
        self.stack.pop();
    }

    fn parse_line(&mut self, path: &Path, line: &str, location: &Location, depth: usize) -> Result<(), String> {
        if let Some(rest) = line.strip_prefix('[') {
            return self.parse_section(rest, location);
        }
        if let Some(directive) = line.strip_prefix('#') {
            return self.parse_directive(path, directive, location, depth);
        }
        let Some(eq) = line.find('=') else {
            return Err(format!("expected 'key = value', found '{line}'"));
        };
        let name = line[..eq].trim();
        let (object, value) = match line[eq + 1..].strip_prefix('>') {
            Some(value) => (true, value),
            None => (false, &line[eq + 1..]),
        };
        if name.is_empty() {
            return Err(format!("no key before '{}'", if object { "=>" } else { "=" }));
        }
        let Some(current) = self.current else {
            return Err(format!("'{name}' is outside any [section]"));
        };
        self.sections[current].variables.push(Variable {
            name: name.to_owned(),
            value: value.trim().to_owned(),
            location: location.clone(),
            object,
            inherited: false,
        });
        Ok(())
    }

    fn parse_section(&mut self, rest: &str, location: &Location) -> Result<(), String> {
        let Some(close) = rest.find(']') else {
            return Err(format!("section name '[{rest}' has no closing ']'"));
        };
        let name = rest[..close].trim();
        if name.is_empty() {
            return Err("empty section name '[]'".into());
        }
        let after = rest[close + 1..].trim();
        let mut options: Vec<&str> = Vec::new();
        if !after.is_empty() {
            let inner = after
                .strip_prefix('(')
                .and_then(|a| a.strip_suffix(')'))
                .ok_or_else(|| format!("unexpected '{after}' after [{name}]: expected '(options)'"))?;
            options = inner.split(',').map(str::trim).collect();
        }
        // A failed header still opens a section, so the lines below it land somewhere
        // and produce their own errors rather than "outside any [section]".
        let mut section = Section {
            name: name.to_owned(),
            location: location.clone(),
            is_template: false,
            templates: Vec::new(),
            variables: Vec::new(),
        };
        let append = options.contains(&"+");
        let mut problem = None;
        for option in options {
            match option {
                "!" => section.is_template = true,
                "+" => {}
                "" => problem = Some(format!("empty template name in [{name}](...)")),
                // `[s](s,+)` would copy the section into itself, doubling it at every such line
                // (found by fuzzing: a few lines took gigabytes).
                template if append && template.eq_ignore_ascii_case(name) => {
                    problem = Some(format!("[{name}](+) cannot inherit from itself"))
                }
                template => match self.sections.iter().rev().find(|s| s.name.eq_ignore_ascii_case(template)) {
                    Some(t) => {
                        let inherited = t.variables.iter().map(|v| Variable { inherited: true, ..v.clone() });
                        section.variables.extend(inherited);
                        section.templates.push(template.to_owned());
                    }
                    None => {
                        problem = Some(format!("[{name}] inherits from '{template}', which is not defined above it"))
                    }
                },
            }
        }
        if append {
            match self.sections.iter().rposition(|s| s.name.eq_ignore_ascii_case(name)) {
                Some(index) => {
                    self.sections[index].variables.extend(section.variables);
                    self.current = Some(index);
                }
                None => {
                    self.sections.push(section);
                    self.current = Some(self.sections.len() - 1);
                    return Err(format!("[{name}](+) appends to a section that is not defined above it"));
                }
            }
        } else {
            self.sections.push(section);
            self.current = Some(self.sections.len() - 1);
        }
        problem.map_or(Ok(()), Err)
    }

    fn parse_directive(
        &mut self,
        path: &Path,
        directive: &str,
        location: &Location,
        depth: usize,
    ) -> Result<(), String> {
        let (word, argument) = directive
            .split_once(|c: char| c.is_ascii_whitespace())
            .map(|(w, a)| (w, a.trim()))
            .unwrap_or((directive, ""));
        let optional = match word.to_ascii_lowercase().as_str() {
            "include" => false,
            "tryinclude" => true,
            "exec" | "tryexec" => {
                return Err(format!("#{word} is refused: Starling never runs programs from a config file"))
            }
            _ => return Err(format!("unknown directive '#{word}'")),
        };
        let target = unquote(argument);
        if target.is_empty() {
            return Err(format!("#{word} needs a file name"));
        }
        if depth + 1 > MAX_INCLUDE_LEVEL {
            return Err(format!("#{word} \"{target}\": Maximum Include level ({MAX_INCLUDE_LEVEL}) exceeded"));
        }
        let dir = path.parent().unwrap_or(Path::new(""));
        let target_path = dir.join(target);
        let is_glob = target.contains(['*', '?', '[']);
        let files = if is_glob { self.source.glob(&target_path) } else { vec![target_path] };
        for file in files {
            if self.reads >= MAX_INCLUDE_READS {
                return Err(format!(
                    "#{word} \"{target}\": more than {MAX_INCLUDE_READS} files read for one configuration \
                     (files that include each other over and over?)"
                ));
            }
            if self.stack.contains(&self.source.identity(&file)) {
                self.errors.push(ConfigError::at(
                    location,
                    format!("#{word} \"{}\" would include itself (a cycle)", file.display()),
                ));
                continue;
            }
            self.reads += 1;
            match self.source.read(&file) {
                Ok(text) => self.parse_file(&file, &text, depth + 1),
                Err(e) if e.kind() == io::ErrorKind::NotFound && (optional || is_glob) => {}
                Err(e) => {
                    self.errors.push(ConfigError::at(location, format!("cannot include \"{}\": {e}", file.display())))
                }
            }
        }
        Ok(())
    }
}

/// Removes `;` comments and `;-- --;` block comments, and turns `\;` into `;`.
fn strip_comments(line: &str, in_block: &mut usize) -> String {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while !rest.is_empty() {
        if *in_block > 0 {
            if let Some(end) = rest.find("--;") {
                *in_block -= 1;
                rest = &rest[end + 3..];
                continue;
            }
            if let Some(start) = rest.find(";--") {
                *in_block += 1;
                rest = &rest[start + 3..];
                continue;
            }
            return out;
        }
        let Some(pos) = rest.find(['\\', ';']) else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("\\;") {
            out.push(';');
            rest = after;
        } else if let Some(after) = tail.strip_prefix('\\') {
            out.push('\\');
            rest = after;
        } else if let Some(after) = tail.strip_prefix(";--") {
            *in_block += 1;
            rest = after;
        } else {
            break; // a `;` comment runs to the end of the line
        }
    }
    out
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    for (open, close) in [('"', '"'), ('<', '>')] {
        if let Some(inner) = s.strip_prefix(open).and_then(|r| r.strip_suffix(close)) {
            return inner.trim();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse_str("test.conf", text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn errors(text: &str) -> Vec<String> {
        Config::parse_str("test.conf", text).unwrap_err().0.iter().map(ToString::to_string).collect()
    }

    fn mem(files: &[(&str, &str)]) -> MemSource {
        MemSource(files.iter().map(|(p, t)| (PathBuf::from(p), t.as_bytes().to_vec())).collect())
    }

    #[test]
    fn sections_keys_and_objects() {
        let c = parse("[general]\nbindport = 5060\nregister => alice@trunk\n\n[bob]\ntype=friend\n");
        let g = c.section("general").unwrap();
        assert_eq!(g.value("bindport"), Some("5060"));
        let reg = g.get("register").unwrap();
        assert!(reg.object);
        assert_eq!(reg.value, "alice@trunk");
        assert_eq!(reg.location.to_string(), "test.conf:3");
        assert_eq!(c.section("BOB").unwrap().value("TYPE"), Some("friend"));
    }

    #[test]
    fn repeated_keys_keep_their_order() {
        let c = parse("[p]\ndisallow=all\nallow=ulaw\nallow=alaw\nallow=opus\n");
        let allows: Vec<_> = c.section("p").unwrap().get_all("allow").map(|v| v.value.as_str()).collect();
        assert_eq!(allows, ["ulaw", "alaw", "opus"]);
        assert_eq!(c.section("p").unwrap().value("allow"), Some("opus"));
    }

    #[test]
    fn comments_and_escapes() {
        let c = parse(
            "; a comment\n[s] ; trailing\nkey = a\\;b ; comment\nother = c\\d\n;-- block\nignored = 1\n--; after = 2\n",
        );
        let s = c.section("s").unwrap();
        assert_eq!(s.value("key"), Some("a;b"));
        assert_eq!(s.value("other"), Some("c\\d"));
        assert!(s.get("ignored").is_none());
        assert_eq!(s.value("after"), Some("2"));
    }

    #[test]
    fn templates_and_inheritance() {
        let c = parse(
            "[base](!)\ncontext=internal\nallow=ulaw\n[nat](!)\nnat=force_rport\n[bob](base,nat)\nallow=alaw\ncontext=office\n",
        );
        assert!(c.section("base").is_none(), "a template is not a section");
        assert_eq!(c.all_sections().len(), 3);
        let bob = c.section("bob").unwrap();
        assert_eq!(bob.templates, ["base", "nat"]);
        assert_eq!(bob.value("context"), Some("office"), "own values override inherited");
        assert_eq!(bob.value("nat"), Some("force_rport"));
        let allows: Vec<_> = bob.get_all("allow").map(|v| (v.value.as_str(), v.inherited)).collect();
        assert_eq!(allows, [("ulaw", true), ("alaw", false)]);
        assert_eq!(bob.get("nat").unwrap().location.to_string(), "test.conf:5", "inherited keeps its place");
    }

    #[test]
    fn templates_of_templates() {
        let c = parse("[a](!)\nx=1\n[b](!,a)\ny=2\n[c](b)\nz=3\n");
        let s = c.section("c").unwrap();
        assert_eq!((s.value("x"), s.value("y"), s.value("z")), (Some("1"), Some("2"), Some("3")));
    }

    #[test]
    fn append_to_an_earlier_section() {
        let c = parse("[bob]\nhost=dynamic\n[alice]\nhost=dynamic\n[bob](+)\nsecret=x\n");
        let sections: Vec<_> = c.sections().map(|s| s.name.as_str()).collect();
        assert_eq!(sections, ["bob", "alice"]);
        assert_eq!(c.section("bob").unwrap().value("secret"), Some("x"));
    }

    #[test]
    fn errors_name_file_and_line_and_all_are_reported() {
        let e = errors(
            "key=outside\n[ok]\nno equals here\n[bad\n[x](missing)\n[y](+)\n= value\n#exec /bin/true\n#frobnicate\n",
        );
        assert_eq!(
            e,
            [
                "test.conf:1: 'key' is outside any [section]",
                "test.conf:3: expected 'key = value', found 'no equals here'",
                "test.conf:4: section name '[bad' has no closing ']'",
                "test.conf:5: [x] inherits from 'missing', which is not defined above it",
                "test.conf:6: [y](+) appends to a section that is not defined above it",
                "test.conf:7: no key before '='",
                "test.conf:8: #exec is refused: Starling never runs programs from a config file",
                "test.conf:9: unknown directive '#frobnicate'",
            ]
        );
    }

    #[test]
    fn unclosed_block_comment_is_an_error() {
        assert_eq!(errors("[s]\n;-- open\nx=1\n"), ["test.conf:4: block comment ';--' is not closed by '--;'"]);
    }

    #[test]
    fn includes_are_relative_to_the_including_file() {
        let src = mem(&[
            ("/etc/sip.conf", "[general]\nport=1\n#include \"peers/bob.conf\"\n[after]\nx=1\n"),
            ("/etc/peers/bob.conf", "[bob]\n#include <more.conf>\n"),
            ("/etc/peers/more.conf", "secret=s\n"),
        ]);
        let c = Config::parse_with(&src, Path::new("/etc/sip.conf"), &src.0[Path::new("/etc/sip.conf")]).unwrap();
        let bob = c.section("bob").unwrap();
        assert_eq!(bob.value("secret"), Some("s"));
        assert_eq!(bob.get("secret").unwrap().location.to_string(), "peers/more.conf:1");
        assert_eq!(c.section("after").unwrap().value("x"), Some("1"));
        assert_eq!(c.files.len(), 3);
    }

    #[test]
    fn include_globs_in_sorted_order_and_empty_globs_are_fine() {
        let src = mem(&[
            ("/e/main.conf", "#include \"d/*.conf\"\n#include \"none/*.conf\"\n"),
            ("/e/d/b.conf", "[b]\n"),
            ("/e/d/a.conf", "[a]\n"),
            ("/e/d/c.txt", "[c]\n"),
        ]);
        let c = Config::parse_with(&src, Path::new("/e/main.conf"), &src.0[Path::new("/e/main.conf")]).unwrap();
        let names: Vec<_> = c.sections().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn include_cycles_and_missing_files_are_errors() {
        let src = mem(&[
            ("/e/a.conf", "[a]\n#include b.conf\n#include missing.conf\n#tryinclude optional.conf\n"),
            ("/e/b.conf", "#include \"a.conf\"\n"),
        ]);
        let e = Config::parse_with(&src, Path::new("/e/a.conf"), &src.0[Path::new("/e/a.conf")]).unwrap_err();
        let e: Vec<_> = e.0.iter().map(ToString::to_string).collect();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("b.conf:1: #include \"/e/a.conf\" would include itself"), "{e:?}");
        assert!(e[1].starts_with("a.conf:3: cannot include \"/e/missing.conf\""), "{e:?}");
    }

    /// Ten `#include`s may nest below the main file, as in Asterisk; the eleventh is an error
    /// at its line, and the files above it are still read.
    #[test]
    fn include_nesting_is_limited_as_asterisk() {
        let chain = |levels: usize| {
            let mut files: Vec<(String, String)> = (0..levels)
                .map(|n| (format!("/e/{n}.conf"), format!("[s{n}]\nk=v\n#include {}.conf\n", n + 1)))
                .collect();
            files.push((format!("/e/{levels}.conf"), format!("[s{levels}]\nk=v\n")));
            let src = MemSource(files.iter().map(|(p, t)| (PathBuf::from(p), t.clone().into_bytes())).collect());
            Config::parse_with(&src, Path::new("/e/0.conf"), &src.0[Path::new("/e/0.conf")])
        };
        let ok = chain(MAX_INCLUDE_LEVEL).unwrap();
        assert_eq!(ok.sections().count(), MAX_INCLUDE_LEVEL + 1);
        let e = chain(MAX_INCLUDE_LEVEL + 1).unwrap_err();
        let e: Vec<_> = e.0.iter().map(ToString::to_string).collect();
        assert_eq!(e, ["10.conf:3: #include \"11.conf\": Maximum Include level (10) exceeded"]);

        // Every file including the next twice: 2^11 reads without a bound on reads (not 2^41
        // with the level limit alone); MAX_INCLUDE_READS stops it sooner, with an error.
        let files: Vec<(PathBuf, Vec<u8>)> = (0..40)
            .map(|n| {
                (
                    PathBuf::from(format!("/e/{n}.conf")),
                    format!("#include {0}.conf\n#include {0}.conf\n", n + 1).into_bytes(),
                )
            })
            .collect();
        let src = MemSource(files.into_iter().collect());
        let e = Config::parse_with(&src, Path::new("/e/0.conf"), &src.0[Path::new("/e/0.conf")]).unwrap_err();
        let e: Vec<_> = e.0.iter().map(ToString::to_string).collect();
        assert!(e.iter().any(|e| e.contains("more than 1000 files read for one configuration")), "{e:?}");
        assert!(e.len() <= 2 * MAX_INCLUDE_READS, "{} errors", e.len());
    }

    #[test]
    fn a_section_appended_to_cannot_inherit_from_itself() {
        let text = "[s]\na=1\n".to_owned() + &"[s](s,+)\nb=2\n".repeat(64);
        let e = Config::parse_str("x.conf", &text).unwrap_err();
        assert_eq!(e.0.len(), 64);
        assert_eq!(e.0[0].to_string(), "x.conf:3: [s](+) cannot inherit from itself");
    }

    #[test]
    fn includes_on_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(dir.path().join("main.conf"), "[m]\n#include conf.d/*.conf\n").unwrap();
        std::fs::write(dir.path().join("conf.d/1.conf"), "[one]\nk=v\n").unwrap();
        std::fs::write(dir.path().join("conf.d/2.conf"), "[two]\n#include ../main.conf\n").unwrap();
        let e = Config::load(&dir.path().join("main.conf")).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert!(e.0[0].to_string().starts_with("conf.d/2.conf:2: #include"), "{e}");
        std::fs::write(dir.path().join("conf.d/2.conf"), "[two]\n").unwrap();
        let c = Config::load(&dir.path().join("main.conf")).unwrap();
        assert_eq!(c.section("one").unwrap().get("k").unwrap().location.to_string(), "conf.d/1.conf:2");
    }

    #[test]
    fn typed_values_report_their_place() {
        let c = parse("[general]\nbindport=50x60\nnat=maybe\nqualify=yes\n");
        let g = c.section("general").unwrap();
        assert_eq!(
            g.get("bindport").unwrap().parse::<u16>().unwrap_err().to_string(),
            "test.conf:2: bindport '50x60': invalid digit found in string"
        );
        assert_eq!(
            g.get("nat").unwrap().parse_bool().unwrap_err().to_string(),
            "test.conf:3: nat 'maybe': expected yes or no"
        );
        assert!(g.get("qualify").unwrap().parse_bool().unwrap());
    }

    #[test]
    fn crlf_and_latin1_are_read() {
        let c = Config::parse_with(&MemSource::default(), Path::new("x.conf"), b"[s]\r\nname=Jos\xe9\r\n").unwrap();
        assert_eq!(c.section("s").unwrap().value("name"), Some("Jos\u{fffd}"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = Config::parse_with(&MemSource::default(), Path::new("fuzz.conf"), &bytes);
            }

            #[test]
            fn never_panics_on_config_like_text(lines in proptest::collection::vec(
                "(\\[[a-z!+(),]{0,8}\\]?(\\([a-z!+,]{0,8}\\)?)?|[a-z ]{0,5}=>?[a-z;\\\\ ]{0,8}|#(include|exec|tryinclude) ?\"?[a-z*./]{0,8}\"?|;--|--;|[ -~]{0,12})",
                0..24,
            )) {
                let text = lines.join("\n");
                let src = MemSource([(PathBuf::from("a.conf"), text.clone().into_bytes())].into_iter().collect());
                let _ = Config::parse_with(&src, Path::new("a.conf"), text.as_bytes());
            }

            #[test]
            fn every_written_value_reads_back(pairs in proptest::collection::vec(("[a-z][a-z0-9_-]{0,10}", "[a-zA-Z0-9@:./ -]{0,20}"), 1..20)) {
                let mut text = String::from("[s]\n");
                for (k, v) in &pairs {
                    text.push_str(&format!("{k} = {v}\n"));
                }
                let c = Config::parse_str("p.conf", &text).unwrap();
                let s = c.section("s").unwrap();
                prop_assert_eq!(s.variables.len(), pairs.len());
                for (i, ((k, v), var)) in pairs.iter().zip(&s.variables).enumerate() {
                    prop_assert_eq!(&var.name, k);
                    prop_assert_eq!(&var.value, v.trim());
                    prop_assert_eq!(var.location.line as usize, i + 2);
                }
            }
        }
    }
}
