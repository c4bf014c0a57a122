"""AMI sink for the load harness: SESSIONS manager connections log in and read every event for
SECONDS, then one line of counts goes to OUT.

usage: amisink.py PORT USER SECRET SESSIONS SECONDS OUT"""

import asyncio
import sys


async def session(port, user, secret, counts, i, stop):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    writer.write(f"Action: Login\r\nUsername: {user}\r\nSecret: {secret}\r\n\r\n".encode())
    await writer.drain()
    tail = b"\n"  # the banner line ended
    while not stop.is_set():
        try:
            chunk = await asyncio.wait_for(reader.read(65536), 0.5)
        except asyncio.TimeoutError:
            continue
        if not chunk:
            counts[i] = -1 - counts[i]  # closed by the server: recorded as negative
            return
        data = tail + chunk
        counts[i] += data.count(b"\nEvent: ")
        tail = data[-7:]
    writer.close()


async def main(port, user, secret, sessions, seconds, out):
    counts = [0] * sessions
    stop = asyncio.Event()
    tasks = [asyncio.create_task(session(port, user, secret, counts, i, stop)) for i in range(sessions)]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    closed = sum(1 for c in counts if c < 0)
    alive = [c for c in counts if c >= 0]
    with open(out, "w") as f:
        f.write(f"sessions={sessions} closed={closed} total={sum(alive)} min={min(alive, default=0)} "
                f"max={max(alive, default=0)}\n")


if __name__ == "__main__":
    a = sys.argv
    asyncio.run(main(int(a[1]), a[2], a[3], int(a[4]), float(a[5]), a[6]))
