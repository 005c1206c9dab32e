#!/usr/bin/env python3
"""bench/queue.py — the queue backends side by side, in one run: SQLite (the
embedded default) and PostgreSQL (a server started here with
tests/pgserver.py, on loopback), each under the same `kiln serve` and the
no-op function:

  dispatch   warm dispatch, spawn -> claimed by a warm worker (the queue's
             own timestamps), one job at a time, p50/p99 of 300
  round trip spawn -> `succeeded` seen by a polling client, p50/p99
  burst      2,000 no-op jobs from 16 connections to 2 warm workers:
             accepted jobs/s (202: committed), and first submit -> last
             success (jobs/s end to end)
  wrk        `wrk -t2 -c64 -d10s` on GET /v1/jobs/{id}: p50/p99, req/s

The client, the server, its workers and PostgreSQL share this machine's
cores. Goal (issue 13): PostgreSQL dispatch p50 <= 5 ms and >= 1,000 no-op
jobs/s end to end. usage: bench/queue.py [KILN] [--quick]"""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import pgserver  # noqa: E402

args = [a for a in sys.argv[1:] if not a.startswith("--")]
KILN = os.path.abspath(args[0] if args else "build/kiln")
QUICK = "--quick" in sys.argv
TMP = []


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


class Serve:
    def __init__(self, config, queue=None):
        self.home = tempfile.mkdtemp(prefix="kiln-bench-queue-")
        TMP.append(self.home)
        self.env = dict(os.environ, KILN_HOME=self.home)
        if queue:
            self.env["KILN_QUEUE"] = queue
        open(os.path.join(self.home, "config.yaml"), "w").write(config)
        self.tok = subprocess.run([KILN, "token", "create", "--name", "bench"], env=self.env, capture_output=True,
                                  text=True).stdout.strip()
        self.p = subprocess.Popen([KILN, "serve", "--listen", "127.0.0.1:0"], env=self.env, stderr=subprocess.PIPE,
                                  text=True)
        for line in self.p.stderr:
            m = re.search(r"listening on http://[0-9.]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        threading.Thread(target=lambda: [None for _ in self.p.stderr], daemon=True).start()
        self.H = {"Authorization": "Bearer " + self.tok, "Content-Type": "application/json"}

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def call(self, c, m, path, body=None):
        c.request(m, path, body=json.dumps(body) if body is not None else None, headers=self.H)
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")

    def succeeded(self, c):
        return self.call(c, "GET", "/v1/functions/noop")[1]["stats"]["jobs"]["succeeded"]

    def warm(self, c, n):
        while self.call(c, "GET", "/v1/functions/noop")[1]["stats"]["workers"]["warm"] < n:
            time.sleep(0.01)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=30)


NOOP = {"params": {"frames": 0, "output": False}}


def dispatch(queue):
    sv = Serve("functions:\n  noop: {min_workers: 1, max_workers: 1, idle_timeout_s: 600, max_chunks: 1}\n", queue)
    c = sv.conn()
    s, j = sv.call(c, "POST", "/v1/functions/noop/call", NOOP)      # warm
    assert j["state"] == "succeeded", j
    lat, rt = [], []
    for _ in range(100 if QUICK else 300):
        t0 = time.perf_counter()
        s, b = sv.call(c, "POST", "/v1/functions/noop/spawn", NOOP)
        while True:
            s, j = sv.call(c, "GET", "/v1/jobs/" + b["job_id"])
            if j["state"] == "succeeded":
                break
            time.sleep(0.0005)
        rt.append((time.perf_counter() - t0) * 1000)
        lat.append(j["timings"]["queued_ms"])
    res = {"dispatch": (pct(lat, 50), pct(lat, 99)), "rt": (pct(rt, 50), pct(rt, 99))}
    if shutil.which("wrk"):
        out = subprocess.run(["wrk", "-t", "2", "-c", "64", "-d", "5s" if QUICK else "10s", "--latency", "-H",
                              "Authorization: Bearer " + sv.tok, f"http://127.0.0.1:{sv.port}/v1/jobs/{b['job_id']}"],
                             capture_output=True, text=True).stdout
        res["wrk"] = (re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1), re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1),
                      re.search(r"Requests/sec:\s+(\S+)", out).group(1),
                      re.search(r"Non-2xx or 3xx responses: (\d+)", out).group(1) if "Non-2xx" in out else "0")
    sv.stop()
    return res


