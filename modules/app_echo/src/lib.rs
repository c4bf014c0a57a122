//! app_echo: `Echo()`, as Asterisk's app_echo: every voice frame and DTMF digit the caller
//! sends comes straight back, until the caller presses `#` (echoed too; the dialplan goes on)
//! or hangs up. The quickest test of a phone's audio
//! path (and of the PBX's: the frames go through the channel, not a shortcut in the driver).

use starling_core::apps::{App, AppFuture, AppResult};
use starling_core::channel::Channel;
use starling_core::frame::Frame;
use starling_core::{LoadError, Module, ModuleContext};

fn echo<'a>(chan: &'a mut Channel, _data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        while let Some(frame) = chan.read().await {
            match frame {
                Frame::Voice { .. } => chan.write(frame),
                Frame::DtmfEnd { digit, .. } => {
                    chan.send_digit(digit);
                    if digit == '#' {
                        return AppResult::Continue;
                    }
                }
                _ => {}
            }
        }
        AppResult::Hangup
    })
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let app = App {
        name: "Echo",
        synopsis: "Echo media, DTMF back to the calling party",
        description: "Echo(): echoes back any voice frame and DTMF digit read from the calling channel, until '#' is pressed (the dialplan goes on) or the caller hangs up.",
        exec: echo,
        uses: None,
    };
    Ok(Box::new(ctx.register_apps(vec![app])?))
}

starling_core::module! {
    description: "Simple Echo Application",
    support_level: Core,
    load: load,
}
