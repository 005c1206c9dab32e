#!/usr/bin/env python3
"""nn_reference.py — kiln's PyTorch reference for ncnn models: its own
reading of the .param/.bin format and its own forward pass with torch ops
(conv2d, prelu, leaky relu, pixel_shuffle, interpolate, add), so kiln's C
executor (src/nn/net.c) can be checked against an independent one.

  nn_reference.py fixture DIR    write a small random SRVGGNetCompact-shaped
                                 model (fp16 weights), an input and the
                                 reference output into DIR (the ctest golden
                                 fixture; re-run to regenerate it)
  nn_reference.py run PARAM BIN IN OUT   run a model on IN (raw float32 HxWx3
                                 with a "H W C" text header line) into OUT
  nn_reference.py arch PARAM BIN IN OUT  the same through the architecture the
                                 file holds, rebuilt as Real-ESRGAN writes it
                                 (SRVGGNetCompact or RRDBNet, filled from the
                                 file's weights in order), not by walking the
                                 graph: if the graph reading and this agree,
                                 the graph is the network it claims to be
  nn_reference.py image PARAM BIN IN OUT [IN OUT]...   upscale image files
                                 (anything the ffmpeg CLI reads) as kiln does:
                                 RGB bytes / 255, the model, x 255 rounded
                                 and clamped; OUT .png (via ffmpeg) or .npy
                                 (the float32 HxWx3 output before rounding)

Needs Debian's python3-torch; ctest uses the fixture and needs no torch."""
import json, struct, subprocess, sys

import torch
import torch.nn.functional as F


def read_param(path):
    lines = open(path).read().split("\n")
    assert lines[0].strip() == "7767517", "not an ncnn .param"
    nl, nb = map(int, lines[1].split())
    layers = []
    for line in lines[2:]:
        t = line.split()
        if not t:
            continue
        typ, name, ni, no = t[0], t[1], int(t[2]), int(t[3])
        ins, outs = t[4:4 + ni], t[4 + ni:4 + ni + no]
        params = {}
        for kv in t[4 + ni + no:]:
            k, v = kv.split("=")
            k = int(k)
            if k <= -23300:
                vals = v.split(",")
                params[-k - 23300] = [float(x) for x in vals[1:]]
            else:
                params[k] = float(v)
        layers.append((typ, name, ins, outs, params))
    assert len(layers) == nl
    return layers


class Bin:
    def __init__(self, path):
        self.b = open(path, "rb").read()
        self.at = 0

    def raw(self, n):
        v = struct.unpack_from("<%df" % n, self.b, self.at)
        self.at += 4 * n
        return torch.tensor(v, dtype=torch.float32)

    def flagged(self, n):
        tag, = struct.unpack_from("<I", self.b, self.at)
        self.at += 4
        if tag == 0:
            return self.raw(n)
        assert tag == 0x01306B47, hex(tag)
        v = torch.frombuffer(bytearray(self.b[self.at:self.at + 2 * n]), dtype=torch.float16).float()
        self.at += (2 * n + 3) // 4 * 4
        return v


def load(param, binp):
    layers, b = read_param(param), Bin(binp)
    weights = {}
    for typ, name, ins, outs, p in layers:
        if typ in ("Convolution", "ConvolutionDepthWise"):
            w = b.flagged(int(p[6]))
            bias = b.raw(int(p[0])) if p.get(5, 0) else None
            weights[name] = (w, bias)
        elif typ == "PReLU":
            weights[name] = (b.raw(int(p.get(0, 1))),)
    assert b.at == len(b.b), "the .bin is not this model's"
    return layers, weights


