//! Typed views of the headers the stack reads: methods, Via, name-addr (From, To, Contact,
//! Route, Record-Route), CSeq. Each parses from one header value and prints back.

use std::fmt;

use crate::uri::{find_param, split_host_port, write_params, Host, Param, Uri, UriError};

/// A SIP method. Methods are case-sensitive (RFC 3261 §7.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Prack,
    Subscribe,
    Notify,
    Publish,
    Info,
    Refer,
    Message,
    Update,
    Extension(String),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Extension(m) => m,
        }
    }

    /// Parses a method token; `None` if it is not a token.
    pub fn parse(s: &str) -> Option<Method> {
        if s.is_empty() || !s.bytes().all(is_token_char) {
            return None;
        }
        Some(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "PUBLISH" => Method::Publish,
            "INFO" => Method::Info,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "UPDATE" => Method::Update,
            other => Method::Extension(other.to_owned()),
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3261 `token` characters.
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// What is wrong with a header value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    #[error("{0}")]
    Uri(#[from] UriError),
    #[error("bad sent-protocol (expected SIP/2.0/<transport>)")]
    BadProtocol,
    #[error("bad parameter")]
    BadParam,
    #[error("unterminated quoted string")]
    Unterminated,
    #[error("missing '>'")]
    NoClosingBracket,
    #[error("bad display name")]
    BadDisplayName,
    #[error("bad sequence number")]
    BadNumber,
    #[error("bad method")]
    BadMethod,
    #[error("empty value")]
    Empty,
    #[error("not word[@word]")]
    BadCallId,
}

/// Parses `;a=b;c="q"` parameters after a header value. Quoted values keep their quotes.
fn parse_header_params(s: &str) -> Result<Vec<Param>, ValueError> {
    let mut params = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        rest = rest.strip_prefix(';').ok_or(ValueError::BadParam)?.trim_start();
        let name_end = rest.find(|c: char| !(c.is_ascii() && is_token_char(c as u8))).unwrap_or(rest.len());
        let name = &rest[..name_end];
        if name.is_empty() {
            return Err(ValueError::BadParam);
        }
        rest = rest[name_end..].trim_start();
        let mut value = None;
        if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            if after.starts_with('"') {
                let end = quoted_end(after).ok_or(ValueError::Unterminated)?;
                value = Some(after[..end].to_owned());
                rest = after[end..].trim_start();
            } else {
                let end = after.find(|c: char| c == ';' || c.is_ascii_whitespace()).unwrap_or(after.len());
                let v = &after[..end];
                let valid = !v.is_empty() && v.bytes().all(|b| is_token_char(b) || b"[]:".contains(&b));
                if !valid {
                    return Err(ValueError::BadParam);
                }
                value = Some(v.to_owned());
                rest = after[end..].trim_start();
            }
        }
        params.push(Param { name: name.to_owned(), value });
    }
    Ok(params)
}

/// The byte index just past the closing quote of a quoted string starting at `s[0] == '"'`.
pub(crate) fn quoted_end(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// A Via entry: `SIP/2.0/UDP host:port;branch=z9hG4bK...;rport;received=...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, `TLS`, `SCTP`, `WS`..., uppercased.
    pub transport: String,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Vec<Param>,
}

