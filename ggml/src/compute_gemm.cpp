// Prompt-sized products with float weights (F32, F16, BF16) on the kernel
// set's register-blocked GEMM microkernel.
//
// Phase 1 packs the activations into panels of nr rows interleaved by k
// (zero-padded past the last row), once per product. Phase 2 cuts the product
// into work items of GROUPS x mr weight rows by PANELS_PER_ITEM panels; for
// each block of KC columns an item converts its weight rows to F32 in a
// per-thread buffer (reused by every panel of the item) and runs the
// microkernel on every (row group, panel) pair, keeping running totals in a
// per-thread tile buffer that is written to dst at the end. Blocks and items
// depend only on the shapes, so results do not depend on the thread count.
#include <algorithm>
#include <cstring>
#include <vector>

#include "compute.h"

namespace ggml {

namespace {
// Columns of k per block: a panel block is KC x nr floats (32 KiB at nr 32),
// an item's weight block mr x GROUPS x KC floats. 128 and 384 measured slower.
constexpr int64_t KC = 256;
constexpr int64_t LDA = KC;
constexpr int64_t GROUPS = 4;            // microkernel row groups per work item
constexpr int64_t ITEM_ACTIVATIONS = 128;  // activation rows per work item (whole panels)

size_t align64(size_t n) { return (n + 63) / 64 * 64; }

struct Shape {
  int64_t K, M, N, C2, C3, mr, nr, mb, ppi, panels, batches;
  Shape(const Tensor* dst, const cpu::Gemm& g) {
    const Tensor* a = dst->src[0];
    const Tensor* b = dst->src[1];
    K = a->ne[0], M = a->ne[1], N = b->ne[1], C2 = b->ne[2], C3 = b->ne[3];
    mr = g.mr, nr = g.nr, mb = mr * GROUPS;
    ppi = std::max<int64_t>(1, ITEM_ACTIVATIONS / nr);
    panels = (N + nr - 1) / nr;
    batches = C2 * C3;
  }
  size_t packed_bytes() const { return align64(size_t(batches * panels) * size_t(K * nr) * sizeof(float)); }
  size_t thread_bytes() const { return align64(size_t(mb * LDA + ppi * mb * nr) * sizeof(float)); }
};
}  // namespace

bool gemm_applies(const Tensor* dst, const cpu::KernelSet& k) {
  const Type t = dst->src[0]->type;
  if (!k.gemm.kernel || !(t == Type::F32 || t == Type::F16 || t == Type::BF16)) return false;
  // Below half a panel the zero padding wastes more than the tiles lose.
  return dst->src[1]->ne[1] >= k.gemm.nr / 2;
}

size_t gemm_work_size(const Tensor* dst, int nth, const cpu::KernelSet& k) {
  const Shape s(dst, k.gemm);
  return s.packed_bytes() + size_t(nth) * s.thread_bytes() + 64;
}

void compute_gemm(const ComputeParams& p, Tensor* dst) {
  const Tensor* a = dst->src[0];
  const Tensor* b = dst->src[1];
  const cpu::KernelSet& k = *p.k;
  const cpu::Gemm& g = k.gemm;
  const Shape s(dst, g);
  const int64_t K = s.K, M = s.M, N = s.N, NR = s.nr, MR = s.mr;
  const int64_t r2 = s.C2 / a->ne[2], r3 = s.C3 / a->ne[3];
  const size_t panel_floats = size_t(K * NR);
  float* packed = static_cast<float*>(p.wdata);

  // Phase 1: activation panels, split among threads by panel.
  {
    int64_t u0, u1;
    split_range(s.batches * s.panels, p.ith, p.nth, &u0, &u1);
    const bool rows_f32 = b->type == Type::F32 && b->nb[0] == sizeof(float);
    std::vector<float> tmp;  // strided activations only (not on the model's paths)
    const float* rows[256];
    GGML_ASSERT(NR <= 256);
    for (int64_t u = u0; u < u1; u++) {
      const int64_t batch = u / s.panels, pn = u % s.panels;
      const int64_t i2 = batch % s.C2, i3 = batch / s.C2;
      float* out = packed + size_t(u) * panel_floats;
      for (int64_t jj = 0; jj < NR; jj++) {
        const int64_t j = pn * NR + jj;
        rows[jj] = nullptr;
        if (j >= N) continue;
        if (rows_f32) {
          rows[jj] = reinterpret_cast<const float*>(b->row_ptr(j, i2, i3));
        } else {
          tmp.resize(size_t(NR * K));
          load_row_f32(k, b, j, i2, i3, tmp.data() + jj * K);
          rows[jj] = tmp.data() + jj * K;
        }
      }
      // 64 columns at a time, so the panel block being written stays in L1.
      for (int64_t k0 = 0; k0 < K; k0 += 64) {
        const int64_t k1 = std::min(K, k0 + 64);
        for (int64_t jj = 0; jj < NR; jj++) {
          const float* r = rows[jj];
          if (r) {
            for (int64_t kk = k0; kk < k1; kk++) out[kk * NR + jj] = r[kk];
          } else {
            for (int64_t kk = k0; kk < k1; kk++) out[kk * NR + jj] = 0.0f;
          }
        }
      }
    }
  }
  p.barrier();

  // Phase 2: items of (batch, block of mb weight rows, ppi panels).
  float* abuf = reinterpret_cast<float*>(reinterpret_cast<char*>(p.wdata) + s.packed_bytes() +
                                         size_t(p.ith) * s.thread_bytes());
  float* cbuf = abuf + s.mb * LDA;
  const int64_t m_blocks = (M + s.mb - 1) / s.mb;
  const int64_t n_chunks = (s.panels + s.ppi - 1) / s.ppi;
  const cpu::dequant_fn to_f32 = k.to_float[cpu::slot(a->type)];
  const size_t ldc = dst->nb[1] / sizeof(float);
  int64_t w0, w1;
  split_range(s.batches * m_blocks * n_chunks, p.ith, p.nth, &w0, &w1);
  for (int64_t w = w0; w < w1; w++) {
    const int64_t nc = w % n_chunks, mblk = (w / n_chunks) % m_blocks, batch = w / (n_chunks * m_blocks);
    const int64_t i2 = batch % s.C2, i3 = batch / s.C2;
    const int64_t m0 = mblk * s.mb, rows_here = std::min(s.mb, M - m0);
    const int64_t groups = (rows_here + MR - 1) / MR;
    const int64_t p0 = nc * s.ppi, p1 = std::min(s.panels, p0 + s.ppi);
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
      const int64_t kc = std::min(KC, K - k0);
      for (int64_t r = 0; r < groups * MR; r++) {
        float* dstrow = abuf + r * LDA;
        if (r < rows_here) {
          to_f32(a->row_ptr(m0 + r, i2 / r2, i3 / r3) + row_size(a->type, k0), dstrow, kc);
        } else {
          std::memset(dstrow, 0, size_t(kc) * sizeof(float));
        }
      }
      // The next block's weights are fetched while this one is multiplied, a
      // share before each microkernel call; otherwise its short row segments
      // come from DRAM a few misses at a time during the conversion.
      const bool ahead = k0 + KC < K;
      const size_t off = ahead ? row_size(a->type, k0 + KC) : 0;
      const int64_t lines_per_row = ahead ? int64_t(row_size(a->type, std::min(KC, K - k0 - KC)) + 63) / 64 : 0;
      const int64_t lines = lines_per_row * rows_here;
      const int64_t calls = (p1 - p0) * groups;
      const int64_t per_call = (lines + calls - 1) / std::max<int64_t>(calls, 1);
      int64_t line = 0;
      for (int64_t pn = p0; pn < p1; pn++) {
        const float* bp = packed + size_t(batch * s.panels + pn) * panel_floats + size_t(k0 * NR);
        for (int64_t gi = 0; gi < groups; gi++) {
          for (int64_t e = std::min(lines, line + per_call); line < e; line++) {
            __builtin_prefetch(a->row_ptr(m0 + line / lines_per_row, i2 / r2, i3 / r3) + off + (line % lines_per_row) * 64, 0, 2);
          }
          g.kernel(kc, abuf + gi * MR * LDA, LDA, bp, cbuf + ((pn - p0) * GROUPS + gi) * MR * NR, k0 > 0);
        }
      }
    }
    float* out = reinterpret_cast<float*>(dst->row_ptr(0, i2, i3));
    for (int64_t pn = p0; pn < p1; pn++) {
      for (int64_t jj = 0; jj < NR && pn * NR + jj < N; jj++) {
        float* o = out + size_t(pn * NR + jj) * ldc + size_t(m0);
        const float* c = cbuf + (pn - p0) * GROUPS * MR * NR + jj;
        for (int64_t r = 0; r < rows_here; r++) o[r] = c[r * NR];
      }
    }
  }
}

}  // namespace ggml
