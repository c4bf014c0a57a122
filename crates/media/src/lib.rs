//! Media without I/O: what makes a call carry sound (ARCHITECTURE.md's call flow, steps 2–4).
//!
//! Like `starling-sip`, this crate holds protocol state and is handed packets and the current
//! time; it never opens a socket or reads the clock. The socket driver in chan_sip is thin.
//!
//! - [`g711`]: µ-law and A-law, both directions. [`opus`]: Opus via libopus (audiopus).
//! - [`session`]: one leg's RTP session: sequence/timestamps, receive statistics, RTCP
//!   reports and RTT, comedia/strictrtp, RTP timeout. [`rtcp`]: SR/RR/SDES/BYE.
//! - [`dtmf`]: RFC 4733 telephone-events (receive, send) and inband (Goertzel) detection.
//! - [`audio_file`]: `.wav`, `.ulaw`, `.alaw`, `.sln`; [`player`]: a file played frame by frame, seekable. [`ports`]: the rtp.conf port range.
//! - [`sdes`]: `a=crypto` (RFC 4568) read and written.
//! - [`sdp`]: offer/answer for one audio stream (parsing with sdp-rs), codec negotiation, hold.
//! - [`resample`]: 8/16/48 kHz conversion (polyphase windowed sinc).
//! - [`translate`]: the translation matrix (cheapest paths, `core show translation`) and translators.
//! - [`jitter`]: fixed and adaptive jitter buffers for decoded legs.
//! - [`tones`]: indications.conf tone syntax, a tone generator, built-in countries.
//! - [`relay`]: the native RTP relay (in place, no allocation, continuity across far-end changes).
//! - [`srtp`]: SRTP/SRTCP (RFC 3711) keyed by SDES, per leg (rtc-srtp; why, in its header).

pub mod audio_file;
pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod opus;
pub mod player;
pub mod ports;
pub mod relay;
pub mod resample;
pub mod rtcp;
pub mod sdes;
pub mod sdp;
pub mod session;
pub mod srtp;
pub mod tones;
pub mod translate;
