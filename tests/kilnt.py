"""kilnt.py — what the Python end-to-end tests share: a real `kiln serve` on
a free loopback port with its own KILN_HOME (Server), CHECK-style counting
(check, done), and waiting on a condition with a deadline (until)."""
import json, os, re, signal, subprocess, threading, time, urllib.error, urllib.request

KILN = None          # set by the test from its argv
servers = []
passed = failed = 0


def check(name, cond, info=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"  FAIL: {name} {str(info)[:600]}", file=__import__("sys").stderr)
    return cond


def done():
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def until(cond, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    return cond()


def free_port():
    """A TCP port free on loopback now (for a server a test starts)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http_up(url, timeout=30):
    """Waits until url answers an HTTP GET (a server a test started); True if it did."""
    import urllib.request as ur

    def up():
        try:
            ur.urlopen(url, timeout=2).read()
            return True
        except Exception:
            return False
    return until(up, timeout)


def worker_pid(worker_id):
    """The pid in a worker id (FN-PID@HOST)."""
    return int(re.search(r"-([0-9]+)@", worker_id).group(1))


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


class Server:
    def __init__(self, home, config, wrap=None, env=None, args=None, listen="127.0.0.1:0"):
        self.home = home
        self.wrap = list(wrap or [])                 # a command line the server runs under (e.g. unshare)
        os.makedirs(home, exist_ok=True)
        with open(os.path.join(home, "config.yaml"), "w") as f:
            f.write(config)
        self.env = dict(os.environ, KILN_HOME=home)
        self.args = list(args or [])                 # more arguments of `kiln serve`
        self.listen = listen
        pg = None if env and "KILN_QUEUE" in env else os.environ.get("KILN_TEST_PG")        # postgres://USER@HOST:PORT: a database of its own per home
        if pg:
            db = "k" + __import__("hashlib").sha1(os.path.abspath(home).encode()).hexdigest()[:16]
            have = subprocess.run(["psql", pg + "/kiln", "-Atc", f"SELECT 1 FROM pg_database WHERE datname='{db}'"],
                                  capture_output=True, text=True, check=True).stdout.strip()
            if not have:
                subprocess.run(["psql", pg + "/kiln", "-qc", f"CREATE DATABASE {db}"], capture_output=True, check=True)
            self.env["KILN_QUEUE"] = f"{pg}/{db}"
        self.env.update(env or {})
        if not os.path.exists(os.path.join(home, "tok")):
            tok = subprocess.run([KILN, "token", "create", "--name", "t"], env=self.env, capture_output=True, text=True)
            with open(os.path.join(home, "tok"), "w") as f:
                f.write(tok.stdout.strip())
        self.tok = open(os.path.join(home, "tok")).read().strip()
        self.start()

    def start(self):
        self.log = open(os.path.join(self.home, "serve.log"), "a")
        self.p = subprocess.Popen(self.wrap + [KILN, "serve", "--listen", self.listen] + self.args, env=self.env, stderr=subprocess.PIPE,
                                  text=True)
        servers.append(self)
        self.url = None
        deadline = time.time() + 10
        while time.time() < deadline:
            line = self.p.stderr.readline()
            if not line:
                break
            self.log.write(line)
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                break
        if not self.url:
            raise SystemExit("server did not start")
        threading.Thread(target=self._drain, args=(self.p, self.log), daemon=True).start()

    @staticmethod
    def _drain(p, log):
        for line in p.stderr:
            log.write(line)
            log.flush()

    def req(self, m, path, body=None, headers=None, token=True, raw=False):
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + (token if isinstance(token, str) else self.tok)
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        r = urllib.request.Request(self.url + path if path.startswith("/") else path, data=data, method=m, headers=h)
        try:
            with urllib.request.urlopen(r, timeout=60) as f:
                b = f.read()
                return f.status, b if raw else (json.loads(b) if b else None), dict(f.headers)
        except urllib.error.HTTPError as e:
            b = e.read()
            try:
                return e.code, json.loads(b), dict(e.headers)
            except Exception:
                return e.code, b, dict(e.headers)

    def sql(self, query):
        """Rows of a query on this server's queue database (SQLite file or PostgreSQL), as tuples of ints/strings."""
        if "KILN_QUEUE" in self.env:
            out = subprocess.run(["psql", self.env["KILN_QUEUE"], "-AtF", "\t", "-c", query], capture_output=True,
                                 text=True, check=True).stdout
            conv = lambda v: int(v) if re.fullmatch(r"-?[0-9]+", v) else v
            return [tuple(conv(v) for v in line.split("\t")) for line in out.splitlines() if line]
        import sqlite3
        db = sqlite3.connect(os.path.join(self.home, "queue.db"))
        try:
            return db.execute(query).fetchall()
        finally:
            db.close()

    def job(self, jid):
        return self.req("GET", "/v1/jobs/" + jid)[1]

    def wait(self, jid, cond, timeout=60):
        """Polls the job until cond(job) holds; returns the job (or the last seen)."""
        deadline = time.time() + timeout
        j = self.job(jid)
        while time.time() < deadline and not cond(j):
            time.sleep(0.05)
            j = self.job(jid)
        return j

    def wait_end(self, jid, timeout=60):
        return self.wait(jid, lambda j: j["state"] in ("succeeded", "failed", "cancelled"), timeout)

    def fn_stats(self, name):
        s, b, _ = self.req("GET", "/v1/functions/" + name)
        return b["stats"]

    def kill9(self):
        self.p.kill()
        self.p.wait()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.p.kill()


