#!/usr/bin/env python3
"""Turns run.sh's raw measurements into the results table.

    summarize.py [--corpus bench|4x|group] RUNS_TSV RSS_TSV [RESTART_TSV [MEMORY_TSV]]

RUNS_TSV has one line per wrk run:
    scenario server rep rps p50_us p99_us cpu_us_per_req bytes_per_req socket_errors bad_status requests other_pct
RSS_TSV has one line per server:
    server peak_rss_kib processes
RESTART_TSV (optional) has one line per outpost restart, times in ms from the
process start, "-" for what did not happen in time:
    round to_200 to_listening to_scanned serving_ms_logged scan_ms_logged to_all_200 pass_ms
MEMORY_TSV (optional) has the `memory` phase's figures as "key value" lines
(KiB and ms; see memory_phase in run.sh).
--corpus names the corpus, whose bars (from the issue) the checks apply.

Prints, per scenario and server, the MEDIAN over the repetitions (robust to
one noisy run, unlike the mean), then outpost/nginx ratios when both servers
ran, then the checks (ratios against their bars: offer, fragment and proxy against
static serving and against nginx, restart time), peak memory and every raw
run so the spread stays visible.
Standard library only.
"""

import argparse
import statistics
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


# The bars the new features are held to. Each: label, how it is computed,
# (numerator, denominator) as (scenario, server) pairs, comparison, bar.
# A feature against its static page uses the paired runs when there are
# some (see `paired` in run.sh): the median of each rep's ratio.
CHECKS = [
    ("offer / static, outpost", "offer / small req/s",
     ("offer", "outpost"), ("small", "outpost"), ">=", 0.8),
    ("offer, outpost / nginx", "req/s, nginx: sub_filter",
     ("offer", "outpost"), ("offer", "nginx"), ">=", 1.0),
    ("fragment / static, outpost", "fragment / live-static req/s",
     ("fragment", "outpost"), ("live-static", "outpost"), ">=", 0.7),
    ("fragment, outpost / nginx", "req/s, nginx: SSI+proxy_cache",
     ("fragment", "outpost"), ("fragment", "nginx"), ">=", 1.0),
    ("proxy / static, outpost", "proxy (warm, cache 5s) / small req/s",
     ("proxy", "outpost"), ("small", "outpost"), ">=", 0.8),
    ("proxy, outpost / nginx", "req/s, nginx: proxy_cache",
     ("proxy", "outpost"), ("proxy", "nginx"), ">=", 1.0),
    ("conditions: every new one, none matching", "conditions / conditions-today req/s",
     ("conditions", "outpost"), ("conditions-today", "outpost"), ">=", 0.95),
    ("fleet logs published", "small-fleetlogs / small req/s",
     ("small-fleetlogs", "outpost"), ("small", "outpost"), ">=", 0.97),
    ("redirects: none matches", "redirects / small req/s",
     ("redirects", "outpost"), ("small", "outpost"), ">=", 0.95),
    ("redirects: a pattern", "redirects-pattern / small req/s",
     ("redirects-pattern", "outpost"), ("small", "outpost"), ">=", 0.9),
]
# For context, no bar: what the same features cost nginx.
INFO = [
    ("offer / static, nginx", "offer / small req/s", ("offer", "nginx"), ("small", "nginx")),
    ("fragment / static, nginx", "fragment / live-static req/s",
     ("fragment", "nginx"), ("live-static", "nginx")),
    ("proxy / static, nginx", "proxy / small req/s", ("proxy", "nginx"), ("small", "nginx")),
]


# Bars by corpus (the issue's): warm restart until all of its URLs answer,
# ms; and the memory phase's, MiB.
RESTART_BAR_MS = {"bench": 300, "group": 1000}
MEMORY_BARS = {
    # corpus: [(label, key, bar in MiB)]
    "4x": [("RssAnon after every URL", "outpost_all_RssAnon", 128),
           ("cold-ingest peak RSS (VmHWM)", "cold_VmHWM", 256)],
    "group": [("RssAnon after every URL", "outpost_all_RssAnon", 160)],
}


def read_restarts(path):
    rounds = []
    try:
        with open(path) as f:
            for line in f:
                if line.strip():
                    rnd, to200, listen, scanned, serving, scan, to_all, pass_ms = line.split()
                    rounds.append({"round": int(rnd), "to200": to200, "listen": listen,
                                   "scanned": scanned, "serving": serving, "scan": scan,
                                   "all": to_all, "pass": pass_ms})
    except FileNotFoundError:
        pass
    return rounds


def read_memory(path):
    memory = {}
    try:
        with open(path) as f:
            for line in f:
                if line.strip():
                    key, value = line.split()
                    memory[key] = value
    except FileNotFoundError:
        pass
    return memory


