#!/usr/bin/env python3
"""test_engine.py — the engine end to end: real `kiln serve` processes on free
loopback ports, real `kiln worker` processes, real HTTP. Covers the golden
path (upload, spawn, SSE progress to 100%, download, the output checked as
media), call and its 303, auth, bad input, a worker killed mid-task, the
server killed and restarted mid-job, a task past its timeout, idle workers
leaving, min_workers staying, cancel, presigned URLs, webhooks with their
signature, and the stats, usage and metrics routes.

Waits are on conditions (polling a route with a deadline), never fixed sleeps.
usage: test_engine.py KILN"""
import base64, hashlib, hmac, http.server, json, os, re, shutil, signal, subprocess
import sys, tempfile, threading, time, urllib.error, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kilnt
from kilnt import Server, check, until, pid_alive

KILN = kilnt.KILN = os.path.abspath(sys.argv[1])
T = tempfile.mkdtemp(prefix="kiln-engine-")
servers = kilnt.servers


CONFIG = """
lease_s: 2
retry_delay_s: 0.2
retry_max_delay_s: 1
inline_max_bytes: 300000
slots: {cpu: 6}
webhook: {attempts: 4, delay_s: 0.2}
functions:
  noop: {idle_timeout_s: 2, max_workers: 2, retries: 2, max_chunks: 1}
  overlay: {min_workers: 1, idle_timeout_s: 1, cpus: 1}
  reframe: {max_workers: 1, idle_timeout_s: 30, cpus: 2}
"""

