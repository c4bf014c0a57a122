//! Channel technologies (Asterisk's `ast_channel_tech`): what `Dial(SIP/bob)` and
//! `Dial(Local/100@default)` resolve to. A technology registers itself by name; the core asks
//! it for outbound channels ([`Tech::request`]) and, when two of its channels are bridged,
//! whether it can carry their media itself ([`Tech::native_bridge`]).

use std::any::Any;
use std::sync::Arc;

use crate::channel::Channel;
use crate::frame::{CallerId, Cause};
use crate::Core;

/// Who asks for an outbound channel (Asterisk's requestor): what the new channel inherits.
#[derive(Clone, Debug, Default)]
pub struct Requestor {
    /// The caller ID the outbound call presents.
    pub caller: CallerId,
    /// The requesting channel's audio format, the one to prefer when several fit.
    pub format: &'static str,
    pub accountcode: String,
    pub language: String,
    /// `_VAR`/`__VAR` variables carried over (as [`Channel::inheritable_vars`] gives them).
    pub variables: Vec<(String, String)>,
    /// The call's linkedid (the first leg's uniqueid), shared by every leg it dials.
    pub linkedid: String,
}

impl Requestor {
    /// What `channel` passes on to a channel it dials.
    pub fn from_channel(channel: &Channel) -> Requestor {
        Requestor {
            caller: channel.caller.clone(),
            format: channel.native_format,
            accountcode: channel.accountcode.clone(),
            language: channel.language.clone(),
            variables: channel.inheritable_vars(),
            linkedid: channel.linkedid.clone(),
        }
    }

    /// Applies what the outbound `channel` inherits.
    pub fn apply(&self, channel: &mut Channel) {
        channel.caller = self.caller.clone();
        channel.connected = self.caller.clone();
        if !self.linkedid.is_empty() {
            channel.linkedid = self.linkedid.clone();
        }
        if !self.accountcode.is_empty() {
            channel.accountcode = self.accountcode.clone();
        }
        if !self.language.is_empty() {
            channel.language = self.language.clone();
        }
        for (name, value) in &self.variables {
            channel.set_var(name, value);
        }
    }
}

/// A native bridge in progress: media flows between the two drivers directly until it drops.
pub type NativeBridge = Box<dyn Any + Send>;

/// A channel technology.
pub trait Tech: Send + Sync {
    /// `SIP`, `Local`: the part before the `/` in a dial string.
    fn name(&self) -> &'static str;
    /// One line for `core show channeltypes`.
    fn description(&self) -> &'static str;
    /// Makes an outbound channel to `data` (`bob`, `100@default`), not yet dialled: the owner
    /// calls [`Channel::call`] to start the call. The error is the cause Dial reports
    /// (`CHANUNAVAIL` for an unknown peer, `BUSY` at its call limit).
    fn request(&self, core: &Arc<Core>, data: &str, requestor: &Requestor) -> Result<Channel, Cause>;
    /// Starts carrying the media of two of this technology's channels without the core
    /// (Asterisk's native RTP bridge); `None` when it cannot (different codecs, ...).
    /// `may_redirect`: the media may bypass us entirely (direct media), because the bridge needs
    /// no key presses from it (no transfer keys).
    fn native_bridge(&self, _a: &Channel, _b: &Channel, _may_redirect: bool) -> Option<NativeBridge> {
        None
    }
    /// Whether this technology's far ends take jitter themselves (Asterisk's
    /// `AST_CHAN_TP_WANTSJITTER`: a SIP phone has its own jitter buffer), so that a channel
    /// bridged to one of its channels need not dejitter what it passes on (unless forced).
    fn wants_jitter(&self) -> bool {
        false
    }
    /// The state of the device `data` names (Asterisk's `devicestate` callback); `UNKNOWN`
    /// for a technology that keeps none.
    fn devicestate(&self, _data: &str) -> crate::devicestate::DeviceState {
        crate::devicestate::DeviceState::Unknown
    }
    /// Whether the device's channels make its state (in use, ringing, on hold) when
    /// [`Tech::devicestate`] says it is idle (chan_sip's `callcounter`); true unless told.
    fn counts_calls(&self, _data: &str) -> bool {
        true
    }
    /// Whether a held channel makes its device `ONHOLD` (chan_sip's `notifyhold`); otherwise a
    /// held call is in use. True unless told.
    fn reports_hold(&self, _data: &str) -> bool {
        true
    }
}

impl Core {
    /// Finds the technology of a dial string (`SIP/bob` → `SIP`, with `bob`) and requests a
    /// channel from it. An unknown technology is `CHANUNAVAIL`.
    pub fn request_channel(self: &Arc<Self>, target: &str, requestor: &Requestor) -> Result<Channel, Cause> {
        let (tech, data) = target.split_once('/').ok_or(Cause::REQUESTED_CHAN_UNAVAIL)?;
        let tech = self.techs().get(tech).ok_or_else(|| {
            crate::tracing::warn!("No such channel technology '{tech}' (dialling '{target}')");
            Cause::REQUESTED_CHAN_UNAVAIL
        })?;
        tech.request(self, data, requestor)
    }

    /// Whether `channel`'s technology takes jitter itself ([`Tech::wants_jitter`]).
    pub fn wants_jitter(&self, channel: &Channel) -> bool {
        let tech = channel.name().split_once('/').map_or("", |(t, _)| t);
        self.techs().get(tech).is_some_and(|t| t.wants_jitter())
    }

    /// Asks the technology of two channels to bridge their media natively; `None` when they
    /// are of different technologies or it cannot.
    pub fn native_bridge(&self, a: &Channel, b: &Channel, may_redirect: bool) -> Option<NativeBridge> {
        let tech_of = |c: &Channel| c.name().split_once('/').map(|(t, _)| t.to_owned());
        let tech = tech_of(a)?;
        if Some(&tech) != tech_of(b).as_ref() {
            return None;
        }
        self.techs().get(&tech)?.native_bridge(a, b, may_redirect)
    }
}

/// The core's own technology: `Local/exten@context` (see [`crate::local`]).
pub(crate) struct LocalTech;

impl Tech for LocalTech {
    fn name(&self) -> &'static str {
        "Local"
    }
    fn description(&self) -> &'static str {
        "Local Proxy Channel Driver"
    }
    fn request(&self, core: &Arc<Core>, data: &str, requestor: &Requestor) -> Result<Channel, Cause> {
        // `/n` (no optimisation) is accepted and changes nothing: Local channels here never
        // optimise themselves away.
        let data = data.strip_suffix("/n").unwrap_or(data);
        let (exten, context) = data.split_once('@').unwrap_or((data, "default"));
        if exten.is_empty() {
            return Err(Cause::REQUESTED_CHAN_UNAVAIL);
        }
        let (mut one, mut two) = crate::local::local_pair(core, exten, context);
        requestor.apply(&mut one);
        requestor.apply(&mut two);
        if !crate::local::destination_exists(core, &two) {
            return Err(Cause::REQUESTED_CHAN_UNAVAIL);
        }
        // Asterisk starts the ;2 half's dialplan at call time; here it starts at once, and
        // its first frames wait in the pair until the ;1 half is read.
        core.start_pbx(two);
        Ok(one)
    }
}
