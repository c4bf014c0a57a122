//! The channel list: what `core show channels` prints and what a graceful stop waits for.
//!
//! A channel technology registers each channel it creates and keeps the [`ChannelHandle`]
//! for the channel's life; dropping the handle removes the channel (and ends its call).
//! The channel itself (frames, variables, the PBX loop) grows here with the dialplan and
//! chan_sip issues; this is the part the whole process shares.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Asterisk's channel states, as `core show channels` spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelState {
    Down,
    Reserved,
    OffHook,
    Dialing,
    Ring,
    Ringing,
    Up,
    Busy,
}

impl ChannelState {
    /// Asterisk's number for the state (the manager's `ChannelState`).
    pub fn number(self) -> u8 {
        self as u8
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelState::Down => "Down",
            ChannelState::Reserved => "Rsrvd",
            ChannelState::OffHook => "OffHook",
            ChannelState::Dialing => "Dialing",
            ChannelState::Ring => "Ring",
            ChannelState::Ringing => "Ringing",
            ChannelState::Up => "Up",
            ChannelState::Busy => "Busy",
        }
    }
}

/// One row of `core show channels`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelSummary {
    pub name: String,
    /// `exten@context:priority`, or empty outside the dialplan.
    pub location: String,
    pub state: ChannelState,
    /// `Application(Data)` running now, or empty.
    pub application: String,
    /// Whether this channel is the first leg of a call (counted in `active calls`).
    pub is_call: bool,
    /// What the manager lists (`CoreShowChannels`, `Status`, `Getvar`): the channel's snapshot
    /// as of its last application.
    pub uniqueid: String,
    pub linkedid: String,
    pub caller: crate::frame::CallerId,
    pub connected: crate::frame::CallerId,
    pub accountcode: String,
    pub language: String,
    pub context: String,
    pub exten: String,
    pub priority: u32,
    pub app: String,
    pub data: String,
    pub created: std::time::Instant,
    pub variables: BTreeMap<String, String>,
    /// The driver's audio format (`ulaw`...; `slin` for a channel without a codec).
    pub native_format: &'static str,
    /// When `TIMEOUT(absolute)` strikes, if set (the manager's `TimeToHangup`).
    pub hangup_at: Option<std::time::SystemTime>,
    /// The far end put this channel on hold (its driver read a hold; Asterisk's
    /// `ast_channel_hold_state`): its device is `ONHOLD`.
    pub on_hold: bool,
    /// The device's call and pickup groups (see [`crate::pickup`]).
    pub groups: crate::pickup::PickupGroups,
    /// A dialplan runs on the channel (Asterisk's `ast_channel_pbx`): it cannot be picked up.
    pub pbx: bool,
    /// A pickup has claimed the channel (Asterisk's `pickup-active` datastore).
    pub pickup_active: bool,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    channels: BTreeMap<u64, ChannelSummary>,
    /// Where to send a frame to a channel from outside (`channel request hangup`, the
    /// manager's Hangup, Setvar, Redirect).
    inboxes: BTreeMap<u64, crate::tokio::sync::mpsc::Sender<crate::frame::Frame>>,
    /// How many channels of each device (`sip/1001`, lowercase) are in each device state, kept
    /// as channels come, change and go: a device's state is then read in O(1), not by scanning
    /// every channel at each change (O(channels²) for a trunk's hundreds of calls).
    /// A channel's device never changes: a Local half's `;n` is not part of it.
    by_device: std::collections::HashMap<String, [u32; 9]>,
}

/// What one channel adds to its device's state.
fn device_state_of(summary: &ChannelSummary) -> crate::devicestate::DeviceState {
    use crate::devicestate::DeviceState;
    if summary.on_hold {
        DeviceState::OnHold
    } else {
        DeviceState::from_channel_state(summary.state)
    }
}

impl Inner {
    /// Moves one channel of `name`'s device from state `from` to state `to` (`None`: it comes
    /// or goes).
    fn count(
        &mut self,
        name: &str,
        from: Option<crate::devicestate::DeviceState>,
        to: Option<crate::devicestate::DeviceState>,
    ) {
        let device = crate::devicestate::device_of_channel(name).to_ascii_lowercase();
        let counts = self.by_device.entry(device).or_default();
        if let Some(from) = from {
            counts[from as usize] = counts[from as usize].saturating_sub(1);
        }
        if let Some(to) = to {
            counts[to as usize] += 1;
        }
        if counts.iter().all(|n| *n == 0) {
            let device = crate::devicestate::device_of_channel(name).to_ascii_lowercase();
            self.by_device.remove(&device);
        }
    }
}

/// Every live channel of the process.
#[derive(Clone, Default)]
pub struct Channels {
    inner: Arc<Mutex<Inner>>,
    processed: Arc<AtomicU64>,
    /// The device state engine's queue ([`crate::devicestate`]): a channel's device is named
    /// there whenever the channel comes, changes state or goes.
    devstate: Arc<std::sync::OnceLock<crate::tokio::sync::mpsc::UnboundedSender<String>>>,
}

impl Channels {
    /// Adds a channel; it stays listed until the handle drops. `is_call` marks the
    /// channel that started a call (an inbound leg, an originate), as Asterisk counts calls.
    pub fn register(&self, name: impl Into<String>, state: ChannelState, is_call: bool) -> ChannelHandle {
        let summary = ChannelSummary {
            name: name.into(),
            location: String::new(),
            state,
            application: String::new(),
            is_call,
            uniqueid: String::new(),
            linkedid: String::new(),
            caller: Default::default(),
            connected: Default::default(),
            accountcode: String::new(),
            language: String::new(),
            context: String::new(),
            exten: String::new(),
            priority: 1,
            app: String::new(),
            data: String::new(),
            created: std::time::Instant::now(),
            variables: BTreeMap::new(),
            native_format: "slin",
            hangup_at: None,
            on_hold: false,
            groups: Default::default(),
            pbx: false,
            pickup_active: false,
        };
        let device = crate::devicestate::device_of_channel(&summary.name).to_owned();
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.count(&summary.name, None, Some(device_state_of(&summary)));
        inner.channels.insert(id, summary);
        drop(inner);
        if is_call {
            self.processed.fetch_add(1, Ordering::Relaxed);
        }
        self.device_changed(&device);
        ChannelHandle { channels: self.clone(), id }
    }

    /// Where the device state engine hears of channels (set once, by the core).
    pub(crate) fn set_devstate_queue(&self, queue: crate::tokio::sync::mpsc::UnboundedSender<String>) {
        let _ = self.devstate.set(queue);
    }

    /// Tells the device state engine that the device of the channel named `channel` may have
    /// changed.
    pub fn channel_device_changed(&self, channel: &str) {
        self.device_changed(crate::devicestate::device_of_channel(channel));
    }

    fn device_changed(&self, device: &str) {
        if let Some(queue) = self.devstate.get() {
            let _ = queue.send(device.to_owned());
        }
    }

    /// What the channels of `device` (`SIP/1001`: every `SIP/1001-...`) make its state,
    /// aggregated (Asterisk's `ast_parse_device_state`); `None` when it has none.
    pub fn device_state(&self, device: &str) -> Option<crate::devicestate::DeviceState> {
        self.device_state_with(device, true)
    }

    /// [`Channels::device_state`]; without `report_hold` a held channel counts as in use
    /// (chan_sip's `notifyhold=no`).
    pub fn device_state_with(&self, device: &str, report_hold: bool) -> Option<crate::devicestate::DeviceState> {
        use crate::devicestate::{DeviceState, DevstateAggregate};
        let inner = self.lock();
        let counts = inner.by_device.get(&device.to_ascii_lowercase())?;
        let mut aggregate = DevstateAggregate::default();
        for state in DeviceState::ALL.into_iter().filter(|s| counts[*s as usize] > 0) {
            aggregate.add(if state == DeviceState::OnHold && !report_hold { DeviceState::InUse } else { state });
        }
        Some(aggregate.result())
    }

