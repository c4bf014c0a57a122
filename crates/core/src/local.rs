//! Local channels (Asterisk's core_local): `Local/exten@context` is a pair of channels, `;1`
//! and `;2`, whose driver ends are wired to each other — what one writes, the other reads;
//! answering, progress and hangup cross over as control frames. `;2` runs the dialplan at
//! `exten@context`; `;1` is the originator's end. It is also how the dialplan is tested end to
//! end without SIP (`channel originate Local/100@default application Wait 5`).

use std::sync::Arc;

use crate::channel::{Channel, ChannelDriver, DriverCommand};
use crate::frame::{Cause, Control, Frame};
use crate::tokio;
use crate::Core;

/// What one side's command becomes on the other side.
fn crossover(command: DriverCommand) -> Option<(Frame, bool)> {
    Some(match command {
        // The ;2 half runs its dialplan from the start.
        DriverCommand::Call(_) => return None,
        // A pair has no jitter buffer of its own.
        DriverCommand::Bridged(_) => return None,
        DriverCommand::Answer => (Frame::Control(Control::Answer), false),
        DriverCommand::Indicate(c) => (Frame::Control(c), false),
        DriverCommand::Write(f) => (f, false),
        DriverCommand::SendDigit(d) => (Frame::DtmfEnd { digit: d, duration_ms: 100 }, false),
        DriverCommand::Hangup(cause) => (Frame::Hangup(cause), true),
    })
}

/// Wires two driver ends together until either side hangs up (or both channels are gone).
async fn wire(mut one: ChannelDriver, mut two: ChannelDriver) {
    loop {
        let (frame, to_two, last) = tokio::select! {
            command = one.commands.recv() => match command {
                Some(c) => { let Some((f, last)) = crossover(c) else { continue }; (f, true, last) }
                None => (Frame::Hangup(Cause::NORMAL_CLEARING), true, true),
            },
            command = two.commands.recv() => match command {
                Some(c) => { let Some((f, last)) = crossover(c) else { continue }; (f, false, last) }
                None => (Frame::Hangup(Cause::NORMAL_CLEARING), false, true),
            },
        };
        let target = if to_two { &two.frames } else { &one.frames };
        // Media is dropped rather than queued without bound when the other side lags.
        let _ = match &frame {
            Frame::Voice { .. } => target.try_send(frame).map_err(|_| ()),
            _ => target.send(frame).await.map_err(|_| ()),
        };
        if last {
            return;
        }
    }
}

/// Makes `Local/<exten>@<context>`: returns (`;1`, `;2`) with `;2` placed at exten@context.
/// Must be called inside the runtime.
pub fn local_pair(core: &Arc<Core>, exten: &str, context: &str) -> (Channel, Channel) {
    let peer = format!("{exten}@{context}");
    let (mut one, one_driver) = Channel::new(core, "Local", &peer, true);
    let (mut two, two_driver) = Channel::new(core, "Local", &peer, false);
    one.rename_local(1);
    two.rename_local(2);
    two.context = context.to_owned();
    two.exten = exten.to_owned();
    two.priority = 1;
    tokio::spawn(wire(one_driver, two_driver));
    (one, two)
}

/// Whether the ;2 half has somewhere to go: as Asterisk's `local_call`, a Local channel to an
/// extension that does not exist is refused (with its notice) rather than started.
pub fn destination_exists(core: &Core, two: &Channel) -> bool {
    let callerid = (!two.caller.number.is_empty()).then(|| two.caller.number.clone());
    let exists = core.extension_exists(&two.context, &two.exten, callerid.as_deref()) == crate::Extent::Exists;
    if !exists {
        crate::tracing::info!("No such extension/context {}@{} while calling Local channel", two.exten, two.context);
    }
    exists
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Read;
    use std::time::Duration;

    #[test]
    fn what_one_side_does_the_other_reads() {
        let core = Core::for_tests();
        core.runtime().block_on(async {
            let (mut one, mut two) = local_pair(&core, "100", "default");
            assert!(one.name().ends_with(";1") && two.name().ends_with(";2"), "{} {}", one.name(), two.name());
            assert_eq!((two.exten.as_str(), two.context.as_str()), ("100", "default"));
            two.answer();
            assert_eq!(one.read().await, Some(Frame::Control(Control::Answer)));
            one.write(Frame::Voice { format: "ulaw", samples: 160, data: vec![0xff; 160] });
            assert!(matches!(two.read().await, Some(Frame::Voice { samples: 160, .. })));
            one.send_digit('5');
            assert_eq!(two.read().await, Some(Frame::DtmfEnd { digit: '5', duration_ms: 100 }));
            two.hangup(Cause::USER_BUSY);
            assert_eq!(one.read_timeout(Duration::from_secs(5)).await, Read::HungUp);
            assert_eq!(one.hangup_cause(), Some(Cause::USER_BUSY));
        });
    }
}
