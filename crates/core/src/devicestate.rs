//! Device states (Asterisk's devicestate.c): what a device such as `SIP/alice` or `Custom:lamp`
//! is doing, and who hears when that changes.
//!
//! A device `Tech/data` is asked of its technology ([`crate::tech::Tech::devicestate`]); where
//! the technology keeps no state of calls (it answers `UNKNOWN`, `NOT_INUSE` or `INUSE`) and the
//! device has channels, the state comes from those channels, aggregated as
//! `ast_devstate_aggregate` does: a ringing channel is `RINGING`, one on hold `ONHOLD`, one up
//! or dialling `INUSE` (Asterisk's `ast_parse_device_state`, over every channel of the device).
//! A device `Provider:data` (`Custom:lamp`) is asked of the provider registered under that name
//! ([`DeviceStates::add_provider`], Asterisk's `ast_devstate_prov_add`; func_devstate brings
//! `Custom`).
//!
//! Changes are found as Asterisk's device state thread finds them: whoever knows a device may
//! have changed says so ([`Core::devstate_changed`]; the channel list does it itself when a
//! channel is created, changes state, is held or goes), and one task of the core asks the device
//! again, keeps the answer in a cache, and, when it differs, tells the subscribers
//! ([`DeviceStates::subscribe`]), publishes the manager's `DeviceStateChange` and updates the
//! hints that name the device ([`crate::hints`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::apps::{Registration, Registry};
use crate::tokio::sync::{broadcast, mpsc};
use crate::Core;

/// Asterisk's `enum ast_device_state`, with its names (`ast_devstate_str`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceState {
    Unknown,
    NotInUse,
    InUse,
    Busy,
    Invalid,
    Unavailable,
    Ringing,
    RingInUse,
    OnHold,
}

impl DeviceState {
    /// Every state, in the enum's order (so `ALL[s as usize] == s`).
    pub const ALL: [DeviceState; 9] = [
        DeviceState::Unknown,
        DeviceState::NotInUse,
        DeviceState::InUse,
        DeviceState::Busy,
        DeviceState::Invalid,
        DeviceState::Unavailable,
        DeviceState::Ringing,
        DeviceState::RingInUse,
        DeviceState::OnHold,
    ];

    /// `UNKNOWN`, `NOT_INUSE`, `INUSE`, `BUSY`, `INVALID`, `UNAVAILABLE`, `RINGING`,
    /// `RINGINUSE`, `ONHOLD`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Unknown => "UNKNOWN",
            DeviceState::NotInUse => "NOT_INUSE",
            DeviceState::InUse => "INUSE",
            DeviceState::Busy => "BUSY",
            DeviceState::Invalid => "INVALID",
            DeviceState::Unavailable => "UNAVAILABLE",
            DeviceState::Ringing => "RINGING",
            DeviceState::RingInUse => "RINGINUSE",
            DeviceState::OnHold => "ONHOLD",
        }
    }

    /// Asterisk's `ast_devstate_val`: a state by its name (any case); anything else is
    /// `UNKNOWN`.
    pub fn from_name(name: &str) -> DeviceState {
        let name = name.trim();
        DeviceState::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(name)).unwrap_or(DeviceState::Unknown)
    }

    /// Asterisk's number for the state (`enum ast_device_state`, the manager's `State` is the
    /// name).
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The rank `ast_devstate_aggregate_add` gives the state: the highest wins.
    fn order(self) -> u8 {
        match self {
            DeviceState::Unknown => 1,
            DeviceState::NotInUse => 3,
            DeviceState::InUse => 6,
            DeviceState::Busy => 7,
            DeviceState::Invalid => 0,
            DeviceState::Unavailable => 2,
            DeviceState::Ringing => 5,
            DeviceState::RingInUse => 8,
            DeviceState::OnHold => 4,
        }
    }

    /// Asterisk's `ast_state_chan2dev`: what a channel in `state` makes its device.
    pub fn from_channel_state(state: crate::channel::ChannelState) -> DeviceState {
        use crate::channel::ChannelState;
        match state {
            ChannelState::Down => DeviceState::NotInUse,
            ChannelState::Ringing => DeviceState::Ringing,
            ChannelState::Busy => DeviceState::Busy,
            ChannelState::Reserved
            | ChannelState::OffHook
            | ChannelState::Dialing
            | ChannelState::Ring
            | ChannelState::Up => DeviceState::InUse,
        }
    }
}

