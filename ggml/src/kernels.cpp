#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "ggml/cpu.h"
#include "ggml/error.h"
#include "ggml/quants.h"

namespace ggml::cpu {

namespace {
void silu_scalar(const float* x, float* y, int64_t n) {
  for (int64_t j = 0; j < n; j++) y[j] = x[j] / (1.0f + std::exp(-x[j]));
}
void silu_back_scalar(const float* x, const float* g, float* y, int64_t n) {
  for (int64_t j = 0; j < n; j++) {
    const float s = 1.0f / (1.0f + std::exp(-x[j]));
    y[j] = g[j] * (s * (1.0f + x[j] * (1.0f - s)));
  }
}
void transpose32_scalar(const uint32_t* src, int64_t lds, int64_t rows, int64_t cols, uint32_t* dst, int64_t ldd) {
  for (int64_t r0 = 0; r0 < rows; r0 += 16)  // 16 x 16 blocks: both sides' lines stay cached
    for (int64_t c0 = 0; c0 < cols; c0 += 16)
      for (int64_t r = r0; r < std::min(rows, r0 + 16); r++)
        for (int64_t c = c0; c < std::min(cols, c0 + 16); c++) dst[c * ldd + r] = src[r * lds + c];
}
double exp_sum_scalar(float* y, int64_t n, float sub) {
  double sum = 0;
  for (int64_t j = 0; j < n; j++) {
    y[j] = std::exp(y[j] - sub);
    sum += y[j];
  }
  return sum;
}

void mmt_scalar(const float* w, int64_t rows, int64_t K, size_t ldw, const float* const* d, int64_t i0, float* const* y,
                int nq) {
  for (int64_t i = 0; i < rows; i++) {
    const float* wr = w + size_t(i) * ldw;
    for (int q = 0; q < nq; q++) {
      const float c = d[q][i0 + i];
      float* yq = y[q];
      for (int64_t k = 0; k < K; k++) yq[k] += c * wr[k];
    }
  }
}

volatile float peak_sink;  // the loops' sums land here, so they cannot be dropped

double peak_fma_scalar(int64_t n) {
  float acc[16];
  for (int i = 0; i < 16; i++) acc[i] = float(i);
  for (int64_t r = 0; r < n; r++)
    for (int i = 0; i < 16; i++) acc[i] = acc[i] * 0.999f + 1e-3f;
  float s = 0;
  for (float a : acc) s += a;
  peak_sink = s;
  return double(n) * 16 * 2;
}

KernelSet make_scalar() {
  using namespace ref;
  KernelSet k;
  k.name = "scalar";
  auto set = [&](Type t, dot_fn d, tile_fn tl) { k.dot[slot(t)] = d; k.tile[slot(t)] = tl; };
  set(Type::F32, dot_f32, tile_from_dot<dot_f32>);
  set(Type::F16, dot_f16, tile_from_dot<dot_f16>);
  set(Type::BF16, dot_bf16, tile_from_dot<dot_bf16>);
  set(Type::Q4_0, dot_q4_0, tile_from_dot<dot_q4_0>);
  set(Type::Q4_1, dot_q4_1, tile_from_dot<dot_q4_1>);
  set(Type::Q5_0, dot_q5_0, tile_from_dot<dot_q5_0>);
  set(Type::Q5_1, dot_q5_1, tile_from_dot<dot_q5_1>);
  set(Type::Q8_0, dot_q8_0, tile_from_dot<dot_q8_0>);
  set(cpu::Q8_0R, dot_q8_0r, tile_from_dot<dot_q8_0r>);
  set(cpu::Q4_0R, dot_q4_0r, tile_from_dot<dot_q4_0r>);
  set(cpu::Q4_1R, dot_q4_1r, tile_from_dot<dot_q4_1r>);
  set(Type::Q4_K, dot_q4_K, tile_from_dot<dot_q4_K>);
  set(Type::Q5_K, dot_q5_K, tile_from_dot<dot_q5_K>);
  set(Type::Q6_K, dot_q6_K, tile_from_dot<dot_q6_K>);
  for (uint32_t id = 0; id < 31; id++) {
    if (!type_known(id)) continue;
    const TypeTraits& tr = traits(Type(id));
    k.from_float[id] = tr.from_float;
    k.to_float[id] = tr.to_float;
  }
  k.from_float[slot(cpu::Q8_S)] = quantize_q8_s;
  k.to_float[slot(cpu::Q8_S)] = dequantize_q8_s;
  k.from_float[slot(cpu::Q8_0R)] = quantize_q8_0r;
  k.to_float[slot(cpu::Q8_0R)] = dequantize_q8_0r;
  k.from_float[slot(cpu::Q4_0R)] = quantize_q4_0r;
  k.to_float[slot(cpu::Q4_0R)] = dequantize_q4_0r;
  k.from_float[slot(cpu::Q4_1R)] = quantize_q4_1r;
  k.to_float[slot(cpu::Q4_1R)] = dequantize_q4_1r;
  k.silu = silu_scalar;
  k.exp_sum = exp_sum_scalar;
  k.silu_back = silu_back_scalar;
  k.transpose32 = transpose32_scalar;
  k.mmt = mmt_scalar;
  k.peak_fma = peak_fma_scalar;
  return k;
}
}  // namespace

const KernelSet& scalar() {
  static const KernelSet k = make_scalar();
  return k;
}

void inherit(KernelSet& k, const KernelSet& base) {
  for (int i = 0; i < SLOTS; i++) {
    // A tile kernel belongs with its own set's dot kernel, so it is inherited
    // only together with the dot kernel.
    if (!k.dot[i]) { k.dot[i] = base.dot[i]; k.tile[i] = base.tile[i]; }
    GGML_ASSERT(k.tile[i] || !k.dot[i]);
    if (!k.from_float[i]) k.from_float[i] = base.from_float[i];
    if (!k.to_float[i]) k.to_float[i] = base.to_float[i];
  }
  if (!k.gemm.kernel) k.gemm = base.gemm;
  if (!k.gemm_q.kernel) k.gemm_q = base.gemm_q;
  if (!k.gemm_bf16.kernel) k.gemm_bf16 = base.gemm_bf16;
  if (!k.silu) k.silu = base.silu;
  if (!k.exp_sum) k.exp_sum = base.exp_sum;
  if (!k.silu_back) k.silu_back = base.silu_back;
  if (!k.transpose32) k.transpose32 = base.transpose32;
  if (!k.mmt) k.mmt = base.mmt;
  if (!k.peak_fma) k.peak_fma = base.peak_fma;
  if (!k.peak_bf16) k.peak_bf16 = base.peak_bf16;
  if (!k.peak_int8) k.peak_int8 = base.peak_int8;
}

#if !defined(GGML_HAVE_X86_KERNELS)
const KernelSet* avx2_kernels() { return nullptr; }
const KernelSet* avx512_kernels() { return nullptr; }
const KernelSet* amx_kernels() { return nullptr; }
#endif
#if !defined(GGML_HAVE_NEON_KERNELS)
const KernelSet* neon_kernels() { return nullptr; }
#endif

std::vector<const KernelSet*> available() {
  std::vector<const KernelSet*> v{&scalar()};
  for (const KernelSet* k : {avx2_kernels(), avx512_kernels(), amx_kernels(), neon_kernels()}) if (k) v.push_back(k);
  return v;
}

const KernelSet& best() {
  static const KernelSet* chosen = [] {
    const auto v = available();
    if (const char* want = std::getenv("GGML_KERNELS")) {
      for (const KernelSet* k : v) if (std::strcmp(k->name, want) == 0) return k;
      fail(std::string("GGML_KERNELS=") + want + ": no such kernel set for this CPU");
    }
    return v.back();
  }();
  return *chosen;
}

}  // namespace ggml::cpu

