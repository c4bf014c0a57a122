//! Dialogs (RFC 3261 §12): what two user agents share from the first response with a To tag
//! until BYE — Call-ID, tags, CSeq numbers, the remote target and the route set — and how a
//! request inside one is built.
//!
//! - The UAC makes its dialog from a 1xx (early) or 2xx (confirmed) with a To tag
//!   ([`Dialog::uac`]), the UAS from the request and the tag it puts in its response
//!   ([`Dialog::uas`]). The route set comes from Record-Route (reversed for the UAC).
//! - Each new request increments the local CSeq by one; ACK and CANCEL reuse the INVITE's
//!   number ([`Dialog::request`], [`Dialog::ack`]). Requests from the peer must have a higher
//!   CSeq than the last one (else `500`, [`Dialog::handle_request`]).
//! - A re-INVITE or UPDATE, and their 2xx, refresh the remote target from Contact.
//! - Routing is loose (`;lr`) or strict, as §12.2.1.1 says.

use crate::header::HeaderName;
use crate::message::{MessageHeaders, Request, Response};
use crate::typed::{CSeq, Method, NameAddr, Via};
use crate::uri::{Scheme, Uri};

/// Call-ID, local tag, remote tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
}

/// Why a request does not fit its dialog.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialogError {
    #[error("the request is missing {0}")]
    Missing(&'static str),
    /// RFC 3261 §12.2.2: answer `500 Server Internal Error`.
    #[error("CSeq {got} is not above {last}")]
    OldCSeq { got: u32, last: u32 },
    #[error("the message belongs to another dialog")]
    WrongDialog,
}

/// One dialog; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialog {
    pub id: DialogId,
    pub state: DialogState,
    /// Our URI and tag: the From of our requests, as written there. Kept as text, not parsed:
    /// it is only ever written out, and a dialog lives as long as its call or subscription
    /// (2,000 BLF keys hold 2,000 of them).
    pub local: String,
    /// Theirs: the To of our requests.
    pub remote: String,
    /// The last CSeq number we used.
    pub local_seq: u32,
    /// The last CSeq number they used (None until their first request).
    pub remote_seq: Option<u32>,
    /// Where our requests go: their Contact.
    pub remote_target: Uri,
    /// Route header values for our requests, in order.
    pub route_set: Vec<String>,
    pub secure: bool,
}

fn contact_uri(message: &impl MessageHeaders) -> Option<Uri> {
    message.contacts().into_iter().next().map(|c| c.uri).map(compact_uri)
}

/// A dialog lives as long as its call or subscription (2,000 BLF keys hold 2,000): the target
/// it keeps drops the room parsing left in its lists.
fn compact_uri(mut uri: Uri) -> Uri {
    uri.params.shrink_to_fit();
    uri.headers.shrink_to_fit();
    uri
}

impl Dialog {
    /// The UAC's dialog from a response with a To tag to its `request` (1xx early, 2xx
    /// confirmed). `None` if the response cannot make one (no tag, no Contact, a 100 or a failure).
    pub fn uac(request: &Request, response: &Response) -> Option<Dialog> {
        if !(101..300).contains(&response.status) {
            return None;
        }
        let remote = response.to()?;
        let remote_tag = remote.tag()?.to_owned();
        let local = request.from()?;
        let local_tag = local.tag()?.to_owned();
        let remote_target = contact_uri(response).or_else(|| (response.status < 200).then(|| request.uri.clone()))?;
        let mut route_set: Vec<String> =
            response.headers.get_all(&HeaderName::RecordRoute).map(str::to_owned).collect();
        route_set.reverse();
        Some(Dialog {
            id: DialogId { call_id: request.call_id()?.to_owned(), local_tag, remote_tag },
            state: if response.status >= 200 { DialogState::Confirmed } else { DialogState::Early },
            local: local.to_string(),
            remote: remote.to_string(),
            local_seq: request.cseq()?.seq,
            remote_seq: None,
            remote_target,
            route_set,
            secure: request.uri.scheme == Scheme::Sips,
        })
    }

    /// The UAS's dialog from a dialog-creating `request`, with `local_tag` the tag its
    /// responses carry in To. `confirmed` once a 2xx is sent.
    pub fn uas(request: &Request, local_tag: &str, confirmed: bool) -> Option<Dialog> {
        let remote = request.from()?;
        let remote_tag = remote.tag()?.to_owned();
        let mut local = request.to()?;
        local.set_param("tag", Some(local_tag.to_owned()));
        Some(Dialog {
            id: DialogId { call_id: request.call_id()?.to_owned(), local_tag: local_tag.to_owned(), remote_tag },
            state: if confirmed { DialogState::Confirmed } else { DialogState::Early },
            local: local.to_string(),
            remote: remote.to_string(),
            local_seq: 0,
            remote_seq: Some(request.cseq()?.seq),
            remote_target: contact_uri(request)?,
            route_set: request.headers.get_all(&HeaderName::RecordRoute).map(str::to_owned).collect(),
            secure: request.uri.scheme == Scheme::Sips,
        })
    }

