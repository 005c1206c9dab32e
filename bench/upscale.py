#!/usr/bin/env python3
"""bench/upscale.py — the upscale benchmark of issue #5 (bench/README.md has the figures).

Per-frame time of a Real-ESRGAN model (default realesr-animevideov3-x4) at 360x202 and
480x270 input, kiln's executor (tests/nn_run: src/nn on this CPU) against PyTorch on the
same weights and thread count, measured in the same run, alternating, steady state (the
median of the runs after the first):

  kiln fast      Winograd F(4x4,3x3) with PReLU fused, oneDNN for any other convolution
                 (what `kiln run upscale` uses)
  kiln oneDNN    every convolution on oneDNN's own algorithm choice (the previous path)
  PyTorch        an idiomatic SRVGGNetCompact module (conv2d padding=1, PReLU, pixel
                 shuffle, nearest interpolate), eval + no_grad; NCHW and channels-last,
                 the faster of the two is the baseline

Also: effective GFLOP/s counted as direct-convolution FLOPs (2 * K * C * 9 per output
pixel, summed over the convolutions), against this CPU's practical peak (a large oneDNN
SGEMM, bench_peak, on one thread and on all); peak RSS of each side; and the cold start of
an upscale worker under `kiln serve` (process start -> model loaded and ready, the
worker's own cold_start_ms, 5 workers one after another).

Each size runs on all the CPUs and on one thread (KILN_NN_THREADS / OMP_NUM_THREADS=1 /
torch.set_num_threads(1)): the one-thread figures do not depend on how OpenMP's spinning
threads fare beside other processes.

usage: bench/upscale.py [BUILD_DIR] [MODEL] [WxH ...]   (python3 with torch: /usr/bin/python3)"""
import json, os, re, resource, shutil, statistics, struct, subprocess, sys, tempfile, time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests"))

B = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
M = sys.argv[2] if len(sys.argv) > 2 else "realesr-animevideov3-x4"
sizes = sys.argv[3:] or ["360x202", "480x270"]
RUNS = 5
home = os.environ.get("KILN_HOME", os.path.join(os.environ.get("XDG_DATA_HOME", os.path.expanduser("~/.local/share")), "kiln"))
d = os.path.join(home, "models", M)
if not os.path.exists(os.path.join(d, "manifest.json")):
    subprocess.run([os.path.join(B, "kiln"), "models", "fetch", M], check=True)
param, binp = os.path.join(d, M + ".param"), os.path.join(d, M + ".bin")
threads = os.cpu_count()

TORCH_CHILD = r'''
import sys, time, resource, statistics, torch, torch.nn.functional as F
sys.path.insert(0, sys.argv[1])
import nn_reference as ref
param, binp, h, w, runs, fmt = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
torch.set_num_threads(int(sys.argv[8]))
layers, weights = ref.load(param, binp)

class SRVGG(torch.nn.Module):
    """SRVGGNetCompact as Real-ESRGAN writes it, filled from the ncnn weights."""
    def __init__(self):
        super().__init__()
        self.body = torch.nn.ModuleList()
        for typ, name, ins, outs, p in layers:
            if typ == "Convolution":
                wt, b = weights[name]
                oc = int(p[0]); ic = wt.numel() // (oc * 9)
                c = torch.nn.Conv2d(ic, oc, 3, padding=1)
                c.weight.data = wt.reshape(oc, ic, 3, 3).clone(); c.bias.data = b.clone()
                self.body.append(c)
            elif typ == "PReLU":
                a = torch.nn.PReLU(weights[name][0].numel()); a.weight.data = weights[name][0].clone()
                self.body.append(a)
            elif typ == "PixelShuffle":
                self.r = int(p[0])
    def forward(self, x):
        y = x
        for m in self.body:
            y = m(y)
        return F.pixel_shuffle(y, self.r) + F.interpolate(x, scale_factor=self.r, mode="nearest")

net = SRVGG().eval()
x = torch.rand(1, 3, h, w)
with torch.no_grad():
    err = (net(x) - ref.forward(layers, weights, x)).abs().max().item()
    assert err < 1e-4, err
    if fmt == "channels_last":
        net = net.to(memory_format=torch.channels_last); x = x.contiguous(memory_format=torch.channels_last)
    t = []
    for i in range(runs):
        t0 = time.perf_counter(); net(x); t.append((time.perf_counter() - t0) * 1000)
print("ms", " ".join("%.1f" % v for v in t))
print("rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
'''


def conv_flops(h, w):
    """Direct-convolution FLOPs of the model at an h x w input (every conv here keeps the size)."""
    total, ch = 0, 3
    for line in open(param).read().splitlines()[2:]:
        f = line.split()
        if f[0] == "Convolution":
            p = dict(kv.split("=", 1) for kv in f[4 + int(f[2]) + int(f[3]):] if "=" in kv)
            k, n = int(p["0"]), int(p["6"])
            total += 2 * n * h * w                     # n = K * C * 9 weights, one MAC each per output pixel
    return total


def kiln_run(path, inp, h, w, nthr):
    out = subprocess.run([os.path.join(B, "tests", "nn_run"), param, binp, inp, inp + ".out"], capture_output=True, text=True,
                         env=dict(os.environ, KILN_NN_REPEAT=str(RUNS), KILN_NN_PATH=path, KILN_NN_THREADS=str(nthr),
                                  OMP_NUM_THREADS=str(nthr)))
    if out.returncode:
        raise SystemExit("nn_run failed: " + out.stderr)
    ms = [float(m) for m in re.findall(r"run \d+: ([0-9.]+) ms", out.stderr)]
    rss = int(re.search(r"peak rss: (\d+) KiB", out.stderr).group(1))
    os.unlink(inp + ".out")
    return ms[1:], rss


