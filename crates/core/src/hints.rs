//! Hints and extension states (Asterisk's pbx.c `ast_extension_state`, `ast_extension_state_add`):
//! `exten => 1001,hint,SIP/1001&Custom:dnd1001` makes `1001@default` a watched extension whose
//! state is its devices' states aggregated ([`crate::devicestate::DevstateAggregate`]) and mapped
//! to Asterisk's extension state bits ([`ExtensionState`]).
//!
//! The dialplan (pbx_config) owns the hints; the core keeps a table of them with their last
//! state, read again from the dialplan when it is set or changed ([`Core::hints_changed`],
//! after `dialplan reload` or `dialplan add extension`), so watchers (chan_sip's subscriptions,
//! the manager's `ExtensionStatus` events) stay attached across reloads: a watcher is keyed by
//! `exten@context`, not by the dialplan that held the hint. When a hint goes, its watchers hear
//! `Removed` (-2) and are dropped, as Asterisk's.
//!
//! Watchers are called on the device state engine's task (or on the caller's, for a reload),
//! never with a lock of the core held: a watcher may call back into the core.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::devicestate::{DeviceState, DevstateAggregate};
use crate::Core;

/// Asterisk's `enum ast_extension_states`: bits, so `InUse&Ringing` is 9.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExtensionState(pub i32);

impl ExtensionState {
    /// The hint went (`AST_EXTENSION_REMOVED`).
    pub const REMOVED: ExtensionState = ExtensionState(-2);
    /// No hint, or the extension was deactivated (`AST_EXTENSION_DEACTIVATED`).
    pub const DEACTIVATED: ExtensionState = ExtensionState(-1);
    pub const NOT_INUSE: ExtensionState = ExtensionState(0);
    pub const INUSE: ExtensionState = ExtensionState(1);
    pub const BUSY: ExtensionState = ExtensionState(2);
    pub const UNAVAILABLE: ExtensionState = ExtensionState(4);
    pub const RINGING: ExtensionState = ExtensionState(8);
    pub const ONHOLD: ExtensionState = ExtensionState(16);

    /// Asterisk's `ast_devstate_to_extenstate`.
    pub fn from_device_state(state: DeviceState) -> ExtensionState {
        match state {
            DeviceState::OnHold => Self::ONHOLD,
            DeviceState::Busy => Self::BUSY,
            DeviceState::Unknown | DeviceState::NotInUse => Self::NOT_INUSE,
            DeviceState::Unavailable | DeviceState::Invalid => Self::UNAVAILABLE,
            DeviceState::RingInUse => ExtensionState(Self::INUSE.0 | Self::RINGING.0),
            DeviceState::Ringing => Self::RINGING,
            DeviceState::InUse => Self::INUSE,
        }
    }

    /// Asterisk's `ast_extension_state2str`: `Idle`, `InUse`, `Busy`, `Unavailable`, `Ringing`,
    /// `InUse&Ringing`, `Hold`, `InUse&Hold`; anything else `Unknown` (what the manager's
    /// `StatusText` and `core show hints` print).
    pub fn as_str(self) -> &'static str {
        match self.0 {
            0 => "Idle",
            1 => "InUse",
            2 => "Busy",
            4 => "Unavailable",
            8 => "Ringing",
            9 => "InUse&Ringing",
            16 => "Hold",
            17 => "InUse&Hold",
            _ => "Unknown",
        }
    }

    /// func_extstate's `ast_extstate_str`: what `EXTENSION_STATE()` reads (`NOT_INUSE`,
    /// `INUSE`, `BUSY`, `UNAVAILABLE`, `RINGING`, `RINGINUSE`, `HOLDINUSE`, `ONHOLD`, else
    /// `UNKNOWN`).
    pub fn as_function_str(self) -> &'static str {
        match self.0 {
            0 => "NOT_INUSE",
            1 => "INUSE",
            2 => "BUSY",
            4 => "UNAVAILABLE",
            8 => "RINGING",
            9 => "RINGINUSE",
            17 => "HOLDINUSE",
            16 => "ONHOLD",
            _ => "UNKNOWN",
        }
    }
}

