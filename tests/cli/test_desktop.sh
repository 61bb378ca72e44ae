#!/usr/bin/env bash
# The GTK chat window (examples/desktop) as a user meets it, on a virtual X
# display: it loads a model given on its command line, a question is typed
# into it and Enter pressed, the answer streams into the window (screenshots
# before and after: the transcript area gained text) and is the terminal
# chat's (examples/chat.c) greedy answer; a second run is stopped with Escape
# part way through a long answer.
#   test_desktop.sh LLM_CHAT_BINARY CHAT_BINARY MODEL.gguf
set -uo pipefail
APP=$1 CHAT=$2 MODEL=$(realpath -m "$3")  # typed into the file dialog: absolute
TMP=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }
for tool in Xvfb xdotool xwd python3; do
  command -v $tool >/dev/null || { echo "test_desktop: skipped: $tool is not installed (scripts/install-deps.sh --desktop)"; exit 0; }
done
if [[ ! -f $MODEL ]]; then
  [[ -n ${LLM_REQUIRE_MODELS:-} ]] && { echo "FAIL no model $MODEL (scripts/fetch-models.sh)"; exit 1; }
  echo "test_desktop: skipped: $MODEL not fetched (scripts/fetch-models.sh)"
  exit 0
fi

# A free display number; -noreset: the server must not restart when one app
# closes (a new one could not connect meanwhile).
d=90
while [[ -e /tmp/.X11-unix/X$d || -e /tmp/.X$d-lock ]]; do d=$((d + 1)); done
Xvfb ":$d" -screen 0 1024x768x24 -nolisten tcp -noreset >"$TMP/xvfb.log" 2>&1 &
pids+=($!)
export DISPLAY=":$d"
for _ in $(seq 100); do xdotool getdisplaygeometry >/dev/null 2>&1 && break; sleep 0.1; done
xdotool getdisplaygeometry >/dev/null 2>&1 || { echo "FAIL Xvfb did not start: $(cat "$TMP/xvfb.log")"; exit 1; }
# GTK without a GPU, a session bus, dconf or an accessibility bus.
export GDK_BACKEND=x11 GSK_RENDERER=cairo GTK_A11Y=none NO_AT_BRIDGE=1 GSETTINGS_BACKEND=memory

