//! func_devstate: `DEVICE_STATE(device)`, as Asterisk's func_devstate: the state of a device
//! (`SIP/alice`, `Custom:lamp`) — `UNKNOWN`, `NOT_INUSE`, `INUSE`, `BUSY`, `INVALID`,
//! `UNAVAILABLE`, `RINGING`, `RINGINUSE` or `ONHOLD` — from the core's device state engine
//! (`starling_core::devicestate`). It brings the `Custom:` devices: `Set(DEVICE_STATE(Custom:lamp)=INUSE)`
//! (or `devstate change Custom:lamp INUSE`) keeps the state in the astdb, family
//! `CustomDevstate`, so it survives a restart, and tells the core, so hints naming the device
//! change; `devstate list` lists them.

use std::fmt::Write as _;
use std::sync::Arc;

use starling_core::apps::{Function, Registration};
use starling_core::channel::Channel;
use starling_core::cli::{CliCommand, CliRegistration, CliResult};
use starling_core::devicestate::{DeviceState, DevstateProvider};
use starling_core::{tracing, Core, LoadError, Module, ModuleContext};

/// Asterisk's astdb family for custom device states.
pub const ASTDB_FAMILY: &str = "CustomDevstate";

fn read(chan: &mut Channel, device: &str) -> Result<String, String> {
    let device = device.trim();
    if device.is_empty() {
        return Err("DEVICE_STATE: a device is required, e.g. DEVICE_STATE(SIP/alice)".to_owned());
    }
    Ok(chan.core().device_state(device).as_str().to_owned())
}

/// `Custom:name` → `name` (the prefix in any case); `None` for another device.
fn custom_name(device: &str) -> Option<&str> {
    let prefix = device.get(..7)?;
    prefix.eq_ignore_ascii_case("Custom:").then(|| &device[7..])
}

/// Sets a custom device (func_devstate's `devstate_write`): kept in the astdb, told to the core.
fn set_custom(core: &Core, name: &str, state: &str) -> Result<(), String> {
    core.db().put(ASTDB_FAMILY, name, state).map_err(|e| e.to_string())?;
    core.devstate_changed(&format!("Custom:{name}"));
    Ok(())
}

fn write(chan: &mut Channel, device: &str, value: &str) -> Result<(), String> {
    let Some(name) = custom_name(device.trim()) else {
        return Err("The DEVICE_STATE function can only be used to set 'Custom:' device state!".into());
    };
    if name.is_empty() {
        return Err("DEVICE_STATE function called with no custom device name!".into());
    }
    let value = value.trim();
    if DeviceState::from_name(value) == DeviceState::Unknown {
        return Err(format!("DEVICE_STATE function given invalid state value '{value}'"));
    }
    set_custom(chan.core(), name, value)
}

/// The `Custom` provider (func_devstate's `custom_devstate_callback`): the astdb's value.
fn custom_state(core: &std::sync::Weak<Core>, name: &str) -> DeviceState {
    let Some(core) = core.upgrade() else { return DeviceState::Unknown };
    match core.db().get(ASTDB_FAMILY, name) {
        Ok(Some(value)) => DeviceState::from_name(&value),
        Ok(None) => DeviceState::Unknown,
        Err(e) => {
            tracing::warn!("Custom:{name}: {e}");
            DeviceState::Unknown
        }
    }
}

/// The custom devices in the astdb: `(name, state as stored)`.
fn customs(core: &Core) -> Vec<(String, String)> {
    let prefix = format!("/{ASTDB_FAMILY}/");
    core.db()
        .show(&prefix)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(key, value)| key.rsplit_once('/').map(|(_, name)| (name.to_owned(), value)))
        .filter(|(name, _)| !name.is_empty())
        .collect()
}

const RULE: &str = "---------------------------------------------------------------------\n";

fn devstate_list(call: &mut starling_core::cli::CliCall<'_>) -> CliResult {
    if !call.args().is_empty() {
        return CliResult::ShowUsage;
    }
    let mut out = format!("\n{RULE}--- Custom Device States --------------------------------------------\n{RULE}---\n");
    for (name, state) in customs(call.core) {
        let _ = write!(out, "--- Name: 'Custom:{name}'  State: '{state}'\n---\n");
    }
    let _ = writeln!(out, "{RULE}{RULE}");
    call.print(&out);
    CliResult::Success
}

