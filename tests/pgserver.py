"""tests/pgserver.py — a throwaway PostgreSQL server for tests and benchmarks:
Debian's `postgresql` binaries (initdb + pg_ctl) in a temporary folder, on a
free loopback port, trust authentication for the one user `kiln`. As root
the server runs as the `postgres` system user (initdb refuses root).

    with PgServer() as pg:          pg.url -> postgres://kiln@127.0.0.1:PORT/kiln
        pg.restart()                 (stop -m fast, start again: the same data)
    python3 tests/pgserver.py -- CMD ARGS...   runs CMD with $KILN_TEST_QUEUE set

A missing server binary raises PgError naming the package to install; a
test that needs it fails, never skips."""
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kilnt import free_port  # noqa: E402


class PgError(Exception):
    pass


def bindir():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    ctl = shutil.which("pg_ctl")
    if ctl and os.path.exists(os.path.join(os.path.dirname(os.path.realpath(ctl)), "initdb")):
        return os.path.dirname(os.path.realpath(ctl))
    raise PgError("PostgreSQL's server binaries (initdb, pg_ctl) are missing: apt-get install postgresql"
                  " (scripts/deps installs it)")


class PgServer:
    def __init__(self, port=None, host="127.0.0.1", wrap=None):
        self.wrap = list(wrap or [])                 # the server runs under it (ip netns exec NS)
        self.bin = bindir()
        self.port = port or free_port()
        self.host = host
        self.dir = tempfile.mkdtemp(prefix="kiln-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "log")
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.url = f"postgres://kiln@{host}:{self.port}/kiln"

    def _run(self, args, check=True):
        cmd = [os.path.join(self.bin, args[0])] + args[1:]
        if self.user:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        if args[0] == "pg_ctl":
            cmd = self.wrap + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            tail = ""
            if os.path.exists(self.log):
                tail = open(self.log, errors="replace").read()[-1500:]
            raise PgError(f"{' '.join(args[:2])} failed ({r.returncode}): {r.stderr.strip()[-800:]} {tail}")
        return r

    def start(self):
        opts = (f"-p {self.port} -c listen_addresses='{self.host}' -k {self.dir} -c fsync=on"
                " -c max_connections=200 -c shared_buffers=64MB")
        self._run(["pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o", opts, "start"])

    def stop(self, mode="fast"):
        self._run(["pg_ctl", "-D", self.data, "-m", mode, "-w", "stop"], check=False)

    def restart(self):
        self.stop()
        self.start()

    def __enter__(self):
        self._run(["initdb", "-D", self.data, "-U", "kiln", "-A", "trust", "-E", "UTF8", "--no-sync"])
        if self.host not in ("127.0.0.1", "localhost"):      # other hosts (test namespaces) connect too
            with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
                f.write("host all all 0.0.0.0/0 trust\n")
        self.start()
        self._run(["createdb", "-h", self.dir, "-p", str(self.port), "-U", "kiln", "kiln"])
        return self

    def psql(self, sql):
        r = self._run(["psql", "-h", self.dir, "-p", str(self.port), "-U", "kiln", "-d", "kiln", "-Atc", sql])
        return r.stdout

    def __exit__(self, *a):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        sys.exit("usage: python3 tests/pgserver.py -- CMD ARGS... (runs CMD with KILN_TEST_QUEUE set)")
    try:
        with PgServer() as pg:
            env = dict(os.environ, KILN_TEST_QUEUE=pg.url)
            sys.exit(subprocess.run(args, env=env).returncode)
    except PgError as e:
        sys.exit(f"pgserver: {e}")
