#!/usr/bin/env python3
"""test_memory.py — issue 12's "Memory" through a real `kiln serve`: a job
over its function's memory_mb fails as out_of_memory, is retried once (in a
fresh worker) and no more, and the server keeps answering and running other
jobs; inputs over the pixel budget fail as bad_input at once (one attempt),
naming their size and the limit: a 16000x16000 PNG (a few KB), a
30000x30000 one (it was "truncated"), an mp4 whose sample description
claims 65535x65535 (it was internal, retried), upscale to 16384x16384;
and `kiln run`'s own budget (default, $KILN_MAX_PIXELS, --max-pixels).
Every input is made here. In a sanitizer build memory_mb is not enforced
(the worker says so), so the out_of_memory case is skipped there.
usage: test_memory.py KILN"""
import os, struct, subprocess, sys, tempfile, zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kilnt
from kilnt import Server, check, pid_alive

KILN = kilnt.KILN = os.path.abspath(sys.argv[1])
T = tempfile.mkdtemp(prefix="kiln-mem-")
FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "nn", "tiny")

CONFIG = """
lease_s: 2
retry_delay_s: 0.2
retry_max_delay_s: 1
limits: {max_pixels: 4096x4096}
functions:
  reframe: {memory_mb: 40, retries: 3, idle_timeout_s: 1, max_workers: 1, max_chunks: 1}
  overlay: {max_pixels: 1000x1000, idle_timeout_s: 1, max_chunks: 1}
  remove_watermark: {idle_timeout_s: 1, max_chunks: 1}
  upscale: {idle_timeout_s: 1, max_chunks: 1}
"""


