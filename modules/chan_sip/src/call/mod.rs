//! A call (Asterisk's `sip_pvt`) as chan_sip sees it from outside its task: how one is set up
//! (`setup`), the messages its task exchanges with the monitor (`messages`), the status codes
//! and causes it ends with (`causes`) and what the CLI shows of it (`show`). The task itself is
//! `pvt.rs`.

pub mod causes;
pub mod jitter;
pub mod media;
pub mod messages;
pub mod setup;
pub mod show;
