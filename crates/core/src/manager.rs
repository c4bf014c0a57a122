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

/// A message with more headers than this is refused.
pub const MAX_HEADERS: usize = 256;

/// Why a manager message could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    #[error("too many headers")]
    TooManyHeaders,
}

/// Reads manager messages from their lines, as they arrive (sans I/O: res_manager reads the
/// lines from the socket, bounded, and hands them here). `Key: Value`, the value's leading
/// blanks dropped; a line without a colon is a key with an empty value, as Asterisk's
/// `astman_get_header` sees it; an empty line ends a message (empty lines before one are skipped).
#[derive(Debug, Default)]
pub struct MessageReader {
    message: Message,
}

impl MessageReader {
    /// Takes one line, with or without its line end; a message when this line ends one.
    pub fn line(&mut self, line: &str) -> Result<Option<Message>, MessageError> {
        let text = line.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            if self.message.headers.is_empty() {
                return Ok(None);
            }
            return Ok(Some(std::mem::take(&mut self.message)));
        }
        if self.message.headers.len() >= MAX_HEADERS {
            return Err(MessageError::TooManyHeaders);
        }
        let (key, value) = text.split_once(':').unwrap_or((text, ""));
        self.message.headers.push((key.trim().to_owned(), value.trim_start().to_owned()));
        Ok(None)
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

    #[test]
    fn messages_read_line_by_line_and_render_back() {
        let mut reader = MessageReader::default();
        let mut read = Vec::new();
        for line in "\r\nAction: Login\r\nUsername:admin\r\nSecret:  a:b \r\nno colon\n\r\n".split_inclusive('\n') {
            read.extend(reader.line(line).unwrap());
        }
        let expected = Message::default()
            .with("Action", "Login")
            .with("Username", "admin")
            .with("Secret", "a:b ")
            .with("no colon", "");
        assert_eq!(read, std::slice::from_ref(&expected));
        let mut again = MessageReader::default();
        let back: Vec<Message> =
            expected.render().split_inclusive('\n').filter_map(|l| again.line(l).unwrap()).collect();
        assert_eq!(back, [expected]);
        let mut flood = MessageReader::default();
        let errors = (0..=MAX_HEADERS).filter(|i| flood.line(&format!("K{i}: v")).is_err()).count();
        assert_eq!(errors, 1, "the header past {MAX_HEADERS} is refused");
    }
}
