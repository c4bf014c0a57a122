//! What the `sip show channels|channel|channelstats` CLI commands print of the calls: the table
//! every call keeps its row in, and its rendering in chan_sip's columns.

use std::net::SocketAddr;

use starling_relay::LegStats;

use crate::config::DtmfMode;

/// A call as `sip show channels` lists it.
#[derive(Clone, Debug)]
pub struct DialogRow {
    pub address: std::net::IpAddr,
    /// The caller's user (From), or "(None)".
    pub user: String,
    pub format: String,
    pub hold: bool,
    /// "Rx: INVITE", "Rx: ACK", "Tx: BYE"...
    pub last_message: String,
    /// The peer's name, or "<guest>".
    pub peer: String,
    /// When the call began (`sip show channelstats` Duration).
    pub started: std::time::Instant,
    /// The RTP session's figures, refreshed about once a second.
    pub stats: Option<starling_media::session::Stats>,
    /// The SRTP suite agreed (SDES), once the call's media is encrypted.
    pub srtp: Option<&'static str>,
    /// While the relay threads relay the call (and until the pvt next publishes `stats`): the
    /// figures the relay publishes, shown in place of `stats` once it has published any.
    pub relayed: Option<LegStats>,
    /// The relay thread reads the call's RTP socket now (a native bridge): `sip show
    /// channel`'s Native relay line.
    pub native_relay: bool,
    /// The call's SRTP once keyed: `sip show channel` shows how many packets it dropped.
    pub srtp_state: Option<starling_media::srtp::SharedSrtp>,
    /// What `sip show channel` adds.
    pub detail: ChannelDetail,
}

/// One call as `sip show channel` shows it (fixed when the call starts).
#[derive(Clone, Debug)]
pub struct ChannelDetail {
    /// `Incoming` or `Outgoing`.
    pub direction: &'static str,
    /// The owner channel (`SIP/alice-0000000a`).
    pub channel: String,
    /// The owner channel's uniqueid (what its manager events carry).
    pub uniqueid: String,
    /// Where the far end's signalling comes from and goes to.
    pub remote: SocketAddr,
    /// Our RTP address as told in SDP.
    pub audio: SocketAddr,
    pub our_tag: String,
    /// Empty until known (an outbound call's, until the answer).
    pub their_tag: String,
    pub useragent: String,
    /// The Request-URI of the INVITE that began the call.
    pub uri: String,
    pub codecs: Vec<String>,
    pub dtmfmode: DtmfMode,
    pub transport: &'static str,
}

/// `sip show channel <Call-ID prefix>`: chan_sip's block for each call whose Call-ID starts
/// with `prefix` (any case), or that none does.
pub fn show_channel(table: &DialogTable, prefix: &str) -> String {
    use std::fmt::Write;
    let table = table.read().unwrap_or_else(|p| p.into_inner());
    let mut out = String::new();
    let matches = |call_id: &str| call_id.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix));
    for (call_id, row) in table.iter().filter(|(id, _)| matches(id)) {
        let d = &row.detail;
        let yes_no = |b: bool| if b { "Yes" } else { "No" };
        let _ = writeln!(out, "\n  * SIP Call");
        for (key, value) in [
            ("Curr. trans. direction", d.direction.to_owned()),
            ("Call-ID", call_id.clone()),
            ("Owner channel ID", d.channel.clone()),
            ("Our Codec Capability", format!("({})", d.codecs.join("|"))),
            ("Format", format!("({})", row.format)),
            ("Theoretical Address", d.remote.to_string()),
            ("Received Address", d.remote.to_string()),
            ("Audio IP", d.audio.to_string()),
            ("Our Tag", d.our_tag.clone()),
            ("Their Tag", d.their_tag.clone()),
            ("SIP User agent", d.useragent.clone()),
            ("Username", row.user.clone()),
            ("Peername", row.peer.clone()),
            ("Original uri", d.uri.clone()),
            ("Last Message", row.last_message.clone()),
            ("On hold", yes_no(row.hold).to_owned()),
            ("DTMF Mode", d.dtmfmode.as_str().to_owned()),
            ("Transport", d.transport.to_owned()),
            // chan_sip's line; the suite is Starling's.
            ("Media", if row.srtp.is_some() { "SRTP" } else { "RTP" }.to_owned()),
            ("Crypto suite", row.srtp.unwrap_or("(none)").to_owned()),
            // Starling's: the relay thread carries the call's RTP (opening and sealing SRTP).
            ("Native relay", yes_no(row.native_relay).to_owned()),
            (
                "SRTP dropped",
                row.srtp_state
                    .as_ref()
                    .map_or(0, |srtp| srtp.lock().unwrap_or_else(|p| p.into_inner()).failures())
                    .to_string(),
            ),
        ] {
            let _ = writeln!(out, "  {:<24}{value}", format!("{key}:"));
        }
    }
    if out.is_empty() {
        let _ = writeln!(out, "No such SIP Call ID starting with '{prefix}'");
    } else {
        out.push('\n');
    }
    out
}

