//! Message waiting (Asterisk's stasis MWI topic, `ast_publish_mwi_state`): a voicemail module
//! publishes how many new and old messages a mailbox holds, a channel driver (chan_sip's
//! `mailbox=`) listens and lights the phones' lamps. Neither knows the other: they meet here.
//!
//! Mailboxes are named `mailbox@context` (a name without `@` is in `default`, as Asterisk's
//! `ast_app_inboxcount` takes it), case-insensitively. The cache keeps the last state of each
//! mailbox, so a phone that registers later is told at once; subscribers hear every change.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::tokio::sync::broadcast;

/// A mailbox's counts, as published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MwiState {
    /// `mailbox@context`, as normalised by [`mailbox_id`].
    pub mailbox: String,
    /// Messages in `INBOX`.
    pub new: u32,
    /// Messages in `Old`.
    pub old: u32,
}

/// `1001` → `1001@default`; `1001@Sales` → `1001@sales` (the key the cache uses).
pub fn mailbox_id(mailbox: &str) -> String {
    let mailbox = mailbox.trim();
    let (number, context) = mailbox.split_once('@').unwrap_or((mailbox, "default"));
    let context = if context.is_empty() { "default" } else { context };
    format!("{}@{}", number.to_ascii_lowercase(), context.to_ascii_lowercase())
}

/// The MWI state of every mailbox published, and its subscribers.
pub struct Mwi {
    cache: Mutex<HashMap<String, (u32, u32)>>,
    subscribers: broadcast::Sender<MwiState>,
}

impl Default for Mwi {
    fn default() -> Self {
        Mwi { cache: Mutex::default(), subscribers: broadcast::channel(1024).0 }
    }
}

impl Mwi {
    /// Every change from now on (a subscriber that falls behind loses the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<MwiState> {
        self.subscribers.subscribe()
    }

    /// The state last published for `mailbox` (`None`: never published, or forgotten).
    pub fn state(&self, mailbox: &str) -> Option<MwiState> {
        let id = mailbox_id(mailbox);
        let counts = self.lock().get(&id).copied();
        counts.map(|(new, old)| MwiState { mailbox: id, new, old })
    }

    /// Forgets `mailbox` (its voicemail module went, or no longer has it).
    pub fn forget(&self, mailbox: &str) {
        self.lock().remove(&mailbox_id(mailbox));
    }

    /// Stores the state; whether it differs from the one before (a mailbox never published
    /// counts as empty, so the first `0/0` of a voicemail module starting is no change).
    fn store(&self, state: &MwiState) -> bool {
        self.lock().insert(state.mailbox.clone(), (state.new, state.old)).unwrap_or((0, 0)) != (state.new, state.old)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, u32)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl crate::Core {
    /// The MWI states and their subscribers.
    pub fn mwi(&self) -> &Mwi {
        &self.mwi
    }

    /// Says how many messages `mailbox` holds now (Asterisk's `ast_publish_mwi_state`). A
    /// change reaches the subscribers and the manager (`MessageWaiting`, Asterisk's fields);
    /// the same counts again do nothing. Cheap, never blocks.
    pub fn publish_mwi(&self, mailbox: &str, new: u32, old: u32) {
        let state = MwiState { mailbox: mailbox_id(mailbox), new, old };
        if !self.mwi.store(&state) {
            return;
        }
        crate::tracing::debug!("MWI of {} is now {new}/{old}", state.mailbox);
        self.events().publish(
            crate::events::Event::new("MessageWaiting", "call")
                .with("Mailbox", state.mailbox.clone())
                .with("Waiting", if new > 0 { "1" } else { "0" })
                .with("New", new.to_string())
                .with("Old", old.to_string()),
        );
        let _ = self.mwi.subscribers.send(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_ids_are_normalised() {
        assert_eq!(mailbox_id("1001"), "1001@default");
        assert_eq!(mailbox_id(" 1001@Sales "), "1001@sales");
        assert_eq!(mailbox_id("1001@"), "1001@default");
        assert_eq!(mailbox_id(""), "@default");
    }

    #[test]
    fn changes_are_cached_and_told_once() {
        let mwi = Mwi::default();
        let empty = MwiState { mailbox: mailbox_id("1001"), new: 0, old: 0 };
        assert!(!mwi.store(&empty), "the first 0/0 is no change");
        assert_eq!(mwi.state("1001"), Some(empty));
        let state = MwiState { mailbox: mailbox_id("1001"), new: 1, old: 0 };
        assert!(mwi.store(&state));
        assert!(!mwi.store(&state));
        assert_eq!(mwi.state("1001@DEFAULT"), Some(state));
        mwi.forget("1001");
        assert_eq!(mwi.state("1001"), None);
    }
}