def forward(layers, weights, x):
    """x: 1x3xHxW float32 in [0,1]; returns the output blob, NCHW."""
    blobs = {}
    for typ, name, ins, outs, p in layers:
        a = [blobs[i] for i in ins]
        if typ == "Input":
            y = [x]
        elif typ == "Split":
            y = [a[0]] * len(outs)
        elif typ in ("Convolution", "ConvolutionDepthWise"):
            w, bias = weights[name]
            oc, kw = int(p[0]), int(p.get(1, 1))
            kh = int(p.get(11, kw))
            g = int(p.get(7, 1)) if typ == "ConvolutionDepthWise" else 1
            ic = a[0].shape[1]
            w = w.reshape(oc, ic // g, kh, kw)
            dw, sw = int(p.get(2, 1)), int(p.get(3, 1))
            pl = int(p.get(4, 0)); pt = int(p.get(14, pl)); pr = int(p.get(15, pl)); pb = int(p.get(16, pt))
            z = F.conv2d(F.pad(a[0], (pl, pr, pt, pb)), w, bias, stride=(int(p.get(13, sw)), sw),
                         dilation=(int(p.get(12, dw)), dw), groups=g)
            act = int(p.get(9, 0))
            ap = p.get(10, [])
            if act == 1:
                z = F.relu(z)
            elif act == 2:
                z = F.leaky_relu(z, ap[0])
            elif act == 3:
                z = z.clamp(ap[0], ap[1])
            elif act == 4:
                z = torch.sigmoid(z)
            y = [z]
        elif typ == "PReLU":
            s, = weights[name]
            y = [F.prelu(a[0], s)]
        elif typ == "ReLU":
            y = [F.leaky_relu(a[0], p.get(0, 0.0)) if p.get(0, 0.0) else F.relu(a[0])]
        elif typ == "BinaryOp":
            op = int(p.get(0, 0))
            f = [torch.add, torch.sub, torch.mul, torch.div, torch.maximum, torch.minimum, torch.pow,
                 lambda u, v: v - u, lambda u, v: v / u][op]
            y = [f(a[0], torch.tensor(p.get(2, 0.0))) if p.get(1, 0) else f(a[0], a[1])]
        elif typ == "Eltwise":
            op, co = int(p.get(0, 1)), p.get(1, [1.0] * len(a))
            z = a[0] * co[0]
            for k in range(1, len(a)):
                v = a[k] * (co[k] if k < len(co) else 1.0)
                z = z * v if op == 0 else torch.maximum(z, v) if op == 2 else z + v
            y = [z]
        elif typ == "Interp":
            h, w = a[0].shape[2:]
            oh, ow = int(p.get(3, 0)), int(p.get(4, 0))
            oh = oh or round(h * p.get(1, 1.0))
            ow = ow or round(w * p.get(2, 1.0))
            mode = {1: "nearest", 2: "bilinear", 3: "bicubic"}[int(p.get(0, 1))]
            y = [F.interpolate(a[0], size=(oh, ow), mode=mode, **({"align_corners": False} if mode != "nearest" else {}))]
        elif typ == "PixelShuffle":
            y = [F.pixel_shuffle(a[0], int(p.get(0, 1)))]
        elif typ == "Concat":
            y = [torch.cat(a, dim=1)]
        else:
            raise SystemExit(f"layer {name}: type {typ} not in the reference")
        for o, v in zip(outs, y):
            blobs[o] = v
    read = {i for _, _, ins, _, _ in layers for i in ins}
    last = [o for _, _, _, outs, _ in layers for o in outs if o not in read]
    return blobs[last[-1]]


def conv_weights(layers, weights):
    """The convolutions' (weight OIHW, bias) in file order."""
    out = []
    for typ, name, ins, outs, p in layers:
        if typ == "Convolution":
            w, b = weights[name]
            oc = int(p[0])
            out.append((w.reshape(oc, w.numel() // (oc * 9), 3, 3), b))
    return out


def srvgg_compact(layers, weights, x):
    """SRVGGNetCompact (Real-ESRGAN's video and general-v3 models): conv + PReLU
    n times, a last conv to 3 * r * r, pixel shuffle r, plus the input
    upsampled by nearest; the x2 and x3 video files are the x4 network with
    a bicubic resize after it, as Real-ESRGAN's own inference does."""
    convs = conv_weights(layers, weights)
    prelus = [weights[name][0] for typ, name, ins, outs, p in layers if typ == "PReLU"]
    r = next(int(p.get(0, 1)) for typ, name, ins, outs, p in layers if typ == "PixelShuffle")
    assert len(prelus) == len(convs) - 1, "not an SRVGGNetCompact: %d convs, %d PReLUs" % (len(convs), len(prelus))
    y = x
    for (w, b), a in zip(convs[:-1], prelus):
        y = F.prelu(F.conv2d(y, w, b, padding=1), a)
    y = F.pixel_shuffle(F.conv2d(y, convs[-1][0], convs[-1][1], padding=1), r)
    y = y + F.interpolate(x, scale_factor=r, mode="nearest")
    if layers[-1][0] == "Interp":                 # x2 and x3: the x4 network, then a bicubic resize
        p = layers[-1][4]
        mode = {1: "nearest", 2: "bilinear", 3: "bicubic"}[int(p.get(0, 1))]
        size = (round(y.shape[2] * p.get(1, 1.0)), round(y.shape[3] * p.get(2, 1.0)))
        y = F.interpolate(y, size=size, mode=mode, **({"align_corners": False} if mode != "nearest" else {}))
    return y


def rrdbnet(layers, weights, x):
    """RRDBNet x4 (ESRGAN / Real-ESRGAN x4plus): conv_first; RRDB blocks of three
    residual dense blocks (five convs over the concatenation of all earlier
    features, leaky ReLU 0.2, the block's output x 0.2 + its input), each RRDB's
    output x 0.2 + its input; conv_body added to conv_first's features; two
    nearest x2 upsamplings each with a conv + leaky ReLU; conv_hr + leaky ReLU;
    conv_last."""
    convs = conv_weights(layers, weights)
    nblocks, rest = divmod(len(convs) - 6, 15)
    assert rest == 0 and nblocks > 0, "not an RRDBNet: %d convs" % len(convs)
    it = iter(convs)
    conv = lambda t: (lambda w, b: F.conv2d(t, w, b, padding=1))(*next(it))
    lrelu = lambda t: F.leaky_relu(t, 0.2)
    feat = conv(x)
    body = feat
    for _ in range(nblocks):
        rrdb_in = body
        for _ in range(3):
            xs = [body]
            for _ in range(4):
                xs.append(lrelu(conv(torch.cat(xs, 1))))
            body = conv(torch.cat(xs, 1)) * 0.2 + xs[0]
        body = body * 0.2 + rrdb_in
    feat = feat + conv(body)
    feat = lrelu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
    feat = lrelu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
    return conv(lrelu(conv(feat)))


def arch_forward(layers, weights, x):
    if any(typ == "PReLU" for typ, name, ins, outs, p in layers):
        return srvgg_compact(layers, weights, x)
    return rrdbnet(layers, weights, x)


def write_tensor(path, t):
    """NCHW (batch 1) -> a "H W C" header line, then float32 HxWxC."""
    t = t[0].permute(1, 2, 0).contiguous()
    h, w, c = t.shape
    with open(path, "wb") as f:
        f.write(b"%d %d %d\n" % (h, w, c))
        f.write(struct.pack("<%df" % t.numel(), *t.flatten().tolist()))


def read_tensor(path):
    data = open(path, "rb").read()
    nl = data.index(b"\n")
    h, w, c = map(int, data[:nl].split())
    v = struct.unpack_from("<%df" % (h * w * c), data, nl + 1)
    return torch.tensor(v, dtype=torch.float32).reshape(1, h, w, c).permute(0, 3, 1, 2)


def fixture(d):
    """A small SRVGGNetCompact: conv+PReLU, 3 body convs+PReLU, a conv to 3*r*r,
    pixel shuffle r=2, plus the nearest-upsampled input (ncnn's own layout)."""
    torch.manual_seed(7)
    nf, r, body = 8, 2, 3
    convs = [(3, nf)] + [(nf, nf)] * body + [(nf, 3 * r * r)]
    lines, bins, blob = [], bytearray(), "data"
    lines.append("Input in 0 1 data")
    lines.append("Split split 1 2 data x0 skip")
    cur, n = "x0", 0
    for i, (ci, co) in enumerate(convs):
        w = (torch.randn(co, ci, 3, 3) * (0.5 / (ci * 9) ** 0.5)).half()
        b = torch.randn(co) * 0.05
        bins += struct.pack("<I", 0x01306B47) + bytes(w.flatten().view(torch.int16).tolist() and
                                                     struct.pack("<%dh" % w.numel(), *w.flatten().view(torch.int16).tolist()))
        if (w.numel() * 2) % 4:
            bins += b"\0\0"
        bins += struct.pack("<%df" % co, *b.tolist())
        lines.append(f"Convolution conv{i} 1 1 {cur} c{i} 0={co} 1=3 4=1 5=1 6={w.numel()}")
        cur = f"c{i}"
        if i < len(convs) - 1:
            s = torch.rand(co) * 0.3
            bins += struct.pack("<%df" % co, *s.tolist())
            lines.append(f"PReLU prelu{i} 1 1 {cur} p{i} 0={co}")
            cur = f"p{i}"
    lines.append(f"PixelShuffle ps 1 1 {cur} up 0={r}")
    lines.append(f"Interp near 1 1 skip base 0=1 1={r}.0 2={r}.0")
    lines.append("BinaryOp add 2 1 up base out 0=0")
    nblobs = len({t for l in lines for t in l.split()[4:] if "=" not in t})
    open(f"{d}/tiny.param", "w").write(f"7767517\n{len(lines)} {nblobs}\n" + "\n".join(lines) + "\n")
    open(f"{d}/tiny.bin", "wb").write(bytes(bins))
    x = torch.rand(1, 3, 9, 7)
    write_tensor(f"{d}/tiny.in", x)
    layers, weights = load(f"{d}/tiny.param", f"{d}/tiny.bin")
    write_tensor(f"{d}/tiny.out", forward(layers, weights, x))


def read_image(path):
    """An image file -> 1x3xHxW float32 in [0,1] (its RGB24 bytes / 255)."""
    info = json.loads(subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                                      "stream=width,height", "-of", "json", path],
                                     check=True, capture_output=True).stdout)["streams"][0]
    w, h = info["width"], info["height"]
    raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", path, "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    assert len(raw) == w * h * 3, (path, len(raw), w, h)
    x = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(1, h, w, 3).permute(0, 3, 1, 2)
    return x.float() / 255.0


def write_npy(path, t):
    """NCHW (batch 1) -> a float32 HxWxC .npy (format 1.0, no numpy needed)."""
    t = t[0].permute(1, 2, 0).contiguous()
    head = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d, %d), }" % tuple(t.shape)
    head += " " * (63 - (10 + len(head)) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head.encode())
        f.write(struct.pack("<%df" % t.numel(), *t.flatten().tolist()))


def write_png(path, t):
    """NCHW in [0,1] -> an RGB24 PNG, each value x 255 + 0.5, clamped, truncated (as kiln rounds)."""
    b = (t[0].permute(1, 2, 0) * 255.0 + 0.5).clamp(0, 255).floor().to(torch.uint8).contiguous()
    h, w, _ = b.shape
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                    "-i", "-", "-frames:v", "1", path], input=bytes(b.flatten().tolist()), check=True)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    if sys.argv[1] == "fixture":
        fixture(sys.argv[2])
    elif sys.argv[1] in ("run", "arch"):
        layers, weights = load(sys.argv[2], sys.argv[3])
        write_tensor(sys.argv[5], (forward if sys.argv[1] == "run" else arch_forward)(layers, weights, read_tensor(sys.argv[4])))
    elif sys.argv[1] == "image" and len(sys.argv) >= 6 and len(sys.argv) % 2 == 0:
        layers, weights = load(sys.argv[2], sys.argv[3])
        for src, dst in zip(sys.argv[4::2], sys.argv[5::2]):
            y = forward(layers, weights, read_image(src))
            (write_npy if dst.endswith(".npy") else write_png)(dst, y)
    else:
        raise SystemExit(__doc__)
