//! func_channel: `CHANNEL(item)` — name, uniqueid, linkedid, state, language, accountcode,
//! context, exten, priority, hangupcause, channeltype, checkhangup, audionativeformat,
//! audioreadformat, audiowriteformat, tonezone (language, accountcode and tonezone writable) —
//! as Asterisk's func_channel.

use starling_core::apps::Function;
use starling_core::channel::Channel;
use starling_core::{LoadError, Module, ModuleContext};

fn read(chan: &mut Channel, item: &str) -> Result<String, String> {
    Ok(match item.trim().to_ascii_lowercase().as_str() {
        "name" | "channame" => chan.name().to_owned(),
        "uniqueid" => chan.uniqueid().to_owned(),
        "state" => chan.state().as_str().to_owned(),
        "language" => chan.language.clone(),
        "accountcode" => chan.accountcode.clone(),
        "context" => chan.context.clone(),
        "exten" => chan.exten.clone(),
        "priority" => chan.priority.to_string(),
        "hangupcause" => chan.hangup_cause().map(|c| c.0.to_string()).unwrap_or_default(),
        "channeltype" | "tech" => chan.name().split('/').next().unwrap_or("").to_owned(),
        "linkedid" => chan.linkedid.clone(),
        "checkhangup" => if chan.is_hung_up() { "1" } else { "0" }.to_owned(),
        // The one format a channel here reads and writes (the driver translates).
        "audionativeformat" | "audioreadformat" | "audiowriteformat" => chan.native_format.to_owned(),
        // Read's `i` and PlayTones look the zone up in TONEZONE, as Asterisk's indications do.
        "tonezone" => chan.var("TONEZONE").unwrap_or("").to_owned(),
        other => return Err(format!("CHANNEL: unknown item '{other}'")),
    })
}

fn write(chan: &mut Channel, item: &str, value: &str) -> Result<(), String> {
    match item.trim().to_ascii_lowercase().as_str() {
        "language" => chan.language = value.to_owned(),
        "accountcode" => chan.accountcode = value.to_owned(),
        "tonezone" => chan.set_var("TONEZONE", value),
        other => return Err(format!("CHANNEL: '{other}' cannot be set")),
    }
    Ok(())
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let functions = vec![Function {
        name: "CHANNEL",
        synopsis: "Gets/sets various pieces of information about the channel.",
        syntax: "CHANNEL(item)",
        read: Some(read),
        write: Some(write),
        escalation: starling_core::apps::Escalation::None,
        uses: None,
    }];
    Ok(Box::new(ctx.register_functions(functions)?))
}

starling_core::module! {
    description: "Channel information dialplan functions",
    support_level: Core,
    load: load,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_items() {
        let core = starling_core::Core::for_tests();
        let (mut chan, _driver) = Channel::new(&core, "SIP", "alice", false);
        assert!(read(&mut chan, "name").unwrap().starts_with("SIP/alice-"));
        assert_eq!(read(&mut chan, "channeltype").unwrap(), "SIP");
        assert_eq!(read(&mut chan, "state").unwrap(), "Down");
        write(&mut chan, "language", "fr").unwrap();
        assert_eq!(read(&mut chan, "language").unwrap(), "fr");
        assert!(write(&mut chan, "name", "x").is_err());
        assert_eq!(read(&mut chan, "linkedid").unwrap(), chan.uniqueid());
        assert_eq!(read(&mut chan, "checkhangup").unwrap(), "0");
        assert_eq!(read(&mut chan, "audionativeformat").unwrap(), "slin");
        write(&mut chan, "tonezone", "uk").unwrap();
        assert_eq!((read(&mut chan, "tonezone").unwrap().as_str(), chan.var("TONEZONE")), ("uk", Some("uk")));
        assert!(read(&mut chan, "bogus").is_err());
    }
}