    /// Asks a channel (by name, or every one with `all`) to hang up, as `channel request
    /// hangup` does; returns how many were asked.
    pub fn request_hangup(&self, name: &str) -> usize {
        self.send_frame(name, crate::frame::Frame::Hangup(crate::frame::Cause::NORMAL_CLEARING))
    }

    /// Queues `frame` to the channel named `name` (every channel with `all`), as if its driver
    /// had sent it; returns to how many.
    pub fn send_frame(&self, name: &str, frame: crate::frame::Frame) -> usize {
        let inner = self.lock();
        let mut sent = 0;
        for (id, summary) in &inner.channels {
            if name.eq_ignore_ascii_case("all") || summary.name == name {
                if let Some(tx) = inner.inboxes.get(id) {
                    if tx.try_send(frame.clone()).is_ok() {
                        sent += 1;
                    }
                }
            }
        }
        sent
    }

    /// Claims for a pickup the oldest channel that can be picked up
    /// ([`crate::pickup::can_pickup`]) and that `select` accepts; its name. Choosing and claiming
    /// under one lock keeps two pickers off one call (Asterisk's `pickup-active` datastore).
    pub fn claim_pickup(&self, select: impl Fn(&ChannelSummary) -> bool) -> Option<String> {
        let mut inner = self.lock();
        let target = inner.channels.values_mut().find(|s| crate::pickup::can_pickup(s) && select(s))?;
        target.pickup_active = true;
        Some(target.name.clone())
    }

    /// Gives up a pickup's claim on the channel named `name`.
    pub fn release_pickup(&self, name: &str) {
        if let Some(s) = self.lock().channels.values_mut().find(|s| s.name == name) {
            s.pickup_active = false;
        }
    }

    /// One channel's summary, by name.
    pub fn find(&self, name: &str) -> Option<ChannelSummary> {
        self.lock().channels.values().find(|c| c.name == name).cloned()
    }

