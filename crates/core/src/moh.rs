//! Music on hold, as Asterisk's `ast_moh_start`/`ast_moh_stop`: a channel asks for a class and
//! whoever plays music on hold (res_musiconhold registers itself here) starts it as the
//! channel's generator. Without a player, or without the class, the channel hears nothing and
//! one warning says why.

use crate::channel::Channel;

/// What plays music on hold.
pub trait MusicOnHold: Send + Sync {
    /// Starts `class` on `chan` as its generator (until stopped or replaced).
    fn start(&self, chan: &mut Channel, class: &str) -> Result<(), String>;
    /// The classes it knows, for `moh show classes`-style listings.
    fn classes(&self) -> Vec<String>;
}

/// The one name the player registers under.
pub const PLAYER: &str = "musiconhold";

/// Starts music on hold on `chan`: `class`, else the channel's `musicclass`, else `default`.
/// Whether it plays.
pub fn start(chan: &mut Channel, class: &str) -> bool {
    let class = match (class.trim(), chan.musicclass.as_str()) {
        ("", "") => "default".to_owned(),
        ("", own) => own.to_owned(),
        (asked, _) => asked.to_owned(),
    };
    let Some(player) = chan.core().moh().get(PLAYER) else {
        tracing::warn!(
            "Unable to start music on hold class '{class}' on {}: res_musiconhold is not loaded",
            chan.name()
        );
        return false;
    };
    match player.start(chan, &class) {
        Ok(()) => {
            crate::verbose!(3, "Started music on hold, class '{class}', on channel '{}'", chan.name());
            true
        }
        Err(why) => {
            tracing::warn!("Unable to start music on hold class '{class}' on {}: {why}", chan.name());
            false
        }
    }
}

/// Stops music on hold (the channel's generator).
pub fn stop(chan: &mut Channel) {
    chan.stop_generator();
    crate::verbose!(3, "Stopped music on hold on {}", chan.name());
}
