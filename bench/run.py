#!/usr/bin/python3
"""bench/run.py — kiln against the tools teams use today, on this machine.

Prints markdown tables (paste them into bench/README.md):
  1. reframe: `kiln run reframe` vs the ffmpeg CLI doing the same animated
     crop + scale to 810x1440 + x264 encode (ffmpeg's crop is whole-pixel;
     kiln's is sub-pixel).
  2. overlay: `kiln run overlay` vs bench/overlay_opencv.py (OpenCV
     VideoCapture + numpy + a piped ffmpeg encoder), at x264 presets fast
     and veryfast.
  3. peak RSS of `kiln run reframe` on 1080p inputs of 1 and 5 minutes.
Both sides of every comparison use the same x264 settings (crf 20, preset,
yuv420p, +faststart) and the same thread count; each figure is the median
of --runs runs, the two sides run alternately. Inputs: a generated 1080p clip (kiln's coordinate pattern
with a tone) and vtest.avi (opencv-doc) scaled to 1080p.

usage: bench/run.py [--runs 5] [--threads 2] [--frames 200] [--skip-rss] [--kiln build/kiln]"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def timed(cmd):
    t0 = time.monotonic()
    sh(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t0


def peak_rss_mb(cmd):
    r = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, check=True)
    return int(r.stderr.strip().splitlines()[-1]) / 1024.0


def frames_of(kiln, path):
    d = json.loads(subprocess.run([kiln, "probe", "--json", path], capture_output=True, text=True, check=True).stdout)
    return d["video"]["frames"]


def compare(base, kiln, frames, runs):
    """Runs the two commands alternately (so drifting machine load hits both
    alike) and returns (baseline fps, kiln fps) from the median times."""
    tb, tk = [], []
    for _ in range(runs):
        tb.append(timed(base))
        tk.append(timed(kiln))
    return frames / statistics.median(tb), frames / statistics.median(tk)


def reframe_table(a, kiln, th, tmp, clips):
    print("### reframe (animated crop 608x1080 -> 810x1440, crf 20, preset veryfast)\n")
    print("| clip | ffmpeg CLI fps | kiln fps | kiln / ffmpeg |")
    print("|---|---|---|---|")
    for name, clip in clips.items():
        n = frames_of(kiln, clip)
        dur = n / (30 if "30" in name else 10)
        x0, x1 = 100, 1200
        params = os.path.join(tmp, "reframe.json")
        json.dump({"crop": [{"frame": 0, "x": x0, "y": 0, "w": 608, "h": 1080},
                            {"time": dur, "x": x1, "y": 0, "w": 608, "h": 1080}],
                   "width": 810, "height": 1440, "crf": 20, "preset": "veryfast"}, open(params, "w"))
        ff = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-threads", th, "-i", clip, "-vf",
              f"crop=608:1080:'{x0}+({x1}-{x0})*t/{dur}':0,scale=810:1440", "-c:v", "libx264", "-crf", "20",
              "-preset", "veryfast", "-threads", th, "-pix_fmt", "yuv420p", "-c:a", "copy", "-movflags",
              "+faststart", os.path.join(tmp, "ff_reframe.mp4")]
        kl = [kiln, "run", "reframe", clip, "-o", os.path.join(tmp, "k_reframe.mp4"), "--params", params,
              "--threads", th, "-q"]
        f_ff, f_k = compare(ff, kl, n, a.runs)
        print(f"| {name} | {f_ff:.1f} | {f_k:.1f} | {f_k / f_ff:.2f}x |")
        sys.stdout.flush()


def overlay_table(a, kiln, th, tmp, clips):
    print("\n### overlay (spotlight with ring, crf 20)\n")
    print("| clip | preset | python3-opencv + ffmpeg fps | kiln fps | kiln / script |")
    print("|---|---|---|---|---|")
    for name, clip in clips.items():
        n = frames_of(kiln, clip)
        params = os.path.join(tmp, "overlay.json")
        json.dump({"highlights": [{"frame": 0, "x": 400, "y": 500, "rx": 120, "ry": 220},
                                  {"frame": n - 1, "x": 1500, "y": 600, "rx": 140, "ry": 240}],
                   "dim": 0.6, "ring_width": 6}, open(params, "w"))
        for preset in ("fast", "veryfast"):
            py = ["/usr/bin/python3", os.path.join(ROOT, "bench", "overlay_opencv.py"), clip,
                  os.path.join(tmp, "py_overlay.mp4"), params, preset, th]
            kl = [kiln, "run", "overlay", clip, "-o", os.path.join(tmp, "k_overlay.mp4"), "--params", params,
                  "--param", f"preset={preset}", "--threads", th, "-q"]
            f_py, f_k = compare(py, kl, n, a.runs)
            print(f"| {name} | {preset} | {f_py:.1f} | {f_k:.1f} | {f_k / f_py:.2f}x |")
            sys.stdout.flush()


def rss_table(kiln, th, tmp):
    print("\n### peak RSS, `kiln run reframe` on 1080p30 input (preset veryfast)\n")
    print("| input length | frames | peak RSS |")
    print("|---|---|---|")
    for minutes in (1, 5):
        src = os.path.join(tmp, f"long{minutes}.mp4")
        sh(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
            f"testsrc2=size=1920x1080:rate=30:duration={60 * minutes}", "-f", "lavfi", "-i",
            f"sine=frequency=440:duration={60 * minutes}", "-c:v", "libx264", "-preset", "ultrafast",
            "-crf", "23", "-pix_fmt", "yuv420p", "-c:a", "aac", src])
        rss = peak_rss_mb([kiln, "run", "reframe", src, "-o", os.path.join(tmp, "rss.mp4"), "--threads", th,
                           "--param", "trim.start=1", "-q"])
        print(f"| {minutes} min | {frames_of(kiln, src)} | {rss:.0f} MB |")
        sys.stdout.flush()
        os.unlink(src)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--only", choices=["reframe", "overlay", "rss"], help="run one table")
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build", "kiln"))
    ap.add_argument("--samples", default=os.environ.get("KILN_SAMPLES_DIR",
                                                        os.path.expanduser("~/.cache/kiln/samples")))
    a = ap.parse_args()
    kiln, th = a.kiln, str(a.threads)
    tmp = tempfile.mkdtemp(prefix="kiln-bench-")
    clips = {}
    gen = os.path.join(tmp, "gen1080.mp4")
    sh([kiln, "sample", "coords", gen, "--size", "1920x1080", "--fps", "30",
        "--seconds", str(a.frames / 30), "--tone", "440"], stderr=subprocess.DEVNULL)
    clips["generated 1080p30 (tone)"] = gen
    vt = os.path.join(tmp, "vtest1080.mp4")
    sh(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", os.path.join(a.samples, "vtest.avi"), "-frames:v",
        str(a.frames), "-vf", "scale=1920:1080", "-c:v", "libx264", "-crf", "16", "-preset", "veryfast",
        "-pix_fmt", "yuv420p", vt])
    clips["vtest.avi scaled to 1080p10"] = vt

    print(f"kiln bench — {os.cpu_count()} CPUs, {a.threads} threads each side, median of {a.runs} runs, "
          f"{a.frames} frames per clip\n")
    if a.only in (None, "reframe"):
        reframe_table(a, kiln, th, tmp, clips)
    if a.only in (None, "overlay"):
        overlay_table(a, kiln, th, tmp, clips)
    if a.only in (None, "rss") and not a.skip_rss:
        rss_table(kiln, th, tmp)
    sh(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
