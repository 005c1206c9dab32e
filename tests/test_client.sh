#!/usr/bin/env bash
# test_client.sh — the client commands (kiln submit, status, jobs, cancel,
# usage) against a real `kiln serve` on a free loopback port: a clip
# uploaded, reframed and downloaded (frame count kept); --no-wait, status,
# jobs, cancel (and cancel again), usage; and the refusals a user meets —
# an unknown parameter or function (exit 2, named), a failed job (exit 1),
# a wrong or missing token (exit 1, the token never echoed), a server that
# is not running (exit 1, "cannot reach"). Each check asserts the exit status
# and the text. Usage: test_client.sh PATH/TO/kiln
set -u
KILN=${1:?usage: test_client.sh KILN}
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-client-XXXXXX")
export KILN_HOME="$T/home"
unset KILN_URL KILN_TOKEN
spid=""
cleanup() {
  if [ -n "$spid" ]; then
    local kids
    kids=$(pgrep -P "$spid" 2>/dev/null || true)       # its workers
    kill -TERM "$spid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$spid" 2>/dev/null
    for k in $kids; do kill -KILL "$k" 2>/dev/null; done
  fi
  rm -rf "$T"
}
trap cleanup EXIT
pass=0 fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "  FAIL: $*" >&2; }

# run NAME -- command...: runs it with stdout in $T/out.txt, stderr in
# $T/err.txt, and the exit status in $rc.
run() {
  shift 2
  "$@" >"$T/out.txt" 2>"$T/err.txt"
  rc=$?
}
# expect NAME STATUS PATTERN -- command...: the status and a match of the
# extended regex PATTERN in stderr.
expect() {
  local name=$1 want=$2 pat=$3
  run "$name" -- "${@:5}"
  if [ "$rc" != "$want" ]; then bad "$name: exit $rc, want $want ($(head -c 400 "$T/err.txt"))"
  elif ! grep -qE -- "$pat" "$T/err.txt"; then bad "$name: message does not match /$pat/: $(head -c 400 "$T/err.txt")"
  else ok; fi
}
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if ($1) else 1)" "$2"; }

tok=$("$KILN" token create --name test 2>/dev/null) || { echo "cannot create a token"; exit 1; }
. "$(dirname "$0")/serve_lib.sh"
start_serve
A=(--url "$url" --token "$tok")

# --- a clip through the server: upload, reframe, download -----------------
"$KILN" sample bars "$T/in.mp4" --seconds 2 --size 320x240 2>/dev/null || { echo "cannot make a sample"; exit 1; }
"$KILN" probe "$T/in.mp4" --json >"$T/in.json" || exit 1
inframes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["video"]["frames"])' "$T/in.json")
run submit-reframe -- "$KILN" submit reframe "$T/in.mp4" -o "$T/out.mp4" "${A[@]}"
if [ "$rc" != 0 ]; then bad "submit reframe -o: exit $rc ($(head -c 400 "$T/err.txt"))"
elif [ ! -s "$T/out.mp4" ] || [ -e "$T/out.mp4.part" ]; then bad "submit reframe -o: no output, or the .part left"
elif ! grep -q "succeeded" "$T/err.txt"; then bad "submit reframe -o: no summary: $(cat "$T/err.txt")"
else ok; fi
if "$KILN" probe "$T/out.mp4" --json >"$T/out.json" 2>/dev/null &&
   json "d['video']['frames'] == $inframes and d['video']['width'] == 810 and d['video']['height'] == 1440" "$T/out.json"; then ok
else bad "the output has $inframes frames at 810x1440: $(head -c 300 "$T/out.json")"; fi

