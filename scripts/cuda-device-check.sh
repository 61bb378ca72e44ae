#!/usr/bin/env bash
# The CUDA backend on a GPU machine, in one run (binaries from
# scripts/cuda-device-pack.sh in .gpu/): the op and model tests, then
# TinyLlama-shaped random models in F16, Q8_0, Q4_0 and Q4_1 benchmarked
# fully offloaded (./bench -ngl 99 -p 512 -n 128), with and without CUDA
# graphs, against the GPU's measured read bandwidth. Everything goes to
# $OUT/log (and the bench rows to $OUT/bench.jsonl).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log") 2>&1
G=.gpu
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/lib:$PWD/$G/lib:${LD_LIBRARY_PATH:-}"
export GGML_TEST_DATA=$PWD/tests/data
step() { echo; echo "== $* ($(date +%T))"; }
step machine
nvidia-smi -L || true
nproc
# CUDA 13's runtime and cuBLAS: the toolkit's, else a Python package's copy.
for l in libcudart.so.13 libcublas.so.13 libcublasLt.so.13; do
  [[ $(ldd $G/main) == *"$l => not found"* ]] || continue
  f=$(find /usr/local /opt /usr/lib -name "$l" 2>/dev/null | head -1)
  [[ -n $f ]] && export LD_LIBRARY_PATH="$(dirname "$f"):$LD_LIBRARY_PATH"
done
ldd $G/main | grep "not found" && echo "libraries missing: the binaries cannot run here"
step "tests on the GPU"
timeout 300 $G/test_cuda || echo "test_cuda FAILED"
timeout 120 $G/test_offload || echo "test_offload FAILED"
step "bench models (TinyLlama shapes, random weights)"
python3 -m pip install -q --no-index --no-deps --target /tmp/site $G/whl/*.whl && export PYTHONPATH=/tmp/site
m=${BENCH_DIR:-/tmp/bench}  # BENCH_DIR: models made before (a dry run elsewhere: models/bench)
mkdir -p $m
[[ -f $m/tinyllama-f16.gguf ]] || python3 scripts/make_bench_models.py --shape tinyllama -o $m/tinyllama-f16.gguf
for t in q8_0 q4_0 q4_1; do
  [[ -f $m/tinyllama-$t.gguf ]] || $G/quantize $m/tinyllama-f16.gguf $m/tinyllama-$t.gguf $t --pure -q -t "$(nproc)"
done
ls -la $m
step "greedy text: GPU against CPU (Q4_0, 24 tokens)"
ids=1,450,1200,3000,77,9000,15000,42
cpu=$($G/main -m $m/tinyllama-q4_0.gguf --ids $ids -n 24 --temp 0 -t "$(nproc)" 2>/dev/null)
gpu=$($G/main -m $m/tinyllama-q4_0.gguf --ids $ids -n 24 --temp 0 -ngl 99 2>/dev/null)
[[ "$cpu" == "$gpu" ]] && echo "greedy text equal" || { echo "greedy text DIFFERS"; echo "cpu: $cpu"; echo "gpu: $gpu"; }
step "bench -ngl 99"
for t in ${CHECK_TYPES:-f16 q8_0 q4_0 q4_1}; do
  timeout 240 $G/bench -m $m/tinyllama-$t.gguf -ngl 99 -p 512 -n 128 -r 3 -o json | tee -a "$OUT/bench.jsonl"
done
step "bench -ngl 99, CUDA graphs off (Q4_0 tg128)"
GGML_CUDA_GRAPHS=0 timeout 120 $G/bench -m $m/tinyllama-q4_0.gguf -ngl 99 -p 0 -n 128 -r 3 -o json | tee -a "$OUT/bench.jsonl"
step "bench -ngl 11 (half the layers, Q4_0)"
timeout 120 $G/bench -m $m/tinyllama-q4_0.gguf -ngl 11 -p 512 -n 32 -r 2 -o json --no-bandwidth | tee -a "$OUT/bench.jsonl"
step "profile of one generation (GGML_PROFILE, Q4_0, -ngl 99)"
GGML_PROFILE=1 timeout 60 $G/main -m $m/tinyllama-q4_0.gguf --ids $ids -n 64 --temp 0 -ngl 99 2>&1 >/dev/null | grep -A30 "ggml profile"
step done
