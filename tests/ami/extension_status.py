"""A real AMI client (panoramisk, from PyPI) watching a hint: log in, wait for FullyBooted, then
print every ExtensionStatus of the extension and every DeviceStateChange, one per line, until
the extension has been Busy (2) and then Idle (0) again.

Usage: extension_status.py <ami port> <user> <secret> <exten>. Exits 0 when both were seen."""

import asyncio
import sys

from panoramisk import Manager


async def main(port, user, secret, exten):
    manager = Manager(host="127.0.0.1", port=port, username=user, secret=secret, ping_delay=60)
    booted = asyncio.Event()
    done = asyncio.Event()
    seen = []

    def on_event(_manager, message):
        name = message.get("Event", "")
        if name == "FullyBooted":
            booted.set()
        elif name == "DeviceStateChange":
            print("DeviceStateChange", message.get("Device"), message.get("State"), flush=True)
        elif name == "ExtensionStatus" and message.get("Exten") == exten:
            status = message.get("Status")
            print("ExtensionStatus", exten, message.get("Context"), status, message.get("StatusText"), flush=True)
            seen.append(status)
            if "2" in seen and seen[-1] == "0" and seen.index("2") < len(seen) - 1:
                done.set()

    manager.register_event("*", on_event)
    await manager.connect()
    await asyncio.wait_for(booted.wait(), 10)
    await asyncio.wait_for(done.wait(), 20)
    manager.close()
    return True


if __name__ == "__main__":
    ok = asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]))
    sys.exit(0 if ok else 1)
