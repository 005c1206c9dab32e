#!/usr/bin/python3
"""The baseline kiln's overlay is measured against: the way highlight
overlays are commonly written today. OpenCV's VideoCapture reads BGR frames,
numpy/OpenCV dim everything outside an ellipse and draw an anti-aliased
ring, and raw BGR frames are piped into an ffmpeg process that encodes with
the same x264 settings kiln uses and copies the source's audio.

usage: overlay_opencv.py IN OUT PARAMS.json PRESET THREADS
PARAMS.json holds kiln's overlay parameters (highlights, dim, ring_width);
the ring colour is fixed yellow, as in kiln's default."""
import json
import subprocess
import sys

import cv2
import numpy as np


def interp(keys, n):
    if n < keys[0]["frame"] or n > keys[-1]["frame"]:
        return None
    for a, b in zip(keys, keys[1:]):
        if a["frame"] <= n <= b["frame"]:
            u = (n - a["frame"]) / max(1, b["frame"] - a["frame"])
            return {k: a[k] + (b[k] - a[k]) * u for k in ("x", "y", "rx", "ry")}
    return dict(keys[-1])


def main():
    src, out, params, preset, threads = sys.argv[1:6]
    p = json.load(open(params))
    keys = sorted(p["highlights"], key=lambda k: k["frame"])
    dim, ring_w = p.get("dim", 0.6), int(round(p.get("ring_width", 4)))
    cap = cv2.VideoCapture(src)
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = cap.get(cv2.CAP_PROP_FPS)
    enc = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}",
         "-r", f"{fps}", "-i", "-", "-i", src, "-map", "0:v", "-map", "1:a?", "-c:v", "libx264", "-preset", preset,
         "-crf", "20", "-threads", threads, "-pix_fmt", "yuv420p", "-c:a", "copy", "-movflags", "+faststart", out],
        stdin=subprocess.PIPE)
    n = 0
    mask = np.zeros((h, w), np.uint8)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        e = interp(keys, n)
        if e is not None:
            dimmed = (frame.astype(np.float32) * (1.0 - dim)).astype(np.uint8)
            mask[:] = 0
            centre, axes = (int(e["x"]), int(e["y"])), (int(e["rx"]), int(e["ry"]))
            cv2.ellipse(mask, centre, axes, 0, 0, 360, 255, -1, cv2.LINE_AA)
            a = (mask.astype(np.float32) / 255.0)[..., None]
            frame = (frame * a + dimmed * (1 - a)).astype(np.uint8)
            cv2.ellipse(frame, centre, (axes[0] + ring_w // 2, axes[1] + ring_w // 2), 0, 0, 360, (0, 212, 255),
                        ring_w, cv2.LINE_AA)
        enc.stdin.write(frame.tobytes())
        n += 1
    enc.stdin.close()
    sys.exit(enc.wait())


if __name__ == "__main__":
    main()
