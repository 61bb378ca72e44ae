#!/usr/bin/env bash
# The command-line tools as a user meets them: --help, a real conversion and
# tokenization, and bad input (exit status 1 and one line on stderr, never a crash).
# Usage: test_tools.sh BIN_DIR DATA_DIR EXAMPLES_DIR
set -uo pipefail
BIN=$(cd "$1" && pwd)
DATA=$(cd "$2" && pwd)
EXAMPLES=$(cd "$3" && pwd)
MODEL=$DATA/../../models/SmolLM2-135M-Instruct.Q4_1.gguf
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
# Under the sanitizers (make test-sanitize sets ASAN_OPTIONS) resident memory
# is the sanitizer's, and with the scalar kernels a SmolLM2 fine-tune takes
# minutes: the memory-plan and SmolLM2 training checks run in the other builds.
full_checks=1
[[ -n ${ASAN_OPTIONS:-} || ${GGML_KERNELS:-} == scalar ]] && full_checks=0

pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }

# expect_error NAME NEEDLE CMD...: exit 1, the error as the last line of stderr
# (after at most one informational line), containing NEEDLE.
expect_error() {
  local name=$1 needle=$2
  shift 2
  "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  local lines
  lines=$(wc -l <"$TMP/err")
  if [[ $rc -eq 1 && $lines -ge 1 && $lines -le 2 ]] && tail -1 "$TMP/err" | grep -qF -- "$needle"; then
    pass "$name"
  else
    fail "$name (rc=$rc, $lines stderr lines: $(head -c 300 "$TMP/err"))"
  fi
}

for tool in tokenize convert; do
  if "$BIN/$tool" --help >"$TMP/help" 2>&1 && grep -q "Usage" "$TMP/help"; then pass "$tool --help"; else fail "$tool --help"; fi
done

# convert: a real checkpoint, with progress lines on a non-terminal stderr.
if "$BIN/convert" "$DATA/hf/llama_st" -o "$TMP/llama.gguf" --outtype q8_0 2>"$TMP/conv.err" &&
   grep -q "100% (21/21 tensors)" "$TMP/conv.err" && grep -q "wrote" "$TMP/conv.err" && [[ ! -e "$TMP/llama.gguf.tmp" ]]; then
  pass "convert llama_st q8_0 with progress"
else
  fail "convert llama_st q8_0: $(cat "$TMP/conv.err")"
fi
"$BIN/convert" "$DATA/hf/gptneox_st" --vocab-only -o "$TMP/vocab.gguf" -q 2>/dev/null && pass "convert --vocab-only" || fail "convert --vocab-only"

expect_error "convert: missing directory" "no such file or directory" "$BIN/convert" "$TMP/nope"
printf 'x' >"$TMP/afile"
expect_error "convert: a file, not a directory" "not a directory" "$BIN/convert" "$TMP/afile"
cp -r "$DATA/hf/llama_st" "$TMP/ck"
expect_error "convert: output onto a checkpoint file" "must not overwrite" "$BIN/convert" "$TMP/ck" -o "$TMP/ck/../ck/config.json"
expect_error "convert: bad outtype" "--outtype 'q3'" "$BIN/convert" "$DATA/hf/llama_st" --outtype q3
expect_error "convert: unknown option" "see --help" "$BIN/convert" "$DATA/hf/llama_st" --bogus
expect_error "convert: no argument" "MODEL_DIR is required" "$BIN/convert"

# tokenize: ids on one line, BOS from the vocabulary, --show, --parse-special.
out=$("$BIN/tokenize" -m "$TMP/llama.gguf" -p "Hello world")
[[ "$out" =~ ^1\ [0-9]+(\ [0-9]+)*$ ]] && pass "tokenize adds the SPM BOS (id 1)" || fail "tokenize BOS: '$out'"
out2=$("$BIN/tokenize" -m "$TMP/llama.gguf" -p "Hello world" --no-bos)
[[ "1 $out2" == "$out" ]] && pass "tokenize --no-bos" || fail "tokenize --no-bos: '$out2' vs '$out'"
printf 'Hello world' >"$TMP/prompt.txt"
out3=$("$BIN/tokenize" -m "$TMP/llama.gguf" -f "$TMP/prompt.txt")
[[ "$out3" == "$out" ]] && pass "tokenize -f equals -p" || fail "tokenize -f: '$out3'"
n_show=$("$BIN/tokenize" -m "$TMP/llama.gguf" -p "Hello world" --show | wc -l)
[[ $n_show -eq $(wc -w <<<"$out") ]] && pass "tokenize --show: one line per token" || fail "tokenize --show: $n_show lines"
plain=$("$BIN/tokenize" -m "$TMP/vocab.gguf" -p "<|im_start|>hi" | wc -w)
special=$("$BIN/tokenize" -m "$TMP/vocab.gguf" -p "<|im_start|>hi" --parse-special)
[[ $plain -gt 2 && "$special" =~ ^2\ [0-9]+$ ]] && pass "tokenize --parse-special" || fail "tokenize --parse-special: $plain / '$special'"

expect_error "tokenize: missing model" "cannot open" "$BIN/tokenize" -m "$TMP/none.gguf" -p hi
expect_error "tokenize: no text" "exactly one of" "$BIN/tokenize" -m "$TMP/vocab.gguf"
expect_error "tokenize: missing file" "cannot open" "$BIN/tokenize" -m "$TMP/vocab.gguf" -f "$TMP/none.txt"
head -c 1000 "$TMP/llama.gguf" >"$TMP/trunc.gguf"
expect_error "tokenize: truncated gguf" "trunc.gguf" "$BIN/tokenize" -m "$TMP/trunc.gguf" -p hi
printf 'not a gguf file at all' >"$TMP/junk.gguf"
expect_error "tokenize: not gguf" "junk.gguf" "$BIN/tokenize" -m "$TMP/junk.gguf" -p hi

# The C API example (examples/simple.c), built by CMake, run for real.
if "$EXAMPLES/simple" "$TMP/llama.gguf" "Hello" 8 0.8 >"$TMP/simple.out" 2>"$TMP/simple.err" &&
   grep -q "tokens generated" "$TMP/simple.err"; then
  pass "C example on a converted model"
else
  fail "C example: $(cat "$TMP/simple.err")"
fi
expect_error "C example: missing model" "cannot open" "$EXAMPLES/simple" "$TMP/none.gguf" hi
if [[ -f $MODEL ]]; then
  out=$("$EXAMPLES/simple" "$MODEL" "The capital of France is" 4 2>/dev/null)
  [[ "$out" == *Paris* ]] && pass "C example: SmolLM2 knows the capital of France" || fail "C example on SmolLM2: '$out'"
fi

# The terminal chat on the C API (examples/chat.c): two turns, the second
# evaluating only what the cache lacks; on SmolLM2 its greedy first answer is
# main --chat's.
if printf 'Hello there\nAnd again\n' | "$EXAMPLES/chat" "$TMP/llama.gguf" -c 128 -n 6 --temp 0 >"$TMP/chat.out" 2>"$TMP/chat.err" &&
   [[ $(grep -c "answer tokens" "$TMP/chat.err") == 2 ]]; then
  pass "C chat example: two turns"
