#!/usr/bin/env python3
"""bench/watermark_summary.py — the tables of bench/README.md and docs/watermark.md
from the JSON lines bench_watermark writes (WM_JSON=path; shards may write one file
each: pass them all).

usage: bench/watermark_summary.py RESULT.json [RESULT.json ...] [--cases]
  --cases  also print the per-case table (every case, both sets)
"""
import json
import statistics
import sys

METHODS = ["kiln (detects)", "kiln + true mask", "removelogo (true mask)", "delogo (true box)", "input", "clean"]
# The ghost threshold, levels at full alpha: a step of 2 levels in a flat area is about
# the least a viewer notices; the clean clips' worst |k| (re-encoding alone) is ~0.15.
GHOST_T = 2.0


def load(paths):
    cases = {}
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line:
                    o = json.loads(line)
                    cases[o["id"]] = o
    return [cases[k] for k in sorted(cases)]


def stat(vals, worst):
    if not vals:
        return "", "", ""
    w = worst(vals, key=lambda t: t[0])
    return f"{statistics.mean(v for v, _ in vals):.2f}", f"{statistics.median(v for v, _ in vals):.2f}", f"{w[0]:.2f} ({w[1]})"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    cases = load(args)
    marked = [c for c in cases if c["set"] in ("tune", "eval")]
    nomark = [c for c in cases if c["set"] == "nomark"]
    if "--cases" in sys.argv:
        print("| id | set | case | kiln dB | +mask dB | removelogo dB | delogo dB | input dB | kiln - removelogo | ghost | recall | mask/mark | false |")
        print("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for c in marked:
            p = [c.get(f"m{m}", {}).get("psnr") for m in range(5)]
            cell = [f"{v:.2f}" if v is not None else "failed" for v in p]
            mg = f"{p[0] - p[2]:+.2f}" if p[0] is not None and p[2] is not None else ""
            print(f"| {c['id']} | {c['set']} | {c['name']} | " + " | ".join(cell) +
                  f" | {mg} | {c.get('m0', {}).get('ghost', 0):+.2f} | {c.get('recall', 0):.3f} | {c.get('area', 0):.2f}x"
                  f" | {c.get('false_regions', 0)} |")
        print()
    for s in ("tune", "eval"):
        cs = [c for c in marked if c["set"] == s]
        if not cs:
            continue
        print(f"**{s} set ({len(cs)} cases)**\n")
        print("| method | PSNR mean | median | worst (case) | SSIM mean | worst (case) | \\|ghost\\| mean | worst (case) | ghost > %.0f |" % GHOST_T)
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for m, name in enumerate(METHODS):
            ps = [(c[f"m{m}"]["psnr"], c["id"]) for c in cs if f"m{m}" in c]
            ss = [(c[f"m{m}"]["ssim"], c["id"]) for c in cs if f"m{m}" in c]
            gs = [(abs(c[f"m{m}"]["ghost"]), c["id"]) for c in cs if f"m{m}" in c]
            a, b, w = stat(ps, min)
            sa, _, sw = stat(ss, min)
            ga, _, gw = stat(gs, max)
            print(f"| {name} | {a} | {b} | {w} | {sa[:5]} | {sw} | {ga} | {gw} | {sum(g > GHOST_T for g, _ in gs)} |")
        mg = [(c["m0"]["psnr"] - c["m2"]["psnr"], c["id"]) for c in cs if "m0" in c and "m2" in c]
        mm = [(c["m1"]["psnr"] - c["m2"]["psnr"], c["id"]) for c in cs if "m1" in c and "m2" in c]
        rc = [(c["recall"], c["id"]) for c in cs if "recall" in c]
        ar = [(c["area"], c["id"]) for c in cs if "recall" in c and c["recall"] > 0]
        fr = sum(c.get("false_regions", 0) for c in cs)
        a, b, w = stat(mg, min)
        a2, b2, w2 = stat(mm, min)
        print()
        print("| measure | mean | median | worst (case) | cases |")
        print("| --- | ---: | ---: | ---: | --- |")
        print(f"| kiln (detects) - removelogo, dB | {a} | {b} | {w} | {sum(v < 0 for v, _ in mg)} below 0 |")
        print(f"| kiln + true mask - removelogo, dB | {a2} | {b2} | {w2} | {sum(v < 0 for v, _ in mm)} below 0 |")
        ra, rb, rw = stat(rc, min)
        print(f"| detection recall | {ra} | {rb} | {rw} | {sum(v >= 0.98 for v, _ in rc)} of {len(rc)} at >= 0.98 |")
        aa, ab, aw = stat(ar, max)
        print(f"| mask / mark (found) | {aa} | {ab} | {aw} | {sum(v <= 3 for v, _ in ar)} of {len(ar)} at <= 3x |")
        print(f"| false regions | {fr} in total | | | {sum(1 for c in cs if c.get('false_regions', 0))} cases with one |")
        tk = sum(c.get("kiln_s", 0) for c in cs)
        td = sum(c.get("delogo_s", 0) for c in cs)
        if tk > 0 and td > 0:
            print(f"| speed | kiln {td / tk:.2f}x delogo's fps | | | {tk:.0f} s vs {td:.0f} s |")
        print()
    if nomark:
        print(f"no-mark clips: {len(nomark)}, false regions: " + ", ".join(f"{c['id']}: {c['false_regions']}" for c in nomark))


if __name__ == "__main__":
    main()
