//! SIP messages: parsing from bytes, building, and writing back.
//!
//! [`parse_datagram`] reads one UDP datagram; [`StreamDecoder`] cuts a TCP byte stream into
//! messages by `Content-Length` and recognises CRLF keepalives (RFC 5626 §3.5.1). Parsing
//! normalises as it goes: compact header names become full names, folded lines are joined,
//! list headers (Via, Contact, Route, Record-Route) are split into one entry per value, and
//! the headers every transaction needs (Via, From, To, Call-ID, CSeq, Max-Forwards,
//! Content-Length) are checked, so a message that parses can be routed without more errors.
//!
//! A malformed request gives a [`ParseError`] that can often still be answered:
//! [`ParseError::bad_request`] builds the `400` from the headers that did parse, with a
//! reason phrase naming the fault.

use std::fmt::{self, Write as _};

use crate::header::{split_list, HeaderName, Headers};
use crate::typed::{is_token_char, CSeq, Method, NameAddr, ValueError, Via};
use crate::uri::Uri;

/// Datagrams larger than this are refused (a UDP datagram cannot be larger; Asterisk's chan_sip
/// reads them into a buffer of this size).
pub const MAX_MESSAGE: usize = 65_535;

/// Messages on a stream (TCP) larger than this, head and body, are refused: Asterisk's
/// `SIP_MAX_PACKET_SIZE`, past which chan_sip's TCP reader drops the connection. A stream that
/// sends more without a message end, or declares a body that would take a message past it, is
/// broken or hostile.
pub const MAX_STREAM_MESSAGE: usize = 20_480;

/// A request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// A response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// A request or a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SipMessage {
    Request(Request),
    Response(Response),
}

/// What is wrong with a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    #[error("message is empty")]
    Empty,
    #[error("message is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("Content-Length {declared} makes the message larger than {limit} bytes")]
    ContentLengthTooLarge { declared: usize, limit: usize },
    #[error("no blank line after the headers")]
    NoHeaderEnd,
    #[error("headers are not UTF-8")]
    NotUtf8,
    #[error("malformed start line")]
    BadStartLine,
    #[error("unsupported SIP version '{0}'")]
    BadVersion(String),
    #[error("bad status code")]
    BadStatus,
    #[error("bad Request-URI: {0}")]
    BadRequestUri(ValueError),
    #[error("malformed header line '{0}'")]
    BadHeaderLine(String),
    #[error("bad {0} header: {1}")]
    BadHeader(&'static str, ValueError),
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("more than one {0} header")]
    Duplicate(&'static str),
    #[error("bad Content-Length")]
    BadContentLength,
    #[error("Content-Length {declared} is larger than the body ({actual} bytes)")]
    BodyTooShort { declared: usize, actual: usize },
    #[error("bad Max-Forwards")]
    BadMaxForwards,
    #[error("CSeq method {cseq} does not match the request method {method}")]
    MethodMismatch { cseq: String, method: String },
}

/// A message that could not be parsed. When it was a request whose Via, From, To, Call-ID and
/// CSeq could be read, [`ParseError::bad_request`] answers it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    /// The headers as read, when the message was a request and its header lines were read.
    request_headers: Option<Headers>,
}

impl ParseError {
    fn new(kind: ParseErrorKind) -> ParseError {
        ParseError { kind, request_headers: None }
    }

    /// A `400 Bad Request` for the faulty request, with the fault in the reason phrase (`505
    /// Version Not Supported` for another SIP version), or `None` when not enough of it could
    /// be read to address a response (then drop it).
    pub fn bad_request(&self) -> Option<Response> {
        let headers = self.request_headers.as_ref()?;
        let vias: Vec<&str> = headers.get_all(&HeaderName::Via).collect();
        // The response carries every Via back; one that does not parse would make it unreadable.
        if vias.is_empty() || !vias.iter().all(|v| Via::parse(v).is_ok()) {
            return None;
        }
        // From, To, Call-ID and CSeq are copied as they came, even when they are the fault
        // (RFC 4475 quotbal, scalar02): the client matches its transaction by Via branch and
        // CSeq method, which is all the response must get right.
        let from = headers.get(&HeaderName::From).filter(|v| !v.is_empty())?;
        let to = headers.get(&HeaderName::To).filter(|v| !v.is_empty())?;
        let call_id = headers.get(&HeaderName::CallId).filter(|v| !v.is_empty())?;
        // A CSeq whose number is bad (RFC 4475 scalar02) is still answered, copied as it came:
        // the client matches its transaction by branch and method.
        let cseq = headers.get(&HeaderName::CSeq)?;
        let method = cseq.split_ascii_whitespace().nth(1)?;
        if method == "ACK" {
            return None; // never answer an ACK
        }
        let mut response = match &self.kind {
            ParseErrorKind::BadVersion(_) => Response::new(505, "Version Not Supported"),
            kind => Response::new(400, format!("Bad Request - {kind}")),
        };
        // A reason phrase is one line of text: keep the fault but not its control characters.
        response.reason.retain(|c| !c.is_control());
        for via in vias {
            response.headers.push(HeaderName::Via, via);
        }
        response.headers.push(HeaderName::From, from);
        response.headers.push(HeaderName::To, to);
        response.headers.push(HeaderName::CallId, call_id);
        response.headers.push(HeaderName::CSeq, cseq);
        Some(response)
    }
}