    /// Every channel, in the order they were created.
    pub fn list(&self) -> Vec<ChannelSummary> {
        self.lock().channels.values().cloned().collect()
    }
    pub fn active_channels(&self) -> usize {
        self.lock().channels.len()
    }
    pub fn active_calls(&self) -> usize {
        self.lock().channels.values().filter(|c| c.is_call).count()
    }
    /// Calls started since the process began.
    pub fn calls_processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A live channel's entry in the list.
pub struct ChannelHandle {
    channels: Channels,
    /// The channel's key in the list (from 1; 0 for an unlisted channel).
    id: u64,
}

impl ChannelHandle {
    /// Changes what `core show channels` shows for this channel.
    pub fn update(&self, f: impl FnOnce(&mut ChannelSummary)) {
        let mut inner = self.channels.lock();
        let Some(summary) = inner.channels.get_mut(&self.id) else { return };
        let before = device_state_of(summary);
        f(summary);
        let after = device_state_of(summary);
        if after != before {
            let name = summary.name.clone();
            inner.count(&name, Some(before), Some(after));
        }
    }
}

impl Drop for ChannelHandle {
    fn drop(&mut self) {
        let mut inner = self.channels.lock();
        let gone = inner.channels.remove(&self.id);
        inner.inboxes.remove(&self.id);
        if let Some(gone) = &gone {
            inner.count(&gone.name, Some(device_state_of(gone)), None);
        }
        drop(inner);
        if let Some(gone) = gone {
            self.channels.channel_device_changed(&gone.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Cause, Control, Frame};

    #[test]
    fn a_channel_talks_to_its_driver_by_messages() {
        let core = crate::Core::for_tests();
        core.runtime().block_on(async {
            let (mut chan, mut driver) = Channel::new(&core, "Test", "alice", true);
            assert!(chan.name().starts_with("Test/alice-0000000"), "{}", chan.name());
            assert_eq!(core.channels().active_calls(), 1);
            chan.answer();
            chan.indicate(Control::Ringing);
            assert_eq!(driver.commands.recv().await, Some(DriverCommand::Answer));
            assert_eq!(driver.commands.recv().await, Some(DriverCommand::Indicate(Control::Ringing)));
            assert_eq!(chan.state(), ChannelState::Up);
            driver.frames.send(Frame::DtmfEnd { digit: '5', duration_ms: 100 }).await.unwrap();
            assert_eq!(chan.read().await, Some(Frame::DtmfEnd { digit: '5', duration_ms: 100 }));
            assert_eq!(chan.read_timeout(std::time::Duration::from_millis(10)).await, Read::Timeout);
            driver.frames.send(Frame::Hangup(Cause::USER_BUSY)).await.unwrap();
            assert_eq!(chan.read().await, None);
            assert_eq!(chan.hangup_cause(), Some(Cause::USER_BUSY));
            assert!(chan.is_hung_up());
            drop(chan);
            assert_eq!(core.channels().active_calls(), 0);
        });
    }

    #[test]
    fn variables_inherit_and_jumps_are_remembered() {
        let core = crate::Core::for_tests();
        let (mut chan, _driver) = Channel::new(&core, "Test", "bob", false);
        chan.set_var("_ONCE", "1");
        chan.set_var("__ALWAYS", "2");
        chan.set_var("LOCAL", "3");
        assert_eq!(chan.var("ONCE"), Some("1"));
        let mut inherited = chan.inheritable_vars();
        inherited.sort();
        assert_eq!(inherited, [("ONCE".to_owned(), "1".to_owned()), ("__ALWAYS".to_owned(), "2".to_owned())]);
        chan.set_var("LOCAL", "");
        assert_eq!(chan.var("LOCAL"), None);
        chan.jump(Jump::parse("other,100,start").unwrap());
        assert_eq!(
            chan.take_jump(),
            Some(Jump {
                context: Some("other".into()),
                exten: Some("100".into()),
                target: JumpTarget::Label("start".into())
            })
        );
        assert_eq!(chan.take_jump(), None);
        assert_eq!(Jump::parse("5").unwrap().target, JumpTarget::Priority(5));
        assert_eq!(Jump::parse("a,b,c,d"), None);
        assert_eq!(Jump::parse("0"), None);
    }

    #[test]
    fn each_party_b_has_its_record_logged_in_order_when_the_channel_goes() {
        struct Collect(Mutex<Vec<Arc<crate::cdr::CdrRecord>>>);
        impl crate::cdr::CdrBackend for Collect {
            fn log(&self, record: &Arc<crate::cdr::CdrRecord>) {
                self.0.lock().unwrap().push(record.clone());
            }
        }
        let core = crate::Core::for_tests();
        let collect = Arc::new(Collect(Default::default()));
        let _reg = core.cdr().register_backend("chain-test", collect.clone()).unwrap();
        let (mut chan, _driver) = Channel::new(&core, "Test", "chain", true);
        let name = chan.name().to_owned();
        chan.set_application("Dial", "Test/a&Test/b&Test/c");
        chan.cdrs_to_write().for_each(|c| c.set_variable("tenant", "7"));
        for peer in ["Test/a-1", "Test/b-2", "Test/c-3"] {
            chan.cdr_dial_begin(peer);
        }
        chan.cdr_dial_end("Test/a-1", "BUSY");
        chan.cdr_dial_end("Test/c-3", "ANSWER");
        chan.cdr_dial_end("Test/b-2", "CANCEL");
        chan.set_state(ChannelState::Up);
        assert_eq!(chan.cdr().map(|c| c.party_b()), Some("Test/c-3"), "the last record reads");
        // The dialplan goes on after the bridge: a record without a Party B.
        chan.set_application("Playback", "bye");
        chan.set_application("Hangup", "");
        drop(chan);
        let logged: Vec<_> = collect.0.lock().unwrap().iter().filter(|r| r.channel == name).cloned().collect();
        let summary: Vec<_> = logged
            .iter()
            .map(|r| (r.dstchannel.as_str(), r.disposition, r.lastapp.as_str(), r.sequence, r.answer.is_some()))
            .collect();
        use crate::cdr::Disposition::*;
        assert_eq!(
            summary,
            [
                ("Test/a-1", Busy, "Dial", 0, false),
                ("Test/b-2", NoAnswer, "Dial", 1, false),
                ("Test/c-3", Answered, "Dial", 2, true),
                ("", Answered, "Hangup", 3, true),
            ]
        );
        assert!(logged.iter().all(|r| r.variables == [("tenant".to_owned(), "7".to_owned())]), "{logged:?}");
        assert!(logged.iter().all(|r| r.linkedid == logged[0].uniqueid));
    }

    #[test]
    fn caller_id_changes_and_dialplan_steps_are_events_and_getvar_asks_the_channel() {
        let core = crate::Core::for_tests();
        let mut events = core.events().subscribe();
        let (mut chan, driver) = Channel::new(&core, "Test", "events", true);
        let name = chan.name().to_owned();
        let mut mine = || {
            let mut names = Vec::new();
            while let Ok(e) = events.try_recv() {
                if e.field("Channel") == Some(name.as_str()) {
                    names.push((e.name.clone(), e.fields.last().cloned().unwrap_or_default()));
                }
            }
            names
        };
        // Not announced yet: the first caller ID is no change anyone saw.
        chan.set_caller(crate::frame::CallerId::parse("\"Alice\" <100>"));
        chan.set_application("Set", "CALLERID(num)=200");
        chan.set_caller(crate::frame::CallerId::parse("\"Alice\" <200>"));
        chan.set_caller(crate::frame::CallerId::parse("\"Alice\" <200>"));
        let pres = ("CID-CallingPres".to_owned(), "0 (Presentation Allowed, Not Screened)".to_owned());
        assert_eq!(
            mine(),
            [
                ("Newchannel".to_owned(), ("Linkedid".to_owned(), chan.uniqueid().to_owned())),
                ("Newexten".to_owned(), ("AppData".to_owned(), "CALLERID(num)=200".to_owned())),
                ("NewCallerid".to_owned(), pres),
            ]
        );
        // The manager's Getvar: the channel answers when it reads.
        core.runtime().block_on(async {
            let (reply, answer) = crate::frame::Reply::new();
            chan.set_var("COLOUR", "green");
            driver.frames.send(crate::frame::Frame::GetVar("COLOUR".into(), reply)).await.unwrap();
            driver.frames.send(crate::frame::Frame::Hangup(crate::frame::Cause::NORMAL_CLEARING)).await.unwrap();
            assert_eq!(chan.read().await, None);
            // No dialplan is loaded in these tests: the channel's own variables answer.
            assert_eq!(answer.await.unwrap(), "green");
        });
        assert_eq!(mine().first().map(|e| e.0.as_str()), Some("HangupRequest"));
    }

    #[test]
    fn channels_and_calls_are_counted_while_their_handles_live() {
        let channels = Channels::default();
        let a = channels.register("SIP/alice-00000001", ChannelState::Ring, true);
        let b = channels.register("SIP/bob-00000002", ChannelState::Down, false);
        b.update(|s| s.state = ChannelState::Up);
        assert_eq!((channels.active_channels(), channels.active_calls(), channels.calls_processed()), (2, 1, 1));
        assert_eq!(channels.list()[1].state, ChannelState::Up);
        drop(a);
        drop(b);
        assert_eq!((channels.active_channels(), channels.active_calls(), channels.calls_processed()), (0, 0, 1));
    }
}

/// What the manager shows of a channel in every event about it.
struct Snapshot<'a> {
    name: &'a str,
    state: ChannelState,
    caller: &'a crate::frame::CallerId,
    connected: &'a crate::frame::CallerId,
    language: &'a str,
    accountcode: &'a str,
    context: &'a str,
    exten: &'a str,
    priority: u32,
    uniqueid: &'a str,
    linkedid: &'a str,
}

impl Snapshot<'_> {
    /// Asterisk's `ast_manager_build_channel_state_string_prefix`: empty caller IDs read
    /// `<unknown>`.
    fn fields(&self, event: crate::events::Event, prefix: &str) -> crate::events::Event {
        let or_unknown = |s: &str| if s.is_empty() { "<unknown>".to_owned() } else { s.to_owned() };
        let field = |name: &str| format!("{prefix}{name}");
        event
            .with(&field("Channel"), self.name)
            .with(&field("ChannelState"), self.state.number().to_string())
            .with(&field("ChannelStateDesc"), self.state.as_str())
            .with(&field("CallerIDNum"), or_unknown(&self.caller.number))
            .with(&field("CallerIDName"), or_unknown(&self.caller.name))
            .with(&field("ConnectedLineNum"), or_unknown(&self.connected.number))
            .with(&field("ConnectedLineName"), or_unknown(&self.connected.name))
            .with(&field("Language"), self.language)
            .with(&field("AccountCode"), self.accountcode)
            .with(&field("Context"), self.context)
            .with(&field("Exten"), self.exten)
            .with(&field("Priority"), self.priority.to_string())
            .with(&field("Uniqueid"), self.uniqueid)
            .with(&field("Linkedid"), self.linkedid)
    }
}

impl ChannelSummary {
    /// The channel's snapshot fields (as of its last application), as events carry them.
    pub fn snapshot_fields(&self, event: crate::events::Event) -> crate::events::Event {
        Snapshot {
            name: &self.name,
            state: self.state,
            caller: &self.caller,
            connected: &self.connected,
            language: &self.language,
            accountcode: &self.accountcode,
            context: &self.context,
            exten: &self.exten,
            priority: self.priority,
            uniqueid: &self.uniqueid,
            linkedid: &self.linkedid,
        }
        .fields(event, "")
    }
}

/// Publishes `DialBegin` (with `detail` = `("DialString", "bob")`) or `DialEnd` (`("DialStatus",
/// "ANSWER")`): the caller's snapshot, if there is a caller (an originate has none), then the
/// dialled channel's with the `Dest` prefix.
pub fn publish_dial(caller: Option<&mut Channel>, peer: &mut Channel, name: &str, detail: (&str, &str)) {
    peer.announce();
    let events = peer.core.events();
    if !events.has_listeners() {
        return;
    }
    let mut event = crate::events::Event::new(name, "call");
    if let Some(caller) = caller {
        caller.announce();
        event = caller.snapshot_fields(event, "");
    }
    events.publish(peer.snapshot_fields(event, "Dest").with(detail.0, detail.1));
}

/// Where a jump goes: `[[context,]exten,]priority` with the priority a number or a label;
/// `None` keeps the current context/extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jump {
    pub context: Option<String>,
    pub exten: Option<String>,
    pub target: JumpTarget,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JumpTarget {
    Priority(u32),
    Label(String),
}

impl Jump {
    /// Parses Goto's `[[context,]extension,]priority` (the priority a number or a label).
    pub fn parse(text: &str) -> Option<Jump> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let (context, exten, priority) = match parts.as_slice() {
            [p] => (None, None, *p),
            [e, p] => (None, Some(*e), *p),
            [c, e, p] => (Some(*c), Some(*e), *p),
            _ => return None,
        };
        if priority.is_empty() {
            return None;
        }
        let target = match priority.parse::<u32>() {
            Ok(n) if n > 0 => JumpTarget::Priority(n),
            Ok(_) => return None,
            Err(_) => JumpTarget::Label(priority.to_owned()),
        };
        Some(Jump { context: context.map(str::to_owned), exten: exten.map(str::to_owned), target })
    }
}

