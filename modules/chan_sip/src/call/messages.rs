//! The messages between the monitor (which owns the socket and the transaction layer) and a
//! call's task.

use std::net::SocketAddr;

use starling_core::tokio::sync::mpsc::UnboundedSender;
use starling_sip::message::{Response, SipMessage};
use starling_sip::transaction::TxId;
use starling_sip::typed::CSeq;
use starling_sip::Request;

use starling_relay::RelayTo;

use crate::call::native::DirectTo;
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
    /// Start a client transaction (INVITE, CANCEL, BYE, INFO, PRACK...) to `remote`; its
    /// responses come back as [`ToPvt::Response`], its end without one as [`ToPvt::Timeout`].
    Request { request: Request, remote: SocketAddr },
    /// Send outside any transaction (the ACK of a 2xx, a reliable provisional again).
    Stateless { message: SipMessage, remote: SocketAddr },
    /// The call is over: forget its dialog, release its call-limit slot.
    Gone { key: CallKey, peer: String },
    /// Our INVITE to `peer` failed with `status`, one of its `reregister_on`: register its
    /// account (`register =>` line) again now.
    Reregister { peer: String, status: u16 },
    /// A DNS lookup the monitor started is done: `addresses` in the order to try them.
    Resolved { lookup: crate::resolve::Lookup, addresses: Vec<SocketAddr> },
    /// The hint a subscription (by its dialog) watches is in `state` now (Asterisk's
    /// extension state bits; -2: the hint went). Sent by the core's `extension_state_add`
    /// callback, which does nothing else.
    ExtensionState { key: CallKey, state: i32 },
}

/// What the monitor hands a call: the requests of its dialog, the responses to its requests.
#[derive(Debug)]
pub enum ToPvt {
    /// A request of the dialog, with the server transaction that answers it: none for an
    /// ACK, nor for a CANCEL (the transaction layer has answered it 200; the INVITE's 487 is
    /// the call's).
    Request { tx: Option<TxId>, request: Box<Request> },
    /// A response to a request the call sent (a 2xx retransmitted after its transaction too).
    Response(Box<Response>),
    /// The request the call sent with this CSeq had no final answer (Timer B/F), or could
    /// not be sent.
    Timeout(CSeq),
    /// Start (Some) or stop (None) relaying our RTP natively to another call.
    Relay(Option<Box<RelayTo>>),
    /// Start (Some) or stop (None) direct media (`directmedia`): our far end is re-INVITEd
    /// to send to the other call's far end, or back to us.
    Direct(Option<Box<DirectTo>>),
    /// The other call of direct media has a new address or codec: offer it again.
    DirectRefresh,
}
