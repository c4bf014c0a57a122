"""A real AMI client (panoramisk, from PyPI) over TLS: log in on the manager's TLS port with
the test's CA as the only trusted one (the server's name checked: 127.0.0.1), wait for
FullyBooted, send Ping and CoreSettings, print their responses.

Usage: tls_ping.py <tls port> <user> <secret> <ca file>. Exits 0 when both got a Success."""

import asyncio
import ssl
import sys

from panoramisk import Manager


async def main(port, user, secret, cafile):
    context = ssl.create_default_context(cafile=cafile)
    manager = Manager(host="127.0.0.1", port=port, username=user, secret=secret, ssl=context, ping_delay=60)
    booted = asyncio.Event()

    def on_event(_manager, message):
        if message.get("Event", "") == "FullyBooted":
            booted.set()

    manager.register_event("FullyBooted", on_event)
    await manager.connect()
    await asyncio.wait_for(booted.wait(), 10)
    ping = await asyncio.wait_for(manager.send_action({"Action": "Ping"}), 10)
    print("ping:", ping.get("Response"), ping.get("Ping"))
    settings = await asyncio.wait_for(manager.send_action({"Action": "CoreSettings"}), 10)
    print("coresettings:", settings.get("Response"), settings.get("AMIversion"))
    manager.close()
    return ping.get("Response") == "Success" and settings.get("Response") == "Success"


if __name__ == "__main__":
    port, user, secret, cafile = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    sys.exit(0 if asyncio.run(main(port, user, secret, cafile)) else 1)
