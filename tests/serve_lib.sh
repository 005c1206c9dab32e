# serve_lib.sh — sourced by the shell tests that need a real `kiln serve`:
# start_serve ARGS... starts it on a free loopback port (KILN, T and
# KILN_HOME set by the caller), waits (bounded) for its ready line, and
# sets spid (its pid) and url; it exits the test when the server does not start.
start_serve() {
  "$KILN" serve --listen 127.0.0.1:0 "$@" 2>"$T/serve.err" &
  spid=$!
  for _ in $(seq 1 100); do
    grep -q "listening on" "$T/serve.err" && break
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.05
  done
  url=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$T/serve.err")
  [ -n "$url" ] || { echo "server did not start: $(cat "$T/serve.err")"; exit 1; }
}
