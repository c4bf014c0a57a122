//! Device states (Asterisk's devicestate.c): what a device such as `SIP/alice` is doing, as its
//! technology tells ([`crate::tech::Tech::devicestate`]). Read by `DEVICE_STATE()`.

use crate::Core;

/// Asterisk's `enum ast_device_state`, with its names (`ast_devstate_str`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceState {
    Unknown,
    NotInUse,
    InUse,
    Busy,
    Invalid,
    Unavailable,
    Ringing,
    RingInUse,
    OnHold,
}

impl DeviceState {
    /// `UNKNOWN`, `NOT_INUSE`, `INUSE`, `BUSY`, `INVALID`, `UNAVAILABLE`, `RINGING`,
    /// `RINGINUSE`, `ONHOLD`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Unknown => "UNKNOWN",
            DeviceState::NotInUse => "NOT_INUSE",
            DeviceState::InUse => "INUSE",
            DeviceState::Busy => "BUSY",
            DeviceState::Invalid => "INVALID",
            DeviceState::Unavailable => "UNAVAILABLE",
            DeviceState::Ringing => "RINGING",
            DeviceState::RingInUse => "RINGINUSE",
            DeviceState::OnHold => "ONHOLD",
        }
    }
}

impl Core {
    /// The state of `device` (`Tech/data`): `INVALID` for no such technology, else what the
    /// technology says (`UNKNOWN` when it keeps no states).
    pub fn device_state(&self, device: &str) -> DeviceState {
        let Some((tech, data)) = device.split_once('/') else { return DeviceState::Invalid };
        match self.techs().get(tech) {
            Some(tech) => tech.devicestate(data),
            None => DeviceState::Invalid,
        }
    }
}
