//! URIs: `sip:`, `sips:` (RFC 3261 §19.1), `tel:` (RFC 3966) and, kept opaque, any other
//! scheme (a Request-URI with an unknown scheme parses, and the application answers 416).
//!
//! Parts are kept as written (escapes included), so a URI serialises back to the same text;
//! [`Uri::equivalent`] compares them as RFC 3261 §19.1.4 says (escapes decoded, host and
//! parameter names case-insensitive, `user ttl method maddr transport` must match when either
//! side has them). IPv6 hosts are written in brackets (RFC 5118).

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The scheme of a URI.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Any other scheme, as written; the rest of the URI is kept in [`Uri::opaque`].
    Other(String),
}

impl Scheme {
    pub fn as_str(&self) -> &str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
            Scheme::Other(s) => s,
        }
    }
}

/// The host of a SIP URI or a Via.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A host name, as written.
    Name(String),
    V4(Ipv4Addr),
    /// Written `[v6]` in URIs and Vias.
    V6(Ipv6Addr),
    /// `tel:` and other schemes have none.
    None,
}

impl Host {
    /// Parses a host: a bracketed IPv6 reference, a dotted IPv4 address, or a host name.
    pub fn parse(s: &str) -> Result<Host, UriError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(UriError::BadHost)?;
            return inner.parse::<Ipv6Addr>().map(Host::V6).map_err(|_| UriError::BadHost);
        }
        if s.is_empty() {
            return Err(UriError::BadHost);
        }
        if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return s.parse::<Ipv4Addr>().map(Host::V4).map_err(|_| UriError::BadHost);
        }
        let valid = s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !s.starts_with(['-', '.'])
            && !s.contains("..");
        if valid {
            Ok(Host::Name(s.to_owned()))
        } else {
            Err(UriError::BadHost)
        }
    }

    /// The host for an address.
    pub fn from_ip(ip: IpAddr) -> Host {
        match ip {
            IpAddr::V4(a) => Host::V4(a),
            IpAddr::V6(a) => Host::V6(a),
        }
    }

    /// The address, when the host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::V4(a) => Some(IpAddr::V4(*a)),
            Host::V6(a) => Some(IpAddr::V6(*a)),
            _ => None,
        }
    }

    fn same(&self, other: &Host) -> bool {
        match (self, other) {
            (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Host {
        match ip {
            IpAddr::V4(a) => Host::V4(a),
            IpAddr::V6(a) => Host::V6(a),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
            Host::None => Ok(()),
        }
    }
}

/// `;name` or `;name=value`, as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Param {
    pub name: String,
    pub value: Option<String>,
}

impl Param {
    pub fn new(name: impl Into<String>, value: Option<impl Into<String>>) -> Param {
        Param { name: name.into(), value: value.map(Into::into) }
    }
}

/// Finds a parameter by name, case-insensitively.
pub fn find_param<'a>(params: &'a [Param], name: &str) -> Option<&'a Param> {
    params.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// Writes `;a=b;c`.
pub(crate) fn write_params(f: &mut fmt::Formatter<'_>, params: &[Param]) -> fmt::Result {
    for p in params {
        match &p.value {
            Some(v) => write!(f, ";{}={v}", p.name)?,
            None => write!(f, ";{}", p.name)?,
        }
    }
    Ok(())
}

/// What is wrong with a URI.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    #[error("no scheme")]
    NoScheme,
    #[error("bad host")]
    BadHost,
    #[error("bad port")]
    BadPort,
    #[error("bad user part")]
    BadUser,
    #[error("bad escape sequence")]
    BadEscape,
    #[error("bad parameter")]
    BadParam,
    #[error("bad telephone number")]
    BadNumber,
    #[error("whitespace in URI")]
    Whitespace,
}

/// A URI; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Uri {
    pub scheme: Scheme,
    /// The user part (SIP) or the number (tel), escapes as written.
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Vec<Param>,
    /// `?name=value&...`, as written.
    pub headers: Vec<(String, String)>,
    /// Everything after `scheme:` for [`Scheme::Other`].
    pub opaque: Option<String>,
}

