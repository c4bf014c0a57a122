//! The caller's identity across chan_sip, both ways.
//!
//! Inbound, `trustrpid`: the caller ID a trusted peer asserts, as chan_sip's `get_rpid` and
//! `get_pai` read it from an INVITE. `Remote-Party-ID: ["Name"|Name] <sip:number@host>[;party=
//! calling;privacy=...;screen=...]` first; without one, `P-Asserted-Identity: ["Name"]
//! <sip:number@host>` (also `sips:`; an `anonymous@anonymous.invalid` identity keeps the number)
//! with `Privacy:`. The header counts only when it differs from what the call has already
//! (From's name and number, the peer's `callingpres`), exactly as chan_sip's "only return true
//! if the supplied caller id is different": then it is the caller ID with its presentation.
//!
//! Outbound: the From of our INVITE (anonymous when the caller's presentation is restricted, as
//! chan_sip's `initreqprep`) and, with `sendrpid`, the Remote-Party-ID or P-Asserted-Identity
//! (and `Privacy: id`) chan_sip's `add_rpid` adds, as `trust_id_outbound` allows.

use starling_core::config::{parse_bool, ConfigError, Variable};
use starling_core::frame::{CallerId, Presentation};
use starling_sip::{HeaderName, Host, NameAddr, Request, Scheme};

const ALLOWED_NOT_SCREENED: Presentation = Presentation::ALLOWED_NOT_SCREENED;
const ALLOWED_PASSED_SCREEN: Presentation = Presentation::ALLOWED_PASSED_SCREEN;
const PROHIB_NOT_SCREENED: Presentation = Presentation::PROHIB_NOT_SCREENED;
const PROHIB_PASSED_SCREEN: Presentation = Presentation::PROHIB_PASSED_SCREEN;

/// chan_sip's `FROMDOMAIN_INVALID`.
const ANONYMOUS_DOMAIN: &str = "anonymous.invalid";

/// `sendrpid`: the header that presents the caller on our INVITEs (chan_sip's `SIP_SENDRPID_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SendRpid {
    #[default]
    No,
    /// `yes` or `rpid`: Remote-Party-ID.
    Rpid,
    /// `pai`: P-Asserted-Identity.
    Pai,
}

impl SendRpid {
    pub fn parse(var: &Variable) -> Result<SendRpid, ConfigError> {
        match var.value.trim().to_ascii_lowercase().as_str() {
            "pai" => Ok(SendRpid::Pai),
            "rpid" => Ok(SendRpid::Rpid),
            v => match parse_bool(v) {
                Some(true) => Ok(SendRpid::Rpid),
                Some(false) => Ok(SendRpid::No),
                None => Err(var.error("expected yes, rpid, pai or no")),
            },
        }
    }
}

/// `trust_id_outbound`: what `sendrpid` tells a peer of a caller whose presentation is
/// restricted (chan_sip's `SIP_PAGE2_TRUST_ID_OUTBOUND_*`; `legacy` by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TrustIdOutbound {
    /// P-Asserted-Identity is the anonymous identity; Remote-Party-ID names the caller at
    /// `anonymous.invalid` with `privacy=full`.
    #[default]
    Legacy,
    /// No header at all.
    No,
    /// The caller's identity at our address, and `Privacy: id` with P-Asserted-Identity.
    Yes,
}

impl TrustIdOutbound {
    pub fn parse(var: &Variable) -> Result<TrustIdOutbound, ConfigError> {
        match var.value.trim().to_ascii_lowercase().as_str() {
            "legacy" => Ok(TrustIdOutbound::Legacy),
            v => match parse_bool(v) {
                Some(true) => Ok(TrustIdOutbound::Yes),
                Some(false) => Ok(TrustIdOutbound::No),
                None => Err(var.error("expected legacy, yes or no")),
            },
        }
    }
}

/// How our INVITE presents the caller: its From (without tag), the user of From and Contact,
/// and the identity headers, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub from: String,
    pub user: String,
    pub headers: Vec<(HeaderName, String)>,
}

/// The peer's settings [`identity`] follows.
#[derive(Clone, Copy, Debug, Default)]
pub struct Presenting<'a> {
    pub from_user: Option<&'a str>,
    pub from_domain: Option<&'a str>,
    pub sendrpid: SendRpid,
    pub trust_id_outbound: TrustIdOutbound,
}