else
  fail "C chat example: $(tail -3 "$TMP/chat.err")"
fi
expect_error "C chat example: missing model" "cannot open" "$EXAMPLES/chat" "$TMP/none.gguf"
expect_error "C chat example: bad option" "unknown or incomplete option" "$EXAMPLES/chat" "$TMP/llama.gguf" --bogus
if [[ -f $MODEL ]]; then
  q="What is the capital of France?"
  printf '%s\nAnd of Italy?\n' "$q" | "$EXAMPLES/chat" "$MODEL" --temp 0 -n 24 >"$TMP/chat.out" 2>"$TMP/chat.err"
  a1=$(head -1 "$TMP/chat.out")
  a2=$(printf '%s\n' "$q" | "$BIN/main" -m "$MODEL" --chat --temp 0 -n 24 2>/dev/null | head -1)
  first=$(grep -o '^> \[[0-9]* prompt' "$TMP/chat.err" | head -1 | grep -o '[0-9]*')
  second=$(grep -o '^> \[[0-9]* prompt' "$TMP/chat.err" | sed -n 2p | grep -o '[0-9]*')
  [[ -n $a1 && $a1 == "$a2" && $a1 == *Paris* ]] && pass "C chat example: SmolLM2's answer is main --chat's" ||
    fail "C chat example on SmolLM2: '$a1' vs main's '$a2'"
  [[ -n $second && $second -lt $first ]] && pass "C chat example: the second turn reuses the cache ($second of its prompt tokens evaluated)" ||
    fail "C chat example: the second turn evaluated ${second:-?} tokens (the first $first)"
fi

# main: generation, --ids with --dump-logits, chat, bad input.
for tool in main; do
  if "$BIN/$tool" --help >"$TMP/help" 2>&1 && grep -q "Usage" "$TMP/help"; then pass "$tool --help"; else fail "$tool --help"; fi
done
# The model-loading options read the same in every tool that has them, and
# no help names the CPU backend's own formats.
for tool in main perplexity bench; do
  "$BIN/$tool" --help 2>&1 | sed -n '/model loading options/,/^$/p' >"$TMP/opts.$tool"
done
if [[ -s $TMP/opts.main ]] && grep -q -- "--no-repack" "$TMP/opts.main" && cmp -s "$TMP/opts.main" "$TMP/opts.perplexity" &&
   cmp -s "$TMP/opts.main" "$TMP/opts.bench"; then
  pass "main, perplexity, bench: one text for -t, --mmap, --no-repack"
else
  fail "model-loading options differ between tools"
fi
bad=0
for tool in main perplexity bench quantize convert tokenize; do
  help=$("$BIN/$tool" --help 2>&1)
  grep -qiE "q8_0r|q4_0r|q4_1r|q8_s" <<<"$help" && bad=1
done
[[ $bad == 0 ]] && pass "no --help names an internal format" || fail "a --help names an internal format"
if "$BIN/main" -m "$TMP/llama.gguf" -p "Hello" -n 5 --seed 1 >"$TMP/main.out" 2>"$TMP/main.err" &&
   grep -q "generation" "$TMP/main.err" && grep -q "peak memory" "$TMP/main.err"; then
  pass "main generates with a summary"
else
  fail "main: $(cat "$TMP/main.err")"
fi
a=$("$BIN/main" -m "$TMP/llama.gguf" -p "Hello" -n 8 --seed 7 2>/dev/null)
b=$("$BIN/main" -m "$TMP/llama.gguf" -p "Hello" -n 8 --seed 7 2>/dev/null)
[[ "$a" == "$b" ]] && pass "main: the same seed gives the same text" || fail "main seed: '$a' vs '$b'"
c=$("$BIN/main" -m "$TMP/llama.gguf" -p "Hello" -n 8 --seed 7 --mmap 2>/dev/null)
d=$("$BIN/main" -m "$TMP/llama.gguf" -p "Hello" -n 8 --seed 7 --no-repack 2>/dev/null)
[[ "$a" == "$c" && "$a" == "$d" ]] && pass "main: --mmap and --no-repack give the same text" ||
  fail "main --mmap / --no-repack: '$a' vs '$c' vs '$d'"
if "$BIN/main" -m "$TMP/llama.gguf" --ids 1,5,9,300 -n 0 --dump-logits "$TMP/l.npy" 2>/dev/null &&
   [[ $(head -c 6 "$TMP/l.npy" | tail -c 5) == "NUMPY" ]] && grep -qa "'shape': (4, 1000)" "$TMP/l.npy"; then
  pass "main --ids --dump-logits -n 0"
else
  fail "main --dump-logits"
