//! The notifier side of one subscription (RFC 6665), as chan_sip answers a phone's BLF key:
//! `SUBSCRIBE` with `Event: dialog` (RFC 4235 `application/dialog-info+xml`) or `Event: presence`
//! (`application/pidf+xml`, or chan_sip's `application/xpidf+xml` for older phones), without I/O
//! like [`crate::session`]: requests and responses of the dialog come in with `handle_*`, time
//! with `handle_timeout(now)`, state changes with [`Subscription::notify`]; what to send comes out
//! of `poll_transmit`, what happened out of `poll_event`, the next deadline out of `poll_timeout`.
//!
//! The life of a subscription:
//!
//! - [`Subscription::uas`] takes the initial SUBSCRIBE (its server transaction is the driver's,
//!   every response leaves through `poll_transmit`): an unknown event package gets `489 Bad
//!   Event`, an `Expires` below `min_expiry` `423 Interval Too Brief` (with `Min-Expires`); one
//!   above `max_expiry` is lowered to it, none is `default_expiry` (chan_sip's `minexpiry`,
//!   `maxexpiry`, `defaultexpiry`). Accepted: `200 OK` with `Expires`, then at once the first
//!   NOTIFY with the full state (`Subscription-State: active;expires=N`).
//! - A SUBSCRIBE in the dialog refreshes it (200, a NOTIFY with the state, as RFC 6665 §4.2.1.2
//!   asks); with `Expires: 0` it ends it: 200, then a last NOTIFY with `Subscription-State:
//!   terminated;reason=timeout`, as chan_sip sends it.
//! - No refresh by the expiry: the last NOTIFY says `terminated;reason=timeout`.
//! - [`Subscription::notify`] with a new state sends a NOTIFY (`active;expires=` the time left);
//!   one NOTIFY is in flight at a time: a change meanwhile waits for its response, and only the
//!   latest state goes. Every NOTIFY has the next CSeq of the dialog; each dialog-info body the
//!   next `version` (from 0, as chan_sip's `dialogver`).
//! - [`Subscription::terminate`] ends it from our side (`noresource` when the hint went,
//!   `deactivated` at shutdown or peer removal).
//! - A NOTIFY answered with an error (481: the subscriber forgot it) or timed out ends it
//!   without another NOTIFY (RFC 6665 §4.2.2).
//!
//! The bodies are chan_sip's (`state_notify_build_xml`), from Asterisk's extension state bits
//! (0 Idle, 1 InUse, 2 Busy, 4 Unavailable, 8 Ringing, 16 OnHold, combinations), see
//! [`dialog_info_xml`], [`pidf_xml`], [`xpidf_xml`].
//!
//! # Driving it from chan_sip (issue 25, after the call driver's rewrite)
//!
//! The monitor owns every subscription (one map keyed by the dialog id, beside the calls):
//!
//! 1. A SUBSCRIBE outside a dialog is authenticated as an INVITE is (peer/user, digest), refused
//!    403 without `allowsubscribe`; the extension is the Request-URI's user, the context the
//!    peer's `subscribecontext` (else its `context`). `core.hints().hint(context, exten)` is
//!    `None`: 404. Else `Subscription::uas(now, config, request, &tag, exten,
//!    NotifyState::new(core.extension_state(context, exten).0))` (config from sip.conf:
//!    `notifyringing`, `minexpiry`/`maxexpiry`/`defaultexpiry`, our Via and Contact).
//! 2. `core.extension_state_add(context, exten, callback)` watches the hint. The callback runs
//!    on the core's device state task: it only sends `(dialog id, change.state.0)` to the
//!    monitor's queue (never locks chan_sip state). The monitor then calls
//!    [`Subscription::notify`] — with [`RemoteIdentity`] from the ringing caller when `notifycid`
//!    is on — or, for `Removed` (-2), [`Subscription::terminate`] with `NoResource`.
//! 3. After every input, drain `poll_transmit`: a `Transmit::Request` (NOTIFY) goes through the
//!    transaction endpoint as a client transaction (its response back to
//!    [`Subscription::handle_response`], its Timer F to
//!    [`Subscription::handle_transaction_timeout`] with the CSeq number); a `Transmit::Response`
//!    answers the SUBSCRIBE's server transaction. In-dialog SUBSCRIBEs (matched by
//!    `Dialog::id_of_request`) go to [`Subscription::handle_request`]; arm a timer at
//!    `poll_timeout` and call [`Subscription::handle_timeout`].
//! 4. `Event::Terminated`: `core.extension_state_del(id)` and drop it. Shutdown, unload and a
//!    peer removed by `sip reload`: [`Subscription::terminate`] with `Deactivated` first.
//!    `sip show subscriptions` lists the map (peer, call-id, extension, `current().state`,
//!    `event_package()`, `expires_at()`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dialog::Dialog;
use crate::message::{MessageHeaders, Request, Response};
use crate::session::Transmit;
use crate::transaction::Endpoint;
use crate::typed::{Method, Via};
use crate::HeaderName;