/// chan_sip's `initreqprep` From and `add_rpid` for an INVITE presenting `caller`; `our_host`
/// is our address as the peer is told it.
pub fn identity(caller: &CallerId, peer: Presenting<'_>, our_host: &str) -> Identity {
    let allowed = caller.presentation.is_allowed();
    // "Even if we are using RPID, we shouldn't leak information in the From if the user wants
    // their callerid restricted"; fromuser and fromdomain still win.
    let (user, name, domain) = match allowed {
        true if caller.number.is_empty() => ("starling", caller.name.as_str(), our_host),
        true => (caller.number.as_str(), caller.name.as_str(), our_host),
        false => ("anonymous", "Anonymous", ANONYMOUS_DOMAIN),
    };
    let user = peer.from_user.unwrap_or(user);
    let domain = peer.from_domain.unwrap_or(domain);
    let display = if name.is_empty() { String::new() } else { format!("\"{}\" ", name.replace('"', "")) };
    let from = format!("{display}<sip:{user}@{domain}>");
    let mut headers = Vec::new();
    let trust = peer.trust_id_outbound;
    if peer.sendrpid != SendRpid::No && !caller.number.is_empty() && (allowed || trust != TrustIdOutbound::No) {
        let lid_name = escape_quoted(if caller.name.is_empty() { &caller.number } else { &caller.name });
        let lid_num = escape_user(&caller.number);
        // The From's domain, unless the privacy made it anonymous.invalid and the peer is trusted.
        let domain = if trust == TrustIdOutbound::Yes && domain == ANONYMOUS_DOMAIN { our_host } else { domain };
        let asserted = format!("\"{lid_name}\" <sip:{lid_num}@{domain}>");
        if peer.sendrpid == SendRpid::Pai {
            if trust != TrustIdOutbound::Legacy {
                if !allowed {
                    headers.push((HeaderName::parse("Privacy"), "id".to_owned()));
                }
                headers.push((HeaderName::parse("P-Asserted-Identity"), asserted));
            } else {
                let value = if allowed { asserted } else { "\"Anonymous\" <sip:anonymous@anonymous.invalid>".into() };
                headers.push((HeaderName::parse("P-Asserted-Identity"), value));
            }
        } else {
            let mut value = format!("{asserted};party=calling");
            if let Some((privacy, screen)) = rpid_privacy(caller.presentation) {
                value.push_str(&format!(";privacy={privacy};screen={screen}"));
            }
            headers.push((HeaderName::parse("Remote-Party-ID"), value));
        }
    }
    Identity { from, user: user.to_owned(), headers }
}

/// `add_rpid`'s `privacy=`/`screen=` for a presentation (none for `unavailable`).
fn rpid_privacy(presentation: Presentation) -> Option<(&'static str, &'static str)> {
    match presentation {
        Presentation::ALLOWED_NOT_SCREENED | Presentation::ALLOWED_FAILED_SCREEN => Some(("off", "no")),
        Presentation::ALLOWED_PASSED_SCREEN | Presentation::ALLOWED => Some(("off", "yes")),
        Presentation::PROHIB_NOT_SCREENED | Presentation::PROHIB_FAILED_SCREEN => Some(("full", "no")),
        Presentation::PROHIB_PASSED_SCREEN | Presentation::PROHIB => Some(("full", "yes")),
        Presentation::UNAVAILABLE => None,
        other => Some((if other.is_allowed() { "off" } else { "full" }, "no")),
    }
}

