//! func_strings: string functions for the dialplan — `LEN`, `CUT`, `FIELDQTY`, `FILTER`,
//! `REGEX`, `STRFTIME`, `TOUPPER`, `TOLOWER`, `HASH`, `HASHKEYS` — as Asterisk's func_strings
//! (and func_cut) define them.

use starling_core::apps::{app_args, encoded_char, get_encoded_str, Function};
use starling_core::channel::Channel;
use starling_core::{tracing, LoadError, Module, ModuleContext};

fn len(_: &mut Channel, args: &str) -> Result<String, String> {
    Ok(args.chars().count().to_string())
}

/// `CUT(varname,delimiter,fieldspec)`: fields of a variable, 1-based; `2-3`, `2-`, `-3`, `1&4`.
fn cut(chan: &mut Channel, args: &str) -> Result<String, String> {
    let ([var, delimiter, spec], argc) = app_args::<3>(args);
    if argc < 3 {
        return Err("CUT(varname,delimiter,fieldspec)".into());
    }
    let delimiter = match get_encoded_str(&delimiter) {
        d if d.is_empty() => "-".to_owned(),
        d => d,
    };
    let delimiter = delimiter.as_str();
    let value = chan.var(var.trim()).unwrap_or("").to_owned();
    let fields: Vec<&str> = value.split(delimiter).collect();
    let mut out: Vec<&str> = Vec::new();
    for piece in spec.split('&') {
        let piece = piece.trim();
        let (from, to) = match piece.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().unwrap_or(1), b.parse::<usize>().unwrap_or(fields.len())),
            None => {
                let n = piece.parse::<usize>().map_err(|_| format!("CUT: bad field '{piece}'"))?;
                (n, n)
            }
        };
        for i in from.max(1)..=to.min(fields.len()) {
            out.push(fields[i - 1]);
        }
    }
    Ok(out.join(delimiter))
}

/// `FIELDQTY(varname,delim)`: how many fields.
fn fieldqty(chan: &mut Channel, args: &str) -> Result<String, String> {
    let ([var, delimiter], argc) = app_args::<2>(args);
    if argc < 2 {
        return Err("FIELDQTY(varname,delim)".into());
    }
    let delimiter = get_encoded_str(&delimiter);
    let value = chan.var(var.trim()).unwrap_or("");
    Ok(if value.is_empty() { "0".into() } else { value.split(delimiter.as_str()).count().to_string() })
}

/// `FILTER(allowed-chars,string)`: the string with only the allowed characters left. The
/// allowed ones are listed, or given as ranges `a-z`, with the escapes of [`encoded_char`]
/// (`\x41`, `\040`, `\-` for a `-` itself); a range may wrap past 255, with a warning, as
/// Asterisk's does. Works on bytes, as Asterisk's.
fn filter(_: &mut Channel, args: &str) -> Result<String, String> {
    let parts = starling_core::apps::separate_args(args, ',', false, 2);
    let [allowed, string] = parts.as_slice() else {
        return Err("Usage: FILTER(<allowed-chars>,<string>)".into());
    };
    if allowed.starts_with('"') {
        tracing::warn!("FILTER allowed characters includes the quote (\") character.  This may not be what you want.");
    }
    let mut set = [false; 256];
    let mut rest = allowed.as_bytes();
    while !rest.is_empty() {
        let (c1, used) = encoded_char(rest).ok_or_else(|| format!("FILTER: bad allowed characters '{allowed}'"))?;
        rest = &rest[used..];
        if let [b'-', after @ ..] = rest {
            let (c2, used) = encoded_char(after).unwrap_or((c1, 0));
            rest = &after[used..];
            if c2 < c1 {
                tracing::warn!("Range wrapping in FILTER({args}).  This may not be what you want.");
            }
            let mut c = c1;
            while c != c2 {
                set[c as usize] = true;
                c = c.wrapping_add(1);
            }
            set[c2 as usize] = true;
        } else {
            set[c1 as usize] = true;
        }
    }
    // NUL ends Asterisk's list of allowed characters: it is never allowed.
    set[0] = false;
    let kept: Vec<u8> = string.bytes().filter(|&b| set[b as usize]).collect();
    Ok(String::from_utf8_lossy(&kept).into_owned())
}

/// `REGEX("regular expression" string)`: 1 if it matches.
fn regex(_: &mut Channel, args: &str) -> Result<String, String> {
    let args = args.trim_start();
    let rest = args.strip_prefix('"').ok_or("REGEX(\"regular expression\" string)")?;
    let end = rest.find('"').ok_or("REGEX: unterminated regular expression")?;
    let re = regex::Regex::new(&rest[..end]).map_err(|e| format!("REGEX: {e}"))?;
    let subject = rest[end + 1..].strip_prefix(' ').unwrap_or(&rest[end + 1..]);
    Ok(if re.is_match(subject) { "1" } else { "0" }.into())
}

