#!/usr/bin/env bash
# The command-line tools as a user meets them: --help, a real conversion and
# tokenization, and bad input (exit status 1 and one line on stderr, never a crash).
# Usage: test_tools.sh BIN_DIR DATA_DIR
set -uo pipefail
BIN=$1
DATA=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0

pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }

# expect_error NAME NEEDLE CMD...: exit 1, exactly one line on stderr containing NEEDLE.
expect_error() {
  local name=$1 needle=$2
  shift 2
  "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  local lines
  lines=$(wc -l <"$TMP/err")
  if [[ $rc -eq 1 && $lines -eq 1 ]] && grep -qF -- "$needle" "$TMP/err"; then
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

echo "$fails failed"
[[ $fails -eq 0 ]]