/// What raised the dialplan's last exception, for `EXCEPTION(reason|context|exten|priority)`
/// (Asterisk's `struct pbx_exception`): where the channel was when it went to `e`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    /// `INVALID`, `RESPONSETIMEOUT`, `ABSOLUTETIMEOUT`, `ERROR` or RaiseException's reason.
    pub reason: String,
    pub context: String,
    pub exten: String,
    pub priority: u32,
}

/// A Gosub return address and the LOCAL() variables of that level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackFrame {
    pub context: String,
    pub exten: String,
    pub priority: u32,
    /// Variables LOCAL() set at this level, with the values to restore on Return.
    pub saved: Vec<(String, Option<String>)>,
}

/// Commands from a channel's owner (the PBX task) to its driver (chan_sip's pvt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverCommand {
    /// Start the outbound call (Asterisk's `ast_call`), presenting this caller ID.
    Call(crate::frame::CallerId),
    Answer,
    Indicate(crate::frame::Control),
    Write(crate::frame::Frame),
    SendDigit(char),
    Hangup(crate::frame::Cause),
    /// The channel joined a bridge (`Some`) or left it (`None`). In a bridge, whether the other
    /// party's technology takes jitter itself (Asterisk's `AST_CHAN_TP_WANTSJITTER`, see
    /// [`crate::tech::Tech::wants_jitter`]): a driver with a jitter buffer decides from it
    /// whether to use one, as abstract_jb's `ast_jb_do_usecheck`. Outside a bridge the
    /// channel's frames go to the dialplan's applications.
    Bridged(Option<bool>),
}

/// The driver's end of a channel: it sends what it reads (voice, DTMF, control, the far end's
/// hangup) into `frames` and carries out `commands`.
pub struct ChannelDriver {
    pub frames: crate::tokio::sync::mpsc::Sender<crate::frame::Frame>,
    pub commands: crate::tokio::sync::mpsc::UnboundedReceiver<DriverCommand>,
}

/// What a timed read found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    Frame(crate::frame::Frame),
    Timeout,
    /// The channel is gone (hung up at either end).
    HungUp,
}

/// One call leg, owned by the task that runs it (the PBX loop, or a bridge): Asterisk's
/// `ast_channel`. Its driver lives elsewhere and is reached through messages only, so a
/// slow driver never blocks the dialplan and no lock is shared.
pub struct Channel {
    name: String,
    uniqueid: String,
    state: ChannelState,
    pub caller: crate::frame::CallerId,
    pub context: String,
    pub exten: String,
    pub priority: u32,
    pub language: String,
    pub accountcode: String,
    /// `CHANNEL(musicclass)`: the music on hold class when none is asked for (Asterisk's
    /// `mohsuggest`/`musicclass`); empty: `default`.
    pub musicclass: String,
    /// What this channel hears when the party it is bridged to puts it on hold: music of this
    /// class (chan_sip's `mohinterpret`, `default` unless set), or with `None` (`passthrough`)
    /// the hold is passed on to its far end.
    pub mohinterpret: Option<String>,
    /// The uniqueid of the channel that started the call (its own for a first leg).
    pub linkedid: String,
    /// Who this channel is talking to (the caller, for a dialled channel).
    pub connected: crate::frame::CallerId,
    /// The call detail records (Asterisk's CDR chain, see [`crate::cdr`]) of a channel that
    /// starts a call, oldest first: the last is the one `CDR()` reads. Every one is logged, in
    /// order, when the channel goes.
    cdrs: Vec<crate::cdr::Cdr>,
    /// The last record's `sequence`.
    cdr_sequence: u32,
    /// `Newchannel` was published (every later event of the channel follows it).
    announced: bool,
    /// The driver's own handle on its side of the call, for its technology to find when it is
    /// asked to bridge two of its channels natively ([`crate::tech::Tech::native_bridge`]).
    pub tech_pvt: Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
    /// The audio format the driver reads and writes (`"ulaw"`, `"alaw"`, `"opus"`; `"slin"`,
    /// 8 kHz signed linear, for channels without a codec such as Local): what applications
    /// that make sound must translate to.
    pub native_format: &'static str,
    variables: std::collections::BTreeMap<String, String>,
    /// Set by Goto, Gosub, Return...: where the PBX loop goes next instead of the next priority.
    jump: Option<Jump>,
    /// Gosub's return addresses, innermost last.
    pub gosub_stack: Vec<StackFrame>,
    hangup_cause: Option<crate::frame::Cause>,
    hung_up: bool,
    frames: crate::tokio::sync::mpsc::Receiver<crate::frame::Frame>,
    commands: crate::tokio::sync::mpsc::UnboundedSender<DriverCommand>,
    entry: ChannelHandle,
    core: std::sync::Arc<crate::Core>,
    /// Uses held while the channel lives (its technology's module, the running application's).
    pub uses: Vec<crate::module::ModuleUse>,
    /// A task writing a frame every 20 ms (PlayTones), while the dialplan goes on.
    generator: Option<crate::tokio::task::JoinHandle<()>>,
    /// `TIMEOUT(absolute)`: when the call must leave what it is doing (for `T`, or hang up).
    absolute_deadline: Option<crate::tokio::time::Instant>,
    /// The absolute timeout struck: reads end (as at a hangup) until the PBX loop takes it.
    timed_out: bool,
    /// The manager's Redirect: reads end (as at a hangup) until the PBX loop takes it.
    redirect: Option<Jump>,
    /// `TIMEOUT(digit)` and `TIMEOUT(response)`: the PBX's timeouts (Asterisk's `dtimeoutms`
    /// and `rtimeoutms` in `struct ast_pbx`), 5 s and 10 s unless the dialplan sets them.
    pub timeouts: PbxTimeouts,
    /// The last exception raised (see [`Exception`]).
    pub exception: Option<Exception>,
    /// Evaluating for someone outside the dialplan (the manager): dangerous functions are
    /// refused (Asterisk's thread-local `ast_thread_inhibit_escalations`, here per channel,
    /// since a channel's evaluations all run on its own task).
    inhibit_escalations: bool,
    /// The device's call and pickup groups (its driver sets them: chan_sip's peer's).
    groups: crate::pickup::PickupGroups,
    /// What a pickup left behind ([`Channel::zombie`]).
    zombie: bool,
}

/// How long the dialplan waits for the caller's keys (Asterisk's `struct ast_pbx` timeouts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PbxTimeouts {
    /// Between two digits of an extension being typed (`TIMEOUT(digit)`, default 5 s).
    pub digit: std::time::Duration,
    /// For the first digit, where the dialplan waits for one (`TIMEOUT(response)`, default 10 s).
    pub response: std::time::Duration,
}

impl Default for PbxTimeouts {
    fn default() -> PbxTimeouts {
        PbxTimeouts { digit: std::time::Duration::from_secs(5), response: std::time::Duration::from_secs(10) }
    }
}