/// `STRFTIME([epoch][,timezone][,format])`: local time as strftime formats it.
fn strftime(_: &mut Channel, args: &str) -> Result<String, String> {
    use starling_core::chrono::{DateTime, Local, TimeZone};
    let ([epoch, timezone, format], _) = app_args::<3>(args);
    let (epoch, timezone) = (epoch.trim(), timezone.trim());
    let format = if format.is_empty() { "%c" } else { format.as_str() };
    let time: DateTime<Local> = match epoch.parse::<i64>() {
        Ok(secs) => Local.timestamp_opt(secs, 0).single().ok_or("STRFTIME: bad epoch")?,
        Err(_) => Local::now(),
    };
    let mut out = String::new();
    use std::fmt::Write as _;
    let written = match timezone.to_ascii_uppercase().as_str() {
        "" => write!(out, "{}", time.format(format)),
        "UTC" | "GMT" | "ETC/UTC" | "UTC0" => {
            write!(out, "{}", time.with_timezone(&starling_core::chrono::Utc).format(format))
        }
        // No zone database in this build: say so rather than print another zone's time.
        _ => return Err(format!("STRFTIME: time zone '{timezone}' is not supported (local time or UTC)")),
    };
    written.map_err(|_| format!("STRFTIME: bad format '{format}'"))?;
    Ok(out)
}

/// Hashes live in channel variables `~HASH~name~key~`, as Asterisk keeps them.
fn hash_var(name: &str, key: &str) -> String {
    format!("~HASH~{}~{}~", name.trim(), key.trim())
}

/// `HASH(name,key)` reads one value; `HASH(name)` all values, comma-separated in key order.
fn hash_read(chan: &mut Channel, args: &str) -> Result<String, String> {
    match app_args::<2>(args) {
        ([name, key], 2) => Ok(chan.var(&hash_var(&name, &key)).unwrap_or("").to_owned()),
        ([name, _], _) => {
            let prefix = format!("~HASH~{}~", name.trim());
            let values: Vec<String> = chan
                .var_names()
                .filter(|n| n.starts_with(&prefix))
                .map(str::to_owned)
                .collect::<Vec<_>>()
                .into_iter()
                .map(|n| chan.var(&n).unwrap_or("").to_owned())
                .collect();
            Ok(values.join(","))
        }
    }
}

fn hash_write(chan: &mut Channel, args: &str, value: &str) -> Result<(), String> {
    let ([name, key], argc) = app_args::<2>(args);
    if argc < 2 {
        return Err("HASH(hashname,hashkey)=value".into());
    }
    chan.set_var(&hash_var(&name, &key), value);
    Ok(())
}

/// `HASHKEYS(name)`: the keys of a hash, comma-separated.
fn hashkeys(chan: &mut Channel, args: &str) -> Result<String, String> {
    let prefix = format!("~HASH~{}~", args.trim());
    let keys: Vec<&str> = chan.var_names().filter_map(|n| n.strip_prefix(&prefix)?.strip_suffix('~')).collect();
    Ok(keys.join(","))
}

fn toupper(_: &mut Channel, args: &str) -> Result<String, String> {
    Ok(args.to_uppercase())
}

fn tolower(_: &mut Channel, args: &str) -> Result<String, String> {
    Ok(args.to_lowercase())
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let functions = [
        Function::read_only("LEN", "Return the length of the string given.", "LEN(string)", len),
        Function::read_only(
            "CUT",
            "Slices and dices strings, based upon a named delimiter.",
            "CUT(varname,char-delim,range-spec)",
            cut,
        ),
        Function::read_only(
            "FIELDQTY",
            "Count the fields with an arbitrary delimiter",
            "FIELDQTY(varname,delim)",
            fieldqty,
        ),
        Function::read_only(
            "FILTER",
            "Filter the string to include only the allowed characters",
            "FILTER(allowed-chars,string)",
            filter,
        ),
        Function::read_only(
            "REGEX",
            "Check string against a regular expression.",
            "REGEX(\"regular expression\" string)",
            regex,
        ),
        Function::read_only(
            "STRFTIME",
            "Returns the current date/time in the specified format.",
            "STRFTIME([epoch][,timezone[,format]])",
            strftime,
        ),
        Function::read_only("TOUPPER", "Convert string to all uppercase letters.", "TOUPPER(string)", toupper),
        Function::read_only("HASHKEYS", "Retrieve the keys of the HASH() function.", "HASHKEYS(hashname)", hashkeys),
        Function {
            name: "HASH",
            synopsis: "Implementation of a dialplan associative array",
            syntax: "HASH(hashname[,hashkey])",
            read: Some(hash_read),
            write: Some(hash_write),
            escalation: starling_core::apps::Escalation::None,
            uses: None,
        },
        Function::read_only("TOLOWER", "Convert string to all lowercase letters.", "TOLOWER(string)", tolower),
    ];
    Ok(Box::new(ctx.register_functions(functions.into())?))
}

