"""A real AMI client (panoramisk, from PyPI) against Starling: log in, wait for FullyBooted,
Originate SIP/bob to extension 600 and record the events of the call until its Cdr.

Usage: originate.py <ami port> <user> <secret>. Prints the event names seen, one per line, and
exits 0 when Newchannel, DialBegin, DialEnd, Hangup and Cdr came in that order."""

import asyncio
import sys

from panoramisk import Manager


async def main(port, user, secret):
    manager = Manager(host="127.0.0.1", port=port, username=user, secret=secret, ping_delay=60)
    seen = []
    booted = asyncio.Event()
    done = asyncio.Event()

    def on_event(_manager, message):
        name = message.get("Event", "")
        if name == "FullyBooted":
            booted.set()
            return
        if name in ("Newchannel", "DialBegin", "DialEnd", "Hangup", "Cdr"):
            seen.append(name)
        if name == "Cdr":
            done.set()

    manager.register_event("*", on_event)
    await manager.connect()
    await asyncio.wait_for(booted.wait(), 10)
    reply = await manager.send_action(
        {"Action": "Originate", "Channel": "SIP/bob", "Context": "default", "Exten": "600", "Priority": "1",
         "Async": "true"}
    )
    # Async: the acknowledgement, then OriginateResponse (panoramisk gathers both by ActionID).
    first, last = reply[0], reply[-1]
    print("originate:", first.get("Response"), first.get("Message"))
    print("response:", last.get("Event"), last.get("Response"), last.get("Reason"))
    await asyncio.wait_for(done.wait(), 20)
    manager.close()
    for name in seen:
        print(name)
    wanted = ["Newchannel", "DialBegin", "DialEnd", "Hangup", "Cdr"]
    firsts = [seen.index(w) for w in wanted if w in seen]
    return len(firsts) == len(wanted) and firsts == sorted(firsts)


if __name__ == "__main__":
    ok = asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
    sys.exit(0 if ok else 1)
