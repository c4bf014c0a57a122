#!/usr/bin/env python3
"""Prints COUNT free UDP port blocks on 127.0.0.1, one base port a line.

Each base is even and BLOCK consecutive ports from it are free (SIPp binds its media
port and the port + 2; a SIP port needs only itself). The sockets are held until every
block is found, so the blocks do not overlap; the race with other programs after they
close is the usual one of "bind port 0".

usage: ports.py COUNT [BLOCK] [LOW] [HIGH]
"""
import random
import socket
import sys

count = int(sys.argv[1])
block = int(sys.argv[2]) if len(sys.argv) > 2 else 4
low = int(sys.argv[3]) if len(sys.argv) > 3 else 41000
high = int(sys.argv[4]) if len(sys.argv) > 4 else 49990

held, bases = [], []
tries = 0
while len(bases) < count:
    tries += 1
    if tries > 5000:
        sys.exit("ports.py: no free UDP port block found")
    base = random.randrange(low, high - block) & ~1
    got = []
    try:
        for p in range(base, base + block):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            got.append(s)
            s.bind(("127.0.0.1", p))
    except OSError:
        for s in got:
            s.close()
        continue
    held.extend(got)
    bases.append(base)
for s in held:
    s.close()
print("\n".join(map(str, bases)))
