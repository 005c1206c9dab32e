#!/usr/bin/env bash
# test_serve.sh — `kiln serve` on a free loopback port, through real HTTP:
# /health, auth (none, wrong, valid token), streaming upload and download,
# Range (206, 416), bad keys (400), upload over the limit (413, nothing
# stored), presigned URLs (works without a token; 403 when tampered, for
# another method, or expired), DELETE, and a clean exit on SIGTERM.
set -u
KILN=${1:?usage: test_serve.sh KILN}
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-serve-XXXXXX")
export KILN_HOME="$T/home"
spid=""
trap '[ -n "$spid" ] && kill "$spid" 2>/dev/null; rm -rf "$T"' EXIT
tok=$("$KILN" token create --name test 2>/dev/null) || { echo "cannot create a token"; exit 1; }
. "$(dirname "$0")/serve_lib.sh"
start_serve --max-upload 2000000

python3 - "$url" "$tok" <<'PY'
import json, sys, time, urllib.request, urllib.error
base, tok = sys.argv[1], sys.argv[2]
passed = failed = 0
def check(name, cond, info=""):
    global passed, failed
    if cond: passed += 1
    else:
        failed += 1; print(f"  FAIL: {name} {info}", file=sys.stderr)
def req(m, path, data=None, headers={}):
    r = urllib.request.Request(base + path, data=data, method=m, headers=headers)
    try:
        with urllib.request.urlopen(r, timeout=30) as f: return f.status, f.read(), dict(f.headers)
    except urllib.error.HTTPError as e: return e.code, e.read(), dict(e.headers)
def err(b):
    try: return json.loads(b)["error"]
    except Exception: return {}
A = {"Authorization": "Bearer " + tok}

s, b, _ = req("GET", "/health")
check("health", s == 200 and json.loads(b) == {"status": "ok", "service": "kiln", "version": json.loads(b)["version"]}, b)
s, b, _ = req("PUT", "/v1/objects/in/a.bin", b"x")
check("no token: 401 JSON", s == 401 and err(b).get("code") == "unauthorized" and "Bearer" in err(b).get("message", ""), b)
s, b, _ = req("PUT", "/v1/objects/in/a.bin", b"x", {"Authorization": "Bearer kiln_" + "0" * 64})
check("wrong token: 401, token not echoed", s == 401 and b"kiln_000" not in b, b)

data = bytes(range(256)) * 6000                    # 1.5 MB, sent in one streaming body
s, b, _ = req("PUT", "/v1/objects/in/a.bin", data, A)
check("upload 201", s == 201 and json.loads(b) == {"key": "in/a.bin", "bytes": len(data)}, b)
s, b, h = req("GET", "/v1/objects/in/a.bin", None, A)
check("download identical", s == 200 and b == data and h.get("Accept-Ranges") == "bytes", (s, len(b)))
s, b, h = req("GET", "/v1/objects/in/a.bin", None, dict(A, Range="bytes=1000-1099"))
check("range 206", s == 206 and b == data[1000:1100] and h.get("Content-Range") == f"bytes 1000-1099/{len(data)}", (s, h))
s, b, h = req("GET", "/v1/objects/in/a.bin", None, dict(A, Range="bytes=-10"))
check("suffix range", s == 206 and b == data[-10:], s)
s, b, h = req("GET", "/v1/objects/in/a.bin", None, dict(A, Range=f"bytes={len(data)}-"))
check("range past the end: 416", s == 416 and h.get("Content-Range") == f"bytes */{len(data)}" and err(b).get("code") == "bad_range", (s, b))
s, b, _ = req("GET", "/v1/objects/in/%2e%2e/secret", None, A)
check("'..' key: 400 naming it", s == 400 and "'..'" in err(b).get("message", ""), b)
s, b, _ = req("GET", "/v1/objects/in/none.bin", None, A)
check("missing object: 404", s == 404 and err(b).get("code") == "not_found", b)
# Refused from its headers, before the body: send them alone, read the answer.
import http.client, urllib.parse
u = urllib.parse.urlsplit(base)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
c.putrequest("PUT", "/v1/objects/in/big.bin")
for k, v in dict(A, **{"Content-Length": "2500000"}).items(): c.putheader(k, v)
c.endheaders()
r = c.getresponse(); s, b = r.status, r.read(); c.close()
check("over the upload limit: 413 before the body", s == 413 and err(b).get("code") == "too_large", (s, b[:200]))
s, b, _ = req("GET", "/v1/objects/in/big.bin", None, A)
check("nothing stored from the refused upload", s == 404, s)

s, b, _ = req("POST", "/v1/objects/in/a.bin/presign", b'{"method":"GET","ttl":300}', A)
u = json.loads(b).get("url", "") if s == 200 else ""
check("presign", s == 200 and u.startswith("/v1/objects/in/a.bin?method=GET&expires="), b)
s, b, _ = req("GET", u)
check("presigned GET works without a token", s == 200 and b == data, s)
bad = u[:-1] + ("0" if u[-1] != "0" else "1")
s, b, _ = req("GET", bad)
check("tampered signature: 403", s == 403 and err(b).get("code") == "forbidden", b)
s, b, _ = req("PUT", u, b"overwrite")
check("a GET URL cannot PUT: 403", s == 403, s)
s, b, _ = req("POST", "/v1/objects/in/a.bin/presign", b'{"method":"GET","ttl":1}', A)
short = json.loads(b)["url"]
deadline = time.time() + 5
while time.time() < deadline and req("GET", short)[0] == 200:
    time.sleep(0.1)                                  # polling for the expiry, bounded
s, b, _ = req("GET", short)
check("expired URL: 403 saying so", s == 403 and "expired" in err(b).get("message", ""), b)
s, b, _ = req("POST", "/v1/objects/in/a.bin/presign", b'{"method":', A)
check("malformed JSON: 400 naming the position", s == 400 and "line 1" in err(b).get("message", ""), b)
s, b, _ = req("POST", "/v1/objects/in/up.bin/presign", b'{"method":"PUT","ttl":60}', A)
pu = json.loads(b)["url"]
s, b, _ = req("PUT", pu, b"via presigned put")
check("presigned PUT", s == 201 and req("GET", "/v1/objects/in/up.bin", None, A)[1] == b"via presigned put", (s, b))
s, b, _ = req("DELETE", "/v1/objects/in/up.bin", None, A)
check("delete", s == 200 and req("GET", "/v1/objects/in/up.bin", None, A)[0] == 404, s)
s, b, _ = req("GET", "/v2/nothing", None, A)
check("unknown route: 404 JSON", s == 404 and err(b).get("code") == "not_found", b)
print(f"http: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
py=$?
kill -TERM "$spid"
wait "$spid"; st=$?
spid=""
ok=0; [ $st -eq 0 ] && grep -q "stopping" "$T/serve.err" && ok=1
[ $ok -eq 1 ] || { echo "  FAIL: server exit $st on SIGTERM" >&2; tail -40 "$T/serve.err" >&2; }
if [ $py -eq 0 ] && [ $ok -eq 1 ]; then echo "2 passed, 0 failed"; exit 0; fi
echo "$(( (py == 0) + ok )) passed, $(( (py != 0) + (1 - ok) )) failed"; exit 1
