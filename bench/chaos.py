#!/usr/bin/env python3
"""bench/chaos.py — kill -9 chaos against a real `kiln serve` (issue 12).

A server with several workers per function runs a batch of real jobs
(reframe and overlay on generated clips, encoded losslessly, two thirds of
them split in 2 or 3 chunks) twice: undisturbed first (the baseline), then
while a driver thread sends SIGKILL at random moments (a fixed seed) to
random workers — most of them in the middle of a task, some idle — and, a
few times, to the server itself, which is started again at once on the same
KILN_HOME (a new port: the URL is read again). When the batch ends before
every kill is sent, it is submitted again (rounds), so every kill lands on
live work.

Then it checks what the engine promises:
  - every job ends `succeeded`;
  - effects exactly once: every task (a whole job, a chunk, a join) is
    recorded succeeded exactly once (the events table); the store holds
    exactly one object per job, its output (no chunk left over), and
    nothing in store/tmp once the workers are gone; no output was replaced
    after its job succeeded, nor put into place more often than the task
    writing it ran (an inotify watch counts the renames into place);
  - every output is identical to the baseline's for the same job: the
    decoded frames and the audio packets (`ffmpeg -f framemd5`). The outputs
    are lossless (x264 qp 0), so the decoded frames do not depend on the
    encoder's threads or timing; the audio is copied.

usage: bench/chaos.py [KILN] [--jobs N] [--kills N] [--server-kills N]
                      [--seed S] [--gap A:B] [--size WxH] [--seconds S]
The short version in CI, tests/test_chaos.py, runs the same code (run())."""
import argparse, collections, ctypes, json, os, random, re, select, shutil, signal, sqlite3, struct
import http.client, subprocess, sys, tempfile, threading, time, urllib.error

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import kilnt                                      # noqa: E402  (tests/kilnt.py: Server, until)
from kilnt import Server, until                   # noqa: E402

CONFIG = """
lease_s: 2
retry_delay_s: 0.1
retry_max_delay_s: 0.5
slots: {cpu: 6}
functions:
  reframe: {cpus: 1, max_workers: 3, idle_timeout_s: 30, retries: 100}
  overlay: {cpus: 1, max_workers: 3, idle_timeout_s: 30, retries: 100}
  join: {max_workers: 2, idle_timeout_s: 30, retries: 100}
"""
# retries: 100 (the most the config takes) > any kill count a task can meet, so
# a job can only fail for a reason other than the kills.


def sh(*a, **k):
    return subprocess.run(list(a), capture_output=True, text=True, **k)


def framemd5(path, stream):
    """Per-frame (video, decoded) or per-packet (audio, copied) hashes with timestamps."""
    args = ["nice", "ffmpeg", "-v", "error", "-nostdin", "-i", path, "-map", f"0:{stream}?"]
    if stream == "a":
        args += ["-c", "copy"]
    out = sh(*args, "-f", "framemd5", "-").stdout
    return [l for l in out.splitlines() if l and not l.startswith("#")]


# ---------------------------------------------------------------- the batch

def make_clips(kiln, folder, size, seconds):
    """Two generated clips with audio: the coords pattern and colour bars."""
    w, h = (int(v) for v in size.split("x"))
    clips = []
    for name, pattern, fps, tone, gop in (("coords.mp4", "coords", 30, 440, 45), ("bars.mp4", "bars", 25, 330, 25)):
        p = os.path.join(folder, name)
        r = sh("nice", kiln, "sample", pattern, p, "--seconds", str(seconds), "--size", f"{w}x{h}", "--fps", str(fps),
               "--tone", str(tone), "--gop", str(gop))
        if r.returncode:
            raise SystemExit(f"kiln sample failed: {r.stderr}")
        clips.append({"path": p, "key": "in/" + name, "w": w, "h": h, "frames": int(seconds * fps)})
    return clips


