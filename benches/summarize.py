#!/usr/bin/env python3
"""Turns run.sh's raw measurements into the results table.

    summarize.py RUNS_TSV RSS_TSV

RUNS_TSV has one line per wrk run:
    scenario server rep rps p50_us p99_us cpu_us_per_req bytes_per_req socket_errors bad_status requests other_pct
RSS_TSV has one line per server:
    server peak_rss_kib processes

Prints, per scenario and server, the MEDIAN over the repetitions (robust to
one noisy run, unlike the mean), then outpost/nginx ratios when both servers
ran, then peak memory and every raw run so the spread stays visible.
Standard library only.
"""

import statistics
import sys
from collections import OrderedDict

SERVERS = ("nginx", "outpost")


def read_runs(path):
    runs = OrderedDict()  # (scenario, server) -> list of dicts, in run order
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            (scenario, server, rep, rps, p50, p99, cpu, bpr, sock, bad, reqs, other) = line.split()
            runs.setdefault((scenario, server), []).append({
                "rep": int(rep), "rps": float(rps), "p50": float(p50), "p99": float(p99),
                "cpu": float(cpu), "bpr": float(bpr), "errors": int(sock) + int(bad),
                "requests": int(reqs), "other": float(other),
            })
    return runs


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def ms(us):
    return f"{us / 1000:.3f}ms"


def ratio(a, b):
    return f"{a / b:.2f}x" if b else "n/a"


def main():
    runs = read_runs(sys.argv[1])
    rss = {}
    with open(sys.argv[2]) as f:
        for line in f:
            if line.strip():
                server, kib, procs = line.split()
                rss[server] = (int(kib), int(procs))

    scenarios = list(OrderedDict.fromkeys(s for s, _ in runs))
    row = "{:<12} {:<8} {:>10} {:>10} {:>10} {:>11} {:>9} {:>7}"
    out = [row.format("scenario", "server", "req/s", "p50", "p99", "cpu-us/req", "resp-B", "errors")]
    for scenario in scenarios:
        med = {}
        for server in SERVERS:
            rs = runs.get((scenario, server))
            if not rs:
                continue
            m = {k: median(rs, k) for k in ("rps", "p50", "p99", "cpu", "bpr")}
            med[server] = m
            out.append(row.format(
                scenario, server, f"{m['rps']:.0f}", ms(m["p50"]), ms(m["p99"]),
                f"{m['cpu']:.1f}", f"{m['bpr']:.0f}", sum(r["errors"] for r in rs)))
        if len(med) == 2:
            o, n = med["outpost"], med["nginx"]
            out.append(row.format(
                scenario, "ratio", ratio(o["rps"], n["rps"]), ratio(o["p50"], n["p50"]),
                ratio(o["p99"], n["p99"]), ratio(o["cpu"], n["cpu"]), ratio(o["bpr"], n["bpr"]), ""))
    out.append("")
    out.append("Medians over the repetitions. ratio = outpost / nginx: above 1x is better for")
    out.append("req/s, below 1x is better for p50, p99 and cpu-us/req. resp-B is the mean bytes")
    out.append("per response including headers (a sanity check that both serve the same thing).")
    out.append("errors = socket errors + responses >= 400, summed over the repetitions.")

    if rss:
        out.append("")
        out.append("peak RSS (VmHWM, summed over the server's processes):")
        for server in SERVERS:
            if server in rss:
                kib, procs = rss[server]
                out.append(f"  {server:<8} {kib / 1024:8.1f} MiB  ({procs} process{'es' if procs != 1 else ''})")
        if len(rss) == 2 and rss["nginx"][0]:
            out.append(f"  {'ratio':<8} {rss['outpost'][0] / rss['nginx'][0]:8.2f}x")

    noisy = [(s, v, r) for (s, v), rs in runs.items() for r in rs if r["other"] > 10]
    if noisy:
        out.append("")
        out.append(f"WARNING: in {len(noisy)} of {sum(len(rs) for rs in runs.values())} runs other processes used"
                   f" more than 10% of a benchmark core (up to {max(r['other'] for _, _, r in noisy):.0f}%);")
        out.append("the figures are noisy. Rerun on an idle machine.")

    out.append("")
    out.append("raw runs (other% = share of the server's or wrk's core used by other processes):")
    raw = "  {:<12} {:<8} {:>3} {:>10} {:>10} {:>10} {:>11} {:>9} {:>7} {:>7}"
    out.append(raw.format("scenario", "server", "rep", "req/s", "p50", "p99", "cpu-us/req", "requests",
                          "errors", "other%"))
    for (scenario, server), rs in runs.items():
        for r in rs:
            out.append(raw.format(scenario, server, r["rep"], f"{r['rps']:.0f}", ms(r["p50"]),
                                  ms(r["p99"]), f"{r['cpu']:.1f}", r["requests"], r["errors"],
                                  f"{r['other']:.0f}"))
    print("\n".join(out))


if __name__ == "__main__":
    main()
