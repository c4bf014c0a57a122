//! What flows through a channel: voice, DTMF and control frames, and hangup causes.

/// A voice or control frame, as Asterisk's `ast_frame`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Audio in a format (`"ulaw"`, `"alaw"`, `"opus"`, `"slin"`...), `samples` long.
    Voice {
        format: &'static str,
        samples: u32,
        data: Vec<u8>,
    },
    DtmfBegin(char),
    DtmfEnd {
        digit: char,
        duration_ms: u32,
    },
    Control(Control),
    /// The far end asks (a SIP REFER) that the party it talks to go to this extension: a
    /// blind transfer, carried out by the bridge the channel is in.
    Transfer(String),
    /// The far end asks (a SIP REFER with Replaces) that the party it talks to be connected
    /// with the party of its other call, the channel named here, and leaves both: an attended
    /// transfer, carried out by the bridge the channel is in.
    AttendedTransfer(String),
    /// An attended transfer elsewhere replaces this channel: its bridge hands over the party
    /// it is connected to (or asks for the transferee, see [`Handover`]) and the channel leaves.
    Replace(Reply<Handover>),
    /// A pickup ([`crate::pickup`]) asks the task that rings this channel (Dial) to take the
    /// picker in its place: it answers with where to send the picker.
    Pickup(Reply<crate::pickup::PickupTake>),
    /// The far end hung up, with this cause.
    Hangup(Cause),
    /// The manager sets a variable on the channel (`Setvar`); applied by the channel's own
    /// read, never seen by applications.
    SetVar(String, String),
    /// The manager sends the channel elsewhere in the dialplan (`Redirect`): reads end, as at
    /// a hangup, and the PBX loop goes on there.
    Redirect(crate::channel::Jump),
    /// The manager reads a variable or a function (`Getvar` of `CALLERID(num)`): evaluated by
    /// the channel's own read, as `${...}` on the channel, and answered through the reply.
    GetVar(String, Reply),
}

/// Where a channel answers a request from outside ([`Frame::GetVar`]): the first answer is
/// kept, later ones are dropped. Frames are compared by content; two replies are equal only
/// when they are the same one.
pub struct Reply<T = String>(std::sync::Arc<std::sync::Mutex<Option<crate::tokio::sync::oneshot::Sender<T>>>>);

impl<T> Reply<T> {
    /// A reply and the receiver its answer arrives on.
    pub fn new() -> (Reply<T>, crate::tokio::sync::oneshot::Receiver<T>) {
        let (tx, rx) = crate::tokio::sync::oneshot::channel();
        (Reply(std::sync::Arc::new(std::sync::Mutex::new(Some(tx)))), rx)
    }
    /// Answers (the first time); gives the value back if the asker has gone or was answered.
    pub fn send(&self, value: T) -> Result<(), T> {
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(tx) => tx.send(value),
            None => Err(value),
        }
    }
}

impl<T> Clone for Reply<T> {
    fn clone(&self) -> Reply<T> {
        Reply(self.0.clone())
    }
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

impl<T> PartialEq for Reply<T> {
    fn eq(&self, other: &Reply<T>) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> Eq for Reply<T> {}

/// What the bridge of a replaced channel answers ([`Frame::Replace`]).
pub enum Handover {
    /// The party it was connected to, now the asker's to connect with the transferee.
    Party(Box<crate::channel::Channel>),
    /// Its party cannot leave its task (it runs the dialplan): send the transferee here.
    Want(crate::tokio::sync::oneshot::Sender<crate::channel::Channel>),
}

/// Call progress, as Asterisk's `AST_CONTROL_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Ringing,
    Progress,
    Answer,
    Busy,
    Congestion,
    Hold,
    Unhold,
}

/// A Q.850 hangup cause (Asterisk's `AST_CAUSE_*`), kept by number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cause(pub u16);

impl Cause {
    pub const UNALLOCATED: Cause = Cause(1);
    pub const NO_ROUTE_DESTINATION: Cause = Cause(3);
    pub const NORMAL_CLEARING: Cause = Cause(16);
    pub const USER_BUSY: Cause = Cause(17);
    pub const NO_USER_RESPONSE: Cause = Cause(18);
    pub const NO_ANSWER: Cause = Cause(19);
    pub const SUBSCRIBER_ABSENT: Cause = Cause(20);
    pub const CALL_REJECTED: Cause = Cause(21);
    pub const NUMBER_CHANGED: Cause = Cause(22);
    pub const DESTINATION_OUT_OF_ORDER: Cause = Cause(27);
    pub const ANSWERED_ELSEWHERE: Cause = Cause(26);
    pub const INVALID_NUMBER_FORMAT: Cause = Cause(28);
    pub const FACILITY_REJECTED: Cause = Cause(29);
    pub const NORMAL_UNSPECIFIED: Cause = Cause(31);
    pub const CONGESTION: Cause = Cause(34);
    pub const NETWORK_OUT_OF_ORDER: Cause = Cause(38);
    pub const NORMAL_TEMPORARY_FAILURE: Cause = Cause(41);
    pub const SWITCH_CONGESTION: Cause = Cause(42);
    /// What Dial reports as `CHANUNAVAIL` (an unknown peer, an unreachable one).
    pub const REQUESTED_CHAN_UNAVAIL: Cause = Cause(44);
    pub const BEARERCAPABILITY_NOTAVAIL: Cause = Cause(58);
    pub const INCOMPATIBLE_DESTINATION: Cause = Cause(88);
    /// Asterisk's `AST_CAUSE_FAILURE` is `NETWORK_OUT_OF_ORDER`.
    pub const FAILURE: Cause = Cause(38);
    pub const RECOVERY_ON_TIMER_EXPIRE: Cause = Cause(102);
    pub const INTERWORKING: Cause = Cause(127);

