#!/usr/bin/env bash
# nn_compare.sh — kiln's executor against the PyTorch reference
# (tests/nn_reference.py) on a fetched model and a random input; prints the
# max abs error (goal <= 1e-3 on the [0,1] scale). Not part of ctest: it needs
# python3-torch and the weights (`kiln models fetch`). Also regenerates the
# golden fixture: ${PYTHON:-/usr/bin/python3} tests/nn_reference.py fixture tests/fixtures/nn
#   tests/nn_compare.sh BUILD_DIR [MODEL] [HxW]
set -eu
B=${1:?usage: nn_compare.sh BUILD_DIR [MODEL] [HxW]}
M=${2:-realesr-animevideov3-x4}
S=${3:-24x20}
here=$(cd "$(dirname "$0")" && pwd)
home=${KILN_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/kiln}
d="$home/models/$M"
[ -f "$d/manifest.json" ] || "$B/kiln" models fetch "$M"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
python3 - "$T/in" "${S%x*}" "${S#*x}" <<'PY'
import struct, sys, random
random.seed(1); h, w = int(sys.argv[2]), int(sys.argv[3])
open(sys.argv[1], "wb").write(b"%d %d 3\n" % (h, w) + struct.pack("<%df" % (h * w * 3), *[random.random() for _ in range(h * w * 3)]))
PY
"${PYTHON:-/usr/bin/python3}" "$here/nn_reference.py" run "$d/$M.param" "$d/$M.bin" "$T/in" "$T/ref"
"$B/tests/nn_run" "$d/$M.param" "$d/$M.bin" "$T/in" "$T/kiln"
python3 - "$T/ref" "$T/kiln" "$M" "$S" <<'PY'
import struct, sys
def rd(p):
    b = open(p, "rb").read(); nl = b.index(b"\n"); h, w, c = map(int, b[:nl].split())
    return (h, w, c), struct.unpack_from("<%df" % (h * w * c), b, nl + 1)
(sa, a), (sb, b) = rd(sys.argv[1]), rd(sys.argv[2])
assert sa == sb, (sa, sb)
err = max(abs(x - y) for x, y in zip(a, b))
print(f"{sys.argv[3]} on a {sys.argv[4]} input -> {sa[0]}x{sa[1]}: max abs error against PyTorch {err:.3g}")
sys.exit(0 if err <= 1e-3 else 1)
PY
