#!/usr/bin/env bash
# nn_compare.sh — kiln's executor against the PyTorch reference
# (tests/nn_reference.py), which needs python3-torch.
#   tests/nn_compare.sh BUILD_DIR MODEL [HxW]
#       a fetched model (fetched first if missing) on a random input: prints
#       the max abs error (goal <= 1e-3 on the [0,1] scale) against the
#       reference's graph reading, and requires that reading to equal the
#       architecture the model claims to be (SRVGGNetCompact or RRDBNet,
#       rebuilt by nn_reference.py arch) within 1e-5
#   tests/nn_compare.sh BUILD_DIR --all   (ctest: nn_reference)
#       regenerates the golden fixture (tests/fixtures/nn, which ctest's nn
#       test uses without torch) in a scratch folder and requires it to equal
#       the committed one (the PyTorch output within 1e-5), runs kiln on the
#       regenerated one, then compares every installed catalog model (CI
#       installs the video models). Exits 77 (SKIPPED) without torch.
# To rewrite the committed fixture: ${PYTHON:-/usr/bin/python3} tests/nn_reference.py fixture tests/fixtures/nn
set -eu
B=${1:?usage: nn_compare.sh BUILD_DIR MODEL [HxW] | BUILD_DIR --all}
M=${2:-realesr-animevideov3-x4}
S=${3:-24x20}
here=$(cd "$(dirname "$0")" && pwd)
home=${KILN_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/kiln}
PY=${PYTHON:-/usr/bin/python3}
# maxdiff A B TOL LABEL: two tensor files ("H W C" line, then float32) of one
# shape whose max abs difference is at most TOL; prints it.
maxdiff() {
  python3 - "$@" <<'PY'
import struct, sys
def rd(p):
    b = open(p, "rb").read(); nl = b.index(b"\n"); h, w, c = map(int, b[:nl].split())
    return (h, w, c), struct.unpack_from("<%df" % (h * w * c), b, nl + 1)
(sa, a), (sb, b) = rd(sys.argv[1]), rd(sys.argv[2])
err = max(abs(x - y) for x, y in zip(a, b)) if sa == sb else float("inf")
print(f"{sys.argv[4]} ({sa[0]}x{sa[1]}x{sa[2]} vs {sb[0]}x{sb[1]}x{sb[2]}): max abs difference {err:.3g}")
sys.exit(0 if err <= float(sys.argv[3]) else 1)
PY
}
if [ "$M" = --all ]; then
  "$PY" -c 'import torch' 2>/dev/null || { echo "SKIP: $PY has no torch (Debian: apt-get install python3-torch)" >&2; exit 77; }
  T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
  fx="$here/fixtures/nn"
  "$PY" "$here/nn_reference.py" fixture "$T"
  for f in tiny.param tiny.bin tiny.in; do
    cmp -s "$T/$f" "$fx/$f" || { echo "FAIL: the regenerated $f differs from tests/fixtures/nn/$f" >&2; exit 1; }
  done
  maxdiff "$T/tiny.out" "$fx/tiny.out" 1e-5 "golden fixture regenerated: reference output vs the committed one" || exit 1
  "$B/tests/nn_run" "$T/tiny.param" "$T/tiny.bin" "$T/tiny.in" "$T/kiln.out"
  maxdiff "$T/tiny.out" "$T/kiln.out" 1e-3 "kiln on the regenerated fixture against PyTorch" || exit 1
  n=0
  for m in realesr-animevideov3-x2 realesr-animevideov3-x3 realesr-animevideov3-x4 realesrgan-x4fast realesrgan-x4plus; do
    if [ -f "$home/models/$m/manifest.json" ]; then "$0" "$B" "$m" 20x18 || exit 1; n=$((n + 1))
    else echo "($m is not installed: not compared)"; fi
  done
  echo "compared the fixture and $n installed model(s)"
  exit 0
fi
d="$home/models/$M"
[ -f "$d/manifest.json" ] || "$B/kiln" models fetch "$M"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
python3 - "$T/in" "${S%x*}" "${S#*x}" <<'PY'
import struct, sys, random
random.seed(1); h, w = int(sys.argv[2]), int(sys.argv[3])
open(sys.argv[1], "wb").write(b"%d %d 3\n" % (h, w) + struct.pack("<%df" % (h * w * 3), *[random.random() for _ in range(h * w * 3)]))
PY
"$PY" "$here/nn_reference.py" run "$d/$M.param" "$d/$M.bin" "$T/in" "$T/ref"
"$PY" "$here/nn_reference.py" arch "$d/$M.param" "$d/$M.bin" "$T/in" "$T/arch"
"$B/tests/nn_run" "$d/$M.param" "$d/$M.bin" "$T/in" "$T/kiln"
maxdiff "$T/ref" "$T/kiln" 1e-3 "$M on a $S input: kiln against PyTorch" || exit 1
maxdiff "$T/ref" "$T/arch" 1e-5 "$M: PyTorch's graph reading vs the architecture rebuilt"