/// Asterisk's extension state bits (`enum ast_extension_states`), as the core's hints give them.
pub mod extension_state {
    pub const REMOVED: i32 = -2;
    pub const DEACTIVATED: i32 = -1;
    pub const NOT_INUSE: i32 = 0;
    pub const INUSE: i32 = 1;
    pub const BUSY: i32 = 2;
    pub const UNAVAILABLE: i32 = 4;
    pub const RINGING: i32 = 8;
    pub const ONHOLD: i32 = 16;
}

/// The event package of a subscription (the `Event` header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventPackage {
    Dialog,
    Presence,
    /// RFC 3842 message waiting (a phone's MWI lamp).
    MessageSummary,
}

impl EventPackage {
    pub fn as_str(self) -> &'static str {
        match self {
            EventPackage::Dialog => "dialog",
            EventPackage::Presence => "presence",
            EventPackage::MessageSummary => "message-summary",
        }
    }
}

/// The body NOTIFYs carry (chan_sip's `subscribed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// RFC 4235, `application/dialog-info+xml` (Event: dialog).
    DialogInfo,
    /// RFC 3863, `application/pidf+xml` (Event: presence).
    Pidf,
    /// The pre-standard `application/xpidf+xml` some older phones ask for.
    Xpidf,
    /// RFC 3842, `application/simple-message-summary` (Event: message-summary).
    MessageSummary,
}

impl BodyFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            BodyFormat::DialogInfo => "application/dialog-info+xml",
            BodyFormat::Pidf => "application/pidf+xml",
            BodyFormat::Xpidf => "application/xpidf+xml",
            BodyFormat::MessageSummary => "application/simple-message-summary",
        }
    }
}

/// The event package and body a SUBSCRIBE asks for, as chan_sip's `handle_request_subscribe`
/// picks them: `Event: dialog` → dialog-info; `Event: presence` → PIDF when `Accept` lists
/// `application/pidf+xml` (or has no Accept), else XPIDF when it lists
/// `application/xpidf+xml` (or `application/cpim-pidf+xml`); `Event: message-summary` →
/// simple-message-summary (when `Accept` has it or is absent); anything else `Err(489)`.
pub fn negotiate(subscribe: &Request) -> Result<(EventPackage, BodyFormat), u16> {
    let event = subscribe.headers.get(&HeaderName::Event).unwrap_or("");
    let package = event.split(';').next().unwrap_or("").trim();
    let accept: Vec<String> = subscribe
        .headers
        .get_all(&HeaderName::Accept)
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .collect();
    let accepts = |t: &str| accept.iter().any(|a| a == t);
    if package.eq_ignore_ascii_case("dialog") {
        if accept.is_empty() || accepts("application/dialog-info+xml") {
            return Ok((EventPackage::Dialog, BodyFormat::DialogInfo));
        }
        return Err(489);
    }
    if package.eq_ignore_ascii_case("message-summary") {
        if accept.is_empty() || accepts("application/simple-message-summary") {
            return Ok((EventPackage::MessageSummary, BodyFormat::MessageSummary));
        }
        return Err(489);
    }
    if package.eq_ignore_ascii_case("presence") {
        if accept.is_empty() || accepts("application/pidf+xml") {
            return Ok((EventPackage::Presence, BodyFormat::Pidf));
        }
        if accepts("application/xpidf+xml") || accepts("application/cpim-pidf+xml") {
            return Ok((EventPackage::Presence, BodyFormat::Xpidf));
        }
    }
    Err(489)
}

/// What a `message-summary` NOTIFY tells (chan_sip's `transmit_notify_with_mwi`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageSummary {
    pub new: u32,
    pub old: u32,
    /// `Message-Account` (`sip:asterisk@pbx`).
    pub account: String,
}