starling_core::module! {
    description: "String handling dialplan functions",
    support_level: Core,
    load: load,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_functions() {
        let core = starling_core::Core::for_tests();
        let (mut chan, _driver) = Channel::new(&core, "Test", "x", false);
        chan.set_var("PATH", "a-b-c-d");
        chan.set_var("LIST", "x,y,z");
        assert_eq!(len(&mut chan, "hello").unwrap(), "5");
        assert_eq!(cut(&mut chan, "PATH,-,2").unwrap(), "b");
        assert_eq!(cut(&mut chan, "PATH,-,2-3").unwrap(), "b-c");
        assert_eq!(cut(&mut chan, "PATH,-,3-").unwrap(), "c-d");
        assert_eq!(cut(&mut chan, "PATH,-,1&4").unwrap(), "a-d");
        assert_eq!(fieldqty(&mut chan, "LIST,,").unwrap(), "3");
        assert_eq!(fieldqty(&mut chan, "PATH,-").unwrap(), "4");
        assert_eq!(regex(&mut chan, "\"^1[0-9]+$\" 1234").unwrap(), "1");
        assert_eq!(regex(&mut chan, "\"^2\" 1234").unwrap(), "0");
        assert_eq!(strftime(&mut chan, "0,,%Y").unwrap().len(), 4);
        assert_eq!(strftime(&mut chan, "86399,UTC,%Y-%m-%d %H:%M:%S").unwrap(), "1970-01-01 23:59:59");
        assert!(strftime(&mut chan, "0,Europe/Paris,%H").is_err());
        assert_eq!(toupper(&mut chan, "abc").unwrap(), "ABC");
        assert!(cut(&mut chan, "PATH").is_err());
        hash_write(&mut chan, "ext,alice", "100").unwrap();
        hash_write(&mut chan, "ext,bob", "200").unwrap();
        assert_eq!(hash_read(&mut chan, "ext,bob").unwrap(), "200");
        assert_eq!(hash_read(&mut chan, "ext").unwrap(), "100,200");
        assert_eq!(hashkeys(&mut chan, "ext").unwrap(), "alice,bob");
    }

    /// Escaped delimiters, as Asterisk's documentation writes them (issue 22).
    #[test]
    fn escaped_commas_are_delimiters() {
        let core = starling_core::Core::for_tests();
        let (mut chan, _driver) = Channel::new(&core, "Test", "x", false);
        chan.set_var("WORDS", "alpha,beta,gamma,delta");
        chan.set_var("TABS", "a\tb\tc");
        assert_eq!(cut(&mut chan, "WORDS,\\,,3").unwrap(), "gamma");
        assert_eq!(cut(&mut chan, "WORDS,\\,,2-3").unwrap(), "beta,gamma");
        assert_eq!(cut(&mut chan, "WORDS,\",\",4").unwrap(), "delta", "a quoted comma");
        assert_eq!(fieldqty(&mut chan, "WORDS,\\,").unwrap(), "4");
        assert_eq!(fieldqty(&mut chan, "TABS,\\t").unwrap(), "3");
        // Not the last field: the splitting takes one backslash, decoding the other.
        assert_eq!(cut(&mut chan, "TABS,\\\\t,2").unwrap(), "b");
    }

    /// Asterisk's test_FILTER table (tests/test_func_strings.c), then its documented escapes.
    #[test]
    fn filter_as_asterisk() {
        let core = starling_core::Core::for_tests();
        let (mut chan, _driver) = Channel::new(&core, "Test", "x", false);
        let subject = "0042133333&DAHDI/g1/2212";
        for (allowed, want) in [
            ("A-R", "DAHDI"),
            ("A\\-R", "A"),
            ("\\x41-R", "DAHDI"),
            ("0-9A-Ca-c", "0042133333A12212"),
            ("0-9a-cA-C_+\\-", "0042133333A12212"),
        ] {
            assert_eq!(filter(&mut chan, &format!("{allowed},{subject}")).unwrap(), want, "FILTER({allowed},...)");
        }
        for (args, want) in [
            ("0-9,+1 (555) 123-4567", "15551234567"),
            ("a-zA-Z0-9,rm -rf /; echo `id` $(id)", "rmrfechoidid"),
            ("\\x30-\\x39,a1b2c3", "123"),
            ("\\060-\\071,a1b2c3", "123"),
            ("\\x20a,a a\tb", "a a"),
            ("\\t\\n,x\ty\nz", "\t\n"),
            ("\\x4,\u{4}x", "\u{4}"),
            ("a-,abc", "a"),
            ("abc,", ""),
            ("0-9,a,1", "1"),
            ("é,café", "é"),
            ("\\xFE-\\x01,\u{1}ab", "\u{1}"),
        ] {
            assert_eq!(filter(&mut chan, args).unwrap(), want, "FILTER({args})");
        }
        assert!(filter(&mut chan, "a-z").is_err(), "no string");
        assert!(filter(&mut chan, "\\xZ,abc").is_err(), "a bad hex escape");
    }
}
