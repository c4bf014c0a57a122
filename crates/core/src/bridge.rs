//! Two-party bridges (Asterisk's `ast_bridge` with the `simple_bridge` and `native_rtp`
//! technologies): what connects the caller and the callee once Dial has an answer.
//!
//! The bridge runs on the task of the channel that dialled, owning both channels. First it
//! asks their technology to carry the media itself ([`crate::tech::Tech::native_bridge`]):
//! chan_sip relays RTP packet to packet between the two calls' sockets when they share a codec,
//! and then only signalling (hold, DTMF the relay does not carry, hangup) comes through here.
//! Otherwise every frame one side reads is written to the other; a driver translates what it
//! cannot send as it is (chan_sip turns Opus into PCMU and back).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::channel::Channel;
use crate::frame::{Cause, Control, Frame, Handover};
use crate::tokio;
use crate::Extent;

/// How a bridge behaves (Dial's options).
#[derive(Clone, Debug, Default)]
pub struct BridgeConfig {
    /// `L(x)`: the call may last this long, then the bridge ends.
    pub limit: Option<Duration>,
    /// `t`: the callee may transfer the caller (blind transfer key, `#`, then an extension).
    pub callee_transfer: bool,
    /// `T`: the caller may transfer the callee.
    pub caller_transfer: bool,
    /// `context` where a transfer's extension is looked up.
    pub transfer_context: String,
}

/// Which side of the bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The channel that dialled.
    Caller,
    /// The one that answered.
    Callee,
}

/// Why a bridge ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BridgeEnd {
    /// That side hung up with this cause.
    HungUp(Side, Cause),
    /// The `L()` limit ran out.
    Limit,
    /// That side transferred the other (the transfer key and an extension, or a REFER):
    /// the other side is to go to `exten`.
    Transfer(Side, String),
    /// That side (the transferer) asks that the other be connected with the party of the
    /// channel named (its other call; a REFER with Replaces), and leaves.
    AttendedTransfer(Side, String),
    /// That side's channel is replaced by an attended transfer in another bridge, which waits
    /// for this bridge's other party (or offers its transferee) on the reply.
    Replaced(Side, crate::frame::Reply<crate::frame::Handover>),
}

/// One row of `bridge show all`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeSummary {
    pub id: String,
    pub channels: Vec<String>,
    /// `native_rtp` or `simple_bridge`, as Asterisk names its bridge technologies.
    pub technology: &'static str,
}

/// Every bridge in the process.
#[derive(Clone, Default)]
pub struct Bridges {
    inner: Arc<Mutex<BTreeMap<u64, BridgeSummary>>>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl Bridges {
    pub fn list(&self) -> Vec<BridgeSummary> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }
    fn add(&self, summary: impl FnOnce(String) -> BridgeSummary) -> BridgeEntry {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let id = format!("{:08x}-{:04x}-4000-8000-{n:012x}", std::process::id(), (n >> 16) as u16);
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).insert(n, summary(id.clone()));
        BridgeEntry { bridges: self.clone(), n, id }
    }
}

struct BridgeEntry {
    bridges: Bridges,
    n: u64,
    id: String,
}

/// A bridge event's own fields (Asterisk's `ast_manager_build_bridge_state_string`).
fn bridge_event(name: &str, id: &str, technology: &str, channels: usize) -> crate::events::Event {
    crate::events::Event::new(name, "call")
        .with("BridgeUniqueid", id)
        .with("BridgeType", "basic")
        .with("BridgeTechnology", technology)
        .with("BridgeCreator", "<unknown>")
        .with("BridgeName", "<unknown>")
        .with("BridgeNumChannels", channels.to_string())
        .with("BridgeVideoSourceMode", "none")
}

/// Publishes the bridge's life for the manager: BridgeCreate, a BridgeEnter per channel;
/// [`announce_bridge_end`] the BridgeLeaves and BridgeDestroy.
fn announce_bridge_start(id: &str, technology: &str, caller: &mut Channel, callee: &mut Channel) {
    let core = caller.core().clone();
    let events = core.events();
    if !events.has_listeners() {
        return;
    }
    events.publish(bridge_event("BridgeCreate", id, technology, 0));
    for (n, chan) in [caller, callee].into_iter().enumerate() {
        chan.publish("BridgeEnter", "call", |e| {
            let mut event = bridge_event("BridgeEnter", id, technology, n + 1);
            event.fields.extend(e.fields);
            event
        });
    }
}