impl MessageSummary {
    /// The `application/simple-message-summary` body.
    pub fn body(&self) -> String {
        format!(
            "Messages-Waiting: {}\r\nMessage-Account: {}\r\nVoice-Message: {}/{} (0/0)\r\n",
            if self.new > 0 { "yes" } else { "no" },
            self.account,
            self.new,
            self.old
        )
    }
}

/// The caller shown in a dialog-info NOTIFY while the watched extension rings (chan_sip's
/// `notifycid`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteIdentity {
    /// `sip:5551234@pbx`.
    pub uri: String,
    pub display: String,
}

/// What a NOTIFY tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyState {
    /// Asterisk's extension state bits ([`extension_state`]).
    pub state: i32,
    /// The caller while ringing, when known and wanted.
    pub remote: Option<RemoteIdentity>,
}

impl NotifyState {
    pub fn new(state: i32) -> NotifyState {
        NotifyState { state, remote: None }
    }
}

/// chan_sip's `statestring`, `local_state`, `pidfstate`, `pidfnote` of a state.
struct Words {
    /// RFC 4235 dialog state.
    dialog: &'static str,
    /// Open for presence (NOTIFY_OPEN / NOTIFY_INUSE) or closed.
    local: Local,
    /// RPID activity (`busy`, `away`) or none.
    activity: Option<&'static str>,
    note: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Local {
    Open,
    InUse,
    Closed,
}

fn words(state: i32, notify_ringing: bool) -> Words {
    use extension_state::*;
    let w = |dialog, local, activity, note| Words { dialog, local, activity, note };
    match state {
        s if s == RINGING | INUSE => {
            w(if notify_ringing { "early" } else { "confirmed" }, Local::InUse, Some("busy"), "Ringing")
        }
        RINGING => w("early", Local::InUse, Some("busy"), "Ringing"),
        INUSE => w("confirmed", Local::InUse, Some("busy"), "On the phone"),
        BUSY => w("confirmed", Local::Closed, Some("busy"), "On the phone"),
        UNAVAILABLE => w("terminated", Local::Closed, Some("away"), "Unavailable"),
        s if s == ONHOLD || s == ONHOLD | INUSE => w("confirmed", Local::Closed, Some("busy"), "On hold"),
        _ => w("terminated", Local::Open, None, "Ready"),
    }
}

/// `&`, `<`, `>`, `"`, `'` escaped for XML text and attributes (Asterisk's `ast_xml_escape`).
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// What the bodies name (chan_sip: `mto`, the subscribed URI; `mfrom`, the subscriber's; `exten`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyNames {
    /// The watched resource, `sip:1001@pbx` (the SUBSCRIBE's To URI, without parameters).
    pub entity: String,
    /// The subscriber, `sip:1002@pbx` (the SUBSCRIBE's From URI, without parameters).
    pub watcher: String,
    /// The watched extension (`1001`): dialog and tuple ids.
    pub exten: String,
    /// The subscription's Call-ID: the ringing dialog's `call-id="pickup-..."` (which a phone
    /// sends back in `Replaces` to pick the call up).
    pub call_id: String,
}

/// RFC 4235 `dialog-info` as chan_sip writes it: `version`, `state="full"`, one dialog (id the
/// extension) whose `<state>` is `terminated` (idle, unavailable), `early` (ringing) or
/// `confirmed` (in use, busy, on hold). With `notify_ringing` a ringing extension's dialog has
/// `direction="recipient"`, a `pickup-` call-id, and `<remote>`/`<local>` identities (the caller's
/// when `state.remote` gives it); on hold its local target says `+sip.rendering` `no`.
pub fn dialog_info_xml(names: &BodyNames, version: u32, state: &NotifyState, notify_ringing: bool) -> String {
    let w = words(state.state, notify_ringing);
    let entity = xml_escape(&names.entity);
    let exten = xml_escape(&names.exten);
    let mut out = format!(
        "<?xml version=\"1.0\"?>\n<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"{version}\" state=\"full\" entity=\"{entity}\">\n"
    );
    let ringing = state.state > 0 && state.state & extension_state::RINGING != 0;
    if ringing && notify_ringing {
        let (remote_display, remote_target) = match &state.remote {
            Some(r) => (xml_escape(&r.display), xml_escape(&r.uri)),
            None => (exten.clone(), entity.clone()),
        };
        out.push_str(&format!(
            "<dialog id=\"{exten}\" call-id=\"pickup-{}\" direction=\"recipient\">\n<remote>\n<identity display=\"{remote_display}\">{remote_target}</identity>\n<target uri=\"{remote_target}\"/>\n</remote>\n<local>\n<identity display=\"{exten}\">{entity}</identity>\n<target uri=\"{entity}\"/>\n</local>\n",
            xml_escape(&names.call_id)
        ));
    } else {
        out.push_str(&format!("<dialog id=\"{exten}\">\n"));
    }
    out.push_str(&format!("<state>{}</state>\n", w.dialog));
    if state.state == extension_state::ONHOLD {
        out.push_str(&format!(
            "<local>\n<target uri=\"{entity}\">\n<param pname=\"+sip.rendering\" pvalue=\"no\"/>\n</target>\n</local>\n"
        ));
    }
    out.push_str("</dialog>\n</dialog-info>\n");
    out
}