fi
if [[ -f $MODEL ]]; then
  out=$(printf 'What is 2+2?\n\n' | "$BIN/main" -m "$MODEL" --chat -n 16 --temp 0 2>/dev/null)
  [[ -n "$out" ]] && pass "main --chat (interactive) answers" || fail "main --chat gave nothing"
  out=$("$BIN/main" -m "$MODEL" -p "The capital of France is" -n 6 --temp 0 --stop "." 2>/dev/null)
  [[ "$out" == "The capital of France is Paris" ]] && pass "main --stop cuts at the stop string" || fail "main --stop: '$out'"
  # A stop string is taken whole: "," can be one, "e,x" is one string (not "e" and "x").
  p="My favourite fruits are"
  full=$("$BIN/main" -m "$MODEL" -p "$p" -n 24 --temp 0 2>/dev/null)
  comma=$("$BIN/main" -m "$MODEL" -p "$p" -n 24 --temp 0 --stop "," 2>/dev/null)
  ex=$("$BIN/main" -m "$MODEL" -p "$p" -n 24 --temp 0 --stop "e,x" 2>/dev/null)
  gen=${full#"$p"}
  [[ "${gen%%,*}" == *[a-z]* && "$comma" == "$p${gen%%,*}" ]] && pass "main --stop ','" || fail "main --stop ',': '$comma' (full: '$full')"
  [[ "$gen" == *e* && "$ex" == "$full" ]] && pass "main --stop 'e,x' is one string" || fail "main --stop 'e,x': '$ex'"
  # A long interactive chat in a small context drops its oldest turns instead of ending.
  printf 'Tell me about the sea.\nAnd the mountains?\nAnd rivers?\nAnd the sky?\n\n' |
    "$BIN/main" -m "$MODEL" --chat -c 160 -n 60 --temp 0 >"$TMP/chat.out" 2>"$TMP/chat.err"
  rc=$?
  if [[ $rc -eq 0 ]] && grep -q "dropped the oldest" "$TMP/chat.err" && [[ $(grep -c '^> ' "$TMP/chat.err") -ge 4 ]] &&
     grep -q "peak memory" "$TMP/chat.err" && ! grep -qi "error\|does not fit" "$TMP/chat.err"; then
    pass "main --chat: a full context drops the oldest turns and the chat goes on"
  else
    fail "main --chat context shift (rc=$rc): $(tail -c 400 "$TMP/chat.err")"
  fi
  # wait_for FILE BYTES: until FILE holds BYTES bytes (at most ~20 s).
  wait_for() { for _ in $(seq 200); do [[ $(stat -c %s "$1" 2>/dev/null || echo 0) -ge $2 ]] && return 0; sleep 0.1; done; return 1; }
  # Ctrl-C stops a long completion and still prints the summary (exit 130).
  "$BIN/main" -m "$MODEL" -p "Once upon a time" -n -1 -c 4096 --temp 1 --seed 3 --ignore-eos >"$TMP/int.out" 2>"$TMP/int.err" &
  pid=$!
  wait_for "$TMP/int.out" 60 && kill -INT $pid
  wait $pid
  rc=$?
  [[ $rc -eq 130 ]] && grep -q "stopped (Ctrl-C)" "$TMP/int.err" && grep -q "peak memory" "$TMP/int.err" &&
    pass "main: Ctrl-C stops generation, prints the summary, exits 130" || fail "main Ctrl-C (rc=$rc): $(tail -c 300 "$TMP/int.err")"
  # In a chat, Ctrl-C stops the answer and the next turn is answered.
  mkfifo "$TMP/chat.in"
  "$BIN/main" -m "$MODEL" --chat -n 300 --temp 1 --seed 3 --ignore-eos <"$TMP/chat.in" >"$TMP/c2.out" 2>"$TMP/c2.err" &
  pid=$!
  exec 3>"$TMP/chat.in"
  echo "Write a very long story about a dragon." >&3
  wait_for "$TMP/c2.out" 60 && kill -INT $pid
  for _ in $(seq 100); do grep -q "stopped (Ctrl-C)" "$TMP/c2.err" && break; sleep 0.1; done
  n1=$(stat -c %s "$TMP/c2.out")
  printf 'What is 2+2?\n\n' >&3
  exec 3>&-
  wait $pid
  rc=$?
  n2=$(stat -c %s "$TMP/c2.out")
  [[ $rc -eq 0 && $(grep -c "stopped (Ctrl-C)" "$TMP/c2.err") -eq 1 && $n2 -gt $n1 ]] && grep -q "peak memory" "$TMP/c2.err" &&
    pass "main --chat: Ctrl-C stops one answer, the chat goes on" || fail "main --chat Ctrl-C (rc=$rc, $n1 -> $n2 bytes): $(tail -c 300 "$TMP/c2.err")"
fi
expect_error "main: missing model" "cannot open" "$BIN/main" -m "$TMP/none.gguf" -p hi
expect_error "main: truncated model" "trunc.gguf" "$BIN/main" -m "$TMP/trunc.gguf" -p hi
expect_error "main: vocab-only model" "token_embd.weight" "$BIN/main" -m "$TMP/vocab.gguf" -p hi
expect_error "main: no prompt" "give a prompt" "$BIN/main" -m "$TMP/llama.gguf"
expect_error "main: bad ids" "--ids" "$BIN/main" -m "$TMP/llama.gguf" --ids 1,x
expect_error "main: id out of range" "outside the vocabulary" "$BIN/main" -m "$TMP/llama.gguf" --ids 1,100000
expect_error "main: bad number" "see --help" "$BIN/main" -m "$TMP/llama.gguf" -p hi -n lots
expect_error "main: prompt too long" "raise -c" "$BIN/main" -m "$TMP/llama.gguf" -p "a b c d e f g h i j k" -c 4
expect_error "main: -n -5" "--n-predict must be" "$BIN/main" -m "$TMP/llama.gguf" -p hi -n -5
expect_error "main: -t -3" "--threads must be" "$BIN/main" -m "$TMP/llama.gguf" -p hi -t -3
expect_error "main: -c -1" "--ctx-size must be" "$BIN/main" -m "$TMP/llama.gguf" -p hi -c -1
expect_error "main: -b 0" "--batch-size must be" "$BIN/main" -m "$TMP/llama.gguf" -p hi -b 0
expect_error "main: --top-k -5" "--top-k must be" "$BIN/main" -m "$TMP/llama.gguf" -p hi --top-k -5
expect_error "main: --temp -1" "--temp must be" "$BIN/main" -m "$TMP/llama.gguf" -p hi --temp -1
expect_error "main: --top-p 0" "--top-p must be" "$BIN/main" -m "$TMP/llama.gguf" -p hi --top-p 0
expect_error "main: --temp nan" "nan" "$BIN/main" -m "$TMP/llama.gguf" -p hi --temp nan
expect_error "main: --system without --chat" "add --chat" "$BIN/main" -m "$TMP/llama.gguf" -p hi --system "Be brief."
expect_error "main: empty --stop" "empty stop string" "$BIN/main" -m "$TMP/llama.gguf" -p hi --stop ""
expect_error "main: -f on a directory" "is a directory" "$BIN/main" -m "$TMP/llama.gguf" -f "$TMP"
expect_error "main: -f missing" "No such file" "$BIN/main" -m "$TMP/llama.gguf" -f "$TMP/none.txt"
expect_error "main: -c 1, one token" "(1 token) leaves no room to generate in the context of 1 token" "$BIN/main" -m "$TMP/llama.gguf" --ids 5 -c 1
expect_error "main: stray argument" "unexpected argument" "$BIN/main" -m "$TMP/llama.gguf" -p hi extra
a=$("$BIN/main" -m "$TMP/llama.gguf" -p "Hello" -n 8 --seed 7 2>/dev/null)
b=$(printf 'Hello' | "$BIN/main" -m "$TMP/llama.gguf" -f - -n 8 --seed 7 2>/dev/null)
[[ -n "$a" && "$a" == "$b" ]] && pass "main -f - reads the prompt from standard input" || fail "main -f -: '$a' vs '$b'"
# --ignore-eos: a seed whose sampling reaches EOS early goes on to -n tokens with it.
"$BIN/main" -m "$TMP/llama.gguf" --ids 1,5 -n 250 --temp 1 --seed 2 >/dev/null 2>"$TMP/err1"
"$BIN/main" -m "$TMP/llama.gguf" --ids 1,5 -n 250 --temp 1 --seed 2 --ignore-eos >/dev/null 2>"$TMP/err2"
if ! grep -q "generation 250 tokens" "$TMP/err1" && grep -q "generation 250 tokens" "$TMP/err2"; then
  pass "main --ignore-eos generates exactly -n tokens"
else
  fail "main --ignore-eos: $(tail -1 "$TMP/err1") / $(tail -1 "$TMP/err2")"
fi

# quantize and perplexity from the command line.
for tool in quantize perplexity bench; do
  if "$BIN/$tool" --help >"$TMP/help" 2>&1 && grep -q "Usage" "$TMP/help"; then pass "$tool --help"; else fail "$tool --help"; fi
done
"$BIN/convert" "$DATA/hf/gptneox_st" -o "$TMP/neox32.gguf" --outtype f32 -q 2>/dev/null
if "$BIN/quantize" "$TMP/neox32.gguf" "$TMP/neox-q4.gguf" q4_0 2>"$TMP/q.err" && grep -q "bits per weight" "$TMP/q.err" &&
   grep -q "rms error" "$TMP/q.err"; then
  pass "quantize reports per-tensor errors and a summary"
else
  fail "quantize: $(tail -2 "$TMP/q.err")"
fi
expect_error "quantize: bad type" "not one of" "$BIN/quantize" "$TMP/neox32.gguf" "$TMP/x.gguf" q3
expect_error "quantize: requantize" "--allow-requantize" "$BIN/quantize" "$TMP/neox-q4.gguf" "$TMP/x.gguf" q8_0
expect_error "quantize: missing args" "usage" "$BIN/quantize" "$TMP/neox32.gguf"
expect_error "quantize: same file" "overwrite" "$BIN/quantize" "$TMP/neox32.gguf" "$TMP/neox32.gguf" q8_0
# The same file by other names: ./, dir/../dir/, a hard link, a symbolic link.
mkdir -p "$TMP/qd"
cp "$TMP/neox32.gguf" "$TMP/qd/f.gguf"
ln "$TMP/qd/f.gguf" "$TMP/qd/hard.gguf"
ln -s f.gguf "$TMP/qd/soft.gguf"
sum_before=$(sha256sum <"$TMP/qd/f.gguf")
expect_error "quantize: same file as ./f.gguf" "overwrite" bash -c 'cd "$0" && exec "$1" f.gguf ./f.gguf q8_0' "$TMP/qd" "$BIN/quantize"
expect_error "quantize: same file as dir/../dir/f.gguf" "overwrite" "$BIN/quantize" "$TMP/qd/f.gguf" "$TMP/qd/../qd/f.gguf" q8_0
expect_error "quantize: same file as a hard link" "overwrite" "$BIN/quantize" "$TMP/qd/f.gguf" "$TMP/qd/hard.gguf" q8_0
expect_error "quantize: same file as a symbolic link" "overwrite" "$BIN/quantize" "$TMP/qd/soft.gguf" "$TMP/qd/f.gguf" q8_0
[[ $(sha256sum <"$TMP/qd/f.gguf") == "$sum_before" ]] && pass "quantize: the input is untouched" || fail "quantize changed its input"
# Output files: a planted symbolic link at the old temporary name is not
# written through; a killed write leaves no partial output (and with
# O_TMPFILE nothing at all). Failed writes: test_gguf.
for mode in tmpfile named; do
  env=()
  [[ $mode == named ]] && env=(LLM_NO_O_TMPFILE=1)
  mkdir -p "$TMP/w-$mode"
  printf 'precious' >"$TMP/w-$mode/victim"
  ln -s victim "$TMP/w-$mode/out.gguf.tmp"
  if env "${env[@]}" "$BIN/quantize" "$TMP/neox32.gguf" "$TMP/w-$mode/out.gguf" q8_0 -q 2>/dev/null &&
     [[ $(cat "$TMP/w-$mode/victim") == precious && -f "$TMP/w-$mode/out.gguf" ]]; then
    pass "quantize ($mode): a planted out.gguf.tmp link is not followed"
  else
    fail "quantize ($mode): wrote through the planted link"
  fi
  rm -f "$TMP/w-$mode/out.gguf.tmp" "$TMP/w-$mode/victim" "$TMP/w-$mode/out.gguf"
  if [[ -f $MODEL ]]; then
    env "${env[@]}" "$BIN/quantize" "$MODEL" "$TMP/w-$mode/big.gguf" f32 --allow-requantize -q 2>/dev/null &
    pid=$!
    for _ in $(seq 50); do
      [[ -n $(ls "$TMP/w-$mode") || $mode == tmpfile ]] && break
      sleep 0.02
    done
    sleep 0.3
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    left=$(ls -A "$TMP/w-$mode")
    if [[ $mode == tmpfile ]]; then
      [[ -z "$left" ]] && pass "quantize (O_TMPFILE): killed mid-write, nothing left behind" || fail "quantize killed: left '$left'"
    else  # a named temporary survives SIGKILL, but never under the output's name
      [[ ! -e "$TMP/w-$mode/big.gguf" ]] && pass "quantize (named): killed mid-write, no partial output" || fail "quantize killed: a partial big.gguf"
    fi
  fi
done
expect_error "quantize: -t -1" "--threads must" "$BIN/quantize" "$TMP/neox32.gguf" "$TMP/x.gguf" q8_0 -t -1
head -c 3000 /usr/share/common-licenses/GPL-3 >"$TMP/text.txt"
if "$BIN/perplexity" -m "$TMP/neox32.gguf" -f "$TMP/text.txt" -c 64 --kl-base "$TMP/b.kl" >"$TMP/p.out" 2>/dev/null &&
   "$BIN/perplexity" -m "$TMP/neox-q4.gguf" -f "$TMP/text.txt" -c 64 --kl "$TMP/b.kl" >"$TMP/p2.out" 2>/dev/null &&
   grep -q "^perplexity" "$TMP/p.out" && grep -q "mean KL-divergence" "$TMP/p2.out" && grep -q "top-1 agreement" "$TMP/p2.out"; then
  pass "perplexity with --kl-base then --kl"
else
  fail "perplexity: $(cat "$TMP/p2.out")"
fi
expect_error "perplexity: text too short" "fewer than one window" "$BIN/perplexity" -m "$TMP/neox32.gguf" -f "$TMP/prompt.txt"
# -ngl: on the emulated device (GGML_DEVICE=emulated: CPU kernels on memory
# of its own, copies as a GPU's) main's greedy text, perplexity and bench run
# as on the CPU; without a device, a one-line refusal.
a=$("$BIN/main" -m "$TMP/neox32.gguf" -p "Hello world" -n 12 --temp 0 2>/dev/null)
b=$(GGML_DEVICE=emulated "$BIN/main" -m "$TMP/neox32.gguf" -p "Hello world" -n 12 --temp 0 -ngl 99 2>"$TMP/ngl.err")
if [[ -n "$a" && "$a" == "$b" ]] && grep -q "layers on emulated device" "$TMP/ngl.err"; then
  pass "main -ngl 99 (emulated device): the CPU's greedy text"
else
  fail "main -ngl 99: '$a' vs '$b' ($(tail -1 "$TMP/ngl.err"))"
fi
GGML_DEVICE=emulated "$BIN/perplexity" -m "$TMP/neox32.gguf" -f "$TMP/text.txt" -c 64 -ngl 1 >"$TMP/p3.out" 2>/dev/null
if [[ -s $TMP/p3.out ]] && [[ $(grep "^perplexity" "$TMP/p.out") == $(grep "^perplexity" "$TMP/p3.out") ]]; then
  pass "perplexity -ngl 1 (emulated device): the CPU's perplexity"
else
  fail "perplexity -ngl 1: $(grep "^perplexity" "$TMP/p3.out") vs $(grep "^perplexity" "$TMP/p.out")"
fi
if GGML_DEVICE=emulated "$BIN/bench" -m "$TMP/neox32.gguf" -ngl 99 -p 8 -n 4 -r 1 -o json --no-bandwidth >"$TMP/b.json" 2>&1 &&
   grep -q '"n_gpu_layers": 2' "$TMP/b.json"; then
  pass "bench -ngl 99 (emulated device) reports the offload"
else
  fail "bench -ngl 99: $(tail -1 "$TMP/b.json")"
fi
if ! nvidia-smi -L >/dev/null 2>&1; then
  expect_error "main: -ngl without a GPU" "-ngl 2: GPU offload" "$BIN/main" -m "$TMP/neox32.gguf" -p hi -ngl 2
fi
expect_error "main: -ngl -1" "--n-gpu-layers must be" "$BIN/main" -m "$TMP/neox32.gguf" -p hi -ngl -1
expect_error "perplexity: other context" "use the same" "$BIN/perplexity" -m "$TMP/neox-q4.gguf" -f "$TMP/text.txt" -c 32 --kl "$TMP/b.kl"
expect_error "perplexity: not a base file" "not a KL base" "$BIN/perplexity" -m "$TMP/neox-q4.gguf" -f "$TMP/text.txt" -c 64 --kl "$TMP/text.txt"
expect_error "bench: missing model" "cannot open" "$BIN/bench" -m "$TMP/none.gguf"
expect_error "bench: --busy -1" "--busy must be" "$BIN/bench" -m "$TMP/neox32.gguf" --busy -1
# --busy N: N spinning children during the measurement, none left after it
if "$BIN/bench" -m "$TMP/neox32.gguf" -p 8 -n 4 -r 1 --busy 2 --no-bandwidth -o json >"$TMP/busy.out" 2>&1 &&
   grep -q '"busy": 2' "$TMP/busy.out" && sleep 0.2 && ! pgrep -f -- "-n 4 -r 1 --busy 2" >/dev/null; then
  pass "bench --busy: reported, and its spinners end with it"
else
  fail "bench --busy: $(cat "$TMP/busy.out")"
fi
expect_error "perplexity: -f on a directory" "is a directory" "$BIN/perplexity" -m "$TMP/neox32.gguf" -f "$TMP"
expect_error "perplexity: -c 4" "--ctx-size must be" "$BIN/perplexity" -m "$TMP/neox32.gguf" -f "$TMP/text.txt" -c 4
"$BIN/perplexity" -m "$TMP/neox32.gguf" -f "$TMP/prompt.txt" 2>"$TMP/err"
! grep -q "perplexity: perplexity:" "$TMP/err" && pass "perplexity: errors say their prefix once" || fail "perplexity prefix: $(cat "$TMP/err")"
if "$BIN/perplexity" -m "$TMP/neox32.gguf" -f - -c 64 <"$TMP/text.txt" >"$TMP/p3.out" 2>/dev/null &&
   [[ $(grep "^perplexity" "$TMP/p3.out") == $(grep "^perplexity" "$TMP/p.out") ]]; then
  pass "perplexity -f - reads standard input"
else
  fail "perplexity -f -: $(cat "$TMP/p3.out")"
fi
out=$(printf 'Hello world' | "$BIN/tokenize" -m "$TMP/llama.gguf" -f -)
[[ "$out" == "$("$BIN/tokenize" -m "$TMP/llama.gguf" -p "Hello world")" ]] && pass "tokenize -f -" || fail "tokenize -f -: '$out'"
# finetune-lora on the converted fixture model: a short run, its log, the
# adapter applied by main; and bad input, each one line.
if "$BIN/finetune-lora" --help >"$TMP/help" 2>&1 && grep -q "Usage" "$TMP/help" && grep -q -- "--lora-targets" "$TMP/help"; then
  pass "finetune-lora --help"; else fail "finetune-lora --help"; fi
head -c 6000 "$DATA/../../LICENSE" 2>/dev/null >"$TMP/train.txt" || true
[[ -s "$TMP/train.txt" ]] || yes "the quick brown fox jumps over the lazy dog" | head -200 >"$TMP/train.txt"
if "$BIN/finetune-lora" -m "$TMP/llama.gguf" --train "$TMP/train.txt" --valid "$TMP/train.txt" --ctx 32 --batch 2 --steps 3 \
     --lr 1e-3 -o "$TMP/adapter.gguf" --peft-out "$TMP/peft" --log "$TMP/train.jsonl" -t 2 2>"$TMP/ft.err" &&
   [[ $(grep -c '"loss"' "$TMP/train.jsonl") -eq 3 ]] && grep -q '"valid_loss"' "$TMP/train.jsonl" &&
   grep -q "validation loss after" "$TMP/ft.err" && [[ -s "$TMP/adapter.gguf" && -s "$TMP/peft/adapter_model.safetensors" ]]; then
  pass "finetune-lora: 3 steps, log, GGUF and PEFT adapters"
  if "$BIN/finetune-lora" -m "$TMP/llama.gguf" --train "$TMP/train.txt" --valid "$TMP/train.txt" --ctx 32 --batch 2 --steps 2 \
       -o "$TMP/adapter2.gguf" --plot "$TMP/loss.png" -t 2 2>/dev/null && [[ "$(head -c 8 "$TMP/loss.png" | od -An -c | tr -d ' ')" == *PNG* ]]; then
    pass "finetune-lora --plot writes a PNG"; else fail "finetune-lora --plot"; fi
else
  fail "finetune-lora run: $(tail -3 "$TMP/ft.err")"
fi
# Parity with PEFT through the tool itself: the fixture's .npy batches, its
# starting adapter and AdamW settings; --log's losses and --peft-out's tensors
# against PEFT's (tests/cli/peft_parity.py).
for fx in llama gptneox_parallel gptneox_sequential gptj; do
  hf=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['hf'])" "$DATA/lora/$fx/fixture.json")
  lr=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['adamw']['lr'])" "$DATA/lora/$fx/fixture.json")
  wd=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['adamw']['weight_decay'])" "$DATA/lora/$fx/fixture.json")
  if "$BIN/convert" "$DATA/hf/$hf" -o "$TMP/$fx-f32.gguf" --outtype f32 -q 2>/dev/null &&
     "$BIN/finetune-lora" -m "$TMP/$fx-f32.gguf" --train "$DATA/lora/$fx/batches.npy" --adapter-in "$DATA/lora/$fx" \
       --ctx 64 --lr "$lr" --weight-decay "$wd" --lr-schedule const --warmup 0 --grad-clip 0 --lora-dropout 0 \
       -o "$TMP/$fx-ad.gguf" --peft-out "$TMP/$fx-peft" --log "$TMP/$fx.jsonl" -t 2 2>"$TMP/ft.err" &&
     msg=$(python3 "$(dirname "$0")/peft_parity.py" "$DATA/lora/$fx" "$TMP/$fx.jsonl" "$TMP/$fx-peft" 2>&1); then
    pass "finetune-lora matches PEFT on $fx ($msg)"
  else
    fail "finetune-lora against PEFT on $fx: ${msg:-$(tail -2 "$TMP/ft.err")}"
  fi
  msg=""
