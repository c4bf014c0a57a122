#!/usr/bin/env python3
"""Counts the RTP packets that arrive on one UDP port of 127.0.0.1.

The bridged stage advertises this port in its SDP (instead of SIPp's own media port), so
every packet Starling relays towards that side lands here. The sink counts packets, and per
sending address (one Starling RTP port = one call leg) the span of RTP sequence numbers, so
it can report both "received" (to compare with what SIPp played) and "sequence gaps" (loss
that the sequence numbers show, whatever Starling does with them).

It stops on SIGTERM/SIGINT or after MAX_SECONDS and writes one line to OUT:
    packets=<n> streams=<n> seq_expected=<n> seq_lost=<n> bytes=<n>

usage: rtpsink.py PORT OUT MAX_SECONDS
"""
import signal
import socket
import sys
import time

port, out, max_seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    # SO_RCVBUFFORCE (33) goes past rmem_max when we are root; else the plain option.
    sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)
except OSError:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
sock.bind(("127.0.0.1", port))
sock.settimeout(0.5)

stop = False


def on_signal(_sig, _frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)

packets = 0
nbytes = 0
# per source: [first extended seq, highest extended seq, count, last raw seq]
streams = {}
buf = bytearray(2048)
deadline = time.monotonic() + max_seconds
recv = sock.recvfrom_into
while not stop and time.monotonic() < deadline:
    try:
        n, addr = recv(buf)
    except socket.timeout:
        continue
    except InterruptedError:
        continue
    if n < 12:
        continue
    packets += 1
    nbytes += n
    seq = (buf[2] << 8) | buf[3]
    s = streams.get(addr)
    if s is None:
        streams[addr] = [seq, seq, 1, seq]
        continue
    # Extend the 16-bit sequence number across wraps (forward steps < 32768).
    delta = (seq - s[3]) & 0xFFFF
    if delta < 32768:
        ext = s[1] + delta if seq != s[3] else s[1]
        if delta:
            s[1] = ext
            s[3] = seq
    s[2] += 1

seq_expected = sum(s[1] - s[0] + 1 for s in streams.values())
seq_lost = sum(max(0, s[1] - s[0] + 1 - s[2]) for s in streams.values())
with open(out, "w") as f:
    f.write(f"packets={packets} streams={len(streams)} seq_expected={seq_expected} seq_lost={seq_lost} bytes={nbytes}\n")
