//! What the manager interface (res_manager) shares with the modules: the message type and the
//! registry of actions modules add (chan_sip's `SIPpeers`...), as Asterisk's
//! `ast_manager_register_xml`. The protocol itself (TCP, login, event fan-out) is res_manager's.

use std::sync::Arc;

/// A manager message: `Key: Value` headers in order (an action, a response, an event).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(String, String)>,
}

impl Message {
    /// `Response: Success` (the start of a reply).
    pub fn success() -> Message {
        Message::default().with("Response", "Success")
    }
    /// `Response: Error` with its `Message`.
    pub fn error(text: &str) -> Message {
        Message::default().with("Response", "Error").with("Message", text)
    }
    /// `Event: name`.
    pub fn event(name: &str) -> Message {
        Message::default().with("Event", name)
    }
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Message {
        self.headers.push((key.to_owned(), value.into()));
        self
    }
    /// A header's value (names compare case-insensitively, as Asterisk's `astman_get_header`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }
    /// Every value of a repeated header (`Variable:`).
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }
    /// A non-empty header.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key).map(str::trim).filter(|v| !v.is_empty())
    }
    /// The message as it goes on the wire: `Key: Value\r\n` lines and an empty line.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.headers.len() * 24 + 2);
        render_headers(&mut out, self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        out
    }
}

/// Appends `Key: Value\r\n` lines and the empty line that ends a manager message.
pub(crate) fn render_headers<'a>(out: &mut String, headers: impl Iterator<Item = (&'a str, &'a str)>) {
    for (k, v) in headers {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
}

/// An action's reply: the response, then any list events (with Asterisk's
/// `EventList: start` / `...Complete` framing made by [`list`]).
pub type Reply = Vec<Message>;

/// A list reply: `Response: Success`, `EventList: start`, `Message: {what}`, the items, then
/// `Event: {complete}` with `EventList: Complete` and `ListItems: N`.
pub fn list(what: &str, items: Vec<Message>, complete: &str) -> Reply {
    let count = items.len();
    let mut reply = vec![Message::success().with("EventList", "start").with("Message", what)];
    reply.extend(items);
    reply.push(Message::event(complete).with("EventList", "Complete").with("ListItems", count.to_string()));
    reply
}

pub type ActionHandler = Arc<dyn Fn(&Message) -> Reply + Send + Sync>;

/// An action a module adds.
#[derive(Clone)]
pub struct ManagerAction {
    pub name: &'static str,
    pub synopsis: &'static str,
    /// The write class a user needs (`system`, `call`, `reporting`...).
    pub privilege: &'static str,
    pub handler: ActionHandler,
}

impl crate::ModuleContext {
    /// Registers manager actions; they go away with the returned guards.
    pub fn register_manager_actions(
        &self,
        actions: Vec<ManagerAction>,
    ) -> Result<crate::module::Registrations, crate::LoadError> {
        let mut held: Vec<Box<dyn std::any::Any + Send + Sync>> = Vec::new();
        for action in actions {
            let registration = self
                .core()
                .manager_actions()
                .register(action.name, action)
                .map_err(|e| crate::LoadError::Failure(format!("manager action {e}")))?;
            held.push(Box::new(registration));
        }
        Ok(crate::module::Registrations(held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_render_and_lists_are_framed() {
        let m = Message::success().with("Ping", "Pong");
        assert_eq!(m.render(), "Response: Success\r\nPing: Pong\r\n\r\n");
        assert_eq!(m.get("ping"), Some("Pong"));
        let reply = list("Peer status list will follow", vec![Message::event("PeerEntry")], "PeerlistComplete");
        assert_eq!(reply.len(), 3);
        assert_eq!(reply[2].get("ListItems"), Some("1"));
        assert_eq!(reply[0].get("EventList"), Some("start"));
    }
}
