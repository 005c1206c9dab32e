#!/usr/bin/env python3
"""bench/engine.py — the engine's own overheads, with the no-op function:

  dispatch   warm dispatch latency, spawn -> claimed by a warm worker (p50/p99),
             one job at a time (the queue's own timestamps, and the client's
             round trip spawn -> succeeded)
  burst      2,000 no-op jobs submitted at once from 16 client connections,
             to 1 and to 2 warm workers: jobs/s accepted, and from the first
             submit to the last success
  cold       worker cold start without a model: process start -> ready (the
             worker's own measure) and spawn -> claimed, for workers forked by
             the zygote and, as the baseline in the same run, by fork + exec
  wrk        `wrk -c 64` on GET /v1/jobs/{id} (p50/p99 latency, requests/s)

Anchors printed with the figures: hosted platforms quote 50-200 ms for a warm
call and ~1 s for a container cold start. usage: bench/engine.py [KILN]"""
import http.client, json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, threading, time

KILN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/kiln")
TMP = []


def start(config, extra_env=None):
    """A kiln serve on a free port with its own KILN_HOME; returns (proc, port, token, home)."""
    home = tempfile.mkdtemp(prefix="kiln-bench-engine-")
    TMP.append(home)
    env = dict(os.environ, KILN_HOME=home, **(extra_env or {}))
    open(os.path.join(home, "config.yaml"), "w").write(config)
    tok = subprocess.run([KILN, "token", "create", "--name", "bench"], env=env, capture_output=True, text=True).stdout.strip()
    srv = subprocess.Popen([KILN, "serve", "--listen", "127.0.0.1:0"], env=env, stderr=subprocess.PIPE, text=True)
    port = None
    for line in srv.stderr:
        m = re.search(r"listening on http://[0-9.]+:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    threading.Thread(target=lambda: [None for _ in srv.stderr], daemon=True).start()
    return srv, port, tok, home


srv, port, tok, T = start("functions:\n  noop: {min_workers: 1, max_workers: 2, idle_timeout_s: 600, max_chunks: 1}\n")
H = {"Authorization": "Bearer " + tok, "Content-Type": "application/json"}


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def main(port):
    def conn():
        return http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(c, m, path, body=None):
        c.request(m, path, body=json.dumps(body) if body is not None else None, headers=H)
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")

    c = conn()

    def wait_state(jid, states=("succeeded",)):
        while True:
            s, j = call(c, "GET", "/v1/jobs/" + jid)
            if j["state"] in states:
                return j
            time.sleep(0.0005)

    # warm the pool (min_workers: 1); with the server just started, this one may be cold
    s, j = call(c, "POST", "/v1/functions/noop/call", {"params": {"frames": 0, "output": False}})
    assert j["state"] == "succeeded", j

    # --- dispatch
    lat, rt = [], []
    for i in range(300):
        t0 = time.perf_counter()
        s, b = call(c, "POST", "/v1/functions/noop/spawn", {"params": {"frames": 0, "output": False}})
        j = wait_state(b["job_id"])
        rt.append((time.perf_counter() - t0) * 1000)
        lat.append(j["timings"]["queued_ms"])
    print("| warm dispatch, spawn -> claimed (queue timestamps, ms) | p50 %d | p99 %d |" % (pct(lat, 50), pct(lat, 99)))
    print("| warm round trip, spawn -> succeeded seen by the client (ms) | p50 %.1f | p99 %.1f |" % (pct(rt, 50), pct(rt, 99)))
    ids = [b["job_id"]]
    # --- wrk
    jid = ids[0]
    if shutil.which("wrk"):
        out = subprocess.run(["wrk", "-t", "2", "-c", "64", "-d", "10s", "--latency", "-H", "Authorization: Bearer " + tok,
                              f"http://127.0.0.1:{port}/v1/jobs/{jid}"], capture_output=True, text=True).stdout
        p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)
        p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
        rps = re.search(r"Requests/sec:\s+(\S+)", out).group(1)
        print("| wrk -c 64 GET /v1/jobs/{id} | p50 %s, p99 %s | %s req/s |" % (p50, p99, rps))