/// RFC 3863 PIDF with RPID activities as chan_sip writes it (Eyebeam's format): the person's
/// activity (`busy`, `away`, none when idle), a note (`Ready`, `Ringing`, `On the phone`,
/// `On hold`, `Unavailable`), one tuple (id the extension) whose basic status is `open` unless
/// the extension is closed (busy is still open); then the activity again as RFC 4480's RPID
/// (`on-the-phone` for busy, `away`) in a data-model person.
pub fn pidf_xml(names: &BodyNames, state: &NotifyState) -> String {
    let w = words(state.state, true);
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \nxmlns:pp=\"urn:ietf:params:xml:ns:pidf:person\"\nxmlns:es=\"urn:ietf:params:xml:ns:pidf:rpid:status:rpid-status\"\nxmlns:ep=\"urn:ietf:params:xml:ns:pidf:rpid:rpid-person\"\nxmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\"\nxmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\"\nentity=\"{}\">\n",
        xml_escape(&names.watcher)
    );
    out.push_str("<pp:person><status>\n");
    if let Some(activity) = w.activity {
        out.push_str(&format!("<ep:activities><ep:{activity}/></ep:activities>\n"));
    }
    out.push_str("</status></pp:person>\n");
    out.push_str(&format!("<note>{}</note>\n", w.note));
    out.push_str(&format!("<tuple id=\"{}\">\n", xml_escape(&names.exten)));
    out.push_str(&format!("<contact priority=\"1\">{}</contact>\n", xml_escape(&names.entity)));
    let basic = if w.activity == Some("busy") || w.local != Local::Closed { "open" } else { "closed" };
    out.push_str(&format!("<status><basic>{basic}</basic></status>\n"));
    out.push_str("</tuple>\n");
    // The same activity as RFC 4480 says it (chan_sip's `ep:` person is Eyebeam's): clients
    // that read only the standard RPID (baresip's presence module) see busy or away too.
    if let Some(activity) = w.activity {
        let activity = if activity == "busy" { "on-the-phone" } else { activity };
        out.push_str(&format!(
            "<dm:person id=\"p-{}\"><rpid:activities><rpid:{activity}/></rpid:activities></dm:person>\n",
            xml_escape(&names.exten)
        ));
    }
    out.push_str("</presence>\n");
    out
}

/// The pre-standard XPIDF chan_sip sends older phones: `open`/`inuse`/`closed` with MSN
/// substatus `online`/`onthephone`/`offline`.
pub fn xpidf_xml(names: &BodyNames, state: &NotifyState) -> String {
    let w = words(state.state, true);
    let (status, substatus) = match w.local {
        Local::Open => ("open", "online"),
        Local::InUse => ("inuse", "onthephone"),
        Local::Closed => ("closed", "offline"),
    };
    format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE presence PUBLIC \"-//IETF//DTD RFCxxxx XPIDF 1.0//EN\" \"xpidf.dtd\">\n<presence>\n<presentity uri=\"{};method=SUBSCRIBE\" />\n<atom id=\"{}\">\n<address uri=\"{};user=ip\" priority=\"0.800000\">\n<status status=\"{status}\" />\n<msnsubstatus substatus=\"{substatus}\" />\n</address>\n</atom>\n</presence>\n",
        xml_escape(&names.watcher),
        xml_escape(&names.exten),
        xml_escape(&names.entity)
    )
}