/// One datagram's content.
// Short-lived and matched at once: boxing the message would cost an allocation per datagram.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Datagram {
    Message(SipMessage),
    /// Only CR and LF: a keepalive, not a message (no answer over UDP).
    KeepAlive,
}

/// Parses one UDP datagram. A body longer than `Content-Length` is cut to it; a shorter one
/// is an error (RFC 3261 §18.3).
pub fn parse_datagram(data: &[u8]) -> Result<Datagram, ParseError> {
    if !data.is_empty() && data.iter().all(|b| *b == b'\r' || *b == b'\n') {
        return Ok(Datagram::KeepAlive);
    }
    parse_message(data, Framing::Datagram).map(|(message, _)| Datagram::Message(message))
}

/// Parses a complete message (as `parse_datagram`, keepalives being an error).
pub fn parse(data: &[u8]) -> Result<SipMessage, ParseError> {
    parse_message(data, Framing::Datagram).map(|(message, _)| message)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// The body is the rest of the datagram, cut to Content-Length.
    Datagram,
    /// The body is exactly Content-Length (0 when absent); more bytes belong to the next message.
    Stream,
}

fn find_header_end(data: &[u8]) -> Option<(usize, usize)> {
    // Returns (end of headers, start of body).
    let crlf = memchr::memmem::find(data, b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = memchr::memmem::find(data, b"\n\n").map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Parses one message from the start of `data`; returns it and how many bytes it used.
fn parse_message(data: &[u8], framing: Framing) -> Result<(SipMessage, usize), ParseError> {
    if data.len() > MAX_MESSAGE {
        return Err(ParseError::new(ParseErrorKind::TooLarge { limit: MAX_MESSAGE }));
    }
    // RFC 3261 §7.5: CRLFs before the start line are ignored.
    let skip = data.iter().position(|b| *b != b'\r' && *b != b'\n').ok_or(ParseError::new(ParseErrorKind::Empty))?;
    let data_from = &data[skip..];
    let (head_end, body_start) = find_header_end(data_from).ok_or(ParseError::new(ParseErrorKind::NoHeaderEnd))?;
    let head = std::str::from_utf8(&data_from[..head_end]).map_err(|_| ParseError::new(ParseErrorKind::NotUtf8))?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next().unwrap_or("");
    let start = parse_start_line(start_line)?;
    let is_request = matches!(start, StartLine::Request(..) | StartLine::OtherVersion(..));

    let headers = match parse_headers(lines) {
        Ok(headers) => headers,
        Err(kind) => return Err(ParseError { kind, request_headers: None }),
    };
    let fail = |kind: ParseErrorKind, headers: &Headers| ParseError {
        kind,
        request_headers: is_request.then(|| headers.clone()),
    };

    let content_length = match headers.get_all(&HeaderName::ContentLength).collect::<Vec<_>>().as_slice() {
        [] => None,
        [one] => Some(parse_content_length(one).ok_or_else(|| fail(ParseErrorKind::BadContentLength, &headers))?),
        [first, rest @ ..] => {
            // The same value twice is harmless; different values are not.
            if rest.iter().any(|v| v.trim() != first.trim()) {
                return Err(fail(ParseErrorKind::Duplicate("Content-Length"), &headers));
            }
            Some(parse_content_length(first).ok_or_else(|| fail(ParseErrorKind::BadContentLength, &headers))?)
        }
    };
    let available = &data_from[body_start..];
    let body_len = match (framing, content_length) {
        (Framing::Datagram, None) => available.len(),
        (Framing::Stream, None) => 0,
        (_, Some(declared)) => {
            if declared > available.len() {
                return Err(fail(ParseErrorKind::BodyTooShort { declared, actual: available.len() }, &headers));
            }
            declared
        }
    };
    let used = skip + body_start + body_len;
    let body = available[..body_len].to_vec();

    if let StartLine::OtherVersion(version) = &start {
        return Err(fail(ParseErrorKind::BadVersion(version.clone()), &headers));
    }
    if let Err(kind) = check_headers(&headers, &start) {
        return Err(fail(kind, &headers));
    }
    let message = match start {
        StartLine::Request(method, uri) => SipMessage::Request(Request { method, uri, headers, body }),
        StartLine::Response(status, reason) => SipMessage::Response(Response { status, reason, headers, body }),
        StartLine::OtherVersion(..) => unreachable!("returned above"),
    };
    Ok((message, used))
}

fn parse_content_length(value: &str) -> Option<usize> {
    let value = value.trim();
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

enum StartLine {
    Request(Method, Uri),
    Response(u16, String),
    /// A request of another SIP version: an error, once the headers are read.
    OtherVersion(String),
}

/// Request-Line = Method SP Request-URI SP SIP-Version; Status-Line = SIP-Version SP
/// Status-Code SP Reason-Phrase. Exactly one space apart, as the grammar says.
fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    let bad = || ParseError::new(ParseErrorKind::BadStartLine);
    if let Some(rest) = line.strip_prefix("SIP/") {
        let (version, rest) = rest.split_once(' ').ok_or_else(bad)?;
        if version != "2.0" {
            return Err(ParseError::new(ParseErrorKind::BadVersion(format!("SIP/{version}"))));
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::new(ParseErrorKind::BadStatus));
        }
        let status: u16 = code.parse().map_err(|_| ParseError::new(ParseErrorKind::BadStatus))?;
        if !(100..=699).contains(&status) {
            return Err(ParseError::new(ParseErrorKind::BadStatus));
        }
        return Ok(StartLine::Response(status, reason.to_owned()));
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let method = Method::parse(method).ok_or_else(bad)?;
    if !version.starts_with("SIP/") || version.len() < 5 {
        return Err(bad());
    }
    let uri = Uri::parse(uri).map_err(|e| ParseError::new(ParseErrorKind::BadRequestUri(e.into())))?;
    if version != "SIP/2.0" {
        // Read on: the headers let the caller answer 505.
        return Ok(StartLine::OtherVersion(version.to_owned()));
    }
    Ok(StartLine::Request(method, uri))
}

/// Reads header lines, joining folded ones and splitting list headers.
fn parse_headers<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Headers, ParseErrorKind> {
    let mut headers = Headers(Vec::with_capacity(16));
    let mut pending: Option<(&'a str, String)> = None;
    let flush = |headers: &mut Headers, (name, value): (&str, String)| {
        let name = HeaderName::parse(name);
        if name.is_list() && value.contains(',') {
            for part in split_list(&value) {
                headers.push(name.clone(), part);
            }
        } else {
            headers.push(name, value);
        }
    };
    for line in lines {
        if line.starts_with([' ', '\t']) {
            // A folded line continues the previous header, joined by one space.
            let Some((_, value)) = pending.as_mut() else {
                return Err(ParseErrorKind::BadHeaderLine(line.trim().to_owned()));
            };
            // (Onto an empty value without the space, and a blank line adds nothing: a value
            // is written back trimmed, and must read back the same.)
            let more = line.trim();
            if !more.is_empty() {
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(more);
            }
            continue;
        }
        if let Some(header) = pending.take() {
            flush(&mut headers, header);
        }
        let Some(colon) = line.find(':') else {
            return Err(ParseErrorKind::BadHeaderLine(line.to_owned()));
        };
        let name = line[..colon].trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(ParseErrorKind::BadHeaderLine(line.to_owned()));
        }
        pending = Some((name, line[colon + 1..].trim().to_owned()));
    }
    if let Some(header) = pending.take() {
        flush(&mut headers, header);
    }
    Ok(headers)
}

/// Checks the headers every message needs (RFC 3261 §8.1.1).
fn check_headers(headers: &Headers, start: &StartLine) -> Result<(), ParseErrorKind> {
    let mut vias = headers.get_all(&HeaderName::Via).peekable();
    if vias.peek().is_none() {
        return Err(ParseErrorKind::Missing("Via"));
    }
    for via in vias {
        Via::parse(via).map_err(|e| ParseErrorKind::BadHeader("Via", e))?;
    }
    for (name, label) in [(HeaderName::From, "From"), (HeaderName::To, "To")] {
        let mut values = headers.get_all(&name);
        let value = values.next().ok_or(ParseErrorKind::Missing(label))?;
        if values.next().is_some() {
            return Err(ParseErrorKind::Duplicate(label));
        }
        NameAddr::parse(value).map_err(|e| ParseErrorKind::BadHeader(label, e))?;
    }
    let mut call_ids = headers.get_all(&HeaderName::CallId);
    let call_id = call_ids.next().ok_or(ParseErrorKind::Missing("Call-ID"))?;
    if call_ids.next().is_some() {
        return Err(ParseErrorKind::Duplicate("Call-ID"));
    }
    check_call_id(call_id)?;
    let mut cseqs = headers.get_all(&HeaderName::CSeq);
    let cseq = cseqs.next().ok_or(ParseErrorKind::Missing("CSeq"))?;
    if cseqs.next().is_some() {
        return Err(ParseErrorKind::Duplicate("CSeq"));
    }
    let cseq = CSeq::parse(cseq).map_err(|e| ParseErrorKind::BadHeader("CSeq", e))?;
    if let StartLine::Request(method, _) = start {
        if &cseq.method != method {
            return Err(ParseErrorKind::MethodMismatch { cseq: cseq.method.to_string(), method: method.to_string() });
        }
    }
    if let Some(max_forwards) = headers.get(&HeaderName::MaxForwards) {
        // 1*DIGIT, leading zeros allowed (RFC 4475 wsinv: "0068" is 68).
        let ok = !max_forwards.is_empty()
            && max_forwards.len() <= 10
            && max_forwards.bytes().all(|b| b.is_ascii_digit())
            && max_forwards.parse::<u32>().is_ok_and(|n| n <= 255);
        if !ok {
            return Err(ParseErrorKind::BadMaxForwards);
        }
    }
    for name in [HeaderName::Contact, HeaderName::Route, HeaderName::RecordRoute] {
        for value in headers.get_all(&name) {
            if name == HeaderName::Contact && value == "*" {
                continue;
            }
            NameAddr::parse(value).map_err(|e| ParseErrorKind::BadHeader(header_label(&name), e))?;
        }
    }
    Ok(())
}

/// Call-ID = word [ "@" word ] (RFC 3261 §25.1).
fn check_call_id(value: &str) -> Result<(), ParseErrorKind> {
    let word = |w: &str| !w.is_empty() && w.bytes().all(|b| is_token_char(b) || b"()<>:\\\"/[]?{}".contains(&b));
    let valid = match value.split_once('@') {
        Some((a, b)) => word(a) && word(b),
        None => word(value),
    };
    if valid {
        Ok(())
    } else {
        Err(ParseErrorKind::BadHeader("Call-ID", ValueError::BadCallId))
    }
}

fn header_label(name: &HeaderName) -> &'static str {
    match name {
        HeaderName::Contact => "Contact",
        HeaderName::Route => "Route",
        HeaderName::RecordRoute => "Record-Route",
        _ => "a",
    }
}

/// Cuts a byte stream (TCP) into messages by Content-Length, holding at most one message's
/// worth of bytes.
///
/// The state is where the message at the front of the buffer stands: its head is searched for
/// the blank line from where the last search stopped (so framing costs time linear in the
/// bytes read, however the stream is cut), and once the blank line is found its declared
/// length is known, checked against the limit, and only awaited. A message over the limit —
/// a head with no blank line within it, or a Content-Length that would take it past — is an
/// error as soon as that is known, before its body is read: nothing past the limit is kept
/// beyond the one read that crossed it.
#[derive(Debug)]
pub struct StreamDecoder {
    buffer: Vec<u8>,
    /// The largest message accepted (head and body).
    max: usize,
    /// How much of the buffer's front has been searched for the blank line without finding it.
    scanned: usize,
    /// The front message's whole length, once its head is complete.
    framed: Option<usize>,
    /// In a run of CRs and LFs before a start line (see `next_item`).
    skipping_blanks: bool,
}

impl Default for StreamDecoder {
    fn default() -> StreamDecoder {
        StreamDecoder::new()
    }
}

/// What a stream yielded.
#[allow(clippy::large_enum_variant)] // as Datagram
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamItem {
    Message(SipMessage),
    /// `CRLF CRLF`: answer with [`PONG`] (RFC 5626 §3.5.1).
    Ping,
    /// A lone `CRLF`: the answer to our ping.
    Pong,
}

/// The keepalive request and answer on streams.
pub const PING: &[u8] = b"\r\n\r\n";
pub const PONG: &[u8] = b"\r\n";

impl StreamDecoder {
    /// A decoder that takes messages of up to [`MAX_STREAM_MESSAGE`] bytes.
    pub fn new() -> StreamDecoder {
        StreamDecoder::with_max(MAX_STREAM_MESSAGE)
    }

    /// A decoder that takes messages of up to `max` bytes, head and body.
    pub fn with_max(max: usize) -> StreamDecoder {
        StreamDecoder {
            buffer: Vec::new(),
            max: max.min(MAX_MESSAGE),
            scanned: 0,
            framed: None,
            skipping_blanks: false,
        }
    }

    /// Adds bytes read from the connection. Call [`StreamDecoder::next_item`] until it says
    /// `None` before the next push: that keeps the buffer within one message and one read.
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// How many bytes are held (read, and not yet given out as an item).
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The next complete item, `None` until more bytes arrive. After an error the connection
    /// cannot be resynchronised and should be closed (the buffer is emptied).
    pub fn next_item(&mut self) -> Option<Result<StreamItem, ParseError>> {
        let total = match self.framed {
            Some(total) => total,
            None => {
                if self.skip_blanks() {
                    return None;
                }
                if let Some(keepalive) = self.keepalive() {
                    return keepalive;
                }
                match self.frame() {
                    Ok(Some(total)) => total,
                    Ok(None) => return None,
                    Err(kind) => {
                        self.reset();
                        self.buffer = Vec::new();
                        return Some(Err(ParseError::new(kind)));
                    }
                }
            }
        };
        if self.buffer.len() < total {
            return None;
        }
        let result = parse_message(&self.buffer[..total], Framing::Stream);
        match &result {
            Ok(_) => {
                self.buffer.drain(..total);
            }
            Err(_) => self.buffer = Vec::new(),
        }
        self.reset();
        Some(result.map(|(message, _)| StreamItem::Message(message)))
    }

    /// CRs and LFs before a start line are ignored (RFC 3261 §7.5) unless they begin with CRLF
    /// (a keepalive). Such a run is dropped as it comes, and the CRs and LFs that follow it too,
    /// until the start line: read with what followed or on their own, they come to the same.
    /// True while the buffer holds nothing else.
    fn skip_blanks(&mut self) -> bool {
        let blank = |b: &u8| *b == b'\r' || *b == b'\n';
        let not_keepalive = match self.buffer.as_slice() {
            [b'\n', ..] => true,
            [b'\r', second, ..] => *second != b'\n',
            _ => false,
        };
        if self.skipping_blanks || not_keepalive {
            let blanks = self.buffer.iter().take_while(|b| blank(b)).count();
            self.buffer.drain(..blanks);
            self.skipping_blanks = self.buffer.is_empty();
        }
        self.skipping_blanks
    }

    fn reset(&mut self) {
        self.scanned = 0;
        self.framed = None;
    }

    /// A ping or pong at the front (only between messages).
    fn keepalive(&mut self) -> Option<Option<Result<StreamItem, ParseError>>> {
        if self.buffer.starts_with(PING) {
            self.buffer.drain(..PING.len());
            return Some(Some(Ok(StreamItem::Ping)));
        }
        if self.buffer.starts_with(b"\r\n") {
            // A lone CRLF is a pong, unless it is the start of a ping still arriving.
            if self.buffer.len() < 4 && PING.starts_with(&self.buffer) {
                return Some(None);
            }
            self.buffer.drain(..2);
            return Some(Some(Ok(StreamItem::Pong)));
        }
        None
    }

    /// Searches the bytes not yet searched for the end of the front message's head; when found,
    /// the message's whole length (head, blank line and declared body), within the limit.
    fn frame(&mut self) -> Result<Option<usize>, ParseErrorKind> {
        // A blank line that straddles the last search's end starts at most 3 bytes before it.
        let from = self.scanned.saturating_sub(3);
        let Some((head_end, body_start)) =
            find_header_end(&self.buffer[from..]).map(|(end, start)| (from + end, from + start))
        else {
            self.scanned = self.buffer.len();
            if self.buffer.len() > self.max {
                return Err(ParseErrorKind::TooLarge { limit: self.max });
            }
            return Ok(None);
        };
        if body_start > self.max {
            return Err(ParseErrorKind::TooLarge { limit: self.max });
        }
        // Read Content-Length from the raw head; a bad one is left for the parser to name.
        let declared = std::str::from_utf8(&self.buffer[..head_end])
            .ok()
            .and_then(|head| {
                head.split('\n').skip(1).find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    (HeaderName::parse(name.trim()) == HeaderName::ContentLength)
                        .then(|| parse_content_length(value))?
                })
            })
            .unwrap_or(0);
        let total = body_start.saturating_add(declared);
        if total > self.max {
            return Err(ParseErrorKind::ContentLengthTooLarge { declared, limit: self.max });
        }
        self.framed = Some(total);
        Ok(Some(total))
    }
}