    /// The dialog id a request from the peer carries (its To tag is our tag).
    pub fn id_of_request(request: &Request) -> Option<DialogId> {
        Some(DialogId {
            call_id: request.call_id()?.to_owned(),
            local_tag: request.to()?.tag()?.to_owned(),
            remote_tag: request.from()?.tag()?.to_owned(),
        })
    }

    /// The dialog id a response to our request carries.
    pub fn id_of_response(response: &Response) -> Option<DialogId> {
        Some(DialogId {
            call_id: response.call_id()?.to_owned(),
            local_tag: response.from()?.tag()?.to_owned(),
            remote_tag: response.to()?.tag()?.to_owned(),
        })
    }

    /// Checks a request from the peer against the dialog and takes what it changes: its CSeq,
    /// and for re-INVITE/UPDATE the remote target.
    pub fn handle_request(&mut self, request: &Request) -> Result<(), DialogError> {
        if Self::id_of_request(request).as_ref() != Some(&self.id) {
            return Err(DialogError::WrongDialog);
        }
        let cseq = request.cseq().ok_or(DialogError::Missing("CSeq"))?;
        if !matches!(request.method, Method::Ack | Method::Cancel) {
            if let Some(last) = self.remote_seq {
                if cseq.seq <= last {
                    return Err(DialogError::OldCSeq { got: cseq.seq, last });
                }
            }
            self.remote_seq = Some(cseq.seq);
        }
        if matches!(request.method, Method::Invite | Method::Update) {
            if let Some(target) = contact_uri(request) {
                self.remote_target = target;
            }
        }
        Ok(())
    }

    /// Takes what a response to our request changes: confirmation by a 2xx, and the remote
    /// target from a 2xx to a (re-)INVITE or UPDATE.
    pub fn handle_response(&mut self, response: &Response) -> Result<(), DialogError> {
        if Self::id_of_response(response).as_ref() != Some(&self.id) {
            return Err(DialogError::WrongDialog);
        }
        let method = response.cseq().ok_or(DialogError::Missing("CSeq"))?.method;
        let refreshes = matches!(method, Method::Invite | Method::Update);
        if (200..300).contains(&response.status) {
            if method == Method::Invite {
                self.state = DialogState::Confirmed;
            }
            if refreshes {
                if let Some(target) = contact_uri(response) {
                    self.remote_target = target;
                }
            }
        } else if (101..200).contains(&response.status) && refreshes && self.state == DialogState::Early {
            if let Some(target) = contact_uri(response) {
                self.remote_target = target;
            }
        }
        Ok(())
    }

    /// A new request in the dialog, with the next CSeq. `via` is the top Via (with a fresh
    /// branch) the caller's transport needs.
    pub fn request(&mut self, method: Method, via: &Via) -> Request {
        self.local_seq += 1;
        self.build(method, self.local_seq, via)
    }

    /// The ACK for a 2xx to the INVITE that had CSeq `invite_seq` (its own transaction,
    /// same number).
    pub fn ack(&self, invite_seq: u32, via: &Via) -> Request {
        self.build(Method::Ack, invite_seq, via)
    }

