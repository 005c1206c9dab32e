#!/usr/bin/env bash
# test_cli.sh — the kiln binary as a user meets it: commands, --json, and every
# bad input of the foundation issue. Each case asserts the exit status, that
# the message names what is wrong, and that no output (or partial output) is
# left behind. Usage: test_cli.sh PATH/TO/kiln
set -u
KILN=${1:?usage: test_cli.sh KILN}
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-cli-XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0 fail=0

ok()   { pass=$((pass + 1)); }
bad()  { fail=$((fail + 1)); echo "  FAIL: $*" >&2; }

# expect NAME STATUS PATTERN -- command...: runs it, checks status and that
# stderr matches PATTERN, and that $T/out* does not exist afterwards.
expect() {
  local name=$1 want=$2 pat=$3; shift 4
  rm -f "$T"/out* "$T"/.out*
  "$@" >"$T/stdout" 2>"$T/stderr"
  local got=$?
  local leftovers
  leftovers=$(ls -A "$T" | grep -E '^\.?out' || true)
  if [ "$got" != "$want" ]; then bad "$name: exit $got, want $want ($(head -c 300 "$T/stderr"))"
  elif ! grep -qE -- "$pat" "$T/stderr"; then bad "$name: message does not match /$pat/: $(head -c 300 "$T/stderr")"
  elif [ -n "$leftovers" ]; then bad "$name: left files behind: $leftovers"
  else ok; fi
}

"$KILN" sample coords "$T/in.mp4" --size 320x180 --seconds 2 --tone 440 || { echo "cannot make a sample"; exit 1; }
"$KILN" sample bars "$T/long.mp4" --size 640x360 --seconds 30 || exit 1

# --- commands that work ---------------------------------------------------
v=$("$KILN" --version); [[ "$v" =~ ^kiln\ [0-9]+\.[0-9]+\.[0-9]+$ ]] && ok || bad "--version printed '$v'"
"$KILN" functions | grep -q '^reframe' && "$KILN" functions | grep -q '^overlay' && ok || bad "functions lists both"
"$KILN" functions overlay | grep -q 'ring_width' && ok || bad "functions overlay shows its parameters"
"$KILN" functions --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert {f["name"] for f in d} >= {"reframe","overlay"}' && ok || bad "functions --json"
"$KILN" help run | grep -q -- '--params FILE' && ok || bad "help run"
"$KILN" probe --json "$T/in.mp4" | python3 -c '
import json,sys; d=json.load(sys.stdin); v=d["video"]
assert v["width"]==320 and v["height"]==180 and v["frames"]==60 and v["frames_exact"] and v["pix_fmt"]=="yuv420p", v
assert d["audio"][0]["codec"]=="aac"' && ok || bad "probe --json"

"$KILN" run reframe "$T/in.mp4" -o "$T/reel.mp4" --param width=180 --param height=320 --json >"$T/res.json" 2>"$T/err"
python3 - "$T/res.json" "$T/reel.mp4" <<'PY' && ok || bad "run --json result"
import json, os, sys
d = json.load(open(sys.argv[1]))
assert d["ok"] and d["frames"] == 60 and d["width"] == 180 and d["height"] == 320, d
assert d["output"] == sys.argv[2] and os.path.getsize(sys.argv[2]) > 1000 and d["fps"] > 0 and d["audio"] == "copy", d
PY
# plain (non-TTY) progress lines go to stderr, the summary names the output
grep -q "wrote $T/reel.mp4" "$T/err" || { "$KILN" run overlay "$T/in.mp4" -o "$T/spot.mp4" --param 'highlights=[{"frame":0,"x":100,"y":90,"rx":30,"ry":40}]' 2>"$T/err2"; grep -q "frames (100%)" "$T/err2" && grep -q "wrote $T/spot.mp4" "$T/err2"; } && ok || bad "progress lines and summary"
echo '{"highlights":[{"frame":0,"x":100,"y":90,"rx":30,"ry":40}],"dim":0.2}' > "$T/p.json"
"$KILN" run overlay "$T/in.mp4" -o "$T/spot2.mp4" --params "$T/p.json" --param dim=0.9 -q && [ -s "$T/spot2.mp4" ] && ok || bad "--params file with --param override"