impl Request {
    /// A request with no headers yet.
    pub fn new(method: Method, uri: Uri) -> Request {
        Request { method, uri, headers: Headers::default(), body: Vec::new() }
    }
}

impl Response {
    /// A response with no headers yet.
    pub fn new(status: u16, reason: impl Into<String>) -> Response {
        Response { status, reason: reason.into(), headers: Headers::default(), body: Vec::new() }
    }

    /// A response to `request` (RFC 3261 §8.2.6.2): its Vias, From, To, Call-ID and CSeq
    /// copied, the standard reason phrase. Add the To tag with [`Response::set_to_tag`].
    pub fn to_request(request: &Request, status: u16) -> Response {
        let mut response = Response::new(status, reason_phrase(status));
        for header in request.headers.iter() {
            let copied = matches!(
                header.name,
                HeaderName::Via | HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::CSeq
            );
            if copied {
                response.headers.push(header.name.clone(), header.value.clone());
            }
        }
        response
    }

    /// Adds `tag` to the To header unless it has one (a dialog's first response sets it).
    pub fn set_to_tag(&mut self, tag: &str) {
        if let Some(mut to) = self.to() {
            if to.tag().is_none() {
                to.set_param("tag", Some(tag.to_owned()));
                self.headers.set(HeaderName::To, to.to_string());
            }
        }
    }
}