impl Via {
    pub fn parse(s: &str) -> Result<Via, ValueError> {
        let s = s.trim();
        // sent-protocol = "SIP" SLASH "2.0" SLASH transport, where SLASH allows whitespace.
        let mut rest = s;
        let mut protocol = Vec::with_capacity(3);
        for i in 0..3 {
            rest = rest.trim_start();
            let end =
                rest.find(|c: char| c == '/' || c.is_ascii_whitespace() || (i == 2 && c == ';')).unwrap_or(rest.len());
            protocol.push(&rest[..end]);
            rest = rest[end..].trim_start();
            if i < 2 {
                rest = rest.strip_prefix('/').ok_or(ValueError::BadProtocol)?;
            }
        }
        // Any version parses (a SIP/7.0 request is answered 505 with its Vias); we write 2.0.
        let version_ok = !protocol[1].is_empty() && protocol[1].bytes().all(is_token_char);
        if !protocol[0].eq_ignore_ascii_case("SIP") || !version_ok || protocol[2].is_empty() {
            return Err(ValueError::BadProtocol);
        }
        if !protocol[2].bytes().all(is_token_char) {
            return Err(ValueError::BadProtocol);
        }
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (rest[..i].trim(), &rest[i..]),
            None => (rest.trim(), ""),
        };
        // sent-by = host [ COLON port ], whitespace allowed around the colon.
        let sent_by: String = sent_by.split(':').map(str::trim).collect::<Vec<_>>().join(":");
        let sent_by = if sent_by.starts_with('[') { sent_by } else { sent_by.replace(' ', "") };
        if sent_by.is_empty() || sent_by.contains(char::is_whitespace) {
            return Err(ValueError::Uri(UriError::BadHost));
        }
        let (host, port) = split_host_port(&sent_by)?;
        Ok(Via { transport: protocol[2].to_ascii_uppercase(), host, port, params: parse_header_params(params)? })
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        find_param(&self.params, name)
    }
    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").and_then(|p| p.value.as_deref())
    }
    /// `received=`.
    pub fn received(&self) -> Option<&str> {
        self.param("received").and_then(|p| p.value.as_deref())
    }
    /// `rport`: `None` absent, `Some(None)` asked for (RFC 3581), `Some(Some(p))` filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|p| p.value.as_deref().and_then(|v| v.parse().ok()))
    }
    /// Sets (or adds) a parameter.
    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        match self.params.iter_mut().find(|p| p.name.eq_ignore_ascii_case(name)) {
            Some(p) => p.value = value,
            None => {
                // Exactly one more: a header kept for long (a dialog's From/To) holds one
                // or two parameters, not the four a plain push would make room for.
                self.params.reserve_exact(1);
                self.params.push(Param { name: name.to_owned(), value })
            }
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write_params(f, &self.params)
    }
}

/// `"Display" <uri>;params` or `uri;params`: From, To, Contact, Route, Record-Route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted (escapes resolved).
    pub display: Option<String>,
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, `q`...), values as written.
    pub params: Vec<Param>,
}

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr { display: None, uri, params: Vec::new() }
    }

    pub fn parse(s: &str) -> Result<NameAddr, ValueError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ValueError::Empty);
        }
        let (display, rest) = if s.starts_with('"') {
            let end = quoted_end(s).ok_or(ValueError::Unterminated)?;
            let rest = s[end..].trim_start();
            if !rest.starts_with('<') {
                return Err(ValueError::BadDisplayName);
            }
            (Some(unquote(&s[..end])), rest)
        } else if let Some(lt) = s.find('<') {
            let name = s[..lt].trim();
            // An unquoted display name is *(token LWS).
            if !name.split_ascii_whitespace().all(|w| w.bytes().all(is_token_char)) {
                return Err(ValueError::BadDisplayName);
            }
            ((!name.is_empty()).then(|| name.split_ascii_whitespace().collect::<Vec<_>>().join(" ")), &s[lt..])
        } else {
            (None, s)
        };
        if let Some(inner) = rest.strip_prefix('<') {
            let end = inner.find('>').ok_or(ValueError::NoClosingBracket)?;
            let uri = Uri::parse(inner[..end].trim())?;
            let params = parse_header_params(&inner[end + 1..])?;
            return Ok(NameAddr { display, uri, params });
        }
        // addr-spec: the URI has no parameters here; what follows `;` is the header's.
        let (uri, params) = match rest.find(';') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        // (Nor `>`: without `<`, it cannot be written back as a name-addr that reads the same.)
        if uri.contains(['?', ',', '>']) {
            return Err(ValueError::Uri(UriError::BadParam));
        }
        Ok(NameAddr { display, uri: Uri::parse(uri.trim())?, params: parse_header_params(params)? })
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        find_param(&self.params, name)
    }
    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").and_then(|p| p.value.as_deref())
    }
    /// Sets (or adds) a parameter.
    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        match self.params.iter_mut().find(|p| p.name.eq_ignore_ascii_case(name)) {
            Some(p) => p.value = value,
            None => {
                // Exactly one more: a header kept for long (a dialog's From/To) holds one
                // or two parameters, not the four a plain push would make room for.
                self.params.reserve_exact(1);
                self.params.push(Param { name: name.to_owned(), value })
            }
        }
    }
}

