#!/usr/bin/env python3
"""bench/agents.py — a chunked reframe over two `kiln agent` hosts vs one, in
one run: PostgreSQL (tests/pgserver.py, loopback), `kiln serve
--no-workers` in front, and agents that share the store folder and claim
from the queue (the agents are processes on this machine; tests/test_hosts.py
runs the same over network namespaces and checks correctness).

Configurations, each given the same job (a 1280x720 clip, 4 chunks and a
join, reframed to 9:16), warm workers, run --runs times (median and worst):

  one agent, 1 slot       one task at a time: the chunks queue up
  two agents, 1 slot each the chunks spread over both hosts
  one agent, 2 slots      the baseline: the same slots on one host
  unsplit, one agent      the whole job on one worker (no chunking)

The figure to read is two agents vs one (1 slot each): the speed-up that
adding a host gives, against the ceiling of the same slots on one host.
usage: bench/agents.py [KILN] [--runs N] [--seconds S]"""
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import kilnt  # noqa: E402
import pgserver  # noqa: E402

args = [a for a in sys.argv[1:] if not a.startswith("--")]
KILN = kilnt.KILN = os.path.abspath(args[0] if args else "build/kiln")


def opt(name, default):
    for i, a in enumerate(sys.argv):
        if a == name and i + 1 < len(sys.argv):
            return type(default)(sys.argv[i + 1])
    return default


RUNS, SECONDS = opt("--runs", 3), opt("--seconds", 30)
T = tempfile.mkdtemp(prefix="kiln-bench-agents-")
STORE = os.path.join(T, "store")
FN = "functions:\n  reframe: {max_workers: 2, min_workers: %d, idle_timeout_s: 600, cpus: 1}\n"
PARAMS = {"width": 406, "height": 720, "preset": "medium", "crf": 20}


class Agent:
    def __init__(self, name, queue, slots):
        self.home = os.path.join(T, name)
        os.makedirs(self.home, exist_ok=True)
        open(os.path.join(self.home, "config.yaml"), "w").write(f"store: {STORE}\n" + FN % slots)
        self.p = subprocess.Popen([KILN, "agent", "--host", name, "--queue", queue, "--slots", f"cpu={slots}"],
                                  env=dict(os.environ, KILN_HOME=self.home),
                                  stderr=open(os.path.join(self.home, "agent.log"), "w"))

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()


def warm_workers(S, n):
    """Waits until n reframe workers are warm over all hosts (min_workers per host)."""
    return kilnt.until(lambda: S.fn_stats("reframe")["workers"]["warm"] >= n or None, 60)


def job(S, chunks):
    t0 = time.perf_counter()
    s, b, _ = S.req("POST", "/v1/functions/reframe/spawn", {"input": "in/clip.mp4", "params": PARAMS,
                                                             "plan": {"chunks": chunks}})
    assert s == 202, b
    j = S.wait_end(b["job_id"], 600)
    wall = time.perf_counter() - t0
    assert j["state"] == "succeeded", j.get("error")
    hosts = sorted({t["worker"].split("@")[-1] for t in j.get("tasks", []) if t["kind"] == "chunk" and t.get("worker")})
    return wall, hosts


def main():
    pg = pgserver.PgServer()
    pg.__enter__()
    clip = os.path.join(T, "clip.mp4")
    subprocess.run([KILN, "sample", "bars", clip, "--seconds", str(SECONDS), "--size", "1280x720", "--fps", "30",
                    "--tone", "440"], check=True, capture_output=True)
    configs = [("one agent, 1 slot", [1], 4), ("two agents, 1 slot each", [1, 1], 4),
               ("one agent, 2 slots", [2], 4), ("unsplit, one agent (1 slot)", [1], 1)]
    rows = []
    for k, (label, slots, chunks) in enumerate(configs):
        db = f"c{k}"
        subprocess.run(["psql", pg.url, "-qc", f"CREATE DATABASE {db}"], check=True, capture_output=True)
        q = pg.url.rsplit("/", 1)[0] + "/" + db
        S = kilnt.Server(os.path.join(T, f"api{k}"), f"store: {STORE}\n" + FN % 0, env={"KILN_QUEUE": q},
                         args=["--no-workers"])
        if k == 0:
            s, b, _ = S.req("PUT", "/v1/objects/in/clip.mp4", open(clip, "rb").read())
            assert s == 201, b
        agents = [Agent(f"h{k}{i}", q, n) for i, n in enumerate(slots)]
        warm_workers(S, sum(slots))
        job(S, chunks)                                # warm-up: the cost model and page cache, not timed
        walls, hosts = [], set()
        for _ in range(RUNS):
            w, h = job(S, chunks)
            walls.append(w)
            hosts.update(h)
        rows.append((label, statistics.median(walls), max(walls), len(hosts)))
        print(f"{label}: median {statistics.median(walls):.2f} s, worst {max(walls):.2f} s, chunks ran on {len(hosts)} host(s)",
              flush=True)
        for a in agents:
            a.stop()
        S.stop()
    pg.__exit__(None, None, None)
    cpu = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read())
    print(f"\n{os.cpu_count()} CPUs ({cpu.group(1).strip() if cpu else '?'}), {time.strftime('%Y-%m-%d')}, "
          f"1280x720 {SECONDS} s clip, 4 chunks, {RUNS} runs each\n")
    base = rows[0][1]
    print("| configuration | wall, median (worst) | vs one agent, 1 slot | hosts the chunks ran on |")
    print("|---|---|---|---|")
    for label, med, worst, nh in rows:
        print(f"| {label} | {med:.2f} s ({worst:.2f} s) | {base / med:.2f}x | {nh or '— (no chunks)'} |")


try:
    main()
finally:
    for sv in kilnt.servers:
        if sv.p.poll() is None:
            sv.p.kill()
    shutil.rmtree(T, ignore_errors=True)