fn devstate_change(call: &mut starling_core::cli::CliCall<'_>) -> CliResult {
    let [device, state] = call.args() else { return CliResult::ShowUsage };
    let (device, state) = (device.clone(), state.clone());
    let Some(name) = custom_name(&device) else {
        call.print("The devstate command can only be used to set 'Custom:' device state!\n");
        return CliResult::Failure;
    };
    if name.is_empty() || DeviceState::from_name(&state) == DeviceState::Unknown {
        return CliResult::ShowUsage;
    }
    let _ = writeln!(call, "Changing {name} to {state}");
    match set_custom(call.core, name, &state) {
        Ok(()) => CliResult::Success,
        Err(e) => {
            let _ = writeln!(call, "{e}");
            CliResult::Failure
        }
    }
}

fn complete_state(_: &Arc<Core>, _: &[&str], position: usize) -> Vec<String> {
    if position != 3 {
        return Vec::new();
    }
    ["UNKNOWN", "NOT_INUSE", "INUSE", "BUSY", "INVALID", "UNAVAILABLE", "RINGING", "RINGINUSE", "ONHOLD"]
        .into_iter()
        .map(String::from)
        .collect()
}

struct Loaded {
    _functions: starling_core::module::Registrations,
    _cli: CliRegistration,
    _provider: Registration<DevstateProvider>,
}

impl Module for Loaded {}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let core = Arc::downgrade(ctx.core());
    let provider: DevstateProvider = Arc::new(move |name| custom_state(&core, name));
    let provider = ctx
        .core()
        .devstates()
        .add_provider("Custom", provider)
        .map_err(|e| LoadError::Failure(format!("device state provider {e}")))?;
    let functions = vec![Function {
        name: "DEVICE_STATE",
        synopsis: "Get or Set a device state.",
        syntax: "DEVICE_STATE(device)",
        read: Some(read),
        write: Some(write),
        escalation: starling_core::apps::Escalation::None,
        uses: None,
    }];
    let functions = ctx.register_functions(functions)?;
    let cli = ctx.register_cli(vec![
        CliCommand::new(
            "devstate list",
            "List currently known custom device states",
            "Usage: devstate list\n       List all custom device states that have been set by using\n       the DEVICE_STATE dialplan function.\n",
            devstate_list,
        ),
        CliCommand::new(
            "devstate change",
            "Change a custom device state",
            "Usage: devstate change <device> <state>\n       Change a custom device to a new state.\n       The possible values for the state are:\nUNKNOWN | NOT_INUSE | INUSE | BUSY | INVALID | UNAVAILABLE | RINGING\nRINGINUSE | ONHOLD\n\nExamples:\n       devstate change Custom:mystate1 INUSE\n       devstate change Custom:mystate1 NOT_INUSE\n       \n",
            devstate_change,
        )
        .with_completer(complete_state),
    ])?;
    // As func_devstate's load_module: the devices kept in the astdb are told to the engine, so
    // hints naming them start in their state.
    for (name, _) in customs(ctx.core()) {
        ctx.core().devstate_changed(&format!("Custom:{name}"));
    }
    Ok(Box::new(Loaded { _functions: functions, _cli: cli, _provider: provider }))
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

    /// Custom devices are written to the astdb and read back through the provider; other
    /// devices and unknown states are refused.
    #[test]
    fn custom_devices_live_in_the_astdb() {
        let core = starling_core::Core::for_tests();
        core.set_db(Arc::new(starling_core::db::SqliteStorage::in_memory()));
        let weak = Arc::downgrade(&core);
        let _provider = core.devstates().add_provider("Custom", Arc::new(move |n| custom_state(&weak, n))).unwrap();
        let mut chan = Channel::dummy(&core);
        assert_eq!(read(&mut chan, "Custom:lamp").unwrap(), "UNKNOWN");
        write(&mut chan, "custom:lamp", "INUSE").unwrap();
        assert_eq!(read(&mut chan, "Custom:lamp").unwrap(), "INUSE");
        assert_eq!(core.db().get(ASTDB_FAMILY, "lamp").unwrap().as_deref(), Some("INUSE"));
        assert!(write(&mut chan, "SIP/alice", "INUSE").is_err());
        assert!(write(&mut chan, "Custom:", "INUSE").is_err());
        assert!(write(&mut chan, "Custom:lamp", "sideways").is_err());
        assert_eq!(customs(&core), [("lamp".to_owned(), "INUSE".to_owned())]);
        assert_eq!(custom_name("Cust"), None);
        assert_eq!(custom_name("Custom:é"), Some("é"));
        assert_eq!(custom_name("Customé"), None);
    }
}
