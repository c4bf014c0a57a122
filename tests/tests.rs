//! End-to-end tests: the real `starling` binary in a temp dir, driven from outside.

mod util;

// Start-up, stop, exit codes, signals, the pid file and daemon mode.
mod startup;
// The control socket: -rx, -r, completion, per-console verbosity.
mod control;
// The module loader: load, unload, reload, refusal, use counts, the build boundary.
mod loader;
// The dialplan through pbx_config: dialplan show, reload, errors.
mod dialplan;
// chan_sip: OPTIONS, 400s, registrations, calls, ACLs, IPv6, the sip CLI.
mod sip;
// SIP over TCP: framing, keepalives, calls, registrations and Dial over connections.
mod tcp;
// Dial(SIP/...) and bridging, SIPp on both sides.
mod dial;
// Peer poking: qualify statuses and Dial to an unreachable peer.
mod qualify;
// Outbound registration: register => lines against SIPp registrars.
mod registry;
// CDRs from real calls: cdr_csv and cdr_sqlite3.
mod cdr;
// The manager interface: res_manager with raw TCP clients and SIPp calls.
mod manager;
// Issue 20: hostile input (deep nesting from a guest) reaches bounded parsers and evaluators.
mod hostile;
// Load shedding: the server-transaction cap under a flood, maxcalls, the graceful stop's drain.
mod overload;
// Issue 20: a panic is contained to its call, or ends the process with 70 (test_panic fixture).
mod panic;
// Issue 21: runuser/rungroup, the control socket's mode and owner.
mod privileges;
// Issue 21: strict digest, security events and the log fail2ban reads (Debian's fail2ban-regex).
mod security;
// Issue 22: DTMF interworking between every pair of dtmfmode through Dial (hand-made phones).
mod dtmf;
// Issue 22: rtptimeout and rtpholdtimeout hang up silent calls, as chan_sip's check_rtp_timeout.
mod rtptimeout;
// Issue 22: sip.conf's jitter buffer (jbenable, jbforce...): reordered packets to Echo() and through a bridge.
mod jitter;
// Issue 23: session timers and 100rel/PRACK on the call's sans-IO session.
mod timers;
// Issue 25: device state, Custom devices, hints, EXTENSION_STATE and the manager's extension states.
mod hints;
// Issue 24: SIP over TLS with baresip, a second Starling and Kamailio's tls module.
mod tls;
// Issue 24: SDES-SRTP with baresip over TLS (srtp-mand), a capture of the wire, SIPp's SDES over UDP.
mod srtp;
// Issue 24: the manager over TLS (tlsenable in manager.conf) beside its plain listener.
mod manager_tls;
// Issue 24: transport= lists (what a peer may register over) and sip reload of TLS certificates.
mod transports;
// Issue 25: SUBSCRIBE/NOTIFY (dialog, presence) in chan_sip, SIPp BLF keys.
mod subscribe;
// Issue 26: voicemail (VoiceMail, VoiceMailMain, the spool, email) and MWI NOTIFYs in chan_sip.
mod voicemail;
// Issue 25: call pickup (pickupexten, Pickup, PickupChan, INVITE with Replaces) with baresip and SIPp.
mod pickup;
