//! func_extstate: `EXTENSION_STATE(exten[@context])`, as Asterisk's func_extstate: the state of
//! an extension's hint (`exten => 1001,hint,SIP/1001`), from the core's hints
//! (`starling_core::hints`) — `NOT_INUSE`, `INUSE`, `BUSY`, `UNAVAILABLE`, `RINGING`,
//! `RINGINUSE`, `HOLDINUSE`, `ONHOLD`, or `UNKNOWN` (no hint). The context defaults to `default`.

use starling_core::apps::Function;
use starling_core::channel::Channel;
use starling_core::{LoadError, Module, ModuleContext};

fn read(chan: &mut Channel, args: &str) -> Result<String, String> {
    let args = args.trim();
    if args.is_empty() {
        return Err("EXTENSION_STATE requires an extension".to_owned());
    }
    let (exten, context) = args.split_once('@').unwrap_or((args, "default"));
    let context = if context.is_empty() { "default" } else { context };
    Ok(chan.core().extension_state(context, exten).as_function_str().to_owned())
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let functions = vec![Function {
        name: "EXTENSION_STATE",
        synopsis: "Get an extension's state.",
        syntax: "EXTENSION_STATE(extension[@context])",
        read: Some(read),
        write: None,
        escalation: starling_core::apps::Escalation::None,
        uses: None,
    }];
    Ok(Box::new(ctx.register_functions(functions)?))
}

starling_core::module! {
    description: "Gets an extension's state in the dialplan",
    support_level: Core,
    load: load,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a hint an extension reads UNKNOWN; the extension is required.
    #[test]
    fn no_hint_reads_unknown() {
        let core = starling_core::Core::for_tests();
        let mut chan = Channel::dummy(&core);
        assert_eq!(read(&mut chan, "1001@nowhere").unwrap(), "UNKNOWN");
        assert_eq!(read(&mut chan, "1001").unwrap(), "UNKNOWN");
        assert!(read(&mut chan, "").is_err());
    }
}