/// The notifier's settings (chan_sip's sip.conf values).
#[derive(Clone, Debug)]
pub struct SubscriptionConfig {
    /// Our top Via, best without a branch: each NOTIFY gets its own.
    pub via: Via,
    /// Our Contact (`<sip:1001@192.0.2.1:5060>`), in the 200 and every NOTIFY.
    pub contact: String,
    pub user_agent: String,
    /// chan_sip's `minexpiry` (60): shorter is refused with 423.
    pub min_expiry: u32,
    /// chan_sip's `maxexpiry` (3600): longer is lowered.
    pub max_expiry: u32,
    /// chan_sip's `defaultexpiry` (120): a SUBSCRIBE without Expires.
    pub default_expiry: u32,
    /// chan_sip's `notifyringing`: a ringing extension shows `early` with the caller.
    pub notify_ringing: bool,
    /// Seeds the branches (mixed with each subscription's tag, so subscriptions sharing one
    /// configuration make different ones).
    pub seed: u64,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        SubscriptionConfig {
            via: Via::parse("SIP/2.0/UDP 127.0.0.1:5060").expect("a literal Via"),
            contact: "<sip:127.0.0.1:5060>".into(),
            user_agent: String::new(),
            min_expiry: 60,
            max_expiry: 3600,
            default_expiry: 120,
            notify_ringing: true,
            seed: 1,
        }
    }
}

/// Where the subscription is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Active,
    Terminated,
}

/// Why it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminateReason {
    /// Not refreshed in time (`terminated;reason=timeout`).
    Timeout,
    /// The subscriber sent `Expires: 0`.
    Unsubscribed,
    /// We ended it: the resource (hint) went (`noresource`).
    NoResource,
    /// We ended it: shutdown, peer removal (`deactivated`).
    Deactivated,
    /// The initial SUBSCRIBE was refused with this status.
    Refused { status: u16 },
    /// A NOTIFY was answered with this error (or timed out: 408): the subscriber has it no more.
    NotifyFailed { status: u16 },
}

/// What the driver learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The subscription was accepted (the 200 leaves) for this many seconds.
    Accepted { expires: u32 },
    /// A refresh moved the expiry.
    Refreshed { expires: u32 },
    /// It is over (the last event).
    Terminated { reason: TerminateReason },
}

/// One subscription; see the module docs.
#[derive(Debug)]
pub struct Subscription {
    /// Shared: the subscriptions to one extension over one transport can hold one.
    config: Arc<SubscriptionConfig>,
    state: State,
    package: EventPackage,
    format: BodyFormat,
    dialog: Option<Dialog>,
    /// The watched extension; the rest of the bodies' [`BodyNames`] comes from the dialog.
    exten: String,
    expires_at: Option<Instant>,
    /// The next dialog-info `version`.
    version: u32,
    /// The state last told (or being told).
    current: NotifyState,
    /// The counts last told, for `message-summary`.
    summary: MessageSummary,
    /// The CSeq of our NOTIFY awaiting its response.
    in_flight: Option<u32>,
    /// A NOTIFY to send once the one in flight is answered.
    pending: bool,
    /// After the last NOTIFY (terminated) goes: the reason to report when it is answered.
    ending: Option<TerminateReason>,
    rng: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

/// The front of an output queue, giving its room back once it is empty: a held subscription
/// sends a NOTIFY now and then, and its queues would otherwise keep room for four 432-byte
/// transmits (and four events) for good, 1.8 KB of each of 2,000 BLF keys.
fn pop_and_release<T>(queue: &mut VecDeque<T>) -> Option<T> {
    let next = queue.pop_front();
    if queue.is_empty() && queue.capacity() > 0 {
        *queue = VecDeque::new();
    }
    next
}

/// The URI of a From/To value, without its parameters (`sip:1001@pbx`).
fn uri_without_params(name_addr: &str) -> String {
    let text = crate::NameAddr::parse(name_addr).map(|n| n.uri.to_string()).unwrap_or_default();
    text.split(';').next().unwrap_or("").to_owned()
}

impl Subscription {
    /// A subscription from an initial SUBSCRIBE (outside a dialog) to `exten`, whose state is
    /// `initial` now. The response (and, when accepted, the first NOTIFY) is queued; a refused
    /// SUBSCRIBE gives a terminated subscription.
    pub fn uas(
        now: Instant,
        config: impl Into<Arc<SubscriptionConfig>>,
        subscribe: Request,
        local_tag: &str,
        exten: &str,
        initial: NotifyState,
    ) -> Subscription {
        Subscription::uas_with_summary(now, config, subscribe, local_tag, exten, initial, MessageSummary::default())
    }

