#!/usr/bin/env python3
"""test_connections.py — issue 12's connection defects against a real
`kiln serve`: half-open connections from one address must not lock anyone
else out (the per-address limit refuses the excess, the idle timeout closes
the rest); `call` and event streams wait without holding an event-loop
thread (more of them than threads, while /health still answers); a server
stopping with parked connections exits cleanly.
usage: test_connections.py KILN"""
import http.client, json, os, signal, socket, sys, tempfile, threading, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kilnt
from kilnt import Server, check, until

KILN = kilnt.KILN = os.path.abspath(sys.argv[1])
T = tempfile.mkdtemp(prefix="kiln-conn-")

PER_IP = 40
CONFIG = f"""
http: {{threads: 2, max_connections_per_ip: {PER_IP}, idle_timeout_s: 2}}
slots: {{cpu: 8}}
functions:
  noop: {{idle_timeout_s: 5, max_workers: 6, max_chunks: 1}}
"""


def hostport(srv):
    h, p = srv.url[len("http://"):].split(":")
    return h, int(p)


def half_open(srv, src, n):
    """n sockets from source address src, each having sent half a request line."""
    socks = []
    for _ in range(n):
        so = socket.socket()
        so.bind((src, 0))
        so.settimeout(5)
        so.connect(hostport(srv))
        try:
            so.sendall(b"GET /heal")
        except OSError:
            pass
        so.setblocking(False)
        socks.append(so)
    return socks


def closed_by_server(so):
    try:
        d = so.recv(4096)
        return d == b"" or d.startswith(b"HTTP/1.1 4") or d.startswith(b"HTTP/1.1 5")
    except BlockingIOError:
        return False
    except OSError:
        return True                                   # reset


def health(srv, timeout=5):
    try:
        with urllib.request.urlopen(srv.url + "/health", timeout=timeout) as f:
            return f.status == 200 and json.loads(f.read())["status"] == "ok"
    except Exception:
        return False


