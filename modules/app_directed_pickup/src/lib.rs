//! app_directed_pickup: `Pickup()` and `PickupChan()`, as Asterisk's app_directed_pickup. They
//! run on the picker's own task while the dialplan reaches them (step 2 of the call flow) and
//! answer a call that rings another device (step 3's outbound leg, while Dial rings it): the
//! caller is then bridged with the picker by the Dial that rang (see [`starling_core::pickup`]).
//!
//! A pickup that succeeds ends the picker's dialplan (what is left on its task is a zombie, as
//! in Asterisk); one that finds nothing lets it go on.

use starling_core::apps::{App, AppFuture, AppResult};
use starling_core::channel::Channel;
use starling_core::pickup::{self, Target};
use starling_core::{tracing, LoadError, Module, ModuleContext};

/// Claims and picks up the first channel `target` finds; whether it did.
async fn pickup_target(chan: &mut Channel, target: &Target) -> bool {
    let core = chan.core().clone();
    let groups = chan.groups().clone();
    let Some(found) = pickup::claim(&core, chan.name(), &groups, target) else { return false };
    tracing::info!("{found} pickup by {}", chan.name());
    pickup::do_pickup(chan, &found).await
}

/// `Pickup([exten[@context][&exten2[@context2]...]])`: without arguments a call in the
/// picker's pickup groups; `exten@PICKUPMARK` a channel whose `PICKUPMARK` is `exten`; else
/// the ringing channel dialled from `exten` in `context` (the picker's context by default).
fn pickup_exec<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        if data.trim().is_empty() {
            return if pickup::pickup_call(chan).await { AppResult::Hangup } else { AppResult::Continue };
        }
        for spec in data.split('&').map(str::trim).filter(|s| !s.is_empty()) {
            let (exten, context) = match spec.split_once('@') {
                Some((exten, context)) if !context.is_empty() => (exten, context.to_owned()),
                Some((exten, _)) => (exten, chan.context.clone()),
                None => (spec, chan.context.clone()),
            };
            let target = if context == "PICKUPMARK" {
                Target::Mark(exten.to_owned())
            } else {
                Target::Exten { exten: exten.to_owned(), context: context.clone() }
            };
            if pickup_target(chan, &target).await {
                // Picked up: this channel went on elsewhere; the dialplan here ends.
                return AppResult::Hangup;
            }
            tracing::info!("No target channel found for {exten}@{context}.");
        }
        AppResult::Continue
    })
}

/// `PickupChan(channel[&channel2...][,p])`: a ringing channel by name (`SIP/bob` finds
/// `SIP/bob-00000001`) or uniqueid; with `p` the names are prefixes.
fn pickupchan_exec<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let (channels, options) = data.split_once(',').unwrap_or((data, ""));
        if channels.trim().is_empty() {
            tracing::warn!("PickupChan requires an argument (channel)!");
            return AppResult::Continue;
        }
        let partial = options.contains('p');
        for name in channels.split('&').map(str::trim).filter(|s| !s.is_empty()) {
            let target = if partial { Target::Prefix(name.to_owned()) } else { Target::Channel(name.to_owned()) };
            if pickup_target(chan, &target).await {
                return AppResult::Hangup;
            }
            tracing::info!("No target channel found for {name}.");
        }
        AppResult::Continue
    })
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let pickup = App {
        name: "Pickup",
        synopsis: "Directed extension call pickup.",
        description: "Pickup([extension[@context][&extension2@context2...]]): picks up a ringing channel. \
Without an extension, a channel whose callgroup meets this channel's pickupgroup; with extension@PICKUPMARK, \
a channel whose PICKUPMARK variable is extension; else the channel dialled from that extension in that \
context (this channel's context if none is given). A pickup ends this dialplan; finding nothing goes on.",
        exec: pickup_exec,
        uses: None,
    };
    let pickupchan = App {
        name: "PickupChan",
        synopsis: "Pickup a ringing channel.",
        description: "PickupChan(channel[&channel2...][,options]): picks up the named channel if it rings \
(SIP/bob finds SIP/bob-00000000; a uniqueid works too). Option p: the names are prefixes (SIP/bob also \
finds SIP/bobby-00000000). A pickup ends this dialplan; finding nothing goes on.",
        exec: pickupchan_exec,
        uses: None,
    };
    Ok(Box::new(ctx.register_apps(vec![pickup, pickupchan])?))
}

starling_core::module! {
    description: "Directed Call Pickup Application",
    support_level: Core,
    load: load,
}
