//! Call pickup (Asterisk's `main/pickup.c`, with the groups of `main/channel.c`): a channel
//! (the picker) answers a call that rings another device, and the caller is bridged with the
//! picker instead.
//!
//! Each channel carries its device's groups ([`PickupGroups`], chan_sip's `callgroup`,
//! `pickupgroup`, `namedcallgroup`, `namedpickupgroup`). A ringing channel can be picked up
//! (Asterisk's `ast_can_pickup`) when no dialplan runs on it (it is a leg Dial is ringing), it
//! is `Ringing`, `Ring` or `Down`, and no other pickup has claimed it. The picker finds it by
//! group (the picker's pickup groups meet the target's call groups; the oldest wins), by the
//! extension it was dialled from (`Pickup(exten@context)`), by name (`PickupChan`) or by
//! `PICKUPMARK`, claims it in the channel list, then asks the task that rings it (Dial) to take
//! the picker in its place ([`crate::frame::Frame::Pickup`]): Dial answers with where to send
//! the picker, the picker answers its own call and moves there (Asterisk's `ast_do_pickup` and
//! its masquerade), and Dial hangs the rung leg up with `ANSWERED_ELSEWHERE` (chan_sip: CANCEL
//! with `Reason: SIP;cause=200;text="Call completed elsewhere"`) and bridges its caller with
//! the picker. What stays behind on the picker's task is a zombie (see [`Channel::zombie`]):
//! its dialplan ends without `h`.

use std::time::Duration;

use crate::channel::{Channel, ChannelState, ChannelSummary};
use crate::frame::{Frame, Reply};
use crate::tokio;

/// Where the task ringing a picked-up channel wants the picker sent ([`Frame::Pickup`]).
pub type PickupTake = tokio::sync::oneshot::Sender<Channel>;

/// How long a picker waits for the task ringing its target to answer.
const PICKUP_WAIT: Duration = Duration::from_secs(5);

/// A device's call and pickup groups (Asterisk's `ast_group_t` bit sets, 0–63, and its named
/// groups), as chan_sip gives them to each of the peer's channels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PickupGroups {
    pub callgroup: u64,
    pub pickupgroup: u64,
    /// Sorted, without duplicates.
    pub named_callgroups: Vec<String>,
    pub named_pickupgroups: Vec<String>,
}

impl PickupGroups {
    /// Whether a channel with these groups may pick up one with `target`'s (Asterisk's
    /// `find_channel_by_group`: numbered and named groups are matched independently).
    pub fn may_pick_up(&self, target: &PickupGroups) -> bool {
        self.pickupgroup & target.callgroup != 0
            || self.named_pickupgroups.iter().any(|g| target.named_callgroups.binary_search(g).is_ok())
    }
}

/// Reads a group list as Asterisk's `ast_get_group`: numbers and ranges separated by commas
/// (`1,3-5`), each 0–63. Asterisk logs and skips what it cannot read; Starling refuses it, so a
/// typo cannot leave a phone silently out of its group.
pub fn parse_group(value: &str) -> Result<u64, String> {
    let mut group = 0u64;
    for piece in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let number = |s: &str| s.trim().parse::<u32>().ok().filter(|n| *n <= 63);
        let (start, finish) = match piece.split_once('-') {
            Some((a, b)) => (number(a), number(b)),
            None => (number(piece), number(piece)),
        };
        match (start, finish) {
            (Some(start), Some(finish)) if start <= finish => {
                for x in start..=finish {
                    group |= 1 << x;
                }
            }
            _ => return Err(format!("'{piece}': expected group numbers 0-63 or ranges (1,3-5)")),
        }
    }
    Ok(group)
}

