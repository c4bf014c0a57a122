//! func_timeout: `TIMEOUT(absolute|digit|response)`, as Asterisk's func_timeout (the first
//! letter is enough, in either case).
//!
//! - `absolute`: read, the seconds left (`0` when none is set); written, a timeout in seconds
//!   from now (`0` or empty clears it). When it strikes, the PBX loop goes to the `T`
//!   extension, or hangs up without one.
//! - `digit` (default 5 s): how long the caller has between two digits of an extension
//!   (WaitExten, Background, the PBX loop) and between Read's digits.
//! - `response` (default 10 s): how long WaitExten without an argument and Read wait for the
//!   first digit, and the PBX loop after the last priority when `autofallthrough=no`.
//!
//! Values are read with three decimals (`5.000`); a negative value counts as 0.

use std::time::Duration;

use starling_core::apps::Function;
use starling_core::channel::Channel;
use starling_core::{LoadError, Module, ModuleContext};

fn read(chan: &mut Channel, item: &str) -> Result<String, String> {
    match item.trim().chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a') => {
            let left = chan.absolute_timeout_left();
            Ok(if left.is_zero() { "0".to_owned() } else { format!("{:.3}", left.as_secs_f64()) })
        }
        Some('d') => Ok(format!("{:.3}", chan.timeouts.digit.as_secs_f64())),
        Some('r') => Ok(format!("{:.3}", chan.timeouts.response.as_secs_f64())),
        _ => Err(format!("TIMEOUT: unknown timeout type '{}'", item.trim())),
    }
}

/// Seconds as `TIMEOUT()` takes them: empty is 0, a negative number counts as 0.
fn seconds(item: &str, value: &str) -> Result<f64, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(0.0);
    }
    match value.parse::<f64>() {
        Ok(s) if s.is_finite() => Ok(s.clamp(0.0, 31_536_000.0)),
        _ => Err(format!("TIMEOUT({item}): '{value}' is not a number of seconds")),
    }
}

fn write(chan: &mut Channel, item: &str, value: &str) -> Result<(), String> {
    match item.trim().chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a') => {
            let seconds = seconds(item, value)?;
            if seconds > 0.0 {
                starling_core::verbose!(3, "Channel will hangup at {seconds} seconds from now.");
                chan.set_absolute_timeout(Some(Duration::from_secs_f64(seconds)));
            } else {
                starling_core::verbose!(3, "Channel hangup cancelled.");
                chan.set_absolute_timeout(None);
            }
            Ok(())
        }
        Some('d') => {
            chan.timeouts.digit = Duration::from_millis((seconds(item, value)? * 1000.0) as u64);
            starling_core::verbose!(3, "Digit timeout set to {:.3}", chan.timeouts.digit.as_secs_f64());
            Ok(())
        }
        Some('r') => {
            chan.timeouts.response = Duration::from_millis((seconds(item, value)? * 1000.0) as u64);
            starling_core::verbose!(3, "Response timeout set to {:.3}", chan.timeouts.response.as_secs_f64());
            Ok(())
        }
        _ => Err(format!("TIMEOUT: unknown timeout type '{}'", item.trim())),
    }
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let functions = vec![Function {
        name: "TIMEOUT",
        synopsis: "Gets or sets timeouts on the channel.",
        syntax: "TIMEOUT(timeouttype)",
        read: Some(read),
        write: Some(write),
        escalation: starling_core::apps::Escalation::None,
        uses: None,
    }];
    Ok(Box::new(ctx.register_functions(functions)?))
}

starling_core::module! {
    description: "Channel timeout dialplan functions",
    support_level: Core,
    load: load,
}
