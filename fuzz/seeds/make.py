#!/usr/bin/env python3
"""Makes the seed corpora in this folder from the project's own material (run from anywhere;
rewrites seeds/<target>/). The RFC 4475/5118 torture messages are not copied: run.sh also
seeds sip_datagram from crates/sip/tests/torture."""
import glob, os, re, shutil, struct, hashlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SEEDS = {}

def seed(target, data, name=None):
    if isinstance(data, str):
        data = data.encode()
    name = name or hashlib.sha1(data).hexdigest()[:16]
    SEEDS.setdefault(target, {})[name] = data

# SIPp's messages, as the end-to-end scenarios send them, with their [fields] filled in.
FIELDS = {
    "local_ip": "127.0.0.1", "local_port": "5070", "remote_ip": "127.0.0.1", "remote_port": "5060",
    "service": "600", "call_number": "1", "transport": "UDP", "call_id": "1-4242@127.0.0.1",
    "branch": "z9hG4bK-4242-1-0", "branch-3": "z9hG4bK-4242-1-3", "branch-6": "z9hG4bK-4242-1-6",
    "media_ip_type": "4", "media_ip": "127.0.0.1", "local_ip_type": "4", "peer_tag_param": ";tag=as5e3b1c2d",
    "pid": "4242", "media_port": "6000", "last_cseq_number": "1",
    "authentication": 'Authorization: Digest username="alice", realm="asterisk", nonce="18d2c3a.1f0e3c9a1b2c3d4e5f60718293a4b5c6d7", uri="sip:600@127.0.0.1:5060", response="6629fae49393a05397450978507c4ef1", algorithm=MD5, qop=auth, nc=00000001, cnonce="0a4f113b"',
}
messages = []
for path in sorted(glob.glob(os.path.join(ROOT, "tests/scenarios/*.xml"))):
    for block in re.findall(r"<send[^>]*>\s*<!\[CDATA\[(.*?)\]\]>", open(path).read(), re.S):
        text = block.strip("\n").lstrip()
        text = re.sub(r"\[([a-z_0-9-]+)\]", lambda m: FIELDS.get(m.group(1), m.group(0)), text)
        head, _, body = text.partition("\n\n")
        lines = [l.strip() for l in head.split("\n")]
        body = "".join(l.strip() + "\r\n" for l in body.strip().split("\n")) if body.strip() else ""
        msg = "\r\n".join(lines).replace("[len]", str(len(body))) + "\r\n\r\n" + body
        messages.append(msg)
        seed("sip_datagram", msg)
        if body.startswith("v=0"):
            seed("sdp", body)

# Streams: messages back to back (no cuts, then cut at a few places), keepalives, and two
# pipelined messages whose bodies make more than 64 KiB together.
stream = "".join(messages[:6]).encode()
seed("sip_stream", b"\x00" + stream)
seed("sip_stream", b"\x03" + struct.pack("<HHH", 7, 333, 901) + stream)
seed("sip_stream", b"\x00\r\n\r\n" + messages[0].encode() + b"\r\n" + messages[1].encode())
big = []
for i in (1, 2):
    body = ("a=x-filler:" + "y" * 68 + "\r\n") * 450
    m = re.sub(r"Content-Length: \d+", "Content-Length: %d" % len(body), messages[0].split("\r\n\r\n")[0].replace("CSeq: 1", "CSeq: %d" % i))
    big.append(m + "\r\n\r\n" + body)
seed("sip_stream", b"\x01" + struct.pack("<H", 40000) + "".join(big).encode(), "pipelined-64k")

# SDPs the tests use and the parser's own tests.
for sdp in [
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n",
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=rtcp:4009\r\n",
    "v=0\r\no=- 1234 5678 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0 101\r\nb=AS:64\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\na=label:1\r\na=ssrc:1 cname:x\r\n",
    "v=0\no=- 1 1 IN IP6 ::1\ns=-\nc=IN IP6 2001:db8::5\nt=0 0\nm=audio 5004 RTP/AVP 0\na=rtcp:5010 IN IP6 2001:db8::5\n",
    "v=0\r\no=- 1 1 IN IP6 [::1]\r\ns=-\r\nc=IN IP6 [::1]\r\nt=0 0\r\nm=audio 4000 RTP/AVP 111 0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\na=rtcp-mux\r\na=inactive\r\n",
    "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\nm=audio 5002 RTP/AVP 9 0\r\na=sendonly\r\na=ptime:30\r\n",
]:
    seed("sdp", sdp)

# Digest: Authorization, WWW-Authenticate, realm, user, password, method, URI (one a line).
for lines in [
    ['Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"',
     'Digest realm="asterisk", nonce="18d2c3a.1f0e3c9a1b2c3d4e5f60718293a4b5c6d7", algorithm=MD5, qop="auth"',
     "asterisk", "alice", "secret", "REGISTER", "sip:127.0.0.1:5060"],
    ['Digest username="1001",realm="asterisk",nonce="4a1b",uri="sip:600@127.0.0.1",response="0123456789abcdef0123456789abcdef",algorithm=MD5',
     'Digest realm="asterisk", nonce="4a1b", opaque="x", stale=true',
     "asterisk", "1001", "1001secret", "INVITE", "sip:600@127.0.0.1"],
    ['digest USERNAME=bob, realm=asterisk, nonce=abc, uri=sip:x, response=00, qop=auth-int, nc=zz, cnonce=""',
     'Digest realm="a\\"b", nonce="n", qop="auth,auth-int", algorithm=SHA-256',
     "", "", "", "", ""],
]:
    seed("digest", "\n".join(lines))

