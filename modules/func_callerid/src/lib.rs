//! func_callerid: `CALLERID(item)` — `name`, `num` (also `number`, and `ani`, which Starling
//! does not keep apart), `all` (`"name" <num>`) — read and written, as Asterisk's func_callerid.

use starling_core::apps::Function;
use starling_core::channel::Channel;
use starling_core::frame::CallerId;
use starling_core::{LoadError, Module, ModuleContext};

fn all(caller: &CallerId) -> String {
    match (caller.name.is_empty(), caller.number.is_empty()) {
        (true, _) => caller.number.clone(),
        (false, true) => format!("\"{}\"", caller.name),
        (false, false) => format!("\"{}\" <{}>", caller.name, caller.number),
    }
}

fn read(chan: &mut Channel, item: &str) -> Result<String, String> {
    Ok(match item.trim().to_ascii_lowercase().as_str() {
        "name" => chan.caller.name.clone(),
        "num" | "number" | "ani" => chan.caller.number.clone(),
        "all" => all(&chan.caller),
        other => return Err(format!("CALLERID: unknown item '{other}'")),
    })
}

fn write(chan: &mut Channel, item: &str, value: &str) -> Result<(), String> {
    let mut caller = chan.caller.clone();
    match item.trim().to_ascii_lowercase().as_str() {
        "name" => caller.name = value.trim_matches('"').to_owned(),
        "num" | "number" | "ani" => caller.number = value.to_owned(),
        "all" => caller = CallerId::parse(value),
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
}