impl std::fmt::Display for DeviceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Asterisk's `struct ast_devstate_aggregate`: several devices' (or channels') states made
/// one. Ringing and in use at once is `RINGINUSE`; otherwise the highest ranked state wins
/// (`RINGINUSE` > `BUSY` > `INUSE` > `RINGING` > `ONHOLD` > `NOT_INUSE` > `UNKNOWN` >
/// `UNAVAILABLE` > `INVALID`). With nothing added it is `INVALID`.
#[derive(Clone, Copy, Debug)]
pub struct DevstateAggregate {
    state: DeviceState,
    ringing: bool,
    inuse: bool,
}

impl Default for DevstateAggregate {
    fn default() -> Self {
        DevstateAggregate { state: DeviceState::Invalid, ringing: false, inuse: false }
    }
}

impl DevstateAggregate {
    /// `ast_devstate_aggregate_add`.
    pub fn add(&mut self, state: DeviceState) {
        match state {
            DeviceState::Ringing => self.ringing = true,
            DeviceState::InUse | DeviceState::OnHold | DeviceState::Busy => self.inuse = true,
            _ => {}
        }
        if self.ringing && self.inuse {
            self.state = DeviceState::RingInUse;
        } else if state.order() > self.state.order() {
            self.state = state;
        }
    }
    /// `ast_devstate_aggregate_result`.
    pub fn result(&self) -> DeviceState {
        self.state
    }
}

/// A device whose state changed, as subscribers hear it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceStateChange {
    /// As it was named when the change was reported (`SIP/1001`, `Custom:lamp`).
    pub device: String,
    pub state: DeviceState,
}

/// Answers for the devices of a provider (`Custom:` → the `lamp` of `Custom:lamp`).
pub type DevstateProvider = Arc<dyn Fn(&str) -> DeviceState + Send + Sync>;

/// The core's device state engine: the providers, the cache and the subscribers.
pub struct DeviceStates {
    providers: Registry<DevstateProvider>,
    /// Device name (lower case) → the state last seen.
    cache: Mutex<HashMap<String, DeviceState>>,
    /// Devices to ask again, for the engine's task.
    queue: OnceLock<mpsc::UnboundedSender<String>>,
    subscribers: broadcast::Sender<DeviceStateChange>,
}

impl Default for DeviceStates {
    fn default() -> Self {
        DeviceStates {
            providers: Registry::default(),
            cache: Mutex::default(),
            queue: OnceLock::new(),
            subscribers: broadcast::channel(1024).0,
        }
    }
}

impl DeviceStates {
    /// Registers a provider of `name:` devices (Asterisk's `ast_devstate_prov_add`); it goes
    /// when the guard drops.
    pub fn add_provider(
        &self,
        name: &str,
        provider: DevstateProvider,
    ) -> Result<Registration<DevstateProvider>, crate::apps::Duplicate> {
        self.providers.register(name, provider)
    }

    /// Every change from now on (a subscriber that falls behind loses the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<DeviceStateChange> {
        self.subscribers.subscribe()
    }

    /// The state last found for `device` (`None` if it was never asked).
    pub fn cached(&self, device: &str) -> Option<DeviceState> {
        self.lock().get(&device.to_ascii_lowercase()).copied()
    }

    /// Every device in the cache with its state, sorted by name.
    pub fn cached_all(&self) -> Vec<(String, DeviceState)> {
        let mut all: Vec<_> = self.lock().iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, DeviceState>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `device` to be asked again (nothing happens before the engine runs).
    fn queue(&self, device: &str) {
        if let Some(queue) = self.queue.get() {
            let _ = queue.send(device.to_owned());
        }
    }

    /// Starts the engine's task and hands the queue to the channel list.
    pub(crate) fn start(core: &Arc<Core>) {
        let (tx, rx) = mpsc::unbounded_channel();
        if core.devstates().queue.set(tx.clone()).is_err() {
            return;
        }
        core.channels().set_devstate_queue(tx);
        core.runtime().spawn(engine(Arc::downgrade(core), rx));
    }
}