/// Resolves a quoted string's quotes and backslash escapes.
pub fn unquote(s: &str) -> String {
    let inner = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s);
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(display) = &self.display {
            f.write_str("\"")?;
            for c in display.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

/// `CSeq: 4711 INVITE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(s: &str) -> Result<CSeq, ValueError> {
        let mut parts = s.split_ascii_whitespace();
        let (Some(seq), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ValueError::BadNumber);
        };
        // RFC 3261 §8.1.1.5: the number must be below 2**31.
        if seq.len() > 10 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ValueError::BadNumber);
        }
        let seq: u32 = seq.parse().map_err(|_| ValueError::BadNumber)?;
        if seq >= 1 << 31 {
            return Err(ValueError::BadNumber);
        }
        Ok(CSeq { seq, method: Method::parse(method).ok_or(ValueError::BadMethod)? })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzz/ (sip_datagram): `From: http://host>;tag=1` read as an opaque URI ending in
    /// `>`, written back as `<http://host>>;tag=1`, which did not read back.
    #[test]
    fn an_addr_spec_with_a_closing_bracket_is_refused() {
        assert_eq!(NameAddr::parse("http://.ww.example.com>;tag=3234233"), Err(ValueError::Uri(UriError::BadParam)));
        let fine = NameAddr::parse("http://.ww.example.com;tag=3234233").unwrap();
        assert_eq!(NameAddr::parse(&fine.to_string()), Ok(fine));
    }

    #[test]
    fn vias() {
        let v =
            Via::parse("SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport;received=192.0.2.1").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::Name("pc33.atlanta.com".into()));
        assert_eq!(v.port, Some(5066));
        assert_eq!(v.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some("192.0.2.1"));
        assert_eq!(v.to_string(), "SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport;received=192.0.2.1");
        let v = Via::parse("SIP / 2.0 / TCP [2001:db8::9:1]:5060 ; branch = z9hG4bKas3 ; rport=5061").unwrap();
        assert_eq!(v.transport, "TCP");
        assert_eq!(v.host, Host::V6("2001:db8::9:1".parse().unwrap()));
        assert_eq!(v.rport(), Some(Some(5061)));
        assert_eq!(v.branch(), Some("z9hG4bKas3"));
        let v = Via::parse("SIP/2.0/UDP 192.0.2.1 ;received=[2001:db8::9:255];branch=z9").unwrap();
        assert_eq!(v.received(), Some("[2001:db8::9:255]"));
        assert!(Via::parse("SIP/3.0/UDP host").is_ok(), "another version parses; the request is answered 505");
        assert!(Via::parse("SIP/ /UDP host").is_err());
        assert!(Via::parse("SIP/2.0 host").is_err());
        assert!(Via::parse("SIP/2.0/UDP").is_err());
        assert!(Via::parse("SIP/2.0/UDP host;branch=\"unterminated").is_err());
    }

    #[test]
    fn name_addrs() {
        let n = NameAddr::parse("\"Bob \\\"B\\\" Smith\" <sip:bob@biloxi.com;transport=udp>;tag=a6c85cf").unwrap();
        assert_eq!(n.display.as_deref(), Some("Bob \"B\" Smith"));
        assert_eq!(n.uri.transport().as_deref(), Some("udp"));
        assert_eq!(n.tag(), Some("a6c85cf"));
        assert_eq!(n.to_string(), "\"Bob \\\"B\\\" Smith\" <sip:bob@biloxi.com;transport=udp>;tag=a6c85cf");
        let n = NameAddr::parse("sip:alice@atlanta.com;tag=1928301774").unwrap();
        assert_eq!(n.tag(), Some("1928301774"));
        assert!(n.uri.params.is_empty(), "addr-spec params belong to the header");
        let n = NameAddr::parse("Anonymous Caller  <sip:c8oqz84zk7z@privacy.org>;tag=hyh8").unwrap();
        assert_eq!(n.display.as_deref(), Some("Anonymous Caller"));
        let n = NameAddr::parse("<sip:[2001:db8::10]:5060>;expires=3600;q=0.7").unwrap();
        assert_eq!(n.param("q").unwrap().value.as_deref(), Some("0.7"));
        assert!(NameAddr::parse("\"unterminated <sip:a@b>").is_err());
        assert!(NameAddr::parse("<sip:a@b").is_err());
        assert!(NameAddr::parse("").is_err());
    }

    #[test]
    fn cseqs() {
        assert_eq!(CSeq::parse("4711 INVITE").unwrap(), CSeq { seq: 4711, method: Method::Invite });
        assert_eq!(CSeq::parse(" 1   fooBAR ").unwrap().method, Method::Extension("fooBAR".into()));
        assert!(CSeq::parse("2147483648 INVITE").is_err());
        assert!(CSeq::parse("36893488147419103232 INVITE").is_err());
        assert!(CSeq::parse("-1 INVITE").is_err());
        assert!(CSeq::parse("1").is_err());
        assert!(CSeq::parse("1 INVITE x").is_err());
    }
}
