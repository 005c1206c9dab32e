"""test_postgres.py — kiln on PostgreSQL, against a real server the test
starts (tests/pgserver.py: Debian's initdb + pg_ctl, a free loopback port).

  1. the queue conformance suite (test_queue, every case) on PostgreSQL;
  2. the engine and chunk suites (test_engine.py, test_chunks.py) with
     `queue: postgres://...` — each server a database of its own;
  3. two `kiln serve` replicas on one database and one store: a job spawned
     on A is followed to its end over SSE on B, progress included; a chunked
     job is planned once and its webhook delivered once, with both
     replicas' planners and senders running;
  4. PostgreSQL restarted mid-job: no job is lost, the running one and the
     queued ones all succeed; while it is down the API answers 503 naming
     the database, never hangs.

    python3 tests/test_postgres.py KILN TEST_QUEUE"""
import http.client
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kilnt  # noqa: E402
import pgserver  # noqa: E402
from kilnt import check, until  # noqa: E402

KILN = kilnt.KILN = os.path.abspath(sys.argv[1])
TEST_QUEUE = os.path.abspath(sys.argv[2])
HERE = os.path.dirname(os.path.abspath(__file__))
T = tempfile.mkdtemp(prefix="kiln-pgtest-")


def job_or_none(sv, jid):
    s, b, _ = sv.req("GET", "/v1/jobs/" + jid)
    return b if s == 200 and isinstance(b, dict) else None


def wait_state(sv, jid, states, timeout=60):
    return until(lambda: (lambda j: j if j and j["state"] in states else None)(job_or_none(sv, jid)), timeout)


def sse_follow(sv, jid, out):
    """Reads the job's event stream from sv until its end event: out gets (event, data) pairs."""
    u = urllib.parse.urlparse(sv.url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    c.request("GET", f"/v1/jobs/{jid}/events", headers={"Authorization": "Bearer " + sv.tok})
    r = c.getresponse()
    ev = "message"
    for raw in r:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            ev = line[7:]
        elif line.startswith("data: "):
            out.append((ev, time.time(), json.loads(line[6:])))
            if ev == "end":
                break
            ev = "message"
    c.close()


class Hooks(http.server.BaseHTTPRequestHandler):
    got = {}

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(n))
        jid = body.get("job_id") or body.get("id")
        Hooks.got[jid] = Hooks.got.get(jid, 0) + 1
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a):
        pass


try:
    with pgserver.PgServer() as pg:
        base = pg.url.rsplit("/", 1)[0]

        # ---- 1. the conformance suite
        r = subprocess.run([TEST_QUEUE], env=dict(os.environ, KILN_TEST_QUEUE=pg.url), capture_output=True, text=True,
                           timeout=300)
        check("test_queue on PostgreSQL: every case passes", r.returncode == 0 and " 0 failed" in r.stdout,
              r.stdout[-300:] + r.stderr[-1500:])

        # ---- 2. the engine and chunk suites on PostgreSQL
        for suite in ("test_engine.py", "test_chunks.py"):
            r = subprocess.run([sys.executable, os.path.join(HERE, suite), KILN], env=dict(os.environ, KILN_TEST_PG=base),
                               capture_output=True, text=True, timeout=900)
            check(f"{suite} on PostgreSQL", r.returncode == 0, r.stdout[-400:] + r.stderr[-2500:])

        # ---- 3. two replicas on one database and one store
        subprocess.run(["psql", base + "/kiln", "-qc", "CREATE DATABASE replicas"], check=True, capture_output=True)
        qurl = base + "/replicas"
        hook_srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
        threading.Thread(target=hook_srv.serve_forever, daemon=True).start()
        hook = f"http://127.0.0.1:{hook_srv.server_address[1]}/hook"
        store = os.path.join(T, "shared-store")
        cfg = f"store: {store}\nslots: {{cpu: 4}}\nfunctions:\n  noop: {{max_workers: 2}}\nwebhook: {{attempts: 3, delay_s: 0.2}}\n"
        A = kilnt.Server(os.path.join(T, "A"), cfg, env={"KILN_QUEUE": qurl})
        hb = os.path.join(T, "B")
        os.makedirs(hb, exist_ok=True)
        for f in ("tok", "tokens.json", "secret", "webhook.key"):   # one deployment: the same token and keys
            if os.path.exists(os.path.join(A.home, f)):
                shutil.copy(os.path.join(A.home, f), os.path.join(hb, f))
        B = kilnt.Server(hb, cfg, env={"KILN_QUEUE": qurl})

        s, b, _ = A.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 120, "ms_per_frame": 15}})
        check("spawn on A", s == 202, b)
        jid = b["job_id"]
        events = []
        follower = threading.Thread(target=sse_follow, args=(B, jid, events), daemon=True)
        follower.start()
        follower.join(60)
        ends = [d for e, _, d in events if e == "end"]
        prog = [d for e, _, d in events if e == "progress" or (isinstance(d, dict) and "frames_done" in d)]
        check("B streams A's job to its end", ends and ends[0]["state"] == "succeeded", events[-3:])
        check("...with its progress on the way", len(prog) >= 2, len(prog))
        j = job_or_none(B, jid)
        check("B reads the job A took", j and j["state"] == "succeeded", j)

        s, b, _ = A.req("POST", "/v1/functions/noop/spawn",
                        {"params": {"frames": 200, "ms_per_frame": 5}, "plan": {"chunks": 3}, "webhook": hook})
        check("a chunked job with a webhook", s == 202, b)
        cj = b["job_id"]
        j = wait_state(B, cj, ("succeeded", "failed", "cancelled"), 90)
        check("the chunked job succeeds", j and j["state"] == "succeeded", j)
        until(lambda: Hooks.got.get(cj, 0) >= 1, 20)
        time.sleep(1.5)                             # both senders have ticked several times since: a second POST would be here
        check("its webhook is delivered once", Hooks.got.get(cj) == 1, Hooks.got)
        plans = sum(open(os.path.join(sv.home, "serve.log")).read().count(f"planner: job {cj}:") for sv in (A, B))
        check("it is planned once over both replicas' planners", plans == 1, plans)
        tasks = [t for t in (j or {}).get("tasks", []) if t["kind"] == "chunk"]
        check("...into the 3 chunks asked for", len(tasks) == 3, tasks)
        B.stop()

        # ---- 4. PostgreSQL restarted mid-job
        s, b, _ = A.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 300, "ms_per_frame": 10}})
        long_id = b["job_id"]
        queued = [A.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 20}})[1]["job_id"] for _ in range(4)]
        check("the long job runs", wait_state(A, long_id, ("running",), 30) is not None)
        pg.stop()
        t0 = time.time()
        s, b, _ = A.req("GET", "/v1/jobs/" + long_id)
        check("while the database is down: 503 naming it, at once", s == 503 and "queue" in json.dumps(b)
              and time.time() - t0 < 10, (s, b))
        time.sleep(1.0)
        pg.start()
        for jid2 in [long_id] + queued:
            j = wait_state(A, jid2, ("succeeded", "failed", "cancelled"), 120)
            check(f"job {jid2[:8]} survives the restart", j and j["state"] == "succeeded", j and (j["state"], j.get("error")))
        A.stop()
        check("the server stops cleanly after", A.p.returncode == 0, A.p.returncode)
except pgserver.PgError as e:
    check("a PostgreSQL server to test against", False, e)
finally:
    for sv in kilnt.servers:
        sv.stop()
    shutil.rmtree(T, ignore_errors=True)
sys.exit(kilnt.done())
