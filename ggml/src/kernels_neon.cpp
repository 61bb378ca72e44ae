// ARM NEON kernels (aarch64). The 32-element block types compute each
// block's exact integer sum (SDOT where the target has it, widening multiplies
// otherwise) and accumulate blocks in the scalar reference's order, so they
// match it bit for bit. Float weights use four-lane FMA. K-quants use the
// scalar kernels for now.
#include <arm_neon.h>

#include <cstring>
#include <type_traits>

#include "ggml/cpu.h"
#include "ggml/quants.h"

namespace ggml::cpu {
namespace {

inline int32x4_t dot_s8(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
  return vdotq_s32(acc, a, b);
#else
  const int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
  const int16x8_t hi = vmull_s8(vget_high_s8(a), vget_high_s8(b));
  return vpadalq_s16(vpadalq_s16(acc, lo), hi);
#endif
}

// Signed 32 values of a block as two 16-byte halves, with the offset removed.
struct Halves { int8x16_t lo, hi; };

inline int8x16_t bits_to_0x10(uint32_t bits16) {
  uint8_t b[16];
  for (int j = 0; j < 16; j++) b[j] = uint8_t(((bits16 >> j) & 1) << 4);
  return vreinterpretq_s8_u8(vld1q_u8(b));
}

template <class B> Halves halves(const B& b);
template <> Halves halves(const block_q4_0& b) {
  const uint8x16_t q = vld1q_u8(b.qs);
  const int8x16_t eight = vdupq_n_s8(8);
  return {vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f))), eight),
          vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), eight)};
}
template <> Halves halves(const block_q4_1& b) {
  const uint8x16_t q = vld1q_u8(b.qs);
  return {vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f))), vreinterpretq_s8_u8(vshrq_n_u8(q, 4))};
}
template <class B> Halves q5_halves(const B& b, int off) {
  const uint8x16_t q = vld1q_u8(b.qs);
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  const int8x16_t o = vdupq_n_s8(int8_t(off));
  const int8x16_t lo = vorrq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f))), bits_to_0x10(qh & 0xffff));
  const int8x16_t hi = vorrq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), bits_to_0x10(qh >> 16));
  return {vsubq_s8(lo, o), vsubq_s8(hi, o)};
}
template <> Halves halves(const block_q5_0& b) { return q5_halves(b, 16); }
template <> Halves halves(const block_q5_1& b) { return q5_halves(b, 0); }
template <> Halves halves(const block_q8_0& b) { return {vld1q_s8(b.qs), vld1q_s8(b.qs + 16)}; }

inline float min_of(const block_q4_1& b) { return fp16_to_fp32(b.m); }
inline float min_of(const block_q5_1& b) { return fp16_to_fp32(b.m); }
template <class B> constexpr bool has_min = std::is_same_v<B, block_q4_1> || std::is_same_v<B, block_q5_1>;

template <class B>
float dot_blocks(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const B*>(vx);
  const Q8SRow y(vy, n);
  float s = 0;
  for (int64_t i = 0; i < y.nb; i++) {
    const Halves h = halves(x[i]);
    const int8x16_t ylo = vld1q_s8(y.qs + Q8SRow::index(y.nb, i, 0));
    const int8x16_t yhi = vld1q_s8(y.qs + Q8SRow::index(y.nb, i, 16));
    const int sumi = vaddvq_s32(dot_s8(dot_s8(vdupq_n_s32(0), h.lo, ylo), h.hi, yhi));
    if constexpr (has_min<B>) {
      s += fp16_to_fp32(x[i].d) * y.d[i] * float(sumi) + min_of(x[i]) * y.ds[i];
    } else {
      s += fp16_to_fp32(x[i].d) * y.d[i] * float(sumi);
    }
  }
  return s;
}

template <class Load>
float dot_float(int64_t n, const void* vx, const void* vy, Load load) {
  const auto* y = static_cast<const float*>(vy);
  float32x4_t acc = vdupq_n_f32(0.0f);
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) acc = vfmaq_f32(acc, load(vx, k), vld1q_f32(y + k));
  float s = vaddvq_f32(acc);
  float tail[4];
  for (; k < n; k++) {
    vst1q_f32(tail, load(vx, k));  // reads 4 elements only when they exist
    s += tail[0] * y[k];
  }
  return s;
}

float dot_f32(int64_t n, const void* x, const void* y) {
  const int64_t n4 = n / 4 * 4;
  float s = dot_float(n4, x, y, [](const void* p, int64_t k) { return vld1q_f32(static_cast<const float*>(p) + k); });
  for (int64_t k = n4; k < n; k++) s += static_cast<const float*>(x)[k] * static_cast<const float*>(y)[k];
  return s;
}
float dot_f16(int64_t n, const void* x, const void* y) {
  const int64_t n4 = n / 4 * 4;
  float s = dot_float(n4, x, y, [](const void* p, int64_t k) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(static_cast<const uint16_t*>(p) + k)));
  });
  for (int64_t k = n4; k < n; k++) s += fp16_to_fp32(static_cast<const uint16_t*>(x)[k]) * static_cast<const float*>(y)[k];
  return s;
}
float dot_bf16(int64_t n, const void* x, const void* y) {
  const int64_t n4 = n / 4 * 4;
  float s = dot_float(n4, x, y, [](const void* p, int64_t k) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(static_cast<const uint16_t*>(p) + k), 16));
  });
  for (int64_t k = n4; k < n; k++) s += bf16_to_fp32(static_cast<const uint16_t*>(x)[k]) * static_cast<const float*>(y)[k];
  return s;
}

KernelSet make_set() {
  KernelSet k;
  k.name = "neon";
  auto set = [&](Type t, dot_fn d, tile_fn tl) { k.dot[slot(t)] = d; k.tile[slot(t)] = tl; };
  set(Type::F32, dot_f32, tile_from_dot<dot_f32>);
  set(Type::F16, dot_f16, tile_from_dot<dot_f16>);
  set(Type::BF16, dot_bf16, tile_from_dot<dot_bf16>);
  set(Type::Q4_0, dot_blocks<block_q4_0>, tile_from_dot<dot_blocks<block_q4_0>>);
  set(Type::Q4_1, dot_blocks<block_q4_1>, tile_from_dot<dot_blocks<block_q4_1>>);
  set(Type::Q5_0, dot_blocks<block_q5_0>, tile_from_dot<dot_blocks<block_q5_0>>);
  set(Type::Q5_1, dot_blocks<block_q5_1>, tile_from_dot<dot_blocks<block_q5_1>>);
  set(Type::Q8_0, dot_blocks<block_q8_0>, tile_from_dot<dot_blocks<block_q8_0>>);
  inherit(k, scalar());
  return k;
}

}  // namespace

const KernelSet* neon_kernels() {
  static const KernelSet k = make_set();
  return &k;
}

}  // namespace ggml::cpu
