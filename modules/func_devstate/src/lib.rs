//! func_devstate: `DEVICE_STATE(device)`, as Asterisk's func_devstate: the state of a device
//! (`SIP/alice`) by its technology — `UNKNOWN`, `NOT_INUSE`, `INUSE`, `BUSY`, `INVALID`,
//! `UNAVAILABLE`, `RINGING`, `RINGINUSE` or `ONHOLD`. Read only: Asterisk's `Custom:` devices
//! (set by writing the function) are not kept, so `Custom:x` reads `INVALID`.

use starling_core::apps::Function;
use starling_core::channel::Channel;
use starling_core::{LoadError, Module, ModuleContext};

fn read(chan: &mut Channel, device: &str) -> Result<String, String> {
    let device = device.trim();
    if device.is_empty() {
        return Err("DEVICE_STATE: a device is required, e.g. DEVICE_STATE(SIP/alice)".to_owned());
    }
    Ok(chan.core().device_state(device).as_str().to_owned())
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let functions = vec![Function {
        name: "DEVICE_STATE",
        synopsis: "Get or Set a device state.",
        syntax: "DEVICE_STATE(device)",
        read: Some(read),
        write: None,
        escalation: starling_core::apps::Escalation::None,
        uses: None,
    }];
    Ok(Box::new(ctx.register_functions(functions)?))
}

starling_core::module! {
    description: "Gets or sets a device state in the dialplan",
    support_level: Core,
    load: load,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device of no technology is INVALID; the argument is required.
    #[test]
    fn device_state_reads_invalid_for_no_technology() {
        let core = starling_core::Core::for_tests();
        let mut chan = Channel::dummy(&core);
        assert_eq!(read(&mut chan, "Nope/alice").unwrap(), "INVALID");
        assert_eq!(read(&mut chan, "alice").unwrap(), "INVALID");
        assert!(read(&mut chan, " ").is_err());
    }
}
