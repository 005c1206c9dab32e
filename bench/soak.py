#!/usr/bin/env python3
"""bench/soak.py — a bounded soak of `kiln serve` (issue 12): N minutes
(default 10) at 64 concurrent connections against a real server with four
warm `noop` workers. Each connection (a thread with its own keep-alive
HTTP/1.1 connection, raw http.client) loops over a mix:

  10%  spawn   POST /v1/functions/noop/spawn (2 frames of 10 ms: a 20 ms job),
       follow  then follow it on GET /v1/jobs/ID/events (SSE) to its end
               event, which must say succeeded
  10%  sse     GET /v1/jobs/ID/events of a recent job (most have ended: the
               events so far, then the end event)
  80%  read    GET /v1/jobs/ID of a recent job

Every minute (and at the start) it samples the server process: RSS (VmRSS),
threads (/proc/PID/status) and open descriptors (/proc/PID/fd), and prints
them as a table with the requests, errors and latencies (p50/p99) of that
minute, then the totals. "flat" compares the last sample with the one after
the first minute (the warm-up fills SQLite's page cache, the HTTP thread
pool and malloc's arenas): not flat when RSS grew by more than
max(8 MiB, 10%), threads by more than 2, or descriptors by more than 8.

usage: bench/soak.py [KILN] [--minutes N] [--connections C] [--seed S]"""
import argparse, http.client, json, os, random, shutil, statistics, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import kilnt                                      # noqa: E402
from kilnt import Server, until                   # noqa: E402

CONFIG = """
slots: {cpu: 8}
functions:
  noop: {min_workers: 4, max_workers: 4, idle_timeout_s: 3600, max_chunks: 1}
"""
TOL_RSS_KB, TOL_RSS_FRAC, TOL_THREADS, TOL_FDS = 8192, 0.10, 2, 8