def png(path, w, h):
    """A w x h PNG of one colour, 1 bit per pixel (valid: every row is there)."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    c = zlib.compressobj(9)
    row = b"\0" + b"\xff" * ((w + 7) // 8)
    idat = b"".join(c.compress(row) for _ in range(h)) + c.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)) +
                chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def png_claiming(path, w, h):
    """A 16x16 PNG whose IHDR (CRC made again) claims w x h."""
    png(path, 16, 16)
    b = bytearray(open(path, "rb").read())
    struct.pack_into(">II", b, 16, w, h)
    struct.pack_into(">I", b, 29, zlib.crc32(bytes(b[12:29])) & 0xffffffff)
    open(path, "wb").write(b)


def mp4_claiming(path, w, h):
    """A real 64x64 clip whose sample description (stsd's avc1) claims w x h."""
    subprocess.run([KILN, "sample", "bars", path, "--size", "64x64", "--seconds", "0.4"], check=True, capture_output=True)
    b = bytearray(open(path, "rb").read())
    i = b.find(b"avc1", b.find(b"stsd"))           # not ftyp's "avc1" brand
    struct.pack_into(">HH", b, i + 28, w, h)
    open(path, "wb").write(b)


def run(srv, fn, key, path, params, timeout=90):
    s, b, _ = srv.req("PUT", "/v1/objects/" + key, open(path, "rb").read())
    check(f"upload {key}", s == 201, (s, b))
    s, b, _ = srv.req("POST", f"/v1/functions/{fn}/spawn", {"input": key, "params": params})
    check(f"spawn {fn} on {key}", s == 202, (s, b))
    return srv.wait_end(b["job_id"], timeout) if s == 202 else {}


def err(j):
    return (j.get("error") or {}).get("class"), (j.get("error") or {}).get("message", "")


try:
    sanitized = "libasan" in subprocess.run(["ldd", KILN], capture_output=True, text=True).stdout
    A = Server(os.path.join(T, "a"), CONFIG)
    clip = os.path.join(T, "clip.mp4")
    subprocess.run([KILN, "sample", "bars", clip, "--size", "640x360", "--seconds", "1", "--fps", "25"], check=True,
                   capture_output=True)

    # --- memory_mb: reframe's 40 MB cannot hold an x264 encoder and its frames
    if sanitized:
        print("SKIP out_of_memory: memory_mb is not enforced in a sanitizer build")
    else:
        j = run(A, "reframe", "in/clip.mp4", clip, {})
        cls, msg = err(j)
        check("over memory_mb: failed as out_of_memory", j.get("state") == "failed" and cls == "out_of_memory", j)
        check("the message names memory_mb and the setting", "memory_mb of 40 MB" in msg and
              "functions.reframe.memory_mb" in msg, msg)
        check("retried once (in a fresh worker), not forever: 2 attempts of the 4 its retries allow",
              j.get("attempts") == 2, j.get("attempts"))
        log = open(os.path.join(A.home, "serve.log")).read()
        check("the worker that ran out left", log.count("leaving after a task ran out of memory") == 2, log[-2000:])
    s, b, _ = A.req("GET", "/health")
    check("the server still answers /health", s == 200 and b.get("status") == "ok" and A.p.poll() is None, (s, b))
    j = run(A, "overlay", "in/clip2.mp4", clip, {"highlights": [{"frame": 0, "x": 100, "y": 100, "rx": 40, "ry": 40}]})
    check("a job within its defaults still runs (memory_mb enforced)", j.get("state") == "succeeded", j)

    # --- the pixel budget: bad_input, one attempt, the size and the limit named
    big = os.path.join(T, "big.png")
    png(big, 16000, 16000)
    check("the 16000x16000 PNG is small", os.path.getsize(big) < 200000, os.path.getsize(big))
    j = run(A, "overlay", "in/big.png", big, {"highlights": [{"frame": 0, "x": 10, "y": 10, "rx": 5, "ry": 5}]})
    cls, msg = err(j)
    check("16000x16000 PNG: bad_input at once", j.get("state") == "failed" and cls == "bad_input" and j.get("attempts") == 1, j)
    check("16000x16000 PNG: the size and the function's limit named",
          "16000x16000 (256.0 Mpixels)" in msg and "the limit is 1.0 Mpixels (functions.overlay.max_pixels)" in msg, msg)

    huge = os.path.join(T, "huge.png")
    png_claiming(huge, 30000, 30000)
    j = run(A, "remove_watermark", "in/huge.png", huge, {})
    cls, msg = err(j)
    check("30000x30000 PNG: bad_input at once, not 'truncated'", j.get("state") == "failed" and cls == "bad_input" and
          j.get("attempts") == 1 and "truncated" not in msg, j)
    check("30000x30000 PNG: size and limits.max_pixels named",
          "30000x30000 (900.0 Mpixels)" in msg and "the limit is 16.8 Mpixels (limits.max_pixels)" in msg, msg)

    absurd = os.path.join(T, "absurd.mp4")
    mp4_claiming(absurd, 65535, 65535)
    j = run(A, "remove_watermark", "in/absurd.mp4", absurd, {})
    cls, msg = err(j)
    check("mp4 claiming 65535x65535: bad_input, not retried", j.get("state") == "failed" and cls == "bad_input" and
          j.get("attempts") == 1 and "65535x65535" in msg and "declares" in msg, j)

    small = os.path.join(T, "small.png")
    png(small, 64, 64)
    add = subprocess.run([KILN, "models", "add", "tiny", FIXTURE], env=A.env, capture_output=True, text=True)
    check("kiln models add tiny", add.returncode == 0, add.stderr)
    j = run(A, "upscale", "in/small.png", small, {"model": "tiny", "width": 16384, "height": 16384})
    cls, msg = err(j)
    check("upscale to 16384x16384: bad_input at once", j.get("state") == "failed" and cls == "bad_input" and
          j.get("attempts") == 1 and "16384x16384 (268.4 Mpixels)" in msg and "limits.max_output_pixels" in msg, j)
    s, b, _ = A.req("GET", "/health")
    check("the server answers /health at the end", s == 200 and A.p.poll() is None, (s, b))

    # --- a function's own budget above the global one holds for its chunks and its join too
    B = Server(os.path.join(T, "b"), """
limits: {max_pixels: 100x100}
functions:
  overlay: {max_pixels: 640x360, max_output_pixels: 640x360, max_workers: 2, idle_timeout_s: 1}
""")
    s, b, _ = B.req("PUT", "/v1/objects/in/clip.mp4", open(clip, "rb").read())
    s, b, _ = B.req("POST", "/v1/functions/overlay/spawn", {"input": "in/clip.mp4", "plan": {"chunks": 2},
                    "params": {"keyint": 0.2, "highlights": [{"frame": 0, "x": 100, "y": 100, "rx": 40, "ry": 40}]}})
    j = B.wait_end(b.get("job_id", ""), 90) if s == 202 else b
    check("functions.overlay.max_pixels over limits.max_pixels: a chunked job and its join run",
          j.get("state") == "succeeded" and (j.get("plan") or {}).get("chunks") == 2, (j.get("state"), j.get("error"), j.get("plan")))

    # --- kiln run: the default, $KILN_MAX_PIXELS, --max-pixels / --max-output-pixels
    def local(args, env=None):
        r = subprocess.run([KILN, "run"] + args + ["--json", "-q"], capture_output=True, text=True,
                           env=dict(os.environ, **(env or {})))
        try:
            return r.returncode, __import__("json").loads(r.stdout)
        except ValueError:
            return r.returncode, {"stdout": r.stdout, "stderr": r.stderr}
    out = os.path.join(T, "local.mp4")
    rc, o = local(["reframe", big, "-o", out])
    check("kiln run: the default budget", rc != 0 and o.get("error", {}).get("class") == "bad_input" and
          "the limit is 67.1 Mpixels (KILN_MAX_PIXELS)" in o["error"]["message"], o)
    rc, o = local(["reframe", clip, "-o", out], {"KILN_MAX_PIXELS": "100x100"})
    check("kiln run: $KILN_MAX_PIXELS", rc != 0 and "640x360 (0.2 Mpixels); the limit is 10000 pixels (KILN_MAX_PIXELS)"
          in o.get("error", {}).get("message", ""), o)
    rc, o = local(["reframe", clip, "-o", out, "--max-output-pixels", "800x800"])
    check("kiln run: --max-output-pixels", rc != 0 and "810x1440" in o.get("error", {}).get("message", "") and
          "(--max-output-pixels)" in o["error"]["message"], o)
    rc, o = local(["reframe", clip, "-o", out, "--max-pixels", "640x360", "--max-output-pixels", "0"])
    check("kiln run: within --max-pixels, no output limit", rc == 0 and o.get("ok"), o)
    rc, o = local(["reframe", clip, "-o", out, "--max-pixels", "12x"])
    check("kiln run: a bad --max-pixels is a usage error", rc != 0 and "--max-pixels needs a pixel count" in str(o), o)
finally:
    for srv in kilnt.servers:
        srv.stop()
    if kilnt.failed:
        for srv in kilnt.servers:
            print(open(os.path.join(srv.home, "serve.log")).read()[-4000:], file=sys.stderr)
sys.exit(kilnt.done())
