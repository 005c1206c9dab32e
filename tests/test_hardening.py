#!/usr/bin/env python3
"""test_hardening.py — the defects of issue 12, each against a real
`kiln serve` on loopback: requests whose echoed text is not valid UTF-8 (or
is cut inside a character) must get a JSON error and leave the server up;
the store's statuses (400/404/409/413/507); presign and wait validation;
webhook URLs; half-open connections that must not lock anyone out.
Requests are written on raw sockets so that any byte can be sent.
usage: test_hardening.py KILN"""
import json, os, socket, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kilnt
from kilnt import Server, check, until

KILN = kilnt.KILN = os.path.abspath(sys.argv[1])
T = tempfile.mkdtemp(prefix="kiln-hard-")

CONFIG = """
inline_max_bytes: 100000
max_upload_bytes: 1000000
functions:
  noop: {idle_timeout_s: 1, max_workers: 1}
"""


def raw(srv, head, body=b"", timeout=20):
    """Sends head (bytes, without the blank line) and body; returns
    (status, parsed JSON body or raw bytes, headers dict)."""
    host, port = srv.url[len("http://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as so:
        so.sendall(head + b"\r\nConnection: close\r\n\r\n" + body)
        buf = b""
        while True:
            try:
                d = so.recv(65536)
            except socket.timeout:
                break
            if not d:
                break
            buf += d
    if not buf:
        return None, None, {}
    hd, _, b = buf.partition(b"\r\n\r\n")
    lines = hd.decode("latin-1").split("\r\n")
    st = int(lines[0].split()[1])
    hs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hs[k.strip().lower()] = v.strip()
    if "chunked" in hs.get("transfer-encoding", ""):
        out, rest = b"", b
        while rest:
            n, _, rest = rest.partition(b"\r\n")
            n = int(n, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        b = out
    try:
        return st, json.loads(b), hs
    except Exception:
        return st, b, hs


def req_line(method, path, srv, auth=True, extra=b""):
    h = method.encode() + b" " + path + b" HTTP/1.1\r\nHost: x"
    if auth:
        h += b"\r\nAuthorization: Bearer " + srv.tok.encode()
    return h + extra


def is_error(b, code=None):
    return isinstance(b, dict) and "error" in b and (code is None or b["error"]["code"] == code)


try:
    A = Server(os.path.join(T, "a"), CONFIG)

    # --- item 1: text that is not UTF-8, unauthenticated and authenticated
    cases = [
        ("object key %ff, no token", b"GET", b"/v1/objects/%ff/x", False, b"", 400, "bad_key"),
        ("object key %c3 (a cut character), no token", b"PUT", b"/v1/objects/a%c3/x", False, b"", 400, "bad_key"),
        ("object key of 200 e-acutes (cut at %.80s)", b"GET", b"/v1/objects/a/" + b"%c3%a9" * 200 + b"/..", False, b"", 400, "bad_key"),
        ("job id %ff", b"GET", b"/v1/jobs/%ff%fe", True, b"", 404, "not_found"),
        ("job id of e-acutes", b"GET", b"/v1/jobs/" + b"%c3%a9" * 30, True, b"", 404, "not_found"),
        ("job events, bad id", b"GET", b"/v1/jobs/%ff/events", True, b"", 404, "not_found"),
        ("function name %ff", b"GET", b"/v1/functions/%ff", True, b"", 404, "unknown_function"),
        ("function name of e-acutes", b"POST", b"/v1/functions/" + b"%c3%a9" * 40 + b"/spawn", True, b"", 404, "unknown_function"),
        ("query value state=%ff", b"GET", b"/v1/jobs?state=%ff", True, b"", 400, "bad_param"),
        ("query value since=%ff", b"GET", b"/v1/usage?since=%ff", True, b"", 400, "bad_param"),
        ("no route, path %ff", b"GET", b"/v1/%ff", True, b"", 404, "not_found"),
        ("no route, 600 e-acutes", b"GET", b"/v1/" + b"%c3%a9" * 600, True, b"", 404, "not_found"),
        ("unauthenticated, path %ff", b"GET", b"/v1/jobs/%ff", False, b"", 401, "unauthorized"),
    ]
    for name, m, path, auth, body, st, code in cases:
        extra = b"\r\nContent-Length: %d" % len(body) if body else b""
        s, b, _ = raw(A, req_line(m.decode(), path, A, auth, extra), body)
        check(f"{name}: {st} {code}", s == st and is_error(b, code), (s, b))
        check(f"{name}: server still up", A.p.poll() is None)

    def spawn_body(body):
        return raw(A, req_line("POST", b"/v1/functions/reframe/spawn", A, True,
                               b"\r\nContent-Type: application/json\r\nContent-Length: %d" % len(body)), body)

    s, b, _ = spawn_body(b'{"input":"x","params":{"\xff\xfe":1}}')
    check("JSON body with a member name not UTF-8: 400 bad_json", s == 400 and is_error(b, "bad_json"), (s, b))
    s, b, _ = spawn_body(json.dumps({"input": "in/x.mp4", "params": {"\u00e9" * 300: 1}}).encode())
    check("unknown parameter name of 300 e-acutes: 400, message valid", s == 400 and is_error(b, "bad_param"), (s, b))
    s, b, _ = spawn_body(json.dumps({"input": "in/x.mp4", "params": {"mode": "\u00e9" * 300}}).encode())
    check("enum value of 300 e-acutes: 400", s == 400 and is_error(b, "bad_param"), (s, b))
    s, b, _ = spawn_body(json.dumps({"input": "\u00e9" * 600}).encode())
    check("input key of 600 e-acutes: 400 bad_key naming its length", s == 400 and is_error(b, "bad_key")
          and "1200 bytes" in b["error"]["message"], (s, b))

    # 416 on a presigned GET with a Range that is not text
    s, b, _ = A.req("PUT", "/v1/objects/in/r.bin", b"0123456789")
    check("upload for ranges", s == 201, (s, b))
    s, b, _ = A.req("POST", "/v1/objects/in/r.bin/presign", {"method": "GET", "ttl": 300})
    url = b["url"].encode()
    for rng in (b"bytes=\xff", b"bytes=\xc3", b"\xff\xfe" * 100, b"bytes=99-"):
        s, b, h = raw(A, req_line("GET", url, A, False, b"\r\nRange: " + rng))
        check(f"Range {rng[:12]!r}: 416 bad_range with Content-Range", s == 416 and is_error(b, "bad_range")
              and h.get("content-range") == "bytes */10", (s, b, h))
    check("server up after the 416s", A.p.poll() is None)

    # --- item 6: keys, the right statuses
    s, b, _ = raw(A, req_line("GET", b"/v1/objects/" + b"k" * 5000, A))
    check("5000-byte key: 400 naming 5000 bytes", s == 400 and is_error(b, "bad_key") and "5000 bytes" in b["error"]["message"], (s, b))
    s, b, _ = A.req("PUT", "/v1/objects/in/" + "s" * 256, b"x")
    check("segment of 256 bytes: 400 bad_key", s == 400 and is_error(b, "bad_key") and "255" in b["error"]["message"], (s, b))
    s, b, _ = A.req("PUT", "/v1/objects/in/" + "s" * 255, b"x")
    check("segment of 255 bytes: 201", s == 201, (s, b))
    s, b, _ = A.req("PUT", "/v1/objects/col/a", b"x")
    s, b, _ = A.req("PUT", "/v1/objects/col/a/b", b"x")
    check("file then file/child: 409 conflict", s == 409 and is_error(b, "conflict"), (s, b))
    s, b, _ = A.req("PUT", "/v1/objects/col2/a/b", b"x")
    s, b, _ = A.req("PUT", "/v1/objects/col2/a", b"x")
    check("folder then a file of its name: 409 conflict", s == 409 and is_error(b, "conflict"), (s, b))
    s, b, _ = A.req("GET", "/v1/objects/col2/a")
    check("GET of a folder: 404", s == 404 and is_error(b, "not_found"), (s, b))
    s, b, _ = A.req("GET", "/v1/objects/col/a/b")
    check("GET below a file: 404", s == 404 and is_error(b, "not_found"), (s, b))
    s, b, _ = A.req("DELETE", "/v1/objects/col/nothing")
    check("DELETE of nothing: 404", s == 404 and is_error(b, "not_found"), (s, b))

    # over-limit Content-Length refused before the body is read
    host, port = A.url[7:].split(":")
    so = socket.create_connection((host, int(port)), timeout=10)
    so.sendall(req_line("PUT", b"/v1/objects/in/big", A, True, b"\r\nContent-Length: 50000000\r\n\r\n"))
    got = so.recv(65536)
    so.close()
    check("PUT with Content-Length over the limit: 413 before the body", got.startswith(b"HTTP/1.1 413") and b"too_large" in got, got[:200])
    so = socket.create_connection((host, int(port)), timeout=10)
    so.sendall(req_line("POST", b"/v1/functions/noop/spawn", A, True, b"\r\nContent-Length: 90000000\r\n\r\n"))
    got = so.recv(65536)
    so.close()
    check("spawn with Content-Length over the limit: 413 before the body", got.startswith(b"HTTP/1.1 413") and b"too_large" in got, got[:200])

    # presign bodies
    for body, what in ((b'{"method":"GET","bogus":1}', "unknown member"), (b'{"method":5}', "method not a string"),
                       (b'{"method":"POST"}', "method POST"), (b'[1]', "not an object"), (b'{"ttl":"9"}', "ttl a string")):
        s, b, _ = A.req("POST", "/v1/objects/in/r.bin/presign", body)
        check(f"presign with {what}: 400", s == 400 and is_error(b), (s, b))

    # wait values on call
    for w in ("nan", "inf", "-1", "abc", "1e9", "", "5x"):
        s, b, _ = A.req("POST", "/v1/functions/noop/call?wait=" + w, {"params": {}})
        check(f"call ?wait={w}: 400 bad_param", s == 400 and is_error(b, "bad_param") and "wait" in b["error"]["message"], (s, b))

    # webhook URLs
    for hook in ("http://", "https://", "http://a\r\nX: y", "http://exa mple.com/", "ftp://x", "http://:80/", "http:///path"):
        s, b, _ = A.req("POST", "/v1/functions/noop/spawn", {"params": {}, "webhook": hook})
        check(f"webhook {hook!r}: 400", s == 400 and is_error(b, "bad_request") and "webhook" in b["error"]["message"], (s, b))
    s, b, _ = A.req("POST", "/v1/functions/noop/spawn", {"params": {}, "webhook": "http://127.0.0.1:9/hook?a=1"})
    check("a good webhook URL is accepted", s == 202, (s, b))

    # GETs racing DELETEs (and PUTs) of the same key: each answer is 200 with the whole object or 404, never 500
    import concurrent.futures
    body = b"r" * 300000
    stop = time.time() + 4
    def putdel():
        n = 0
        while time.time() < stop:
            A.req("PUT", "/v1/objects/race/x.bin", body)
            A.req("DELETE", "/v1/objects/race/x.bin")
            n += 1
        return n
    def getter():
        seen = {}
        while time.time() < stop:
            st, b, _ = A.req("GET", "/v1/objects/race/x.bin", raw=True)
            k = st if st != 200 or b == body else "200-partial"
            seen[k] = seen.get(k, 0) + 1
        return seen
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        fs = [ex.submit(putdel)] + [ex.submit(getter) for _ in range(3)]
        res = [f.result() for f in fs]
    seen = {}
    for d in res[1:]:
        for k, v in d.items():
            seen[k] = seen.get(k, 0) + v
    check("GET racing DELETE: only 200 (whole) and 404, both seen", set(seen) == {200, 404} and res[0] > 5, (res[0], seen))

    # upscale's model over the API: a catalog name only, never a path, and never the server's paths in messages
    for m in ("/etc/passwd", "../../x", "./m", "models/x", ".hidden", "a b", "x" * 65):
        s, b, _ = A.req("POST", "/v1/functions/upscale/spawn", {"params": {"model": m}, "input": "in/none.png"})
        check(f"upscale model {m[:20]!r} over the API: 400 bad_param naming 'model', not echoing it",
              s == 400 and is_error(b, "bad_param") and "'model'" in b["error"]["message"] and m not in b["error"]["message"], (s, b))
    fake = os.path.join(A.home, "models", "fake")
    os.makedirs(fake, exist_ok=True)
    with open(os.path.join(fake, "fake.param"), "w") as f:
        f.write("not a param file\n")
    with open(os.path.join(fake, "fake.bin"), "wb") as f:
        f.write(b"\0" * 16)
    with open(os.path.join(fake, "manifest.json"), "w") as f:
        json.dump({"files": [{"file": "fake.param", "bytes": 17}, {"file": "fake.bin", "bytes": 16}]}, f)
    png = subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=16x16", "-frames:v", "1", "-f", "image2pipe",
                          "-c:v", "png", "-"], capture_output=True).stdout
    s, b, _ = A.req("PUT", "/v1/objects/in/tiny.png", png)
    s, b, _ = A.req("POST", "/v1/functions/upscale/spawn", {"params": {"model": "fake"}, "input": "in/tiny.png"})
    j = A.wait_end(b["job_id"], 120) if s == 202 else {}
    msg = json.dumps(j.get("error", {}))
    check("a damaged catalog model: the job fails naming models/fake/, not the server's folder",
          j.get("state") == "failed" and "models/fake/fake.param" in msg and A.home not in msg, (s, j))

    check("server up at the end", A.p.poll() is None)

    # a full disk: the store on a 256 KiB tmpfs, in a mount namespace of the server's own (root, or a user namespace)
    full_home = os.path.join(T, "full")
    # found by tests/fuzz/fuzz_http: a request to /health with a body was dropped without an answer (MHD cannot
    # answer in the middle of a body: the handler returned MHD_NO)
    for m, st in (("GET", 200), ("POST", 405)):
        s, b, _ = raw(A, req_line(m, b"/health", A, False, b"\r\nContent-Length: 5"), b"hello")
        check(f"{m} /health with a body: {st}", s == st, (s, b))

    os.makedirs(os.path.join(full_home, "store"), exist_ok=True)
    mnt = f'mount -t tmpfs -o size=256k tmpfs "{full_home}/store" && exec "$0" "$@"'
    wrap = ["unshare", "-m", "sh", "-c", mnt] if os.geteuid() == 0 else ["unshare", "-Urm", "sh", "-c", mnt]
    F = Server(full_home, CONFIG, wrap=wrap)
    s, b, _ = F.req("PUT", "/v1/objects/in/small.bin", b"s" * 1000)
    check("full-disk store: a small PUT still fits (201)", s == 201, (s, b))
    s, b, _ = F.req("PUT", "/v1/objects/in/big.bin", b"b" * 900000)
    check("full-disk store: PUT past the free space is 507 insufficient_storage", s == 507 and is_error(b, "insufficient_storage"), (s, b))
    s, b, _ = F.req("GET", "/v1/objects/in/big.bin")
    check("nothing left of the refused PUT", s == 404, (s, b))
    s, b, _ = F.req("PUT", "/v1/objects/in/small2.bin", b"t" * 1000)
    check("the space of the refused PUT is freed again (201)", s == 201, (s, b))
    F.stop()

    # a damaged tokens.json: 500 naming the cause (not a silent 401), then no start, and `kiln token` says so
    tf = os.path.join(A.home, "tokens.json")
    good = open(tf).read()
    for bad in ('[{"name": "t", "sha2', '{"not": "an array"}', '[{"name": "t"}]'):
        with open(tf, "w") as f:
            f.write(bad)
        s, b, _ = A.req("GET", "/v1/jobs")
        check(f"damaged token file {bad[:12]!r}: 500 internal, not 401", s == 500 and is_error(b, "internal")
              and "token file" in b["error"]["message"] and A.home not in b["error"]["message"], (s, b))
    A.stop()
    p = subprocess.run([KILN, "serve", "--listen", "127.0.0.1:0"], env=A.env, capture_output=True, text=True, timeout=30)
    check("kiln serve refuses to start on a damaged token file, naming it", p.returncode != 0 and "tokens.json" in p.stderr
          and "damaged" in p.stderr, (p.returncode, p.stderr[-300:]))
    for args in (["token", "list"], ["token", "create", "--name", "x"], ["token", "revoke", "t"]):
        p = subprocess.run([KILN] + args, env=A.env, capture_output=True, text=True, timeout=30)
        check(f"kiln {' '.join(args)} on a damaged token file: non-zero, naming it", p.returncode != 0 and "tokens.json" in p.stderr,
              (p.returncode, p.stderr[-300:]))
    with open(tf, "w") as f:
        f.write(good)
finally:
    for srv in kilnt.servers:
        srv.stop()

sys.exit(kilnt.done())
