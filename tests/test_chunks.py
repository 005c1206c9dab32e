#!/usr/bin/env python3
"""test_chunks.py — chunked jobs end to end through a real `kiln serve`:

- the parallel output equals the sequential one: losslessly encoded, the
  decoded frames (framemd5), the video timestamps and the audio packets are
  identical, for reframe (with trim and speed) and overlay at N = 2 and 4;
- at the default quality, every frame's PSNR against the uncompressed
  processed frame (the lossless run) is within 0.5 dB of the sequential run's;
- a source with no audio, one with a variable frame rate, and one with fewer
  frames than chunks asked for;
- a worker killed mid-chunk re-runs only that chunk; the server killed and
  restarted mid-job resumes without redoing finished chunks; cancel stops
  every chunk; a chunk that fails as bad input fails the job with its message;
- the planner: `kiln plan` prints its table and picks one chunk for a short
  input and more for a long one under `time`.

usage: test_chunks.py KILN"""
import json, os, re, shutil, signal, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kilnt
from kilnt import Server, check, until

KILN = kilnt.KILN = os.path.abspath(sys.argv[1])
T = tempfile.mkdtemp(prefix="kiln-chunks-")


def run(*a):
    return subprocess.run(list(a), capture_output=True, text=True)


def framemd5(path, stream):
    """Per-frame (video) or per-packet (audio, copied) hashes with timestamps."""
    args = ["ffmpeg", "-v", "error", "-nostdin", "-i", path, "-map", f"0:{stream}"]
    if stream == "a":
        args += ["-c", "copy"]
    out = run(*args, "-f", "framemd5", "-").stdout
    return [l for l in out.splitlines() if l and not l.startswith("#")]


def psnr_per_frame(path, ref):
    out = run("ffmpeg", "-v", "error", "-nostdin", "-i", path, "-i", ref, "-lavfi", "[0:v][1:v]psnr=stats_file=-",
              "-f", "null", "-").stdout
    return [float(m) if m != "inf" else 99.0 for m in re.findall(r"psnr_avg:(\S+)", out)]


CONFIG = """
lease_s: 2
retry_delay_s: 0.2
slots: {cpu: 8}
functions:
  reframe: {cpus: 1, max_workers: 4, idle_timeout_s: 20}
  overlay: {cpus: 1, max_workers: 4, idle_timeout_s: 20}
  noop: {cpus: 1, max_workers: 4, idle_timeout_s: 20, retries: 2}
  join: {idle_timeout_s: 20}
"""