done
# Memory plans: --dry-run --json's peak_bytes within 5% of the real run's
# peak resident memory (same options), on several shapes and settings.
# check_plan NAME MODEL ARGS...
check_plan() {
  local name=$1 m=$2
  shift 2
  local pred real
  pred=$("$BIN/finetune-lora" -m "$m" "$@" -o "$TMP/mp.gguf" -t 2 --dry-run --json 2>"$TMP/mp.err" |
         python3 -c "import json,sys; print(json.load(sys.stdin)['peak_bytes'])")
  real=$("$BIN/finetune-lora" -m "$m" "$@" -o "$TMP/mp.gguf" -t 2 2>&1 | sed -n 's/.*| peak memory \([0-9.]*\) MiB.*/\1/p')
  if [[ -n $pred && -n $real ]] && msg=$(python3 -c "
p, r = $pred / 1048576, $real
e = (p - r) / r
print(f'predicted {p:.1f} MiB, measured {r:.1f} MiB ({100 * e:+.1f}%)')
raise SystemExit(abs(e) > 0.05)"); then
    pass "memory plan: $name ($msg)"
  else
    fail "memory plan: $name (predicted '${pred}', measured '${real}' MiB ${msg:-}; $(tail -1 "$TMP/mp.err"))"
  fi
  msg=""
}
if [[ $full_checks == 1 ]]; then
  check_plan "tiny LLaMA F32" "$TMP/llama-f32.gguf" --train "$TMP/train.txt" --ctx 32 --batch 2 --steps 2
  check_plan "tiny GPT-NeoX F32, micro-batch 2, checkpointing, validation" "$TMP/gptneox_parallel-f32.gguf" \
    --train "$TMP/train.txt" --valid "$TMP/train.txt" --ctx 48 --batch 2 --micro-batch 2 --checkpointing --steps 2
else
  echo "skip memory plans and SmolLM2 fine-tunes (sanitizers or scalar kernels)"
fi
if [[ -f $MODEL && $full_checks == 1 ]]; then
  check_plan "SmolLM2 Q4_1, ctx 64" "$MODEL" --train "$TMP/train.txt" --ctx 64 --batch 2 --steps 2
  check_plan "SmolLM2 Q4_1, ctx 128, micro-batch 2, checkpointing" "$MODEL" --train "$TMP/train.txt" --ctx 128 --batch 2 \
    --micro-batch 2 --checkpointing --steps 1
  check_plan "SmolLM2 Q4_1, bf16, dropout, validation, rank 32" "$MODEL" --train "$TMP/train.txt" --valid "$TMP/train.txt" \
    --ctx 64 --batch 2 --bf16 --lora-dropout 0.1 --lora-r 32 --steps 1
  # --mem-budget: a plan that fits a budget between the smallest and the
  # largest, the real run inside it; below the smallest, a clear refusal.
  small=$("$BIN/finetune-lora" -m "$MODEL" --train "$TMP/train.txt" --ctx 128 --batch 4 -o "$TMP/mb.gguf" -t 2 \
          --mem-budget 1M 2>&1 | sed -n 's/.*the smallest (micro-batch 1, checkpointing on) needs \([0-9.]*\) MiB.*/\1/p')
  big=$("$BIN/finetune-lora" -m "$MODEL" --train "$TMP/train.txt" --ctx 128 --batch 4 --micro-batch 4 -o "$TMP/mb.gguf" -t 2 \
        --dry-run --json 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['peak_bytes'] / 1048576)")
  if [[ -n $small && -n $big ]]; then
    budget=$(python3 -c "print(int(($small + $big) / 2))")
    "$BIN/finetune-lora" -m "$MODEL" --train "$TMP/train.txt" --ctx 128 --batch 4 --steps 1 -o "$TMP/mb.gguf" -t 2 \
      --mem-budget "${budget}M" >"$TMP/mb.out" 2>&1
    real=$(sed -n 's/.*| peak memory \([0-9.]*\) MiB.*/\1/p' "$TMP/mb.out")
    if grep -q "^--mem-budget ${budget}.0 MiB: micro-batch [124] (accumulating [124]), checkpointing o[nf]*: predicted peak" "$TMP/mb.out" &&
       [[ -n $real ]] && python3 -c "raise SystemExit(not ($real <= $budget))"; then
      pass "--mem-budget ${budget}M: $(grep -o 'micro-batch [0-9].*' "$TMP/mb.out" | head -1), measured $real MiB"
    else
      fail "--mem-budget ${budget}M: $(head -c 400 "$TMP/mb.out")"
    fi
  else
    fail "--mem-budget: no smallest plan in the refusal ('$small') or no largest plan ('$big')"
  fi
  expect_error "finetune-lora: a budget nothing fits" "no plan fits; the smallest (micro-batch 1, checkpointing on) needs" \
    "$BIN/finetune-lora" -m "$MODEL" --train "$TMP/train.txt" --ctx 128 -o "$TMP/mb.gguf" --mem-budget 50M
fi
if [[ -f $MODEL && $full_checks == 1 ]]; then
  # main --dry-run: the plan of filling the context, against a run that fills it.
  pred=$("$BIN/main" -m "$MODEL" -c 256 -b 64 --dry-run --json 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['peak_bytes'])")
  yes "The quick brown fox jumps over the lazy dog." | head -22 >"$TMP/fill.txt"
  real=$("$BIN/main" -m "$MODEL" -c 256 -b 64 -f "$TMP/fill.txt" -n 300 --ignore-eos --temp 0 2>&1 >/dev/null |
         sed -n 's/.*| peak memory \([0-9.]*\) MiB.*/\1/p')
  if [[ -n $pred && -n $real ]] && msg=$(python3 -c "
p, r = $pred / 1048576, $real
print(f'predicted {p:.1f} MiB, measured {r:.1f} MiB ({100 * (p - r) / r:+.1f}%)')
raise SystemExit(abs(p - r) / r > 0.05)"); then
    pass "main --dry-run: $msg"
  else
    fail "main --dry-run: predicted '$pred', measured '$real' MiB ${msg:-}"
  fi
  msg=""
fi
if [[ -f $MODEL && $full_checks == 1 ]]; then
  # --optim adamw8bit: the losses of a short run close to AdamW's, the
  # optimizer's memory a quarter, and a resumed run identical (8-bit state
  # in the checkpoint).
  text=/usr/share/common-licenses/GPL-3  # real prose where Debian ships it
  [[ -s $text ]] || text=$TMP/train.txt
  A8=(--train "$text" --ctx 64 --batch 2 --steps 12 --lr 1e-3 --seed 3 -t 2)
  "$BIN/finetune-lora" -m "$MODEL" "${A8[@]}" -o "$TMP/a32.gguf" --log "$TMP/a32.jsonl" 2>/dev/null
  "$BIN/finetune-lora" -m "$MODEL" "${A8[@]}" --optim adamw8bit -o "$TMP/a8.gguf" --log "$TMP/a8.jsonl" \
    --save-every 6 --checkpoint-dir "$TMP/ck8" 2>/dev/null
  rm -f "$TMP/ck8/checkpoint-00000012.gguf"
  "$BIN/finetune-lora" -m "$MODEL" "${A8[@]}" --optim adamw8bit -o "$TMP/a8r.gguf" --save-every 6 --checkpoint-dir "$TMP/ck8" \
    --resume 2>/dev/null
  mem=$(for o in adamw adamw8bit; do "$BIN/finetune-lora" -m "$MODEL" "${A8[@]}" --optim $o -o "$TMP/x.gguf" --dry-run --json |
        python3 -c "import json,sys; print(json.load(sys.stdin)['optimizer_bytes'])"; done | tr '\n' ' ')
  if msg=$(python3 -c "
import json, sys
a = [json.loads(l)['loss'] for l in open('$TMP/a32.jsonl')]
b = [json.loads(l)['loss'] for l in open('$TMP/a8.jsonl')]
f32, q8 = map(int, '$mem'.split())
worst = max(abs(x - y) / x for x, y in zip(a, b))
print(f'{len(b)} steps, losses within {worst:.1e} of AdamW, optimizer {q8 / 2**20:.1f} MiB against {f32 / 2**20:.1f}')
raise SystemExit(len(a) != 12 or len(b) != 12 or any(abs(x - y) > 1e-2 * x + 1e-2 for x, y in zip(a, b)) or q8 * 3 > f32)") && cmp -s "$TMP/a8.gguf" "$TMP/a8r.gguf"; then
    pass "finetune-lora --optim adamw8bit: $msg; resumed identical"
  else
    fail "finetune-lora --optim adamw8bit: ${msg:-} (resume identical: $(cmp -s "$TMP/a8.gguf" "$TMP/a8r.gguf" && echo yes || echo no))"
  fi
  # The Q4_1 base's backward products in int8 (the default, the run above)
  # against float (--float-backward): the same losses up to rounding where
  # the kernel set has the int8 GEMM (AVX-512 VNNI), the same floats where
  # it has not (the float path runs either way: GGML_KERNELS=avx2).
  int8_gemm=0
  grep -qw avx512_vnni /proc/cpuinfo && [[ ${GGML_KERNELS:-} != avx2 ]] && int8_gemm=1
  "$BIN/finetune-lora" -m "$MODEL" "${A8[@]}" --float-backward -o "$TMP/af.gguf" --log "$TMP/af.jsonl" 2>/dev/null
  if msg=$(python3 -c "
import json
a = [json.loads(l)['loss'] for l in open('$TMP/a32.jsonl')]
b = [json.loads(l)['loss'] for l in open('$TMP/af.jsonl')]
worst = max(abs(x - y) / y for x, y in zip(a, b))
print(f'{len(b)} steps, int8 losses within {worst:.1e} of float' if $int8_gemm else f'{len(b)} steps, no int8 GEMM: the float losses')
raise SystemExit(len(a) != 12 or len(b) != 12 or worst > 1e-2 or (a == b) != ($int8_gemm == 0))"); then
    pass "finetune-lora int8 backward: $msg"
  else
    fail "finetune-lora int8 backward: ${msg:-no log}"
  fi
  msg=""
fi
expect_error "finetune-lora: a budget that is not a size" "--mem-budget '6X' is not a size" \
  "$BIN/finetune-lora" -m "$TMP/llama.gguf" --train "$TMP/train.txt" -o "$TMP/x.gguf" --mem-budget 6X
expect_error "finetune-lora: a budget and a micro-batch" "give it or them, not both" \
  "$BIN/finetune-lora" -m "$TMP/llama.gguf" --train "$TMP/train.txt" -o "$TMP/x.gguf" --mem-budget 6G --micro-batch 2
if "$BIN/main" -m "$TMP/llama.gguf" --lora "$TMP/adapter.gguf" -p "Hello" -n 4 --temp 0 >"$TMP/out" 2>/dev/null &&
   "$BIN/main" -m "$TMP/llama.gguf" --lora "$TMP/peft" --lora-scale 0.5 -p "Hello" -n 4 --temp 0 >/dev/null 2>&1; then
  pass "main --lora (GGUF and PEFT)"; else fail "main --lora"; fi
: >"$TMP/empty.txt"
printf '{"text": "fine"}\n{not json\n' >"$TMP/bad.jsonl"
expect_error "finetune-lora: no arguments" "are required" "$BIN/finetune-lora"
expect_error "finetune-lora: empty data" "empty" "$BIN/finetune-lora" -m "$TMP/llama.gguf" --train "$TMP/empty.txt" -o "$TMP/x.gguf"
expect_error "finetune-lora: a JSONL line that is not JSON" "bad.jsonl:2: not JSON" "$BIN/finetune-lora" -m "$TMP/llama.gguf" --train "$TMP/bad.jsonl" -o "$TMP/x.gguf"
expect_error "finetune-lora: a target the architecture lacks" "not a projection of a llama model" "$BIN/finetune-lora" -m "$TMP/llama.gguf" --train "$TMP/train.txt" --lora-targets q,fc_in -o "$TMP/x.gguf"
expect_error "finetune-lora: dropout out of range" "--lora-dropout must be in [0, 1)" "$BIN/finetune-lora" -m "$TMP/llama.gguf" --train "$TMP/train.txt" --lora-dropout 1 -o "$TMP/x.gguf"
expect_error "finetune-lora: unknown optimizer" "--optim must be adamw, adamw8bit or sgd" "$BIN/finetune-lora" -m "$TMP/llama.gguf" --train "$TMP/train.txt" --optim lion -o "$TMP/x.gguf"
expect_error "finetune-lora: unknown schedule" "unknown learning-rate schedule" "$BIN/finetune-lora" -m "$TMP/llama.gguf" --train "$TMP/train.txt" --lr-schedule exp -o "$TMP/x.gguf"
expect_error "main: a missing adapter" "cannot open" "$BIN/main" -m "$TMP/llama.gguf" --lora "$TMP/nope.gguf" -p hi -n 1
[[ ! -e "$TMP/x.gguf" ]] && pass "finetune-lora: no adapter left by a failed run" || fail "finetune-lora left an adapter"
# Resume after SIGKILL at a random moment: the adapter and the log equal an
# uninterrupted run's, byte for byte.
yes "the quick brown fox jumps over the lazy dog" | head -300 >"$TMP/fox.txt"
FT=("$BIN/finetune-lora" -m "$TMP/llama.gguf" --train "$TMP/fox.txt" --ctx 32 --batch 2 --steps 1200 --lr 1e-3 --lora-dropout 0.1 -t 2)
"${FT[@]}" -o "$TMP/A.gguf" --log "$TMP/A.jsonl" 2>/dev/null
"${FT[@]}" -o "$TMP/B.gguf" --log "$TMP/B.jsonl" --save-every 7 --checkpoint-dir "$TMP/ck" 2>/dev/null &
pid=$!
# after the first checkpoint (a loaded machine may take a while to reach it), at a random moment
for _ in $(seq 300); do compgen -G "$TMP/ck/checkpoint-*.gguf" >/dev/null && break; sleep 0.1; done
sleep "0.$((RANDOM % 9))$((RANDOM % 10))"
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
killed_at=$(wc -l <"$TMP/B.jsonl" 2>/dev/null)
"${FT[@]}" -o "$TMP/B.gguf" --log "$TMP/B.jsonl" --save-every 7 --checkpoint-dir "$TMP/ck" --resume 2>"$TMP/resume.err"
if cmp -s "$TMP/A.gguf" "$TMP/B.gguf" && diff <(sed 's/, "tokens_per_s.*//' "$TMP/A.jsonl") <(sed 's/, "tokens_per_s.*//' "$TMP/B.jsonl") >/dev/null &&
   grep -q "resumed from" "$TMP/resume.err"; then
  pass "finetune-lora --resume after SIGKILL (at step $killed_at): identical adapter and log"
else
  fail "finetune-lora --resume after SIGKILL at step $killed_at: $(tail -2 "$TMP/resume.err")"
fi
expect_error "finetune-lora: resume with other settings" "other settings or data" "${FT[@]}" --lr 1e-3 --batch 4 -o "$TMP/C.gguf" --checkpoint-dir "$TMP/ck" --resume
expect_error "finetune-lora: resume with other precision" "other precision options (no --bf16, int8 backward; this run no --bf16, --float-backward)" "${FT[@]}" --float-backward -o "$TMP/C.gguf" --checkpoint-dir "$TMP/ck" --resume
expect_error "finetune-lora: resume without checkpoints" "no complete checkpoint" "${FT[@]}" -o "$TMP/C.gguf" --checkpoint-dir "$TMP/empty-ck" --resume
# export-lora: the merged model generates what the base with the adapter does.
if "$BIN/convert" "$DATA/hf/llama_st" -o "$TMP/llama32.gguf" --outtype f32 2>/dev/null &&
   "$BIN/export-lora" -m "$TMP/llama32.gguf" --lora "$TMP/adapter.gguf" -o "$TMP/merged.gguf" --outtype f32 2>"$TMP/exp.err" &&
   grep -q "adapted weights merged" "$TMP/exp.err"; then
  with=$("$BIN/main" -m "$TMP/llama32.gguf" --lora "$TMP/adapter.gguf" -p "Hello world" -n 12 --temp 0 2>/dev/null)
  merged=$("$BIN/main" -m "$TMP/merged.gguf" -p "Hello world" -n 12 --temp 0 2>/dev/null)
  without=$("$BIN/main" -m "$TMP/llama32.gguf" -p "Hello world" -n 12 --temp 0 2>/dev/null)
  [[ -n "$with" && "$with" == "$merged" ]] && pass "export-lora: merged = base + adapter (adapter changes: $([[ $with != $without ]] && echo yes || echo no))" ||
    fail "export-lora: '$with' vs '$merged'"
else
  fail "export-lora: $(tail -2 "$TMP/exp.err")"
fi
expect_error "export-lora: no adapter" "are required" "$BIN/export-lora" -m "$TMP/llama32.gguf" -o "$TMP/m2.gguf"
newest=$(ls "$TMP/ck"/checkpoint-*.gguf | tail -1)
head -c 3000 "$newest" >"$TMP/cut" && mv "$TMP/cut" "$newest"
expect_error "finetune-lora: resume from a damaged checkpoint" "$(basename "$newest")" "${FT[@]}" -o "$TMP/C.gguf" --checkpoint-dir "$TMP/ck" --resume
if "$BIN/perplexity" -m "$TMP/llama.gguf" -f "$TMP/train.txt" -c 32 --chunks 2 --lora "$TMP/adapter.gguf" >"$TMP/ppl.out" 2>&1 &&
   grep -qi "ppl\|perplexity" "$TMP/ppl.out"; then pass "perplexity --lora"; else fail "perplexity --lora: $(tail -2 "$TMP/ppl.out")"; fi

# bench-ops' peaks: no product can outrun the instruction it runs on (2x of
# slack for this VM's drift between the two measurements); a miscounted peak
# loop (lanes, accumulators, ops per lane) would fail it. SIMD sets only.
if "$BIN/bench-ops" -o json --types f32,f16,q8_0 -k 512 -m 512 --mm 64 -r 3 >"$TMP/ops.jsonl" 2>"$TMP/err" &&
   msg=$(python3 - "$TMP/ops.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
h, by = rows[0], {r["type"]: r["mm64_gflops"] for r in rows[1:]}
fma, bf16, int8 = h["peak_fma_gflops"], h["peak_bf16_gflops"], h["peak_int8_gops"]
bad = []
# The scalar set's loop is plain C, while products under it may run on
# OpenBLAS or on loops the compiler vectorized: there is no ceiling to check.
if h["kernels"] == "scalar":
    print(""); sys.exit(0)
if not fma > 0: bad.append("no FMA peak")
if by["f32"] > 2 * fma: bad.append(f"f32 {by['f32']} > 2 x FMA peak {fma}")
if by["f16"] > 2 * max(fma, bf16): bad.append(f"f16 {by['f16']} > 2 x peak {max(fma, bf16)}")
if by["q8_0"] > 2 * max(fma, int8): bad.append(f"q8_0 {by['q8_0']} > 2 x peak {max(fma, int8)}")
print("; ".join(bad))
EOF
) && [[ -z $msg ]]; then pass "bench-ops: products within the measured peaks"; else fail "bench-ops peaks: $msg $(tail -2 "$TMP/err")"; fi

# finetune-lora --bf16 says so where the bf16 dot product is the slower one
# (judged only where bench-ops' peaks are far from even: the host drifts).
if ratio=$(python3 -c "import json,sys; h=json.loads(open(sys.argv[1]).readline()); print(h['peak_bf16_gflops']/h['peak_fma_gflops'])" "$TMP/ops.jsonl" 2>/dev/null); then
  "$BIN/finetune-lora" -m "$TMP/llama.gguf" --train "$TMP/fox.txt" --ctx 32 --batch 2 --steps 1 --bf16 -o "$TMP/bfn.gguf" 2>"$TMP/bfn.err"
  noted=$(grep -c "vdpbf16ps" "$TMP/bfn.err")
  case $(python3 -c "import sys; r=float(sys.argv[1]); print('slow' if 0 < r < 0.7 else 'fast' if r > 1.4 or r == 0 else 'even')" "$ratio") in
    slow) [[ $noted -eq 1 ]] && pass "finetune-lora --bf16: slow bf16 noted (peak ratio $ratio)" || fail "finetune-lora --bf16: no note at peak ratio $ratio" ;;
    fast) [[ $noted -eq 0 ]] && pass "finetune-lora --bf16: no note (peak ratio $ratio)" || fail "finetune-lora --bf16: a note at peak ratio $ratio" ;;
    *) pass "finetune-lora --bf16 note: peaks too even to judge ($ratio)" ;;
  esac
else
  fail "bench-ops peaks: no JSON header"
fi

# --version on every tool: one line naming the tool and a version.
for tool in main tokenize convert quantize perplexity bench bench-ops finetune-lora export-lora; do
  v=$("$BIN/$tool" --version 2>&1)
  [[ $? -eq 0 && $(wc -l <<<"$v") -eq 1 && "$v" =~ ^$tool\ \(llmengine\)\ [0-9]+\.[0-9]+\.[0-9]+,\ commit ]] &&
    pass "$tool --version" || fail "$tool --version: '$v'"
done
# The model fetcher checks a SHA-256, not a size: a same-size damaged copy is refused.
if [[ -f $MODEL ]]; then
  mkdir -p "$TMP/models"
  cp "$MODEL" "$TMP/models/"
  MODELS_DIR="$TMP/models" bash "$DATA/../../scripts/fetch-models.sh" --check 2>/dev/null && pass "fetch-models --check: intact" || fail "fetch-models --check on the real file"
  printf 'X' | dd of="$TMP/models/$(basename "$MODEL")" bs=1 seek=5000000 conv=notrunc 2>/dev/null
  MODELS_DIR="$TMP/models" bash "$DATA/../../scripts/fetch-models.sh" --check 2>"$TMP/err"
  [[ $? -ne 0 ]] && grep -q "SHA-256" "$TMP/err" && pass "fetch-models --check: a damaged copy is refused" || fail "fetch-models --check: $(cat "$TMP/err")"
fi

echo "$fails failed"
[[ $fails -eq 0 ]]