def sample(pid):
    st = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        st[k] = v.strip()
    return {"rss_kb": int(st["VmRSS"].split()[0]), "threads": int(st["Threads"]), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def pct(v, p):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


class Stats:
    """Per-minute and total counts and latencies (ms) per kind."""

    def __init__(self):
        self.mu = threading.Lock()
        self.minute = self._new()
        self.total = self._new()

    @staticmethod
    def _new():
        return {k: {"n": 0, "err": 0, "ms": []} for k in ("read", "spawn", "follow", "sse")}

    def add(self, kind, ms, ok):
        with self.mu:
            for d in (self.minute, self.total):
                d[kind]["n"] += 1
                d[kind]["err"] += 0 if ok else 1
                if ok:
                    d[kind]["ms"].append(ms)

    def roll(self):
        with self.mu:
            m, self.minute = self.minute, self._new()
        return m


class Ids:
    """The recent job ids (the last 1,000 to 2,000), shared by the connections."""

    def __init__(self, ids):
        self.mu, self.v = threading.Lock(), list(ids)

    def add(self, jid):
        with self.mu:
            self.v.append(jid)
            if len(self.v) > 2000:
                del self.v[:1000]

    def pick(self, rng):
        with self.mu:
            return self.v[rng.randrange(len(self.v))]


class Load(threading.Thread):
    def __init__(self, port, tok, ids, stats, quit, seed):
        super().__init__(daemon=True)
        self.port, self.tok, self.ids, self.stats, self.quit = port, tok, ids, stats, quit
        self.rng = random.Random(seed)
        self.h = {"Authorization": "Bearer " + tok}
        self.conn = None
        self.errors = []

    def _conn(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return self.conn

    def _drop(self):
        if self.conn:
            self.conn.close()
        self.conn = None

    def request(self, m, path, body=None):
        c = self._conn()
        c.request(m, path, body=json.dumps(body) if body is not None else None, headers=dict(self.h, **({"Content-Type": "application/json"} if body is not None else {})))
        r = c.getresponse()
        data = r.read()
        if r.getheader("Connection", "").lower() == "close":
            self._drop()
        return r.status, data

    def stream(self, jid):
        """SSE of job jid to its end event; returns the end event's job (or None)."""
        c = self._conn()
        c.request("GET", f"/v1/jobs/{jid}/events", headers=dict(self.h, Accept="text/event-stream"))
        r = c.getresponse()
        if r.status != 200:
            r.read()
            return None
        kind, end = None, None
        while True:
            line = r.readline()
            if not line:
                break
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "end":
                end = json.loads(line[6:])
        r.read()
        if r.getheader("Connection", "").lower() == "close" or r.will_close:
            self._drop()
        return end

    def one(self):
        x = self.rng.random()
        t0 = time.perf_counter()
        if x < 0.10:
            kind = "spawn"
            s, b = self.request("POST", "/v1/functions/noop/spawn", {"params": {"frames": 2, "ms_per_frame": 10}})
            ok = s == 202
            self.stats.add(kind, (time.perf_counter() - t0) * 1000, ok)
            if not ok:
                self.errors.append(f"spawn {s} {b[:200]!r}")
                return
            jid = json.loads(b)["job_id"]
            t1 = time.perf_counter()
            end = self.stream(jid)
            ok = bool(end) and end.get("state") == "succeeded"
            self.stats.add("follow", (time.perf_counter() - t1) * 1000, ok)
            if not ok:
                self.errors.append(f"sse of a new job ended {end and end.get('state')}")
            self.ids.add(jid)
        elif x < 0.20:
            end = self.stream(self.ids.pick(self.rng))
            ok = bool(end)
            self.stats.add("sse", (time.perf_counter() - t0) * 1000, ok)
            if not ok:
                self.errors.append("sse without an end event")
        else:
            s, b = self.request("GET", "/v1/jobs/" + self.ids.pick(self.rng))
            ok = s == 200
            self.stats.add("read", (time.perf_counter() - t0) * 1000, ok)
            if not ok:
                self.errors.append(f"read {s} {b[:200]!r}")

    def run(self):
        while not self.quit.is_set():
            try:
                self.one()
            except Exception as ex:          # a reset or a timeout: counted, the connection made again
                self.stats.add("read", 0, False)
                self.errors.append(repr(ex))
                self._drop()


def fmt_minute(t, smp, m):
    n = sum(v["n"] for v in m.values())
    err = sum(v["err"] for v in m.values())

    def lat(kind, digits):
        v = m[kind]["ms"]
        return f"{pct(v, 50):.{digits}f} / {pct(v, 99):.{digits}f}" if v else "–"
    return (f"| {t} | {smp['rss_kb'] / 1024:.1f} | {smp['threads']} | {smp['fds']} | {n} | {err} | "
            f"{lat('read', 1)} | {lat('spawn', 1)} | {lat('sse', 1)} | {lat('follow', 0)} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kiln", nargs="?", default=os.path.join(HERE, "..", "build", "kiln"))
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    kilnt.KILN = os.path.abspath(a.kiln)
    T = tempfile.mkdtemp(prefix="kiln-soak-")
    srv = None
    try:
        srv = Server(os.path.join(T, "home"), CONFIG)
        port = int(srv.url.rsplit(":", 1)[1])
        import sqlite3
        db = sqlite3.connect(os.path.join(srv.home, "queue.db"))
        until(lambda: db.execute("SELECT COUNT(*) FROM workers WHERE state=1").fetchone()[0] >= 4, 30)
        db.close()
        ids = []
        for _ in range(20):                       # jobs to read and stream from the first request on
            s, b, _ = srv.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 2, "ms_per_frame": 10}})
            ids.append(b["job_id"])
        until(lambda: all(srv.job(j)["state"] == "succeeded" for j in ids), 30)
        stats, quit, shared = Stats(), threading.Event(), Ids(ids)
        print(f"soak: {a.minutes:g} min, {a.connections} connections, server pid {srv.p.pid}", flush=True)
        print("| minute | RSS (MiB) | threads | fds | requests | errors | read p50 / p99 (ms) | spawn p50 / p99 (ms) "
              "| SSE of a recent job p50 / p99 (ms) | SSE of the spawned job to its end p50 / p99 (ms) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        samples = [sample(srv.p.pid)]
        print(fmt_minute(0, samples[0], Stats._new()), flush=True)
        loads = [Load(port, srv.tok, shared, stats, quit, a.seed * 1000 + i) for i in range(a.connections)]
        t0 = time.time()
        for l in loads:
            l.start()
        minutes = int(a.minutes) if a.minutes >= 1 else 1
        period = a.minutes * 60 / minutes
        for k in range(1, minutes + 1):
            time.sleep(max(0, t0 + k * period - time.time()))     # the sampling clock, not a wait for a condition
            samples.append(sample(srv.p.pid))
            print(fmt_minute(k, samples[-1], stats.roll()), flush=True)
        quit.set()
        for l in loads:
            l.join(70)
        wall = time.time() - t0
        tot = stats.total
        n = sum(v["n"] for v in tot.values())
        err = sum(v["err"] for v in tot.values())
        print()
        print("| kind | requests | errors | p50 (ms) | p99 (ms) |\n|---|---|---|---|---|")
        for kind, v in tot.items():
            print(f"| {kind} | {v['n']} | {v['err']} | {pct(v['ms'], 50):.1f} | {pct(v['ms'], 99):.1f} |")
        print(f"| all | {n} ({n / wall:.0f}/s) | {err} | | |")
        first, last = samples[1], samples[-1]
        why = []
        if len(samples) < 3:
            print("\ntoo short to judge flatness: that needs 2 samples under load, 2 minutes or more")
            return 1 if err else 0
        if last["rss_kb"] - first["rss_kb"] > max(TOL_RSS_KB, TOL_RSS_FRAC * first["rss_kb"]):
            why.append(f"RSS {first['rss_kb'] / 1024:.1f} -> {last['rss_kb'] / 1024:.1f} MiB")
        if last["threads"] - first["threads"] > TOL_THREADS:
            why.append(f"threads {first['threads']} -> {last['threads']}")
        if last["fds"] - first["fds"] > TOL_FDS:
            why.append(f"descriptors {first['fds']} -> {last['fds']}")
        print()
        print(("NOT FLAT: " + "; ".join(why)) if why else
              f"flat: from minute 1 to {len(samples) - 1}, RSS {first['rss_kb'] / 1024:.1f} -> {last['rss_kb'] / 1024:.1f} MiB, "
              f"threads {first['threads']} -> {last['threads']}, descriptors {first['fds']} -> {last['fds']} "
              f"(tolerance: RSS max(8 MiB, 10%), threads 2, descriptors 8)")
        errs = [e for l in loads for e in l.errors]
        if errs:
            print(f"errors ({len(errs)}), first: {errs[:5]}")
        s, b, _ = srv.req("GET", "/v1/jobs?state=failed&limit=10")
        if b and b.get("jobs"):
            print(f"failed jobs: {len(b['jobs'])}, first: {b['jobs'][0].get('error')}")
        return 1 if why or err else 0
    finally:
        if srv:
            t1 = time.time()
            srv.stop()
            print(f"server stopped (SIGTERM) in {time.time() - t1:.1f} s, exit status {srv.p.returncode}")
        shutil.rmtree(T, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