# a stream whose size changes mid-way (two clips joined) comes out at the first size
ffmpeg -v error -nostdin -f lavfi -i testsrc=size=320x240:rate=25:duration=1 -c:v libx264 -preset ultrafast -y "$T/a.ts"
ffmpeg -v error -nostdin -f lavfi -i testsrc=size=640x480:rate=25:duration=1 -c:v libx264 -preset ultrafast -output_ts_offset 1 -y "$T/b.ts"
cat "$T/a.ts" "$T/b.ts" > "$T/ab.ts"
"$KILN" run overlay "$T/ab.ts" -o "$T/ab.mp4" --json --param 'highlights=[{"frame":0,"x":100,"y":100,"rx":40,"ry":40},{"frame":49,"x":200,"y":100,"rx":40,"ry":40}]' > "$T/ab.json" 2>"$T/ab.err"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert (d["width"], d["height"], d["frames"]) == (320, 240, 50), d' "$T/ab.json" \
  && ok || bad "size change mid-stream: $(cat "$T/ab.json" "$T/ab.err" | head -c 300)"

# audio that starts 1 s after the video stays 1 s late through the AAC path (trim + speed)
ffmpeg -v error -nostdin -f lavfi -i testsrc=size=160x90:rate=25:duration=4 -itsoffset 1 -f lavfi -i "sine=frequency=440:duration=3" \
  -map 0:v -map 1:a -c:v libx264 -preset ultrafast -c:a aac -y "$T/late.mp4"
"$KILN" run reframe "$T/late.mp4" -o "$T/late_out.mp4" -q --param width=90 --param height=160 --param trim.start=0.5 \
  --param 'speed=[{"start":2,"end":3,"speed":2}]'
vol() { ffmpeg -v info -nostdin -ss "$2" -t "$3" -i "$1" -af volumedetect -f null - 2>&1 | sed -n 's/.*max_volume: \(.*\) dB/\1/p'; }
quiet=$(vol "$T/late_out.mp4" 0 0.4); loud=$(vol "$T/late_out.mp4" 0.7 0.6)
python3 -c 'import sys; q, l = float(sys.argv[1]), float(sys.argv[2]); assert q < -50 and l > -20, (q, l)' "${quiet:--1}" "${loud:--99}" \
  && ok || bad "late audio: first 0.4 s max ${quiet} dB (want silence), 0.7-1.3 s max ${loud} dB (want the tone)"

# --log-json: every line on stderr is a JSON record, progress and errors alike
"$KILN" --log-json run reframe "$T/in.mp4" -o "$T/lj.mp4" --param width=90 --param height=160 2>"$T/lj.err" >/dev/null
"$KILN" --log-json run reframe "$T/nope.mp4" -o "$T/lj2.mp4" 2>>"$T/lj.err" >/dev/null
python3 -c '
import json,sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert all(set(r) >= {"ts","level","msg"} for r in recs), recs
assert any(r["level"] == "info" and "wrote" in r["msg"] for r in recs), recs
assert any(r["level"] == "error" and "nope.mp4" in r["msg"] for r in recs), recs' "$T/lj.err" && ok || bad "--log-json lines: $(head -c 300 "$T/lj.err")"

# variable frame rate: 30 fps for 1 s, then 10 fps; probe says so, and a
# reframe to 30 fps gives round(duration x 30) evenly spaced frames
ffmpeg -v error -nostdin -f lavfi -i testsrc=size=320x180:rate=30:duration=4 \
  -vf "select='lt(n,30)+not(mod(n-30,3))',setpts='if(lt(N,30),N/30,1+(N-30)/10)/TB'" \
  -fps_mode vfr -c:v libx264 -preset ultrafast -y "$T/vfr.mp4"