def main():
    A = Server(os.path.join(T, "a"), CONFIG)
    auth = {"Authorization": "Bearer " + A.tok}

    # -- 200 half-open connections from 127.0.0.2: another client is not locked out
    socks = half_open(A, "127.0.0.2", 200)
    ok = sum(health(A) for _ in range(20))
    check("20 of 20 /health from 127.0.0.1 answered while 127.0.0.2 holds 200 half-open sockets", ok == 20, ok)
    refused = until(lambda: sum(closed_by_server(s) for s in socks) >= 200 - PER_IP or None, 10)
    check(f"the per-address limit refused all but {PER_IP}", refused, sum(closed_by_server(s) for s in socks))
    allgone = until(lambda: all(closed_by_server(s) for s in socks), 20)
    check("the idle timeout (2 s) closed the half-open ones it had taken", allgone,
          sum(closed_by_server(s) for s in socks))
    for s in socks:
        s.close()
    # the same address may connect again once its connections are gone
    so = socket.socket(); so.bind(("127.0.0.2", 0)); so.settimeout(10); so.connect(hostport(A))
    so.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    check("127.0.0.2 is served again afterwards", so.recv(100).startswith(b"HTTP/1.1 200"))
    so.close()

    # -- six calls waiting on their jobs, on 2 event-loop threads: /health still answers, all six end
    results = [None] * 6

    def call(i):
        r = urllib.request.Request(A.url + "/v1/functions/noop/call?wait=60", method="POST", headers=dict(auth, **{"Content-Type": "application/json"}),
                                   data=json.dumps({"params": {"frames": 20, "ms_per_frame": 100}}).encode())
        try:
            with urllib.request.urlopen(r, timeout=90) as f:
                results[i] = (f.status, json.loads(f.read()))
        except Exception as e:
            results[i] = (None, str(e))

    th = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in th:
        t.start()
    inflight = until(lambda: len([j for j in A.req("GET", "/v1/jobs?fn=noop")[1]["jobs"] if j["state"] == "running"]) >= 2, 30)
    h_ok = health(A)
    waiting = sum(t.is_alive() for t in th)
    check("/health answers while six calls wait on two threads", h_ok and waiting >= 3, (h_ok, waiting, inflight))
    for t in th:
        t.join(120)
    check("all six calls answered 200 with their succeeded job",
          all(r and r[0] == 200 and r[1].get("state") == "succeeded" for r in results), results)

    # -- event streams: eight at once on two threads, each to its end event
    ids = [A.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 10, "ms_per_frame": 100}})[1]["job_id"] for _ in range(8)]
    ends = [None] * 8

    def stream(i):
        r = urllib.request.Request(A.url + f"/v1/jobs/{ids[i]}/events", headers=auth)
        try:
            with urllib.request.urlopen(r, timeout=90) as f:
                kind = None
                for line in f:
                    line = line.decode().rstrip("\n")
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "end":
                        ends[i] = json.loads(line[6:]).get("state")
                        return
        except Exception as e:
            ends[i] = str(e)

    th = [threading.Thread(target=stream, args=(i,)) for i in range(8)]
    for t in th:
        t.start()
    check("/health answers while eight event streams are open on two threads", health(A))
    for t in th:
        t.join(120)
    check("all eight streams ended with their job's end event, succeeded", ends == ["succeeded"] * 8, ends)

    # -- submissions on ONE event-loop thread: each spawn's connection is parked while the group commit runs
    B = Server(os.path.join(T, "b"), "http: {threads: 1}\nfunctions:\n  noop: {max_workers: 1, max_chunks: 1}\n")
    before = B.sql("SELECT COUNT(*) FROM jobs")[0][0]
    s_, b_, _ = B.req("POST", "/v1/functions/noop/call?wait=oops", {"params": {"frames": 0, "output": False}})
    check("a call with a bad 'wait' is refused (400 naming it) and queues nothing",
          s_ == 400 and "wait" in json.dumps(b_) and B.sql("SELECT COUNT(*) FROM jobs")[0][0] == before, (s_, b_))
    got202, other = [], []

    def burst(n, stop_evt=None):
        h, p = hostport(B)
        c = None
        for _ in range(n):
            if stop_evt is not None and stop_evt.is_set() and not c:
                break
            try:
                c = c or http.client.HTTPConnection(h, p, timeout=30)
                c.request("POST", "/v1/functions/noop/spawn", body=json.dumps({"params": {"frames": 0, "output": False}}),
                          headers=dict(Authorization="Bearer " + B.tok))
                r = c.getresponse()
                body = json.loads(r.read() or b"null")
                (got202 if r.status == 202 else other).append(body["job_id"] if r.status == 202 else r.status)
            except Exception as e:                   # the server went away mid-request: no 202, nothing promised
                other.append(type(e).__name__)
                c = None
                if stop_evt is not None:
                    break
    th = [threading.Thread(target=burst, args=(8,)) for _ in range(16)]
    [t.start() for t in th]
    [t.join(60) for t in th]
    ids = set(got202)
    inq = {r[0] for r in B.sql("SELECT id FROM jobs")}
    check("128 spawns from 16 connections on one event-loop thread: all 202, distinct, each in the queue",
          len(got202) == 128 and len(ids) == 128 and ids <= inq and not other, (len(got202), len(ids), len(ids - inq), other[:5]))
    # SIGTERM in the middle of a burst: every job answered 202 is in the queue after the server exits
    got202.clear(); other.clear()
    stop_evt = threading.Event()
    th = [threading.Thread(target=burst, args=(400, stop_evt)) for _ in range(16)]
    [t.start() for t in th]
    until(lambda: len(got202) >= 200 or None, 30)
    B.p.send_signal(signal.SIGTERM)
    stop_evt.set()
    try:
        rc = B.p.wait(timeout=30)
    except Exception:
        rc = None
    [t.join(60) for t in th]
    inq = {r[0] for r in B.sql("SELECT id FROM jobs")}
    check("SIGTERM during a burst of spawns: the server exits 0", rc == 0, rc)
    check("...and every job it answered 202 for is in the queue (nothing accepted lost)",
          len(got202) >= 200 and set(got202) <= inq, (len(got202), len(set(got202) - inq)))

    # -- a server stopped with a parked call and a parked stream exits by itself
    jid = A.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 400, "ms_per_frame": 50}})[1]["job_id"]
    got = {}

    def parked_call():
        r = urllib.request.Request(A.url + "/v1/functions/noop/call?wait=600", method="POST", headers=dict(auth, **{"Content-Type": "application/json"}),
                                   data=json.dumps({"params": {"frames": 400, "ms_per_frame": 50}}).encode())
        try:
            with urllib.request.urlopen(r, timeout=60) as f:
                got["call"] = f.status
        except urllib.error.HTTPError as e:
            got["call"] = e.code
        except Exception as e:
            got["call"] = str(e)

    def parked_stream():
        r = urllib.request.Request(A.url + f"/v1/jobs/{jid}/events", headers=auth)
        try:
            with urllib.request.urlopen(r, timeout=60) as f:
                f.read()
                got["stream"] = "ended"
        except Exception as e:
            got["stream"] = str(e)

    t1, t2 = threading.Thread(target=parked_call), threading.Thread(target=parked_stream)
    t1.start(); t2.start()
    until(lambda: A.job(jid)["state"] == "running", 30)
    A.p.send_signal(signal.SIGTERM)
    try:
        rc = A.p.wait(timeout=30)
    except Exception:
        rc = None
    t1.join(60); t2.join(60)
    check("SIGTERM with a parked call and stream: the server exits 0", rc == 0, rc)
    check("the parked call was answered (303 to its job) or closed, not left hanging", not t1.is_alive() and "call" in got, got)
    check("the parked stream was closed", not t2.is_alive() and "stream" in got, got)


try:
    main()
finally:
    for srv in kilnt.servers:
        srv.stop()
sys.exit(kilnt.done())