try:
    A = Server(os.path.join(T, "a"), CONFIG)
    clip = os.path.join(T, "in.mp4")
    subprocess.run([KILN, "sample", "bars", clip, "--seconds", "6", "--size", "640x360", "--fps", "25", "--tone", "440"],
                   check=True, capture_output=True)

    # --- golden path: upload, spawn, SSE progress to 100%, download, verify
    data = open(clip, "rb").read()
    s, b, _ = A.req("PUT", "/v1/objects/in/clip.mp4", data)
    check("upload", s == 201 and b["bytes"] == len(data), b)
    s, b, h = A.req("POST", "/v1/functions/reframe/spawn",
                    {"input": "in/clip.mp4", "params": {"width": 360, "height": 640}})
    check("spawn 202", s == 202 and re.fullmatch(r"[0-9a-f]{32}", b.get("job_id", "")) and h.get("Location") == "/v1/jobs/" + b["job_id"], (s, b, h))
    jid = b["job_id"]
    r = urllib.request.Request(A.url + f"/v1/jobs/{jid}/events", headers={"Authorization": "Bearer " + A.tok})
    events, kinds = [], []
    with urllib.request.urlopen(r, timeout=60) as f:
        check("SSE content type", f.headers.get("Content-Type") == "text/event-stream", f.headers)
        kind = None
        for line in f:
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                kinds.append(kind)
                events.append(json.loads(line[6:]))
    pct = [e["percent"] for e, k in zip(events, kinds) if k == "progress" and e.get("frames_total")]
    check("SSE: progress events, the last at 100%", len(pct) >= 2 and pct[-1] == 100, kinds)
    check("SSE: percent never goes back", all(a <= b2 for a, b2 in zip(pct, pct[1:])), pct)
    states = [e["state"] for e, k in zip(events, kinds) if k == "state"]
    check("SSE: states queued -> running -> succeeded", states[:2] == ["queued", "running"] and states[-1] == "succeeded", states)
    end = events[-1]
    check("SSE: ends with the job at 100%", kinds[-1] == "end" and end["state"] == "succeeded" and end["progress"]["percent"] == 100
          and end["progress"]["frames_done"] == 150 and end["progress"]["phase"] == "done", end.get("progress"))
    out = end["result"]["outputs"][0]
    check("output key and bytes", out["key"] == f"jobs/{jid}/output.mp4" and out["bytes"] > 1000, out)
    # presigned URL: no token needed
    with urllib.request.urlopen(out["url"], timeout=30) as f:
        got = f.read()
    check("download by presigned URL", len(got) == out["bytes"], len(got))
    op = os.path.join(T, "out.mp4")
    open(op, "wb").write(got)
    pr = json.loads(subprocess.run([KILN, "probe", op, "--json"], capture_output=True, text=True).stdout or "{}")
    v = pr.get("video", {})
    check("output is media with the expected frames", v.get("width") == 360 and v.get("height") == 640 and v.get("frames") == 150
          and pr.get("audio"), pr)
    check("cost and timings", end["cost"]["usd"] > 0 and end["cost"]["resource_seconds"] > 0 and end["timings"]["run_ms"] > 0
          and end["timings"]["cold_start_ms"] > 0, (end["cost"], end["timings"]))
    bad = out["url"].replace("sig=", "sig=0")
    s, b, _ = A.req("GET", bad, token=False)
    check("tampered presigned URL: 403", s == 403, (s, b))

    # --- call: sync result, and the 303 after `wait`
    s, b, _ = A.req("POST", "/v1/functions/noop/call", {"params": {"frames": 3}})
    check("call: 200 with the result", s == 200 and b["state"] == "succeeded" and b["result"]["stats"]["frames"] == 3, (s, b))

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    op_ = urllib.request.build_opener(NoRedirect)
    r = urllib.request.Request(A.url + "/v1/functions/noop/call?wait=0.2", method="POST", headers={"Authorization": "Bearer " + A.tok},
                               data=json.dumps({"params": {"frames": 20, "ms_per_frame": 50}}).encode())
    try:
        op_.open(r, timeout=30)
        st, loc = 200, None
    except urllib.error.HTTPError as e:
        st, loc = e.code, e.headers.get("Location")
    check("call past `wait`: 303 to the job", st == 303 and loc and loc.startswith("/v1/jobs/"), (st, loc))
    if loc:
        j = A.wait_end(loc.split("/")[-1])
        check("...and the job still finishes", j["state"] == "succeeded", j["state"])

    # --- auth
    s, b, _ = A.req("GET", "/v1/jobs", token=False)
    check("no token: 401", s == 401 and b["error"]["code"] == "unauthorized", (s, b))
    s, b, _ = A.req("GET", "/v1/jobs", token="kiln_" + "0" * 64)
    check("wrong token: 401", s == 401 and "kiln_0000" not in json.dumps(b), (s, b))
    s, b, _ = A.req("GET", "/health", token=False)
    check("health without a token", s == 200 and b["status"] == "ok", b)

    # --- bad input
    s, b, _ = A.req("POST", "/v1/functions/noop/spawn", b'{"params": {"frames": 3,}}')
    check("malformed JSON: 400 naming the position", s == 400 and b["error"]["code"] == "bad_json" and "column" in b["error"]["message"], b)
    s, b, _ = A.req("POST", "/v1/functions/crop/spawn", {})
    check("unknown function: 404", s == 404 and b["error"]["code"] == "unknown_function" and "'crop'" in b["error"]["message"], b)
    s, b, _ = A.req("POST", "/v1/functions/reframe/spawn", {"input": "in/clip.mp4", "params": {"zoom": 2}})
    check("unknown param: 400 naming it", s == 400 and "zoom" in b["error"]["message"] and "reframe: reframe" not in b["error"]["message"], b)
    s, b, _ = A.req("POST", "/v1/functions/reframe/spawn", {"input": "in/clip.mp4", "params": {"width": "wide"}})
    check("ill-typed param: 400 naming it", s == 400 and "width" in b["error"]["message"], b)
    s, b, _ = A.req("POST", "/v1/functions/reframe/spawn", {"input": "../etc/passwd"})
    check("key with ..: 400", s == 400 and b["error"]["code"] == "bad_key", b)
    s, b, _ = A.req("POST", "/v1/functions/reframe/spawn", {"input": "in/none.mp4"})
    check("missing input object: 400 naming the upload route", s == 400 and "PUT /v1/objects/in/none.mp4" in b["error"]["message"], b)
    s, b, _ = A.req("POST", "/v1/functions/reframe/spawn", {"input": {"base64": base64.b64encode(os.urandom(400000)).decode()}})
    check("inline over the limit: 413 naming the upload route", s == 413 and "PUT /v1/objects" in b["error"]["message"], (s, b))
    A.req("PUT", "/v1/objects/in/notes.txt", b"this is not a video\n" * 50)
    s, b, _ = A.req("POST", "/v1/functions/reframe/spawn", {"input": "in/notes.txt"})
    j = A.wait_end(b["job_id"])
    check("non-media upload: failed bad_input, not retried", j["state"] == "failed" and (j["error"] or {}).get("class") == "bad_input"
          and j["attempts"] == 1, (j["state"], j.get("error")))
    msg = (j["error"] or {}).get("message", "")
    check("...its message names the object, not the server's files", "'in/notes.txt'" in msg and A.home not in msg, msg)
    s, b, _ = A.req("POST", "/v1/functions/reframe/spawn",
                    {"input": {"base64": base64.b64encode(data).decode()}, "params": {"preset": "ultrafast", "width": 90, "height": 160}})
    j = A.wait_end(b["job_id"]) if s == 202 else {}
    check("inline base64 input works", s == 202 and j.get("state") == "succeeded" and j["result"]["stats"]["frames"] == 150, (s, j.get("state")))

    # --- a worker killed with SIGKILL mid-task: retried, succeeds
    s, b, _ = A.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 40, "ms_per_frame": 50}})
    jid = b["job_id"]
    j = A.wait(jid, lambda j: j["progress"]["frames_done"] > 0 and j["worker"])
    wpid = kilnt.worker_pid(j["worker"]) if j.get("worker") else 0
    if check("a running task names its worker", wpid > 0, j):
        os.kill(wpid, signal.SIGKILL)
        j = A.wait_end(jid)
        check("killed worker: the task is retried and succeeds", j["state"] == "succeeded" and j["attempts"] == 2, (j["state"], j["attempts"], j["error"]))

    # --- cancel: the worker stops, no output is left
    s, b, _ = A.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 400, "ms_per_frame": 50}})
    jid = b["job_id"]
    j = A.wait(jid, lambda j: j["progress"]["frames_done"] > 0)
    s, b, _ = A.req("DELETE", "/v1/jobs/" + jid)
    check("cancel: 200 cancelled", s == 200 and b["state"] == "cancelled", (s, b))
    # the worker records the run's cost when its function has stopped
    j = until(lambda: (lambda j: j if j["cost"]["usd"] > 0 else None)(A.job(jid)), 10) or A.job(jid)
    check("cancel: the worker stops, and the run's cost is still counted", j["cost"]["resource_seconds"] > 0
          and j["cost"]["usd"] > 0 and j["progress"]["frames_done"] < 400, (j["cost"], j["progress"]))
    s, b, _ = A.req("GET", f"/v1/objects/jobs/{jid}/output.json")
    check("cancel: no output", s == 404, s)
    s, b, _ = A.req("DELETE", "/v1/jobs/" + jid)
    check("cancel twice: 409", s == 409 and "already cancelled" in b["error"]["message"], (s, b))

    # --- webhooks: first delivery refused (500), retried, signature verifies
    got = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((dict(self.headers), body))
            self.send_response(500 if len(got) == 1 else 200)
            self.end_headers()

        def log_message(self, *a):
            pass
    hs = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hs.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{hs.server_address[1]}/done"
    s, b, _ = A.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 2}, "webhook": hook})
    jid = b["job_id"]
    j = A.wait(jid, lambda j: j.get("webhook", {}).get("state") == "delivered", 20)
    check("webhook delivered after a retry", j["webhook"]["state"] == "delivered" and j["webhook"]["attempts"] == 2 and len(got) == 2, j.get("webhook"))
    if got:
        hd, body = got[-1]
        key = open(os.path.join(A.home, "webhook.key")).read().strip().encode()
        sig = hd.get("X-Kiln-Signature", "")
        m = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", sig)
        ok = m and hmac.compare_digest(m.group(2), hmac.new(key, m.group(1).encode() + b"." + body, hashlib.sha256).hexdigest())
        check("webhook signature verifies", ok, sig)
        bad = m and hmac.compare_digest(m.group(2), hmac.new(key, m.group(1).encode() + b"." + body + b" ", hashlib.sha256).hexdigest())
        check("...and would not for another body", not bad)
        check("webhook body is the job", json.loads(body)["job_id"] == jid and json.loads(body)["state"] == "succeeded"
              and hd.get("X-Kiln-Event") == "job.succeeded", body[:200])
    hs.shutdown()

    # --- the server killed -9 mid-job (and its worker with it), started again: the job completes
    s, b, _ = A.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 40, "ms_per_frame": 50}})
    jid = b["job_id"]
    s, b, _ = A.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 5}})
    jid2 = b["job_id"]
    j = A.wait(jid, lambda j: j["progress"]["frames_done"] > 0 and j["worker"])
    A.kill9()
    if j.get("worker"):
        os.kill(kilnt.worker_pid(j["worker"]), signal.SIGKILL)
    A.start()
    j = A.wait_end(jid)
    check("server restarted: the running job completes", j["state"] == "succeeded" and j["attempts"] >= 2, (j["state"], j["attempts"], j["error"]))
    j2 = A.wait_end(jid2)
    check("server restarted: the other job completes", j2["state"] == "succeeded", j2["state"])

    # --- idle workers leave after idle_timeout; min_workers stay
    gone = until(lambda: (lambda w: w["warm"] + w["busy"] + w["starting"] == 0)(A.fn_stats("noop")["workers"]), 15)
    check("idle noop workers leave (scale to zero)", gone, A.fn_stats("noop"))
    ov = A.fn_stats("overlay")
    check("overlay's min_workers: 1 stays warm", ov["workers"]["warm"] == 1, ov)

    # --- stats, list, usage, metrics
    st = A.fn_stats("noop")
    check("functions: cold starts and p50 run time", st["cold_starts"] >= 2 and st["run_ms_p50"] is not None
          and st["cold_start_ms_p50"] is not None and st["jobs"]["succeeded"] >= 4, st)
    s, b, _ = A.req("GET", "/v1/jobs?state=succeeded&fn=noop&limit=3")
    check("jobs: filtered list", s == 200 and len(b["jobs"]) == 3 and all(x["state"] == "succeeded" and x["fn"] == "noop" for x in b["jobs"]), s)
    s, b, _ = A.req("GET", "/v1/jobs?state=done")
    check("jobs: a bad state is named", s == 400 and "'done'" in b["error"]["message"], b)
    s, b, _ = A.req("GET", "/v1/usage?since=2000-01-01")
    rows = {r_["fn"]: r_ for r_ in b["usage"]}
    check("usage per function", "noop" in rows and "reframe" in rows and b["total"]["usd"] > 0 and b["total"]["jobs"] >= 8, b)
    s, b, _ = A.req("GET", "/v1/usage?since=yesterday")
    check("usage: a bad date is named", s == 400 and "YYYY-MM-DD" in b["error"]["message"], b)
    s, b, _ = A.req("GET", "/metrics", raw=True)
    check("metrics", s == 200 and re.search(rb'kiln_jobs\{fn="noop",state="succeeded"\} [1-9]', b) and b"kiln_cold_starts" in b, b[:300])

    A.stop()
    check("SIGTERM: the server exits cleanly", A.p.returncode == 0, A.p.returncode)
    def worker_rows():
        return A.sql("SELECT id, pid, state FROM workers")
    left = until(lambda: all(st_ == 3 and not pid_alive(pid) for _, pid, st_ in worker_rows()), 10)
    check("...and every worker has left (the min_workers one, those orphaned by the kill -9 too)", left, worker_rows())

    # --- a task past its timeout: failed `timeout`
    B = Server(os.path.join(T, "b"), "lease_s: 2\nbudget_usd_month: 0.00000001\nwebhook: {attempts: 2, delay_s: 0.05, block_private: true}\n"
               "functions:\n  noop: {timeout_s: 1, retries: 0, max_chunks: 1}\n")
    s, b, _ = B.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 200, "ms_per_frame": 50}})
    j = B.wait_end(b["job_id"], 30)
    check("timeout: failed with class timeout", j["state"] == "failed" and j["error"]["class"] == "timeout"
          and "timeout of 1 s" in j["error"]["message"], (j["state"], j["error"]))
    check("timeout: the killed run is charged", j["cost"]["resource_seconds"] >= 1 and j["cost"]["usd"] > 0, j["cost"])
    log = os.path.join(B.home, "serve.log")
    warned = until(lambda: re.search(r"warning: budget: this month's cost is \$[0-9.e-]+, \d{3,}% of the monthly budget", open(log).read()), 10)
    check("budget: a warning at 100% of the month's budget", warned, open(log).read()[-500:])
    # webhook.block_private: a URL that leads to loopback is refused, and said so
    got = []
    hs = http.server.HTTPServer(("127.0.0.1", 0), Hook)      # listening: only the block keeps kiln out
    threading.Thread(target=hs.serve_forever, daemon=True).start()
    s, b, _ = B.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 1}, "webhook": f"http://127.0.0.1:{hs.server_address[1]}/h"})
    j = B.wait(b["job_id"], lambda j: j.get("webhook", {}).get("state") == "failed", 20)
    check("block_private: a loopback webhook is refused", j["webhook"]["state"] == "failed" and j["webhook"]["attempts"] == 2
          and not got and "loopback, private or link-local" in open(log).read(), (j.get("webhook"), len(got)))
    hs.shutdown()
    B.stop()

    # --- a queue.db of schema version 3 (no jobs_ready index) is upgraded in place, its jobs kept
    if not os.environ.get("KILN_TEST_PG"):
        import sqlite3
        db = sqlite3.connect(os.path.join(B.home, "queue.db"))
        njobs = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        db.execute("DROP INDEX jobs_ready")
        db.execute("PRAGMA user_version=3")
        db.commit()
        db.close()
        B.start()
        rows = B.sql("SELECT COUNT(*) FROM sqlite_master WHERE name='jobs_ready'")
        ver = B.sql("PRAGMA user_version")
        s, b, _ = B.req("POST", "/v1/functions/noop/call", {"params": {"frames": 1}})
        check("schema 3 -> 4: upgraded on open (the index made, version 4), old jobs kept, new ones run",
              rows == [(1,)] and ver == [(4,)] and B.sql("SELECT COUNT(*) FROM jobs")[0][0] == njobs + 1 and
              b.get("state") == "succeeded", (rows, ver, b.get("state")))
        B.stop()

    # --- a config with a typo is refused with its name
    bad = os.path.join(T, "bad.yaml")
    open(bad, "w").write("functions:\n  noop: {max_wrokers: 2}\n")
    r = subprocess.run([KILN, "serve", "--config", bad, "--listen", "127.0.0.1:0"], env=dict(os.environ, KILN_HOME=os.path.join(T, "c")),
                       capture_output=True, text=True, timeout=20)
    check("config typo: refused, naming the key", r.returncode == 2 and "max_wrokers" in r.stderr, (r.returncode, r.stderr))
finally:
    for sv in servers:
        if sv.p.poll() is None:
            sv.p.kill()
    # only this test's own (its config lies in T): other tests run beside it
    subprocess.run(["pkill", "-9", "-f", f"{KILN} .*worker.*{T}"], capture_output=True)
    shutil.rmtree(T, ignore_errors=True)

sys.exit(kilnt.done())
