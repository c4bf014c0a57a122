#!/usr/bin/env python3
"""Reads a SIPp -trace_stat CSV (';'-separated, one row per -fd period plus a final row at
exit) and prints shell assignments for run.sh:

    ok=<SuccessfulCall(C)> failed=<FailedCall(C)> created=<TotalCallCreated>
    elapsed=<seconds from StartTime to the last row's CurrentTime> peak=<max CurrentCall>
    retrans=<Retransmissions(C)> timeouts=<FailedTimeoutOnRecv(C)> unexpected=<FailedUnexpectedMessage(C)>
    calllen=<CallLength(C), the mean length of a successful call, in seconds>
    rate=<ok / (elapsed - calllen): the calls completed per second over the time calls were started>

A missing or empty file prints zeros (and ok_stat=0), so a stage that never started SIPp
still reports.

usage: sippstat.py FILE
"""
import sys


def epoch(stamp: str) -> float:
    # "2026-11-23\t15:37:46.339133\t1795448266.339133": the last part is epoch seconds.
    try:
        return float(stamp.split("\t")[-1])
    except ValueError:
        return 0.0


def seconds(value: str) -> float:
    # "00:00:01:012000" (hours, minutes, seconds, microseconds).
    try:
        h, m, s, us = (int(x) for x in value.split(":"))
        return h * 3600 + m * 60 + s + us / 1e6
    except ValueError:
        return 0.0


def main() -> None:
    keys = dict(ok=0, failed=0, created=0, elapsed=0.0, peak=0, retrans=0, timeouts=0, unexpected=0, calllen=0.0, rate=0.0, ok_stat=0)
    try:
        lines = [l.rstrip("\n") for l in open(sys.argv[1], encoding="latin-1") if l.strip()]
    except OSError:
        lines = []
    if len(lines) >= 2:
        head = lines[0].split(";")
        rows = [dict(zip(head, l.split(";"))) for l in lines[1:]]
        last = rows[-1]

        def num(row, name):
            try:
                return int(float(row.get(name, "0") or 0))
            except ValueError:
                return 0

        keys.update(
            ok=num(last, "SuccessfulCall(C)"),
            failed=num(last, "FailedCall(C)"),
            created=num(last, "TotalCallCreated"),
            elapsed=round(max(0.0, epoch(last.get("CurrentTime", "")) - epoch(last.get("StartTime", ""))), 3),
            peak=max(num(r, "CurrentCall") for r in rows),
            retrans=num(last, "Retransmissions(C)"),
            timeouts=num(last, "FailedTimeoutOnRecv(C)"),
            unexpected=num(last, "FailedUnexpectedMessage(C)"),
            calllen=round(seconds(last.get("CallLength(C)", "")), 3),
            ok_stat=1,
        )
        window = keys["elapsed"] - keys["calllen"]
        keys["rate"] = round(keys["ok"] / window, 1) if window > 0.5 else 0.0
    print(" ".join(f"{k}={v}" for k, v in keys.items()))


if __name__ == "__main__":
    main()