    /// [`Subscription::uas`] for any package, with the counts a `message-summary` subscription
    /// tells first.
    pub fn uas_with_summary(
        now: Instant,
        config: impl Into<Arc<SubscriptionConfig>>,
        subscribe: Request,
        local_tag: &str,
        exten: &str,
        initial: NotifyState,
        summary: MessageSummary,
    ) -> Subscription {
        let mut config = config.into();
        if config.via.params.iter().any(|p| p.name.eq_ignore_ascii_case("branch")) {
            let own = Arc::make_mut(&mut config);
            own.via.params.retain(|p| !p.name.eq_ignore_ascii_case("branch"));
            own.via.params.shrink_to_fit();
        }
        // FNV-1a of our tag: unique to the subscription.
        let tag =
            local_tag.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let mut s = Subscription {
            rng: (config.seed ^ tag).max(1),
            config,
            state: State::Active,
            package: EventPackage::Dialog,
            format: BodyFormat::DialogInfo,
            dialog: None,
            exten: exten.to_owned(),
            expires_at: None,
            version: 0,
            current: initial,
            summary,
            in_flight: None,
            pending: false,
            ending: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        let refuse = |s: &mut Subscription, mut response: Response| {
            response.set_to_tag(local_tag);
            let status = response.status;
            s.transmits.push_back(Transmit::Response { response, retransmission: false });
            s.state = State::Terminated;
            s.events.push_back(Event::Terminated { reason: TerminateReason::Refused { status } });
        };
        match negotiate(&subscribe) {
            Ok((package, format)) => (s.package, s.format) = (package, format),
            Err(status) => {
                let mut response = Response::to_request(&subscribe, status);
                response.headers.push(HeaderName::AllowEvents, "dialog, presence, message-summary");
                refuse(&mut s, response);
                return s;
            }
        }
        let expires = match s.expires_of(&subscribe) {
            Ok(expires) => expires,
            Err(response) => {
                refuse(&mut s, response);
                return s;
            }
        };
        s.dialog = Dialog::uas(&subscribe, local_tag, true);
        if s.dialog.is_none() {
            refuse(&mut s, Response::to_request(&subscribe, 400));
            return s;
        }
        s.accept(now, &subscribe, expires);
        if expires > 0 {
            s.events.push_back(Event::Accepted { expires });
        }
        s
    }

    /// The Expires the SUBSCRIBE asks, bounded; `Err` with the 423 (or 400) to send.
    fn expires_of(&self, subscribe: &Request) -> Result<u32, Response> {
        let Some(value) = subscribe.headers.get(&HeaderName::Expires) else { return Ok(self.config.default_expiry) };
        let Ok(expires) = value.trim().parse::<u64>() else { return Err(Response::to_request(subscribe, 400)) };
        let expires = u32::try_from(expires).unwrap_or(u32::MAX);
        if expires > 0 && expires < self.config.min_expiry {
            let mut response = Response::to_request(subscribe, 423);
            response.headers.push(HeaderName::MinExpires, self.config.min_expiry.to_string());
            return Err(response);
        }
        Ok(expires.min(self.config.max_expiry))
    }

    /// 200 with Expires and Contact, then the NOTIFY: the state, or the end for `Expires: 0`.
    fn accept(&mut self, now: Instant, subscribe: &Request, expires: u32) {
        let mut ok = self.response_to(subscribe, 200);
        ok.headers.push(HeaderName::Expires, expires.to_string());
        ok.headers.push(HeaderName::Contact, self.config.contact.clone());
        self.transmits.push_back(Transmit::Response { response: ok, retransmission: false });
        if expires == 0 {
            self.end(now, TerminateReason::Unsubscribed);
        } else {
            self.expires_at = Some(now + Duration::from_secs(u64::from(expires)));
            self.send_notify(now);
        }
    }

    // ---- getters -------------------------------------------------------------------------

    pub fn state(&self) -> State {
        self.state
    }
    pub fn event_package(&self) -> EventPackage {
        self.package
    }
    pub fn format(&self) -> BodyFormat {
        self.format
    }
    pub fn dialog(&self) -> Option<&Dialog> {
        self.dialog.as_ref()
    }
    /// When it expires unless refreshed.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }
    /// The state last told.
    pub fn current(&self) -> &NotifyState {
        &self.current
    }
    /// The watched extension.
    pub fn exten(&self) -> &str {
        &self.exten
    }
    /// The next dialog-info version.
    pub fn version(&self) -> u32 {
        self.version
    }

    // ---- outputs -------------------------------------------------------------------------

    /// The next message to send. Call until `None` after every input and command.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        pop_and_release(&mut self.transmits)
    }

