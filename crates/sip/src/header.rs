//! Header names (compact forms expanded, case folded to the RFC's spelling) and the header
//! list of a message, in order, one value per entry.
//!
//! Headers whose grammar is a comma-separated list of values — Via, Contact, Route,
//! Record-Route — are split at parse time, so `Via: a, b` is two entries, as if written on
//! two lines (RFC 3261 §7.3.1). Every other value is kept whole, as written.

use std::fmt;

macro_rules! header_names {
    ($($variant:ident => $text:literal $(| $compact:literal)?),* $(,)?) => {
        /// A header's name. Known names compare as variants; others keep their spelling and
        /// compare case-insensitively.
        #[derive(Clone, Debug, Eq)]
        #[non_exhaustive]
        pub enum HeaderName {
            $($variant,)*
            Other(Box<str>),
        }

        impl HeaderName {
            /// The canonical spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $(HeaderName::$variant => $text,)*
                    HeaderName::Other(s) => s,
                }
            }

            /// Parses a name as written, compact forms included (`v` → Via).
            pub fn parse(name: &str) -> HeaderName {
                if name.len() == 1 {
                    let c = name.as_bytes()[0].to_ascii_lowercase();
                    $($(if c == $compact { return HeaderName::$variant; })?)*
                }
                $(if name.eq_ignore_ascii_case($text) { return HeaderName::$variant; })*
                HeaderName::Other(name.into())
            }
        }
    };
}

header_names! {
    Via => "Via" | b'v',
    From => "From" | b'f',
    To => "To" | b't',
    CallId => "Call-ID" | b'i',
    CSeq => "CSeq",
    Contact => "Contact" | b'm',
    MaxForwards => "Max-Forwards",
    ContentLength => "Content-Length" | b'l',
    ContentType => "Content-Type" | b'c',
    ContentEncoding => "Content-Encoding" | b'e',
    Route => "Route",
    RecordRoute => "Record-Route",
    Expires => "Expires",
    MinExpires => "Min-Expires",
    Authorization => "Authorization",
    ProxyAuthorization => "Proxy-Authorization",
    WwwAuthenticate => "WWW-Authenticate",
    ProxyAuthenticate => "Proxy-Authenticate",
    Allow => "Allow",
    AllowEvents => "Allow-Events" | b'u',
    Accept => "Accept",
    Supported => "Supported" | b'k',
    Require => "Require",
    ProxyRequire => "Proxy-Require",
    Unsupported => "Unsupported",
    UserAgent => "User-Agent",
    Server => "Server",
    Subject => "Subject" | b's',
    Event => "Event" | b'o',
    ReferTo => "Refer-To" | b'r',
    ReferredBy => "Referred-By" | b'b',
    SessionExpires => "Session-Expires" | b'x',
    MinSe => "Min-SE",
    RSeq => "RSeq",
    RAck => "RAck",
    RetryAfter => "Retry-After",
    Date => "Date",
    Timestamp => "Timestamp",
    Warning => "Warning",
    PAssertedIdentity => "P-Asserted-Identity",
    RemotePartyId => "Remote-Party-ID",
    Privacy => "Privacy",
    SubscriptionState => "Subscription-State",
    Reason => "Reason",
    Identity => "Identity" | b'y',
    AcceptContact => "Accept-Contact" | b'a',
    RejectContact => "Reject-Contact" | b'j',
    RequestDisposition => "Request-Disposition" | b'd',
    IdentityInfo => "Identity-Info" | b'n',
}

impl HeaderName {
    /// Whether the header's values form a comma-separated list that is split into entries.
    pub fn is_list(&self) -> bool {
        matches!(self, HeaderName::Via | HeaderName::Contact | HeaderName::Route | HeaderName::RecordRoute)
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &HeaderName) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub value: String,
}

/// The headers of a message, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.0.iter().find(|h| &h.name == name).map(|h| h.value.as_str())
    }
    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |h| &h.name == name).map(|h| h.value.as_str())
    }
    /// Appends a header.
    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        self.0.push(Header { name, value: value.into() });
    }
    /// Adds a header before all others of the same name (a new top Via, a Record-Route).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<String>) {
        let at = self.0.iter().position(|h| h.name == name).unwrap_or(self.0.len());
        self.0.insert(at, Header { name, value: value.into() });
    }
    /// Replaces every value of `name` with one.
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        match self.0.iter().position(|h| h.name == name) {
            Some(at) => {
                self.0[at].value = value.into();
                let mut seen = false;
                self.0.retain(|h| {
                    if h.name != name {
                        return true;
                    }
                    let keep = !seen;
                    seen = true;
                    keep
                });
            }
            None => self.push(name, value),
        }
    }
    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &HeaderName) {
        self.0.retain(|h| &h.name != name);
    }
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }
}

/// Splits a list header's value at commas outside quotes and angle brackets.
pub(crate) fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case_insensitive_names() {
        assert_eq!(HeaderName::parse("v"), HeaderName::Via);
        assert_eq!(HeaderName::parse("I"), HeaderName::CallId);
        assert_eq!(HeaderName::parse("cAlL-iD"), HeaderName::CallId);
        assert_eq!(HeaderName::parse("l").as_str(), "Content-Length");
        assert_eq!(HeaderName::parse("X-Custom"), HeaderName::parse("x-custom"));
        assert_eq!(HeaderName::parse("X-Custom").as_str(), "X-Custom");
        assert_eq!(HeaderName::parse("q"), HeaderName::Other("q".into()));
    }

    #[test]
    fn list_splitting_respects_quotes_and_brackets() {
        assert_eq!(split_list("SIP/2.0/UDP a;branch=1 , SIP/2.0/TCP b"), ["SIP/2.0/UDP a;branch=1", "SIP/2.0/TCP b"]);
        assert_eq!(
            split_list("\"Doe, John\" <sip:j@x;a=b,c>;q=1, <sip:k@y>"),
            ["\"Doe, John\" <sip:j@x;a=b,c>;q=1", "<sip:k@y>"]
        );
        assert_eq!(split_list("\"a\\\",b\" <sip:x>"), ["\"a\\\",b\" <sip:x>"]);
    }

    #[test]
    fn set_push_front_remove() {
        let mut h = Headers::default();
        h.push(HeaderName::Via, "b");
        h.push(HeaderName::From, "f");
        h.push(HeaderName::Via, "c");
        h.push_front(HeaderName::Via, "a");
        assert_eq!(h.get_all(&HeaderName::Via).collect::<Vec<_>>(), ["a", "b", "c"]);
        h.set(HeaderName::Via, "z");
        assert_eq!(h.get_all(&HeaderName::Via).collect::<Vec<_>>(), ["z"]);
        h.remove(&HeaderName::From);
        assert_eq!(h.0.len(), 1);
    }
}