fn check_escapes(s: &str) -> Result<(), UriError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)) {
                return Err(UriError::BadEscape);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Decodes `%HH` escapes (RFC 3261 §19.1.4 compares URIs unescaped). Bytes that do not form
/// UTF-8 are replaced.
pub fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (b.get(i + 1).and_then(|c| hex(*c)), b.get(i + 2).and_then(|c| hex(*c))) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn parse_params(s: &str) -> Result<Vec<Param>, UriError> {
    let mut params = Vec::new();
    for part in s.split(';') {
        if part.is_empty() {
            return Err(UriError::BadParam);
        }
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (part, None),
        };
        if name.is_empty()
            || !name.bytes().all(is_param_char)
            || value.is_some_and(|v| !v.bytes().all(is_param_value_char))
        {
            return Err(UriError::BadParam);
        }
        check_escapes(part)?;
        params.push(Param { name: name.to_owned(), value: value.map(str::to_owned) });
    }
    Ok(params)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}
fn is_param_char(b: u8) -> bool {
    is_unreserved(b) || b"[]/:&+$%".contains(&b)
}
fn is_param_value_char(b: u8) -> bool {
    // IPv6 references in maddr/received need the brackets and colons.
    is_param_char(b)
}
fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || b"&=+$,;?/%".contains(&b)
}
fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || b"&=+$,%".contains(&b)
}

impl Uri {
    /// A `sip:` URI with a user (or none) and a host.
    pub fn sip(user: Option<&str>, host: Host, port: Option<u16>) -> Uri {
        Uri {
            scheme: Scheme::Sip,
            user: user.map(str::to_owned),
            password: None,
            host,
            port,
            params: Vec::new(),
            headers: Vec::new(),
            opaque: None,
        }
    }

    /// Parses a URI. Whitespace anywhere is an error (the caller has cut the URI out).
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        if s.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(UriError::Whitespace);
        }
        let (scheme, rest) = s.split_once(':').ok_or(UriError::NoScheme)?;
        if scheme.is_empty()
            || !scheme.as_bytes()[0].is_ascii_alphabetic()
            || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(UriError::NoScheme);
        }
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "sip" => Scheme::Sip,
            "sips" => Scheme::Sips,
            "tel" => Scheme::Tel,
            _ => {
                return Ok(Uri {
                    scheme: Scheme::Other(scheme.to_owned()),
                    user: None,
                    password: None,
                    host: Host::None,
                    port: None,
                    params: Vec::new(),
                    headers: Vec::new(),
                    opaque: Some(rest.to_owned()),
                })
            }
        };
        if scheme == Scheme::Tel {
            return Self::parse_tel(rest);
        }
        // The user part may contain `;` and `?` but never a raw `@`: the first `@` ends it.
        // After the host, the first `?` starts the headers.
        let (userinfo, after_user) = match rest.find('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (hostport_params, headers) = match after_user.split_once('?') {
            Some((b, h)) => (b, Some(h)),
            None => (after_user, None),
        };
        let (user, password) = match userinfo {
            Some(info) => {
                let (user, password) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                if user.is_empty() || !user.bytes().all(is_user_char) {
                    return Err(UriError::BadUser);
                }
                check_escapes(user)?;
                if let Some(p) = password {
                    if !p.bytes().all(is_password_char) {
                        return Err(UriError::BadUser);
                    }
                    check_escapes(p)?;
                }
                (Some(user.to_owned()), password.map(str::to_owned))
            }
            None => (None, None),
        };
        let (hostport, params) = match hostport_params.split_once(';') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport_params, None),
        };
        let (host, port) = split_host_port(hostport)?;
        let params = match params {
            Some(p) => parse_params(p)?,
            None => Vec::new(),
        };
        let headers = match headers {
            Some(h) if !h.is_empty() => h
                .split('&')
                .map(|pair| {
                    let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
                    check_escapes(pair).map(|_| (n.to_owned(), v.to_owned()))
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => Vec::new(),
        };
        Ok(Uri { scheme, user, password, host, port, params, headers, opaque: None })
    }

    /// `tel:+1-201-555-0123;phone-context=...` (RFC 3966): the number goes in `user`.
    fn parse_tel(rest: &str) -> Result<Uri, UriError> {
        let (number, params) = match rest.split_once(';') {
            Some((n, p)) => (n, Some(p)),
            None => (rest, None),
        };
        let digits = number.strip_prefix('+').unwrap_or(number);
        let valid = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_hexdigit() || b"-.()*#".contains(&b))
            && digits.bytes().any(|b| b.is_ascii_hexdigit() || b == b'*' || b == b'#');
        if !valid {
            return Err(UriError::BadNumber);
        }
        let params = match params {
            Some(p) => parse_params(p)?,
            None => Vec::new(),
        };
        Ok(Uri {
            scheme: Scheme::Tel,
            user: Some(number.to_owned()),
            password: None,
            host: Host::None,
            port: None,
            params,
            headers: Vec::new(),
            opaque: None,
        })
    }

    /// A URI parameter by name (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&Param> {
        find_param(&self.params, name)
    }

    /// The user part with escapes decoded.
    pub fn user_unescaped(&self) -> Option<Cow<'_, str>> {
        self.user.as_deref().map(unescape)
    }

    /// `transport=` lowercased, if any.
    pub fn transport(&self) -> Option<String> {
        self.param("transport").and_then(|p| p.value.as_ref()).map(|v| v.to_ascii_lowercase())
    }

    /// Whether two URIs are equal by RFC 3261 §19.1.4.
    pub fn equivalent(&self, other: &Uri) -> bool {
        if !self.scheme.as_str().eq_ignore_ascii_case(other.scheme.as_str()) {
            return false;
        }
        if let (Some(a), Some(b)) = (&self.opaque, &other.opaque) {
            return a == b;
        }
        if self.scheme == Scheme::Tel {
            let digits = |u: &Uri| -> String {
                u.user
                    .as_deref()
                    .unwrap_or("")
                    .chars()
                    .filter(|c| !"-.()".contains(*c))
                    .collect::<String>()
                    .to_ascii_lowercase()
            };
            return digits(self) == digits(other) && params_equivalent(&self.params, &other.params, true);
        }
        let user_eq = match (&self.user, &other.user) {
            (Some(a), Some(b)) => unescape(a) == unescape(b),
            (None, None) => true,
            _ => false,
        };
        let password_eq = match (&self.password, &other.password) {
            (Some(a), Some(b)) => unescape(a) == unescape(b),
            (None, None) => true,
            _ => false,
        };
        // Headers compare as a multiset of (name, unescaped value), sorted rather than searched.
        let headers_eq = self.headers.len() == other.headers.len() && {
            let sorted = |u: &Uri| {
                let mut all: Vec<(String, String)> =
                    u.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), unescape(v).into_owned())).collect();
                all.sort_unstable();
                all
            };
            sorted(self) == sorted(other)
        };
        user_eq
            && password_eq
            && self.host.same(&other.host)
            && self.port == other.port
            && params_equivalent(&self.params, &other.params, false)
            && headers_eq
    }
}

