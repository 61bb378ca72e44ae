// mul_mat_t (dX = W^T dY) through a block-quantized frozen weight (Q8_0,
// Q4_0, Q4_1 and their rearranged layouts) on the int8 GEMM microkernel, the
// forward product's. Asked for per node (op_params[0] bit 1,
// BackwardOptions::int8_products).
//
// The forward's blocks run along W's rows, the backward's sums along its
// columns, so W is first requantized transposed: W^T as Q8_0 rows (one per
// column of W, blocks of 32 of W's rows), once per product into the work
// buffer. That is one pass over W (M x K values) against the product's
// M x K x N multiply-adds: under 1% of them at N = 256, where the float path
// converts every tile of W for every run of tokens. The product itself is
// then the forward's int8 GEMM of W^T by dY (compute_gemm), dY quantized to 8
// bits per block of 32 as the forward quantizes its activations. Both roundings
// are the price: W's values once more to Q8_0 (under half a step of 8 bits of
// the column block's largest value) and dY to 8 bits, about what bf16's
// 8-bit mantissa costs the bf16 path.
//
// Blocks depend only on the shapes, so results do not depend on the thread
// count.
#include <algorithm>
#include <cstring>

#include "compute.h"

namespace ggml {

namespace {
constexpr int64_t QB = 32;   // W's rows per block of W^T
constexpr int64_t CT = 256;  // W's columns transposed at a time (a 32 KiB float buffer)

size_t al64(size_t n) { return (n + 63) / 64 * 64; }

// W^T: K rows of M values as Q8_0.
size_t wt_row_bytes(const Tensor* a) { return row_size(Type::Q8_0, a->ne[1]); }
size_t wt_bytes(const Tensor* a) { return al64(wt_row_bytes(a) * size_t(a->ne[0])); }
// Phase 0's per-thread scratch: QB rows of W as floats, then CT x QB
// transposed. The rows lie a cache line more than K apart, so that a
// power-of-two K (2048: rows 8 KiB apart) does not put all 32 of them in the
// same few sets of L1. (On this host the padding's gain was within the noise;
// the transposition is still about half of the pass.)
int64_t tile_ld(const Tensor* a) { return (a->ne[0] + 15) / 16 * 16 + 16; }
size_t tile_bytes(const Tensor* a) { return al64(size_t(QB * tile_ld(a)) * 4) + al64(size_t(CT * QB) * 4); }

// The product compute_gemm runs: g (dX) = w (W^T, a Q8_0 view of the work
// buffer at wt) by dY, plain (no fusion, no bf16 flag).
void gemm_node(const Tensor* dst, void* wt, Tensor* w, Tensor* g) {
  const Tensor* a = dst->src[0];
  *w = Tensor{};
  w->type = Type::Q8_0;
  w->ne[0] = a->ne[1];
  w->ne[1] = a->ne[0];
  w->nb[0] = traits(Type::Q8_0).type_size;
  w->nb[1] = wt_row_bytes(a);
  w->nb[2] = w->nb[3] = w->nb[1] * size_t(w->ne[1]);
  w->data = wt;
  *g = *dst;
  std::fill(std::begin(g->op_params), std::end(g->op_params), 0);
  g->src[0] = w;
  g->src[2] = g->src[3] = nullptr;
}
}  // namespace

bool mmt_q8_applies(const Tensor* dst, const cpu::KernelSet& k) {
  const Tensor* a = dst->src[0];
  return (dst->op_params[0] & 2) != 0 && k.gemm_q.kernel != nullptr && gemm_q_format(fmt(a)) && a->ne[2] == 1 &&
         a->ne[3] == 1 && a->ne[1] % QB == 0 && dst->src[1]->ne[1] >= k.gemm_q.nr / 2;
}

size_t mmt_q8_work_size(const Tensor* dst, int nth, const cpu::KernelSet& k) {
  const Tensor* a = dst->src[0];
  Tensor w, g;
  gemm_node(dst, nullptr, &w, &g);
  // Phase 0's tiles are dead before the GEMM's buffers are written.
  return wt_bytes(a) + std::max(size_t(nth) * tile_bytes(a), gemm_work_size(&g, nth, k)) + 64;
}

void compute_mmt_q8(const ComputeParams& p, Tensor* dst) {
  const Tensor* a = dst->src[0];
  const cpu::KernelSet& k = *p.k;
  const int64_t K = a->ne[0], M = a->ne[1];
  char* base = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(p.wdata) + 63) / 64 * 64);
  char* wt = base;
  char* rest = base + wt_bytes(a);
  const size_t wrow = wt_row_bytes(a), blk = traits(Type::Q8_0).type_size;
  const cpu::dequant_fn to_f32 = k.to_float[cpu::slot(fmt(a))];
  const cpu::quant_fn to_q8 = k.from_float[cpu::slot(Type::Q8_0)];
  GGML_ASSERT(to_f32 && to_q8);

  // Phase 0: W^T's column of blocks qb from W's rows [32 qb, 32 qb + 32),
  // split among threads by fixed shares (for_each_item's counters are the
  // GEMM's).
  {
    float* rows = reinterpret_cast<float*>(rest + size_t(p.ith) * tile_bytes(a));
    const int64_t ld = tile_ld(a);
    float* tr = rows + al64(size_t(QB * ld) * 4) / 4;
    int64_t b0, b1;
    split_range(M / QB, p.ith, p.nth, &b0, &b1);
    for (int64_t qb = b0; qb < b1; qb++) {
      for (int64_t r = 0; r < QB; r++) to_f32(a->row_ptr(qb * QB + r), rows + r * ld, K);
      for (int64_t c0 = 0; c0 < K; c0 += CT) {
        const int64_t nc = std::min(CT, K - c0);
        k.transpose32(reinterpret_cast<const uint32_t*>(rows + c0), ld, QB, nc, reinterpret_cast<uint32_t*>(tr), QB);
        for (int64_t c = 0; c < nc; c++) to_q8(tr + c * QB, wt + size_t(c0 + c) * wrow + size_t(qb) * blk, QB);
      }
    }
  }
  p.barrier();

  Tensor w, g;
  gemm_node(dst, wt, &w, &g);
  ComputeParams q = p;
  q.wdata = rest;
  q.wsize = p.wsize - size_t(rest - static_cast<char*>(p.wdata));
  compute_gemm(q, &g);
}

}  // namespace ggml