impl Channel {
    /// A new channel `TECH/peer-0000000a`, listed in `core show channels` until it drops.
    /// `is_call`: this channel starts a call (an inbound leg), as Asterisk counts calls.
    pub fn new(core: &std::sync::Arc<crate::Core>, tech: &str, peer: &str, is_call: bool) -> (Channel, ChannelDriver) {
        let seq = core.next_channel_sequence();
        let name = format!("{tech}/{peer}-{seq:08x}");
        let epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let system = &core.settings().systemname;
        let uniqueid = if system.is_empty() { format!("{epoch}.{seq}") } else { format!("{system}-{epoch}.{seq}") };
        let entry = core.channels().register(name.clone(), ChannelState::Down, is_call);
        entry.update(|s| s.uniqueid.clone_from(&uniqueid));
        let cdrs = if is_call { vec![crate::cdr::Cdr::new(&name, &uniqueid, &uniqueid, 0)] } else { Vec::new() };
        Channel::with_entry(core, name, uniqueid, entry, cdrs)
    }

    /// A channel of no technology, no call and no driver, not listed anywhere (Asterisk's
    /// `ast_dummy_channel_alloc`): to evaluate a function outside a call (the manager's
    /// `Getvar` without a `Channel`).
    pub fn dummy(core: &std::sync::Arc<crate::Core>) -> Channel {
        let entry = ChannelHandle { channels: core.channels().clone(), id: 0 };
        Channel::with_entry(core, "Dummy".into(), String::new(), entry, Vec::new()).0
    }

