//! func_cdr: `CDR(field[,options])` and `CDR_PROP(property)`, as Asterisk's func_cdr.
//!
//! `CDR()` reads the standard fields (`src`, `dst`, `start`, `billsec`, `disposition`...) of the
//! channel's record as it stands, or a variable set on it; option `u` gives times as epoch
//! seconds (`1700000000.000000`) and `f` durations with microseconds. It writes `userfield`,
//! `accountcode`, `amaflags` and variables; the other standard fields are read-only.
//! `CDR_PROP(disable)=1` stops the record from being logged (`0` logs it again).

use std::time::{SystemTime, UNIX_EPOCH};

use starling_core::apps::Function;
use starling_core::cdr::AmaFlags;
use starling_core::channel::Channel;
use starling_core::{LoadError, Module, ModuleContext};

/// Fields a dialplan cannot write.
const READ_ONLY: &[&str] = &[
    "clid",
    "src",
    "dst",
    "dcontext",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "uniqueid",
    "linkedid",
    "sequence",
];

fn epoch(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

fn cdr_read(chan: &mut Channel, args: &str) -> Result<String, String> {
    let ([name, options], _) = starling_core::apps::app_args::<2>(args);
    let name = name.trim();
    let Some(cdr) = chan.cdr_mut() else { return Ok(String::new()) };
    let record = cdr.record();
    let raw = options.contains('u');
    let float = options.contains('f');
    Ok(match name.to_ascii_lowercase().as_str() {
        "start" if raw => epoch(record.start),
        "answer" if raw => record.answer.map(epoch).unwrap_or_default(),
        "end" if raw => epoch(record.end),
        "duration" if float => {
            format!("{:.6}", record.end.duration_since(record.start).unwrap_or_default().as_secs_f64())
        }
        "billsec" if float => record
            .answer
            .map(|a| format!("{:.6}", record.end.duration_since(a).unwrap_or_default().as_secs_f64()))
            .unwrap_or_else(|| "0.000000".into()),
        field => match record.field(field) {
            Some(value) => value,
            None => cdr.variable(name).unwrap_or_default().to_owned(),
        },
    })
}

fn cdr_write(chan: &mut Channel, args: &str, value: &str) -> Result<(), String> {
    let ([name, _], _) = starling_core::apps::app_args::<2>(args);
    let name = name.trim();
    let lower = name.to_ascii_lowercase();
    if READ_ONLY.contains(&lower.as_str()) {
        return Err(format!("CDR: the field '{name}' is read-only"));
    }
    if lower == "accountcode" {
        chan.accountcode = value.to_owned();
    }
    let amaflags = match lower.as_str() {
        "amaflags" => Some(AmaFlags::parse(value).ok_or_else(|| format!("CDR: '{value}' is no AMA flag"))?),
        _ => None,
    };
    // As Asterisk's ast_cdr_setvar: every record still open (the other callees' of a Dial too).
    for cdr in chan.cdrs_to_write() {
        match lower.as_str() {
            "userfield" => value.clone_into(&mut cdr.record_mut().userfield),
            "accountcode" => {}
            "amaflags" => cdr.record_mut().amaflags = amaflags.unwrap_or_default(),
            _ => cdr.set_variable(name, value),
        }
    }
    Ok(())
}

fn prop_read(chan: &mut Channel, args: &str) -> Result<String, String> {
    match args.trim().to_ascii_lowercase().as_str() {
        "disable" => Ok(if chan.cdr().is_some_and(|c| c.disabled) { "1" } else { "0" }.into()),
        other => Err(format!("CDR_PROP: unknown property '{other}'")),
    }
}

fn prop_write(chan: &mut Channel, args: &str, value: &str) -> Result<(), String> {
    match args.trim().to_ascii_lowercase().as_str() {
        "disable" => {
            let disable = starling_core::config::parse_bool(value)
                .ok_or_else(|| format!("CDR_PROP(disable): '{value}' is not a boolean"))?;
            for cdr in chan.cdrs_to_write() {
                cdr.disabled = disable;
            }
            Ok(())
        }
        other => Err(format!("CDR_PROP: unknown property '{other}'")),
    }
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let functions = vec![
        Function {
            name: "CDR",
            synopsis: "Gets or sets a CDR variable.",
            syntax: "CDR(name[,options])",
            read: Some(cdr_read),
            write: Some(cdr_write),
            escalation: starling_core::apps::Escalation::None,
            uses: None,
        },
        Function {
            name: "CDR_PROP",
            synopsis: "Set a property on a channel's CDR.",
            syntax: "CDR_PROP(property)",
            read: Some(prop_read),
            write: Some(prop_write),
            escalation: starling_core::apps::Escalation::None,
            uses: None,
        },
    ];
    Ok(Box::new(ctx.register_functions(functions)?))
}

starling_core::module! {
    description: "Call Detail Record (CDR) dialplan functions",
    support_level: Core,
    load: load,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_variables_and_read_only_ones() {
        let core = starling_core::Core::for_tests();
        let (mut chan, _driver) = Channel::new(&core, "SIP", "alice", true);
        chan.caller.number = "1001".into();
        chan.exten = "600".into();
        chan.set_application("Echo", "");
        assert_eq!(cdr_read(&mut chan, "src").unwrap(), "1001");
        assert_eq!(cdr_read(&mut chan, "dst").unwrap(), "600");
        assert_eq!(cdr_read(&mut chan, "lastapp").unwrap(), "Echo");
        assert_eq!(cdr_read(&mut chan, "disposition").unwrap(), "NO ANSWER");
        assert!(cdr_read(&mut chan, "start,u").unwrap().contains('.'));
        assert_eq!(cdr_read(&mut chan, "billsec,f").unwrap(), "0.000000");
        cdr_write(&mut chan, "userfield", "vip").unwrap();
        cdr_write(&mut chan, "project", "apollo").unwrap();
        assert_eq!(cdr_read(&mut chan, "userfield").unwrap(), "vip");
        assert_eq!(cdr_read(&mut chan, "project").unwrap(), "apollo");
        assert!(cdr_write(&mut chan, "billsec", "100").is_err());
        cdr_write(&mut chan, "amaflags", "billing").unwrap();
        assert_eq!(cdr_read(&mut chan, "amaflags").unwrap(), "BILLING");
        assert_eq!(prop_read(&mut chan, "disable").unwrap(), "0");
        prop_write(&mut chan, "disable", "1").unwrap();
        assert_eq!(prop_read(&mut chan, "disable").unwrap(), "1");
        assert!(prop_write(&mut chan, "party_a", "1").is_err());
    }
}
