//! app_cdr: `NoCDR()` and `ResetCDR([options])`, as Asterisk's app_cdr.
//!
//! `NoCDR` is `Set(CDR_PROP(disable)=1)`: the channel's record is not logged. `ResetCDR` starts
//! the record again now (answered now when the channel is up) and clears its variables, unless
//! option `v` keeps them.

use starling_core::apps::{App, AppFuture, AppResult};
use starling_core::channel::{Channel, ChannelState};
use starling_core::{LoadError, Module, ModuleContext};

fn no_cdr<'a>(chan: &'a mut Channel, _: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        for cdr in chan.cdrs_to_write() {
            cdr.disabled = true;
        }
        AppResult::Continue
    })
}

fn reset_cdr<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let up = chan.state() == ChannelState::Up;
        if let Some(cdr) = chan.cdr_mut() {
            cdr.reset(up, data.contains('v'));
        }
        AppResult::Continue
    })
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    Ok(Box::new(ctx.register_apps(vec![
        App::new(
            "NoCDR",
            "Tell Starling to not maintain a CDR for this channel.",
            "NoCDR(): the channel's CDR is not logged (as Set(CDR_PROP(disable)=1)).",
            no_cdr,
        ),
        App::new(
            "ResetCDR",
            "Resets the Call Data Record.",
            "ResetCDR([options]): the start time becomes now, the answer time too when the channel is up, and \
             the CDR's variables are cleared unless option v is given.",
            reset_cdr,
        ),
    ])?))
}

starling_core::module! {
    description: "Tell Starling to not maintain a CDR for the current call",
    support_level: Core,
    load: load,
}