    fn with_entry(
        core: &std::sync::Arc<crate::Core>,
        name: String,
        uniqueid: String,
        entry: ChannelHandle,
        cdrs: Vec<crate::cdr::Cdr>,
    ) -> (Channel, ChannelDriver) {
        let (frames_tx, frames) = crate::tokio::sync::mpsc::channel(64);
        let (commands, commands_rx) = crate::tokio::sync::mpsc::unbounded_channel();
        if entry.id != 0 {
            core.channels().lock().inboxes.insert(entry.id, frames_tx.clone());
        }
        let channel = Channel {
            linkedid: uniqueid.clone(),
            connected: Default::default(),
            cdrs,
            cdr_sequence: 0,
            announced: false,
            name,
            uniqueid,
            state: ChannelState::Down,
            caller: Default::default(),
            context: "default".into(),
            exten: "s".into(),
            priority: 1,
            language: "en".into(),
            accountcode: String::new(),
            musicclass: String::new(),
            mohinterpret: None,
            native_format: "slin",
            tech_pvt: None,
            variables: Default::default(),
            jump: None,
            gosub_stack: Vec::new(),
            hangup_cause: None,
            hung_up: false,
            frames,
            commands,
            entry,
            core: core.clone(),
            uses: Vec::new(),
            generator: None,
            absolute_deadline: None,
            timed_out: false,
            redirect: None,
            timeouts: PbxTimeouts::default(),
            exception: None,
            inhibit_escalations: false,
            groups: Default::default(),
            zombie: false,
        };
        (channel, ChannelDriver { frames: frames_tx, commands: commands_rx })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    /// `Local/x@y-0000000a` → `Local/x@y-0000000a;n` (the two halves of a Local pair).
    pub(crate) fn rename_local(&mut self, half: u8) {
        self.name = format!("{};{half}", self.name);
        let name = self.name.clone();
        for cdr in &mut self.cdrs {
            cdr.record_mut().channel = name.clone();
        }
        self.entry.update(|s| s.name = name);
    }

    /// The device's call and pickup groups ([`crate::pickup`]).
    pub fn groups(&self) -> &crate::pickup::PickupGroups {
        &self.groups
    }
    /// Sets the call and pickup groups (the driver, as it makes the channel).
    pub fn set_groups(&mut self, groups: crate::pickup::PickupGroups) {
        self.entry.update(|s| s.groups.clone_from(&groups));
        self.groups = groups;
    }
    /// Marks the channel as running a dialplan, or an application on a task of its own (a
    /// pickup by `pickupexten`): it can no longer be picked up.
    pub fn mark_pbx(&self) {
        self.entry.update(|s| s.pbx = true);
    }
    /// Takes the channel out of `self` to move it elsewhere, leaving a zombie in its place
    /// (Asterisk's masquerade in `ast_do_pickup`): the zombie is hung up, listed nowhere, has
    /// no records and no driver; the dialplan that held it ends without running `h`.
    pub fn zombie(&mut self) -> Channel {
        let mut zombie = Channel::dummy(&self.core);
        zombie.name = format!("{}<ZOMBIE>", self.name);
        zombie.hung_up = true;
        zombie.zombie = true;
        zombie.hangup_cause = Some(crate::frame::Cause::ANSWERED_ELSEWHERE);
        std::mem::replace(self, zombie)
    }
    /// Whether this is what a pickup left behind ([`Channel::zombie`]).
    pub fn is_zombie(&self) -> bool {
        self.zombie
    }

    /// The core this channel lives in (its registries: functions for `Set(FUNC()=...)`).
    pub fn core(&self) -> &std::sync::Arc<crate::Core> {
        &self.core
    }
    pub fn uniqueid(&self) -> &str {
        &self.uniqueid
    }
    pub fn state(&self) -> ChannelState {
        self.state
    }
    pub fn set_state(&mut self, state: ChannelState) {
        if state == self.state {
            return;
        }
        self.state = state;
        self.entry.update(|s| s.state = state);
        if state == ChannelState::Up {
            for cdr in self.cdrs.iter_mut().filter(|c| !c.is_finished()) {
                cdr.answered();
            }
        }
        if self.announced {
            self.publish("Newstate", "call", |e| e);
        }
        self.core.channels().channel_device_changed(&self.name);
    }

    /// The far end put this channel on hold (or took it off): its device is `ONHOLD` meanwhile.
    fn set_on_hold(&mut self, on_hold: bool) {
        self.entry.update(|s| s.on_hold = on_hold);
        self.core.channels().channel_device_changed(&self.name);
    }

    /// Shows what the channel is doing in `core show channels`, and records it as the CDR's
    /// last application (and the extension as its destination, until the call is over).
    /// The manager hears `Newexten` (class `dialplan`), as Asterisk 20 publishes it for every
    /// dialplan step.
    pub fn set_application(&mut self, app: &str, data: &str) {
        self.entry.update(|s| {
            s.location = format!("{}@{}:{}", self.exten, self.context, self.priority);
            s.application = format!("{app}({data})");
            app.clone_into(&mut s.app);
            data.clone_into(&mut s.data);
        });
        self.sync_summary();
        if self.core.events().has_listeners() {
            let exten = self.exten.clone();
            self.publish("Newexten", "dialplan", |e| {
                e.with("Extension", exten).with("Application", app).with("AppData", data)
            });
        }
        let hung_up = self.hung_up;
        if hung_up && self.core.cdr().settings().endbeforehexten {
            return;
        }
        // A record whose dial or bridge is over (it has a Party B, or it ended) takes no more
        // applications: the dialplan going on is the next record, as Asterisk's finalized state
        // hands over to a new CDR. Not in the `h` extension: the call is over.
        if !hung_up && self.cdrs.last().is_some_and(|c| c.is_finished() || c.has_party_b()) {
            self.fork_cdr();
        }
        self.update_cdr();
        // A record with a Party B keeps the application that brought it (Asterisk's LOCK_APP).
        for cdr in self.cdrs.iter_mut().filter(|c| !c.is_finished() && !c.has_party_b()) {
            let record = cdr.record_mut();
            app.clone_into(&mut record.lastapp);
            data.clone_into(&mut record.lastdata);
        }
    }

    /// Copies what the CDR follows from the channel into the records still open (caller ID,
    /// account, where it is in the dialplan: not once it has hung up, when the `h` extension runs).
    fn update_cdr(&mut self) {
        if self.cdrs.is_empty() {
            return;
        }
        let clid = match (self.caller.name.as_str(), self.caller.number.as_str()) {
            ("", number) => number.to_owned(),
            (name, "") => name.to_owned(),
            (name, number) => format!("\"{name}\" <{number}>"),
        };
        for cdr in self.cdrs.iter_mut().filter(|c| !c.is_finished()) {
            let record = cdr.record_mut();
            record.src.clone_from(&self.caller.number);
            record.clid.clone_from(&clid);
            record.accountcode.clone_from(&self.accountcode);
            if !self.hung_up {
                record.dst.clone_from(&self.exten);
                record.dcontext.clone_from(&self.context);
            }
        }
    }

    /// The channel's call detail record in force (the last of its chain), if it has one.
    pub fn cdr(&self) -> Option<&crate::cdr::Cdr> {
        self.cdrs.last()
    }
    /// The record in force, up to date with the channel (what `CDR()` reads).
    pub fn cdr_mut(&mut self) -> Option<&mut crate::cdr::Cdr> {
        self.update_cdr();
        self.cdrs.last_mut()
    }
    /// The records a write through `CDR()` or `CDR_PROP()` changes, as Asterisk's
    /// `ast_cdr_setvar`: every one still open, and the last one even if it has ended.
    pub fn cdrs_to_write(&mut self) -> impl Iterator<Item = &mut crate::cdr::Cdr> {
        self.update_cdr();
        let last = self.cdrs.len().saturating_sub(1);
        self.cdrs.iter_mut().enumerate().filter(move |(i, c)| *i == last || !c.is_finished()).map(|(_, c)| c)
    }
    /// Gives a channel that did not start a call a record of its own (an originated one).
    pub fn enable_cdr(&mut self) {
        if self.cdrs.is_empty() {
            self.cdrs.push(crate::cdr::Cdr::new(&self.name, &self.uniqueid, &self.linkedid, 0));
            self.update_cdr();
        }
    }
    /// Ends the records still open now and starts the next one in the chain (the dialplan
    /// going on after a dial or a bridge): as Asterisk, one record per party the channel was
    /// connected to. The records are logged when the channel goes.
    pub fn fork_cdr(&mut self) {
        let congestion = self.core.cdr().settings().congestion;
        let cause = self.hangup_cause;
        for cdr in &mut self.cdrs {
            cdr.finish_now(cause, congestion);
        }
        let Some(last) = self.cdrs.last() else { return };
        self.cdr_sequence += 1;
        let mut next = last.append(self.cdr_sequence);
        if self.state == ChannelState::Up {
            next.answered();
        }
        self.cdrs.push(next);
        self.update_cdr();
    }

    /// A dial of `peer` begins (its DialBegin): the record in force takes it as Party B, or,
    /// when it has one already (the second target of `Dial(SIP/a&SIP/b)`), a new record of the
    /// chain does, as Asterisk's CDR engine does on the same message.
    pub fn cdr_dial_begin(&mut self, peer: &str) {
        self.update_cdr();
        let sequence = self.cdr_sequence + 1;
        let Some(last) = self.cdrs.last_mut() else { return };
        if !last.is_finished() && !last.has_party_b() {
            last.set_party_b(peer);
            return;
        }
        let mut next = last.append(sequence);
        next.set_party_b(peer);
        // A caller already up: the new record is answered from its start, as Asterisk's.
        if self.state == ChannelState::Up {
            next.answered();
        }
        self.cdr_sequence = sequence;
        self.cdrs.push(next);
    }

    /// The `h` extension is about to run: with cdr.conf's `endbeforehexten=yes` the records end
    /// now, so that their end, duration and billsec leave out the time `h` takes (Asterisk's
    /// CDR engine finalizes them when the hangup extension starts).
    pub fn cdr_before_hangup_exten(&mut self) {
        let settings = self.core.cdr().settings();
        if !settings.endbeforehexten {
            return;
        }
        let cause = self.hangup_cause;
        for cdr in &mut self.cdrs {
            cdr.finish_now(cause, settings.congestion);
        }
    }

    /// The dial of `peer` ended with `status` (its DialEnd's `DialStatus`): its record takes the
    /// disposition Asterisk gives that status, and ends unless it answered.
    pub fn cdr_dial_end(&mut self, peer: &str, status: &str) {
        let congestion = self.core.cdr().settings().congestion;
        let cause = self.hangup_cause;
        if let Some(cdr) = self.cdrs.iter_mut().find(|c| !c.is_finished() && c.party_b() == peer) {
            cdr.set_disposition(crate::cdr::Disposition::from_dialstatus(status, congestion));
            if status != "ANSWER" {
                cdr.finish_now(cause, congestion);
            }
        }
    }

    /// The dialled `peer` was picked up by `picker` ([`crate::pickup`]): the record that has
    /// `peer` as Party B has the picker instead (the party that answered, as Asterisk's CDR shows
    /// after the pickup's masquerade).
    pub fn cdr_dial_picked_up(&mut self, peer: &str, picker: &str) {
        if let Some(cdr) = self.cdrs.iter_mut().find(|c| !c.is_finished() && c.party_b() == peer) {
            cdr.set_party_b(picker);
        }
    }

    /// `peer` joins this channel in a bridge: the record in force takes it as Party B unless
    /// a record already has it (the dialled party that answered).
    pub fn cdr_bridge_enter(&mut self, peer: &str) {
        if self.cdrs.iter().any(|c| !c.is_finished() && c.party_b() == peer) {
            return;
        }
        if self.cdrs.last().is_some_and(|c| c.is_finished() || c.has_party_b()) {
            self.fork_cdr();
        }
        if let Some(last) = self.cdrs.last_mut() {
            last.set_party_b(peer);
        }
    }

    /// Copies the snapshot the manager lists into the channel list.
    fn sync_summary(&self) {
        self.entry.update(|s| {
            s.linkedid.clone_from(&self.linkedid);
            s.caller.clone_from(&self.caller);
            s.connected.clone_from(&self.connected);
            s.accountcode.clone_from(&self.accountcode);
            s.language.clone_from(&self.language);
            s.context.clone_from(&self.context);
            s.exten.clone_from(&self.exten);
            s.priority = self.priority;
            s.native_format = self.native_format;
        });
    }

    /// Changes the caller ID (`Set(CALLERID(num)=...)`). A change on a channel the manager
    /// already knows is a `NewCallerid` event (Asterisk 20's fields: `CID-CallingPres` is the
    /// presentation's value and description).
    pub fn set_caller(&mut self, caller: crate::frame::CallerId) {
        if caller == self.caller {
            return;
        }
        self.caller = caller;
        self.sync_summary();
        if self.announced {
            let pres = self.caller.presentation;
            self.publish("NewCallerid", "call", |e| {
                e.with("CID-CallingPres", format!("{} ({})", pres.0, pres.describe()))
            });
        }
    }

    /// The driver queued a hangup (the far end hung up, with `cause`): as Asterisk's
    /// `ast_queue_hangup_with_cause`, the manager hears `HangupRequest`.
    fn hangup_requested(&mut self, cause: crate::frame::Cause) {
        self.hangup_cause.get_or_insert(cause);
        self.hung_up = true;
        if self.announced {
            self.publish("HangupRequest", "call", |e| e.with("Cause", cause.0.to_string()));
        }
    }

    /// Publishes `Newchannel` (once): when the channel is handed to the dialplan or dialled.
    pub fn announce(&mut self) {
        if !self.announced {
            self.announced = true;
            self.sync_summary();
            self.publish("Newchannel", "call", |e| e);
        }
    }

    /// Adds the channel's snapshot (`Channel`, `ChannelState`... `Linkedid`, Asterisk's
    /// fields and order) to an event, each name after `prefix` (`Dest` for DialBegin's callee).
    pub fn snapshot_fields(&self, event: crate::events::Event, prefix: &str) -> crate::events::Event {
        Snapshot {
            name: &self.name,
            state: self.state,
            caller: &self.caller,
            connected: &self.connected,
            language: &self.language,
            accountcode: &self.accountcode,
            context: &self.context,
            exten: &self.exten,
            priority: self.priority,
            uniqueid: &self.uniqueid,
            linkedid: &self.linkedid,
        }
        .fields(event, prefix)
    }

    /// Publishes a channel event: the snapshot, then what `extra` adds. Announces the channel
    /// first if it was not; costs nothing when nobody listens.
    pub fn publish(
        &mut self,
        name: &str,
        class: &'static str,
        extra: impl FnOnce(crate::events::Event) -> crate::events::Event,
    ) {
        if !self.announced {
            self.announce();
        }
        let events = self.core.events();
        if events.has_listeners() {
            events.publish(extra(self.snapshot_fields(crate::events::Event::new(name, class), "")));
        }
    }

    /// DTMF the far end sent, as the manager reports it.
    fn observe(&mut self, frame: &crate::frame::Frame) {
        match frame {
            crate::frame::Frame::DtmfBegin(digit) => {
                let digit = digit.to_string();
                self.publish("DTMFBegin", "dtmf", |e| e.with("Digit", digit).with("Direction", "Received"));
            }
            crate::frame::Frame::DtmfEnd { digit, duration_ms } => {
                let (digit, duration) = (digit.to_string(), duration_ms.to_string());
                self.publish("DTMFEnd", "dtmf", |e| {
                    e.with("Digit", digit).with("DurationMs", duration).with("Direction", "Received")
                });
            }
            // As chan_sip on a 180: a channel not yet up is Ringing (Newstate 5).
            crate::frame::Frame::Control(crate::frame::Control::Ringing) if self.state != ChannelState::Up => {
                self.set_state(ChannelState::Ringing);
            }
            crate::frame::Frame::Control(crate::frame::Control::Hold) => self.set_on_hold(true),
            crate::frame::Frame::Control(crate::frame::Control::Unhold) => self.set_on_hold(false),
            _ => {}
        }
    }

    /// A channel variable (`_VAR` and `__VAR`, the inherited forms, answer to `VAR`).
    pub fn var(&self, name: &str) -> Option<&str> {
        self.variables
            .get(name)
            .or_else(|| self.variables.get(&format!("_{name}")))
            .or_else(|| self.variables.get(&format!("__{name}")))
            .map(String::as_str)
    }
    /// Sets a variable; an empty value removes it (as Asterisk's Set(VAR=)). As Asterisk's
    /// `pbx_builtin_setvar_helper`, the variable replaces one of the same name with or without
    /// the inheritance underscores (`Set(VAR=x)` after `Set(_VAR=y)` leaves only `VAR`).
    pub fn set_var(&mut self, name: &str, value: &str) {
        let tail = name.strip_prefix('_').map_or(name, |n| n.strip_prefix('_').unwrap_or(n));
        let update = |variables: &mut BTreeMap<String, String>| {
            for variant in [tail.to_owned(), format!("_{tail}"), format!("__{tail}")] {
                variables.remove(&variant);
            }
            if !value.is_empty() {
                variables.insert(name.to_owned(), value.to_owned());
            }
        };
        update(&mut self.variables);
        self.entry.update(|s| update(&mut s.variables));
        if self.announced && self.core.events().varset() {
            self.publish("VarSet", "dialplan", |e| e.with("Variable", name).with("Value", value));
        }
    }
    /// What `${name}` is on this channel (a variable, a built-in such as `CHANNEL`, a global, or
    /// a function such as `CALLERID(num)` or `CDR(src)`), as the dialplan substitutes it: the
    /// manager's `Getvar`. Without a dialplan, only the channel's own variables are known.
    pub fn getvar(&mut self, name: &str) -> String {
        let core = self.core.clone();
        core.substitute(self, &format!("${{{name}}}")).unwrap_or_else(|| self.var(name).unwrap_or_default().to_owned())
    }
    /// `Set(name=value)` (Asterisk's `pbx_builtin_setvar_helper`): a variable, or a function's
    /// write for `NAME(args)`; false when a function was not written (none such, refused as
    /// dangerous, or it failed: each logged).
    pub fn setvar_helper(&mut self, name: &str, value: &str) -> bool {
        crate::builtins::set_pair(self, name, value)
    }
    /// Sets whether evaluations on this channel are for someone outside the dialplan (the
    /// manager), where functions marked dangerous are refused (see
    /// [`crate::apps::Function::read_allowed`]); gives back the previous setting to restore
    /// (Asterisk's `ast_thread_inhibit_escalations_swap`).
    pub fn inhibit_escalations(&mut self, inhibit: bool) -> bool {
        std::mem::replace(&mut self.inhibit_escalations, inhibit)
    }
    /// Whether evaluations on this channel refuse dangerous functions now.
    pub fn inhibits_escalations(&self) -> bool {
        self.inhibit_escalations
    }
    /// Every variable name set on the channel, sorted.
    pub fn var_names(&self) -> impl Iterator<Item = &str> {
        self.variables.keys().map(String::as_str)
    }
    /// Variables a channel created from this one inherits (`_VAR` once, `__VAR` for ever).
    pub fn inheritable_vars(&self) -> Vec<(String, String)> {
        self.variables
            .iter()
            .filter_map(|(k, v)| {
                if let Some(rest) = k.strip_prefix("__") {
                    Some((format!("__{rest}"), v.clone()))
                } else {
                    k.strip_prefix('_').map(|rest| (rest.to_owned(), v.clone()))
                }
            })
            .collect()
    }

    /// Sends the dialplan elsewhere; the PBX loop continues there instead of at the next
    /// priority (it resolves labels, which only the dialplan knows).
    pub fn jump(&mut self, jump: Jump) {
        self.jump = Some(jump);
    }
    /// The pending jump, if the last application made one (and forget it).
    pub fn take_jump(&mut self) -> Option<Jump> {
        self.jump.take()
    }

    /// Sets (or with `None` clears) the absolute timeout, counted from now, as
    /// `Set(TIMEOUT(absolute)=secs)`: when it strikes, reads end as at a hangup and the PBX loop
    /// goes to the `T` extension, or hangs up without one.
    pub fn set_absolute_timeout(&mut self, after: Option<std::time::Duration>) {
        self.absolute_deadline = after.map(|d| crate::tokio::time::Instant::now() + d);
        self.timed_out = false;
        let at = after.map(|d| std::time::SystemTime::now() + d);
        self.entry.update(|s| s.hangup_at = at);
    }
    /// Seconds left before the absolute timeout (0 when none is set).
    pub fn absolute_timeout_left(&self) -> std::time::Duration {
        self.absolute_deadline
            .map_or(std::time::Duration::ZERO, |d| d.saturating_duration_since(crate::tokio::time::Instant::now()))
    }
    /// Whether the absolute timeout has struck (without taking it).
    pub fn is_timed_out(&self) -> bool {
        self.timed_out || self.absolute_deadline.is_some_and(|d| d <= crate::tokio::time::Instant::now())
    }
    /// Whether the absolute timeout struck (reading it clears it): for the PBX loop.
    pub fn take_timed_out(&mut self) -> bool {
        if self.absolute_deadline.is_some_and(|d| d <= crate::tokio::time::Instant::now()) {
            self.absolute_deadline = None;
            self.timed_out = true;
        }
        std::mem::take(&mut self.timed_out)
    }

    /// Waits for the next frame, or the absolute timeout (`None` then, and `timed_out` set).
    async fn next_frame(&mut self) -> Option<Option<crate::frame::Frame>> {
        loop {
            if self.timed_out || self.redirect.is_some() {
                return None;
            }
            match self.next_raw_frame().await? {
                // Both come from the manager: dangerous functions stay out of reach.
                Some(crate::frame::Frame::SetVar(name, value)) => {
                    let was = self.inhibit_escalations(true);
                    crate::builtins::set_pair(self, &name, &value);
                    self.inhibit_escalations(was);
                }
                Some(crate::frame::Frame::Redirect(jump)) => self.redirect = Some(jump),
                Some(crate::frame::Frame::GetVar(name, reply)) => {
                    let was = self.inhibit_escalations(true);
                    let value = self.getvar(&name);
                    self.inhibit_escalations(was);
                    let _ = reply.send(value);
                }
                frame => return Some(frame),
            }
        }
    }

    /// The manager's pending Redirect (taking it): for the PBX loop.
    pub fn take_redirect(&mut self) -> Option<Jump> {
        self.redirect.take()
    }
    /// Whether a Redirect is pending (reads end until the PBX loop takes it).
    pub fn is_redirected(&self) -> bool {
        self.redirect.is_some()
    }

    async fn next_raw_frame(&mut self) -> Option<Option<crate::frame::Frame>> {
        match self.absolute_deadline {
            None => Some(self.frames.recv().await),
            Some(deadline) => {
                crate::tokio::select! {
                    frame = self.frames.recv() => Some(frame),
                    _ = crate::tokio::time::sleep_until(deadline) => {
                        self.absolute_deadline = None;
                        self.timed_out = true;
                        None
                    }
                }
            }
        }
    }

    /// The next frame from the driver; `None` once hung up (at either end), or when the
    /// absolute timeout strikes.
    pub async fn read(&mut self) -> Option<crate::frame::Frame> {
        if self.hung_up {
            return None;
        }
        let frame = self.next_frame().await?;
        match frame {
            Some(crate::frame::Frame::Hangup(cause)) => {
                self.hangup_requested(cause);
                None
            }
            None => {
                self.hung_up = true;
                None
            }
            Some(frame) => {
                self.observe(&frame);
                Some(frame)
            }
        }
    }

    /// Reads for at most `timeout`.
    pub async fn read_timeout(&mut self, timeout: std::time::Duration) -> Read {
        if self.hung_up {
            return Read::HungUp;
        }
        match crate::tokio::time::timeout(timeout, self.next_frame()).await {
            Err(_) => Read::Timeout,
            Ok(None) => Read::HungUp,
            Ok(Some(frame)) => match frame {
                Some(crate::frame::Frame::Hangup(cause)) => {
                    self.hangup_requested(cause);
                    Read::HungUp
                }
                None => {
                    self.hung_up = true;
                    Read::HungUp
                }
                Some(frame) => {
                    self.observe(&frame);
                    Read::Frame(frame)
                }
            },
        }
    }

    /// Sends a frame to the far end (dropped once hung up).
    pub fn write(&self, frame: crate::frame::Frame) {
        if !self.hung_up {
            let _ = self.commands.send(DriverCommand::Write(frame));
        }
    }

    /// Dials an outbound channel made by [`crate::Core::request_channel`]: the driver sends its
    /// INVITE (or starts its dialplan); progress comes back as control frames.
    pub fn call(&mut self) {
        if !self.hung_up {
            self.announce();
            // (Down until the far end rings or answers, as Asterisk's ast_call leaves it.)
            let _ = self.commands.send(DriverCommand::Call(self.caller.clone()));
        }
    }

    /// Answers (once; nothing if already up).
    pub fn answer(&mut self) {
        if self.state != ChannelState::Up && !self.hung_up {
            let _ = self.commands.send(DriverCommand::Answer);
            self.set_state(ChannelState::Up);
        }
    }

    /// Starts a generator, as Asterisk's `ast_activate_generator`: `next` makes a frame every
    /// 20 ms, written to the driver until stopped, replaced, or the channel is gone. It runs on
    /// its own task, so the dialplan goes on meanwhile (PlayTones). Must be called in the runtime.
    pub fn start_generator(&mut self, mut next: impl FnMut() -> Option<crate::frame::Frame> + Send + 'static) {
        self.stop_generator();
        if self.hung_up {
            return;
        }
        let commands = self.commands.clone();
        self.generator = Some(crate::tokio::spawn(async move {
            let mut tick = crate::tokio::time::interval(std::time::Duration::from_millis(20));
            tick.set_missed_tick_behavior(crate::tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(frame) = next() else { return };
                if commands.send(DriverCommand::Write(frame)).is_err() {
                    return;
                }
            }
        }));
    }

    /// Stops the generator, if one runs (StopPlayTones, or an application that plays a file).
    pub fn stop_generator(&mut self) {
        if let Some(generator) = self.generator.take() {
            generator.abort();
        }
    }

    pub fn indicate(&self, control: crate::frame::Control) {
        if !self.hung_up {
            let _ = self.commands.send(DriverCommand::Indicate(control));
        }
    }

    /// Tells the driver the channel joined a bridge whose other party does (`Some(true)`) or
    /// does not (`Some(false)`) take jitter itself, or left it (`None`): see
    /// [`DriverCommand::Bridged`].
    pub fn set_bridged(&self, peer_wants_jitter: Option<bool>) {
        if !self.hung_up {
            let _ = self.commands.send(DriverCommand::Bridged(peer_wants_jitter));
        }
    }

    pub fn send_digit(&self, digit: char) {
        if !self.hung_up {
            let _ = self.commands.send(DriverCommand::SendDigit(digit));
        }
    }

    /// Hangs up from this end with `cause` (the driver sends BYE/CANCEL/a final response).
    pub fn hangup(&mut self, cause: crate::frame::Cause) {
        self.stop_generator();
        if !self.hung_up {
            self.hangup_cause.get_or_insert(cause);
            let _ = self.commands.send(DriverCommand::Hangup(cause));
            self.hung_up = true;
        }
    }

    pub fn is_hung_up(&self) -> bool {
        self.hung_up
    }
    /// Records a cause without hanging up: Dial reports why the called party did not answer
    /// (`HANGUPCAUSE` reads it; a later hangup keeps it).
    pub fn set_hangup_cause(&mut self, cause: crate::frame::Cause) {
        self.hangup_cause = Some(cause);
    }
    /// Why the channel hung up (`HANGUPCAUSE`).
    pub fn hangup_cause(&self) -> Option<crate::frame::Cause> {
        self.hangup_cause
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.stop_generator();
        // A channel dropped while up still ends the call at the far end.
        if !self.hung_up {
            let cause = self.hangup_cause.unwrap_or(crate::frame::Cause::NORMAL_CLEARING);
            let _ = self.commands.send(DriverCommand::Hangup(cause));
        }
        let cause = self.hangup_cause.unwrap_or(crate::frame::Cause::NORMAL_CLEARING);
        if self.announced {
            self.publish("Hangup", "call", |e| {
                e.with("Cause", cause.0.to_string()).with("Cause-txt", cause.description())
            });
        }
        self.update_cdr();
        for cdr in std::mem::take(&mut self.cdrs) {
            self.core.cdr().post(cdr, self.hangup_cause, self.core.events());
        }
    }
}