def median_of(values):
    """Median of the numeric values, None if any is missing ("-")."""
    if not values or any(v == "-" for v in values):
        return None
    return statistics.median(float(v) for v in values)


def checks(runs, restarts, memory, corpus):
    def rps(key):
        rs = runs.get(key)
        return median(rs, "rps") if rs else None

    def value_of(num, den):
        """num/den: the median of the per-rep ratios when den was paired with
        num, else the ratio of the medians. Also says which."""
        paired = runs.get((f"{den[0]}@{num[0]}", den[1]))
        if paired and den[1] == num[1] and runs.get(num):
            base = {r["rep"]: r["rps"] for r in paired}
            ratios = [r["rps"] / base[r["rep"]] for r in runs[num] if base.get(r["rep"])]
            if ratios:
                return statistics.median(ratios), f" (paired, {len(ratios)} reps)"
        a, b = rps(num), rps(den)
        if a is None or b is None:
            return None, ""
        return a / b, ""

    row = "{:<28} {:<31} {:>9} {:>10}  {}"
    out = ["checks (medians; a bar is what the feature must reach):",
           row.format("check", "computed as", "value", "bar", "verdict")]
    for label, how, num, den, op, bar in CHECKS:
        value, paired = value_of(num, den)
        if value is None:
            missing = " and ".join(f"{s} on {v}" for s, v in (num, den) if rps((s, v)) is None)
            out.append(row.format(label, how, "n/a", f"{op} {bar:.2f}x", f"not measured ({missing})"))
            continue
        ok = value >= bar if op == ">=" else value <= bar
        out.append(row.format(label, how, f"{value:.2f}x", f"{op} {bar:.2f}x",
                              ("meets" if ok else "MISSES") + paired))
    for label, how, num, den in INFO:
        value, paired = value_of(num, den)
        if value is not None:
            out.append(row.format(label, how, f"{value:.2f}x", "", "(for context)" + paired))
    if restarts:
        n = len(restarts)
        t200 = median_of([r["to200"] for r in restarts])
        scanned = median_of([r["scanned"] for r in restarts])
        listen = median_of([r["listen"] for r in restarts])
        if t200 is None:
            out.append(row.format("restart to first 200", f"median of {n}, ms", "n/a", "<= 300 ms",
                                  "MISSES (a restart gave no 200 in time)"))
        else:
            out.append(row.format("restart to first 200", f"median of {n}, ms", f"{t200:.0f} ms",
                                  "<= 300 ms", "meets" if t200 <= 300 else "MISSES"))
        out.append(restart_check("restart to all URLs 200", f"median of {n}, ms",
                                 median_of([r["all"] for r in restarts]), corpus))
        if listen is not None:
            out.append(row.format("restart to listening", f"median of {n}, ms", f"{listen:.0f} ms", "",
                                  "(for context)"))
        if scanned is not None:
            out.append(row.format('restart to "sites scanned"', f"median of {n}, ms", f"{scanned:.0f} ms", "",
                                  "(for context)"))
    if memory:
        warm = memory.get("warm_all_ms")
        out.append(restart_check("memory: warm restart", "all URLs answered, ms",
                                 None if warm in (None, "-") else float(warm), corpus))
        for label, key, bar in MEMORY_BARS.get(corpus, []):
            if key in memory:
                mib = int(memory[key]) / 1024
                out.append(row.format(f"memory: {corpus}", label, f"{mib:.0f} MiB", f"<= {bar} MiB",
                                      "meets" if mib <= bar else "MISSES"))
    if not restarts and not memory and not any(rps(c[2]) or rps(c[3]) for c in CHECKS):
        return []
    return out


def restart_check(label, how, ms_, corpus):
    """A check row for a restart's time until every URL answered 200."""
    row = "{:<28} {:<31} {:>9} {:>10}  {}"
    bar = RESTART_BAR_MS.get(corpus)
    bar_text = f"<= {bar} ms" if bar else ""
    if ms_ is None:
        return row.format(label, how, "n/a", bar_text, "MISSES (not all URLs answered in time)")
    verdict = ("meets" if ms_ <= bar else "MISSES") if bar else f"(no bar for {corpus})"
    return row.format(label, how, f"{ms_:.0f} ms", bar_text, verdict)


