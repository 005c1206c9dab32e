#!/usr/bin/env python3
"""tests/test_scaler.py — the autoscaler never starts more workers of a
function than its max_workers (or the host's slots) allow, also when a
worker writes its row while a tick is reading the worker list (the race
that started a third worker on a host with 2 slots: bench/agents.py).

Each round starts `kiln serve` with min_workers = max_workers = 2 and 2 CPU
slots, waits for both workers to be warm, keeps them busy with jobs, and
checks that exactly two worker rows of the function were ever written and
that no more than two were ever live at once; on SQLite and on PostgreSQL
(a server started by tests/pgserver.py), where the wider window between
the two reads made the race show."""
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kilnt  # noqa: E402
import pgserver  # noqa: E402
from kilnt import check  # noqa: E402

kilnt.KILN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/kiln")
CONFIG = "slots: {cpu: 2}\nfunctions:\n  noop: {min_workers: 2, max_workers: 2, idle_timeout_s: 600, cpus: 1, max_chunks: 1}\n"
ROUNDS = 6

T = tempfile.mkdtemp(prefix="kiln-test-scaler-")
pg = pgserver.PgServer()
pg.__enter__()
try:
    for rnd in range(2 * ROUNDS):             # SQLite, then PostgreSQL (a database per round)
        env = {}
        if rnd >= ROUNDS:
            db = f"r{rnd}"
            pgserver.subprocess.run(["psql", pg.url, "-qc", f"CREATE DATABASE {db}"], check=True, capture_output=True)
            env["KILN_QUEUE"] = pg.url.rsplit("/", 1)[0] + "/" + db
        S = kilnt.Server(os.path.join(T, f"r{rnd}"), CONFIG, env=env)
        most = [0]
        stop = threading.Event()

        def watch():                              # the most live noop rows seen at once
            while not stop.is_set():
                n = S.sql("SELECT COUNT(*) FROM workers WHERE fn='noop' AND state<3")[0][0]
                most[0] = max(most[0], n)
                time.sleep(0.005)
        th = threading.Thread(target=watch, daemon=True)
        th.start()
        warm = kilnt.until(lambda: S.fn_stats("noop")["workers"]["warm"] >= 2 or None, 30)
        check(f"round {rnd}: both min_workers warm", warm)
        ids = []
        for _ in range(6):
            s, b, _ = S.req("POST", "/v1/functions/noop/spawn", {"params": {"frames": 20, "ms_per_frame": 10, "output": False}})
            ids.append(b.get("job_id"))
        ends = [S.wait_end(j, 60) for j in ids]
        stop.set()
        th.join()
        check(f"round {rnd}: the jobs succeeded", all(j and j.get("state") == "succeeded" for j in ends),
              [j.get("state") for j in ends])
        rows = S.sql("SELECT id, state FROM workers WHERE fn='noop'")
        check(f"round {rnd}: two workers started for max_workers 2 and 2 slots, not more", len(rows) == 2, rows)
        check(f"round {rnd}: never more than two live at once", most[0] <= 2, most[0])
        S.stop()
finally:
    pg.__exit__(None, None, None)
    for sv in kilnt.servers:
        if sv.p.poll() is None:
            sv.p.kill()
    import shutil
    shutil.rmtree(T, ignore_errors=True)
kilnt.done()