    /// Asterisk's name for the cause (`ast_cause2str`'s short form, as `HANGUPCAUSE` text).
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "UNALLOCATED",
            3 => "NO_ROUTE_DESTINATION",
            16 => "NORMAL_CLEARING",
            17 => "USER_BUSY",
            18 => "NO_USER_RESPONSE",
            19 => "NO_ANSWER",
            20 => "SUBSCRIBER_ABSENT",
            21 => "CALL_REJECTED",
            22 => "NUMBER_CHANGED",
            27 => "DESTINATION_OUT_OF_ORDER",
            26 => "ANSWERED_ELSEWHERE",
            28 => "INVALID_NUMBER_FORMAT",
            29 => "FACILITY_REJECTED",
            31 => "NORMAL_UNSPECIFIED",
            34 => "NORMAL_CIRCUIT_CONGESTION",
            38 => "NETWORK_OUT_OF_ORDER",
            41 => "NORMAL_TEMPORARY_FAILURE",
            42 => "SWITCH_CONGESTION",
            44 => "REQUESTED_CHAN_UNAVAIL",
            58 => "BEARERCAPABILITY_NOTAVAIL",
            88 => "INCOMPATIBLE_DESTINATION",
            102 => "RECOVERY_ON_TIMER_EXPIRE",
            127 => "INTERWORKING",
            _ => "UNKNOWN",
        }
    }

    /// Asterisk's description of the cause (`ast_cause2str`: the manager's `Cause-txt`).
    pub fn description(self) -> &'static str {
        match self.0 {
            1 => "Unallocated (unassigned) number",
            3 => "No route to destination",
            16 => "Normal Clearing",
            17 => "User busy",
            18 => "No user responding",
            19 => "User alerting, no answer",
            20 => "Subscriber absent",
            21 => "Call Rejected",
            22 => "Number changed",
            26 => "Answered elsewhere",
            27 => "Destination out of order",
            28 => "Invalid number format",
            29 => "Facility rejected",
            31 => "Normal, unspecified",
            34 => "Circuit/channel congestion",
            38 => "Network out of order",
            41 => "Temporary failure",
            42 => "Switching equipment congestion",
            44 => "Requested channel not available",
            58 => "Bearer capability not available",
            88 => "Incompatible destination",
            102 => "Recovery on timer expiry",
            127 => "Interworking, unspecified",
            _ => "Unknown",
        }
    }

    /// A cause given by number or by name (`Hangup(17)`, `Hangup(USER_BUSY)`).
    pub fn parse(text: &str) -> Option<Cause> {
        let text = text.trim();
        if let Ok(n) = text.parse::<u16>() {
            return (1..=127).contains(&n).then_some(Cause(n));
        }
        (1..=127).map(Cause).find(|c| c.name().eq_ignore_ascii_case(text) && c.name() != "UNKNOWN")
    }
}

/// Caller ID (Asterisk's `CALLERID(name)`, `CALLERID(num)` and `CALLERID(pres)`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallerId {
    pub name: String,
    pub number: String,
    /// One presentation for name and number (Asterisk's combined `CALLERID(pres)`).
    pub presentation: Presentation,
}

/// Caller presentation: an Asterisk `AST_PRES_*` value (`callingpres=`, `CALLERID(pres)`).
/// The default is `allowed_not_screened` (0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Presentation(pub u8);

/// Asterisk's table (main/callerid.c `pres_types`): value, name, description.
const PRESENTATIONS: [(u8, &str, &str); 9] = [
    (0x00, "allowed_not_screened", "Presentation Allowed, Not Screened"),
    (0x01, "allowed_passed_screen", "Presentation Allowed, Passed Screen"),
    (0x02, "allowed_failed_screen", "Presentation Allowed, Failed Screen"),
    (0x03, "allowed", "Presentation Allowed, Network Number"),
    (0x20, "prohib_not_screened", "Presentation Prohibited, Not Screened"),
    (0x21, "prohib_passed_screen", "Presentation Prohibited, Passed Screen"),
    (0x22, "prohib_failed_screen", "Presentation Prohibited, Failed Screen"),
    (0x23, "prohib", "Presentation Prohibited, Network Number"),
    (0x43, "unavailable", "Number Unavailable"),
];