/// The standard reason phrase for a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Unknown",
    }
}

/// Typed access to the headers every message has; valid after a successful parse.
pub trait MessageHeaders {
    fn headers(&self) -> &Headers;
    fn headers_mut(&mut self) -> &mut Headers;
    fn body(&self) -> &[u8];

    /// The first Via.
    fn top_via(&self) -> Option<Via> {
        self.headers().get(&HeaderName::Via).and_then(|v| Via::parse(v).ok())
    }
    fn from(&self) -> Option<NameAddr> {
        self.headers().get(&HeaderName::From).and_then(|v| NameAddr::parse(v).ok())
    }
    fn to(&self) -> Option<NameAddr> {
        self.headers().get(&HeaderName::To).and_then(|v| NameAddr::parse(v).ok())
    }
    fn call_id(&self) -> Option<&str> {
        self.headers().get(&HeaderName::CallId)
    }
    fn cseq(&self) -> Option<CSeq> {
        self.headers().get(&HeaderName::CSeq).and_then(|v| CSeq::parse(v).ok())
    }
    /// Every Contact (`*` is not a name-addr and is skipped).
    fn contacts(&self) -> Vec<NameAddr> {
        self.headers().get_all(&HeaderName::Contact).filter_map(|v| NameAddr::parse(v).ok()).collect()
    }
}