/// The state of a hint's devices (`SIP/1001&Custom:dnd1001`; a presence part after a `,` is
/// ignored), as Asterisk's `ast_extension_state3`: the devices' states aggregated.
pub fn hint_state(core: &Core, hint: &str) -> ExtensionState {
    let devices = hint.split(',').next().unwrap_or("");
    let mut aggregate = DevstateAggregate::default();
    for device in devices.split('&').map(str::trim).filter(|d| !d.is_empty()) {
        aggregate.add(core.device_state(device));
    }
    ExtensionState::from_device_state(aggregate.result())
}

/// What a watcher hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionStateChange {
    pub context: String,
    pub exten: String,
    /// The hint's devices (`SIP/1001&Custom:dnd1001`).
    pub hint: String,
    pub state: ExtensionState,
    /// The device that changed, when a device did (`None` for a dialplan reload).
    pub device: Option<String>,
}

/// A watcher's callback (Asterisk's `ast_state_cb_type`).
pub type ExtensionStateCallback = Arc<dyn Fn(&ExtensionStateChange) + Send + Sync>;

/// One hint of the dialplan in force, with the state it was last found in.
#[derive(Clone, Debug)]
struct Hint {
    devices: String,
    state: ExtensionState,
    /// Its key, shared with its watchers (2,000 BLF keys watch 200 hints).
    key: Arc<(String, String)>,
}

struct Watcher {
    /// Lower-cased `(context, exten)`.
    key: Arc<(String, String)>,
    callback: ExtensionStateCallback,
}

#[derive(Default)]
struct Inner {
    /// `(context, exten)` as the dialplan spells them, lower-cased for the key.
    hints: BTreeMap<(String, String), (String, String, Hint)>,
    watchers: BTreeMap<i32, Watcher>,
    next_id: i32,
}

/// The hints of the dialplan in force and their watchers.
#[derive(Default)]
pub struct Hints {
    inner: Mutex<Inner>,
}

/// One row of `core show hints` / the manager's `ExtensionStateList`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HintSummary {
    pub context: String,
    pub exten: String,
    pub hint: String,
    pub state: ExtensionState,
    pub watchers: usize,
}

fn key(context: &str, exten: &str) -> (String, String) {
    (context.to_ascii_lowercase(), exten.to_ascii_lowercase())
}

impl Hints {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every hint, sorted by context then extension.
    pub fn list(&self) -> Vec<HintSummary> {
        let inner = self.lock();
        inner
            .hints
            .iter()
            .map(|(k, (context, exten, hint))| HintSummary {
                context: context.clone(),
                exten: exten.clone(),
                hint: hint.devices.clone(),
                state: hint.state,
                watchers: inner.watchers.values().filter(|w| *w.key == *k).count(),
            })
            .collect()
    }

    /// The hint of `exten@context` (Asterisk's `ast_get_hint`), if the dialplan has one.
    pub fn hint(&self, context: &str, exten: &str) -> Option<String> {
        self.lock().hints.get(&key(context, exten)).map(|(_, _, h)| h.devices.clone())
    }

    /// A device changed: recomputes the hints naming it and tells their watchers.
    pub(crate) fn device_changed(&self, core: &Core, device: &str) {
        let named: Vec<((String, String), String)> = self
            .lock()
            .hints
            .iter()
            .filter(|(_, (_, _, h))| {
                h.devices.split(',').next().unwrap_or("").split('&').any(|d| d.trim().eq_ignore_ascii_case(device))
            })
            .map(|(k, (_, _, h))| (k.clone(), h.devices.clone()))
            .collect();
        for (k, devices) in named {
            let state = hint_state(core, &devices);
            self.update(core, &k, state, Some(device));
        }
    }

    /// Records `state` for the hint `k` and, when it changed, tells its watchers and the
    /// manager (`ExtensionStatus`).
    fn update(&self, core: &Core, k: &(String, String), state: ExtensionState, device: Option<&str>) {
        let (change, callbacks) = {
            let mut inner = self.lock();
            let Some((context, exten, hint)) = inner.hints.get_mut(k) else { return };
            if hint.state == state {
                return;
            }
            hint.state = state;
            let change = ExtensionStateChange {
                context: context.clone(),
                exten: exten.clone(),
                hint: hint.devices.clone(),
                state,
                device: device.map(str::to_owned),
            };
            let callbacks: Vec<_> =
                inner.watchers.values().filter(|w| *w.key == *k).map(|w| w.callback.clone()).collect();
            (change, callbacks)
        };
        publish_status(core, &change);
        for callback in callbacks {
            callback(&change);
        }
    }

