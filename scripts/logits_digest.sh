#!/usr/bin/env bash
# Hashes of the logits of every architecture fixture (F32, F16, BF16, Q8_0),
# SmolLM2 (as shipped and requantized into each type ./quantize writes)
# and a 2-layer TinyLlama-shaped random model (2048 wide: the rearranged
# Q8_0/Q4_0/Q4_1 paths) in every load mode, thread count and batch size: run
# before and after a change that must not move a single float, then diff.
#   scripts/logits_digest.sh > before.txt; (change, make); scripts/logits_digest.sh | diff before.txt -
# Models are made once in DIGEST_DIR (default /tmp/llm-digest).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${DIGEST_DIR:-/tmp/llm-digest}
mkdir -p "$dir"
make -s tools >/dev/null
cmake --build build --target logits_digest >/dev/null
bash scripts/fetch-models.sh >/dev/null
models=()
for f in llama_st gptneox_st gptj_bin; do
  for t in f32 f16 bf16 q8_0; do
    [[ -f $dir/$f-$t.gguf ]] || ./convert -q --outtype $t -o "$dir/$f-$t.gguf" tests/data/hf/$f
    models+=("$dir/$f-$t.gguf")
  done
done
smol=models/SmolLM2-135M-Instruct.Q4_1.gguf
models+=("$smol")
if [[ ! -f $dir/tiny2-f16.gguf ]]; then
  python3 -c "import gguf, numpy" 2>/dev/null || python3 -m pip install -q gguf numpy
  python3 scripts/make_bench_models.py --shape tinyllama --layers 2 -o "$dir/tiny2-f16.gguf"
fi
models+=("$dir/tiny2-f16.gguf")
for t in q8_0 q4_0 q4_1 q5_0 q5_1; do
  [[ -f $dir/smol-$t.gguf ]] || ./quantize -q --allow-requantize --pure "$smol" "$dir/smol-$t.gguf" $t 2>/dev/null
  [[ -f $dir/tiny2-$t.gguf ]] || ./quantize -q --pure "$dir/tiny2-f16.gguf" "$dir/tiny2-$t.gguf" $t 2>/dev/null
  models+=("$dir/smol-$t.gguf" "$dir/tiny2-$t.gguf")
done
build/tests/logits_digest "${models[@]}" | sed "s|$dir/||"