def torch_run(fmt, h, w, nthr):
    out = subprocess.run(["/usr/bin/python3", "-c", TORCH_CHILD, os.path.join(here, "..", "tests"), param, binp, str(h), str(w),
                          str(RUNS), fmt, str(nthr)], capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(nthr)))
    if out.returncode:
        raise SystemExit("PyTorch side failed: " + out.stderr[-2000:])
    ms = [float(v) for v in re.search(r"^ms (.*)$", out.stdout, re.M).group(1).split()]
    return ms[1:], int(re.search(r"^rss (\d+)", out.stdout, re.M).group(1))


def peak():
    g = {}
    for n in (1, threads):
        out = subprocess.run([os.path.join(B, "bench_peak"), "2048"], capture_output=True, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS=str(n)))
        g[n] = float(out.stdout.split()[1])
    return g


def cold_starts(n=5):
    """Upscale workers started one after another by kiln serve; each one's cold start (ms)."""
    import kilnt
    kilnt.KILN = os.path.join(B, "kiln")
    T = tempfile.mkdtemp(prefix="kiln-bench-upscale-")
    try:
        os.makedirs(os.path.join(T, "models"))
        os.symlink(d, os.path.join(T, "models", M))
        clip = os.path.join(T, "clip.mp4")
        subprocess.run([kilnt.KILN, "sample", "bars", clip, "--size", "64x36", "--seconds", "0.2"],
                       check=True, capture_output=True)
        s = kilnt.Server(T, "functions:\n  upscale: {max_workers: 1, idle_timeout_s: 0, max_chunks: 1}\n")
        st, b, _ = s.req("PUT", "/v1/objects/in/clip.mp4", open(clip, "rb").read())
        assert st in (200, 201), (st, b)
        cs = []
        for i in range(n):
            st, j, _ = s.req("POST", "/v1/functions/upscale/call", {"input": "in/clip.mp4", "params": {"model": M}})
            j = s.wait_end(j["id"], timeout=300) if j.get("state") not in ("succeeded", "failed") else j
            assert j["state"] == "succeeded", j
            cs.append(j["timings"]["cold_start_ms"])
            kilnt.until(lambda: (lambda w: w["warm"] + w["busy"] + w["starting"] == 0)(s.fn_stats("upscale")["workers"]),
                        timeout=30)                    # idle_timeout 0: it leaves, so the next call starts a new one
        s.stop()
        return cs
    finally:
        shutil.rmtree(T, ignore_errors=True)


g = peak()
print(f"peak (oneDNN SGEMM 2048^3, best of 5): {g[1]:.1f} GFLOP/s on 1 thread, {g[threads]:.1f} GFLOP/s on {threads}\n")
print(f"| {M}: input, threads | kiln fast ms/frame | kiln oneDNN ms/frame | PyTorch ms/frame (best layout) "
      f"| kiln fast / PyTorch | kiln fast GFLOP/s (% of peak) | PyTorch GFLOP/s (% of peak) | peak RSS kiln / PyTorch |")
print("|---|---|---|---|---|---|---|---|")
for s in sizes:
    w, h = map(int, s.split("x"))
    rnd = struct.unpack("<%dI" % (h * w * 3), os.urandom(4 * h * w * 3))
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(b"%d %d 3\n" % (h, w) + struct.pack("<%df" % (h * w * 3), *[v / 4294967295.0 for v in rnd]))
        inp = f.name
    for nthr in sorted({threads, 1}, reverse=True):
        kf, kd, tt = [], [], {"contiguous": [], "channels_last": []}
        rss_k = rss_t = 0
        for rep in range(2):                           # alternate the sides twice: both see the same machine
            a, r = kiln_run("fast", inp, h, w, nthr); kf += a; rss_k = max(rss_k, r)
            for fmt in tt:
                a, r = torch_run(fmt, h, w, nthr); tt[fmt] += a; rss_t = max(rss_t, r)
            a, _ = kiln_run("dnnl", inp, h, w, nthr); kd += a
        fl = conv_flops(h, w)
        best = min(tt, key=lambda k: statistics.median(tt[k]))
        mf, md, mt = statistics.median(kf), statistics.median(kd), statistics.median(tt[best])
        print(f"| {w}x{h} → {w * 4}x{h * 4}, {nthr} | {mf:.0f} | {md:.0f} | {mt:.0f} ({best}) | **{mt / mf:.2f}x** "
              f"| {fl / mf / 1e6:.0f} ({100 * fl / mf / 1e6 / g[nthr]:.0f}%) | {fl / mt / 1e6:.0f} ({100 * fl / mt / 1e6 / g[nthr]:.0f}%) "
              f"| {rss_k / 1024:.0f} / {rss_t / 1024:.0f} MiB |")
    os.unlink(inp)
print(f"\ndirect-convolution work: {conv_flops(202, 360) / 1e9:.1f} GFLOP per 360x202 frame, "
      f"{conv_flops(270, 480) / 1e9:.1f} GFLOP per 480x270 frame")
cs = cold_starts()
print(f"cold start of an upscale worker ({M}), process start -> model ready, {len(cs)} workers: "
      f"median {statistics.median(cs):.0f} ms, max {max(cs):.0f} ms")
