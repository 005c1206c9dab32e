#!/usr/bin/env python3
"""bench/chunks.py — chunked jobs through a real `kiln serve`:

  calibration  noop (a sleep per frame: a GPU worker's time without this
               machine's CPU), 2,000 frames at 20 ms each, at N = 1, 2, 4, 8,
               16, 32 chunks on a warm pool of 32 workers: wall time, speedup,
               efficiency, the overhead of splitting (wall time beyond 1/N of
               the unsplit run), and the planner's prediction against the
               measured time (goals: >= 90% efficiency at N = 8, <= 100 ms
               overhead per chunk, prediction within 15%)
  reframe      the real function at N = 1 and 2 on a real clip (opencv-doc's
               vtest.avi), 1 core per worker

The model is trained first by a few jobs (as kiln serve trains it from every
finished task). usage: bench/chunks.py [KILN]"""
import json, os, re, shutil, signal, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import kilnt
from kilnt import Server

KILN = kilnt.KILN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/kiln")
T = tempfile.mkdtemp(prefix="kiln-bench-chunks-")
SAMPLES = os.environ.get("KILN_SAMPLES", os.path.expanduser("~/.cache/kiln/samples"))


def job(sv, fn, body):
    s, b, _ = sv.req("POST", f"/v1/functions/{fn}/spawn", body)
    assert s == 202, b
    j = sv.wait_end(b["job_id"], 600)
    assert j["state"] == "succeeded", j
    return j


try:
    A = Server(os.path.join(T, "a"), """slots: {cpu: 64}
functions:
  noop: {cpus: 1, max_workers: 32, min_workers: 32, idle_timeout_s: 600}
  join: {min_workers: 1, idle_timeout_s: 600}
""")
    kilnt.until(lambda: A.fn_stats("noop")["workers"]["warm"] >= 32, 60)
    body = lambda n, frames=2000: {"params": {"frames": frames, "ms_per_frame": 20, "output": False}, "plan": {"chunks": n}}
    for n, f in ((1, 100), (1, 400), (4, 400), (8, 800), (16, 800), (32, 2000)):   # training
        job(A, "noop", body(n, f))
    model = A.req("GET", "/v1/functions/noop")[1]["model"]
    print("model after training: frame %.2f ms, task %.1f ms, join %.1f ms, orchestration %.0f ms, cold %.1f ms" %
          (model["frame_ms"], model["task_ms"], model["join_ms"], model["orchestration_ms"], model["cold_ms"]))
    print("\n| chunks | wall (s) | speedup | efficiency | overhead (ms) | predicted (s) | error |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for n in (1, 2, 4, 8, 16, 32):
        j = job(A, "noop", body(n))
        act, pred = j["plan"]["actual_ms"], j["plan"]["predicted_ms"]
        base = base or act
        sp = base / act
        # overhead of splitting: the wall time beyond 1/N of the unsplit run (split, dispatch, the join, stragglers)
        print("| %d | %.2f | %.2fx | %.0f%% | %.0f | %.2f | %+.1f%% |" % (n, act / 1000, sp, 100 * sp / n, act - base / n,
                                                                       pred / 1000, 100 * (pred - act) / act))
    A.stop()

    vt = os.path.join(SAMPLES, "vtest.avi")
    if os.path.exists(vt):
        B = Server(os.path.join(T, "b"), "slots: {cpu: 2}\nfunctions:\n  reframe: {cpus: 1, max_workers: 2, min_workers: 2}\n")
        kilnt.until(lambda: B.fn_stats("reframe")["workers"]["warm"] >= 2, 60)
        B.req("PUT", "/v1/objects/in/vtest.avi", open(vt, "rb").read())
        print("\n| reframe, vtest.avi -> 810x1440 | wall (s) | speedup | predicted (s) |\n|---|---|---|---|")
        job(B, "reframe", {"input": "in/vtest.avi", "plan": {"chunks": 1}})    # warms the model
        first = None
        for n in (1, 2):
            j = job(B, "reframe", {"input": "in/vtest.avi", "plan": {"chunks": n}})
            act = j["plan"]["actual_ms"]
            first = first or act
            print("| N = %d | %.2f | %.2fx | %.2f |" % (n, act / 1000, first / act, j["plan"]["predicted_ms"] / 1000))
        B.stop()
    else:
        print("(vtest.avi not found: run scripts/samples for the reframe rows)")
finally:
    for sv in kilnt.servers:
        if sv.p.poll() is None:
            sv.p.kill()
    shutil.rmtree(T, ignore_errors=True)