# the settings from the environment; a waited job without -o prints its output
run submit-env -- env KILN_URL="$url" KILN_TOKEN="$tok" "$KILN" submit noop --param frames=5 --quiet
if [ "$rc" = 0 ] && grep -qE '^jobs/[0-9a-f]{32}/[^ ]+  http://' "$T/out.txt"; then ok
else bad "submit noop (KILN_URL, KILN_TOKEN): exit $rc, stdout '$(cat "$T/out.txt")' $(head -c 300 "$T/err.txt")"; fi
run submit-json -- "$KILN" submit noop --param frames=3 --json "${A[@]}"
if [ "$rc" = 0 ] && json "d['state'] == 'succeeded' and d['progress']['frames_done'] == 3" "$T/out.txt"; then ok
else bad "submit --json: exit $rc, $(head -c 300 "$T/out.txt")"; fi

# --- --no-wait, status, jobs -------------------------------------------
run no-wait -- "$KILN" submit noop --param frames=20 --param ms_per_frame=10 --no-wait "${A[@]}"
id=$(cat "$T/out.txt")
if [ "$rc" = 0 ] && [[ "$id" =~ ^[0-9a-f]{32}$ ]]; then ok; else bad "submit --no-wait: exit $rc, printed '$id'"; fi
run status -- "$KILN" status "$id" --json "${A[@]}"
if [ "$rc" = 0 ] && json "d['job_id'] == '$id' and d['fn'] == 'noop'" "$T/out.txt"; then ok
else bad "status --json: exit $rc, $(head -c 300 "$T/out.txt")"; fi
run status-text -- "$KILN" status "$id" "${A[@]}"
if [ "$rc" = 0 ] && grep -q "^job *$id" "$T/out.txt" && grep -q "^state" "$T/out.txt"; then ok
else bad "status: exit $rc, $(head -c 300 "$T/out.txt")"; fi
run jobs -- "$KILN" jobs --json --fn noop "${A[@]}"
if [ "$rc" = 0 ] && json "'$id' in [j['job_id'] for j in d['jobs']]" "$T/out.txt"; then ok
else bad "jobs --json does not list $id: exit $rc"; fi
run jobs-table -- "$KILN" jobs --limit 50 "${A[@]}"
if [ "$rc" = 0 ] && grep -qE "^$id +noop " "$T/out.txt"; then ok; else bad "jobs table: exit $rc, $(head -c 300 "$T/out.txt")"; fi
expect "status of an unknown job" 1 "no job" -- "$KILN" status 0123456789abcdef0123456789abcdef "${A[@]}"
expect "jobs --limit 0" 2 "limit" -- "$KILN" jobs --limit 0 "${A[@]}"

# --- cancel ----------------------------------------------------------------
run long -- "$KILN" submit noop --param frames=1000 --param ms_per_frame=50 --no-wait "${A[@]}"
long=$(cat "$T/out.txt")
run cancel -- "$KILN" cancel "$long" "${A[@]}"
if [ "$rc" = 0 ] && grep -q "cancelled" "$T/out.txt"; then ok; else bad "cancel: exit $rc, $(cat "$T/out.txt" "$T/err.txt")"; fi
run cancelled-status -- "$KILN" status "$long" --json "${A[@]}"
if [ "$rc" = 0 ] && json "d['state'] == 'cancelled'" "$T/out.txt"; then ok; else bad "status after cancel: $(head -c 300 "$T/out.txt")"; fi
expect "cancel again" 1 "$long.*(already|ended|cancel)" -- "$KILN" cancel "$long" "${A[@]}"

# --- usage -------------------------------------------------------------------
run usage -- "$KILN" usage --json "${A[@]}"
if [ "$rc" = 0 ] && json "d['total']['jobs'] >= 1 and 'month_usd' in d and 'budget_usd_month' in d" "$T/out.txt"; then ok
else bad "usage --json: exit $rc, $(head -c 300 "$T/out.txt")"; fi
run usage-table -- "$KILN" usage "${A[@]}"
if [ "$rc" = 0 ] && grep -qE '^total ' "$T/out.txt" && grep -q "this month" "$T/out.txt"; then ok
else bad "usage table: exit $rc, $(head -c 300 "$T/out.txt")"; fi
expect "usage --since not a date" 2 "since" -- "$KILN" usage --since 2024-13-45 "${A[@]}"

