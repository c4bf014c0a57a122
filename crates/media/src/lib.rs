//! RTP, SDP offer/answer, codecs (issue 5). Not yet written.
