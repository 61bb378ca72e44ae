#!/usr/bin/env bash
# make install's tree as an app meets it: installed into a temporary prefix,
# examples/simple.c built by pkg-config and by CMake's find_package, each run
# on a model; the shared library's soname and its exported symbols (llm_*
# alone).  Usage: test_install.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }

P=$TMP/prefix
if cmake --install "$BUILD" --prefix "$P" >"$TMP/install.log" 2>&1; then pass "cmake --install"; else fail "cmake --install: $(tail -3 "$TMP/install.log")"; fi
LIB=$(dirname "$(find "$P" -name 'libllm.so.*.*' | head -1)")
for f in include/llm.h; do [[ -f $P/$f ]] && pass "installed $f" || fail "no $f"; done
for f in libllm.a libggml.a pkgconfig/llm.pc cmake/llm/llmConfig.cmake cmake/llm/llmTargets.cmake; do
  [[ -f $LIB/$f ]] && pass "installed lib/$f" || fail "no lib/$f"
done
soname=$(readelf -d "$LIB/libllm.so" 2>/dev/null | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[[ $soname == libllm.so.0 ]] && pass "soname $soname" || fail "soname '$soname'"
others=$(nm -D --defined-only "$LIB/libllm.so" | awk '{print $3}' | grep -v '^llm_' | grep -v '^_init$\|^_fini$' | head -5)
count=$(nm -D --defined-only "$LIB/libllm.so" | awk '{print $3}' | grep -c '^llm_')
[[ -z $others && $count -gt 20 ]] && pass "exports $count llm_* symbols and nothing else" ||
  fail "exported besides llm_*: $others (llm_*: $count)"
# Every function llm.h declares is exported (and nothing it does not declare).
declared=$(grep -o '\bllm_[a-z0-9_]*(' "$P/include/llm.h" | tr -d '(' | sort -u)
exported=$(nm -D --defined-only "$LIB/libllm.so" | awk '{print $3}' | grep '^llm_' | sort -u)
[[ $declared == "$exported" ]] && pass "the exports are llm.h's $(echo "$declared" | wc -l) functions" ||
  fail "llm.h and the exports differ: $(diff <(echo "$declared") <(echo "$exported") | grep '^[<>]' | head -5 | tr '\n' ' ')"

# A model: the tiny LLaMA fixture converted by the build's convert.
"$BUILD/tools/convert" "$SRC/tests/data/hf/llama_st" -o "$TMP/m.gguf" -q 2>/dev/null

# pkg-config: cc app.c $(pkg-config --cflags --libs llm)
if cc "$SRC/examples/simple.c" -o "$TMP/simple-pc" $(PKG_CONFIG_PATH=$LIB/pkgconfig pkg-config --cflags --libs llm) 2>"$TMP/cc.err" &&
   out=$(LD_LIBRARY_PATH=$LIB "$TMP/simple-pc" "$TMP/m.gguf" "Hello" 4 2>&1) && [[ $out == *"loaded"* ]]; then
  pass "pkg-config build runs"
else
  fail "pkg-config build: $(head -c 300 "$TMP/cc.err") ${out:-}"
fi
# The app needs nothing but libllm.so among ours (no libggml, found by soname).
# ldd's output is read whole first: `ldd | grep -q` under pipefail fails when
# grep quits early and ldd dies of SIGPIPE.
deps=$(LD_LIBRARY_PATH=$LIB ldd "$TMP/simple-pc" 2>&1)
[[ $deps == *"libllm.so.0 => $LIB/"* && $deps != *libggml* ]] && pass "linked against the soname" ||
  fail "not linked against libllm.so.0 alone: $(echo "$deps" | grep -i 'llm\|ggml' | tr '\n' ' ')"

# CMake: find_package(llm) and llm::llm
if cmake -S "$SRC/tests/install" -B "$TMP/cm" -DCMAKE_PREFIX_PATH="$P" -DSIMPLE_C="$SRC/examples/simple.c" >"$TMP/cm.log" 2>&1 &&
   cmake --build "$TMP/cm" >>"$TMP/cm.log" 2>&1 &&
   out=$(LD_LIBRARY_PATH=$LIB "$TMP/cm/simple" "$TMP/m.gguf" "Hello" 4 2>&1) && [[ $out == *"loaded"* ]]; then
  pass "find_package(llm) build runs"
else
  fail "find_package(llm) build: $(tail -5 "$TMP/cm.log") ${out:-}"
fi
# And a bad call still answers through the installed library.
out=$(LD_LIBRARY_PATH=$LIB "$TMP/simple-pc" "$TMP/nope.gguf" "Hello" 2>&1)
[[ $? -eq 1 && $out == *"load"* ]] && pass "installed library reports a missing model" || fail "missing model: $out"

echo "$fails failed"
[[ $fails -eq 0 ]]