"$KILN" probe --json "$T/vfr.mp4" > "$T/vfr.json"
python3 -c '
import json,sys; v=json.load(open(sys.argv[1]))["video"]
assert v["vfr"] and v["frames_exact"] and v["frames"]==60, v' "$T/vfr.json" && ok || bad "probe detects variable frame rate: $(cat "$T/vfr.json")"
"$KILN" run reframe "$T/vfr.mp4" -o "$T/cfr.mp4" --param width=160 --param height=90 --param fps=30 --json > "$T/cfr.json" 2>/dev/null
python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); p=json.load(open(sys.argv[2]))
assert d["frames"] == round(p["duration"] * 30) and d["frames"] >= 117, (d["frames"], p["duration"])' "$T/cfr.json" "$T/vfr.json" && ok || bad "VFR input to constant 30 fps: $(cat "$T/cfr.json")"

# odd size, 4:4:4, Matroska, MP3 audio that runs 0.5 s past the video: the probe reports the
# video's duration, the output is even-sized 4:2:0 and its copied audio ends with the video
ffmpeg -v error -nostdin -f lavfi -i testsrc=size=641x361:rate=24:duration=1 -f lavfi -i "sine=frequency=300:duration=1.5" \
  -c:v libx264 -preset ultrafast -pix_fmt yuv444p -c:a libmp3lame -y "$T/odd.mkv"
"$KILN" probe --json "$T/odd.mkv" > "$T/odd.json"
"$KILN" run overlay "$T/odd.mkv" -o "$T/odd.mp4" -q --param 'highlights=[{"frame":0,"x":300,"y":180,"rx":50,"ry":50}]'
"$KILN" probe --json "$T/odd.mp4" > "$T/odd_out.json"
python3 -c '
import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2]))
assert abs(a["duration"] - 1.0) < 1e-6 and a["video"]["pix_fmt"] == "yuv444p", a
v = b["video"]; assert (v["width"], v["height"], v["pix_fmt"], v["frames"]) == (640, 360, "yuv420p", 24), v
assert b["audio"][0]["codec"] == "mp3" and abs(b["audio"][0]["duration"] - 1.0) <= 1/24, b["audio"]' "$T/odd.json" "$T/odd_out.json" \
  && ok || bad "odd-sized 4:4:4 MKV with longer MP3 audio: $(cat "$T/odd_out.json" | tr -d '\n' | head -c 400)"

# frame counts: counted when cheap (Matroska has no index count), estimated and marked so when not
python3 -c '
import json,sys; v=json.load(open(sys.argv[1]))["video"]
assert v["frames"] == 24 and v["frames_exact"], v' "$T/odd.json" && ok || bad "mkv frames counted exactly"
KILN_PROBE_SCAN_MAX=0 "$KILN" probe --json "$T/odd.mkv" > "$T/odd_est.json"
"$KILN" probe "$T/odd.mkv" > "$T/odd.txt"; KILN_PROBE_SCAN_MAX=0 "$KILN" probe "$T/odd.mkv" > "$T/odd_est.txt"
python3 -c '
import json,sys; v=json.load(open(sys.argv[1]))["video"]
assert not v["frames_exact"] and abs(v["frames"] - 24) <= 13, v' "$T/odd_est.json" && grep -q "(estimated)" "$T/odd_est.txt" \
  && ! grep -q "(estimated)" "$T/odd.txt" && ok || bad "estimated frame count marked: $(cat "$T/odd_est.json" | head -c 300)"

# --- a function without input (noop) --------------------------------------
"$KILN" run noop -o "$T/noop.json" --param frames=7 --json > "$T/noop.out" 2>/dev/null \
  && python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); o=json.load(open(sys.argv[2])); assert r["ok"] and r["frames"]==7 and o=={"frames":7}, (r,o)' "$T/noop.out" "$T/noop.json" \
  && ok || bad "kiln run noop -o OUT writes its JSON output: $(cat "$T/noop.out")"
