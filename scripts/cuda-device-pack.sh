#!/usr/bin/env bash
# Prepares the GPU run: builds the CUDA tools and tests here (portable x86-64,
# no OpenBLAS, sm_80 + sm_90) into .gpu/ (ignored by git), with the gguf
# wheel that scripts/make_bench_models.py needs there. The GPU machine has the
# CUDA runtime, cuBLAS, numpy and python3 but nothing to fetch packages with.
#   scripts/cuda-device-pack.sh     then, on the GPU machine (carrying .gpu):
#   bash scripts/cuda-device-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[[ -x $nvcc ]] || { echo "cuda-device-pack: no nvcc here"; exit 1; }
cmake -S . -B build-gpu-pack -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" \
  -DGGML_NATIVE=OFF -DGGML_BLAS=OFF >/dev/null
cmake --build build-gpu-pack -j "$(nproc)" --target main bench perplexity quantize test_cuda test_offload
rm -rf .gpu && mkdir -p .gpu/lib .gpu/whl
cp build-gpu-pack/tools/{main,bench,perplexity,quantize} build-gpu-pack/tests/{test_cuda,test_offload} .gpu/
# What the binaries need besides CUDA's libraries, in case the image lacks it.
for l in libpcre2-8.so.0 libgomp.so.1; do cp -L "$(ldconfig -p | awk -v l=$l '$1 == l {print $NF; exit}')" .gpu/lib/; done
python3 -m pip download -q --no-deps --only-binary=:all: -d .gpu/whl gguf
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
du -sh .gpu
