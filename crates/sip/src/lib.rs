//! SIP without I/O (issue 4): messages over rsip, transactions, dialogs, digest. Not yet written.