# Dialplan: 0 an expression, 1 a substitution (number, EXTEN, X, then the text), 2 a pattern
# and digits. From the expression and substitution tests and etc/extensions.conf.
for expr in ["1 + 2 * 3", "${X} + 1 = 4 & 5 > 3", '"abc" = "abc"', '18005551212 : "(1[0-9]*)"', "x =~ [a-z]+",
             "1 ? 2 :: 3", "!abc | 0", "1 / 0", "(1 + (2 - 3)) % 7 ~~ 4", "-5 <= 4 != 1", "2.5 * 4", "abc < abd"]:
    seed("dialplan", b"\x00" + expr.encode())
for text in ["1001\n600\n3\ncall ${EXTEN:1:3} $[${X} + 1] ${LEN(${CALLERID(num)})}",
             "((((1\n100\nabcd\nSet(A=$[${CALLERID(num)} = 1])",
             "1002\n_X.\nY\n${${X}}${UPPER(${EXTEN}):-2}${IF($[${X} > 2]?yes:no)}${MISSING}x$[1 +]${UNTERMINATED",
             "\n\n\ncosts $5"]:
    seed("dialplan", b"\x01" + text.encode())
for pattern in ["_NXXNXXXXXX\n2125551212", "_X.\n1", "_1!\n1", "_[15-7]XX\n599", "555-1212\n5551212", "s\ns", "_Z!\n_Z."]:
    seed("dialplan", b"\x02" + pattern.encode())

# Configuration: the demo's files, and includes (NUL separates extensions.conf from f1.conf...).
for path in sorted(glob.glob(os.path.join(ROOT, "etc/*.conf"))):
    seed("config", open(path, "rb").read(), os.path.basename(path))
seed("config", b"[general]\n#include f1.conf\n#include \"f*.conf\"\n[t](!)\na=1\n[s](t,+)\nb => 2 ; note\n;-- block\n--;\n"
     b"\x00[default]\nexten => 100,1,Answer()\n same => n(next),Set(A=$[${CALLERID(num)} = 1])\n"
     b"\x00#include extensions.conf\n[other](default)\nexten => _X.,1,Hangup()\n", "includes")

# AMI: the actions the manager tests send.
for action in [
    [("Action", "Login"), ("Username", "admin"), ("Secret", "s3cret"), ("ActionID", "l1")],
    [("Action", "Challenge"), ("AuthType", "MD5")],
    [("Action", "Login"), ("AuthType", "MD5"), ("Username", "admin"), ("Key", "0123456789abcdef0123456789abcdef")],
    [("Action", "Command"), ("Command", "core show version"), ("ActionID", "c1")],
    [("Action", "DBPut"), ("Family", "fam"), ("Key", "k"), ("Val", "v1"), ("ActionID", "d1")],
    [("Action", "Originate"), ("Channel", "SIP/bob"), ("Context", "default"), ("Exten", "600"), ("Priority", "1"), ("Async", "true"), ("ActionID", "o1")],
    [("Action", "Setvar"), ("Channel", "SIP/bob-00000001"), ("Variable", "COLOUR"), ("Value", "red:blue"), ("ActionID", "s")],
    [("Action", "Logoff")],
]:
    seed("ami", "".join("%s: %s\r\n" % kv for kv in action) + "\r\n")
seed("ami", "\r\nAction: Ping\nno colon here\n :\n\nAction:Events\r\nEventMask: off\r\n\r\n")

# RTP: the first packets of SIPp's G.711 and RFC 4733 captures, then RTCP as Starling writes it
# (records: length, flags, datagram).
def udp_payloads(path, count):
    data = open(path, "rb").read()
    link = struct.unpack("<I", data[20:24])[0]
    skip = {1: 14, 113: 16}.get(link, 0)
    at, out = 24, []
    while at + 16 <= len(data) and len(out) < count:
        caplen = struct.unpack("<I", data[at + 8:at + 12])[0]
        frame = data[at + 16:at + 16 + caplen]
        ip = frame[skip:]
        ihl = (ip[0] & 0x0f) * 4
        out.append(ip[ihl + 8:])
        at += 16 + caplen
    return out
def records(packets, flags=1):
    return b"".join(bytes([len(p), flags]) + p for p in packets if len(p) < 256)
g711 = udp_payloads("/usr/share/sip-tester/g711a.pcap", 4)
dtmf = udp_payloads("/usr/share/sip-tester/dtmf_2833_1.pcap", 8)
rr = bytes.fromhex("81c90007deadbeef" "cafebabe" "05000010" "0000abcd" "00000020" "12345678" "00010000"
                   "81ca000300000000" "0108737461726c69" "6e67000000000000")[:60]
sr = bytes.fromhex("80c80006deadbeef" "e9a0b0c0d0e0f000" "00001000" "00000010" "00000a00") + bytes.fromhex("81cb0001deadbeef")
seed("rtp", records(g711), "g711a")
seed("rtp", records(dtmf), "rfc4733")
seed("rtp", records(g711[:2] + [rr, sr] + dtmf[:3], 0x13), "mixed")

for target, files in SEEDS.items():
    folder = os.path.join(HERE, target)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for name, data in files.items():
        open(os.path.join(folder, name), "wb").write(data)
    print(target, len(files), sum(len(d) for d in files.values()), "bytes")