# Waits up to $2 seconds for file $1 to contain line $3.
wait_for() {
  for _ in $(seq $(($2 * 10))); do grep -qxF -- "$3" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
# The id of the window titled $1, waiting up to $2 seconds for it ("" if none).
window() {
  local w=""
  for _ in $(seq $(($2 * 10))); do
    w=$(xdotool search --onlyvisible --name "^$1\$" 2>/dev/null | head -1)
    [[ -n $w ]] && break
    sleep 0.1
  done
  echo "$w"
}
# The window focused under the pointer (there is no window manager).
focus() {
  local wid
  wid=$(window "llm chat" 20)
  xdotool mousemove --window "$wid" 100 100 windowfocus "$wid" 2>/dev/null
}

# Run 1: a question and its whole answer.
Q="What is the capital of France?"
"$APP" --model "$MODEL" --temp 0 -n 24 --transcript "$TMP/t1.txt" >"$TMP/app1.out" 2>"$TMP/app1.err" &
pids+=($!)
if wait_for "$TMP/app1.out" 120 ready; then pass "llm-chat loads the model"; else fail "llm-chat did not load: $(tail -3 "$TMP/app1.err")"; fi
focus
xwd -root -silent >"$TMP/before.xwd"
xdotool type --delay 15 "$Q"
xdotool key Return
for _ in $(seq 600); do [[ -s $TMP/t1.txt ]] && break; sleep 0.1; done
sleep 0.5  # the last idle callbacks draw
xwd -root -silent >"$TMP/after.xwd"
answer=$(head -1 "$TMP/t1.txt" 2>/dev/null)
want=$(printf '%s\n' "$Q" | "$CHAT" "$MODEL" --temp 0 -n 24 2>/dev/null | head -1)
[[ -n $answer && $answer == "$want" ]] && pass "the window's answer is the terminal chat's: '$answer'" ||
  fail "the window's answer '$answer', the terminal chat's '$want'"
# The screenshots: the window is drawn (many colours) and its transcript
# area (the top two thirds of the window) gained dark text pixels.
if python3 - "$TMP/before.xwd" "$TMP/after.xwd" <<'PY'
import struct, sys
def load(p):
    d = open(p, "rb").read()
    h = struct.unpack(">25I", d[:100])
    w, hgt, bpl, order, bpp = h[4], h[5], h[12], h[7], h[11]
    assert h[2] == 2 and bpl >= 3 * w, "not a 24/32-bit ZPixmap"
    step = bpl // w
    off = h[0] + h[19] * 12
    px = d[off:off + bpl * hgt]
    def rgb(x, y):
        i = y * bpl + x * step
        b = px[i:i + 3]
        return (b[2], b[1], b[0]) if order == 0 else (b[0], b[1], b[2])
    return w, hgt, rgb
w, hgt, before = load(sys.argv[1])
_, _, after = load(sys.argv[2])
colours, dark_before, dark_after = set(), 0, 0
for y in range(40, 330):
    for x in range(0, 520):
        a = after(x, y)
        colours.add(a)
        dark_before += sum(before(x, y)) < 300
        dark_after += sum(a) < 300
print(f"{len(colours)} colours, dark pixels in the transcript area {dark_before} -> {dark_after}")
sys.exit(0 if len(colours) > 20 and dark_after > dark_before + 200 else 1)
PY
then pass "the screenshot shows the answer in the window"; else fail "the screenshot does not show the answer"; fi
status=$(grep '^status: ' "$TMP/app1.out" | head -1)
[[ $status =~ ^status:\ 24\ tokens,\ [0-9]+\.[0-9]\ tokens/s$ ]] && pass "the status bar says ${status#status: }" ||
  fail "the status line: '$status'"
kill "${pids[1]}" 2>/dev/null; wait "${pids[1]}" 2>/dev/null  # gone before the next window is looked for

# Run 2: the model picked in the window's file dialog ("Open model..." at
# the header bar's left, then the dialog's location field), and the Stop
# button pressed part way through a long answer.
"$APP" --temp 0 -n 100000 --transcript "$TMP/t2.txt" >"$TMP/app2.out" 2>"$TMP/app2.err" &
pids+=($!)
wid=$(window "llm chat" 20)
dialog=""
for _ in 1 2 3; do  # a click before the window has drawn itself is lost
  sleep 1
  xdotool mousemove --window "$wid" 55 27 click 1
  dialog=$(window "Open a model" 5)
  [[ -n $dialog ]] && break
done
[[ -n $dialog ]] || fail "the Open model button opened no dialog"
sleep 0.5
xdotool mousemove --window "$dialog" 200 10 windowfocus "$dialog" 2>/dev/null  # keys go where the pointer is
xdotool key ctrl+l
xdotool type --delay 5 "$MODEL"
sleep 1  # the location field's completion settles first, or Enter takes its proposal
xdotool key Return
# On a loaded machine the completion may still have taken that Enter: a second one opens.
wait_for "$TMP/app2.out" 5 ready || xdotool key Return
if wait_for "$TMP/app2.out" 120 ready; then pass "a model opened through the file dialog"; else fail "the file dialog did not open the model: $(tail -2 "$TMP/app2.err")"; fi
focus
xdotool type --delay 15 "Tell me a very long story about a dragon."
xdotool key Return
if wait_for "$TMP/app2.out" 60 answering; then
  sleep 1
  # The button by its mnemonic: pointer clicks reach only the top of a
  # window on Xvfb without a window manager.
  xdotool key alt+t
  if wait_for "$TMP/t2.txt" 30 "[stopped]"; then pass "the Stop button stops the answer part way"; else fail "the answer was not stopped: $(tail -c 200 "$TMP/t2.txt")"; fi
else
  fail "the second question was not answered"
fi
kill "${pids[2]}" 2>/dev/null; wait "${pids[2]}" 2>/dev/null

# Run 3: Escape, the Stop button's shortcut.
"$APP" --model "$MODEL" --temp 0 -n 100000 --transcript "$TMP/t3.txt" >"$TMP/app3.out" 2>"$TMP/app3.err" &
pids+=($!)
wait_for "$TMP/app3.out" 120 ready || fail "llm-chat did not load a third time"
focus
xdotool type --delay 15 "Tell me a very long story about a dragon."
xdotool key Return
if wait_for "$TMP/app3.out" 60 answering; then
  sleep 1
  xdotool key Escape
  if wait_for "$TMP/t3.txt" 30 "[stopped]"; then pass "Escape stops the answer part way"; else fail "Escape did not stop the answer"; fi
else
  fail "the third question was not answered"
fi
echo "$fails failed"
[[ $fails -eq 0 ]]
