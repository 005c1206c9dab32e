#!/usr/bin/env bash
# test_real_clips.sh — the README's main job on a real clip (vtest.avi from
# Debian's opencv-doc, made available by scripts/samples): probe it, put the
# spotlight on the walking couple, reframe to a 9:16 reel, and check the
# result: frame count from trim + slow motion, size, yuv420p, moov before
# mdat, and that the spotlight really dims outside and keeps the inside.
# Exits 77 (SKIPPED in ctest, never counted as passed) without the samples.
set -u
KILN=${1:?usage: test_real_clips.sh KILN}
root=$(cd "$(dirname "$0")/.." && pwd)
S=${KILN_SAMPLES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln/samples}
[ -s "$S/vtest.avi" ] || { echo "no samples in $S: run scripts/samples"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-real-XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() { if eval "$2"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "  FAIL: $1" >&2; fi; }

"$KILN" probe --json "$S/vtest.avi" > "$T/probe.json"
check "vtest.avi probe" "python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))[\"video\"]; assert (v[\"width\"],v[\"height\"],v[\"frames\"],v[\"frames_exact\"],v[\"fps\"])==(768,576,795,True,10.0), v' $T/probe.json"

"$KILN" run overlay "$S/vtest.avi" -o "$T/spot.mp4" -q --params "$root/examples/vtest-spotlight.json"
check "overlay wrote" "[ -s $T/spot.mp4 ]"
"$KILN" run reframe "$T/spot.mp4" -o "$T/reel.mp4" -q --params "$root/examples/vtest-reel.json" --json > "$T/reel.json"
# trim 2..10 s at 10 fps with 8..10 s at half speed: 6 s + 4 s = 100 frames
check "reel frames and size" "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert (d[\"frames\"],d[\"width\"],d[\"height\"])==(100,810,1440), d' $T/reel.json"
"$KILN" probe --json "$T/reel.mp4" > "$T/rp.json"
check "reel is yuv420p h264" "python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))[\"video\"]; assert v[\"pix_fmt\"]==\"yuv420p\" and v[\"codec\"]==\"h264\" and v[\"frames\"]==100, v' $T/rp.json"
check "reel has moov before mdat" "python3 - $T/reel.mp4 <<'PY'
import struct, sys
f = open(sys.argv[1], 'rb'); order = []
while True:
    h = f.read(8)
    if len(h) < 8: break
    size, kind = struct.unpack('>I4s', h)
    if size == 1: size = struct.unpack('>Q', f.read(8))[0]; f.seek(size - 16, 1)
    else: f.seek(size - 8, 1)
    order.append(kind)
assert order.index(b'moov') < order.index(b'mdat'), order
PY"

# frame 60 (6 s): the couple is lit around (500, 247); a corner is dimmed
ffmpeg -v error -nostdin -i "$S/vtest.avi" -vf "select=eq(n\,60)" -frames:v 1 -f rawvideo -pix_fmt gray -y "$T/a.gray"
ffmpeg -v error -nostdin -i "$T/spot.mp4" -vf "select=eq(n\,60)" -frames:v 1 -f rawvideo -pix_fmt gray -y "$T/b.gray"
check "spotlight: inside kept, outside dimmed" "python3 - $T/a.gray $T/b.gray <<'PY'
import sys
a = open(sys.argv[1], 'rb').read(); b = open(sys.argv[2], 'rb').read(); W = 768
def mean(buf, x0, y0, x1, y1): return sum(buf[y*W + x] for y in range(y0, y1) for x in range(x0, x1)) / ((x1-x0)*(y1-y0))
ins = (mean(a, 490, 237, 510, 257), mean(b, 490, 237, 510, 257))
out = (mean(a, 20, 500, 120, 560), mean(b, 20, 500, 120, 560))
assert abs(ins[0] - ins[1]) < 4, ('inside changed', ins)
assert out[1] < 0.6 * out[0], ('outside not dimmed', out)
PY"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