impl MessageHeaders for Request {
    fn headers(&self) -> &Headers {
        &self.headers
    }
    fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }
    fn body(&self) -> &[u8] {
        &self.body
    }
}

impl MessageHeaders for Response {
    fn headers(&self) -> &Headers {
        &self.headers
    }
    fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }
    fn body(&self) -> &[u8] {
        &self.body
    }
}

/// Writes the headers, with a Content-Length that matches the body.
fn write_headers_and_body(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    let mut text = String::with_capacity(512);
    for h in headers.iter() {
        if h.name == HeaderName::ContentLength {
            continue;
        }
        let _ = write!(text, "{}: {}\r\n", h.name, h.value);
    }
    let _ = write!(text, "Content-Length: {}\r\n\r\n", body.len());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(body);
}

impl Request {
    /// The bytes to send.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        out.extend_from_slice(format!("{} {} SIP/2.0\r\n", self.method, self.uri).as_bytes());
        write_headers_and_body(&mut out, &self.headers, &self.body);
        out
    }
}

impl Response {
    /// The bytes to send.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        out.extend_from_slice(format!("SIP/2.0 {} {}\r\n", self.status, self.reason).as_bytes());
        write_headers_and_body(&mut out, &self.headers, &self.body);
        out
    }
}

impl SipMessage {
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            SipMessage::Request(r) => r.to_bytes(),
            SipMessage::Response(r) => r.to_bytes(),
        }
    }
    pub fn headers(&self) -> &Headers {
        match self {
            SipMessage::Request(r) => &r.headers,
            SipMessage::Response(r) => &r.headers,
        }
    }
}