/// Every call, by Call-ID, in order.
pub type DialogTable = std::sync::Arc<std::sync::RwLock<std::collections::BTreeMap<String, DialogRow>>>;

/// The channel of the dialog a Replaces names, if it is one of ours: same Call-ID, and the
/// tags ours and theirs (either way round; an outbound call's tag of theirs is not kept).
pub fn replaced_channel(table: &DialogTable, call_id: &str, to_tag: &str, from_tag: &str) -> Option<String> {
    let table = table.read().unwrap_or_else(|p| p.into_inner());
    let d = &table.get(call_id)?.detail;
    let theirs = |tag: &str| d.their_tag.is_empty() || d.their_tag == tag;
    let matches = (d.our_tag == to_tag && theirs(from_tag)) || (d.our_tag == from_tag && theirs(to_tag));
    matches.then(|| d.channel.clone())
}

/// Notes the last message of a call in the table.
pub fn note_message(table: &DialogTable, call_id: &str, message: &str) {
    if let Some(row) = table.write().unwrap_or_else(|p| p.into_inner()).get_mut(call_id) {
        row.last_message = message.to_owned();
    }
}

/// `sip show channelstats`, in chan_sip's columns: per call the packets received and lost (and
/// jitter, in seconds), then sent and lost as the far end reports in RTCP; then Starling's
/// own column, the RTP packets `strictrtp` refused (`Stray`).
pub fn show_channelstats(table: &DialogTable) -> String {
    use std::fmt::Write;
    let table = table.read().unwrap_or_else(|p| p.into_inner());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<15.15}  {:<11.11}  {:<8.8} {:<10.10}  {:<10.10} (     %) {:<6.6} {:<10.10}  {:<10.10} (     %) {:<6.6} {:<5}",
        "Peer", "Call ID", "Duration", "Recv: Pack", "Lost", "Jitter", "Send: Pack", "Lost", "Jitter", "Stray"
    );
    let percent = |lost: i64, total: u64| {
        if total == 0 {
            0.0
        } else {
            lost.max(0) as f64 * 100.0 / (total as f64 + lost.max(0) as f64)
        }
    };
    for (call_id, row) in table.iter() {
        let secs = row.started.elapsed().as_secs();
        let duration = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        let relayed = row.relayed.as_ref().and_then(LegStats::get);
        let stats = relayed.or_else(|| row.stats.clone()).unwrap_or(starling_media::session::Stats {
            sent_packets: 0,
            received_packets: 0,
            lost_packets: 0,
            jitter_ms: 0.0,
            peer_lost: None,
            rtt: None,
            stray_packets: 0,
        });
        let peer_lost = i64::from(stats.peer_lost.unwrap_or(0));
        let _ = writeln!(
            out,
            "{:<15.15}  {:<11.11}  {:<8.8} {:<10} {:<10} ({:5.2}%) {:<6.4} {:<10} {:<10} ({:5.2}%) {:<6.4} {}",
            row.address.to_string(),
            call_id,
            duration,
            stats.received_packets,
            stats.lost_packets.max(0),
            percent(stats.lost_packets, stats.received_packets),
            stats.jitter_ms / 1000.0,
            stats.sent_packets,
            peer_lost.max(0),
            percent(peer_lost, stats.sent_packets),
            0.0,
            stats.stray_packets,
        );
    }
    let n = table.len();
    let _ = writeln!(out, "{n} active SIP channel{}", if n == 1 { "" } else { "s" });
    out
}