expect "noop with an input" 2 "noop takes no input file" -- "$KILN" run noop "$T/in.mp4" -o "$T/noop2.json"

# --- upscale with the test model (tests/fixtures/nn/tiny: x2) ---------------
fx="$(cd "$(dirname "$0")" && pwd)/fixtures/nn/tiny"
"$KILN" sample bars "$T/small.mp4" --seconds 0.4 --size 64x48 --tone 500 >/dev/null 2>&1
"$KILN" run upscale "$T/small.mp4" -o "$T/up.mp4" --param model="$fx" --json > "$T/up.json" 2>/dev/null \
  && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["width"]==128 and d["height"]==96 and d["frames"]==12 and d["audio"]!="none", d' "$T/up.json" \
  && ok || bad "upscale x2 with the test model: $(cat "$T/up.json")"
"$KILN" run upscale "$T/small.mp4" -o "$T/up2.mp4" --param model="$fx" --param width=100 --param height=60 --json > "$T/up2.json" 2>/dev/null \
  && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert (d["width"], d["height"])==(100, 60), d' "$T/up2.json" \
  && ok || bad "upscale to a given size: $(cat "$T/up2.json")"
expect "upscale, model not fetched" 1 "model 'realesr-animevideov3-x4' is not installed: run .kiln models fetch realesr-animevideov3-x4." -- \
  env KILN_HOME="$T/nomodels" "$KILN" run upscale "$T/small.mp4" -o "$T/up3.mp4"
head -c 100 "$fx.bin" > "$T/trunc.bin"; cp "$fx.param" "$T/trunc.param"
expect "upscale, truncated weights" 1 "weight file '.*trunc.bin' is truncated" -- "$KILN" run upscale "$T/small.mp4" -o "$T/up4.mp4" --param model="$T/trunc"
[ ! -e "$T/up4.mp4" ] && ok || bad "a failed upscale left an output"
"$KILN" run upscale "$T/small.mp4" -o "$T/upc.mp4" --param model="$fx" --param 'crop=[{"frame":0,"x":0,"w":20,"h":36},{"frame":11,"x":40,"w":20,"h":36}]' --json > "$T/upc.json" 2>/dev/null \
  && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert (d["width"], d["height"], d["frames"])==(810, 1440, 12), d' "$T/upc.json" \
  && ok || bad "crop, upscale, resize: 810x1440 by default: $(cat "$T/upc.json")"
expect "upscale, crop outside the frame" 2 "upscale: crop\[0\] .* extends outside the 64x48 source frame" -- \
  "$KILN" run upscale "$T/small.mp4" -o "$T/upd.mp4" --param model="$fx" --param 'crop=[{"frame":0,"x":60}]'
expect "upscale, odd width" 2 "must be even" -- "$KILN" run upscale "$T/small.mp4" -o "$T/out.mp4" --param model="$fx" --param width=101 --param 'crop=[{"frame":0,"x":0}]'
expect "upscale, width not a multiple of the scale" 2 "width 101 is not a whole multiple of the model's scale \(x2\).*use 100 or 102" -- \
  "$KILN" run upscale "$T/small.mp4" -o "$T/out.mp4" --param model="$fx" --param width=101
expect "upscale, height not a multiple of the scale" 2 "height 61 is not a whole multiple of the model's scale \(x2\)" -- \
  "$KILN" run upscale "$T/small.mp4" -o "$T/out.mp4" --param model="$fx" --param width=100 --param height=61