/// A group set as Asterisk's `ast_print_group` writes it: `1, 3, 4, 5` (empty for none).
pub fn print_group(group: u64) -> String {
    (0..64).filter(|i| group & (1 << i) != 0).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// Reads named groups as Asterisk's `ast_get_namedgroups`: names separated by commas, trimmed,
/// empty ones skipped, each once (sorted here).
pub fn parse_named_groups(value: &str) -> Vec<String> {
    let mut names: Vec<String> = value.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect();
    names.sort();
    names.dedup();
    names
}

/// Named groups as Asterisk's `ast_print_namedgroups` writes them: `a, b`.
pub fn print_named_groups(groups: &[String]) -> String {
    groups.join(", ")
}

/// Asterisk's `ast_can_pickup`: no dialplan runs on the channel, it rings (or is still down:
/// some phones send 183 and no 180), and no pickup has claimed it.
pub fn can_pickup(summary: &ChannelSummary) -> bool {
    !summary.pbx
        && !summary.pickup_active
        && matches!(summary.state, ChannelState::Ringing | ChannelState::Ring | ChannelState::Down)
}

/// Whom a picker looks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A channel whose call groups meet the picker's pickup groups (the oldest).
    Group,
    /// `Pickup(exten@context)`: a channel dialled from `exten` whose own context is `context`.
    Exten { exten: String, context: String },
    /// `Pickup(mark@PICKUPMARK)`: a channel whose `PICKUPMARK` variable is `mark`.
    Mark(String),
    /// `PickupChan(SIP/1002)`: a channel whose name starts with this (a `-` is added to a name
    /// without one, so `SIP/bob` finds `SIP/bob-00000001`, not `SIP/bobby-...`), or whose
    /// uniqueid it is.
    Channel(String),
    /// `PickupChan(SIP/b,p)`: a channel whose name starts with this, or whose uniqueid it is.
    Prefix(String),
}

impl Target {
    fn matches(&self, picker: &PickupGroups, target: &ChannelSummary) -> bool {
        match self {
            Target::Group => picker.may_pick_up(&target.groups),
            Target::Exten { exten, context } => {
                target.exten.eq_ignore_ascii_case(exten) && target.context.eq_ignore_ascii_case(context)
            }
            Target::Mark(mark) => target.variables.get("PICKUPMARK").is_some_and(|v| v.eq_ignore_ascii_case(mark)),
            Target::Channel(_) | Target::Prefix(_) => false,
        }
    }
}

/// Finds and claims the channel `picker` (named `picker_name`, with those groups) may pick up;
/// its name. The claim keeps other pickers off it until [`release`].
pub fn claim(core: &crate::Core, picker_name: &str, picker: &PickupGroups, target: &Target) -> Option<String> {
    let channels = core.channels();
    let starts =
        |name: &str, prefix: &str| name.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix));
    match target {
        Target::Channel(name) | Target::Prefix(name) => {
            let prefix = match target {
                Target::Channel(_) if !name.contains('-') => format!("{name}-"),
                _ => name.clone(),
            };
            channels
                .claim_pickup(|s| s.name != picker_name && starts(&s.name, &prefix))
                .or_else(|| channels.claim_pickup(|s| s.name != picker_name && s.uniqueid.eq_ignore_ascii_case(name)))
        }
        _ => channels.claim_pickup(|s| s.name != picker_name && target.matches(picker, s)),
    }
}

/// Gives up a claim that did not lead to a pickup.
pub fn release(core: &crate::Core, target: &str) {
    core.channels().release_pickup(target);
}

