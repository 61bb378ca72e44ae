#!/usr/bin/env bash
# Benchmark models in models/bench/: a random-weight model with TinyLlama-1.1B's
# shapes in F16, quantized with ./quantize --pure to Q8_0, Q4_0 and Q4_1 (every
# matrix in the type, so each row of the bench table measures one type).
#   scripts/make_bench_models.sh [tinyllama|llama7b]
# Needs ./quantize (make) and python3 with gguf and numpy (installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-tinyllama}
out=models/bench
mkdir -p "$out"
python3 -c "import gguf, numpy" 2>/dev/null || python3 -m pip install -q gguf numpy
f16=$out/$shape-f16.gguf
[[ -f $f16 ]] || python3 scripts/make_bench_models.py --shape "$shape" -o "$f16"
for t in q8_0 q4_0 q4_1; do
  [[ -f $out/$shape-$t.gguf ]] || ./quantize "$f16" "$out/$shape-$t.gguf" "$t" --pure -q
done
ls -la "$out"/"$shape"-*.gguf
