//! `trustrpid`: the caller ID a trusted peer asserts, as chan_sip's `get_rpid` and `get_pai`
//! read it from an INVITE.
//!
//! `Remote-Party-ID: ["Name"|Name] <sip:number@host>[;party=calling;privacy=...;screen=...]`
//! first; without one, `P-Asserted-Identity: ["Name"] <sip:number@host>` (also `sips:`; an
//! `anonymous@anonymous.invalid` identity keeps the number). The header counts only when it
//! differs from what the From header already says (name, number or presentation), exactly as
//! chan_sip's "only return true if the supplied caller id is different": then it is the caller
//! ID, else the peer's `callerid=` is (as without the header). Starling keeps no caller
//! presentation, so `privacy=`/`screen=`/`Privacy:` only take part in that comparison.

use starling_core::frame::CallerId;
use starling_sip::{HeaderName, Host, NameAddr, Request, Scheme};

/// Asterisk's `AST_PRES_*` values that chan_sip can derive from the headers.
const ALLOWED_NOT_SCREENED: u8 = 0x00;
const ALLOWED_PASSED_SCREEN: u8 = 0x01;
const PROHIB_NOT_SCREENED: u8 = 0x20;
const PROHIB_PASSED_SCREEN: u8 = 0x21;

/// chan_sip's `get_rpid` parse of a Remote-Party-ID value: the caller ID and its presentation,
/// `None` when it is not of the form chan_sip accepts.
fn parse_rpid(value: &str) -> Option<(CallerId, u8)> {
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
    Some((CallerId { name: name.to_owned(), number: number.to_owned() }, presentation))
}

/// chan_sip's `get_pai`: a P-Asserted-Identity value (its first identity), with the request's
/// `Privacy` header; `current` is the number kept for an anonymous identity.
fn parse_pai(value: &str, privacy: Option<&str>, current: &CallerId) -> Option<(CallerId, u8)> {
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
    Some((CallerId { name: identity.display.unwrap_or_default(), number }, presentation))
}

/// The caller ID a trusted peer asserts in `request`, when it differs from `from` (what the
/// From header says, presented as allowed): chan_sip's `get_rpid` returning true.
pub fn asserted_caller(request: &Request, from: &CallerId) -> Option<CallerId> {
    let rpid = request.headers.get(&HeaderName::parse("Remote-Party-ID")).filter(|v| !v.trim().is_empty());
    let (caller, presentation) = match rpid {
        Some(value) => parse_rpid(value)?,
        None => {
            let pai = request.headers.get(&HeaderName::parse("P-Asserted-Identity"))?;
            parse_pai(pai, request.headers.get(&HeaderName::parse("Privacy")), from)?
        }
    };
    let same = caller.number.eq_ignore_ascii_case(&from.number)
        && caller.name.eq_ignore_ascii_case(&from.name)
        && presentation == ALLOWED_NOT_SCREENED;
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
        CallerId { name: name.into(), number: number.into() }
    }

    /// The forms chan_sip's get_rpid takes and refuses.
    #[test]
    fn remote_party_id_is_read_as_chan_sip_reads_it() {
        let parsed = |v: &str| parse_rpid(v).map(|(c, p)| (c.name, c.number, p));
        let boss = "\"Boss\" <sip:555@host>;party=calling;privacy=off;screen=no";
        assert_eq!(parsed(boss), Some(("Boss".into(), "555".into(), ALLOWED_NOT_SCREENED)));
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
        assert_eq!(asserted_caller(&anonymous, &from), Some(cid("", "200")));
        let same = invite("Remote-Party-ID: \"desk\" <sip:200@elsewhere>\r\n");
        assert_eq!(asserted_caller(&same, &from), None);
        let private = invite("P-Asserted-Identity: \"Desk\" <sip:200@h>\r\nPrivacy: id\r\n");
        assert_eq!(asserted_caller(&private, &from), Some(cid("Desk", "200")));
        assert_eq!(asserted_caller(&invite(""), &from), None);
        assert_eq!(asserted_caller(&invite("Remote-Party-ID: garbage\r\n"), &from), None);
    }
}