/// The device state thread (Asterisk's `do_devstate_changes`): asks each device queued again
/// and reports the ones that changed. A burst of reports of one device is asked once.
async fn engine(core: Weak<Core>, mut rx: mpsc::UnboundedReceiver<String>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 256).await > 0 {
        let Some(core) = core.upgrade() else { return };
        let mut seen = std::collections::HashSet::new();
        for device in batch.drain(..) {
            if seen.insert(device.to_ascii_lowercase()) {
                core.devstate_refresh(&device);
            }
        }
    }
}

/// `SIP/1001-0000000a` (or a Local half, `Local/100@default-00000001;1`) → `SIP/1001`.
pub fn device_of_channel(name: &str) -> &str {
    let name = name.rsplit_once(';').map_or(name, |(base, half)| if half.len() == 1 { base } else { name });
    name.rsplit_once('-').map_or(name, |(device, _)| device)
}

impl Core {
    /// The device state engine (providers, cache, subscribers).
    pub fn devstates(&self) -> &DeviceStates {
        &self.devstates
    }

    /// The state of `device` now (`Tech/data` or `Provider:data`): `INVALID` for no such
    /// technology or provider; for a technology, what it says, or, where it keeps no calls
    /// (`UNKNOWN`, `NOT_INUSE`, `INUSE`) and the device has channels, what its channels make it.
    pub fn device_state(&self, device: &str) -> DeviceState {
        let device = device.trim();
        if let Some((tech, data)) = device.split_once('/') {
            let Some(tech) = self.techs().get(tech) else { return DeviceState::Invalid };
            let state = tech.devicestate(data);
            match state {
                DeviceState::Unknown | DeviceState::NotInUse | DeviceState::InUse if tech.counts_calls(data) => {
                    self.channels().device_state_with(device, tech.reports_hold(data)).unwrap_or(state)
                }
                other => other,
            }
        } else if let Some((provider, data)) = device.split_once(':') {
            match self.devstates.providers.get(provider) {
                Some(provider) => provider(data),
                None => DeviceState::Invalid,
            }
        } else {
            DeviceState::Invalid
        }
    }

    /// Says that `device` may have changed (Asterisk's `ast_devstate_changed`): it is asked
    /// again on the engine's task, and subscribers, the manager and the hints hear of it if
    /// its state differs. Cheap, never blocks; call it from anywhere (a technology when a peer
    /// registers or becomes unreachable, a provider when its device is set).
    pub fn devstate_changed(&self, device: &str) {
        self.devstates.queue(device);
    }