fn announce_bridge_end(id: &str, technology: &str, caller: &mut Channel, callee: &mut Channel) {
    let core = caller.core().clone();
    let events = core.events();
    if !events.has_listeners() {
        return;
    }
    for (n, chan) in [caller, callee].into_iter().enumerate() {
        chan.publish("BridgeLeave", "call", |e| {
            let mut event = bridge_event("BridgeLeave", id, technology, 1 - n);
            event.fields.extend(e.fields);
            event
        });
    }
    events.publish(bridge_event("BridgeDestroy", id, technology, 0));
}

impl Drop for BridgeEntry {
    fn drop(&mut self) {
        self.bridges.inner.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.n);
    }
}

/// What a side's transfer key press is collecting.
#[derive(Default)]
struct TransferKeys {
    /// `Some` once `#` was pressed: the digits dialled so far.
    digits: Option<String>,
}

const TRANSFER_KEY: char = '#';

/// Bridges `caller` and `callee` until one hangs up, the limit runs out, or a transfer.
pub async fn bridge(caller: &mut Channel, callee: &mut Channel, config: &BridgeConfig) -> BridgeEnd {
    let core = caller.core().clone();
    // Transfer keys must be heard: a relay would carry RFC 4733 digits past us, so there is no
    // native bridge while DTMF is wanted (Asterisk's native_rtp refuses a channel with DTMF
    // hooks: "can not use native RTP bridge as channel ... has DTMF hooks").
    let wants_keys = config.caller_transfer || config.callee_transfer;
    let native_bridge = |a: &Channel, b: &Channel| if wants_keys { None } else { core.native_bridge(a, b, true) };
    let mut native = native_bridge(caller, callee);
    let technology = if native.is_some() { "native_rtp" } else { "simple_bridge" };
    let entry = core.bridges().add(|id| BridgeSummary {
        id,
        channels: vec![caller.name().to_owned(), callee.name().to_owned()],
        technology,
    });
    crate::verbose!(3, "Channel {} joined '{technology}' bridge with {}", caller.name(), callee.name());
    announce_bridge_start(&entry.id, technology, caller, callee);
    caller.cdr_bridge_enter(callee.name());
    // Each driver learns what its frames now go to (its jitter buffer's rule).
    caller.set_bridged(Some(core.wants_jitter(callee)));
    callee.set_bridged(Some(core.wants_jitter(caller)));
    let deadline = config.limit.map(|l| tokio::time::Instant::now() + l);
    let mut keys = [TransferKeys::default(), TransferKeys::default()];
    // Which side hears music on hold (its party's audio is not written to it meanwhile).
    let mut on_hold_music = [false, false];
    let end = loop {
        let limit = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let (side, frame) = tokio::select! {
            frame = caller.read() => (Side::Caller, frame),
            frame = callee.read() => (Side::Callee, frame),
            _ = limit => break BridgeEnd::Limit,
        };
        let (from, to) = match side {
            Side::Caller => (&mut *caller, &mut *callee),
            Side::Callee => (&mut *callee, &mut *caller),
        };
        let Some(frame) = frame else {
            break BridgeEnd::HungUp(side, from.hangup_cause().unwrap_or(Cause::NORMAL_CLEARING));
        };
        let may_transfer = match side {
            Side::Caller => config.caller_transfer,
            Side::Callee => config.callee_transfer,
        };
        match frame {
            Frame::Voice { .. } if !on_hold_music[1 - side as usize] => to.write(frame),
            Frame::Voice { .. } => {}
            Frame::DtmfBegin(_) => {}
            Frame::DtmfEnd { digit, .. } => {
                let pending = &mut keys[side as usize].digits;
                match pending {
                    Some(digits) => {
                        // The extension is complete as soon as it exists in the transfer
                        // context (or at a second `#`); a number that cannot exist is dropped.
                        if digit != TRANSFER_KEY {
                            digits.push(digit);
                        }
                        let exten = digits.clone();
                        match core.extension_exists(&config.transfer_context, &exten, None) {
                            Extent::Exists => break BridgeEnd::Transfer(side, exten),
                            Extent::Incomplete if digit != TRANSFER_KEY => {}
                            _ => {
                                crate::verbose!(
                                    3,
                                    "Transfer to '{exten}@{}' abandoned: no such extension",
                                    config.transfer_context
                                );
                                *pending = None;
                            }
                        }
                    }
                    None if may_transfer && digit == TRANSFER_KEY => *pending = Some(String::new()),
                    None => to.send_digit(digit),
                }
            }
            // The other party hears music on hold when its channel says so (chan_sip's
            // `mohinterpret`); the native relay pauses meanwhile, so that the music reaches it.
            // Otherwise (`passthrough`) the hold goes on to its far end.
            Frame::Control(control @ (Control::Hold | Control::Unhold)) => match to.mohinterpret.clone() {
                Some(class) if control == Control::Hold => {
                    native = None;
                    on_hold_music[1 - side as usize] = crate::moh::start(to, &class);
                }
                Some(_) => {
                    if std::mem::take(&mut on_hold_music[1 - side as usize]) {
                        crate::moh::stop(to);
                    }
                    if native.is_none() {
                        native = native_bridge(from, to);
                    }
                }
                None => to.indicate(control),
            },
            // Call progress after the answer means nothing to the other side.
            Frame::Control(_) => {}
            Frame::Transfer(exten) => break BridgeEnd::Transfer(side, exten),
            Frame::AttendedTransfer(channel) => break BridgeEnd::AttendedTransfer(side, channel),
            Frame::Replace(reply) => break BridgeEnd::Replaced(side, reply),
            // A channel in a bridge is up: there is nothing to pick up (the picker hears so
            // as the request is dropped).
            Frame::Pickup(_) => {}
            Frame::Hangup(cause) => break BridgeEnd::HungUp(side, cause),
            // Taken by the channel's own read.
            Frame::SetVar(..) | Frame::Redirect(_) | Frame::GetVar(..) => {}
        }
    };
    drop(native);
    caller.set_bridged(None);
    callee.set_bridged(None);
    announce_bridge_end(&entry.id, technology, caller, callee);
    end
}