def burst(queue, N=2000, K=16, workers=2):
    sv = Serve("functions:\n  noop: {min_workers: %d, max_workers: %d, idle_timeout_s: 600, max_chunks: 1}\n"
               % (workers, workers), queue)
    c = sv.conn()
    sv.warm(c, workers)
    base = sv.succeeded(c)
    N = N // K * K
    errors = []

    def submit(n):
        cc = sv.conn()
        for _ in range(n):
            s, _ = sv.call(cc, "POST", "/v1/functions/noop/spawn", NOOP)
            if s != 202:
                errors.append(s)
    t0 = time.perf_counter()
    th = [threading.Thread(target=submit, args=(N // K,)) for _ in range(K)]
    [t.start() for t in th]
    [t.join() for t in th]
    t_sub = time.perf_counter() - t0
    while sv.succeeded(c) - base < N - len(errors):
        time.sleep(0.005)
    t_all = time.perf_counter() - t0
    sv.stop()
    return {"accepted": N / t_sub, "e2e": N / t_all, "t_all": t_all, "errors": len(errors)}


try:
    backends = [("SQLite", None)]
    pg = pgserver.PgServer()
    pg.__enter__()
    backends.append(("PostgreSQL", pg.url))
    rows = {}
    for name, q in backends:
        if q:                                       # a fresh database per part
            for db in ("d1", "d2"):
                subprocess.run(["psql", q, "-qc", f"DROP DATABASE IF EXISTS {db}"], capture_output=True)
                subprocess.run(["psql", q, "-qc", f"CREATE DATABASE {db}"], check=True, capture_output=True)
        d = dispatch(q and q.rsplit("/", 1)[0] + "/d1")
        b = burst(q and q.rsplit("/", 1)[0] + "/d2", N=1000 if QUICK else 2000)
        rows[name] = (d, b)
    cpu = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read())
    print(f"\n{os.cpu_count()} CPUs ({cpu.group(1).strip() if cpu else '?'}), {time.strftime('%Y-%m-%d')}\n")
    print("| measure | " + " | ".join(n for n, _ in backends) + " |")
    print("|---|" + "---|" * len(backends))

    def row(label, f):
        print(f"| {label} | " + " | ".join(f(*rows[n]) for n, _ in backends) + " |")
    row("warm dispatch, spawn -> claimed, p50 / p99 (ms)", lambda d, b: "%d / %d" % d["dispatch"])
    row("warm round trip, spawn -> succeeded seen by the client, p50 / p99 (ms)", lambda d, b: "%.1f / %.1f" % d["rt"])
    row("burst of no-op jobs, 16 connections, 2 warm workers: accepted (jobs/s)", lambda d, b: "%.0f" % b["accepted"])
    row("... first submit -> last succeeded, end to end (jobs/s)", lambda d, b: "%.0f (%.2f s)" % (b["e2e"], b["t_all"]))
    row("... submissions refused", lambda d, b: "%d" % b["errors"])
    if "wrk" in rows["SQLite"][0]:
        row("`wrk -t2 -c64` GET /v1/jobs/{id}: p50 / p99, req/s (non-2xx)",
            lambda d, b: "%s / %s, %s (%s)" % d["wrk"])
finally:
    try:
        pg.__exit__(None, None, None)
    except Exception:
        pass
    for h in TMP:
        shutil.rmtree(h, ignore_errors=True)
