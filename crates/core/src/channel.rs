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
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    channels: BTreeMap<u64, ChannelSummary>,
}

/// Every live channel of the process.
#[derive(Clone, Default)]
pub struct Channels {
    inner: Arc<Mutex<Inner>>,
    processed: Arc<AtomicU64>,
}

impl Channels {
    /// Adds a channel; it stays listed until the handle drops. `is_call` marks the
    /// channel that started a call (an inbound leg, an originate), as Asterisk counts calls.
    pub fn register(&self, name: impl Into<String>, state: ChannelState, is_call: bool) -> ChannelHandle {
        let summary =
            ChannelSummary { name: name.into(), location: String::new(), state, application: String::new(), is_call };
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.channels.insert(id, summary);
        if is_call {
            self.processed.fetch_add(1, Ordering::Relaxed);
        }
        ChannelHandle { channels: self.clone(), id }
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
    id: u64,
}

impl ChannelHandle {
    /// Changes what `core show channels` shows for this channel.
    pub fn update(&self, f: impl FnOnce(&mut ChannelSummary)) {
        if let Some(summary) = self.channels.lock().channels.get_mut(&self.id) {
            f(summary)
        }
    }
}

impl Drop for ChannelHandle {
    fn drop(&mut self) {
        self.channels.lock().channels.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