/// How long a bridge waits for the other bridge of an attended transfer to answer.
const HANDOVER_WAIT: Duration = Duration::from_secs(5);

/// How a bridge with its attended transfers ended ([`connect`]).
pub enum Connected {
    /// For a reason Dial's usual endings handle.
    End(BridgeEnd),
    /// The caller (the transferer) left: the called party and this one, the party of the
    /// replaced channel, are to be bridged on their own task.
    Elsewhere(Box<Channel>),
    /// The caller was replaced by an attended transfer: the called party goes to the
    /// transfer's bridge on this reply.
    HandOver(crate::frame::Reply<Handover>),
    /// The caller transferred; the bridge of the replaced channel takes the called party.
    GiveAway(tokio::sync::oneshot::Sender<Channel>),
}

/// Bridges `chan` and `callee` (as Dial does) and carries out attended transfers (a REFER with Replaces),
/// as Asterisk moves channels between bridges: the transferer's bridge asks the replaced
/// channel's bridge for its other party ([`Frame::Replace`]) and connects it with the
/// transferee; the transferer and the replaced channel leave. `chan` runs the dialplan on this
/// task and never moves: when it is the party to move, the other bridge takes the transferee
/// instead ([`Handover::Want`]). A transfer that cannot be done (the replaced call is not in a
/// bridge, both parties run dialplans, no answer in 5 s) leaves the bridge as it was.
pub async fn connect(chan: &mut Channel, callee: &mut Channel, config: &BridgeConfig) -> Connected {
    let core = chan.core().clone();
    loop {
        match bridge(chan, callee, config).await {
            BridgeEnd::AttendedTransfer(side, replaced) => {
                let (reply, answer) = crate::frame::Reply::<Handover>::new();
                let asked = core.channels().send_frame(&replaced, Frame::Replace(reply)) > 0;
                let answer = if asked {
                    tokio::time::timeout(HANDOVER_WAIT, answer).await.ok().and_then(Result::ok)
                } else {
                    None
                };
                match (side, answer) {
                    (Side::Callee, Some(Handover::Party(party))) => {
                        crate::verbose!(
                            3,
                            "{} connected {} with {} (attended transfer)",
                            callee.name(),
                            chan.name(),
                            party.name()
                        );
                        callee.hangup(Cause::NORMAL_CLEARING);
                        *callee = *party;
                    }
                    (Side::Caller, Some(Handover::Party(party))) => {
                        crate::verbose!(
                            3,
                            "{} connected {} with {} (attended transfer)",
                            chan.name(),
                            callee.name(),
                            party.name()
                        );
                        return Connected::Elsewhere(party);
                    }
                    (Side::Caller, Some(Handover::Want(give))) => {
                        crate::verbose!(
                            3,
                            "{} sent {} to the bridge of {replaced} (attended transfer)",
                            chan.name(),
                            callee.name()
                        );
                        return Connected::GiveAway(give);
                    }
                    _ => crate::tracing::warn!(
                        "Attended transfer by {} failed: {replaced} is not in a bridge that can take part",
                        match side {
                            Side::Caller => chan.name(),
                            Side::Callee => callee.name(),
                        }
                    ),
                }
            }
            BridgeEnd::Replaced(Side::Caller, reply) => return Connected::HandOver(reply),
            BridgeEnd::Replaced(Side::Callee, reply) => {
                // The caller cannot leave this task: the transferee comes to this bridge.
                let (give, take) = tokio::sync::oneshot::channel();
                if reply.send(Handover::Want(give)).is_ok() {
                    if let Ok(Ok(party)) = tokio::time::timeout(HANDOVER_WAIT, take).await {
                        crate::verbose!(3, "{} replaced {} (attended transfer)", party.name(), callee.name());
                        callee.hangup(Cause::NORMAL_CLEARING);
                        *callee = party;
                    }
                }
            }
            end => return Connected::End(end),
        }
    }
}

