//! func_timeout: `TIMEOUT(absolute)`, as Asterisk's func_timeout — read, the seconds left (0
//! when none is set); written, a timeout in seconds from now (`0` or empty clears it). When it
//! strikes, the PBX loop goes to the `T` extension, or hangs up without one. The `digit` and
//! `response` timeouts are not configurable yet (WaitExten, Background and Read use Asterisk's
//! defaults or their own arguments), so reading or setting them is an error saying so.

use std::time::Duration;

use starling_core::apps::Function;
use starling_core::channel::Channel;
use starling_core::{LoadError, Module, ModuleContext};

fn read(chan: &mut Channel, item: &str) -> Result<String, String> {
    match item.trim().to_ascii_lowercase().as_str() {
        "absolute" | "a" => {
            let left = chan.absolute_timeout_left();
            Ok(if left.is_zero() { "0".to_owned() } else { format!("{:.3}", left.as_secs_f64()) })
        }
        "digit" | "d" | "response" | "r" => {
            Err(format!("TIMEOUT({item}) is not supported yet; only TIMEOUT(absolute)"))
        }
        other => Err(format!("TIMEOUT: unknown timeout type '{other}'")),
    }
}

fn write(chan: &mut Channel, item: &str, value: &str) -> Result<(), String> {
    match item.trim().to_ascii_lowercase().as_str() {
        "absolute" | "a" => {
            let value = value.trim();
            let seconds = if value.is_empty() {
                0.0
            } else {
                value.parse::<f64>().map_err(|_| format!("TIMEOUT(absolute): '{value}' is not a number of seconds"))?
            };
            if seconds > 0.0 && seconds.is_finite() {
                starling_core::verbose!(3, "Channel will hangup at {seconds} seconds from now.");
                chan.set_absolute_timeout(Some(Duration::from_secs_f64(seconds.min(31_536_000.0))));
            } else {
                starling_core::verbose!(3, "Channel hangup cancelled.");
                chan.set_absolute_timeout(None);
            }
            Ok(())
        }
        "digit" | "d" | "response" | "r" => {
            Err(format!("TIMEOUT({item}) is not supported yet; only TIMEOUT(absolute)"))
        }
        other => Err(format!("TIMEOUT: unknown timeout type '{other}'")),
    }
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let functions = vec![Function {
        name: "TIMEOUT",
        synopsis: "Gets or sets timeouts on the channel.",
        read: Some(read),
        write: Some(write),
        uses: None,
    }];
    Ok(Box::new(ctx.register_functions(functions)?))
}

starling_core::module! {
    description: "Channel timeout dialplan functions",
    support_level: Core,
    load: load,
}
