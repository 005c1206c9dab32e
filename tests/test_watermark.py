#!/usr/bin/env python3
"""test_watermark.py — remove_watermark over HTTP, through a real `kiln serve`:

- the contract hosted platforms' clients use: POST /v1/functions/remove_watermark/call
  with {"video_bytes": BASE64, "mode": ..., "platform": ...} answers
  {"video_bytes": BASE64, "stats": {...}, "cost": {...}}: the output is a video with the
  same frames and the audio, the stats name the mark found with its time range;
- over the inline limit: 413 naming the upload route; bad base64 and unknown
  parameters: 400 naming the field;
- the key-based form split into 2 chunks: detection runs once in the planner and
  every chunk removes the same mark (the chunk specs carry `detected`).

The clip: FFmpeg's testsrc2 scrolling diagonally (a pan: everything moves) with an opaque white box
drawn on it and a tone; the box's pixels are white (235) in the input and must
not be after removal.

usage: test_watermark.py KILN"""
import base64, json, os, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kilnt
from kilnt import Server, check

KILN = kilnt.KILN = os.path.abspath(sys.argv[1])
T = tempfile.mkdtemp(prefix="kiln-wm-")
BOX = (230, 186, 64, 34)        # x, y, w, h of the drawn mark

CONFIG = """
inline_max_bytes: 1000000
slots: {cpu: 4}
functions:
  remove_watermark: {cpus: 1, max_workers: 2, idle_timeout_s: 20}
  join: {idle_timeout_s: 20}
"""


def run(*a):
    return subprocess.run(list(a), capture_output=True, text=True, check=True)


def box_mean(path, frame):
    """Mean luma inside BOX (shrunk by 3 px, the mark's own pixels) of one frame."""
    x, y, w, h = BOX
    out = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", path, "-vf",
                          f"select=eq(n\\,{frame}),crop={w - 6}:{h - 6}:{x + 3}:{y + 3},format=gray",
                          "-frames:v", "1", "-f", "rawvideo", "-"], capture_output=True).stdout
    return sum(out) / len(out) if out else -1


def probe(path):
    o = json.loads(run("ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", path).stdout)
    v = [s for s in o["streams"] if s["codec_type"] == "video"]
    a = [s for s in o["streams"] if s["codec_type"] == "audio"]
    return int(v[0]["nb_read_frames"]) if v else 0, len(a)


try:
    clip = os.path.join(T, "clip.mp4")
    x, y, w, h = BOX
    run("ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25", "-f", "lavfi", "-i",
        "sine=frequency=440:sample_rate=44100", "-t", "4", "-vf", f"scroll=h=0.005:v=0.002,drawbox=x={x}:y={y}:w={w}:h={h}:color=white@1:t=fill",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac",
        "-shortest", "-y", clip)
    check("the input's mark is white", box_mean(clip, 50) > 220, box_mean(clip, 50))
    data = open(clip, "rb").read()
    A = Server(os.path.join(T, "a"), CONFIG)

    # --- the video_bytes contract
    s, b, _ = A.req("POST", "/v1/functions/remove_watermark/call?wait=120",
                    {"video_bytes": base64.b64encode(data).decode(), "mode": "inpaint", "platform": "auto"})
    ok = check("video_bytes call: 200 with video_bytes and stats", s == 200 and isinstance(b, dict) and "video_bytes" in b
               and "stats" in b, (s, str(b)[:400]))
    if ok:
        out = os.path.join(T, "out.mp4")
        open(out, "wb").write(base64.b64decode(b["video_bytes"]))
        frames, audio = probe(out)
        check("the output has the input's 100 frames and its audio", frames == 100 and audio == 1, (frames, audio))
        st = b["stats"]
        regs = st.get("regions", [])
        check("stats: the mark found, with its time range", st.get("watermarks_found", 0) >= 1 and regs
              and any(r["x"] <= x + 2 and r["x"] + r["w"] >= x + w - 2 and r["y"] <= y + 2 and r["y"] + r["h"] >= y + h - 2
                      and r["start"] <= 0.5 and r["end"] >= 3.5 for r in regs), st)
        check("stats: frames, ms per frame; the answer has the cost", st.get("frames") == 100 and st.get("ms_per_frame", 0) > 0
              and "usd" in b.get("cost", {}), (st, b.get("cost")))
        m = box_mean(out, 50)
        check("the mark is gone from the output (its pixels are no longer white)", 0 <= m < 170, m)

    # --- refusals name the field
    s, b, _ = A.req("POST", "/v1/functions/remove_watermark/call", {"video_bytes": base64.b64encode(os.urandom(1100000)).decode()})
    check("video_bytes over the inline limit: 413 naming the upload route", s == 413 and "PUT /v1/objects" in b["error"]["message"]
          and "video_bytes" in b["error"]["message"], (s, b))
    s, b, _ = A.req("POST", "/v1/functions/remove_watermark/call", {"video_bytes": "not base64!"})
    check("bad base64: 400 naming video_bytes", s == 400 and "video_bytes" in b["error"]["message"], (s, b))
    s, b, _ = A.req("POST", "/v1/functions/remove_watermark/call", {"video_bytes": "AAAA", "strength": 3})
    check("unknown parameter in the flat form: 400 naming it", s == 400 and "strength" in b["error"]["message"], (s, b))
    s, b, _ = A.req("POST", "/v1/functions/remove_watermark/call?wait=60",
                    {"video_bytes": base64.b64encode(b"this is not a video" * 20).decode()})
    check("not a video: 400 bad_input with the job's message", s == 400 and b["error"]["code"] == "bad_input", (s, b))

    # --- the key-based form, split in 2 chunks: detection once, the same mark removed in both
    A.req("PUT", "/v1/objects/in/clip.mp4", data)
    s, b, _ = A.req("POST", "/v1/functions/remove_watermark/spawn",
                    {"input": "in/clip.mp4", "params": {"keyint": 1}, "plan": {"chunks": 2}})
    j = A.wait_end(b["job_id"], 180) if s == 202 else {}
    ok = check("chunked job succeeds in 2 chunks", j.get("state") == "succeeded" and (j.get("plan") or {}).get("chunks") == 2,
               (s, j.get("state"), j.get("error"), j.get("plan")))
    if ok:
        s, raw, _ = A.req("GET", j["result"]["outputs"][0]["url"], token=False, raw=True)
        out2 = os.path.join(T, "out2.mp4")
        open(out2, "wb").write(raw)
        frames, audio = probe(out2)
        check("chunked output: 100 frames and the audio", frames == 100 and audio == 1, (frames, audio))
        m1, m2 = box_mean(out2, 20), box_mean(out2, 80)
        check("the mark is gone in both chunks", 0 <= m1 < 170 and 0 <= m2 < 170, (m1, m2))
        st = j["result"].get("stats") or {}
        regs = st.get("regions") or []
        check("the chunked job's stats list the regions found, with their time ranges",
              st.get("watermarks_found", 0) >= 1 and len(regs) == st.get("watermarks_found")
              and all(r.get("end", 0) > r.get("start", -1) and r.get("source") == "detected" for r in regs), st)
    log = open(os.path.join(T, "a", "serve.log")).read()
    check("the planner ran detection (no prepare failure logged)", "prepare failed" not in log, log[-800:])
finally:
    for sv in kilnt.servers:
        sv.stop()
    shutil.rmtree(T, ignore_errors=True)

sys.exit(kilnt.done())
