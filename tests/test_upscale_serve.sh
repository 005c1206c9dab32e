#!/usr/bin/env bash
# test_upscale_serve.sh — upscale through a real `kiln serve` with the test
# model (tests/fixtures/nn/tiny, x2): two jobs on one warm worker both
# succeed with the model's size, the second reuses the net the first loaded
# (the worker keeps its model from job to job), and a still image comes back
# as a PNG of the model's size (its output object is named .png).
#   test_upscale_serve.sh KILN
set -u
KILN=${1:?usage: test_upscale_serve.sh KILN}
here=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-upserve-XXXXXX")
export KILN_HOME="$T/home"
spid=
trap '[ -n "$spid" ] && kill "$spid" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
pass=0 fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "  FAIL: $*" >&2; }
. "$here/serve_lib.sh"

fx="$here/fixtures/nn/tiny"
"$KILN" models add tiny "$fx" 2>"$T/add.log" && [ -f "$KILN_HOME/models/tiny/tiny.param" ] && ok || bad "kiln models add: $(cat "$T/add.log")"
"$KILN" models list | grep -Eq '^tiny +installed +local' && ok || bad "kiln models list does not show the added model"
"$KILN" models add ../x "$fx" 2>/dev/null && bad "models add took the name '../x'" || ok
"$KILN" models add bad "$T/nothing" 2>"$T/add2.log" && bad "models add took missing files" || grep -q "nothing.param" "$T/add2.log" && ok || bad "models add: missing files not named: $(cat "$T/add2.log")"
fxi="$KILN_HOME/models/tiny/tiny"                  # over the API a model is named, never a path
"$KILN" sample bars "$T/v.mp4" --seconds 0.4 --size 64x48 >/dev/null 2>&1 || { echo "cannot make a sample"; exit 1; }
ffmpeg -v error -nostdin -f lavfi -i testsrc2=size=64x48 -frames:v 1 -y "$T/pic.png"
KILN_TOKEN=$("$KILN" token create --name t 2>/dev/null) || { echo "cannot make a token"; exit 1; }
export KILN_TOKEN
printf '#!/bin/sh\nexec "%s" --log-level debug "$@"\n' "$KILN" > "$T/kiln-debug"; chmod +x "$T/kiln-debug"
KILN="$T/kiln-debug" start_serve            # debug lines say when the worker loads a model
export KILN_URL=$url

for i in 1 2; do
  "$KILN" submit upscale "$T/v.mp4" -o "$T/out$i.mp4" --param model=tiny >"$T/sub$i.log" 2>&1 \
    && [ "$("$KILN" probe --json "$T/out$i.mp4" | python3 -c 'import json,sys; v=json.load(sys.stdin)["video"]; print(v["width"], v["height"])')" = "128 96" ] \
    && ok || bad "upscale job $i: $(tail -2 "$T/sub$i.log")"
done
grep -q "upscale: $fxi.param is loaded already" "$T/serve.err" && ok \
  || bad "the second job did not reuse the worker's net: $(grep 'upscale:' "$T/serve.err")"
[ "$(grep -c "upscale: loaded $fxi.param into the worker" "$T/serve.err")" = 1 ] && ok || bad "the model was loaded more than once"

"$KILN" submit upscale "$T/pic.png" -o "$T/pic-x2.png" --param model=tiny --json >"$T/img.json" 2>"$T/img.log"
rc=$?
[ $rc -eq 0 ] && python3 - "$T/img.json" "$T/pic-x2.png" <<'PY' && ok || bad "a still image through serve: exit $rc, $(tail -2 "$T/img.log")"
import json, struct, sys
j = json.load(open(sys.argv[1]))
keys = [o["key"] for o in j["result"]["outputs"]]
png = open(sys.argv[2], "rb").read(24)
assert keys and keys[0].endswith(".png"), keys
assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:8]
w, h = struct.unpack(">II", png[16:24])
assert (w, h) == (128, 96), (w, h)
PY

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
