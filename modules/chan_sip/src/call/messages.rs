//! The messages between the monitor (which owns the socket and the transaction layer) and a
//! call's task.

use std::net::SocketAddr;

use starling_core::tokio::sync::mpsc::UnboundedSender;
use starling_sip::message::{Response, SipMessage};
use starling_sip::transaction::TxId;
use starling_sip::Request;

use starling_relay::RelayTo;

use crate::pvt::DirectTo;
use crate::shared::CallKey;

/// What a call asks of the monitor (which owns the transaction layer and the socket).
#[derive(Debug)]
pub enum ToMonitor {
    /// A new outbound call: route its dialog's messages to `to_pvt`.
    NewCall { key: CallKey, to_pvt: UnboundedSender<ToPvt> },
    /// `sip qualify peer`: poke it now.
    Qualify { peer: String },
    /// Answer the INVITE (or another server transaction) with `response`.
    Respond { tx: TxId, response: Response },
    /// Start a client transaction (INVITE, CANCEL, BYE, INFO) to `remote`; its responses come
    /// back as [`ToPvt::Response`].
    Request { request: Request, remote: SocketAddr },
    /// Send outside any transaction (a retransmitted 2xx, the ACK for a 2xx).
    Stateless { message: SipMessage, remote: SocketAddr },
    /// The call is over: forget its dialog, release its call-limit slot.
    Gone { key: CallKey, peer: String },
    /// Our INVITE to `peer` failed with `status`, one of its `reregister_on`: register its
    /// account (`register =>` line) again now.
    Reregister { peer: String, status: u16 },
    /// A DNS lookup the monitor started is done: `addresses` in the order to try them.
    Resolved { lookup: crate::resolve::Lookup, addresses: Vec<SocketAddr> },
}

/// What the monitor hands a call: the requests of its dialog, the responses to its requests.
#[derive(Debug)]
pub enum ToPvt {
    Ack,
    Bye {
        tx: TxId,
        request: Box<Request>,
    },
    Cancelled,
    /// An INFO inside the dialog (a key press as `application/dtmf-relay`, or anything else).
    Info {
        tx: TxId,
        request: Box<Request>,
    },
    /// An UPDATE inside the dialog (RFC 3311): a new offer, early or answered, or a refresh.
    Update {
        tx: TxId,
        request: Box<Request>,
    },
    /// An INVITE inside the dialog: a new offer (hold, another address) or a session refresh.
    Reinvite {
        tx: TxId,
        request: Box<Request>,
    },
    /// A REFER inside the dialog: a blind transfer of the party we are bridged to.
    Refer {
        tx: TxId,
        request: Box<Request>,
    },
    /// A response to a request the call sent.
    Response(Box<Response>),
    /// A request the call sent had no answer at all (Timer B/F).
    Timeout,
    /// Start (Some) or stop (None) relaying our RTP natively to another call.
    Relay(Option<Box<RelayTo>>),
    /// Start (Some) or stop (None) direct media (`directmedia`): our far end is re-INVITEd
    /// to send to the other call's far end, or back to us.
    Direct(Option<Box<DirectTo>>),
    /// The other call of direct media has a new address or codec: offer it again.
    DirectRefresh,
}