try:
    A = Server(os.path.join(T, "a"), CONFIG)

    def spawn(fn, key, params, chunks, objective=None):
        plan = {"chunks": chunks}
        if objective:
            plan["objective"] = objective
        body = {"params": params, "plan": plan}
        if key:
            body["input"] = key
        s, b, _ = A.req("POST", f"/v1/functions/{fn}/spawn", body)
        if not check(f"spawn {fn} N={chunks}", s == 202, b):
            return None
        return b["job_id"]

    def result(jid, name):
        j = A.wait_end(jid, 120)
        if j["state"] != "succeeded":
            return j, None
        path = os.path.join(T, name)
        s, b, _ = A.req("GET", j["result"]["outputs"][0]["url"], token=False, raw=True)
        open(path, "wb").write(b)
        return j, path

    clip = os.path.join(T, "clip.mp4")
    run(KILN, "sample", "coords", clip, "--seconds", "4", "--size", "320x240", "--fps", "30", "--tone", "440", "--gop", "45")
    A.req("PUT", "/v1/objects/in/clip.mp4", open(clip, "rb").read())
    cases = [
        ("reframe", {"keyint": 0.5, "width": 120, "height": 200, "crop": [{"frame": 0, "x": 0, "w": 150, "h": 240}, {"frame": 119, "x": 170, "w": 150, "h": 240}]}),
        ("reframe", {"keyint": 0.5, "width": 120, "height": 200, "trim": {"start": 0.4, "end": 3.7},
                     "speed": [{"start": 1, "end": 2, "speed": 0.5}, {"start": 2.5, "end": 3.5, "speed": 2}]}),
        ("overlay", {"keyint": 0.5, "highlights": [{"frame": 5, "x": 80, "y": 60, "rx": 40, "ry": 50}, {"frame": 110, "x": 240, "y": 160, "rx": 30, "ry": 30}]}),
    ]
    for ci, (fn, params) in enumerate(cases):
        lossless = dict(params, lossless=True)
        seq, seq_path = result(spawn(fn, "in/clip.mp4", lossless, 1), f"seq{ci}.mp4")
        if not check(f"case {ci} {fn}: sequential run", seq_path, seq.get("error")):
            continue
        check(f"case {ci}: N=1 is one task", seq.get("plan", {}).get("chunks") == 1 and "tasks" not in seq, seq.get("plan"))
        sv, sa = framemd5(seq_path, "v"), framemd5(seq_path, "a")
        for n in (2, 4):
            par, par_path = result(spawn(fn, "in/clip.mp4", lossless, n), f"par{ci}-{n}.mp4")
            if not check(f"case {ci} {fn} N={n}: parallel run", par_path, (par.get("state"), par.get("error"))):
                continue
            j = A.job(par["job_id"])
            tasks = j.get("tasks", [])
            check(f"case {ci} N={n}: {n} chunks and a join, each run once",
                  [t["kind"] for t in tasks] == ["chunk"] * n + ["join"] and all(t["attempts"] == 1 and t["state"] == "succeeded" for t in tasks),
                  tasks)
            pv = framemd5(par_path, "v")
            check(f"case {ci} {fn} N={n}: identical frames and timestamps", pv == sv and len(pv) == par["result"]["stats"]["frames"],
                  (len(pv), len(sv), next((i for i, (a, b) in enumerate(zip(pv, sv)) if a != b), None)))
            check(f"case {ci} {fn} N={n}: identical audio", framemd5(par_path, "a") == sa and len(sa) > 0, (len(sa),))
            check(f"case {ci} N={n}: progress adds up", par["progress"]["frames_done"] == par["progress"]["frames_total"] == len(sv),
                  par["progress"])
            s, b, _ = A.req("GET", f"/v1/objects/jobs/{par['job_id']}/chunk-0.mp4")
            check(f"case {ci} N={n}: the chunks are gone after the join", s == 404, s)
        if ci == 1:                                # default quality: PSNR against the lossless frames
            dq, dq_path = result(spawn(fn, "in/clip.mp4", params, 1), "dq-seq.mp4")
            dp, dp_path = result(spawn(fn, "in/clip.mp4", params, 4), "dq-par.mp4")
            if check("default quality runs", dq_path and dp_path):
                ps, pp = psnr_per_frame(dq_path, seq_path), psnr_per_frame(dp_path, seq_path)
                worst = max(abs(a - b) for a, b in zip(ps, pp)) if ps and len(ps) == len(pp) else 99
                check("default quality: every frame's PSNR within 0.5 dB of the sequential run's", worst <= 0.5 and len(ps) == len(sv),
                      (worst, len(ps), len(pp)))
                print(f"  default quality, N=4 vs N=1: worst per-frame PSNR difference {worst:.3f} dB over {len(ps)} frames")

    # sources: no audio; variable frame rate; fewer frames than chunks
    quiet = os.path.join(T, "quiet.mp4")
    run(KILN, "sample", "bars", quiet, "--seconds", "2", "--size", "160x96")
    vfr = os.path.join(T, "vfr.mp4")
    run("ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", "testsrc=size=160x96:rate=30:duration=3",
        "-vf", "select='lt(n,30)+not(mod(n-30,3))',setpts='if(lt(N,30),N/30,1+(N-30)/10)/TB'",
        "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "ultrafast", "-y", vfr)
    tiny = os.path.join(T, "tiny.mp4")
    run(KILN, "sample", "bars", tiny, "--seconds", "0.1", "--size", "160x96", "--fps", "30")
    for name, path, fn, params, n in [("no audio", quiet, "overlay", {"highlights": [{"frame": 0, "x": 50, "y": 50, "rx": 20, "ry": 20}]}, 3),
                                      ("variable frame rate", vfr, "reframe", {"keyint": 0.5, "width": 64, "height": 96, "fps": 30}, 3),
                                      ("fewer frames than chunks", tiny, "overlay", {"keyint": 0.04, "highlights": [{"frame": 0, "x": 50, "y": 50, "rx": 20, "ry": 20}]}, 8)]:
        key = "in/" + os.path.basename(path)
        A.req("PUT", "/v1/objects/" + key, open(path, "rb").read())
        a, ap = result(spawn(fn, key, dict(params, lossless=True), 1), "s-" + os.path.basename(path))
        b, bp = result(spawn(fn, key, dict(params, lossless=True), n), "p-" + os.path.basename(path))
        ok = ap and bp and framemd5(ap, "v") == framemd5(bp, "v")
        check(f"{name}: chunked output equals the sequential one", ok, (a.get("error"), b.get("error"), b.get("plan")))
        if name == "fewer frames than chunks":
            check("fewer frames than chunks: one chunk per frame at most", b.get("plan", {}).get("chunks") == 3, b.get("plan"))

    # a worker killed mid-chunk: only that chunk runs again
    jid = spawn("noop", None, {"frames": 80, "ms_per_frame": 50}, 2)
    j = until(lambda: (lambda j: j if any(t["worker"] and t["frames_done"] > 3 for t in j.get("tasks", [])) else None)(A.job(jid)), 20)
    victim = next((t for t in (j or {}).get("tasks", []) if t["worker"]), None)
    if check("a chunk is running", victim, j):
        os.kill(kilnt.worker_pid(victim["worker"]), signal.SIGKILL)
        j = A.wait_end(jid, 60)
        att = {t["part"]: t["attempts"] for t in A.job(jid)["tasks"] if t["kind"] == "chunk"}
        check("killed mid-chunk: the job succeeds, only that chunk ran twice",
              j["state"] == "succeeded" and att.get(victim["part"]) == 2 and sum(att.values()) == 3, (j["state"], att))

    # the server (and its workers) killed mid-job, restarted: finished chunks are not redone
    A.stop()
    B = Server(os.path.join(T, "b"), CONFIG.replace("noop: {cpus: 1, max_workers: 4", "noop: {cpus: 1, max_workers: 2"))
    s, b, _ = B.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 80, "ms_per_frame": 25}, "plan": {"chunks": 4}})
    jid = b["job_id"]
    done2 = until(lambda: (lambda j: j if sum(t["state"] == "succeeded" for t in j.get("tasks", [])) >= 2 else None)(B.job(jid)), 30)
    before = {t["part"]: t for t in done2["tasks"]} if done2 else {}
    B.kill9()
    db_workers = B.sql("SELECT pid FROM workers WHERE state<3")
    for (pid,) in db_workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    B.start()
    j = B.wait_end(jid, 60)
    after = {t["part"]: t for t in B.job(jid).get("tasks", [])}
    kept = [p for p, t in before.items() if t["state"] == "succeeded" and t["kind"] == "chunk"]
    check("restart mid-job: the job succeeds", j["state"] == "succeeded", (j["state"], j.get("error")))
    check("restart mid-job: finished chunks were not redone", kept and all(after[p]["attempts"] == 1 for p in kept), (kept, after))

    # cancel stops every chunk
    s, b, _ = B.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 400, "ms_per_frame": 50}, "plan": {"chunks": 2}})
    jid = b["job_id"]
    until(lambda: any(t["frames_done"] > 0 for t in B.job(jid).get("tasks", [])), 20)
    B.req("DELETE", "/v1/jobs/" + jid)
    stopped = until(lambda: all(t["state"] == "cancelled" for t in B.job(jid)["tasks"]) and B.fn_stats("noop")["workers"]["busy"] == 0, 10)
    check("cancel: every chunk and the join are cancelled, no worker busy", stopped, B.job(jid).get("tasks"))
    j = until(lambda: (lambda j: j if j["cost"]["usd"] > 0 else None)(B.job(jid)), 10) or B.job(jid)
    check("cancel: the job's cost counts the chunks that ran", j["cost"]["usd"] > 0, j["cost"])
    s, b, _ = B.req("DELETE", "/v1/jobs/" + j["tasks"][0]["id"])
    check("a chunk cannot be cancelled by itself: 409 naming its job", s == 409 and jid in b["error"]["message"], (s, b))
    s, b, _ = B.req("GET", "/v1/usage?since=2000-01-01")
    split_jobs = B.req("GET", "/v1/jobs?fn=noop&limit=1000")[1]["jobs"]
    check("usage counts jobs, not their tasks", b["total"]["jobs"] == sum(1 for x in split_jobs if x["state"] in ("succeeded", "failed", "cancelled")),
          (b["total"], len(split_jobs)))

    # a chunk that fails as bad input fails the job with its message
    s, b, _ = B.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 10, "fail": "bad_input"}, "plan": {"chunks": 2}})
    j = B.wait_end(b["job_id"], 30)
    check("a chunk's bad input fails the job, naming the chunk", j["state"] == "failed" and j["error"]["class"] == "bad_input"
          and re.match(r"chunk \d: noop was asked to fail as bad input", j["error"]["message"]), j.get("error"))
    B.stop()

    # a chunked job that ends failed or cancelled leaves none of its chunks in the store
    # (one worker: chunk 0 is done and stored before chunk 1 runs)
    C = Server(os.path.join(T, "cc"), "lease_s: 2\nslots: {cpu: 8}\nfunctions:\n  noop: {cpus: 1, max_workers: 1, idle_timeout_s: 20, retries: 0}\n")
    def chunk_objects(jid):
        d = os.path.join(C.home, "store", "objects", "jobs", jid)
        return sorted(f for f in os.listdir(d) if f.startswith("chunk-")) if os.path.isdir(d) else []
    s, b, _ = C.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 40, "ms_per_frame": 10, "fail": "bad_input", "fail_at": 30},
                                                         "plan": {"chunks": 2}})
    j = C.wait_end(b["job_id"], 60)
    tasks = C.job(b["job_id"]).get("tasks", [])
    check("failed chunked job: chunk 0 succeeded, chunk 1 failed as bad input",
          j["state"] == "failed" and sorted((t["part"], t["state"]) for t in tasks if t["kind"] == "chunk") == [(0, "succeeded"), (1, "failed")],
          (j["state"], tasks))
    check("failed chunked job: no chunk left in the store", until(lambda: not chunk_objects(b["job_id"]), 10), chunk_objects(b["job_id"]))
    s, b, _ = C.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 400, "ms_per_frame": 10}, "plan": {"chunks": 2}})
    jid = b["job_id"]
    first = until(lambda: any(t["kind"] == "chunk" and t["state"] == "succeeded" for t in C.job(jid).get("tasks", [])), 30)
    had = chunk_objects(jid)
    C.req("DELETE", "/v1/jobs/" + jid)
    ended = until(lambda: all(t["state"] in ("succeeded", "cancelled", "failed") for t in C.job(jid)["tasks"])
                  and C.fn_stats("noop")["workers"]["busy"] == 0, 20)
    check("cancelled chunked job: its finished chunk was stored, then removed with the rest",
          first and had and ended and until(lambda: not chunk_objects(jid), 10), (had, chunk_objects(jid)))
    # a chunk's worker killed with no retries left: the autoscaler fails the job, and its chunks go
    s, b, _ = C.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 400, "ms_per_frame": 10}, "plan": {"chunks": 2}})
    jid = b["job_id"]
    second = until(lambda: (lambda t: t if t and t[0]["state"] == "succeeded" and t[1]["state"] == "running" and t[1]["frames_done"] > 0 else None)(
        sorted([t for t in C.job(jid).get("tasks", []) if t["kind"] == "chunk"], key=lambda t: t["part"])), 30)
    had = chunk_objects(jid)
    for (pid,) in C.sql("SELECT pid FROM workers WHERE state<3"):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    j = C.wait_end(jid, 30)
    check("a chunk's worker killed, no retries: the job fails as worker_lost, its stored chunk removed",
          second and had and j["state"] == "failed" and j["error"]["class"] == "worker_lost" and until(lambda: not chunk_objects(jid), 10),
          (had, j.get("state"), j.get("error"), chunk_objects(jid)))
    C.stop()

    # kiln plan: the table, N=1 for a short input and more for a long one under `time`
    env = dict(os.environ, KILN_HOME=os.path.join(T, "c"))
    os.makedirs(env["KILN_HOME"], exist_ok=True)
    open(os.path.join(env["KILN_HOME"], "config.yaml"), "w").write("slots: {cpu: 8}\nfunctions:\n  noop: {max_workers: 8}\n")
    def plan(*a):
        return subprocess.run([KILN, "plan", "noop", *a], env=env, capture_output=True, text=True)
    short = plan("--param", "frames=5", "--param", "ms_per_frame=20", "--objective", "time", "--json")
    long_ = plan("--param", "frames=2000", "--param", "ms_per_frame=20", "--objective", "time", "--json")
    try:
        ps, pl = json.loads(short.stdout), json.loads(long_.stdout)
    except ValueError:
        ps, pl = {}, {}
    check("kiln plan: one chunk for 5 frames", ps.get("chunks") == 1, short.stdout + short.stderr)
    check("kiln plan: several chunks for 2000 frames at 20 ms", pl.get("chunks", 0) >= 4, long_.stdout + long_.stderr)
    table = plan("--param", "frames=2000", "--param", "ms_per_frame=20")
    check("kiln plan: a table with a row per chunk count and the choice", re.search(r"chunks\s+wall \(s\)\s+speedup", table.stdout)
          and len(re.findall(r"^\s+\d+\s+\d+\.\d\d\s+\d+\.\d\dx", table.stdout, re.M)) == 8 and "<- chosen" in table.stdout
          and "chosen:" in table.stdout, table.stdout + table.stderr)
    bad = subprocess.run([KILN, "plan", "noop", "--objective", "fastest"], env=env, capture_output=True, text=True)
    check("kiln plan: a bad objective is named", bad.returncode == 2 and "'fastest'" in bad.stderr, bad.stderr)
finally:
    for sv in kilnt.servers:
        if sv.p.poll() is None:
            sv.p.kill()
    # only this test's own (its config lies in T): other tests run beside it
    subprocess.run(["pkill", "-9", "-f", f"{KILN} .*(worker|zygote).*{T}"], capture_output=True)
    shutil.rmtree(T, ignore_errors=True)

sys.exit(kilnt.done())
