#!/usr/bin/env python3
"""bench/upscale.py — per-frame time of a Real-ESRGAN model, kiln (src/nn on
oneDNN, tests/nn_run with KILN_NN_REPEAT) against PyTorch on the same weights
(tests/nn_reference.py's forward pass; eval, no_grad, the same thread count),
steady state: the median of runs after the first. A first measurement for
issue #5, not its full benchmark yet.

usage: bench/upscale.py [BUILD_DIR] [MODEL] [HxW ...]   (python3 with torch: /usr/bin/python3)"""
import os, random, re, statistics, struct, subprocess, sys, tempfile, time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests"))
import torch
import nn_reference as ref

B = sys.argv[1] if len(sys.argv) > 1 else "build"
M = sys.argv[2] if len(sys.argv) > 2 else "realesr-animevideov3-x4"
sizes = sys.argv[3:] or ["202x360", "270x480"]
home = os.environ.get("KILN_HOME", os.path.join(os.environ.get("XDG_DATA_HOME", os.path.expanduser("~/.local/share")), "kiln"))
d = os.path.join(home, "models", M)
if not os.path.exists(os.path.join(d, "manifest.json")):
    subprocess.run([os.path.join(B, "kiln"), "models", "fetch", M], check=True)
param, binp = os.path.join(d, M + ".param"), os.path.join(d, M + ".bin")
threads = os.cpu_count()
torch.set_num_threads(threads)
torch.set_grad_enabled(False)
layers, weights = ref.load(param, binp)
print(f"| {M}, {threads} threads | kiln (oneDNN) ms/frame | PyTorch {torch.__version__} ms/frame | kiln / PyTorch speed |")
print("|---|---|---|---|")
for s in sizes:
    h, w = map(int, s.split("x"))
    random.seed(3)
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(b"%d %d 3\n" % (h, w) + struct.pack("<%df" % (h * w * 3), *[random.random() for _ in range(h * w * 3)]))
        inp = f.name
    out = subprocess.run([os.path.join(B, "tests", "nn_run"), param, binp, inp, inp + ".out"], capture_output=True, text=True,
                         env=dict(os.environ, KILN_NN_REPEAT="5"))
    k = [float(m) for m in re.findall(r"run \d+: ([0-9.]+) ms", out.stderr)][1:]
    x = torch.rand(1, 3, h, w)
    t = []
    for i in range(5):
        t0 = time.perf_counter()
        ref.forward(layers, weights, x)
        t.append((time.perf_counter() - t0) * 1000)
    t = t[1:]
    km, tm = statistics.median(k), statistics.median(t)
    print(f"| {h}x{w} input → {h * 4}x{w * 4} | {km:.0f} | {tm:.0f} | {tm / km:.2f}x |")
    os.unlink(inp)
    os.unlink(inp + ".out")
