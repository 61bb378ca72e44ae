#!/usr/bin/env bash
# The command-line tools as a user meets them: --help, a real conversion and
# tokenization, and bad input (exit status 1 and one line on stderr, never a crash).
# Usage: test_tools.sh BIN_DIR DATA_DIR EXAMPLES_DIR
set -uo pipefail
BIN=$1
DATA=$2
EXAMPLES=$3
MODEL=$DATA/../../models/SmolLM2-135M-Instruct.Q4_1.gguf
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0

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

expect_error "convert: missing directory" "not a directory" "$BIN/convert" "$TMP/nope"
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

# main: generation, --ids with --dump-logits, chat, bad input.
for tool in main; do
  if "$BIN/$tool" --help >"$TMP/help" 2>&1 && grep -q "Usage" "$TMP/help"; then pass "$tool --help"; else fail "$tool --help"; fi
done
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
fi
expect_error "main: missing model" "cannot open" "$BIN/main" -m "$TMP/none.gguf" -p hi
expect_error "main: truncated model" "trunc.gguf" "$BIN/main" -m "$TMP/trunc.gguf" -p hi
expect_error "main: vocab-only model" "token_embd.weight" "$BIN/main" -m "$TMP/vocab.gguf" -p hi
expect_error "main: no prompt" "give a prompt" "$BIN/main" -m "$TMP/llama.gguf"
expect_error "main: bad ids" "--ids" "$BIN/main" -m "$TMP/llama.gguf" --ids 1,x
expect_error "main: id out of range" "outside the vocabulary" "$BIN/main" -m "$TMP/llama.gguf" --ids 1,100000
expect_error "main: bad number" "see --help" "$BIN/main" -m "$TMP/llama.gguf" -p hi -n lots
expect_error "main: prompt too long" "raise -c" "$BIN/main" -m "$TMP/llama.gguf" -p "a b c d e f g h i j k" -c 4

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
head -c 3000 /usr/share/common-licenses/GPL-3 >"$TMP/text.txt"
if "$BIN/perplexity" -m "$TMP/neox32.gguf" -f "$TMP/text.txt" -c 64 --kl-base "$TMP/b.kl" >"$TMP/p.out" 2>/dev/null &&
   "$BIN/perplexity" -m "$TMP/neox-q4.gguf" -f "$TMP/text.txt" -c 64 --kl "$TMP/b.kl" >"$TMP/p2.out" 2>/dev/null &&
   grep -q "^perplexity" "$TMP/p.out" && grep -q "mean KL-divergence" "$TMP/p2.out" && grep -q "top-1 agreement" "$TMP/p2.out"; then
  pass "perplexity with --kl-base then --kl"
else
  fail "perplexity: $(cat "$TMP/p2.out")"
fi
expect_error "perplexity: text too short" "fewer than one window" "$BIN/perplexity" -m "$TMP/neox32.gguf" -f "$TMP/prompt.txt"
expect_error "perplexity: other context" "use the same" "$BIN/perplexity" -m "$TMP/neox-q4.gguf" -f "$TMP/text.txt" -c 32 --kl "$TMP/b.kl"
expect_error "perplexity: not a base file" "not a KL base" "$BIN/perplexity" -m "$TMP/neox-q4.gguf" -f "$TMP/text.txt" -c 64 --kl "$TMP/text.txt"
expect_error "bench: missing model" "cannot open" "$BIN/bench" -m "$TMP/none.gguf"

echo "$fails failed"
[[ $fails -eq 0 ]]