    /// Request-URI and Route by §12.2.1.1: loose routing keeps the remote target as the
    /// Request-URI; a strict router becomes the Request-URI and the target goes last in Route.
    fn build(&self, method: Method, seq: u32, via: &Via) -> Request {
        let first_route = self.route_set.first().and_then(|r| NameAddr::parse(r).ok());
        let (uri, routes): (Uri, Vec<String>) = match first_route {
            Some(first) if first.uri.param("lr").is_none() => {
                let mut routes: Vec<String> = self.route_set[1..].to_vec();
                routes.push(format!("<{}>", self.remote_target));
                let mut uri = first.uri.clone();
                uri.headers.clear();
                (uri, routes)
            }
            _ => (self.remote_target.clone(), self.route_set.clone()),
        };
        let mut request = Request::new(method.clone(), uri);
        request.headers.push(HeaderName::Via, via.to_string());
        request.headers.push(HeaderName::MaxForwards, "70");
        for route in routes {
            request.headers.push(HeaderName::Route, route);
        }
        request.headers.push(HeaderName::From, self.local.clone());
        request.headers.push(HeaderName::To, self.remote.clone());
        request.headers.push(HeaderName::CallId, self.id.call_id.clone());
        request.headers.push(HeaderName::CSeq, CSeq { seq, method }.to_string());
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::parse;
    use crate::message::SipMessage;

    fn request(text: &str) -> Request {
        match parse(text.replace('\n', "\r\n").as_bytes()).unwrap() {
            SipMessage::Request(r) => r,
            _ => panic!(),
        }
    }
    fn response(text: &str) -> Response {
        match parse(text.replace('\n', "\r\n").as_bytes()).unwrap() {
            SipMessage::Response(r) => r,
            _ => panic!(),
        }
    }

    const INVITE: &str = "INVITE sip:bob@biloxi.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK1
From: Alice <sip:alice@atlanta.com>;tag=a1
To: Bob <sip:bob@biloxi.com>
Call-ID: c1@pc33
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.com>
Record-Route: <sip:p2.biloxi.com;lr>, <sip:p1.atlanta.com;lr>

";
    const OK: &str = "SIP/2.0 200 OK
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK1
Record-Route: <sip:p2.biloxi.com;lr>, <sip:p1.atlanta.com;lr>
From: Alice <sip:alice@atlanta.com>;tag=a1
To: Bob <sip:bob@biloxi.com>;tag=b2
Call-ID: c1@pc33
CSeq: 314159 INVITE
Contact: <sip:bob@192.0.2.4>

";

    fn via() -> Via {
        Via::parse("SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnew").unwrap()
    }

    #[test]
    fn uac_dialog_routes_loosely_and_counts_cseq() {
        let mut d = Dialog::uac(&request(INVITE), &response(OK)).unwrap();
        assert_eq!(d.state, DialogState::Confirmed);
        assert_eq!(d.id, DialogId { call_id: "c1@pc33".into(), local_tag: "a1".into(), remote_tag: "b2".into() });
        assert_eq!(d.route_set, ["<sip:p1.atlanta.com;lr>", "<sip:p2.biloxi.com;lr>"], "reversed for the UAC");
        let ack = d.ack(314159, &via());
        assert_eq!(ack.cseq().unwrap(), CSeq { seq: 314159, method: Method::Ack });
        assert_eq!(ack.uri.to_string(), "sip:bob@192.0.2.4");
        let bye = d.request(Method::Bye, &via());
        assert_eq!(bye.cseq().unwrap().seq, 314160);
        assert_eq!(bye.uri.to_string(), "sip:bob@192.0.2.4", "loose routing: the target stays the Request-URI");
        assert_eq!(
            bye.headers.get_all(&HeaderName::Route).collect::<Vec<_>>(),
            ["<sip:p1.atlanta.com;lr>", "<sip:p2.biloxi.com;lr>"]
        );
        assert_eq!(bye.to().unwrap().tag(), Some("b2"));
        assert_eq!(bye.from().unwrap().tag(), Some("a1"));
        // And it parses.
        assert!(parse(&bye.to_bytes()).is_ok());
    }

    #[test]
    fn strict_routing_puts_the_target_last() {
        let ok =
            OK.replace("<sip:p2.biloxi.com;lr>, <sip:p1.atlanta.com;lr>", "<sip:p2.biloxi.com>, <sip:p1.atlanta.com>");
        let mut d = Dialog::uac(&request(INVITE), &response(&ok)).unwrap();
        let bye = d.request(Method::Bye, &via());
        assert_eq!(bye.uri.to_string(), "sip:p1.atlanta.com");
        assert_eq!(
            bye.headers.get_all(&HeaderName::Route).collect::<Vec<_>>(),
            ["<sip:p2.biloxi.com>", "<sip:bob@192.0.2.4>"]
        );
    }

    #[test]
    fn uas_dialog_checks_cseq_and_refreshes_the_target() {
        let invite = request(INVITE);
        let mut d = Dialog::uas(&invite, "b2", true).unwrap();
        assert_eq!(d.route_set, ["<sip:p2.biloxi.com;lr>", "<sip:p1.atlanta.com;lr>"]);
        assert_eq!(d.remote_target.to_string(), "sip:alice@pc33.atlanta.com");
        let reinvite = request(
            &INVITE
                .replace("To: Bob <sip:bob@biloxi.com>", "To: Bob <sip:bob@biloxi.com>;tag=b2")
                .replace("CSeq: 314159", "CSeq: 314160")
                .replace("<sip:alice@pc33.atlanta.com>", "<sip:alice@198.51.100.9:5070>"),
        );
        d.handle_request(&reinvite).unwrap();
        assert_eq!(d.remote_target.to_string(), "sip:alice@198.51.100.9:5070");
        assert_eq!(d.handle_request(&reinvite), Err(DialogError::OldCSeq { got: 314160, last: 314160 }));
        let other = request(
            &INVITE
                .replace("tag=a1", "tag=zz")
                .replace("To: Bob <sip:bob@biloxi.com>", "To: <sip:bob@biloxi.com>;tag=b2"),
        );
        assert_eq!(d.handle_request(&other), Err(DialogError::WrongDialog));
        // Our own requests start at CSeq 1.
        let bye = d.request(Method::Bye, &via());
        assert_eq!(bye.cseq().unwrap().seq, 1);
        assert_eq!(bye.to().unwrap().tag(), Some("a1"));
    }

    #[test]
    fn early_dialogs_and_responses_that_make_none() {
        let ringing = response(&OK.replace("200 OK", "180 Ringing"));
        let mut d = Dialog::uac(&request(INVITE), &ringing).unwrap();
        assert_eq!(d.state, DialogState::Early);
        d.handle_response(&response(OK)).unwrap();
        assert_eq!(d.state, DialogState::Confirmed);
        assert!(Dialog::uac(&request(INVITE), &response(&OK.replace(";tag=b2", ""))).is_none());
        assert!(Dialog::uac(&request(INVITE), &response(&OK.replace("200 OK", "486 Busy Here"))).is_none());
    }
}
