#!/usr/bin/env python3
"""HTTP helper of run.sh's `restart` and `memory` phases, over one kept-alive
connection to 127.0.0.1 (opened again whenever the server closes it or is not
up yet). Standard library only.

    fetch.py wait PORT LIST SINCE_US TIMEOUT_S [READY_URL]

Polls the "host path" lines of LIST in order: each until it answers 200 with
its own site's page, then the next. A page's own site is in its <title>
("... | NAME</title>", NAME = the host's first label; files other than pages
only need the 200). Polls READY_URL last, until it answers 200. Prints
"FIRST_MS ALL_MS PASS_MS": the ms from SINCE_US (microseconds since the
epoch, taken by the caller just before it started the server) until the
first line was good and until every line (and READY_URL) was, and the ms one
more pass over LIST takes, now that all are good: the part of ALL_MS that is
the requests' own time, not the server's wait. Exits 1 after TIMEOUT_S with
what it waited for.

    fetch.py get PORT LIST [HEADER...]

GETs every line of LIST once with the given "Name: value" headers (e.g.
"Accept-Encoding: br, gzip"), reads each body whole, and prints
"REQUESTS BYTES MS". Exits 1, after listing a few, if any answer was not 200.
"""

import http.client
import sys
import time


class Client:
    def __init__(self, port):
        self.port = port
        self.conn = None

    def get(self, host, path, headers=()):
        """(status, body); status 0 when the connection failed."""
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.conn.request("GET", path, headers={"Host": host, **dict(headers)})
            response = self.conn.getresponse()
            body = response.read()
            if response.will_close:
                self.close()
            return response.status, body
        except (OSError, http.client.HTTPException):
            self.close()
            return 0, b""

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def read_list(path):
    with open(path) as f:
        return [tuple(line.split()) for line in f if line.strip()]


def good(host, path, status, body):
    if status != 200:
        return False
    if path == "/" or path.endswith(".html"):
        return f"| {host.split('.')[0]}</title>".encode() in body
    return True


def wait(port, list_file, since_us, timeout_s, ready_url=None):
    urls = read_list(list_file)
    client = Client(port)
    deadline = time.time() + timeout_s
    first_us = None
    for host, path in urls:
        while True:
            status, body = client.get(host, path)
            if good(host, path, status, body):
                break
            if time.time() > deadline:
                sys.exit(f"fetch.py: {host}{path} answers {status or 'nothing'}"
                         f"{' with another page' if status == 200 else ''} after {timeout_s} s")
            time.sleep(0.002)
        if first_us is None:
            first_us = time.time_ns() // 1000
    if ready_url:
        # http://127.0.0.1:PORT/PATH
        hostport, _, path = ready_url.removeprefix("http://").partition("/")
        admin = Client(int(hostport.rpartition(":")[2]))
        while admin.get(hostport, "/" + path)[0] != 200:
            if time.time() > deadline:
                sys.exit(f"fetch.py: {ready_url} not 200 after {timeout_s} s")
            time.sleep(0.002)
    all_us = time.time_ns() // 1000
    started = time.perf_counter()
    for host, path in urls:
        status, body = client.get(host, path)
        if not good(host, path, status, body):
            sys.exit(f"fetch.py: {host}{path} answered {status} on the second pass")
    pass_ms = (time.perf_counter() - started) * 1000
    print(f"{(first_us - since_us) / 1000:.1f} {(all_us - since_us) / 1000:.1f} {pass_ms:.1f}")


def get(port, list_file, headers):
    headers = [tuple(part.strip() for part in h.split(":", 1)) for h in headers]
    client = Client(port)
    bad, total = [], 0
    started = time.perf_counter()
    urls = read_list(list_file)
    for host, path in urls:
        status, body = client.get(host, path, headers)
        total += len(body)
        if status != 200:
            bad.append(f"{status or 'no answer'} {host}{path}")
    ms = (time.perf_counter() - started) * 1000
    if bad:
        sys.exit(f"fetch.py: {len(bad)} of {len(urls)} answers were not 200, e.g.\n  " + "\n  ".join(bad[:5]))
    print(f"{len(urls)} {total} {ms:.0f}")


def main():
    args = sys.argv[1:]
    if len(args) in (5, 6) and args[0] == "wait":
        wait(int(args[1]), args[2], int(args[3]), float(args[4]), args[5] if len(args) == 6 else None)
    elif len(args) >= 3 and args[0] == "get":
        get(int(args[1]), args[2], args[3:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
