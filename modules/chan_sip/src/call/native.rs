//! What a native bridge (outbound.rs's `SIP` technology) sees of a call and hands it: the
//! media it publishes ([`MediaInfo`], read and written by the relay threads through
//! [`PublishedMedia`]), the other call of direct media ([`DirectTo`]), and the handle a channel
//! keeps on its call ([`PvtHandle`]).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use starling_core::tokio::sync::mpsc::UnboundedSender;
use starling_media::sdp::Codec;
use starling_media::srtp::SharedSrtp;
use starling_relay::{FarEnd, PublishedMedia};

use crate::call::messages::ToPvt;
use crate::config::{DirectMedia, DtmfMode};

/// The other call of direct media: where our far end is to send, and how to tell that call
/// when ours moves.
pub struct DirectTo {
    pub media: Arc<Mutex<MediaInfo>>,
    pub to_pvt: UnboundedSender<ToPvt>,
}

impl std::fmt::Debug for DirectTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectTo").finish_non_exhaustive()
    }
}

/// What a call publishes of its media for a native bridge to decide and to send to.
#[derive(Clone, Debug, Default)]
pub struct MediaInfo {
    /// The far end's RTP address (learnt from SDP, or from its packets with comedia).
    pub remote: FarEnd,
    /// The codec sent and received, with its payload type on this leg.
    pub codec: Option<Codec>,
    /// telephone-event on this leg (its payload type, clock rate), if negotiated.
    pub telephone_event: Option<Codec>,
    pub dtmfmode: DtmfMode,
    /// The peer's `directmedia`.
    pub directmedia: DirectMedia,
    /// The peer's `nat` has comedia: its far end is taken to be behind NAT.
    pub comedia: bool,
    /// Set when a native bridge starts: the stream this call was sending (SSRC, next sequence
    /// number, next timestamp), which the packets relayed to it must continue.
    pub continue_from: Option<(u32, u16, u32)>,
    /// The other call of a native bridge has begun relaying into this one's far end: frames
    /// that still arrive here (sent before it switched) are late, and are dropped.
    pub relayed_into: bool,
    /// The call's media is (or must be) SRTP: never directed elsewhere (chan_sip's "Direct
    /// media not possible when using SRTP"); relayed natively once keyed ([`MediaInfo::srtp`]),
    /// by the relay thread, never by the kernel.
    pub secure: bool,
    /// The call's SRTP once keyed: the relay opens what the far end sends and seals what goes
    /// to it with these contexts, the call's own.
    pub srtp: Option<SharedSrtp>,
    /// The relay has carried our stream on to our far end up to here (the next sequence
    /// number and timestamp): our own packets go on from there when it stops.
    pub relayed_until: Option<(u16, u32)>,
}

/// What the relay threads read and write of a call's [`MediaInfo`] (starling-relay).
impl PublishedMedia for MediaInfo {
    fn far_end(&self) -> FarEnd {
        self.remote
    }

    fn far_end_mut(&mut self) -> &mut FarEnd {
        &mut self.remote
    }

    /// The stream published (`continue_from`) is taken, and frames still arriving from before
    /// the switch are dropped from now on (`relayed_into`).
    fn begin_relaying_into(&mut self) -> Option<(u32, u16, u32)> {
        let stream = self.continue_from.take()?;
        self.relayed_into = true;
        Some(stream)
    }

    fn relayed_into(&mut self, next: (u16, u32)) {
        self.relayed_until = Some(next);
    }
}

/// The call's handle on its channel (`Channel::tech_pvt`): how the `SIP` technology reaches
/// it to bridge it natively.
pub struct PvtHandle {
    pub to_pvt: UnboundedSender<ToPvt>,
    pub rtp: Arc<std::net::UdpSocket>,
    pub media: Arc<Mutex<MediaInfo>>,
    /// Set by a direct media bridge from its start (before the call's task hears of it) to its
    /// end: voice written to the channel meanwhile is not sent.
    pub direct: Arc<AtomicBool>,
}
