#!/usr/bin/env bash
# test_photos.sh — `kiln run upscale` on real photos against the PyTorch
# reference (tests/nn_reference.py): Debian opencv-doc's baboon, fruits,
# building and messi5, each downscaled x4 (bicubic) and cut to at most
# 128x128 around its centre, upscaled by realesr-animevideov3-x4 to PNG by
# kiln and by the reference; each pair must agree within PSNR >= 50 dB. The
# same photos through kiln in 40-pixel tiles must equal the whole run within
# float rounding (PSNR >= 60 dB: a few values one step apart), and the real
# weights tiled vs whole must agree within 1e-4 (test_nn tile). Writes a
# side-by-side PNG (bicubic | kiln) per photo into OUTDIR for a person to
# look at. Needs the photos (scripts/samples), the weights (`kiln models
# fetch`) and python3-torch: without any of them it exits 77 (SKIPPED).
#   test_photos.sh KILN TEST_NN OUTDIR
set -u
KILN=${1:?usage: test_photos.sh KILN TEST_NN OUTDIR}
TEST_NN=${2:?usage: test_photos.sh KILN TEST_NN OUTDIR}
OUT=${3:?usage: test_photos.sh KILN TEST_NN OUTDIR}
PY=${PYTHON:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
samples=${KILN_SAMPLES_DIR:-${KILN_SAMPLES:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln/samples}}
home=${KILN_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/kiln}
M=realesr-animevideov3-x4
model="$home/models/$M/$M"
photos=(baboon fruits building messi5)

skip() { echo "SKIP: $*" >&2; exit 77; }
for p in "${photos[@]}"; do [ -s "$samples/$p.jpg" ] || skip "no $samples/$p.jpg (run scripts/samples)"; done
[ -s "$model.param" ] && [ -s "$model.bin" ] || skip "no $M weights under $home/models (run: kiln models fetch)"
"$PY" -c 'import torch' 2>/dev/null || skip "$PY has no torch (Debian: apt-get install python3-torch)"

T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-photos-XXXXXX")
trap 'rm -rf "$T"' EXIT
mkdir -p "$OUT"
pass=0 fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "  FAIL: $*" >&2; }

# psnr A B: PSNR in dB of two images' RGB24 bytes ("inf" when identical).
psnr() {
  python3 - "$1" "$2" <<'PY'
import math, subprocess, sys
def rgb(p):
    return subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", p, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                          check=True, capture_output=True).stdout
a, b = rgb(sys.argv[1]), rgb(sys.argv[2])
if len(a) != len(b):
    print("-1"); sys.exit()
mse = sum((x - y) ** 2 for x, y in zip(a, b)) / len(a)
print("inf" if mse == 0 else "%.2f" % (10 * math.log10(255 ** 2 / mse)))
PY
}
atleast() { [ "$1" = inf ] || python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)' "$1" "$2"; }

ref_args=()
for p in "${photos[@]}"; do
  ffmpeg -v error -nostdin -y -i "$samples/$p.jpg" \
    -vf "scale=trunc(iw/4):trunc(ih/4):flags=bicubic,crop=min(iw\,128):min(ih\,128)" -frames:v 1 "$T/$p.png" \
    || { bad "$p: cannot make the x4-downscaled input"; continue; }
  ref_args+=("$T/$p.png" "$T/$p-ref.png")
done
"$PY" "$here/nn_reference.py" image "$model.param" "$model.bin" "${ref_args[@]}" || bad "the PyTorch reference failed"

for p in "${photos[@]}"; do
  [ -s "$T/$p.png" ] || continue
  size=$(ffprobe -v error -show_entries stream=width,height -of csv=p=0:s=x "$T/$p.png")
  if ! "$KILN" run upscale "$T/$p.png" -o "$T/$p-kiln.png" -q; then bad "$p: kiln run upscale failed"; continue; fi
  got=$(ffprobe -v error -show_entries stream=width,height -of csv=p=0:s=x "$T/$p-kiln.png")
  want="$(( ${size%x*} * 4 ))x$(( ${size#*x} * 4 ))"
  [ "$got" = "$want" ] && ok || bad "$p: kiln made $got from $size, want $want"
  db=$(psnr "$T/$p-kiln.png" "$T/$p-ref.png")
  echo "  $p ($size -> $got): kiln vs PyTorch PSNR $db dB"
  atleast "$db" 50 && ok || bad "$p: kiln vs the PyTorch reference PSNR $db dB, want >= 50"
  "$KILN" run upscale "$T/$p.png" -o "$T/$p-tiled.png" -q --param tile=40 \
    && tdb=$(psnr "$T/$p-tiled.png" "$T/$p-kiln.png") && echo "  $p in 40-pixel tiles vs whole: PSNR $tdb dB" \
    && atleast "$tdb" 60 && ok || bad "$p: the tiled run differs from the whole run (PSNR ${tdb:-?} dB, want >= 60)"
  # for a person: bicubic | kiln, side by side
  ffmpeg -v error -nostdin -y -i "$T/$p.png" -i "$T/$p-kiln.png" \
    -filter_complex "[0]scale=iw*4:ih*4:flags=bicubic[b];[b][1]hstack" -frames:v 1 "$OUT/$p-bicubic-vs-kiln.png" \
    && ok || bad "$p: cannot write the side-by-side picture"
done
"$TEST_NN" tile "$model.param" "$model.bin" 90x70 32 && ok || bad "real weights: tiled vs whole beyond 1e-4"

echo "side-by-side pictures (bicubic | kiln): $OUT"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
