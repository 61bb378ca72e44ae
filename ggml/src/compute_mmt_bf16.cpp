// mul_mat_t (dX = W^T dY) in mixed precision: on the kernel set's BF16 GEMM
// microkernel (AVX512-BF16 or AMX), both operands rounded to bf16, sums in
// float. Asked for per node (op_params[0] bit 0, BackwardOptions::bf16);
// sets without the microkernel run the F32 path.
//
// Phase 1 packs dY's rows into panels of nr rows of bf16 pairs along the
// inner index i (zero-padded), once per product. Phase 2 cuts dX into items of
// (batch, 256 columns k, a run of panels); for each block of KU pairs of i an
// item converts the W rows of the block (their 256-column segment) to F32,
// gathers each column k into pairs along i (W^T's rows), and runs the
// microkernel on every (group of mr columns, panel), keeping running totals in
// a per-thread tile written to dst at the end. Items and blocks depend only on
// the shapes: the same floats for any thread count.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "compute.h"
#include "ggml/fp16.h"

namespace ggml {

namespace {
// Columns of W (rows of dX) per item: whole microkernel groups (12 or 32
// rows), and for block formats 256 (whole blocks of every type, the K-quants'
// and the CPU's rearranged groups included). Float weights take 96 because
// items must be many: SmolLM2's K = 576 in items of 256 was 512 columns on
// one thread and 64 on the other.
int64_t item_columns(Type t) { return t == Type::F32 || t == Type::F16 || t == Type::BF16 ? 96 : 256; }
constexpr int64_t KU = 256;   // pairs of W rows per block of the inner index
constexpr int64_t ACT = 512;  // dY rows per item (whole panels): each converted tile serves them all

size_t al64(size_t n) { return (n + 63) / 64 * 64; }

// Two floats as bf16 (round to nearest even, NaN kept quiet) in one word,
// the first low: written without branches so that loops of it vectorize.
inline uint32_t pair_bf16(float a, float b) {
  uint32_t ua, ub;
  std::memcpy(&ua, &a, 4);
  std::memcpy(&ub, &b, 4);
  const uint32_t ra = (ua & 0x7fffffffu) > 0x7f800000u ? (ua >> 16) | 64 : (ua + 0x7fffu + ((ua >> 16) & 1)) >> 16;
  const uint32_t rb = (ub & 0x7fffffffu) > 0x7f800000u ? (ub >> 16) | 64 : (ub + 0x7fffu + ((ub >> 16) & 1)) >> 16;
  return (ra & 0xffffu) | rb << 16;
}

struct MS {
  int64_t K, M, N, KB, mr, nr, units, panels, batches, ppi, groups;
  MS(const Tensor* dst, const cpu::KernelSet& k) {
    const Tensor* a = dst->src[0];
    const Tensor* d = dst->src[1];
    K = a->ne[0], M = a->ne[1], N = d->ne[1], KB = item_columns(fmt(a));
    mr = k.gemm_bf16.mr, nr = k.gemm_bf16.nr;
    const int64_t ka = k.gemm_bf16.kalign;
    units = ((M + 1) / 2 + ka - 1) / ka * ka;
    panels = (N + nr - 1) / nr;
    batches = d->ne[2] * d->ne[3];
    ppi = std::max<int64_t>(1, ACT / nr);
    groups = (KB + mr - 1) / mr;
  }
  size_t panel_bytes() const { return size_t(units * nr) * 4; }
  size_t packed_bytes() const { return al64(size_t(batches * panels) * panel_bytes()); }
  size_t ftile_bytes() const { return al64(size_t(2 * KU * KB) * 4 + size_t(KU * groups * mr) * 4); }
  size_t agroup_bytes() const { return al64(size_t(groups * mr * KU) * 4); }
  size_t cbuf_bytes() const { return al64(size_t(ppi * groups * mr * nr) * 4); }
  size_t scratch_bytes() const { return al64(size_t(nr * PANEL_TMP_PAIRS) * 4); }  // pack_bf16_panel's
  size_t thread_bytes() const { return ftile_bytes() + agroup_bytes() + cbuf_bytes() + scratch_bytes(); }
};
}  // namespace

bool mmt_bf16_applies(const Tensor* dst, const cpu::KernelSet& k) {
  return (dst->op_params[0] & 1) != 0 && k.gemm_bf16.kernel != nullptr && dst->src[1]->ne[1] >= k.gemm_bf16.nr / 2;
}

size_t mmt_bf16_work_size(const Tensor* dst, int nth, const cpu::KernelSet& k) {
  const MS s(dst, k);
  return s.packed_bytes() + size_t(nth) * s.thread_bytes() + 64;
}

void compute_mmt_bf16(const ComputeParams& p, Tensor* dst) {
  const Tensor* a = dst->src[0];
  const Tensor* d = dst->src[1];
  const cpu::KernelSet& k = *p.k;
  const MS s(dst, k);
  const int64_t K = s.K, M = s.M, N = s.N, KB = s.KB, MR = s.mr, NR = s.nr;
  const int64_t r2 = d->ne[2] / a->ne[2], r3 = d->ne[3] / a->ne[3];
  char* base = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(p.wdata) + 63) / 64 * 64);
  uint32_t* packed = reinterpret_cast<uint32_t*>(base);
  char* tb = base + s.packed_bytes() + size_t(p.ith) * s.thread_bytes();
  float* ftile = reinterpret_cast<float*>(tb);
  uint32_t* agroups = reinterpret_cast<uint32_t*>(tb + s.ftile_bytes());
  float* cbuf = reinterpret_cast<float*>(tb + s.ftile_bytes() + s.agroup_bytes());
  uint32_t* tmp = reinterpret_cast<uint32_t*>(tb + s.ftile_bytes() + s.agroup_bytes() + s.cbuf_bytes());

  // Phase 1: dY's rows as bf16 pairs along i, panel[p][jj].
  {
    int64_t u0, u1;
    split_range(s.batches * s.panels, p.ith, p.nth, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
      const int64_t b = u / s.panels, pn = u % s.panels, i2 = b % d->ne[2], i3 = b / d->ne[2];
      pack_bf16_panel(k, reinterpret_cast<const float*>(d->row_ptr(pn * NR, i2, i3)), d->nb[1] / sizeof(float),
                      std::min(NR, N - pn * NR), NR, M, s.units, packed + size_t(u) * size_t(s.units * NR), tmp);
    }
  }
  p.barrier();

  // Phase 2: items of (batch, KB columns, ppi panels).
  const int64_t k_blocks = (K + KB - 1) / KB, n_chunks = (s.panels + s.ppi - 1) / s.ppi;
  int64_t w0, w1;
  split_range(s.batches * k_blocks * n_chunks, p.ith, p.nth, &w0, &w1);
  for (int64_t w = w0; w < w1; w++) {
    const int64_t nc = w % n_chunks, kblk = (w / n_chunks) % k_blocks, b = w / (n_chunks * k_blocks);
    const int64_t i2 = b % d->ne[2], i3 = b / d->ne[2];
    const int64_t k0 = kblk * KB, kb = std::min(KB, K - k0);
    const int64_t groups = (kb + MR - 1) / MR;
    const int64_t p0 = nc * s.ppi, p1 = std::min(s.panels, p0 + s.ppi);
    const size_t seg = row_size(fmt(a), k0);
    for (int64_t ib = 0; ib < s.units; ib += KU) {
      const int64_t np = std::min(KU, s.units - ib);  // pairs in this block (a multiple of kalign)
      const int64_t r0 = 2 * ib, rows = std::max<int64_t>(0, std::min(2 * np, M - r0));
      // BF16 weights (a base held so for training) pair their rows' 16-bit
      // values as they are; other types go through F32 rows first.
      const bool raw = a->type == Type::BF16;
      auto wrow16 = [&](int64_t r) {
        return reinterpret_cast<const uint16_t*>(a->row_ptr(r0 + r, i2 / r2, i3 / r3) + seg);
      };
      if (!raw)
        for (int64_t r = 0; r < rows; r++)
          k.to_float[cpu::slot(fmt(a))](a->row_ptr(r0 + r, i2 / r2, i3 / r3) + seg, ftile + size_t(r * kb), kb);
      // W^T's rows: each pair of the block's rows as bf16 pairs along the
      // columns (a loop the compiler vectorizes), then column c of those
      // (agroups[c][q]) through 16 x 16 transposed tiles.
      const int64_t gm = groups * MR;
      uint32_t* prow = reinterpret_cast<uint32_t*>(ftile + size_t(2 * KU * KB));
      for (int64_t q = 0; q < np; q++) {
        const int64_t r = 2 * q;
        const float* x0 = r < rows ? ftile + size_t(r * kb) : nullptr;
        const float* x1 = r + 1 < rows ? ftile + size_t((r + 1) * kb) : nullptr;
        uint32_t* out = prow + size_t(q * gm);
        if (raw && x1) {
          const uint16_t *h0 = wrow16(r), *h1 = wrow16(r + 1);
          for (int64_t c = 0; c < kb; c++) out[c] = uint32_t(h0[c]) | uint32_t(h1[c]) << 16;
        } else if (raw && x0) {
          const uint16_t* h0 = wrow16(r);
          for (int64_t c = 0; c < kb; c++) out[c] = uint32_t(h0[c]);
        } else if (x0 && x1) {
          for (int64_t c = 0; c < kb; c++) out[c] = pair_bf16(x0[c], x1[c]);
        } else if (x0) {
          for (int64_t c = 0; c < kb; c++) out[c] = pair_bf16(x0[c], 0.0f);
        } else {
          for (int64_t c = 0; c < kb; c++) out[c] = 0;
        }
        for (int64_t c = kb; c < gm; c++) out[c] = 0;
      }
      k.transpose32(prow, gm, np, gm, agroups, KU);
      for (int64_t pn = p0; pn < p1; pn++) {
        const uint32_t* panel = packed + size_t(b * s.panels + pn) * size_t(s.units * NR) + size_t(ib * NR);
        for (int64_t g = 0; g < groups; g++)
          k.gemm_bf16.kernel(np, agroups + size_t(g * MR) * size_t(KU), size_t(KU), panel,
                             cbuf + size_t(((pn - p0) * s.groups + g) * MR * NR), ib > 0);
      }
    }
    // Each tile (columns of dX x tokens) transposed into dX's rows (one value
    // at a time, with a division each, this had cost more than the sums).
    for (int64_t pn = p0; pn < p1; pn++)
      for (int64_t g = 0; g < groups; g++)
        k.transpose32(reinterpret_cast<const uint32_t*>(cbuf + size_t(((pn - p0) * s.groups + g) * MR * NR)), NR,
                      std::min(MR, kb - g * MR), std::min(NR, N - pn * NR),
                      reinterpret_cast<uint32_t*>(reinterpret_cast<float*>(dst->row_ptr(pn * NR, i2, i3)) + k0 + g * MR),
                      int64_t(dst->nb[1] / sizeof(float)));
  }
}

}  // namespace ggml