def burst(workers, N=2000, K=16):
    """N no-op jobs submitted at once from K connections, to a pool of `workers` warm workers."""
    sv, pt, tk, home = start("functions:\n  noop: {min_workers: %d, max_workers: %d, idle_timeout_s: 600, max_chunks: 1}\n" % (workers, workers))
    import sqlite3
    db = sqlite3.connect(os.path.join(home, "queue.db"))
    while db.execute("SELECT COUNT(*) FROM workers WHERE state=1").fetchone()[0] < workers:
        time.sleep(0.01)

    def submit(n):
        cc = http.client.HTTPConnection("127.0.0.1", pt, timeout=60)
        for _ in range(n):
            cc.request("POST", "/v1/functions/noop/spawn", body=json.dumps({"params": {"frames": 0, "output": False}}),
                       headers={"Authorization": "Bearer " + tk})
            assert cc.getresponse().read()
    t0 = time.perf_counter()
    th = [threading.Thread(target=submit, args=(N // K,)) for _ in range(K)]
    [t.start() for t in th]
    [t.join() for t in th]
    t_sub = time.perf_counter() - t0
    while db.execute("SELECT COUNT(*) FROM jobs WHERE state=3").fetchone()[0] < N:
        time.sleep(0.005)
    t_all = time.perf_counter() - t0
    db.close()
    print("| burst of %d no-op jobs, %d connections, %d warm worker%s: accepted (202, fsynced) | %.0f jobs/s | |"
          % (N, K, workers, "s" if workers > 1 else "", N / t_sub))
    print("| ... first submit -> last succeeded | %.0f jobs/s | %.2f s |" % (N / t_all, t_all))
    sv.send_signal(signal.SIGTERM)
    sv.wait(timeout=30)


def planned_dispatch():
    """Warm dispatch of jobs the chunk planner decides first (noop left chunkable)."""
    sv, pt, tk, home = start("functions:\n  noop: {min_workers: 1, max_workers: 2, idle_timeout_s: 600}\n")
    c = http.client.HTTPConnection("127.0.0.1", pt, timeout=60)
    lat = []
    for i in range(101):
        c.request("POST", "/v1/functions/noop/call", body=json.dumps({"params": {"frames": 0, "output": False}}),
                  headers={"Authorization": "Bearer " + tk})
        j = json.loads(c.getresponse().read())
        if i:
            lat.append(j["timings"]["queued_ms"])
    print("| warm dispatch through the chunk planner, spawn -> claimed (ms) | p50 %d | p99 %d |" % (pct(lat, 50), pct(lat, 99)))
    sv.send_signal(signal.SIGTERM)
    sv.wait(timeout=30)


def cold(label, extra_env):
    """Cold starts one after another: max_workers 1 and idle_timeout 0, so every call starts a worker."""
    sv, pt, tk, home = start("functions:\n  noop: {max_workers: 1, idle_timeout_s: 0, max_chunks: 1}\n", extra_env)
    import sqlite3
    c = http.client.HTTPConnection("127.0.0.1", pt, timeout=60)
    db = sqlite3.connect(os.path.join(home, "queue.db"))
    cs, q = [], []
    time.sleep(0.5)                                # let the server (and its zygote) finish starting
    for i in range(31):
        c.request("POST", "/v1/functions/noop/call", body=json.dumps({"params": {"frames": 0, "output": False}}),
                  headers={"Authorization": "Bearer " + tk})
        j = json.loads(c.getresponse().read())
        if i:                                      # the first may race the server's own start
            cs.append(j["timings"]["cold_start_ms"])
            q.append(j["timings"]["queued_ms"])
        while db.execute("SELECT COUNT(*) FROM workers WHERE state<3").fetchone()[0] > 0:
            time.sleep(0.002)
    db.close()
    print("| cold start, %s: process start -> ready (ms, 30 workers) | p50 %d | p99 %d |" % (label, pct(cs, 50), pct(cs, 99)))
    print("| cold call, %s: spawn -> claimed (ms) | p50 %d | p99 %d |" % (label, pct(q, 50), pct(q, 99)))
    sv.send_signal(signal.SIGTERM)
    sv.wait(timeout=30)


try:
    print("| measure | value | |\n|---|---|---|")
    main(port)
    srv.send_signal(signal.SIGTERM)
    srv.wait(timeout=30)
    planned_dispatch()
    burst(1)
    burst(2)
    cold("forked by the zygote", None)
    cold("fork + exec (KILN_NO_ZYGOTE=1, the baseline)", {"KILN_NO_ZYGOTE": "1"})
finally:
    if srv.poll() is None:
        srv.kill()
    for h in TMP:
        shutil.rmtree(h, ignore_errors=True)