/// `ast_escape_quoted`: `"` and `\` escaped, for a quoted display name.
fn escape_quoted(text: &str) -> String {
    text.chars().fold(String::new(), |mut out, c| {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

/// `ast_uri_encode(.., ast_uri_sip_user)`: what a SIP URI user may not hold, %-escaped.
fn escape_user(user: &str) -> String {
    let mut out = String::new();
    for b in user.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// chan_sip's `get_rpid` parse of a Remote-Party-ID value: the caller ID and its presentation,
/// `None` when it is not of the form chan_sip accepts.
fn parse_rpid(value: &str) -> Option<CallerId> {
    let value = value.trim();
    let (name, rest) = if let Some(quoted) = value.strip_prefix('"') {
        // Quoted (escapes are not dealt with, as in chan_sip).
        let (name, rest) = quoted.split_once('"')?;
        (name, rest.trim_start())
    } else {
        let open = value.find('<')?;
        (value[..open].trim_end_matches(|c: char| (c as u32) < 33), &value[open..])
    };
    let rest = rest.strip_prefix('<')?;
    let (user, rest) = rest.split_once('@')?;
    let number = user.get(..4).filter(|s| s.eq_ignore_ascii_case("sip:")).map(|_| &user[4..])?;
    let (_host, params) = rest.split_once('>')?;
    let mut presentation = ALLOWED_NOT_SCREENED;
    if !params.is_empty() {
        let params = params.strip_prefix(';')?;
        let (mut privacy, mut screen) = ("", "");
        for param in params.split(';') {
            let lower = param.to_ascii_lowercase();
            if lower.starts_with("privacy=") {
                privacy = &param[8..];
            } else if lower.starts_with("screen=") {
                screen = &param[7..];
            }
        }
        let full = privacy.eq_ignore_ascii_case("full");
        if screen.eq_ignore_ascii_case("yes") {
            presentation = if full { PROHIB_PASSED_SCREEN } else { ALLOWED_PASSED_SCREEN };
        } else if screen.eq_ignore_ascii_case("no") {
            presentation = if full { PROHIB_NOT_SCREENED } else { ALLOWED_NOT_SCREENED };
        }
    }
    Some(CallerId { name: name.to_owned(), number: number.to_owned(), presentation })
}

/// chan_sip's `get_pai`: a P-Asserted-Identity value (its first identity), with the request's
/// `Privacy` header; `current` is the number kept for an anonymous identity.
fn parse_pai(value: &str, privacy: Option<&str>, current: &CallerId) -> Option<CallerId> {
    // Of several identities (`<sip:...>, <tel:...>`) the first.
    let first = match value.find('>') {
        Some(end) => &value[..=end],
        None => value,
    };
    let identity = NameAddr::parse(first.trim()).ok()?;
    if !matches!(identity.uri.scheme, Scheme::Sip | Scheme::Sips) {
        return None;
    }
    let number = identity.uri.user_unescaped().map(|u| u.into_owned()).filter(|u| !u.is_empty())?;
    let mut presentation = ALLOWED_NOT_SCREENED;
    let number = if number.eq_ignore_ascii_case("anonymous")
        && matches!(&identity.uri.host, Host::Name(h) if h.eq_ignore_ascii_case("anonymous.invalid"))
    {
        presentation = PROHIB_NOT_SCREENED;
        current.number.clone()
    } else {
        number
    };
    if privacy.is_some_and(|p| !p.trim().is_empty() && !p.trim().eq_ignore_ascii_case("none")) {
        presentation = PROHIB_NOT_SCREENED;
    }
    Some(CallerId { name: identity.display.unwrap_or_default(), number, presentation })
}

/// The caller ID a trusted peer asserts in `request`, with its presentation, when it differs
/// from `current` (what the From header says, with the peer's `callingpres`): chan_sip's
/// `get_rpid` returning true.
pub fn asserted_caller(request: &Request, current: &CallerId) -> Option<CallerId> {
    let rpid = request.headers.get(&HeaderName::parse("Remote-Party-ID")).filter(|v| !v.trim().is_empty());
    let caller = match rpid {
        Some(value) => parse_rpid(value)?,
        None => {
            let pai = request.headers.get(&HeaderName::parse("P-Asserted-Identity"))?;
            parse_pai(pai, request.headers.get(&HeaderName::parse("Privacy")), current)?
        }
    };
    let same = caller.number.eq_ignore_ascii_case(&current.number)
        && caller.name.eq_ignore_ascii_case(&current.name)
        && caller.presentation == current.presentation;
    (!same).then_some(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:100@pbx SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n\
             From: \"Desk\" <sip:200@pbx>;tag=1\r\nTo: <sip:100@pbx>\r\nCall-ID: c@x\r\nCSeq: 1 INVITE\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        );
        match starling_sip::message::parse(text.as_bytes()).unwrap() {
            starling_sip::message::SipMessage::Request(r) => r,
            _ => unreachable!(),
        }
    }

    fn cid(name: &str, number: &str) -> CallerId {
        CallerId { name: name.into(), number: number.into(), presentation: Presentation::default() }
    }

    fn restricted(name: &str, number: &str, presentation: Presentation) -> CallerId {
        CallerId { presentation, ..cid(name, number) }
    }

    /// The forms chan_sip's get_rpid takes and refuses.
    #[test]
    fn remote_party_id_is_read_as_chan_sip_reads_it() {
        let parsed = |v: &str| parse_rpid(v).map(|c| (c.name, c.number, c.presentation.0));
        let boss = "\"Boss\" <sip:555@host>;party=calling;privacy=off;screen=no";
        assert_eq!(parsed(boss), Some(("Boss".into(), "555".into(), 0)));
        assert_eq!(parsed("Boss  <sip:555@host>"), Some(("Boss".into(), "555".into(), 0)));
        assert_eq!(parsed("<SIP:555@host>"), Some(("".into(), "555".into(), 0)));
        assert_eq!(parsed("\"B\" <sip:5@h>;privacy=full;screen=yes"), Some(("B".into(), "5".into(), 0x21)));
        assert_eq!(parsed("\"B\" <sip:5@h>;screen=yes"), Some(("B".into(), "5".into(), 0x01)));
        // Not chan_sip's form: no brackets, no '@', not sip:, junk after '>', unclosed quote.
        for bad in ["sip:555@host", "<sip:555>", "<tel:555@host>", "<sip:5@h> x", "\"Boss <sip:5@h>", "<sip:5@h"] {
            assert_eq!(parsed(bad), None, "{bad}");
        }
    }

    /// Remote-Party-ID first, else P-Asserted-Identity; only an identity other than From's.
    #[test]
    fn the_asserted_caller_replaces_from_only_when_it_differs() {
        let from = cid("Desk", "200");
        let rpid = invite("Remote-Party-ID: \"Boss\" <sip:555@host>;party=calling;privacy=off;screen=no\r\n");
        assert_eq!(asserted_caller(&rpid, &from), Some(cid("Boss", "555")));
        let both = invite("P-Asserted-Identity: \"P\" <sip:777@h>\r\nRemote-Party-ID: <sip:555@h>\r\n");
        assert_eq!(asserted_caller(&both, &from), Some(cid("", "555")));
        let pai = invite("P-Asserted-Identity: \"P\" <sip:777@h>, <tel:777>\r\n");
        assert_eq!(asserted_caller(&pai, &from), Some(cid("P", "777")));
        let anonymous = invite("P-Asserted-Identity: <sip:anonymous@anonymous.invalid>\r\n");
        assert_eq!(asserted_caller(&anonymous, &from), Some(restricted("", "200", PROHIB_NOT_SCREENED)));
        let same = invite("Remote-Party-ID: \"desk\" <sip:200@elsewhere>\r\n");
        assert_eq!(asserted_caller(&same, &from), None);
        let private = invite("P-Asserted-Identity: \"Desk\" <sip:200@h>\r\nPrivacy: id\r\n");
        assert_eq!(asserted_caller(&private, &from), Some(restricted("Desk", "200", PROHIB_NOT_SCREENED)));
        let none = invite("P-Asserted-Identity: \"Desk\" <sip:200@h>\r\nPrivacy: none\r\n");
        assert_eq!(asserted_caller(&none, &from), None);
        let rpid_full = invite("Remote-Party-ID: \"Desk\" <sip:200@h>;privacy=full;screen=yes\r\n");
        assert_eq!(asserted_caller(&rpid_full, &from), Some(restricted("Desk", "200", PROHIB_PASSED_SCREEN)));
        // The peer's callingpres is what the header is compared with.
        let prohibited = restricted("Desk", "200", PROHIB_NOT_SCREENED);
        assert_eq!(asserted_caller(&private, &prohibited), None);
        assert_eq!(asserted_caller(&invite(""), &from), None);
        assert_eq!(asserted_caller(&invite("Remote-Party-ID: garbage\r\n"), &from), None);
    }

    fn presenting(sendrpid: SendRpid, trust_id_outbound: TrustIdOutbound) -> Presenting<'static> {
        Presenting { sendrpid, trust_id_outbound, ..Presenting::default() }
    }

    fn headers(identity: &Identity) -> Vec<(String, String)> {
        identity.headers.iter().map(|(n, v)| (n.to_string(), v.clone())).collect()
    }

    fn h(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    /// An allowed caller: From names them; sendrpid adds chan_sip's add_rpid header.
    #[test]
    fn an_allowed_caller_is_presented_in_from_and_the_sendrpid_header() {
        use {SendRpid::Pai, SendRpid::Rpid, TrustIdOutbound::Legacy};
        let alice = cid("Alice", "100");
        let plain = identity(&alice, presenting(SendRpid::No, Legacy), "10.0.0.1");
        assert_eq!((plain.from.as_str(), plain.user.as_str()), ("\"Alice\" <sip:100@10.0.0.1>", "100"));
        assert!(plain.headers.is_empty());
        let rpid = identity(&alice, presenting(Rpid, Legacy), "10.0.0.1");
        assert_eq!(
            headers(&rpid),
            [h("Remote-Party-ID", "\"Alice\" <sip:100@10.0.0.1>;party=calling;privacy=off;screen=no")]
        );
        let pai = identity(&alice, presenting(Pai, TrustIdOutbound::No), "10.0.0.1");
        assert_eq!(headers(&pai), [h("P-Asserted-Identity", "\"Alice\" <sip:100@10.0.0.1>")]);
        // No name: From without one, the header's name is the number; no number: no header.
        let bare = identity(&cid("", "1 2\""), presenting(Pai, Legacy), "h");
        assert_eq!(bare.from, "<sip:1 2\"@h>");
        assert_eq!(headers(&bare), [h("P-Asserted-Identity", "\"1 2\\\"\" <sip:1%202%22@h>")]);
        let nobody = identity(&cid("Desk", ""), presenting(Rpid, Legacy), "h");
        assert_eq!((nobody.from.as_str(), nobody.headers.len()), ("\"Desk\" <sip:starling@h>", 0));
        let screened = identity(&restricted("A", "1", Presentation::ALLOWED), presenting(Rpid, Legacy), "h");
        assert_eq!(headers(&screened), [h("Remote-Party-ID", "\"A\" <sip:1@h>;party=calling;privacy=off;screen=yes")]);
    }

    /// A restricted caller: From is anonymous always; the header as trust_id_outbound says.
    #[test]
    fn a_restricted_caller_is_anonymous_in_from_and_private_in_the_header() {
        use {SendRpid::Pai, SendRpid::Rpid, TrustIdOutbound::Legacy, TrustIdOutbound::Yes};
        let alice = restricted("Alice", "100", PROHIB_NOT_SCREENED);
        let anonymous = "\"Anonymous\" <sip:anonymous@anonymous.invalid>";
        let plain = identity(&alice, presenting(SendRpid::No, Legacy), "10.0.0.1");
        assert_eq!((plain.from.as_str(), plain.user.as_str(), plain.headers.len()), (anonymous, "anonymous", 0));
        let pai = identity(&alice, presenting(Pai, Yes), "10.0.0.1");
        assert_eq!(pai.from, anonymous);
        assert_eq!(headers(&pai), [h("Privacy", "id"), h("P-Asserted-Identity", "\"Alice\" <sip:100@10.0.0.1>")]);
        let legacy = identity(&alice, presenting(Pai, Legacy), "10.0.0.1");
        assert_eq!(headers(&legacy), [h("P-Asserted-Identity", anonymous)]);
        assert!(identity(&alice, presenting(Pai, TrustIdOutbound::No), "10.0.0.1").headers.is_empty());
        assert!(identity(&alice, presenting(Rpid, TrustIdOutbound::No), "10.0.0.1").headers.is_empty());
        let rpid = identity(&alice, presenting(Rpid, Legacy), "10.0.0.1");
        let value = "\"Alice\" <sip:100@anonymous.invalid>;party=calling;privacy=full;screen=no";
        assert_eq!(headers(&rpid), [h("Remote-Party-ID", value)]);
        let rpid = identity(&restricted("A", "1", PROHIB_PASSED_SCREEN), presenting(Rpid, Yes), "10.0.0.1");
        assert_eq!(
            headers(&rpid),
            [h("Remote-Party-ID", "\"A\" <sip:1@10.0.0.1>;party=calling;privacy=full;screen=yes")]
        );
        let unavailable = identity(&restricted("A", "1", Presentation::UNAVAILABLE), presenting(Rpid, Yes), "h");
        assert_eq!(headers(&unavailable), [h("Remote-Party-ID", "\"A\" <sip:1@h>;party=calling")]);
        // fromuser and fromdomain still win over the anonymous From, and name the header's domain.
        let trunk =
            Presenting { from_user: Some("trunk"), from_domain: Some("example.com"), ..presenting(Rpid, Legacy) };
        let id = identity(&alice, trunk, "10.0.0.1");
        assert_eq!((id.from.as_str(), id.user.as_str()), ("\"Anonymous\" <sip:trunk@example.com>", "trunk"));
        assert_eq!(
            headers(&id),
            [h("Remote-Party-ID", "\"Alice\" <sip:100@example.com>;party=calling;privacy=full;screen=no")]
        );
    }
}
