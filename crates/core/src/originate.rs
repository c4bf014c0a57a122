//! Originating a call (Asterisk's `ast_pbx_outgoing_exten`/`_app`): dial a channel, and once it
//! answers run an application or the dialplan on it. The CLI's `channel originate` and the
//! manager's `Originate` both come here.

use std::sync::Arc;
use std::time::Duration;

use crate::apps::App;
use crate::channel::{publish_dial, ChannelState, Read};
use crate::frame::{CallerId, Cause, Control, Frame};
use crate::tech::Requestor;
use crate::Core;

/// Where an answered originated channel goes.
#[derive(Clone)]
pub enum Destination {
    Application { app: App, data: String },
    Extension { context: String, exten: String, priority: u32 },
}

/// What to originate.
#[derive(Clone)]
pub struct Originate {
    /// `SIP/bob`, `Local/600@default`...
    pub target: String,
    pub destination: Destination,
    /// How long to wait for the answer.
    pub timeout: Duration,
    pub caller: CallerId,
    pub variables: Vec<(String, String)>,
    pub account: String,
}

/// The originated channel, answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Originated {
    pub channel: String,
    pub uniqueid: String,
}

/// Why an originate failed: Asterisk's `Reason` (0 no channel, 1 hung up, 3 rang without an
/// answer, 5 busy, 8 congestion), with the channel if one was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginateFailure {
    pub reason: u8,
    pub channel: Option<Originated>,
}

impl Core {
    /// Dials `request.target` and waits (at most `timeout`) for the answer; then the channel
    /// runs the destination on a task of its own and this returns. The channel is the first
    /// party of its call (it has a CDR), and the manager sees DialBegin/DialEnd for it.
    pub async fn originate(self: &Arc<Self>, request: Originate) -> Result<Originated, OriginateFailure> {
        let requestor = Requestor {
            caller: request.caller.clone(),
            accountcode: request.account.clone(),
            variables: request.variables.clone(),
            ..Default::default()
        };
        let mut channel = self.request_channel(&request.target, &requestor).map_err(|cause| {
            crate::verbose!(2, "Unable to request channel {}: {}", request.target, cause.name());
            OriginateFailure { reason: 0, channel: None }
        })?;
        let originated = Originated { channel: channel.name().to_owned(), uniqueid: channel.uniqueid().to_owned() };
        channel.enable_cdr();
        let dialstring = request.target.split_once('/').map_or(request.target.as_str(), |(_, d)| d).to_owned();
        publish_dial(None, &mut channel, "DialBegin", ("DialString", &dialstring));
        channel.call();
        let deadline = crate::tokio::time::Instant::now() + request.timeout;
        let mut reason = 0;
        loop {
            let left = deadline.saturating_duration_since(crate::tokio::time::Instant::now());
            match channel.read_timeout(left).await {
                Read::Frame(Frame::Control(Control::Answer)) => break,
                Read::Frame(Frame::Control(Control::Ringing)) => reason = 3,
                Read::Frame(Frame::Control(Control::Busy)) => reason = 5,
                Read::Frame(Frame::Control(Control::Congestion)) => reason = 8,
                Read::Frame(_) if reason < 5 => {}
                read => {
                    if reason == 0 && read == Read::HungUp {
                        reason = 1;
                    }
                    let status = match (reason, channel.hangup_cause()) {
                        (5, _) | (_, Some(Cause::USER_BUSY)) => "BUSY",
                        (8, _) | (_, Some(Cause::CONGESTION)) => "CONGESTION",
                        (_, _) if read == Read::Timeout => "NOANSWER",
                        _ => "CHANUNAVAIL",
                    };
                    crate::verbose!(2, "Originate of {} failed: {status}", channel.name());
                    publish_dial(None, &mut channel, "DialEnd", ("DialStatus", status));
                    channel.hangup(Cause::NO_ANSWER);
                    return Err(OriginateFailure { reason, channel: Some(originated) });
                }
            }
        }
        channel.set_state(ChannelState::Up);
        publish_dial(None, &mut channel, "DialEnd", ("DialStatus", "ANSWER"));
        match request.destination {
            Destination::Application { app, data } => {
                crate::tokio::spawn(async move {
                    channel.set_application(app.name, &data);
                    app.run(&mut channel, &data).await;
                    channel.hangup(Cause::NORMAL_CLEARING);
                });
            }
            Destination::Extension { context, exten, priority } => {
                channel.context = context;
                channel.exten = exten;
                channel.priority = priority;
                self.start_pbx(channel);
            }
        }
        Ok(originated)
    }
}
