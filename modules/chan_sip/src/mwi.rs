//! Message waiting for phones (chan_sip's `mailbox=`, RFC 3842): the body of a
//! `message-summary` NOTIFY from a mailbox's counts, as chan_sip's `transmit_notify_with_mwi`
//! writes it. The counts come from the core's MWI state (`starling_core::mwi`), published by
//! a voicemail module; chan_sip never asks the voicemail module itself. The monitor sends the
//! NOTIFY (unsolicited, outside any dialog) when a count changes and after the phone registers
//! (see `Monitor::send_mwi`).

/// chan_sip's `DEFAULT_VMEXTEN`: the user part of `Message-Account` when a peer has no
/// `vmexten`.
pub const DEFAULT_VMEXTEN: &str = "asterisk";

/// The `application/simple-message-summary` body: `Messages-Waiting`, `Message-Account`
/// (`sip:vmexten@domain`) and `Voice-Message: new/old (urgent new/urgent old)`.
pub fn message_summary(new: u32, old: u32, account: &str) -> String {
    format!(
        "Messages-Waiting: {}\r\nMessage-Account: {account}\r\nVoice-Message: {new}/{old} (0/0)\r\n",
        if new > 0 { "yes" } else { "no" }
    )
}

/// The counts of a peer's mailboxes added up (`None`: no voicemail module knows any of them).
pub fn peer_counts(core: &starling_core::Core, mailboxes: &[String]) -> Option<(u32, u32)> {
    let states: Vec<_> = mailboxes.iter().filter_map(|m| core.mwi().state(m)).collect();
    if states.is_empty() {
        return None;
    }
    Some(states.iter().fold((0, 0), |(n, o), s| (n + s.new, o + s.old)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_chan_sips() {
        assert_eq!(
            message_summary(1, 0, "sip:asterisk@127.0.0.1"),
            "Messages-Waiting: yes\r\nMessage-Account: sip:asterisk@127.0.0.1\r\nVoice-Message: 1/0 (0/0)\r\n"
        );
        assert!(message_summary(0, 3, "sip:a@b").starts_with("Messages-Waiting: no\r\n"));
    }
}