    /// Asks `device` now and reports a change (the engine's step; also for tests).
    pub fn devstate_refresh(&self, device: &str) {
        let state = self.device_state(device);
        let key = device.to_ascii_lowercase();
        let previous = {
            let mut cache = self.devstates.lock();
            // Devices that are nothing (a guest's `SIP/192.0.2.7`, a Local with no channels)
            // are not kept, so the cache holds real devices only, however many strangers call.
            if matches!(state, DeviceState::Invalid | DeviceState::Unknown) {
                cache.remove(&key)
            } else {
                cache.insert(key, state)
            }
        };
        if previous == Some(state) || (previous.is_none() && state == DeviceState::Invalid) {
            return;
        }
        crate::tracing::debug!("Device state of {device} is now {state}");
        let _ = self.devstates.subscribers.send(DeviceStateChange { device: device.to_owned(), state });
        self.events().publish(
            crate::events::Event::new("DeviceStateChange", "call").with("Device", device).with("State", state.as_str()),
        );
        self.hints().device_changed(self, device);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::ChannelState;

    fn aggregate(states: &[DeviceState]) -> DeviceState {
        let mut agg = DevstateAggregate::default();
        for s in states {
            agg.add(*s);
        }
        agg.result()
    }

    /// As ast_devstate_aggregate: ringing with in use (or hold or busy) is RINGINUSE, else
    /// the highest ranked; nothing is INVALID.
    #[test]
    fn aggregation_follows_asterisk() {
        use DeviceState::*;
        assert_eq!(aggregate(&[]), Invalid);
        assert_eq!(aggregate(&[NotInUse, Unavailable]), NotInUse);
        assert_eq!(aggregate(&[Invalid, Unavailable]), Unavailable);
        assert_eq!(aggregate(&[NotInUse, Ringing]), Ringing);
        assert_eq!(aggregate(&[Ringing, InUse]), RingInUse);
        assert_eq!(aggregate(&[OnHold, Ringing]), RingInUse);
        assert_eq!(aggregate(&[OnHold, InUse]), InUse);
        assert_eq!(aggregate(&[OnHold, NotInUse]), OnHold);
        assert_eq!(aggregate(&[InUse, Busy]), Busy);
        assert_eq!(aggregate(&[Unknown, Invalid]), Unknown);
    }

    #[test]
    fn names_and_channel_states() {
        assert_eq!(DeviceState::from_name("inuse"), DeviceState::InUse);
        assert_eq!(DeviceState::from_name("NOT_INUSE"), DeviceState::NotInUse);
        assert_eq!(DeviceState::from_name("nonsense"), DeviceState::Unknown);
        assert_eq!(DeviceState::from_name(""), DeviceState::Unknown);
        assert_eq!(DeviceState::from_channel_state(ChannelState::Ringing), DeviceState::Ringing);
        assert_eq!(DeviceState::from_channel_state(ChannelState::Up), DeviceState::InUse);
        assert_eq!(DeviceState::from_channel_state(ChannelState::Down), DeviceState::NotInUse);
        assert_eq!(device_of_channel("SIP/1001-0000000a"), "SIP/1001");
        assert_eq!(device_of_channel("SIP/my-phone-0000000a"), "SIP/my-phone");
        assert_eq!(device_of_channel("Local/100@default-00000001;2"), "Local/100@default");
        assert_eq!(device_of_channel("nodash"), "nodash");
    }

    /// A technology's channels make its device's state; a provider answers for its devices;
    /// a change reaches the subscribers and the manager, once.
    #[test]
    fn channels_and_providers_make_states_and_changes_are_told() {
        let core = Core::for_tests();
        core.runtime().block_on(async {
            let mut changes = core.devstates().subscribe();
            let mut events = core.events().subscribe();
            assert_eq!(core.device_state("Local/100@default"), DeviceState::Unknown);
            let lamp = Arc::new(Mutex::new(DeviceState::NotInUse));
            let read = lamp.clone();
            let _provider = core.devstates().add_provider("Custom", Arc::new(move |_| *read.lock().unwrap())).unwrap();
            assert_eq!(core.device_state("Custom:lamp"), DeviceState::NotInUse);
            assert_eq!(core.device_state("Nope:lamp"), DeviceState::Invalid);
            *lamp.lock().unwrap() = DeviceState::InUse;
            core.devstate_changed("Custom:lamp");
            let change = changes.recv().await.unwrap();
            assert_eq!(change, DeviceStateChange { device: "Custom:lamp".into(), state: DeviceState::InUse });
            let event = events.recv().await.unwrap();
            assert_eq!((event.name.as_str(), event.field("State")), ("DeviceStateChange", Some("INUSE")));
            core.devstate_refresh("Custom:lamp");
            assert!(changes.try_recv().is_err(), "no change, no report");

            let (mut chan, _driver) = crate::channel::Channel::new(&core, "Local", "200@default", false);
            chan.set_state(ChannelState::Ringing);
            assert_eq!(core.device_state("Local/200@default"), DeviceState::Ringing);
            let mut seen = Vec::new();
            while seen.last() != Some(&DeviceState::Ringing) {
                seen.push(changes.recv().await.unwrap().state);
            }
            chan.set_state(ChannelState::Up);
            assert_eq!(core.device_state("Local/200@default"), DeviceState::InUse);
            drop(chan);
            while changes.recv().await.unwrap().state != DeviceState::Unknown {}
            assert_eq!(core.devstates().cached("local/200@DEFAULT"), None, "nothing is not kept");
            core.devstate_refresh("SIP/192.0.2.7");
            core.devstate_refresh("Nope:x");
            assert!(changes.try_recv().is_err(), "an invalid device never seen is not reported");
            assert_eq!(core.devstates().cached_all(), [("custom:lamp".to_owned(), DeviceState::InUse)]);
        });
    }
}