impl Presentation {
    pub const ALLOWED_NOT_SCREENED: Presentation = Presentation(0x00);
    pub const ALLOWED_PASSED_SCREEN: Presentation = Presentation(0x01);
    pub const ALLOWED_FAILED_SCREEN: Presentation = Presentation(0x02);
    pub const ALLOWED: Presentation = Presentation(0x03);
    pub const PROHIB_NOT_SCREENED: Presentation = Presentation(0x20);
    pub const PROHIB_PASSED_SCREEN: Presentation = Presentation(0x21);
    pub const PROHIB_FAILED_SCREEN: Presentation = Presentation(0x22);
    pub const PROHIB: Presentation = Presentation(0x23);
    pub const UNAVAILABLE: Presentation = Presentation(0x43);

    /// A name of Asterisk's table (any case), or a number 0-255 (as `CALLERID(pres)=` takes
    /// one starting with a digit).
    pub fn parse(text: &str) -> Option<Presentation> {
        let text = text.trim();
        if text.starts_with(|c: char| c.is_ascii_digit()) {
            return text.parse().ok().map(Presentation);
        }
        PRESENTATIONS.iter().find(|p| p.1.eq_ignore_ascii_case(text)).map(|p| Presentation(p.0))
    }

    /// The name `CALLERID(pres)` reads (`ast_named_caller_presentation`), `unknown` off the table.
    pub fn name(self) -> &'static str {
        PRESENTATIONS.iter().find(|p| p.0 == self.0).map_or("unknown", |p| p.1)
    }

    /// The description the manager shows (`ast_describe_caller_presentation`).
    pub fn describe(self) -> &'static str {
        PRESENTATIONS.iter().find(|p| p.0 == self.0).map_or("unknown", |p| p.2)
    }

    /// Whether the caller may be shown (`(pres & AST_PRES_RESTRICTION) == AST_PRES_ALLOWED`).
    pub fn is_allowed(self) -> bool {
        self.0 & 0x60 == 0
    }
}

impl CallerId {
    /// `"Name" <number>` as `callerid=` writes it, or a bare number.
    pub fn parse(text: &str) -> CallerId {
        let text = text.trim();
        match (text.find('<'), text.rfind('>')) {
            (Some(open), Some(close)) if close > open => CallerId {
                name: text[..open].trim().trim_matches('"').to_owned(),
                number: text[open + 1..close].trim().to_owned(),
                presentation: Presentation::default(),
            },
            _ => CallerId {
                name: String::new(),
                number: text.trim_matches('"').to_owned(),
                presentation: Presentation::default(),
            },
        }
    }
}

impl std::fmt::Display for CallerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.name.is_empty(), self.number.is_empty()) {
            (true, _) => write!(f, "<{}>", self.number),
            (false, _) => write!(f, "\"{}\" <{}>", self.name, self.number),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_by_number_and_name() {
        assert_eq!(Cause::parse("17"), Some(Cause::USER_BUSY));
        assert_eq!(Cause::parse("user_busy"), Some(Cause::USER_BUSY));
        assert_eq!(Cause::NORMAL_CLEARING.name(), "NORMAL_CLEARING");
        assert_eq!(Cause::parse("0"), None);
        assert_eq!(Cause::parse("bogus"), None);
    }

    #[test]
    fn caller_ids() {
        let c = CallerId::parse("\"Alice Smith\" <100>");
        assert_eq!((c.name.as_str(), c.number.as_str()), ("Alice Smith", "100"));
        assert_eq!(c.to_string(), "\"Alice Smith\" <100>");
        assert_eq!(CallerId::parse("5551212").number, "5551212");
    }

    #[test]
    fn presentations_by_name_and_number() {
        assert_eq!(Presentation::parse("PROHIB"), Some(Presentation::PROHIB));
        assert_eq!(Presentation::parse(" allowed_passed_screen "), Some(Presentation::ALLOWED_PASSED_SCREEN));
        assert_eq!(Presentation::parse("32"), Some(Presentation::PROHIB_NOT_SCREENED));
        assert_eq!(Presentation::parse("hidden"), None);
        assert_eq!(Presentation::parse("256"), None);
        assert_eq!(Presentation::UNAVAILABLE.name(), "unavailable");
        assert_eq!(Presentation(0x40).name(), "unknown");
        assert_eq!(Presentation::default().describe(), "Presentation Allowed, Not Screened");
        assert!(Presentation::ALLOWED.is_allowed() && Presentation::ALLOWED_FAILED_SCREEN.is_allowed());
        assert!(!Presentation::PROHIB.is_allowed() && !Presentation::UNAVAILABLE.is_allowed());
    }
}