    /// Takes the dialplan's hints as they are now: new ones are added, changed ones recomputed,
    /// gone ones removed (their watchers hear `Removed` and are dropped).
    fn replace(&self, core: &Core, now: Vec<(String, String, String)>) {
        let mut fresh: BTreeMap<(String, String), (String, String, String)> = BTreeMap::new();
        for (context, exten, devices) in now {
            fresh.insert(key(&context, &exten), (context, exten, devices));
        }
        let mut removed = Vec::new();
        let mut to_compute = Vec::new();
        {
            let mut inner = self.lock();
            let gone: Vec<_> = inner.hints.keys().filter(|k| !fresh.contains_key(*k)).cloned().collect();
            for k in gone {
                if let Some((context, exten, hint)) = inner.hints.remove(&k) {
                    let ids: Vec<i32> = inner.watchers.iter().filter(|(_, w)| *w.key == k).map(|(id, _)| *id).collect();
                    let callbacks: Vec<_> =
                        ids.iter().filter_map(|id| inner.watchers.remove(id)).map(|w| w.callback).collect();
                    let change = ExtensionStateChange {
                        context,
                        exten,
                        hint: hint.devices,
                        state: ExtensionState::REMOVED,
                        device: None,
                    };
                    removed.push((change, callbacks));
                }
            }
            for (k, (context, exten, devices)) in fresh {
                // Every hint is computed again, changed or not: a technology or provider may
                // have come or gone since.
                match inner.hints.get_mut(&k) {
                    Some(existing) => {
                        existing.2.devices.clone_from(&devices);
                        to_compute.push((k, devices));
                    }
                    None => {
                        // Added with DEACTIVATED so the first computation always counts as a change
                        // for watchers that come later; no one watches it yet.
                        let hint = Hint {
                            devices: devices.clone(),
                            state: ExtensionState::DEACTIVATED,
                            key: Arc::new(k.clone()),
                        };
                        inner.hints.insert(k.clone(), (context, exten, hint));
                        to_compute.push((k, devices));
                    }
                }
            }
        }
        for (change, callbacks) in removed {
            for callback in callbacks {
                callback(&change);
            }
        }
        for (k, devices) in to_compute {
            let state = hint_state(core, &devices);
            let mut inner = self.lock();
            let fresh_hint = matches!(inner.hints.get(&k), Some((_, _, h)) if h.state == ExtensionState::DEACTIVATED);
            if fresh_hint {
                // A new hint's first state is recorded quietly (Asterisk publishes nothing at
                // dialplan load either).
                if let Some((_, _, h)) = inner.hints.get_mut(&k) {
                    h.state = state;
                }
                continue;
            }
            drop(inner);
            self.update(core, &k, state, None);
        }
    }
}

/// The manager's `ExtensionStatus` (Asterisk's `manager_state_cb`).
fn publish_status(core: &Core, change: &ExtensionStateChange) {
    if change.state.0 < 0 || !core.events().has_listeners() {
        return;
    }
    core.events().publish(
        crate::events::Event::new("ExtensionStatus", "call")
            .with("Exten", change.exten.as_str())
            .with("Context", change.context.as_str())
            .with("Hint", change.hint.as_str())
            .with("Status", change.state.0.to_string())
            .with("StatusText", change.state.as_str()),
    );
}

impl Core {
    /// The hints of the dialplan in force.
    pub fn hints(&self) -> &Hints {
        &self.hints
    }

    /// The dialplan changed (loaded, reloaded, an extension added or removed): the hints are
    /// read from it again ([`crate::Pbx::hints`]), and the watchers of changed ones told.
    pub fn hints_changed(&self) {
        let now = self.pbx_hints();
        self.hints.replace(self, now);
    }

    /// Computes every hint's state again and tells the watchers of those that changed (the
    /// loader calls it after a module loads: a technology or provider may have come).
    pub fn hints_refresh(&self) {
        let all: Vec<_> = self.hints.lock().hints.iter().map(|(k, (_, _, h))| (k.clone(), h.devices.clone())).collect();
        for (k, devices) in all {
            let state = hint_state(self, &devices);
            self.hints.update(self, &k, state, None);
        }
    }