def memory_table(memory):
    """The `memory` phase's figures, labelled."""
    def mib(key):
        return f"{int(memory[key]) / 1024:8.1f} MiB" if key in memory else "       n/a"

    out = ["memory of outpost over the corpus (/proc/PID/status; RssAnon = anonymous memory, not",
           "file pages; VmRSS = all resident memory, file pages included; VmHWM = peak VmRSS):",
           f"  cold ingest, empty cache/ to every site's own home page 200 and /ready 200: "
           f"{float(memory['cold_ms']) / 1000:.1f} s",
           f"    peak RSS during it (VmHWM)            {mib('cold_VmHWM')}",
           f"    right after: RssAnon                  {mib('cold_RssAnon')}",
           f"                 VmRSS                    {mib('cold_VmRSS')}",
           f"    store on disk (du cache/)             {mib('store_kib')}",
           f"  warm restart: first URL 200 after {memory.get('warm_first_ms', '-')} ms, every URL of the"
           f" restart list after {memory.get('warm_all_ms', '-')} ms",
           f"    (of which one pass of those requests over a served store takes {memory.get('warm_pass_ms', '-')} ms)",
           f"    right after: RssAnon                  {mib('warm_RssAnon')}",
           f"                 VmRSS                    {mib('warm_VmRSS')}"]
    for server in SERVERS:
        if f"{server}_all_RssAnon" not in memory:
            continue
        procs = int(memory[f"{server}_procs"])
        out += [f"  {server} after one GET of each of the {memory.get('urls', '?')} URLs"
                + (f" (summed over {procs} processes)" if procs > 1 else "") + ":",
                f"    Accept-Encoding: br, gzip: RssAnon  {mib(f'{server}_compressed_RssAnon')}"
                f"   VmRSS {mib(f'{server}_compressed_VmRSS')}",
                f"    then identity as well:     RssAnon  {mib(f'{server}_all_RssAnon')}"
                f"   VmRSS {mib(f'{server}_all_VmRSS')}"]
    return out


def main():
    parser = argparse.ArgumentParser(description="Turns run.sh's measurements into the results table.")
    parser.add_argument("--corpus", default="bench")
    parser.add_argument("runs")
    parser.add_argument("rss")
    parser.add_argument("restarts", nargs="?")
    parser.add_argument("memory", nargs="?")
    args = parser.parse_args()
    runs = read_runs(args.runs)
    restarts = read_restarts(args.restarts) if args.restarts else []
    memory = read_memory(args.memory) if args.memory else {}
    rss = {}
    with open(args.rss) as f:
        for line in f:
            if line.strip():
                server, kib, procs = line.split()
                rss[server] = (int(kib), int(procs))

    scenarios = list(OrderedDict.fromkeys(s for s, _ in runs))
    row = "{:<20} {:<8} {:>10} {:>10} {:>10} {:>11} {:>9} {:>7}"
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

    checked = checks(runs, restarts, memory, args.corpus)
    if checked:
        out.append("")
        out.extend(checked)

    if rss:
        out.append("")
        out.append("peak RSS (VmHWM, summed over the server's processes):")
        for server in SERVERS:
            if server in rss:
                kib, procs = rss[server]
                out.append(f"  {server:<8} {kib / 1024:8.1f} MiB  ({procs} process{'es' if procs != 1 else ''})")
        if len(rss) == 2 and rss["nginx"][0]:
            out.append(f"  {'ratio':<8} {rss['outpost'][0] / rss['nginx'][0]:8.2f}x")

    if restarts:
        out.append("")
        out.append("restarts of outpost over its warm store (ms from process start; the poll adds a few ms;")
        out.append("first 200 = the default site's /page-000.html; all URLs = that and pages at random over")
        out.append("all sites, each answered 200 with its own page; pass = one more pass of those requests,")
        out.append("the requests' own share of it; serving/scan = outpost's own log: ms to listening, and")
        out.append("the scan's duration):")
        rrow = "  {:>5} {:>10} {:>9} {:>6} {:>10} {:>14} {:>8} {:>7}"
        out.append(rrow.format("round", "first 200", "all URLs", "pass", "listening", "sites scanned",
                               "serving", "scan"))
        for r in restarts:
            out.append(rrow.format(r["round"], r["to200"], r["all"], r["pass"], r["listen"], r["scanned"],
                                   r["serving"], r["scan"]))

    if memory:
        out.append("")
        out.extend(memory_table(memory))

    noisy = [(s, v, r) for (s, v), rs in runs.items() for r in rs if r["other"] > 10]
    if noisy:
        out.append("")
        out.append(f"WARNING: in {len(noisy)} of {sum(len(rs) for rs in runs.values())} runs other processes used"
                   f" more than 10% of a benchmark core (up to {max(r['other'] for _, _, r in noisy):.0f}%);")
        out.append("the figures are noisy. Rerun on an idle machine.")

    out.append("")
    out.append("raw runs (other% = share of the server's or wrk's core used by other processes):")
    raw = "  {:<20} {:<8} {:>3} {:>10} {:>10} {:>10} {:>11} {:>9} {:>7} {:>7}"
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