impl fmt::Display for SipMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@biloxi.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n\
        Max-Forwards: 70\r\n\
        To: Bob <sip:bob@biloxi.com>\r\n\
        From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
        CSeq: 314159 INVITE\r\n\
        Contact: <sip:alice@pc33.atlanta.com>\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 4\r\n\r\nv=0\n";

    fn request(text: &str) -> Request {
        match parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}")) {
            SipMessage::Request(r) => r,
            SipMessage::Response(_) => panic!("not a request"),
        }
    }

    #[test]
    fn parses_an_invite() {
        let r = request(INVITE);
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.uri.to_string(), "sip:bob@biloxi.com");
        assert_eq!(r.call_id(), Some("a84b4c76e66710@pc33.atlanta.com"));
        assert_eq!(r.cseq().unwrap(), CSeq { seq: 314159, method: Method::Invite });
        assert_eq!(r.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(r.body, b"v=0\n");
    }

    /// Found by fuzz/ (sip_datagram) in RFC 4475's esc01: `Contact:` with its value on the next
    /// line read as " <sip:...>", which wrote back as `Contact:  <sip:...>` and read back
    /// without the space. A folded blank line left a trailing space the same way.
    #[test]
    fn folding_onto_an_empty_value_adds_no_blank() {
        let text = INVITE
            .replace("Contact: <sip:alice@pc33.atlanta.com>\r\n", "Contact:\r\n  <sip:alice@pc33.atlanta.com>\r\n")
            .replace("Content-Type: application/sdp\r\n", "Content-Type: application/sdp\r\n \r\n");
        let r = request(&text);
        assert_eq!(r.headers.get(&HeaderName::Contact), Some("<sip:alice@pc33.atlanta.com>"));
        assert_eq!(r.headers.get(&HeaderName::ContentType), Some("application/sdp"));
        assert_eq!(request(std::str::from_utf8(&r.to_bytes()).unwrap()), r);
    }

    #[test]
    fn compact_names_folding_and_split_lists() {
        let text = "\r\nOPTIONS sip:x@y SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b;branch=z9hG4bK2\r\n\
            f: <sip:a@b>;tag=1\r\nt: <sip:x@y>\r\ni: abc\r\nCSeq: 1\r\n  OPTIONS\r\n\
            m: <sip:a@1.2.3.4>, <sip:a@[2001:db8::1]>\r\nl: 0\r\n\r\n";
        let r = request(text);
        assert_eq!(r.headers.get_all(&HeaderName::Via).count(), 2);
        assert_eq!(r.cseq().unwrap().method, Method::Options);
        assert_eq!(r.contacts().len(), 2);
        let written = String::from_utf8(r.to_bytes()).unwrap();
        assert!(
            written.contains("Via: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/TCP b;branch=z9hG4bK2\r\n"),
            "{written}"
        );
        assert!(written.contains("Call-ID: abc\r\n") && written.contains("CSeq: 1 OPTIONS\r\n"), "{written}");
    }

    #[test]
    fn a_datagram_body_is_cut_to_content_length_and_a_short_one_is_an_error() {
        let long = INVITE.replace("Content-Length: 4", "Content-Length: 2");
        assert_eq!(request(&long).body, b"v=");
        let short = INVITE.replace("Content-Length: 4", "Content-Length: 40");
        let e = parse(short.as_bytes()).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::BodyTooShort { declared: 40, actual: 4 });
        let bad = e.bad_request().unwrap();
        assert_eq!(bad.status, 400);
        assert_eq!(bad.reason, "Bad Request - Content-Length 40 is larger than the body (4 bytes)");
        assert_eq!(bad.headers.get(&HeaderName::CallId), Some("a84b4c76e66710@pc33.atlanta.com"));
        assert_eq!(bad.headers.get(&HeaderName::CSeq), Some("314159 INVITE"));
    }

    #[test]
    fn errors_that_cannot_be_answered() {
        assert_eq!(parse(b"").unwrap_err().kind, ParseErrorKind::Empty);
        assert_eq!(parse(b"garbage").unwrap_err().kind, ParseErrorKind::NoHeaderEnd);
        let no_via = INVITE.replace("Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n", "");
        let e = parse(no_via.as_bytes()).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::Missing("Via"));
        assert!(e.bad_request().is_none(), "no Via: nowhere to send a response");
        let e = parse(INVITE.replace("SIP/2.0\r\n", "SIP/7.0\r\n").as_bytes()).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::BadVersion("SIP/7.0".into()));
    }

    #[test]
    fn responses_and_keepalives() {
        let text = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
            To: <sip:x@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let SipMessage::Response(r) = parse(text.as_bytes()).unwrap() else { panic!() };
        assert_eq!((r.status, r.reason.as_str()), (180, "Ringing"));
        assert_eq!(r.to().unwrap().tag(), Some("2"));
        assert_eq!(parse_datagram(b"\r\n\r\n").unwrap(), Datagram::KeepAlive);
        // Writing adds the Content-Length; from then on, writing and reading change nothing.
        let once = parse(&r.to_bytes()).unwrap();
        assert_eq!(once.headers().get(&HeaderName::ContentLength), Some("0"));
        assert_eq!(parse(&once.to_bytes()).unwrap(), once);
    }

    #[test]
    fn stream_framing_by_content_length() {
        let mut d = StreamDecoder::new();
        let two = format!("{INVITE}{INVITE}");
        let bytes = two.as_bytes();
        d.push(PING);
        d.push(&bytes[..100]);
        assert_eq!(d.next_item(), Some(Ok(StreamItem::Ping)));
        assert_eq!(d.next_item(), None, "incomplete");
        d.push(&bytes[100..INVITE.len() - 2]);
        assert_eq!(d.next_item(), None, "body incomplete");
        d.push(&bytes[INVITE.len() - 2..]);
        assert!(matches!(d.next_item(), Some(Ok(StreamItem::Message(SipMessage::Request(_))))));
        assert!(matches!(d.next_item(), Some(Ok(StreamItem::Message(_)))));
        assert_eq!(d.next_item(), None);
        d.push(b"\r\n");
        assert_eq!(d.next_item(), None, "may be the start of a ping");
        d.push(b"INVITE");
        assert_eq!(d.next_item(), Some(Ok(StreamItem::Pong)));
    }

    /// Drains every item the decoder has.
    fn drain(d: &mut StreamDecoder) -> Vec<Result<StreamItem, ParseError>> {
        std::iter::from_fn(|| d.next_item()).collect()
    }

    #[test]
    fn a_stream_fed_one_byte_at_a_time_is_framed_as_when_whole() {
        let stream = format!("{INVITE}\r\n\r\n{INVITE}\r\n{}{INVITE}", INVITE.replace("Content-Length: 4", "l: 4"));
        let mut whole = StreamDecoder::new();
        whole.push(stream.as_bytes());
        let expected = drain(&mut whole);
        assert_eq!(expected.len(), 6, "{expected:?}");
        assert!(expected.iter().all(Result::is_ok), "{expected:?}");
        let mut bytewise = StreamDecoder::new();
        let mut items = Vec::new();
        for byte in stream.as_bytes() {
            bytewise.push(std::slice::from_ref(byte));
            items.extend(drain(&mut bytewise));
        }
        assert_eq!(items, expected);
        assert_eq!(bytewise.buffered(), 0);
    }

    #[test]
    fn a_declared_body_over_the_cap_is_refused_before_it_is_read() {
        let head = INVITE.split_once("\r\n\r\n").unwrap().0.replace("Content-Length: 4", "Content-Length: 4000000000");
        let mut d = StreamDecoder::new();
        d.push(head.as_bytes());
        assert_eq!(d.next_item(), None, "the head is not complete yet");
        d.push(b"\r\n\r\nv=0");
        let error = d.next_item().unwrap().unwrap_err();
        assert_eq!(
            error.kind,
            ParseErrorKind::ContentLengthTooLarge { declared: 4_000_000_000, limit: MAX_STREAM_MESSAGE }
        );
        assert_eq!(d.buffered(), 0, "nothing of it is kept");
        // A message of exactly the cap is taken; one byte more is refused.
        let head = INVITE.split_once("\r\n\r\n").unwrap().0.replace("Content-Length: 4", "Content-Length: 00000");
        for (size, taken) in [(MAX_STREAM_MESSAGE, true), (MAX_STREAM_MESSAGE + 1, false)] {
            let body = "x".repeat(size - head.len() - 4);
            let text = format!("{}\r\n\r\n{body}", head.replace("00000", &format!("{:05}", body.len())));
            assert_eq!(text.len(), size);
            let mut d = StreamDecoder::new();
            d.push(text.as_bytes());
            let item = d.next_item().unwrap();
            assert_eq!(item.is_ok(), taken, "{size}: {item:?}");
        }
    }

    #[test]
    fn a_head_past_the_cap_without_a_blank_line_is_refused() {
        let mut d = StreamDecoder::new();
        d.push(b"INVITE sip:bob@biloxi.com SIP/2.0\r\n");
        let line = b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut pushed = 0;
        loop {
            d.push(line);
            pushed += 1;
            match d.next_item() {
                None => assert!(d.buffered() <= MAX_STREAM_MESSAGE, "held past the cap"),
                Some(result) => {
                    assert_eq!(result.unwrap_err().kind, ParseErrorKind::TooLarge { limit: MAX_STREAM_MESSAGE });
                    break;
                }
            }
            assert!(pushed < 1000, "never refused");
        }
        assert_eq!(d.buffered(), 0);
        // The same head with its blank line in time is a message (the limit is the message's).
        let mut d = StreamDecoder::with_max(1000);
        d.push(INVITE.as_bytes());
        assert!(matches!(d.next_item(), Some(Ok(StreamItem::Message(_)))));
    }

    /// Found by fuzz/ (sip_stream): CRs and LFs before a start line, read on their own, were a
    /// message that was Empty (an error that closes the connection); read with what followed,
    /// skipped.
    #[test]
    fn bare_lfs_before_a_message_are_skipped_however_they_arrive() {
        let mut d = StreamDecoder::new();
        d.push(b"\n\n\n");
        assert_eq!(d.next_item(), None);
        d.push(INVITE.as_bytes());
        assert!(matches!(d.next_item(), Some(Ok(StreamItem::Message(_)))));
        d.push(b"\r\n\r\n");
        assert_eq!(d.next_item(), Some(Ok(StreamItem::Ping)), "a keepalive after a message");
        // CR CR LF LF, then a start line: all blanks, read together or apart.
        for cut in 0..=4 {
            let stream = b"\r\r\n\n\r\n*\n\n";
            let mut d = StreamDecoder::new();
            d.push(&stream[..cut]);
            assert_eq!(d.next_item(), None);
            d.push(&stream[cut..]);
            assert!(matches!(d.next_item(), Some(Err(ParseError { kind: ParseErrorKind::BadStartLine, .. }))));
        }
    }

    /// Found by fuzz/ (sip_stream): two messages of 40 KB each read in one go were refused as
    /// one message over 64 KiB, when each is under the cap (they framed fine read apart).
    #[test]
    fn the_size_cap_is_per_message_not_per_read() {
        let body = "a=x-filler:yyyyyyyy\r\n".repeat(2000);
        let big =
            INVITE.replace("Content-Length: 4\r\n\r\nv=0\n", &format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        assert!(big.len() < MAX_MESSAGE && 2 * big.len() > MAX_MESSAGE);
        let mut d = StreamDecoder::with_max(MAX_MESSAGE);
        d.push(format!("{big}{big}").as_bytes());
        assert!(matches!(d.next_item(), Some(Ok(StreamItem::Message(_)))));
        assert!(matches!(d.next_item(), Some(Ok(StreamItem::Message(_)))));
        assert_eq!(d.next_item(), None);
        // One message over the cap is still refused.
        let huge =
            big.replace(&format!("Content-Length: {}", body.len()), &format!("Content-Length: {}", 2 * body.len()));
        let mut d = StreamDecoder::with_max(MAX_MESSAGE);
        d.push(format!("{huge}{body}").as_bytes());
        assert!(matches!(
            d.next_item(),
            Some(Err(ParseError { kind: ParseErrorKind::ContentLengthTooLarge { .. }, .. }))
        ));
    }
}
