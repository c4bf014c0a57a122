//! func_callerid: `CALLERID(item)` — `name`, `num` (also `number`, and `ani`, which Starling
//! does not keep apart), `all` (`"name" <num>`), `pres` (also `name-pres`/`num-pres`: Starling
//! keeps one presentation for both) — read and written, as Asterisk's func_callerid.

use starling_core::apps::Function;
use starling_core::channel::Channel;
use starling_core::frame::{CallerId, Presentation};
use starling_core::{LoadError, Module, ModuleContext};

fn all(caller: &CallerId) -> String {
    match (caller.name.is_empty(), caller.number.is_empty()) {
        (true, _) => caller.number.clone(),
        (false, true) => format!("\"{}\"", caller.name),
        (false, false) => format!("\"{}\" <{}>", caller.name, caller.number),
    }
}

/// `pres[entation]` (Asterisk takes any item starting with `pres`), `name-pres`, `num-pres`.
fn is_pres(item: &str) -> bool {
    item.starts_with("pres") || ["name-pres", "num-pres", "number-pres"].contains(&item)
}

fn read(chan: &mut Channel, item: &str) -> Result<String, String> {
    Ok(match item.trim().to_ascii_lowercase().as_str() {
        "name" => chan.caller.name.clone(),
        "num" | "number" | "ani" => chan.caller.number.clone(),
        "all" => all(&chan.caller),
        item if is_pres(item) => chan.caller.presentation.name().to_owned(),
        other => return Err(format!("CALLERID: unknown item '{other}'")),
    })
}

fn write(chan: &mut Channel, item: &str, value: &str) -> Result<(), String> {
    let mut caller = chan.caller.clone();
    match item.trim().to_ascii_lowercase().as_str() {
        "name" => caller.name = value.trim_matches('"').to_owned(),
        "num" | "number" | "ani" => caller.number = value.to_owned(),
        "all" => caller = CallerId { presentation: caller.presentation, ..CallerId::parse(value) },
        item if is_pres(item) => {
            caller.presentation = Presentation::parse(value)
                .ok_or_else(|| format!("Unknown caller presentation '{}', value unchanged", value.trim()))?
        }
        other => return Err(format!("CALLERID: '{other}' cannot be set")),
    }
    // Through the channel, so that the manager hears NewCallerid.
    chan.set_caller(caller);
    Ok(())
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let functions = vec![Function {
        name: "CALLERID",
        synopsis: "Gets or sets Caller*ID data on the channel.",
        syntax: "CALLERID(datatype[,CID])",
        read: Some(read),
        write: Some(write),
        escalation: starling_core::apps::Escalation::None,
        uses: None,
    }];
    Ok(Box::new(ctx.register_functions(functions)?))
}

starling_core::module! {
    description: "Party ID related dialplan functions (Caller-ID)",
    support_level: Core,
    load: load,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_id_items_read_and_write() {
        let core = starling_core::Core::for_tests();
        let (mut chan, _driver) = Channel::new(&core, "SIP", "alice", false);
        write(&mut chan, "all", "\"Alice Smith\" <1001>").unwrap();
        assert_eq!(read(&mut chan, "name").unwrap(), "Alice Smith");
        assert_eq!(read(&mut chan, "num").unwrap(), "1001");
        write(&mut chan, "num", "2002").unwrap();
        assert_eq!(read(&mut chan, "all").unwrap(), "\"Alice Smith\" <2002>");
        write(&mut chan, "name", "").unwrap();
        assert_eq!(read(&mut chan, "all").unwrap(), "2002");
        assert!(read(&mut chan, "colour").is_err());
    }

    /// `CALLERID(pres)`: Asterisk's names read and written, a number too; an unknown one is
    /// refused and changes nothing; `all` keeps the presentation.
    #[test]
    fn caller_presentation_reads_and_writes() {
        let core = starling_core::Core::for_tests();
        let (mut chan, _driver) = Channel::new(&core, "SIP", "alice", false);
        assert_eq!(read(&mut chan, "pres").unwrap(), "allowed_not_screened");
        write(&mut chan, "pres", "prohib").unwrap();
        assert_eq!(read(&mut chan, "num-pres").unwrap(), "prohib");
        write(&mut chan, "all", "\"A\" <1>").unwrap();
        assert_eq!(read(&mut chan, "presentation").unwrap(), "prohib");
        write(&mut chan, "name-pres", "33").unwrap();
        assert_eq!(read(&mut chan, "pres").unwrap(), "prohib_passed_screen");
        assert!(write(&mut chan, "pres", "secret").is_err());
        assert_eq!(chan.caller.presentation, Presentation::PROHIB_PASSED_SCREEN);
    }
}
