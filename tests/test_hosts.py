"""test_hosts.py — kiln over several hosts, made here as network namespaces
(`ip netns`, veth pairs; needs root):

    kdb  PostgreSQL, moto's S3 and `kiln serve --no-workers`  10.77.0.2 (to the test),
                                                              10.77.1.1 (to kh1), 10.77.2.1 (to kh2)
    kh1  `kiln agent --host kh1`                              10.77.1.2
    kh2  `kiln agent --host kh2`                              10.77.2.2

Each host has a KILN_HOME of its own and sees the queue and the store only
over its link. Checked:
  1. a reframe job split in 4 chunks runs on both hosts and equals the
     unsplit output frame for frame (lossless, framemd5);
  2. kh1 taken down mid-job (its link cut, every process in it killed):
     the job still succeeds, on kh2, and still equals the unsplit output;
     kh2 counts kh1's workers gone once they stop sending heartbeats;
  3. kh1's link restored and its agent started again (kh2 stopped): it
     runs the next job.

    python3 tests/test_hosts.py KILN"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kilnt  # noqa: E402
import pgserver  # noqa: E402
from kilnt import check, until  # noqa: E402

KILN = kilnt.KILN = os.path.abspath(sys.argv[1])
T = tempfile.mkdtemp(prefix="kiln-hosts-")
os.chmod(T, 0o755)
TAG = str(os.getpid() % 10000)
NS = {"db": f"kdb{TAG}", "h1": f"kh1{TAG}", "h2": f"kh2{TAG}"}
procs = []


def sh(*cmd, check_=True):
    r = subprocess.run(list(cmd), capture_output=True, text=True)
    if check_ and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


def netns_up():
    for n in NS.values():
        sh("ip", "netns", "add", n)
        sh("ip", "-n", n, "link", "set", "lo", "up")
    # the test <-> kdb
    sh("ip", "link", "add", f"vt{TAG}", "type", "veth", "peer", "name", f"vd{TAG}")
    sh("ip", "link", "set", f"vd{TAG}", "netns", NS["db"])
    sh("ip", "addr", "add", "10.77.0.1/30", "dev", f"vt{TAG}")
    sh("ip", "link", "set", f"vt{TAG}", "up")
    sh("ip", "-n", NS["db"], "addr", "add", "10.77.0.2/30", "dev", f"vd{TAG}")
    sh("ip", "-n", NS["db"], "link", "set", f"vd{TAG}", "up")
    for k in (1, 2):                                    # each host <-> kdb
        h, a, b = NS[f"h{k}"], f"va{k}{TAG}", f"vb{k}{TAG}"
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", a, "netns", NS["db"])
        sh("ip", "link", "set", b, "netns", h)
        sh("ip", "-n", NS["db"], "addr", "add", f"10.77.{k}.1/30", "dev", a)
        sh("ip", "-n", h, "addr", "add", f"10.77.{k}.2/30", "dev", b)
        sh("ip", "-n", NS["db"], "link", "set", a, "up")
        sh("ip", "-n", h, "link", "set", b, "up")


def netns_down():
    for n in NS.values():
        for pid in sh("ip", "netns", "pids", n, check_=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        sh("ip", "netns", "del", n, check_=False)
    sh("ip", "link", "del", f"vt{TAG}", check_=False)


def in_ns(name):
    return ["ip", "netns", "exec", NS[name]]


def free_port_in(ns):
    r = sh(*in_ns(ns), sys.executable, "-c",
           "import socket; s=socket.socket(); s.bind(('0.0.0.0',0)); print(s.getsockname()[1])")
    return int(r.stdout)


class Agent:
    def __init__(self, k, pg_port, moto_port):
        self.k, self.name = k, f"kh{k}"
        self.home = os.path.join(T, self.name)
        os.makedirs(self.home, exist_ok=True)
        with open(os.path.join(self.home, "config.yaml"), "w") as f:
            f.write(f"store: s3://kiln-hosts/x\nstore_endpoint: http://10.77.{k}.1:{moto_port}\nlease_s: 2\n"
                    "retry_delay_s: 0.2\nfunctions:\n  reframe: {max_workers: 2, idle_timeout_s: 30, cpus: 1}\n")
        self.queue = f"postgres://kiln@10.77.{k}.1:{pg_port}/kiln"
        self.start()

    def start(self):
        env = dict(os.environ, KILN_HOME=self.home)
        self.log = open(os.path.join(self.home, "agent.log"), "a")
        self.p = subprocess.Popen(in_ns(f"h{self.k}") + [KILN, "agent", "--host", self.name, "--queue", self.queue,
                                                         "--slots", "cpu=2"], env=env, stderr=self.log)
        procs.append(self.p)

    def kill_host(self):
        """Power cut: the link goes, every process of the host dies at once."""
        sh("ip", "-n", NS[f"h{self.k}"], "link", "set", f"vb{self.k}{TAG}", "down")
        for pid in sh("ip", "netns", "pids", NS[f"h{self.k}"]).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        self.p.wait()

    def restore(self):
        sh("ip", "-n", NS[f"h{self.k}"], "link", "set", f"vb{self.k}{TAG}", "up")
        self.start()


def framemd5(path):
    r = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-map", "0:v", "-f", "framemd5", "-"], capture_output=True,
                       text=True)
    return [ln.split(",")[-1] for ln in r.stdout.splitlines() if not ln.startswith("#")]


def hosts_of(job):
    return sorted({t["worker"].split("@")[-1] for t in job.get("tasks", []) if t["kind"] == "chunk" and t.get("worker")})


if os.geteuid() != 0 or not shutil.which("ip"):
    print("FAIL: this test makes network namespaces: it needs root and iproute2 (ip netns)")
    sys.exit(1)
if not shutil.which("moto_server"):
    print("FAIL: moto_server is not installed (pip install 'moto[server]')")
    sys.exit(1)

try:
    netns_up()
    # ---- the database host: PostgreSQL, S3, the API
    pg = pgserver.PgServer(host="*", wrap=in_ns("db"))
    pg.__enter__()
    moto_port = free_port_in("db")
    keys = {"AWS_ACCESS_KEY_ID": "kilntest", "AWS_SECRET_ACCESS_KEY": "kilntestsecret"}
    procs.append(subprocess.Popen(in_ns("db") + ["moto_server", "-H", "0.0.0.0", "-p", str(moto_port)],
                                  stdout=subprocess.DEVNULL, stderr=open(os.path.join(T, "moto.log"), "w")))
    N = f"http://10.77.0.2:{moto_port}"
    check("moto_server answers in kdb", kilnt.http_up(N + "/moto-api/", 30))
    urllib.request.urlopen(urllib.request.Request(N + "/kiln-hosts", method="PUT"), timeout=10).read()   # the bucket
    os.environ.update(keys)
    S = kilnt.Server(os.path.join(T, "kdb"), f"store: s3://kiln-hosts/x\nstore_endpoint: {N}\nlease_s: 2\n"
                     "functions:\n  reframe: {max_workers: 4}\n",
                     wrap=in_ns("db"), env={"KILN_QUEUE": f"postgres://kiln@/kiln?host={pg.dir}&port={pg.port}"},   # its socket: the test reads it too
                     args=["--no-workers"], listen="10.77.0.2:0")
    A1 = Agent(1, pg.port, moto_port)
    A2 = Agent(2, pg.port, moto_port)
    time.sleep(1)
    for a in (A1, A2):
        if not check(f"agent {a.name} runs", a.p.poll() is None, open(os.path.join(a.home, "agent.log")).read()[-600:]):
            raise RuntimeError("an agent did not start")

    clip = os.path.join(T, "in.mp4")
    subprocess.run([KILN, "sample", "bars", clip, "--seconds", "8", "--size", "320x240", "--fps", "25", "--tone", "440"],
                   check=True, capture_output=True)
    s, b, _ = S.req("PUT", "/v1/objects/in/clip.mp4", open(clip, "rb").read())
    check("upload to the API host", s == 201, b)
    params = {"width": 180, "height": 320, "crf": 0, "preset": "ultrafast"}

    def run(chunks, during=None):
        s, b, _ = S.req("POST", "/v1/functions/reframe/spawn", {"input": "in/clip.mp4", "params": params,
                                                                 "plan": {"chunks": chunks}})
        if not check(f"spawn ({chunks} chunks)", s == 202, b):
            return None, None
        if during:
            during(b["job_id"])
        j = S.wait_end(b["job_id"], 240)
        j["_ended_at"] = time.time()
        out = None
        if check(f"the job succeeds ({chunks} chunks)", j["state"] == "succeeded", j.get("error")):
            out = os.path.join(T, f"out-{b['job_id']}.mp4")
            with urllib.request.urlopen(j["result"]["outputs"][0]["url"], timeout=30) as f:
                open(out, "wb").write(f.read())
        return j, out

    _, ref = run(1)
    want = framemd5(ref) if ref else []
    check("the unsplit output has every frame", len(want) == 200, len(want))

    # ---- 1. spread over both hosts
    j, out = run(4)
    check("4 chunks ran on both hosts", j and hosts_of(j) == ["kh1", "kh2"], j and [t.get("worker") for t in j.get("tasks", [])])
    check("...and equal the unsplit output (framemd5)", out and framemd5(out) == want)

    # ---- 2. kh1 loses power mid-job
    def cut_kh1(jid):
        on1 = until(lambda: any(t["state"] == "running" and (t.get("worker") or "").endswith("@kh1")
                                for t in S.job(jid).get("tasks", [])), 60)
        check("a chunk runs on kh1", on1)
        A1.kill_host()
        cut[0] = time.time()
        if os.environ.get("KILN_DEBUG_HOSTS"):
            while S.job(jid)["state"] == "running" and time.time() - cut[0] < 60:
                print(f"  {time.time() - cut[0]:5.1f}s", [(t['kind'][0], t['state'][:4], (t.get('worker') or '')[-8:], t['attempts'])
                                                       for t in S.job(jid)["tasks"]], file=sys.stderr)
                time.sleep(0.5)
    cut = [0]
    t0 = time.time()
    j, out = run(4, during=cut_kh1)
    check("the job succeeds without kh1", j and j["state"] == "succeeded", j and j.get("error"))
    check("...its lost chunks ran again on kh2", j and any(t["attempts"] >= 2 for t in j.get("tasks", [])) and
          hosts_of(j) == ["kh2"], j and [(t.get("worker"), t["attempts"]) for t in j.get("tasks", [])])
    check("...equal to the unsplit output", out and framemd5(out) == want)
    gone = until(lambda: not S.sql("SELECT id FROM workers WHERE host='kh1' AND state<3"), 40)
    check("kh2 counts kh1's workers gone after their heartbeats stop", gone, S.sql("SELECT id, state FROM workers"))
    if j:
        print(f"  host loss: the job ended {j['_ended_at'] - cut[0]:.1f} s after kh1 went down (lease_s 2;"
              f" {cut[0] - t0:.1f} s after its spawn)", file=sys.stderr)

    # ---- 3. kh1 comes back
    A1.restore()
    A2.p.send_signal(signal.SIGTERM)               # kh2's warm workers would take every chunk first
    A2.p.wait(30)
    j, out = run(4)
    check("kh1 takes tasks again after its link is restored", j and hosts_of(j) == ["kh1"],
          j and [t.get("worker") for t in j.get("tasks", [])])
    check("...output still equal", out and framemd5(out) == want)
except (pgserver.PgError, RuntimeError) as e:
    check("the hosts could be set up", False, e)
except Exception as e:                             # a server gone, ...: the logs below say why
    check("the test ran to its end", False, repr(e))
finally:
    for sv in kilnt.servers:
        sv.stop()
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
    try:
        pg.__exit__(None, None, None)
    except Exception:
        pass
    netns_down()
    if kilnt.failed:
        for f in ("kh1/agent.log", "kh2/agent.log", "kdb/serve.log"):
            p = os.path.join(T, f)
            if os.path.exists(p):
                print(f"--- {f}\n" + open(p, errors="replace").read()[-3000:], file=sys.stderr)
    if not os.environ.get("KILN_KEEP"):
        shutil.rmtree(T, ignore_errors=True)
sys.exit(kilnt.done())