    /// The state of `exten@context` (Asterisk's `ast_extension_state`): its hint's devices
    /// aggregated, or `DEACTIVATED` (-1) when it has no hint.
    pub fn extension_state(&self, context: &str, exten: &str) -> ExtensionState {
        match self.hints.hint(context, exten) {
            Some(devices) => hint_state(self, &devices),
            None => ExtensionState::DEACTIVATED,
        }
    }

    /// Watches `exten@context` (Asterisk's `ast_extension_state_add`): `callback` is called
    /// with every change of its state, and once with `Removed` if the hint goes. `None` when
    /// the extension has no hint. The id ends the watch ([`Core::extension_state_del`]).
    pub fn extension_state_add(&self, context: &str, exten: &str, callback: ExtensionStateCallback) -> Option<i32> {
        let mut inner = self.hints.lock();
        let k = inner.hints.get(&key(context, exten))?.2.key.clone();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.watchers.insert(id, Watcher { key: k, callback });
        Some(id)
    }

    /// Ends a watch (Asterisk's `ast_extension_state_del`); whether it existed.
    pub fn extension_state_del(&self, id: i32) -> bool {
        self.hints.lock().watchers.remove(&id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_follow_asterisk() {
        let s = |n| ExtensionState(n);
        let texts: Vec<_> = [0, 1, 2, 4, 8, 9, 16, 17, -1].into_iter().map(|n| s(n).as_str()).collect();
        assert_eq!(
            texts,
            ["Idle", "InUse", "Busy", "Unavailable", "Ringing", "InUse&Ringing", "Hold", "InUse&Hold", "Unknown"]
        );
        let names: Vec<_> = [0, 1, 2, 4, 8, 9, 17, 16, -1].into_iter().map(|n| s(n).as_function_str()).collect();
        assert_eq!(
            names,
            ["NOT_INUSE", "INUSE", "BUSY", "UNAVAILABLE", "RINGING", "RINGINUSE", "HOLDINUSE", "ONHOLD", "UNKNOWN"]
        );
        assert_eq!(ExtensionState::from_device_state(DeviceState::RingInUse), ExtensionState(9));
        assert_eq!(ExtensionState::from_device_state(DeviceState::Invalid), ExtensionState::UNAVAILABLE);
    }

    /// Hints come and go with the dialplan; a watcher hears device changes through its hint,
    /// stays across a reload that keeps the hint and hears Removed when it goes.
    #[test]
    fn watchers_follow_devices_and_reloads() {
        let core = Core::for_tests();
        let lamp = Arc::new(Mutex::new(DeviceState::NotInUse));
        let read = lamp.clone();
        let _provider = core.devstates().add_provider("Custom", Arc::new(move |_| *read.lock().unwrap())).unwrap();
        let hints = |list: &[(&str, &str, &str)]| {
            list.iter().map(|(c, e, h)| (c.to_string(), e.to_string(), h.to_string())).collect::<Vec<_>>()
        };
        core.hints.replace(&core, hints(&[("default", "1001", "Custom:lamp&Nope:x")]));
        assert_eq!(core.extension_state("default", "1001"), ExtensionState::NOT_INUSE);
        assert_eq!(core.extension_state("default", "1002"), ExtensionState::DEACTIVATED);
        assert!(core.extension_state_add("default", "1002", Arc::new(|_| {})).is_none());
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        let id = core
            .extension_state_add("DEFAULT", "1001", Arc::new(move |c| log.lock().unwrap().push(c.state.0)))
            .unwrap();
        *lamp.lock().unwrap() = DeviceState::InUse;
        core.devstate_refresh("Custom:lamp");
        *lamp.lock().unwrap() = DeviceState::Ringing;
        core.devstate_refresh("custom:LAMP");
        core.hints.replace(&core, hints(&[("default", "1001", "Custom:lamp"), ("default", "1003", "Custom:lamp")]));
        assert_eq!(core.hints.list()[0].watchers, 1);
        assert_eq!(core.hints.list()[1].state, ExtensionState::RINGING);
        core.hints.replace(&core, hints(&[("default", "1003", "Custom:lamp")]));
        assert_eq!(*heard.lock().unwrap(), [1, 8, -2]);
        assert!(!core.extension_state_del(id), "removed with its hint");
    }
}