/// Bridges two parties an attended transfer connected, on a task of their own (neither runs a
/// dialplan); they hang up when it ends, except one transferred on (to another bridge, or
/// blind to an extension of the transfer context, where a dialplan starts for it).
pub fn bridge_on_own_task(mut a: Channel, mut b: Channel, config: BridgeConfig) {
    tokio::spawn(async move {
        match connect(&mut a, &mut b, &config).await {
            Connected::Elsewhere(party) => bridge_on_own_task(*party, b, config),
            Connected::HandOver(reply) => {
                let _ = reply.send(Handover::Party(Box::new(b)));
            }
            Connected::GiveAway(give) => {
                let _ = give.send(b);
            }
            Connected::End(BridgeEnd::Transfer(side, exten)) => {
                let mut transferred = if side == Side::Caller { b } else { a };
                transferred.context = config.transfer_context.clone();
                transferred.exten = exten;
                transferred.priority = 1;
                let core = transferred.core().clone();
                core.start_pbx(transferred);
            }
            Connected::End(_) => {}
        }
    });
}

/// A new call that replaces one of ours (an INVITE with `Replaces`, RFC 3891): `chan` takes
/// the place of the channel named in its bridge — it is bridged with that channel's party,
/// here or in that bridge — and the replaced channel leaves. `Err(chan)` when the replaced channel
/// is not in a bridge that can take part (then `chan` is left as it was).
pub async fn take_place(chan: Channel, replaced: &str) -> Result<(), Channel> {
    let core = chan.core().clone();
    let (reply, answer) = crate::frame::Reply::<Handover>::new();
    if core.channels().send_frame(replaced, Frame::Replace(reply)) == 0 {
        return Err(chan);
    }
    let config = BridgeConfig::default();
    match tokio::time::timeout(HANDOVER_WAIT, answer).await.ok().and_then(Result::ok) {
        Some(Handover::Party(party)) => {
            crate::verbose!(3, "{} replaced {replaced}, with {}", chan.name(), party.name());
            bridge_on_own_task(chan, *party, config);
            Ok(())
        }
        Some(Handover::Want(give)) => {
            crate::verbose!(3, "{} replaced {replaced}", chan.name());
            give.send(chan)
        }
        None => Err(chan),
    }
}