# --- refusals ----------------------------------------------------------------
expect "unknown parameter" 2 "nosuchparam" -- "$KILN" submit noop --param nosuchparam=1 "${A[@]}"
expect "parameter out of range" 2 "ms_per_frame" -- "$KILN" submit noop --param ms_per_frame=-5 "${A[@]}"
expect "unknown function" 2 "no function 'nosuchfn'" -- "$KILN" submit nosuchfn "${A[@]}"
expect "input missing" 2 "needs an input" -- "$KILN" submit reframe -o "$T/x.mp4" "${A[@]}"
expect "input file missing" 1 "cannot read" -- "$KILN" submit reframe "$T/none.mp4" -o "$T/x.mp4" "${A[@]}"
expect "a failed job" 1 "job [0-9a-f]{32} failed \(bad_input\): noop was asked" -- \
  "$KILN" submit noop --param frames=2 --param fail=bad_input "${A[@]}"
[ ! -e "$T/x.mp4" ] && [ ! -e "$T/x.mp4.part" ] && ok || bad "a refused submit left an output"
wrong="kiln_$(printf 'ab%.0s' $(seq 1 32))"
run wrong-token -- "$KILN" submit noop --url "$url" --token "$wrong"
if [ "$rc" != 1 ] && [ "$rc" != 2 ]; then bad "wrong token: exit $rc"
elif ! grep -qi "invalid token" "$T/err.txt"; then bad "wrong token: message: $(cat "$T/err.txt")"
elif grep -q "$wrong" "$T/out.txt" "$T/err.txt"; then bad "wrong token: the token is echoed"
else ok; fi
run wrong-token-env -- env KILN_TOKEN="$wrong" "$KILN" jobs --url "$url"
if [ "$rc" = 1 ] && grep -qi "token" "$T/err.txt" && ! grep -q "$wrong" "$T/out.txt" "$T/err.txt"; then ok
else bad "wrong KILN_TOKEN: exit $rc, $(cat "$T/err.txt")"; fi
expect "no token" 1 "needs a token" -- "$KILN" status "$id" --url "$url"
# a port nothing listens on: bind one, then free it
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
expect "server not running" 1 "cannot reach kiln at http://127.0.0.1:$port" -- \
  "$KILN" submit noop --url "http://127.0.0.1:$port" --token "$tok"
grep -q "$tok" "$T/err.txt" && bad "the token is printed when the server is down" || ok
expect "bad URL" 2 "http://" -- "$KILN" jobs --url "ftp://example" --token "$tok"
expect "unknown option" 2 "unknown option '--bogus'" -- "$KILN" submit noop --bogus "${A[@]}"

# a chunked job from the client: --chunks, and status shows the plan and its tasks
"$KILN" submit noop --param frames=40 --param output=false --chunks 2 --no-wait "${A[@]}" >"$T/cid.txt" 2>/dev/null
cid=$(grep -oE '[0-9a-f]{32}' "$T/cid.txt" | head -1)
for _ in $(seq 1 200); do                       # wait (bounded) for the job to end
  "$KILN" status "$cid" --json "${A[@]}" >"$T/cst.json" 2>/dev/null
  json 'd["state"] in ("succeeded","failed")' "$T/cst.json" && break
  sleep 0.05
done
"$KILN" status "$cid" "${A[@]}" >"$T/cst.txt" 2>&1
if grep -q "^plan      2 chunks" "$T/cst.txt" && [ "$(grep -c '^task      chunk' "$T/cst.txt")" = 2 ] && grep -q '^task      join 2: succeeded' "$T/cst.txt"; then ok
else bad "status of a chunked job: $(cat "$T/cst.txt")"; fi
expect "bad chunks" 2 "--chunks needs a number from 1 to 64" -- "$KILN" submit noop --chunks 0 "${A[@]}"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
