#!/usr/bin/env python3
"""Fleet experiment totals on the set-up of benches/fleet.sh: Debian's
nats-server with JetStream and three `outpost serve` boxes on loopback.

3,000 new visitors spread over the boxes, a third converting. Checks that
`outpost stats --fleet` equals, variant by variant, the sum of what each box
counted itself (its admin /status); that the totals stay put after
restarting a box then the hub, and the hub then a box (started while the
hub is down); times, over RUNS outages, how long after the hub's return
the visitors served while it was down are in the fleet's totals; and times,
over RUNS rounds, how long after one request to each box all three lines
are readable with `outpost fleet logs`.

    benches/fleet-stats.py                 # RUNS=5
    OUTPOST_BIN=... RUNS=9 benches/fleet-stats.py
"""
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("OUTPOST_BIN", os.path.join(HERE, "..", "target", "release", "outpost"))
RUNS = int(os.environ.get("RUNS", "5"))
VISITORS = 3000

RULES = """
[[rule]]
name = "hero"
when = { path = "/" }
action = "variant"
experiment = "hero"
variants = [
  { name = "control", weight = 50 },
  { name = "bold", weight = 50, transforms = [{ selector = "h1", set_text = "Bold" }] },
]

[[rule]]
name = "signed-up"
when = { path = "/thanks.html" }
action = "goal"
experiment = "hero"
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, limit=30):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.01)
    sys.exit(f"nothing listens on {port}")


class Hub:
    def __init__(self, tmp):
        self.port = free_port()
        self.dir = os.path.join(tmp, "js")
        self.proc = None

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def start(self):
        self.proc = subprocess.Popen(
            ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Box:
    def __init__(self, tmp, name, hub):
        self.name = name
        self.root = os.path.join(tmp, name)
        self.port, self.admin = free_port(), free_port()
        os.makedirs(os.path.join(self.root, "sites/main/public"))
        os.makedirs(os.path.join(self.root, "rules"))
        with open(os.path.join(self.root, "outpost.toml"), "w") as f:
            f.write(f'listen = "127.0.0.1:{self.port}"\nadmin_listen = "127.0.0.1:{self.admin}"\n'
                    f'access_log = "off"\n[fleet]\nurl = "{hub.url}"\nbox_id = "{name}"\n')
        with open(os.path.join(self.root, "sites/main/site.toml"), "w") as f:
            f.write('hosts = ["main.localhost"]\nlocale = "en-GB"\ndefault = true\n')
        for page, text in [("index.html", "<h1>Home</h1>"), ("thanks.html", "Thanks")]:
            with open(os.path.join(self.root, "sites/main/public", page), "w") as f:
                f.write(f"<html><body>{text}</body></html>")
        with open(os.path.join(self.root, "rules/exp.toml"), "w") as f:
            f.write(RULES)
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.root, "outpost.log"), "a")
        self.proc = subprocess.Popen([BIN, "serve", "--root", self.root],
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        wait_port(self.port)
        while b"sites scanned" not in open(os.path.join(self.root, "outpost.log"), "rb").read():
            time.sleep(0.01)

    def restart(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()
        self.start()

    def own(self):
        c = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=5)
        c.request("GET", "/status")
        return split(json.loads(c.getresponse().read())["experiments"])


def split(experiments):
    """Per variant of `hero`: (exposures, conversions)."""
    for e in experiments:
        if e["experiment"] == "hero":
            return {v["variant"]: (v["exposures"], v["conversions"]) for v in e["variants"]}
    return {}


def visit(box, convert):
    c = http.client.HTTPConnection("127.0.0.1", box.port, timeout=10)
    c.request("GET", "/", headers={"Host": "main.localhost"})
    r = c.getresponse()
    r.read()
    cookie = next(v.split(";")[0] for k, v in r.getheaders()
                  if k.lower() == "set-cookie" and v.startswith("outpost_exp_hero="))
    if convert:
        c.request("GET", "/thanks.html", headers={"Host": "main.localhost", "Cookie": cookie})
        c.getresponse().read()
    c.close()


def visitors(boxes, first, count):
    """New visitors first..first+count, spread over the boxes in turn, on 8
    threads; every third converts."""
    def work(ids):
        for i in ids:
            visit(boxes[i % len(boxes)], i % 3 == 0)
    ids = list(range(first, first + count))
    threads = [threading.Thread(target=work, args=(ids[t::8],)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def fleet(hub):
    out = subprocess.run([BIN, "stats", "--fleet", hub.url, "--json"], capture_output=True)
    if out.returncode != 0:
        return None
    return split(json.loads(out.stdout)["experiments"])


def reported_since(hub, box, since_ms, limit=60):
    """Waits until `box` reported from a process started after `since_ms`."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        out = subprocess.run([BIN, "fleet", "status", "--fleet", hub.url, "--json"],
                             capture_output=True)
        if out.returncode == 0 and any(
                b["id"] == box.name and b["report"]["started_unix_ms"] > since_ms
                for b in json.loads(out.stdout)):
            return
        time.sleep(0.05)
    sys.exit(f"{box.name} never reported again")


