#!/usr/bin/env python3
"""test_chaos.py — the short version of bench/chaos.py (the same code, run()):
6 real jobs (reframe and overlay, lossless, 4 of them split in 2 or 3
chunks) run undisturbed, then again while 10 SIGKILLs land on random
workers (9) and on the server (1, restarted on the same KILN_HOME); the
batch is submitted again until every kill is sent. Checks that every job
succeeds, each task is recorded succeeded exactly once, the store holds one
object per job and nothing in tmp/ (a killed worker's scratch folder is
swept), no output is put more often than its task ran nor replaced after
its job succeeded, and every output's decoded frames and audio packets
equal the undisturbed run's (framemd5).

The kills come at random moments (seed 12); each waits for a live worker to
exist (until), so the outcome does not depend on timing.

Then the two moments of a join's end that a random kill rarely hits, made
certain with a test hook (KILN_TEST_JOIN_DIE: the first run of every join
SIGKILLs itself there): right after its success is recorded, and after it
removed the chunks but before it recorded its success. The job succeeds
either way, no chunk is left in the store, and the output equals the
unchunked run's. (Before the fix, a join killed after recording its success
left its chunks in the store for good.)
usage: test_chaos.py KILN"""
import os, shutil, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
import kilnt                                      # noqa: E402
from kilnt import check                           # noqa: E402
import chaos                                      # noqa: E402  (bench/chaos.py)

KILN = os.path.abspath(sys.argv[1])
T = tempfile.mkdtemp(prefix="kiln-chaos-")
try:
    r, problems = chaos.run(KILN, jobs=6, kills=10, server_kills=1, seed=12, gap=(0.1, 0.5), size="192x144", seconds=2,
                            workdir=T, timeout=60, say=lambda m: None)
    n = r.get("jobs_disturbed", 0)
    check("the undisturbed batch: every job succeeded", "wall_undisturbed" in r and not problems.of("baseline"), problems.of("baseline"))
    check("10 kills sent: 9 to workers, 1 to the server", r.get("kills_workers") == 9 and r.get("kills_server") == 1,
          (r.get("kills_workers"), r.get("kills_server"), problems.of("driver")))
    check("the driver ran to its end", not problems.of("driver"), problems.of("driver"))
    check("kills of running tasks cost retries, one at most per worker killed",
          0 < r.get("retries", 0) - r.get("retries_baseline", 0) <= r.get("kills_workers", 0) and r.get("kills_busy", 0) > 0,
          (r.get("retries"), r.get("retries_baseline"), r.get("kills_workers"), r.get("kills_busy")))
    check("under kills: every job succeeded", n >= 6 and r.get("ended", {}).get("succeeded") == n and not problems.of("succeeded"),
          (n, r.get("ended"), problems.of("succeeded")))
    check("every task recorded succeeded exactly once", not problems.of("once"), problems.of("once"))
    check("the store: one object per job (its output), no chunk left", not problems.of("objects"), problems.of("objects"))
    check("no output put more often than its task ran, none replaced after its job succeeded", not problems.of("puts"),
          problems.of("puts"))
    check("nothing left in store/tmp (killed workers' scratch folders swept)", r.get("tmp_left") == 0 and not problems.of("tmp"),
          problems.of("tmp"))
    check("every output identical to the undisturbed run's (framemd5, video and audio)", n >= 6 and r.get("identical") == n
          and not problems.of("identical"), (r.get("identical"), n, problems.of("identical")))
    check("every kiln process of the test gone after the server stopped", not problems.of("processes"), problems.of("processes"))
    print(chaos.table(r))

    # a join killed at the two moments around its record
    clips = chaos.make_clips(KILN, T, "192x144", 2)
    spec = chaos.batch(1, clips, 3)[0]                   # a reframe
    for point in ("recorded", "deleted"):
        os.environ["KILN_TEST_JOIN_DIE"] = point        # the server's workers inherit it
        try:
            ch = chaos.Chaos(KILN, os.path.join(T, "join-" + point))
        finally:
            del os.environ["KILN_TEST_JOIN_DIE"]
        ch.upload(clips[:1])
        whole, split = ch.submit([dict(spec, chunks=1), dict(spec, chunks=2)])
        got = ch.wait_all([whole, split], 60)
        ok = all(got.get(j, {}).get("state") == "succeeded" for j in (whole, split))
        check(f"join killed once {point}: the job succeeds", ok, [(j.get("state"), j.get("error")) for j in got.values()])
        if not ok:
            ch.stop(5)
            continue
        tasks = got[split].get("tasks", [])
        runs = 1 if point == "recorded" else 2            # recorded: the job has succeeded, nothing runs again
        check(f"join killed once {point}: each chunk ran once, the join {runs} time(s)",
              [(t["kind"], t["attempts"]) for t in tasks] == [("chunk", 1), ("chunk", 1), ("join", runs)], tasks)
        left = sorted(os.listdir(os.path.join(ch.objects, "jobs", split)))
        check(f"join killed once {point}: the job's folder holds its output only", left == ["output.mp4"], left)
        a, b = ([chaos.framemd5(os.path.join(ch.objects, got[j]["result"]["outputs"][0]["key"]), m) for m in "va"] for j in (whole, split))
        check(f"join killed once {point}: the output equals the unchunked run's (frames and audio packets)", a[0] and a[1] and a == b,
              [(len(x), len(y)) for x, y in zip(a, b)])
        gone, _ = ch.stop()
        check(f"join killed once {point}: nothing left in store/tmp", not os.listdir(os.path.join(ch.home, "store", "tmp")),
              os.listdir(os.path.join(ch.home, "store", "tmp")))
finally:
    for sv in kilnt.servers:
        if sv.p.poll() is None:
            sv.p.kill()
    shutil.rmtree(T, ignore_errors=True)

sys.exit(kilnt.done())
