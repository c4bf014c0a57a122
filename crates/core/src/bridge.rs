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
use crate::frame::{Cause, Control, Frame};
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
    // Transfer keys must be heard: then the media may not bypass us (Asterisk: no remote bridge
    // while DTMF is wanted).
    let may_redirect = !config.caller_transfer && !config.callee_transfer;
    let mut native = core.native_bridge(caller, callee, may_redirect);
    let technology = if native.is_some() { "native_rtp" } else { "simple_bridge" };
    let entry = core.bridges().add(|id| BridgeSummary {
        id,
        channels: vec![caller.name().to_owned(), callee.name().to_owned()],
        technology,
    });
    crate::verbose!(3, "Channel {} joined '{technology}' bridge with {}", caller.name(), callee.name());
    announce_bridge_start(&entry.id, technology, caller, callee);
    caller.cdr_bridge_enter(callee.name());
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
                        native = core.native_bridge(from, to, may_redirect);
                    }
                }
                None => to.indicate(control),
            },
            // Call progress after the answer means nothing to the other side.
            Frame::Control(_) => {}
            Frame::Transfer(exten) => break BridgeEnd::Transfer(side, exten),
            Frame::AttendedTransfer(channel) => break BridgeEnd::AttendedTransfer(side, channel),
            Frame::Replace(reply) => break BridgeEnd::Replaced(side, reply),
            Frame::Hangup(cause) => break BridgeEnd::HungUp(side, cause),
            // Taken by the channel's own read.
            Frame::SetVar(..) | Frame::Redirect(_) | Frame::GetVar(..) => {}
        }
    };
    drop(native);
    announce_bridge_end(&entry.id, technology, caller, callee);
    end
}
