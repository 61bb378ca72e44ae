# Thin wrapper around CMake. `make` builds Release with native SIMD and leaves
# the tools at the repo root; `make test` builds and runs every test via CTest.
BUILD   ?= build
JOBS    ?= $(shell nproc)
CMAKE_FLAGS ?=
TOOLS   := bench-ops tokenize convert main quantize bench perplexity finetune-lora export-lora
# CMake's generated makefiles are nested makes; without this each prints
# "Entering/Leaving directory" lines around its work (~100 per build).
MAKEFLAGS += --no-print-directory

NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)

.PHONY: run all tools deps configure install test cuda test-cuda-build test-desktop test-portable test-neon test-sanitize fuzz-build fuzz-gguf fuzz-checkpoint fuzz-convert fuzz-tokenize bench clean

all: deps configure
	cmake --build $(BUILD) -j $(JOBS)
	@for t in $(TOOLS); do cp -f $(BUILD)/tools/$$t ./$$t; done

# The tools alone (no test programs), also left at the repo root.
tools: deps configure
	cmake --build $(BUILD) -j $(JOBS) --target $(TOOLS)
	@for t in $(TOOLS); do cp -f $(BUILD)/tools/$$t ./$$t; done

deps:
	@bash scripts/install-deps.sh

configure:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The tools with the CUDA backend (-ngl N), built in build-cuda and left at
# the root like `make`'s: needs the CUDA toolkit (nvcc, cuBLAS).
cuda:
	@if [ -z "$(NVCC)" ]; then echo "make cuda: no nvcc (the CUDA toolkit) found"; exit 1; fi
	@$(MAKE) all BUILD=build-cuda CMAKE_FLAGS="$(CMAKE_FLAGS) -DGGML_CUDA=ON -DCMAKE_CUDA_COMPILER=$(NVCC)"

# The CUDA backend compiled and linked wherever nvcc is, and its tests run
# (without a GPU they say so and pass; scripts/cuda-device-check.sh is the
# run on a GPU machine).
test-cuda-build: deps
	@if [ -z "$(NVCC)" ]; then echo "test-cuda-build: no nvcc (the CUDA toolkit) here: skipped"; exit 0; fi; \
	cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_COMPILER=$(NVCC) >/dev/null && \
	cmake --build build-cuda -j $(JOBS) --target main bench perplexity test_cuda test_cuda_blocks test_offload && \
	cd build-cuda && ctest --output-on-failure -R "^test_(cuda|cuda_blocks|offload)$$"

# The GTK 4 chat window (examples/desktop) built and run under Xvfb: a
# question typed, the answer checked on screen and as text, Escape stopping one.
test-desktop: deps
	@bash scripts/install-deps.sh --desktop
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS) --target llm-chat chat
	cd $(BUILD) && ctest --output-on-failure -R test_desktop

# The library for apps: lib/libllm.so.0 (the C API alone exported), the static
# libllm.a and libggml.a, include/llm.h, lib/pkgconfig/llm.pc and
# lib/cmake/llm (find_package(llm), target llm::llm).
PREFIX ?= /usr/local
install: all
	cmake --install $(BUILD) --prefix $(PREFIX)

# The build must also pass with native flags off (portable x86-64 baseline).
test-portable: deps
	cmake -S . -B build-portable -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF >/dev/null
	cmake --build build-portable -j $(JOBS)
	cd build-portable && ctest --output-on-failure -j $(JOBS)

# NEON kernels: cross-compile for aarch64 and run the op tests under qemu-user.
test-neon:
	@bash scripts/install-deps.sh --cross
	cmake -S . -B build-aarch64 -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DGGML_BLAS=OFF >/dev/null
	cmake --build build-aarch64 -j $(JOBS)
	cd build-aarch64 && ctest --output-on-failure -j $(JOBS)

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-sanitize: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DGGML_SANITIZE=ON -DGGML_BLAS=OFF >/dev/null
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS)

# libFuzzer (clang, ASan+UBSan) on the file readers, the whole conversion
# path and the tokenizers, each for FUZZ_SECONDS, seeded with the fixtures.
# The libraries are built once in build-fuzz (CMake, LLM_FUZZ=ON).
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?= -1
FUZZ_FLAGS = -max_total_time=$(FUZZ_SECONDS) -runs=$(FUZZ_RUNS) -rss_limit_mb=4096 -print_final_stats=1
fuzz-build:
	@bash scripts/install-deps.sh --fuzz
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGGML_SANITIZE=ON \
	  -DGGML_BLAS=OFF -DLLM_BUILD_TESTS=OFF -DLLM_FUZZ=ON >/dev/null
	cmake --build build-fuzz -j $(JOBS) --target fuzz_gguf fuzz_checkpoint fuzz_convert fuzz_tokenize

fuzz-gguf: fuzz-build
	mkdir -p build-fuzz/corpus
	cp -n tests/data/gguf/*.gguf build-fuzz/corpus/ 2>/dev/null || true
	build-fuzz/tests/fuzz/fuzz_gguf $(FUZZ_FLAGS) -max_len=4096 build-fuzz/corpus

# The same for safetensors, PyTorch zip/pickle, tokenizer.model and
# tokenizer.json; each seed is a fixture file prefixed with the byte that
# selects its reader.
fuzz-checkpoint: fuzz-build
	mkdir -p build-fuzz/corpus-ck
	@i=0; for f in tests/data/hf/gptj_st/model.safetensors:0 tests/data/hf/gptj_bin/pytorch_model.bin:1 \
	  tests/data/tokenizer/spm_unk/tokenizer.model:2 tests/data/hf_bad/evil.bin:1; do \
	  i=$$((i+1)); printf "\\$$(printf %o $${f##*:})" > build-fuzz/corpus-ck/seed$$i; cat $${f%:*} >> build-fuzz/corpus-ck/seed$$i; done
	build-fuzz/tests/fuzz/fuzz_checkpoint $(FUZZ_FLAGS) -max_len=65536 build-fuzz/corpus-ck

# A whole checkpoint directory (config, weights, tokenizer) converted, then
# loaded and evaluated; and the tokenizers on mutated vocabularies.
fuzz-convert: fuzz-build
	python3 scripts/make_fuzz_seeds.py convert build-fuzz/corpus-convert
	build-fuzz/tests/fuzz/fuzz_convert $(FUZZ_FLAGS) -max_len=131072 build-fuzz/corpus-convert

fuzz-tokenize: fuzz-build
	python3 scripts/make_fuzz_seeds.py tokenize build-fuzz/corpus-tokenize
	build-fuzz/tests/fuzz/fuzz_tokenize $(FUZZ_FLAGS) -max_len=8192 build-fuzz/corpus-tokenize

# The main job: build, fetch the default model, chat one turn with it.
MODEL  ?= models/SmolLM2-135M-Instruct.Q4_1.gguf
PROMPT ?= Write a short poem about the sea, then explain its imagery in two sentences.
run: tools
	@bash scripts/fetch-models.sh
	./main -m $(MODEL) --chat -p "$(PROMPT)" -n 256

bench: all
	./bench-ops

clean:
	rm -rf $(BUILD) build-portable build-aarch64 build-asan build-fuzz $(TOOLS)
