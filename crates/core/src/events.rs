//! Core events (Asterisk's stasis messages as the manager interface sees them): a module
//! publishes what happened (`PeerStatus`, `Registry`, ...) as a named event with ordered
//! fields, and whoever listens (the manager interface, issue 10) subscribes. Publishing never
//! blocks and costs nothing without listeners; a listener that falls behind loses the oldest
//! events (and is told how many).

use crate::tokio::sync::broadcast;

/// One event, with Asterisk's field names and order (`Event: PeerStatus`, `ChannelType: SIP`...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// `PeerStatus`, `Registry`...
    pub name: String,
    /// The manager event class it belongs to (`system`, `call`...), for filtering.
    pub class: &'static str,
    pub fields: Vec<(String, String)>,
    /// The event as the manager sends it, made once however many sessions receive it.
    rendered: std::sync::OnceLock<String>,
}

impl Event {
    pub fn new(name: &str, class: &'static str) -> Event {
        Event { name: name.to_owned(), class, fields: Vec::new(), rendered: std::sync::OnceLock::new() }
    }
    /// Adds a field (in order).
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Event {
        self.fields.push((key.to_owned(), value.into()));
        self
    }
    /// The event on the manager's wire: `Event: Name`, `Privilege: class,all`, the fields,
    /// an empty line (rendered on first use, then shared).
    pub fn rendered(&self) -> &str {
        self.rendered.get_or_init(|| {
            let mut out = String::with_capacity(48 + self.fields.len() * 32);
            let privilege = format!("{},all", self.class);
            let head = [("Event", self.name.as_str()), ("Privilege", privilege.as_str())];
            let fields = self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            crate::manager::render_headers(&mut out, head.into_iter().chain(fields));
            out
        })
    }
    /// A field's value.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The process's event bus.
pub struct Events {
    sender: broadcast::Sender<std::sync::Arc<Event>>,
    /// Whether channels publish `VarSet` for every variable they set (manager.conf says).
    varset: std::sync::atomic::AtomicBool,
}

impl Default for Events {
    fn default() -> Self {
        Events { sender: broadcast::channel(4096).0, varset: Default::default() }
    }
}

impl Events {
    /// Publishes an event to every listener (none: it is dropped).
    pub fn publish(&self, event: Event) {
        let _ = self.sender.send(std::sync::Arc::new(event));
    }
    /// Turns `VarSet` events on or off (they are many: off by default).
    pub fn set_varset(&self, on: bool) {
        self.varset.store(on, std::sync::atomic::Ordering::Relaxed);
    }
    /// Whether `VarSet` events are wanted now.
    pub fn varset(&self) -> bool {
        self.varset.load(std::sync::atomic::Ordering::Relaxed) && self.has_listeners()
    }
    /// Whether anyone listens: publishers skip building events nobody would read.
    pub fn has_listeners(&self) -> bool {
        self.sender.receiver_count() > 0
    }
    /// A new listener, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<std::sync::Arc<Event>> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_get_every_event_in_order() {
        let events = Events::default();
        events.publish(Event::new("Lost", "system")); // nobody listens yet
        let mut a = events.subscribe();
        let mut b = events.subscribe();
        events.publish(Event::new("PeerStatus", "system").with("Peer", "SIP/bob").with("PeerStatus", "Reachable"));
        events.publish(Event::new("Registry", "system").with("Status", "Registered"));
        for rx in [&mut a, &mut b] {
            let first = rx.try_recv().unwrap();
            assert_eq!((first.name.as_str(), first.field("Peer")), ("PeerStatus", Some("SIP/bob")));
            assert_eq!(rx.try_recv().unwrap().field("Status"), Some("Registered"));
            assert!(rx.try_recv().is_err());
        }
    }
}
