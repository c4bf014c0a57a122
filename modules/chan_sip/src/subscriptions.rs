//! The monitor's subscriptions (issue 25): phones' BLF keys, `SUBSCRIBE` with `Event: dialog`
//! or `Event: presence` to an extension with a hint. Each is a
//! [`starling_sip::subscription::Subscription`] (the sans-IO notifier) keyed by its dialog
//! (Call-ID and our tag), with what the monitor needs to drive it: where its NOTIFYs go, the
//! server transaction its next response answers, the core's watch on the hint. The monitor
//! owns the map (see `Monitor::handle_request_subscribe`); `sip show subscriptions` reads the
//! rows it publishes in [`crate::shared::Shared::subscriptions`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use starling_sip::subscription::{BodyFormat, Subscription, SubscriptionConfig};
use starling_sip::transaction::{Transport, TxId};

use crate::shared::CallKey;

/// One subscription and its I/O.
pub struct Entry {
    pub sub: Subscription,
    /// The core's watch on the hint (`extension_state_add`), ended with the subscription.
    pub watch: Option<i32>,
    /// Where the SUBSCRIBE came from: the NOTIFYs go there (as chan_sip with `nat=force_rport`).
    pub remote: SocketAddr,
    pub transport: Transport,
    /// The server transaction of the SUBSCRIBE being answered (the response the notifier
    /// queues next goes there).
    pub tx: Option<TxId>,
    /// The watched extension's context (the extension is the subscription's).
    pub context: String,
    /// Our address as the subscriber sees it (the host of `notifycid`'s caller URI).
    pub host: IpAddr,
    /// The peer it authenticated as (`None`: a guest): a `sip reload` that removes the peer
    /// ends the subscription.
    pub peer: Option<String>,
    /// What `sip show subscriptions` shows (its `Last state` and `Expiry` kept up to date),
    /// shared with the copy published for the CLI.
    pub row: Arc<Row>,
}

/// The map, by dialog, and the earliest expiry (found again only after a subscription changed:
/// the monitor asks at every wake).
#[derive(Default)]
pub struct Subscriptions {
    /// Boxed: an entry is about 1.4 KB, and a table of them inline keeps that much in each of
    /// its empty slots too (about 3 KB a subscription more at 2,000, benches/RESULTS.md).
    pub map: HashMap<CallKey, Box<Entry>>,
    /// The notifiers' settings by (transport, our address as told, extension), shared by the
    /// subscriptions they were made for (a reload empties it: the next ones take the new
    /// `[general]`).
    pub configs: HashMap<(Transport, SocketAddr, String), Arc<SubscriptionConfig>>,
    next: Option<std::time::Instant>,
    stale: bool,
}

/// Settings kept for sharing at most: past it, those no subscription holds are let go.
const CONFIGS_KEPT: usize = 4096;

impl Subscriptions {
    /// Keeps `config` for the next subscriptions like the one it was made for.
    pub fn keep_config(&mut self, key: (Transport, SocketAddr, String), config: Arc<SubscriptionConfig>) {
        if self.configs.len() >= CONFIGS_KEPT {
            self.configs.retain(|_, c| Arc::strong_count(c) > 1);
        }
        self.configs.insert(key, config);
    }

    /// A subscription changed (its expiry may have moved, or it ended).
    pub fn touched(&mut self) {
        self.stale = true;
    }

    /// The earliest expiry to run.
    pub fn poll_timeout(&mut self) -> Option<std::time::Instant> {
        if self.stale {
            self.next = self.map.values().filter_map(|e| e.sub.poll_timeout()).min();
            self.stale = false;
        }
        self.next
    }

    /// The subscriptions whose expiry is due at `now`.
    pub fn due(&mut self, now: std::time::Instant) -> Vec<CallKey> {
        if self.poll_timeout().is_none_or(|at| at > now) {
            return Vec::new();
        }
        self.map
            .iter()
            .filter(|(_, e)| e.sub.poll_timeout().is_some_and(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// One line of `sip show subscriptions`. The entry and [`crate::shared::Shared`] (for the CLI)
/// share it; a change makes a new one, whose texts are shared, not copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The subscriber's address (chan_sip's `ast_sockaddr_stringify_addr(dst)`).
    pub address: IpAddr,
    /// The peer (or the From user of a guest), chan_sip's `username`.
    pub user: Arc<str>,
    pub call_id: Arc<str>,
    /// `exten@context` (chan_sip's `subscribeuri`).
    pub extension: Arc<str>,
    /// Asterisk's extension state bits last told.
    pub last_state: i32,
    pub format: BodyFormat,
    /// The expiry granted, in seconds (chan_sip's `p->expiry`).
    pub expiry: u32,
}

/// chan_sip's `subscription_type2str`.
pub fn type_text(format: BodyFormat) -> &'static str {
    match format {
        BodyFormat::DialogInfo => "dialog-info+xml",
        BodyFormat::Pidf => "pidf+xml",
        BodyFormat::Xpidf => "xpidf+xml",
        // chan_sip's `subscription_type2str` for MWI_NOTIFICATION.
        BodyFormat::MessageSummary => "mwi",
    }
}

/// `sip show subscriptions`, as chan_sip's `__sip_show_channels` with subscriptions (FORMAT3
/// for the header, FORMAT4 for the rows: `%-15.15s  %-15.15s  %-15.15s  %-15.15s  %-13.13s
/// %-15.15s %-10.10s %-6.6d`), then `N active SIP subscription(s)`.
pub fn show(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<15.15}  {:<15.15}  {:<15.15}  {:<15.15}  {:<13.13}  {:<15.15} {:<10.10} {:<6.6}",
        "Peer", "User", "Call ID", "Extension", "Last state", "Type", "Mailbox", "Expiry"
    );
    for row in rows {
        let state = starling_core::hints::ExtensionState(row.last_state).as_str();
        let _ = writeln!(
            out,
            "{:<15.15}  {:<15.15}  {:<15.15}  {:<15.15}  {:<13.13}  {:<15.15} {:<10.10} {:<6}",
            row.address.to_string(),
            row.user,
            row.call_id,
            row.extension,
            state,
            type_text(row.format),
            if row.format == BodyFormat::MessageSummary { &*row.extension } else { "<none>" },
            row.expiry
        );
    }
    let n = rows.len();
    let _ = writeln!(out, "{n} active SIP subscription{}", if n == 1 { "" } else { "s" });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_has_chan_sips_columns() {
        let rows = vec![Row {
            address: "192.0.2.7".parse().unwrap(),
            user: "watcher".into(),
            call_id: "0123456789abcdefghij@host".into(),
            extension: "1001@default".into(),
            last_state: 8,
            format: BodyFormat::DialogInfo,
            expiry: 600,
        }];
        let out = show(&rows);
        let mut lines = out.lines();
        assert_eq!(
            lines.next().unwrap(),
            "Peer             User             Call ID          Extension        Last state     Type            Mailbox    Expiry"
        );
        assert_eq!(
            lines.next().unwrap(),
            "192.0.2.7        watcher          0123456789abcde  1001@default     Ringing        dialog-info+xml <none>     600   "
        );
        assert_eq!(lines.next().unwrap(), "1 active SIP subscription");
        assert!(show(&[]).ends_with("\n0 active SIP subscriptions\n"));
    }
}