/// §19.1.4: `user ttl method maddr transport` must match if either has them; any other
/// parameter is compared only when both have it. (For tel URIs, every parameter must match.)
/// Each side's parameters are looked up by name in a map (first of a name, as [`find_param`]):
/// a URI may carry thousands of them.
fn params_equivalent(a: &[Param], b: &[Param], all: bool) -> bool {
    const MUST: [&str; 5] = ["user", "ttl", "method", "maddr", "transport"];
    let value = |p: &Param| p.value.as_deref().map(|v| unescape(v).to_ascii_lowercase());
    let (in_a, in_b) = (params_by_name(a), params_by_name(b));
    for p in a {
        match in_b.get(&p.name.to_ascii_lowercase()) {
            Some(q) if value(p) != value(q) => return false,
            None if all || MUST.iter().any(|m| m.eq_ignore_ascii_case(&p.name)) => return false,
            _ => {}
        }
    }
    for q in b {
        if !in_a.contains_key(&q.name.to_ascii_lowercase())
            && (all || MUST.iter().any(|m| m.eq_ignore_ascii_case(&q.name)))
        {
            return false;
        }
    }
    true
}

/// Parameters by lowercased name, the first of each name.
fn params_by_name(params: &[Param]) -> std::collections::HashMap<String, &Param> {
    let mut map = std::collections::HashMap::with_capacity(params.len());
    for p in params {
        map.entry(p.name.to_ascii_lowercase()).or_insert(p);
    }
    map
}