    /// The next event. Call until `None` after every input and command.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        pop_and_release(&mut self.events)
    }

    /// When [`Subscription::handle_timeout`] must be called next (the expiry).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Terminated {
            return None;
        }
        self.expires_at
    }

    // ---- inputs --------------------------------------------------------------------------

    /// Runs the expiry if it is due at `now`: the last NOTIFY (`terminated;reason=timeout`).
    /// An early or extra call does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Active && self.ending.is_none() && self.expires_at.is_some_and(|at| at <= now) {
            self.end(now, TerminateReason::Timeout);
        }
    }

    /// A request of this dialog from the subscriber: a SUBSCRIBE refreshes (or with
    /// `Expires: 0` ends) the subscription; anything else is refused (405), a request of
    /// another dialog or after the end gets 481.
    pub fn handle_request(&mut self, now: Instant, request: Request) {
        let in_dialog = match self.dialog.as_mut() {
            Some(dialog) if self.state == State::Active && self.ending.is_none() => dialog.handle_request(&request),
            _ => Err(crate::dialog::DialogError::WrongDialog),
        };
        match in_dialog {
            Err(crate::dialog::DialogError::OldCSeq { .. }) => return self.respond(&request, 500),
            Err(_) => return self.respond(&request, 481),
            Ok(()) => {}
        }
        if request.method != Method::Subscribe {
            return self.respond(&request, 405);
        }
        if negotiate(&request).ok().map(|(p, _)| p) != Some(self.package) {
            return self.respond(&request, 489);
        }
        match self.expires_of(&request) {
            Err(mut response) => {
                if let Some(dialog) = &self.dialog {
                    response.set_to_tag(&dialog.id.local_tag);
                }
                self.transmits.push_back(Transmit::Response { response, retransmission: false });
            }
            Ok(expires) => {
                if expires > 0 {
                    self.events.push_back(Event::Refreshed { expires });
                }
                self.accept(now, &request, expires);
            }
        }
    }

    /// The response to one of our NOTIFYs: a 2xx lets the next (queued) one go; an error ends
    /// the subscription (RFC 6665 §4.2.2: 481 and the rest, but not a 1xx).
    pub fn handle_response(&mut self, now: Instant, response: Response) {
        let Some(cseq) = response.cseq() else { return };
        if cseq.method != Method::Notify || Some(cseq.seq) != self.in_flight || response.status < 200 {
            return;
        }
        self.in_flight = None;
        if response.status >= 300 {
            self.finish(TerminateReason::NotifyFailed { status: response.status });
            return;
        }
        if let Some(reason) = self.ending.take() {
            self.finish(reason);
            return;
        }
        if self.pending {
            self.pending = false;
            self.send_notify(now);
        }
    }

    /// Our NOTIFY got no response (the transaction's Timer F): the subscription ends.
    pub fn handle_transaction_timeout(&mut self, _now: Instant, seq: u32) {
        if Some(seq) == self.in_flight {
            self.in_flight = None;
            let reason = self.ending.take().unwrap_or(TerminateReason::NotifyFailed { status: 408 });
            self.finish(reason);
        }
    }

    /// The watched state changed: a NOTIFY tells it (now, or when the one in flight is
    /// answered). The same state again sends nothing.
    pub fn notify(&mut self, now: Instant, state: NotifyState) {
        if self.state == State::Terminated || self.ending.is_some() || state == self.current {
            return;
        }
        self.current = state;
        if self.in_flight.is_some() {
            self.pending = true;
        } else {
            self.send_notify(now);
        }
    }

    /// New counts for a `message-summary` subscription: a NOTIFY, as [`Subscription::notify`].
    pub fn notify_summary(&mut self, now: Instant, summary: MessageSummary) {
        if self.state == State::Terminated || self.ending.is_some() || summary == self.summary {
            return;
        }
        self.summary = summary;
        if self.in_flight.is_some() {
            self.pending = true;
        } else {
            self.send_notify(now);
        }
    }

    /// The counts last told (`message-summary`).
    pub fn summary(&self) -> &MessageSummary {
        &self.summary
    }

    /// Ends the subscription from our side (`NoResource`: the hint went; `Deactivated`:
    /// shutdown, the peer removed): a last NOTIFY says so.
    pub fn terminate(&mut self, now: Instant, reason: TerminateReason) {
        if self.state == State::Active && self.ending.is_none() {
            self.end(now, reason);
        }
    }

    // ---- internals -----------------------------------------------------------------------

    fn random(&mut self) -> u64 {
        // xorshift64: branches need only be unique, not secret.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn response_to(&self, request: &Request, status: u16) -> Response {
        let mut response = Response::to_request(request, status);
        if let Some(dialog) = &self.dialog {
            response.set_to_tag(&dialog.id.local_tag);
        }
        if !self.config.user_agent.is_empty() {
            response.headers.push(HeaderName::Server, self.config.user_agent.clone());
        }
        response
    }

    fn respond(&mut self, request: &Request, status: u16) {
        let response = self.response_to(request, status);
        self.transmits.push_back(Transmit::Response { response, retransmission: false });
    }

    /// Sends the last NOTIFY (`terminated;reason=...`) and waits for its response to report
    /// the end; a NOTIFY in flight is answered first (its response is ignored).
    fn end(&mut self, now: Instant, reason: TerminateReason) {
        self.ending = Some(reason);
        self.pending = false;
        self.expires_at = None;
        let wire = match reason {
            TerminateReason::NoResource => "terminated;reason=noresource",
            TerminateReason::Deactivated => "terminated;reason=deactivated",
            _ => "terminated;reason=timeout",
        };
        self.send(now, wire.to_owned());
    }

    fn finish(&mut self, reason: TerminateReason) {
        if self.state == State::Terminated {
            return;
        }
        self.state = State::Terminated;
        self.expires_at = None;
        self.events.push_back(Event::Terminated { reason });
    }

    fn send_notify(&mut self, now: Instant) {
        let left = self.expires_at.map_or(0, |at| at.saturating_duration_since(now).as_secs());
        self.send(now, format!("active;expires={left}"));
    }

    fn send(&mut self, _now: Instant, subscription_state: String) {
        let branch = Endpoint::new_branch(&format!("{:016x}", self.random()));
        let mut via = self.config.via.clone();
        via.set_param("branch", Some(branch));
        let Some(dialog) = self.dialog.as_mut() else { return };
        // Built for each NOTIFY rather than kept: 2,000 BLF keys would hold them all for good.
        let names = BodyNames {
            entity: uri_without_params(&dialog.local),
            watcher: uri_without_params(&dialog.remote),
            exten: self.exten.clone(),
            call_id: dialog.id.call_id.clone(),
        };
        let mut notify = dialog.request(Method::Notify, &via);
        let seq = dialog.local_seq;
        notify.headers.push(HeaderName::Event, self.package.as_str());
        notify.headers.push(HeaderName::SubscriptionState, subscription_state);
        notify.headers.push(HeaderName::Contact, self.config.contact.clone());
        if !self.config.user_agent.is_empty() {
            notify.headers.push(HeaderName::UserAgent, self.config.user_agent.clone());
        }
        let body = match self.format {
            BodyFormat::DialogInfo => {
                let body = dialog_info_xml(&names, self.version, &self.current, self.config.notify_ringing);
                self.version = self.version.wrapping_add(1);
                body
            }
            BodyFormat::Pidf => pidf_xml(&names, &self.current),
            BodyFormat::Xpidf => xpidf_xml(&names, &self.current),
            BodyFormat::MessageSummary => self.summary.body(),
        };
        notify.headers.push(HeaderName::ContentType, self.format.content_type());
        notify.body = body.into_bytes();
        self.in_flight = Some(seq);
        let target = notify
            .headers
            .get(&HeaderName::Route)
            .and_then(|r| crate::NameAddr::parse(r).ok())
            .map_or_else(|| notify.uri.clone(), |r| r.uri);
        self.transmits.push_back(Transmit::Request { request: notify, target });
    }
}
