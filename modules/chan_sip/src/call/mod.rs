//! A call (Asterisk's `sip_pvt`): how one is set up (`setup`), its task (`driver`, which runs
//! the SIP dialog's [`InviteSession`](starling_sip::session::InviteSession) through
//! `signalling` and the RTP through `media`), the messages it exchanges with the monitor
//! (`messages`), what a native bridge sees of it (`native`), its SDES-SRTP (`sdes`), the status codes and causes it
//! ends with (`causes`) and what the CLI shows of it (`show`).

pub mod causes;
pub mod driver;
pub mod jitter;
pub mod media;
pub mod messages;
pub mod native;
pub mod sdes;
pub mod setup;
pub mod show;
mod signalling;