def batch(n, clips, seed):
    """n job specs {fn, input, params, chunks}: reframe and overlay alternately,
    N = 1, 2, 3 chunks in turn, crops and highlights drawn from the seed."""
    rng = random.Random(seed)
    specs = []
    for i in range(n):
        c = clips[(i // 2) % len(clips)]
        w, h, last = c["w"], c["h"], c["frames"] - 1
        if i % 2 == 0:
            cw = h * 9 // 16
            p = {"width": cw // 2 * 2, "height": h // 2 * 2,
                 "crop": [{"frame": 0, "x": rng.randrange(0, w - cw), "w": cw, "h": h},
                          {"frame": last, "x": rng.randrange(0, w - cw), "w": cw, "h": h}]}
            if i % 4 == 2:
                p["speed"] = [{"start": 1, "end": 2, "speed": 0.5}]
            fn = "reframe"
        else:
            p = {"highlights": [{"frame": f, "x": rng.randrange(w // 4, 3 * w // 4), "y": rng.randrange(h // 4, 3 * h // 4),
                                 "rx": rng.randrange(h // 8, h // 4), "ry": rng.randrange(h // 8, h // 4)} for f in (0, last)]}
            fn = "overlay"
        p.update(lossless=True, keyint=0.5)
        specs.append({"fn": fn, "input": c["key"], "params": p, "chunks": 1 + i % 3})
    return specs


# ------------------------------------------------- watching the store's puts

class PutWatch(threading.Thread):
    """Counts the objects put into place under store/objects (inotify:
    IN_MOVED_TO, the store's rename of a finished file), as the distinct
    inodes each key had: key -> set of inodes. A folder made after the watch
    started is watched from when it is seen, and what is already in it then
    is counted once (so it can only miss a put, never count one twice)."""
    IN_MOVED_TO, IN_CREATE, IN_ISDIR, IN_Q_OVERFLOW = 0x80, 0x100, 0x40000000, 0x4000

    def __init__(self, root):
        super().__init__(daemon=True)
        self.root = root
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.dirs = {}
        self.puts = collections.defaultdict(set)
        self.overflow = False
        self.quit = threading.Event()
        self.mu = threading.Lock()
        self._add("")

    def _seen(self, rel):
        try:
            st = os.lstat(os.path.join(self.root, rel))
        except OSError:
            return
        if not os.path.isdir(os.path.join(self.root, rel)):
            with self.mu:
                self.puts[rel].add(st.st_ino)

    def _add(self, rel):
        path = os.path.join(self.root, rel)
        wd = self.libc.inotify_add_watch(self.fd, path.encode(), self.IN_MOVED_TO | self.IN_CREATE)
        if wd < 0:
            return
        self.dirs[wd] = rel
        for name in sorted(os.listdir(path)) if os.path.isdir(path) else []:
            sub = os.path.join(rel, name) if rel else name
            if os.path.isdir(os.path.join(self.root, sub)):
                self._add(sub)
            else:
                self._seen(sub)

    def run(self):
        while not self.quit.is_set():
            r, _, _ = select.select([self.fd], [], [], 0.1)
            if not r:
                continue
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            off = 0
            while off + 16 <= len(buf):
                wd, mask, _cookie, ln = struct.unpack_from("iIII", buf, off)
                name = buf[off + 16:off + 16 + ln].split(b"\0", 1)[0].decode(errors="replace")
                off += 16 + ln
                if mask & self.IN_Q_OVERFLOW:
                    self.overflow = True
                    continue
                rel = self.dirs.get(wd)
                if rel is None or not name:
                    continue
                sub = os.path.join(rel, name) if rel else name
                if mask & self.IN_ISDIR:
                    self._add(sub)
                elif mask & self.IN_MOVED_TO:
                    self._seen(sub)

    def count(self, key):
        with self.mu:
            return len(self.puts.get(key, ()))

    def stop(self):
        self.quit.set()
        self.join(5)
        os.close(self.fd)


# ------------------------------------------------------- the server, robustly

def kiln_processes(kiln, home):
    """pid -> cmdline of every live process running this kiln binary with this
    KILN_HOME (server, zygote, workers), read from /proc."""
    exe = os.path.realpath(kiln)
    found = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.path.realpath(f"/proc/{d}/exe") != exe:
                continue
            env = open(f"/proc/{d}/environ", "rb").read().split(b"\0")
            if ("KILN_HOME=" + home).encode() not in env:
                continue
            st = open(f"/proc/{d}/stat").read()
            if st[st.rindex(")") + 2] == "Z":
                continue
            found[int(d)] = open(f"/proc/{d}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


class Chaos:
    """One kiln serve under test, with requests that ride over its restarts."""

    def __init__(self, kiln, home, config=CONFIG):
        kilnt.KILN = self.kiln = os.path.abspath(kiln)
        self.home = home
        self.srv = Server(home, config)
        self.lock = threading.Lock()      # held to submit and to restart: no request is cut in half by a kill
        self.db_path = os.path.join(home, "queue.db")
        self.objects = os.path.join(home, "store", "objects")
        self.server_kills = 0

    def api(self, m, path, body=None, timeout=60):
        """A request; a refused or cut connection (the server being killed and
        restarted) is tried again on the new URL until timeout."""
        deadline = time.time() + timeout
        while True:
            with self.lock:               # a restart in progress ends first: its URL is the one
                url = self.srv.url
            try:
                return self.srv.req(m, url + path, body)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as ex:
                if time.time() > deadline:
                    raise RuntimeError(f"{m} {path}: no answer for {timeout} s ({ex})")
                time.sleep(0.05)

    def job(self, jid):
        s, b, _ = self.api("GET", "/v1/jobs/" + jid)
        return b if s == 200 else None

    def upload(self, clips):
        for c in clips:
            s, b, _ = self.api("PUT", "/v1/objects/" + c["key"], open(c["path"], "rb").read())
            if s != 201:
                raise SystemExit(f"upload failed: {s} {b}")

    def submit(self, specs):
        ids = []
        with self.lock:                   # never while the server is being killed: a 202 is not lost
            for sp in specs:
                body = {"input": sp["input"], "params": sp["params"], "plan": {"chunks": sp["chunks"]}}
                s, b, _ = self.srv.req("POST", f"/v1/functions/{sp['fn']}/spawn", body)
                if s != 202:
                    raise SystemExit(f"spawn failed: {s} {b}")
                ids.append(b["job_id"])
        return ids

    def wait_all(self, ids, timeout, on_success=None):
        """Polls until every job has ended; returns {id: job} (the last seen)."""
        last = {}
        left = list(ids)
        deadline = time.time() + timeout
        while left and time.time() < deadline:
            for jid in list(left):
                j = self.job(jid)
                if j:
                    last[jid] = j
                    if j["state"] in ("succeeded", "failed", "cancelled"):
                        left.remove(jid)
                        if on_success and j["state"] == "succeeded":
                            on_success(j)
            if left:
                time.sleep(0.1)
        return last

    def kill_server(self):
        with self.lock:
            self.srv.kill9()
            self.server_kills += 1
            self.srv.start()              # the same KILN_HOME, port 0 again: start() reads the new URL

    def workers(self):
        """(pid, worker id, busy) of every live worker, from the queue's tables,
        kept only when /proc shows a kiln process of this KILN_HOME with that pid."""
        try:
            db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
            rows = db.execute("SELECT id, pid FROM workers WHERE state<3").fetchall()
            busy = {w for (w,) in db.execute("SELECT worker FROM jobs WHERE state=1 AND worker IS NOT NULL")}
            db.close()
        except sqlite3.Error:
            return []
        procs = kiln_processes(self.kiln, self.home)
        return [(pid, wid, wid in busy) for wid, pid in rows if pid in procs and pid != self.srv.p.pid]

    def stop(self, timeout=30):
        """SIGTERM to the server, then waits for every process of this KILN_HOME
        (orphaned workers of a killed server too) to leave; SIGKILLs the rest by pid."""
        self.srv.stop()
        gone = until(lambda: not kiln_processes(self.kiln, self.home), timeout)
        left = kiln_processes(self.kiln, self.home)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        return bool(gone), left


class Killer(threading.Thread):
    """Sends `kills` SIGKILLs: after a random gap each (the seed's), to a
    random live worker — one running a task with probability `busy` — or,
    at `server_kills` points spread over the run, to the server."""

    def __init__(self, ch, kills, server_kills, seed, gap=(0.2, 1.2), busy=0.85):
        super().__init__(daemon=True)
        self.ch, self.kills, self.gap, self.busy = ch, kills, gap, busy
        self.rng = random.Random(seed)
        self.server_at = {int((k + 0.5) * kills / server_kills) for k in range(server_kills)} if server_kills else set()
        self.log = []                     # (t, what, worker id, busy)
        self.quit = threading.Event()
        self.error = None

    def run(self):
        try:
            for i in range(self.kills):
                self.quit.wait(self.rng.uniform(*self.gap))      # the random moment
                if self.quit.is_set():
                    return
                if i in self.server_at:
                    self.ch.kill_server()
                    self.log.append((time.time(), "server", None, None))
                    continue
                ws = until(lambda: self.ch.workers() or self.quit.is_set(), 60)
                if self.quit.is_set() or not ws:
                    self.error = f"no live worker to kill at kill {i + 1}"
                    return
                busy = [w for w in ws if w[2]]
                pool = busy if busy and self.rng.random() < self.busy else ws
                pid, wid, b = pool[self.rng.randrange(len(pool))]
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
                self.log.append((time.time(), "worker", wid, b))
        except BaseException as ex:       # reported by run(), not lost in a thread (Server.start raises SystemExit)
            self.error = repr(ex)

    @property
    def sent(self):
        return len(self.log)


# ---------------------------------------------------------------- the audit

def tasks_of(db, jid):
    """The job's tasks as (id, kind, state, attempts): itself when whole, else its chunks and join."""
    row = db.execute("SELECT id, kind, state, attempts FROM jobs WHERE id=?", (jid,)).fetchone()
    if row and row[1] == 3:
        return db.execute("SELECT id, kind, state, attempts FROM jobs WHERE parent=? ORDER BY kind, part", (jid,)).fetchall()
    return [row] if row else []


class Problems(list):
    """(promise, message) pairs; the promises: baseline (the undisturbed
    batch succeeded), succeeded, once (each task
    recorded succeeded once), objects (one per job in the store), puts (none
    put more often than its task ran, none replaced after its job succeeded),
    tmp, identical, processes, driver."""

    def add(self, what, msg):
        self.append((what, msg))

    def of(self, what):
        return [m for w, m in self if w == what]


def audit(ch, ids, inodes, watch, problems):
    """What the queue and the store say about the jobs `ids` (all ended);
    adds to problems, returns figures."""
    db = sqlite3.connect(f"file:{ch.db_path}?mode=ro", uri=True, timeout=5)
    ok_events = collections.Counter(j for (j,) in db.execute(
        "SELECT job_id FROM events WHERE kind='state' AND json_extract(data, '$.state')='succeeded'"))
    retries, ntasks, multi_put = 0, 0, []
    expect = set()
    for jid in ids:
        tasks = tasks_of(db, jid)
        if not tasks:
            problems.add("once", f"job {jid}: not in the queue")
            continue
        for tid, kind, state, att in tasks:
            ntasks += 1
            retries += att - 1
            if state != 3 or ok_events[tid] != 1:
                problems.add("once", f"job {jid}: task {tid} (kind {kind}) state {state}, recorded succeeded {ok_events[tid]} times")
        if tasks[0][0] != jid and ok_events[jid] != 1:
            problems.add("once", f"job {jid}: recorded succeeded {ok_events[jid]} times")
        res = db.execute("SELECT result FROM jobs WHERE id=?", (jid,)).fetchone()[0]
        keys = [o["key"] for o in json.loads(res or "{}").get("outputs", [])]
        if len(keys) != 1:
            problems.add("objects", f"job {jid}: {len(keys)} outputs")
            continue
        key = keys[0]
        expect.add(key)
        writer_attempts = tasks[-1][3]                 # the whole job, or the join
        puts = watch.count(key) if watch else 1
        if puts > 1:
            multi_put.append(key)
        if puts > writer_attempts or (watch and puts == 0 and not watch.overflow):
            problems.add("puts", f"job {jid}: output put {puts} times by a task that ran {writer_attempts} times")
        try:
            st = os.lstat(os.path.join(ch.objects, key))
            if jid in inodes and inodes[jid] != (st.st_ino, st.st_mtime_ns):
                problems.add("puts", f"job {jid}: its output was replaced after the job succeeded")
        except OSError:
            problems.add("objects", f"job {jid}: output {key} is not in the store")
    db.close()
    stray = []
    for dirpath, _, files in os.walk(os.path.join(ch.objects, "jobs")):
        for f in files:
            k = os.path.relpath(os.path.join(dirpath, f), ch.objects)
            if k not in expect:
                stray.append(k)
    if stray:
        problems.add("objects", f"{len(stray)} object(s) under jobs/ that are no job's output: {sorted(stray)[:6]}")
    return {"tasks": ntasks, "retries": retries, "multi_put": multi_put}


def outputs(ch, jobs):
    """id -> (video framemd5, audio framemd5) of each succeeded job's output."""
    got = {}
    for jid, j in jobs.items():
        if j["state"] == "succeeded":
            p = os.path.join(ch.objects, j["result"]["outputs"][0]["key"])
            got[jid] = (framemd5(p, "v"), framemd5(p, "a"))
    return got


# ------------------------------------------------------------------ the run

def run(kiln, jobs=12, kills=100, server_kills=5, seed=1, gap=(0.2, 1.2), size="320x240", seconds=4,
        workdir=None, timeout=900, say=print):
    """The whole benchmark; returns a dict of figures and the Problems
    (empty when every promise held)."""
    T = workdir or tempfile.mkdtemp(prefix="kiln-chaos-")
    ch = None
    res = {"jobs": jobs, "kills_asked": kills, "seed": seed}
    problems = Problems()
    try:
        clips = make_clips(kiln, T, size, seconds)
        specs = batch(jobs, clips, seed)
        ch = Chaos(kiln, os.path.join(T, "home"))
        ch.upload(clips)
        watch = PutWatch(ch.objects)
        watch.start()
        inodes = {}

        def seen_ok(j):                    # the output as it was when its job was first seen succeeded
            try:
                st = os.lstat(os.path.join(ch.objects, j["result"]["outputs"][0]["key"]))
                inodes.setdefault(j["job_id"], (st.st_ino, st.st_mtime_ns))
            except (OSError, KeyError, IndexError, TypeError):
                pass

        # 1. undisturbed: the baseline
        say(f"chaos: {jobs} jobs ({size}, {seconds} s clips), undisturbed first ...")
        t0 = time.time()
        base_ids = ch.submit(specs)
        base = ch.wait_all(base_ids, timeout, seen_ok)
        res["wall_undisturbed"] = time.time() - t0
        bad = [j for j in base.values() if j["state"] != "succeeded"]
        if bad or len(base) != len(base_ids):
            problems.add("baseline", f"undisturbed: {len(bad)} job(s) did not succeed: {[(j['job_id'], j['state'], j.get('error')) for j in bad][:3]}")
            return res, problems
        ref = outputs(ch, base)

        # 2. the same batch under kills, in rounds until every kill is sent
        say(f"chaos: the same jobs under {kills} SIGKILLs ({server_kills} to the server), seed {seed} ...")
        killer = Killer(ch, kills, server_kills, seed, gap)
        t0 = time.time()
        killer.start()
        rounds, dist_ids, dist = 0, [], {}
        while True:
            ids = ch.submit(specs)
            rounds += 1
            dist_ids += ids
            got = ch.wait_all(ids, timeout, seen_ok)
            dist.update(got)
            if any(j["state"] != "succeeded" for j in got.values()) or len(got) != len(ids):
                break
            if not killer.is_alive():
                break
            if time.time() - t0 > timeout:
                problems.add("driver", "the kills took longer than the timeout")
                break
        killer.quit.set()
        killer.join(30)
        res["wall_disturbed"] = time.time() - t0
        res["rounds"] = rounds
        res["jobs_disturbed"] = len(dist_ids)
        if killer.error:
            problems.add("driver", "killer: " + killer.error)
        wk = [k for k in killer.log if k[1] == "worker"]
        res["kills_workers"] = len(wk)
        res["kills_busy"] = sum(1 for k in wk if k[3])
        res["kills_server"] = sum(1 for k in killer.log if k[1] == "server")
        ended = {s: sum(1 for j in dist.values() if j["state"] == s) for s in ("succeeded", "failed", "cancelled")}
        res["ended"] = ended
        not_ok = [(jid, j["state"], (j.get("error") or {}).get("message")) for jid, j in dist.items() if j["state"] != "succeeded"]
        not_ok += [(jid, "not ended", None) for jid in dist_ids if jid not in dist]
        if not_ok:
            problems.add("succeeded", f"{len(not_ok)} job(s) did not succeed: {not_ok[:4]}")

        # 3. identical outputs
        out = outputs(ch, dist)
        same = 0
        for k, jid in enumerate(dist_ids):
            b = base_ids[k % len(base_ids)]
            if jid in out and out[jid] == ref[b] and ref[b][0]:
                same += 1
            elif jid in out:
                v, a = out[jid]
                problems.add("identical", f"job {jid} ({specs[k % len(specs)]['fn']}, N={specs[k % len(specs)]['chunks']}): output differs from "
                                f"the undisturbed run's ({len(v)} vs {len(ref[b][0])} frames, audio same: {a == ref[b][1]})")
        res["identical"] = same

        # 4. exactly-once effects: queue events, store objects, puts; tmp/ once everything has stopped
        fig = audit(ch, base_ids + dist_ids, inodes, watch, problems)
        res.update(fig)
        res["retries_baseline"] = audit(ch, base_ids, inodes, None, Problems())["retries"]
        base_keys = {j["result"]["outputs"][0]["key"] for j in base.values()}
        res["multi_put"] = [k for k in fig["multi_put"] if k not in base_keys]
        watch.stop()
        gone, left = ch.stop()
        if not gone:
            problems.add("processes", f"{len(left)} kiln process(es) still there 30 s after the server stopped: {sorted(left.values())[:3]}")
        tmp = os.path.join(ch.home, "store", "tmp")
        leftovers = sorted(os.listdir(tmp)) if os.path.isdir(tmp) else []
        res["tmp_left"] = len(leftovers)
        if leftovers:
            problems.add("tmp", f"{len(leftovers)} file(s) left in store/tmp: {leftovers[:4]}")
        res["kill_log"] = killer.log
        return res, problems
    finally:
        if ch:
            ch.stop(5)
        if not workdir:
            shutil.rmtree(T, ignore_errors=True)


def table(r):
    rows = [("jobs (undisturbed, then under kills)", f"{r['jobs']} + {r.get('jobs_disturbed', 0)} ({r.get('rounds', 0)} round(s) of the batch)"),
            ("tasks (whole jobs, chunks, joins)", r.get("tasks", "")),
            ("kills: workers (of them mid-task) / server", f"{r.get('kills_workers', 0)} ({r.get('kills_busy', 0)}) / {r.get('kills_server', 0)}"),
            ("retries (task attempts after the first; baseline)", f"{r.get('retries', 0) - r.get('retries_baseline', 0)} ({r.get('retries_baseline', 0)})"),
            ("jobs succeeded / failed / cancelled", "{succeeded} / {failed} / {cancelled}".format(**r.get("ended", {"succeeded": 0, "failed": 0, "cancelled": 0}))),
            ("wall: batch undisturbed", f"{r.get('wall_undisturbed', 0):.1f} s"),
            ("wall: under kills (per round)", f"{r.get('wall_disturbed', 0):.1f} s ({r.get('wall_disturbed', 0) / max(1, r.get('rounds', 1)):.1f} s)"),
            ("outputs identical to the undisturbed run (framemd5)", f"{r.get('identical', 0)} of {r.get('jobs_disturbed', 0)}"),
            ("outputs put into place twice (a run killed between its put and its record)", len(r.get("multi_put", []))),
            ("files left in store/tmp", r.get("tmp_left", ""))]
    return "| measure | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kiln", nargs="?", default=os.path.join(HERE, "..", "build", "kiln"))
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--server-kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--gap", default="0.2:1.2", help="seconds between kills, drawn uniformly from A:B")
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--keep", help="work in this folder and keep it (server log: home/serve.log)")
    a = ap.parse_args()
    gap = tuple(float(x) for x in a.gap.split(":"))
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
    r, problems = run(a.kiln, a.jobs, a.kills, a.server_kills, a.seed, gap, a.size, a.seconds, workdir=a.keep)
    print(table(r))
    for what, msg in problems:
        print(f"PROBLEM ({what}): {msg}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