/// Picks up `target` (claimed with [`claim`]) with `chan` (Asterisk's `ast_do_pickup`): on
/// success `chan` answered and went to the task that rang `target`, and what is left in `chan`
/// is a zombie: the caller's dialplan must end (`Pickup()` returns hang up). `false` when the
/// target's task did not take it (it answered or went meanwhile); `chan` is then as it was,
/// and the claim is released.
pub async fn do_pickup(chan: &mut Channel, target: &str) -> bool {
    let core = chan.core().clone();
    let (reply, answer) = Reply::<PickupTake>::new();
    let take = if core.channels().send_frame(target, Frame::Pickup(reply)) > 0 {
        tokio::time::timeout(PICKUP_WAIT, answer).await.ok().and_then(Result::ok)
    } else {
        None
    };
    let Some(take) = take else {
        release(&core, target);
        return false;
    };
    crate::tracing::debug!("Call pickup on '{target}' by '{}'", chan.name());
    chan.answer();
    let target_summary = core.channels().find(target);
    let picker = chan.zombie();
    let picker_name = picker.name().to_owned();
    let snapshot = core.channels().find(&picker_name);
    match take.send(picker) {
        Ok(()) => {
            // The manager's `Pickup`: the picker's snapshot, then the target's (`Target...`).
            if let (Some(picker), Some(target), true) = (snapshot, target_summary, core.events().has_listeners()) {
                let mut event = picker.snapshot_fields(crate::events::Event::new("Pickup", "call"));
                let target = target.snapshot_fields(crate::events::Event::new("", "call"));
                event.fields.extend(target.fields.into_iter().map(|(k, v)| (format!("Target{k}"), v)));
                core.events().publish(event);
            }
            true
        }
        Err(picker) => {
            *chan = picker;
            release(&core, target);
            false
        }
    }
}

/// Picks up the channel named `target` for `chan` (an INVITE with Replaces naming a ringing
/// dialog): a leg Dial rings is claimed first (as [`claim`]); a ringing call that runs a
/// dialplan (an inbound call not answered yet, Dial ringing for it) is asked directly, and its
/// Dial answers it with `chan`. Whether it was picked up (see [`do_pickup`]).
pub async fn pickup_channel(chan: &mut Channel, target: &str) -> bool {
    let core = chan.core().clone();
    let Some(summary) = core.channels().find(target) else { return false };
    if summary.state == ChannelState::Up || summary.pickup_active {
        return false;
    }
    if !summary.pbx {
        let groups = chan.groups().clone();
        match claim(&core, chan.name(), &groups, &Target::Channel(target.to_owned())) {
            Some(claimed) if claimed == target => {}
            Some(other) => {
                release(&core, &other);
                return false;
            }
            None => return false,
        }
    }
    do_pickup(chan, target).await
}

/// Asterisk's `ast_pickup_call` (the `pickupexten` of features.conf, `Pickup()` without
/// arguments): picks up the oldest channel in `chan`'s pickup groups; whether it did.
pub async fn pickup_call(chan: &mut Channel) -> bool {
    let core = chan.core().clone();
    let groups = chan.groups().clone();
    let Some(target) = claim(&core, chan.name(), &groups, &Target::Group) else {
        crate::tracing::debug!("No call pickup possible... for {}", chan.name());
        return false;
    };
    crate::tracing::info!("Pickup {target} attempt by {}", chan.name());
    if do_pickup(chan, &target).await {
        return true;
    }
    crate::tracing::warn!("Pickup {target} failed by {}", chan.name());
    false
}

/// features.conf `[general]`'s pickup keys (Asterisk's `ast_features_pickup_config`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PickupConfig {
    /// `pickupexten` (default `*8`): dialling it picks up a call in the caller's pickup groups
    /// (chan_sip takes it even where the dialplan has no such extension).
    pub pickupexten: String,
    /// `pickupsound`: played to both parties as a pickup connects them (`BRIDGE_PLAY_SOUND`).
    pub pickupsound: String,
    /// `pickupfailsound`: played to the picker when there is nothing to pick up.
    pub pickupfailsound: String,
}

impl Default for PickupConfig {
    fn default() -> PickupConfig {
        PickupConfig { pickupexten: "*8".into(), pickupsound: String::new(), pickupfailsound: String::new() }
    }
}