# same_pixels A B: A's and B's frames agree within float rounding (PSNR >= 60 dB, or identical)
same_pixels() {
  local p
  p=$(ffmpeg -nostdin -i "$1" -i "$2" -lavfi "[0:v][1:v]psnr" -f null - 2>&1 | sed -n 's/.*PSNR .* average:\([^ ]*\).*/\1/p' | tail -1)
  [ "$p" = inf ] || python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 60 else 1)' "${p:-0}"
}
# tiles stitch without seams: a tiled run makes the same frames (lossless; float rounding aside)
"$KILN" run upscale "$T/small.mp4" -o "$T/upw.mp4" --param model="$fx" --param lossless=true -q 2>/dev/null \
  && "$KILN" run upscale "$T/small.mp4" -o "$T/upt.mp4" --param model="$fx" --param lossless=true --param tile=10 -q 2>/dev/null \
  && same_pixels "$T/upw.mp4" "$T/upt.mp4" && ok || bad "a video upscaled in 10-pixel tiles differs from the whole-frame run"

# --- upscale on still images: PNG/JPEG in, PNG out ---------------------------
ffmpeg -v error -nostdin -f lavfi -i testsrc2=size=64x48 -frames:v 1 -y "$T/pic.png"
ffmpeg -v error -nostdin -f lavfi -i testsrc2=size=64x48 -frames:v 1 -q:v 3 -y "$T/pic.jpg"
for src in pic.png pic.jpg; do
  "$KILN" run upscale "$T/$src" -o "$T/up-$src.png" --param model="$fx" --json > "$T/upi.json" 2>/dev/null \
    && [ "$(ffprobe -v error -show_entries stream=codec_name,width,height,pix_fmt -of csv=p=0 "$T/up-$src.png")" = "png,128,96,rgb24" ] \
    && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] and (d["width"], d["height"], d["frames"])==(128, 96, 1), d' "$T/upi.json" \
    && ok || bad "upscale $src -> PNG 128x96: $(cat "$T/upi.json")"
done
"$KILN" run upscale "$T/pic.png" -o "$T/up-tiled.png" --param model="$fx" --param tile=9 -q 2>/dev/null \
  && same_pixels "$T/up-tiled.png" "$T/up-pic.png.png" && ok || bad "a still image upscaled in 9-pixel tiles differs from the whole run"
"$KILN" run upscale "$T/pic.png" -o "$T/up-size.png" --param model="$fx" --param width=100 --param height=60 -q 2>/dev/null \
  && [ "$(ffprobe -v error -show_entries stream=width,height -of csv=p=0 "$T/up-size.png")" = "100,60" ] \
  && ok || bad "upscale an image to 100x60"
"$KILN" run upscale "$T/pic.jpg" -o "$T/up-crop.png" --param model="$fx" --param 'crop=[{"frame":0,"x":8,"y":4,"h":40}]' --param width=90 --param height=160 -q 2>/dev/null \
  && [ "$(ffprobe -v error -show_entries stream=width,height -of csv=p=0 "$T/up-crop.png")" = "90,160" ] \
  && ok || bad "crop, upscale, resize an image to 90x160"
# an identity model (x1: a ReLU of [0,1]) gives the picture back exactly: decode, [0,1], PNG are lossless
printf '7767517\n2 2\nInput in 0 1 data\nReLU r 1 1 data out\n' > "$T/id.param"; : > "$T/id.bin"
"$KILN" run upscale "$T/pic.png" -o "$T/id.png" --param model="$T/id" -q 2>/dev/null \
  && [ "$(ffmpeg -v error -i "$T/pic.png" -pix_fmt rgb24 -f framemd5 - | grep -v '^#')" = "$(ffmpeg -v error -i "$T/id.png" -pix_fmt rgb24 -f framemd5 - | grep -v '^#')" ] \
  && ok || bad "an identity model does not give the PNG back exactly"