def logs_readable(hub, boxes, run):
    """Sends one request with a new path to each box; returns the seconds
    until `outpost fleet logs` prints all three lines."""
    paths = [f"/log-check-{run}-{b.name}" for b in boxes]
    start = time.monotonic()
    for b, path in zip(boxes, paths):
        c = http.client.HTTPConnection("127.0.0.1", b.port, timeout=10)
        c.request("GET", path, headers={"Host": "main.localhost"})
        c.getresponse().read()
        c.close()
    while time.monotonic() - start < 30:
        out = subprocess.run([BIN, "fleet", "logs", "--fleet", hub.url, "--since", "1m"],
                             capture_output=True, text=True)
        if all(f'"path":"{p}"' in out.stdout for p in paths):
            return time.monotonic() - start
    sys.exit("the log lines never became readable")


def summed(boxes):
    total = {}
    for b in boxes:
        for variant, (x, c) in b.own().items():
            t = total.get(variant, (0, 0))
            total[variant] = (t[0] + x, t[1] + c)
    return total


def totals(s):
    return (sum(x for x, _ in s.values()), sum(c for _, c in s.values()))


def settle(hub, boxes, want, limit=60):
    """Waits until the fleet's totals are the boxes' sum and `want`; returns
    the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        f = fleet(hub)
        if f is not None and totals(f) == want and f == summed(boxes):
            return time.monotonic() - start
        time.sleep(0.02)
    sys.exit(f"fleet {fleet(hub)} never became the boxes' sum {summed(boxes)} = {want}")


def main():
    if not os.access(BIN, os.X_OK):
        subprocess.run(["cargo", "build", "--release"], cwd=os.path.join(HERE, ".."), check=True)
    tmp = tempfile.mkdtemp()
    hub = Hub(tmp)
    boxes = [Box(tmp, f"box{i}", hub) for i in range(1, 4)]
    try:
        hub.start()
        for b in boxes:
            b.start()
        visitors(boxes, 0, VISITORS)
        want = (VISITORS, VISITORS // 3)
        settle(hub, boxes, want)
        print(f"{VISITORS} visitors, {VISITORS // 3} converting, over 3 boxes: "
              f"fleet {fleet(hub)} = sum of the boxes {summed(boxes)}: exact")

        before = time.time() * 1000
        boxes[0].restart()
        reported_since(hub, boxes[0], before)
        settle(hub, boxes, want)
        hub.stop()
        hub.start()
        settle(hub, boxes, want)
        print("box then hub restarted: totals unchanged")
        hub.stop()
        before = time.time() * 1000
        boxes[1].restart()  # starts with the hub unreachable
        hub.start()
        reported_since(hub, boxes[1], before)
        settle(hub, boxes, want)
        print("hub then box (started while the hub was down) restarted: totals unchanged")

        served = VISITORS
        times = []
        for run in range(RUNS):
            hub.stop()
            visitors(boxes, served, 300)
            served += 300
            hub.start()
            took = settle(hub, boxes, (served, (served + 2) // 3))
            times.append(took * 1000)
            print(f"outage {run + 1}: 300 visitors served while the hub was down, "
                  f"in the fleet's totals {took * 1000:.0f} ms after it listened again")
        print(f"median of {RUNS}: {statistics.median(times):.0f} ms after the hub's return (bar < 5000)")

        times = []
        for run in range(RUNS):
            took = logs_readable(hub, boxes, run)
            times.append(took * 1000)
            print(f"logs {run + 1}: a line from each box readable with fleet logs {took * 1000:.0f} ms after the requests")
        print(f"median of {RUNS}: {statistics.median(times):.0f} ms (bar < 1000)")
    finally:
        for b in boxes:
            if b.proc:
                b.proc.kill()
        if hub.proc:
            hub.proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
