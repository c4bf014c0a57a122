#!/usr/bin/env python3
"""When the requests reached a SIPp uas, from its -trace_stat CSV (one row per -fd period):
how the first N requests were spread out in time. Prints shell assignments for run.sh:

    arr_total=<IncomingCall(C) of the last row: every request the uas took as a new call>
    arr_first=<seconds from T0 to the first period that saw a request>
    arr_full=<seconds from T0 to the end of the period in which the count reached N (-1: never)>
    arr_peak=<the most requests in one period, per second of that period>

Times are from T0 (epoch seconds, say when Starling answered), at the resolution of the -fd
period (1 s in run.sh). With the uas's timewait, a retransmission is not a new call, so the
first N calls are the first request of each of N lines or peers (until refreshes start).

usage: arrivals.py FILE N T0
"""
import sys


def epoch(stamp: str) -> float:
    # "2026-11-23\t15:37:46.339133\t1795448266.339133": the last part is epoch seconds.
    try:
        return float(stamp.split("\t")[-1])
    except ValueError:
        return 0.0


def main() -> None:
    path, n, t0 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    out = dict(arr_total=0, arr_first=-1.0, arr_full=-1.0, arr_peak=0.0)
    try:
        lines = [l.rstrip("\n") for l in open(path, encoding="latin-1") if l.strip()]
    except OSError:
        lines = []
    if len(lines) >= 2:
        head = lines[0].split(";")
        rows = [dict(zip(head, l.split(";"))) for l in lines[1:]]
        prev_t, prev_c = epoch(rows[0].get("StartTime", "")), 0
        for row in rows:
            t = epoch(row.get("CurrentTime", ""))
            try:
                c = int(float(row.get("IncomingCall(C)", "0") or 0))
            except ValueError:
                continue
            if c > prev_c:
                if out["arr_first"] < 0:
                    out["arr_first"] = round(max(prev_t - t0, 0.0), 1)
                if t - prev_t > 0.2:
                    out["arr_peak"] = max(out["arr_peak"], round((c - prev_c) / (t - prev_t)))
            if c >= n and out["arr_full"] < 0:
                out["arr_full"] = round(t - t0, 1)
            out["arr_total"] = c
            prev_t, prev_c = t, c
    print(" ".join(f"{k}={v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
