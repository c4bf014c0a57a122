//! extensions.conf and the PBX loop (issue 6). Not yet written.