/// `sip show channels`, in chan_sip's columns.
pub fn show_channels(table: &DialogTable) -> String {
    use std::fmt::Write;
    let table = table.read().unwrap_or_else(|p| p.into_inner());
    let mut out = String::new();
    let row = |out: &mut String, cols: [&str; 7]| {
        let _ = writeln!(
            out,
            "{:<15.15}  {:<15.15}  {:<15.15}  {:<15.15}  {:<7.7}  {:<15.15} {:<10.10}",
            cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6]
        );
    };
    row(&mut out, ["Peer", "User/ANR", "Call ID", "Format", "Hold", "Last Message", "Peer"]);
    for (call_id, d) in table.iter() {
        let format = format!("({})", d.format);
        let address = d.address.to_string();
        let hold = if d.hold { "Yes" } else { "No" };
        row(&mut out, [&address, &d.user, call_id, &format, hold, &d.last_message, &d.peer]);
    }
    let n = table.len();
    let _ = writeln!(out, "{n} active SIP channel{}", if n == 1 { "" } else { "s" });
    out
}

/// Refreshes a call's row of `sip show channelstats` (what a relay published before is done with).
pub fn publish_stats(table: &DialogTable, call_id: &str, stats: starling_media::session::Stats) {
    if let Some(row) = table.write().unwrap_or_else(|p| p.into_inner()).get_mut(call_id) {
        row.stats = Some(stats);
        row.relayed = None;
    }
}

/// A call's row of `sip show channelstats` shows what the relay publishes from now on, once it
/// has published: until then, the latest figures so far (an earlier relay's, if the pvt has not
/// published since).
pub fn show_relayed_stats(table: &DialogTable, call_id: &str, relayed: &LegStats) {
    if let Some(row) = table.write().unwrap_or_else(|p| p.into_inner()).get_mut(call_id) {
        if let Some(stats) = row.relayed.take().and_then(|earlier| earlier.get()) {
            row.stats = Some(stats);
        }
        row.relayed = Some(relayed.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sip show channelstats`' Recv: Pack for the one call of `table`.
    fn received_shown(table: &DialogTable) -> String {
        let shown = show_channelstats(table);
        let row = shown.lines().nth(1).unwrap_or_else(|| panic!("a row: {shown}")).to_owned();
        row.split_whitespace().nth(3).unwrap().to_owned()
    }

    fn stats(received_packets: u64) -> starling_media::session::Stats {
        starling_media::session::Stats {
            sent_packets: 0,
            received_packets,
            lost_packets: 0,
            jitter_ms: 0.0,
            peer_lost: None,
            rtt: None,
            stray_packets: 0,
        }
    }

    /// The row shows the latest figures whoever published them: the pvt's own, then the relay's
    /// once it has published (until then, what the row had; a second relay starts from the
    /// first one's last figures), then the pvt's again.
    #[test]
    fn channelstats_shows_what_the_relay_publishes_while_relayed() {
        let address: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let row = DialogRow {
            address: address.ip(),
            user: "(None)".into(),
            format: "ulaw".into(),
            hold: false,
            last_message: "Rx: ACK".into(),
            peer: "alice".into(),
            started: std::time::Instant::now(),
            stats: None,
            srtp: None,
            native_relay: false,
            srtp_state: None,
            relayed: None,
            detail: ChannelDetail {
                direction: "Incoming",
                channel: "SIP/alice-00000001".into(),
                uniqueid: "1".into(),
                remote: address,
                audio: address,
                our_tag: "a".into(),
                their_tag: "b".into(),
                useragent: String::new(),
                uri: "sip:100@127.0.0.1".into(),
                codecs: vec!["ulaw".into()],
                dtmfmode: DtmfMode::Rfc2833,
                transport: "UDP",
            },
        };
        let table = DialogTable::default();
        table.write().unwrap().insert("c1".into(), row);
        publish_stats(&table, "c1", stats(50));
        assert_eq!(received_shown(&table), "50");
        let first = LegStats::default();
        show_relayed_stats(&table, "c1", &first);
        assert_eq!(received_shown(&table), "50", "nothing relayed yet");
        first.set(stats(100));
        assert_eq!(received_shown(&table), "100", "the relay's");
        let second = LegStats::default();
        show_relayed_stats(&table, "c1", &second);
        assert_eq!(received_shown(&table), "100", "the first relay's last");
        second.set(stats(150));
        assert_eq!(received_shown(&table), "150");
        publish_stats(&table, "c1", stats(160));
        assert_eq!(received_shown(&table), "160", "the pvt's again");
        second.set(stats(200));
        assert_eq!(received_shown(&table), "160", "a relay done with is not shown");
    }
}
