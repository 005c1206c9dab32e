#!/usr/bin/env python3
"""bench/connections.py — does a crowd of idle clients delay anyone else?
A real `kiln serve` (its own KILN_HOME, a free loopback port); a normal
client sends sequential GET /health and we take p50/p99/max latency:
first with no other connection (the baseline, same run), then with N
half-open connections (half a request line each, never finished) held
open from other loopback addresses, then with N from the client's own
address (the per-address limit refuses the excess).
usage: bench/connections.py KILN [--idle 1000] [--requests 2000] [--kiln-old OLD_KILN]
--kiln-old runs the same table for another binary (e.g. a build of an
older commit) on the same machine, for a before/after."""
import argparse, json, os, resource, socket, statistics, sys, tempfile, time, http.client

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import kilnt

# the idle connections must outlive the measurement: a long idle timeout here
CONFIG = "http: {idle_timeout_s: 600}\n"
CONFIG_OLD = ""


def hostport(url):
    h, p = url[len("http://"):].split(":")
    return h, int(p)


def open_idle(url, n, sources):
    socks, failed = [], 0
    for i in range(n):
        so = socket.socket()
        try:
            so.bind((sources[i % len(sources)], 0))
            so.settimeout(2)
            so.connect(hostport(url))
            so.sendall(b"GET /heal")
            socks.append(so)
        except OSError:
            failed += 1
            so.close()
    return socks, failed


def alive(socks):
    n = 0
    for so in socks:
        so.setblocking(False)
        try:
            d = so.recv(16)
            if d:
                n += 0                                   # an answer (an error page): closed after it
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def measure(url, n):
    lat, errors = [], 0
    h, p = hostport(url)
    for _ in range(n):
        t = time.perf_counter()
        try:
            c = http.client.HTTPConnection(h, p, timeout=10)
            c.request("GET", "/health")
            r = c.getresponse()
            ok = r.status == 200 and json.loads(r.read())["status"] == "ok"
            c.close()
        except Exception:
            ok = False
        lat.append((time.perf_counter() - t) * 1000)
        errors += not ok
    lat.sort()
    return {"p50": statistics.median(lat), "p99": lat[int(len(lat) * 0.99) - 1], "max": lat[-1], "errors": errors}


def run(kiln, idle, requests, config, label):
    kilnt.KILN = kiln
    home = tempfile.mkdtemp(prefix="kiln-bench-conn-")
    srv = kilnt.Server(home, config)
    rows = []
    try:
        rows.append((label, "none", 0, measure(srv.url, requests)))
        socks, failed = open_idle(srv.url, idle, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"])
        time.sleep(0.5)                                   # let the server act on them (refuse or hold); no assertion rides on it
        held = alive(socks)
        rows.append((label, f"{idle} half-open from 4 other addresses", held, measure(srv.url, requests)))
        for so in socks:
            so.close()
        socks, failed = open_idle(srv.url, idle, ["127.0.0.1"])
        time.sleep(0.5)
        held = alive(socks)
        rows.append((label, f"{idle} half-open from the client's own address", held, measure(srv.url, requests)))
        for so in socks:
            so.close()
    finally:
        srv.stop()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kiln")
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--kiln-old")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    rows = run(os.path.abspath(a.kiln), a.idle, a.requests, CONFIG, "this build")
    if a.kiln_old:
        rows += run(os.path.abspath(a.kiln_old), a.idle, a.requests, CONFIG_OLD, "old build")
    print(f"| server | idle connections | held open by the server | /health p50 ms | p99 ms | max ms | failed of {a.requests} |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for label, what, held, m in rows:
        print(f"| {label} | {what} | {held} | {m['p50']:.2f} | {m['p99']:.2f} | {m['max']:.1f} | {m['errors']} |")


if __name__ == "__main__":
    main()