/// Splits `host[:port]`, with `[v6]:port` for IPv6.
pub(crate) fn split_host_port(s: &str) -> Result<(Host, Option<u16>), UriError> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']').ok_or(UriError::BadHost)?;
        let rest = &s[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return Err(UriError::BadHost),
        };
        (&s[..=end], port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| UriError::BadPort)?)
        }
        Some(_) => return Err(UriError::BadPort),
        None => None,
    };
    Ok((Host::parse(host)?, port))
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme.as_str())?;
        if let Some(opaque) = &self.opaque {
            return f.write_str(opaque);
        }
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(password) = &self.password {
                write!(f, ":{password}")?;
            }
            if self.scheme != Scheme::Tel {
                f.write_str("@")?;
            }
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write_params(f, &self.params)?;
        for (i, (n, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{n}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Uri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Uri, UriError> {
        Uri::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        Uri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn sip_uris() {
        let u = uri("sip:alice:secret@atlanta.com:5070;transport=tcp;lr?subject=project&priority=urgent");
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, Host::Name("atlanta.com".into()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport().as_deref(), Some("tcp"));
        assert!(u.param("LR").is_some());
        assert_eq!(u.headers, [("subject".into(), "project".into()), ("priority".into(), "urgent".into())]);
        assert_eq!(u.to_string(), "sip:alice:secret@atlanta.com:5070;transport=tcp;lr?subject=project&priority=urgent");
    }

    #[test]
    fn a_user_part_may_hold_semicolons() {
        let u = uri("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(u.host, Host::Name("example.com".into()));
        assert!(u.params.is_empty());
    }

    #[test]
    fn ipv6_and_ipv4_hosts() {
        let u = uri("sip:[2001:db8::10]:5070");
        assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.to_string(), "sip:[2001:db8::10]:5070");
        let u = uri("sip:user@[::ffff:192.0.2.10];maddr=[2001:db8::20]");
        assert!(matches!(u.host, Host::V6(_)));
        assert_eq!(u.param("maddr").unwrap().value.as_deref(), Some("[2001:db8::20]"));
        assert_eq!(uri("sip:192.0.2.1:5060").host, Host::V4("192.0.2.1".parse().unwrap()));
        assert_eq!(Uri::parse("sip:2001:db8::10").unwrap_err(), UriError::BadPort);
        assert!(Uri::parse("sip:[2001:db8::10").is_err());
        assert!(Uri::parse("sip:host:99999").is_err());
        assert!(Uri::parse("sip:300.1.1.1").is_err());
    }

    #[test]
    fn tel_sips_and_other_schemes() {
        let u = uri("tel:+1-201-555-0123;phone-context=example.com");
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user.as_deref(), Some("+1-201-555-0123"));
        assert_eq!(u.to_string(), "tel:+1-201-555-0123;phone-context=example.com");
        assert_eq!(uri("SIPS:bob@biloxi.com").scheme, Scheme::Sips);
        let u = uri("http://www.example.com/a?b");
        assert_eq!(u.scheme, Scheme::Other("http".into()));
        assert_eq!(uri("Urn:X").to_string(), "Urn:X", "an unknown scheme keeps its spelling");
        assert_eq!(u.to_string(), "http://www.example.com/a?b");
        assert!(Uri::parse("tel:abc-xyz").is_err());
        assert!(Uri::parse("nocolon").is_err());
        assert!(Uri::parse("sip:bad host").is_err());
    }

    #[test]
    fn escapes_are_checked_and_decoded() {
        assert!(Uri::parse("sip:%zz@host").is_err());
        assert!(Uri::parse("sip:a%2@host").is_err());
        assert_eq!(uri("sip:%61lice@atlanta.com").user_unescaped().unwrap(), "alice");
    }

    /// RFC 3261 §19.1.4's examples of equivalent and non-equivalent URIs.
    /// Thousands of parameters and headers compare in one pass each (they were searched for one
    /// by one).
    #[test]
    fn many_parameters_compare_by_map() {
        let params: String = (0..20_000).map(|n| format!(";p{n}={n}")).collect();
        let headers: String = (0..20_000).map(|n| format!("h{n}=v&")).collect();
        let a = uri(&format!("sip:a@b{params}?{}", headers.trim_end_matches('&')));
        let reversed: String = (0..20_000).rev().map(|n| format!(";P{n}={n}")).collect();
        let b = uri(&format!("sip:a@b{reversed}?{}", headers.trim_end_matches('&')));
        assert!(a.equivalent(&b) && b.equivalent(&a));
        let c = uri(&format!("sip:a@b{};p19999=other", &params[..params.len() - ";p19999=19999".len()]));
        assert!(!a.equivalent(&c));
    }

    #[test]
    fn comparison_follows_19_1_4() {
        let same = [
            ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
            ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
            (
                "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
                "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
            ),
            (
                "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
                "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
            ),
        ];
        for (a, b) in same {
            assert!(uri(a).equivalent(&uri(b)), "{a} == {b}");
            assert!(uri(b).equivalent(&uri(a)), "{b} == {a}");
        }
        let different = [
            ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
            ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
            ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
            ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ];
        for (a, b) in different {
            assert!(!uri(a).equivalent(&uri(b)), "{a} != {b}");
        }
    }
}