# a JPEG's EXIF orientation is applied: each of the 8 gives the upright picture (orientation 1 turned by hand)
python3 - "$T/pic.jpg" "$T" <<'PY'
import struct, sys
j = open(sys.argv[1], "rb").read()
for o in range(1, 9):
    ifd = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, o, 0) + struct.pack("<I", 0)
    app1 = b"Exif\x00\x00" + ifd
    open(f"{sys.argv[2]}/exif{o}.jpg", "wb").write(j[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + j[2:])
PY
md5s() { ffmpeg -v error -i "$1" -pix_fmt rgb24 -f framemd5 - | grep -v '^#' | awk -F, '{print $NF}'; }
"$KILN" run upscale "$T/exif1.jpg" -o "$T/exif1.png" --param model="$T/id" -q 2>/dev/null
for turn in 2:hflip 3:hflip,vflip 4:vflip 5:transpose=cclock_flip 6:transpose=clock 7:transpose=clock_flip 8:transpose=cclock; do
  o=${turn%%:*}
  ffmpeg -v error -nostdin -y -i "$T/exif1.png" -vf "${turn#*:}" "$T/exif-want$o.png" \
    && "$KILN" run upscale "$T/exif$o.jpg" -o "$T/exif$o.png" --param model="$T/id" -q 2>/dev/null \
    && [ -n "$(md5s "$T/exif$o.png")" ] && [ "$(md5s "$T/exif$o.png")" = "$(md5s "$T/exif-want$o.png")" ] \
    && ok || bad "EXIF orientation $o is not applied as ${turn#*:}"
done
mkdir -p "$T/taken.png"
"$KILN" run upscale "$T/pic.png" -o "$T/taken.png" --param model="$fx" -q 2>"$T/taken.err"
[ $? -eq 1 ] && grep -q "cannot move the finished output to '$T/taken.png'" "$T/taken.err" && [ -z "$(ls -A "$T" | grep '^\.taken')" ] \
  && ok || bad "an output that cannot be renamed into place leaves its temporary file: $(cat "$T/taken.err"; ls -A "$T")"
expect "upscale image, width not a multiple of the scale" 2 "upscale: width 99 is not a whole multiple of the model's scale \(x2\)" -- \
  "$KILN" run upscale "$T/pic.png" -o "$T/out.png" --param model="$fx" --param width=99 --param height=60
expect "upscale image to a video name" 2 "is a still image, so the output is a PNG: name it .png" -- \
  "$KILN" run upscale "$T/pic.png" -o "$T/out.mp4" --param model="$fx"
expect "upscale video to a PNG name" 2 "a .png output is for a still image input" -- \
  "$KILN" run upscale "$T/small.mp4" -o "$T/out.png" --param model="$fx"
expect "upscale image, model not fetched" 1 "model 'realesr-animevideov3-x2' is not installed: run .kiln models fetch realesr-animevideov3-x2." -- \
  env KILN_HOME="$T/nomodels" "$KILN" run upscale "$T/pic.jpg" -o "$T/out.png" --param model=realesr-animevideov3-x2
expect "upscale image, truncated weights" 1 "weight file '.*trunc.bin' is truncated" -- \
  "$KILN" run upscale "$T/pic.png" -o "$T/out.png" --param model="$T/trunc"
{ printf 'XXXX'; tail -c +5 "$fx.bin"; } > "$T/corrupt.bin"; cp "$fx.param" "$T/corrupt.param"
expect "upscale image, corrupt weights" 1 "weight file '.*corrupt.bin': layer 'conv0' has weights of a kind kiln does not read" -- \
  "$KILN" run upscale "$T/pic.png" -o "$T/out.png" --param model="$T/corrupt"
sed 's/^PixelShuffle /Deconvolution /' "$fx.param" > "$T/unsup.param"; cp "$fx.bin" "$T/unsup.bin"
expect "upscale image, unsupported layer" 1 "unsup.param:[0-9]+: layer 'ps' has type 'Deconvolution', which kiln does not implement" -- \
  "$KILN" run upscale "$T/pic.png" -o "$T/out.png" --param model="$T/unsup"
head -c 300 "$T/pic.png" > "$T/cut.png"
expect "upscale image, truncated picture" 1 "cut.png" -- "$KILN" run upscale "$T/cut.png" -o "$T/out.png" --param model="$fx"
expect "upscale image, unwritable output" 1 "cannot write output '$T/nodir/out.png'" -- \
  "$KILN" run upscale "$T/pic.png" -o "$T/nodir/out.png" --param model="$fx"

# --- bad input ------------------------------------------------------------
expect "missing file" 1 "cannot open input '.*nope.mp4': No such file" -- "$KILN" run reframe "$T/nope.mp4" -o "$T/out.mp4"
printf 'just text, not a video at all; FFmpeg cannot make sense of this\n' > "$T/text.mp4"
expect "not media" 1 "is not a media file" -- "$KILN" run reframe "$T/text.mp4" -o "$T/out.mp4"
yes "a text file that FFmpeg would play as ANSI art" | head -40 > "$T/notes.txt"
expect "text file" 1 "is a text file, not a media file" -- "$KILN" run reframe "$T/notes.txt" -o "$T/out.mp4"
: > "$T/empty.mp4"
expect "empty file" 1 "is empty" -- "$KILN" run overlay "$T/empty.mp4" -o "$T/out.mp4" --param 'highlights=[{"frame":0,"x":1,"y":1,"rx":5,"ry":5}]'
cp "$T/long.mp4" "$T/trunc.mp4"; truncate -s $(( $(stat -c %s "$T/long.mp4") / 2 )) "$T/trunc.mp4"
expect "truncated file" 1 "truncated|corrupt" -- "$KILN" run reframe "$T/trunc.mp4" -o "$T/out.mp4" --param width=90 --param height=160
cp "$T/long.mp4" "$T/corrupt.mp4"
sz=$(stat -c %s "$T/corrupt.mp4")
# overwrite the middle third of the media data with a fixed byte pattern
python3 -c "
import sys; p=sys.argv[1]; n=int(sys.argv[2]); b=bytearray(open(p,'rb').read())
for i in range(n//3, 2*n//3): b[i] = (i * 7919) & 0xff
open(p,'wb').write(b)" "$T/corrupt.mp4" "$sz"
expect "corrupt file" 1 "corrupt" -- "$KILN" run reframe "$T/corrupt.mp4" -o "$T/out.mp4" --param width=90 --param height=160
ffmpeg -v error -f lavfi -i "sine=frequency=440:duration=1" -y "$T/audio_only.m4a" 2>/dev/null || "$KILN" sample coords "$T/audio_only.m4a" --tone 440 --seconds 1 >/dev/null 2>&1
expect "zero frames (audio only)" 1 "no video stream" -- "$KILN" run reframe "$T/audio_only.m4a" -o "$T/out.mp4"
expect "crop outside" 2 "crop\[1\] .*outside the 320x180 source" -- "$KILN" run reframe "$T/in.mp4" -o "$T/out.mp4" --param width=90 --param height=160 --param 'crop=[{"frame":0,"x":0,"w":90,"h":160},{"frame":30,"x":250,"w":90,"h":160}]'
expect "unknown param" 2 "unknown parameter 'widht'.*known: crop, width" -- "$KILN" run reframe "$T/in.mp4" -o "$T/out.mp4" --param widht=100
expect "ill-typed param" 2 "'dim' must be a number, got the string \"lots\"" -- "$KILN" run overlay "$T/in.mp4" -o "$T/out.mp4" --param dim=lots --param 'highlights=[{"frame":0,"x":1,"y":1,"rx":5,"ry":5}]'
expect "speed out of range" 2 "'speed\[0\]\.speed' must be between 0.25 and 4, got 5" -- "$KILN" run reframe "$T/in.mp4" -o "$T/out.mp4" --param 'speed=[{"start":0,"end":1,"speed":5}]'
expect "speed too slow" 2 "between 0.25 and 4, got 0.1" -- "$KILN" run reframe "$T/in.mp4" -o "$T/out.mp4" --param 'speed=[{"start":0,"end":1,"speed":0.1}]'
expect "unwritable output" 1 "cannot write output '/nonexistent-kiln-dir/out.mp4'" -- "$KILN" run reframe "$T/in.mp4" -o /nonexistent-kiln-dir/out.mp4
expect "unknown container" 1 "cannot tell the container" -- "$KILN" run reframe "$T/in.mp4" -o "$T/out.xyz"
expect "unknown function" 2 "unknown function 'crop' \(known: reframe, overlay, upscale, (remove_watermark, )?noop\)" -- "$KILN" run crop "$T/in.mp4" -o "$T/out.mp4"
expect "no output named" 2 "needs an output file" -- "$KILN" run reframe "$T/in.mp4"
echo '{"dim": 0.5,' > "$T/broken.json"
expect "bad params file" 2 "not valid JSON \(line" -- "$KILN" run overlay "$T/in.mp4" -o "$T/out.mp4" --params "$T/broken.json"
expect "sample: odd size" 2 "--size must be WxH with even numbers, got '3x3'" -- "$KILN" sample coords "$T/out.mp4" --size 3x3
expect "serve: bad listen address" 2 "--listen needs HOST:PORT, got 'nowhere'" -- "$KILN" serve --listen nowhere
expect "output is input" 2 "is the input" -- "$KILN" run reframe "$T/in.mp4" -o "$T/in.mp4"

# --json errors are machine-readable too
"$KILN" run overlay "$T/in.mp4" -o "$T/out.mp4" --json --param dim=2 --param 'highlights=[{"frame":0,"x":1,"y":1,"rx":5,"ry":5}]' >"$T/ej" 2>/dev/null
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] is False and d["error"]["code"]=="EPARAM" and d["error"]["class"]=="bad_input" and "dim" in d["error"]["message"], d' "$T/ej" && ok || bad "--json error body"

# --- API tokens: shown once, stored hashed --------------------------------
export KILN_HOME="$T/home"
tok=$("$KILN" token create --name ci 2>"$T/tok.err")
[[ "$tok" =~ ^kiln_[0-9a-f]{64}$ ]] && ok || bad "token format: '$tok'"
if [ -f "$KILN_HOME/tokens.json" ] && ! grep -q "${tok#kiln_}" "$KILN_HOME/tokens.json" \
   && grep -q "$(printf '%s' "$tok" | sha256sum | cut -c1-64)" "$KILN_HOME/tokens.json" \
   && [ "$(stat -c %a "$KILN_HOME/tokens.json")" = 600 ] && ! grep -q "$tok" "$T/tok.err"; then ok
else bad "token stored in the clear, not hashed, or file mode wrong"; fi
expect "duplicate token name" 1 "token named 'ci' exists" -- "$KILN" token create --name ci
"$KILN" token list | grep -q '^ci ' && ! "$KILN" token list | grep -q "$tok" && ok || bad "token list"
"$KILN" token revoke ci && ! grep -q '"ci"' "$KILN_HOME/tokens.json" && ok || bad "token revoke"
expect "revoke unknown" 1 "no token named 'nope'" -- "$KILN" token revoke nope
unset KILN_HOME

# --- cancelling: SIGINT mid-run removes the partial output ----------------
"$KILN" run reframe "$T/long.mp4" -o "$T/out.mp4" --threads 1 --param preset=medium 2>"$T/cancel.err" &
pid=$!
for _ in $(seq 1 200); do   # wait (bounded) until the partial file exists
  ls -A "$T" | grep -q '^\.out.mp4.part' && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.05
done
kill -INT $pid 2>/dev/null
wait $pid; st=$?
if [ $st -ne 0 ] && grep -q "cancelled" "$T/cancel.err" && ! ls -A "$T" | grep -qE '^\.?out'; then ok; else bad "cancel: exit $st, $(cat "$T/cancel.err" | tail -1), files: $(ls -A "$T" | grep out)"; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
