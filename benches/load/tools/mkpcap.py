#!/usr/bin/env python3
"""Writes a pcap of one PCMU (payload type 0) RTP stream for SIPp's play_pcap_audio.

SIPp ships only g711a.pcap (PCMA); the load harness wants PCMU calls of a known length, so
it makes its own: SECONDS of a 1 kHz tone at -10 dBFS, 20 ms packets (160 bytes of mu-law),
Ethernet/IPv4/UDP framing (SIPp rewrites the addresses and ports when it replays).
Prints the number of RTP packets written.

usage: mkpcap.py OUT.pcap SECONDS
"""
import math
import struct
import sys


def lin2ulaw(sample: int) -> int:
    """G.711 mu-law of a 16-bit linear sample."""
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, 32635) + 0x84
    exponent = max(0, min(7, (sample >> 7).bit_length() - 1))
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def main() -> None:
    out, seconds = sys.argv[1], float(sys.argv[2])
    packets = max(1, int(round(seconds * 50)))
    amplitude = 32767 * 10 ** (-10 / 20)
    src, dst = bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])
    with open(out, "wb") as f:
        # Classic pcap, microsecond timestamps, LINKTYPE_ETHERNET.
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for n in range(packets):
            payload = bytes(
                lin2ulaw(int(amplitude * math.sin(2 * math.pi * 1000 * (n * 160 + i) / 8000))) for i in range(160)
            )
            rtp = struct.pack("!BBHII", 0x80, 0x80 if n == 0 else 0x00, n & 0xFFFF, (n * 160) & 0xFFFFFFFF, 0x51A7713C)
            rtp += payload
            udp_len = 8 + len(rtp)
            udp = struct.pack("!HHHH", 6000, 6000, udp_len, 0) + rtp
            pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_len)
            udp = udp[:6] + struct.pack("!H", checksum(pseudo + udp) or 0xFFFF) + udp[8:]
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, n & 0xFFFF, 0, 64, 17, 0, src, dst)
            ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
            frame = b"\0" * 12 + b"\x08\x00" + ip + udp
            usec = n * 20000
            f.write(struct.pack("<IIII", 1700000000 + usec // 1000000, usec % 1000000, len(frame), len(frame)))
            f.write(frame)
    print(packets)


if __name__ == "__main__":
    main()