impl PickupConfig {
    /// Reads features.conf's `[general]`; its other keys and sections (the feature map,
    /// transfers, parking) are Asterisk's and not acted on here.
    pub fn from_config(config: &crate::config::Config) -> PickupConfig {
        let mut pickup = PickupConfig::default();
        if let Some(general) = config.section("general") {
            for var in &general.variables {
                match var.name.to_ascii_lowercase().as_str() {
                    "pickupexten" => var.value.trim().clone_into(&mut pickup.pickupexten),
                    "pickupsound" => var.value.trim().clone_into(&mut pickup.pickupsound),
                    "pickupfailsound" => var.value.trim().clone_into(&mut pickup.pickupfailsound),
                    _ => {}
                }
            }
        }
        pickup
    }
}

/// features.conf, as far as Starling acts on it (the pickup keys).
#[derive(Default)]
pub struct Features {
    pickup: std::sync::RwLock<PickupConfig>,
}

impl Features {
    /// The pickup keys in force.
    pub fn pickup(&self) -> PickupConfig {
        self.pickup.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Reads `features.conf` from `etcdir` (a missing file means the defaults); on an error the
    /// settings in force stay.
    pub fn load(&self, etcdir: &std::path::Path) -> Result<(), crate::config::ConfigErrors> {
        let path = etcdir.join("features.conf");
        let pickup = if path.exists() {
            PickupConfig::from_config(&crate::config::Config::load(&path)?)
        } else {
            PickupConfig::default()
        };
        *self.pickup.write().unwrap_or_else(|p| p.into_inner()) = pickup;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_conf_pickup_keys() {
        let read =
            |text: &str| PickupConfig::from_config(&crate::config::Config::parse_str("features.conf", text).unwrap());
        assert_eq!(read("").pickupexten, "*8");
        let conf =
            read("[general]\npickupexten = #9\npickupsound=beep\ntransferdigittimeout=3\n[featuremap]\nblindxfer=#1\n");
        assert_eq!((conf.pickupexten.as_str(), conf.pickupsound.as_str()), ("#9", "beep"));
    }

    #[test]
    fn groups_are_read_and_printed_as_asterisk_does() {
        assert_eq!(parse_group("1,3-5"), Ok(0b111010));
        assert_eq!(print_group(0b111010), "1, 3, 4, 5");
        assert_eq!(parse_group(""), Ok(0));
        assert_eq!(print_group(0), "");
        assert_eq!(parse_group(" 0 , 63 "), Ok(1 | 1 << 63));
        assert_eq!(print_group(1 << 63), "63");
        for bad in ["64", "x", "1-", "-3", "5-3", "1,,2-x", "99999999999999999999", "1-64", "é"] {
            assert!(parse_group(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_named_groups(" sales, ,support,sales "), ["sales", "support"]);
        assert_eq!(print_named_groups(&parse_named_groups("b,a")), "a, b");
        assert!(parse_named_groups(" , ").is_empty());
    }

    #[test]
    fn a_pickup_group_meets_call_groups_numbered_or_named() {
        let picker = PickupGroups {
            pickupgroup: parse_group("1").unwrap(),
            named_pickupgroups: parse_named_groups("sales"),
            ..Default::default()
        };
        let numbered = PickupGroups { callgroup: parse_group("1-2").unwrap(), ..Default::default() };
        let named = PickupGroups { named_callgroups: parse_named_groups("a,sales"), ..Default::default() };
        let other = PickupGroups { callgroup: 4, named_callgroups: vec!["x".into()], ..Default::default() };
        assert!(picker.may_pick_up(&numbered));
        assert!(picker.may_pick_up(&named));
        assert!(!picker.may_pick_up(&other));
        assert!(!PickupGroups::default().may_pick_up(&numbered));
    }

    /// Arbitrary text never panics the group readers (bad input never panics).
    #[test]
    fn group_readers_take_any_text() {
        let mut seed = 0x2545f4914f6cdd1du64;
        let alphabet: Vec<char> = "0123456789-, x63é\t".chars().collect();
        for _ in 0..5000 {
            let len = (seed % 12) as usize;
            let text: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            if let Ok(group) = parse_group(&text) {
                assert_eq!(parse_group(&print_group(group)), Ok(group), "{text:?}");
            }
            let _ = parse_named_groups(&text);
        }
    }
}
