// mul_mat_t (dX = W^T dY) in mixed precision: on the kernel set's BF16 GEMM
// microkernel (AVX512-BF16 or AMX), both operands rounded to bf16, sums in
// float. Asked for per node (op_params[0] bit 0, BackwardOptions::bf16);
// sets without the microkernel run the F32 path.
//
// The microkernel's broadcast side is dY (mr tokens), its loaded side W: a
// panel of nr columns k of W holds, for each pair of W's rows (2q, 2q + 1),
// the two rows' values at those columns side by side, which is W's rows
// interleaved two by two: no transposition on either side, and each result
// tile's rows are runs of a dX row.
//
// Phase 1 packs dY's rows as bf16 pairs along the inner index i (zero-padded
// to whole groups of mr rows and blocks of KU pairs), once per product, each
// group's block contiguous. Phase 2 cuts dX into items of (batch, KB columns,
// a run of token groups); for each block of KU pairs an item builds its
// panels from the block's W rows and runs the microkernel on every (panel,
// token group), keeping running totals in a per-thread tile buffer copied to
// dX at the end. Items and blocks depend only on the shapes: the same floats
// for any thread count.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "compute.h"

namespace ggml {

namespace {
// Columns of W (rows of dX) per item: whole panels, and for block formats
// 256 (whole blocks of every type, the K-quants' and the CPU's rearranged
// groups included). Float weights take 96 because items must be many:
// SmolLM2's K = 576 in items of 256 was 512 columns on one thread and 64 on
// the other.
int64_t item_columns(Type t) { return t == Type::F32 || t == Type::F16 || t == Type::BF16 ? 96 : 256; }
constexpr int64_t KU = 256;  // pairs of W rows per block of the inner index: a panel is KU x nr words (32 KiB)
constexpr int64_t TOK = 512;  // at most about this many tokens per item: W's panels are built once per item

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
  int64_t K, M, N, KB, mr, nr, units, blocks, tgroups, chunks, gpi, cpanels, batches;
  MS(const Tensor* dst, const cpu::KernelSet& k) {
    const Tensor* a = dst->src[0];
    const Tensor* d = dst->src[1];
    K = a->ne[0], M = a->ne[1], N = d->ne[1], KB = item_columns(fmt(a));
    mr = k.gemm_bf16.mr, nr = k.gemm_bf16.nr;
    const int64_t ka = k.gemm_bf16.kalign;
    units = ((M + 1) / 2 + ka - 1) / ka * ka;
    blocks = (units + KU - 1) / KU;
    tgroups = (N + mr - 1) / mr;
    // Token groups shared evenly among the fewest runs of at most TOK tokens.
    chunks = (tgroups + std::max<int64_t>(1, TOK / mr) - 1) / std::max<int64_t>(1, TOK / mr);
    gpi = (tgroups + chunks - 1) / chunks;
    cpanels = (KB + nr - 1) / nr;
    batches = d->ne[2] * d->ne[3];
  }
  // dY's group g, block blk: mr rows of KU pairs (the last block's tail zeros).
  size_t group_words() const { return size_t(blocks * mr * KU); }
  size_t packed_bytes() const { return al64(size_t(batches * tgroups) * group_words() * 4); }
  size_t rows_bytes() const { return al64(size_t(2 * KB) * 4 + size_t(KU) * 4); }  // two W row segments; one dY row
  size_t panels_bytes() const { return al64(size_t(cpanels * KU * nr) * 4); }
  size_t cbuf_bytes() const { return al64(size_t(gpi * cpanels * mr * nr) * 4); }
  size_t thread_bytes() const { return rows_bytes() + panels_bytes() + cbuf_bytes(); }
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
  float* wrows = reinterpret_cast<float*>(tb);                   // 2 x KB
  uint32_t* drow = reinterpret_cast<uint32_t*>(wrows + 2 * KB);  // a last, partial block of a dY row: KU pairs
  uint32_t* panels = reinterpret_cast<uint32_t*>(tb + s.rows_bytes());
  float* cbuf = reinterpret_cast<float*>(tb + s.rows_bytes() + s.panels_bytes());
  const int64_t real = (M + 1) / 2;  // pairs of dY's row past `real` are padding

  // Phase 1: dY's rows as bf16 pairs along i, split among threads by row.
  {
    int64_t u0, u1;
    split_range(s.batches * s.tgroups * MR, p.ith, p.nth, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
      const int64_t b = u / (s.tgroups * MR), j = u % (s.tgroups * MR), i2 = b % d->ne[2], i3 = b / d->ne[2];
      uint32_t* g = packed + size_t(b * s.tgroups + j / MR) * s.group_words() + size_t(j % MR * KU);
      const float* row = j < N ? reinterpret_cast<const float*>(d->row_ptr(j, i2, i3)) : nullptr;
      for (int64_t blk = 0; blk < s.blocks; blk++) {
        uint32_t* out = g + size_t(blk * MR * KU);
        const int64_t q0 = blk * KU, nq = row ? std::max<int64_t>(0, std::min(KU, real - q0)) : 0;
        if (nq > 0) {
          k.gemm_bf16.pack(Type::F32, row + 2 * q0, std::min(2 * KU, M - 2 * q0), nq == KU ? out : drow);
          if (nq < KU) std::memcpy(out, drow, size_t(nq) * 4);
        }
        std::fill(out + nq, out + KU, 0u);
      }
    }
  }
  p.barrier();

  // Phase 2: items of (batch, KB columns, gpi token groups).
  const int64_t k_blocks = (K + KB - 1) / KB;
  const bool raw = a->type == Type::BF16;  // BF16 weights pair their 16-bit values as they are
  const cpu::dequant_fn to_f32 = k.to_float[cpu::slot(fmt(a))];
  for_each_item(p, s.batches * k_blocks * s.chunks, [&](int64_t w) {
    const int64_t nc = w % s.chunks, kblk = (w / s.chunks) % k_blocks, b = w / (s.chunks * k_blocks);
    const int64_t i2 = b % d->ne[2], i3 = b / d->ne[2];
    const int64_t k0 = kblk * KB, kb = std::min(KB, K - k0), cp = (kb + NR - 1) / NR;
    const int64_t g0 = nc * s.gpi, g1 = std::min(s.tgroups, g0 + s.gpi);
    const size_t seg = row_size(fmt(a), k0);
    auto wrow = [&](int64_t r) { return a->row_ptr(r, i2 / r2, i3 / r3) + seg; };
    for (int64_t blk = 0; blk < s.blocks; blk++) {
      const int64_t ib = blk * KU, np = std::min(KU, s.units - ib);  // a multiple of kalign
      // Panel c's word [q][jj]: W rows 2(ib + q) and 2(ib + q) + 1 at column
      // k0 + c nr + jj, zeros past W's rows and the item's columns.
      for (int64_t q = 0; q < np; q++) {
        const int64_t r = 2 * (ib + q);
        const int64_t have = std::max<int64_t>(0, std::min<int64_t>(2, M - r));
        uint32_t* out = panels + size_t(q * NR);
        const size_t pstride = size_t(np * NR);
        if (have == 0) {
          for (int64_t c = 0; c < cp; c++) std::fill(out + c * pstride, out + c * pstride + NR, 0u);
          continue;
        }
        if (raw) {
          const uint16_t* h0 = reinterpret_cast<const uint16_t*>(wrow(r));
          const uint16_t* h1 = have == 2 ? reinterpret_cast<const uint16_t*>(wrow(r + 1)) : nullptr;
          for (int64_t c = 0; c < cp; c++) {
            uint32_t* o = out + c * pstride;
            const int64_t n = std::min(NR, kb - c * NR);
            const uint16_t* x0 = h0 + c * NR;
            if (h1) {
              const uint16_t* x1 = h1 + c * NR;
              for (int64_t jj = 0; jj < n; jj++) o[jj] = uint32_t(x0[jj]) | uint32_t(x1[jj]) << 16;
            } else {
              for (int64_t jj = 0; jj < n; jj++) o[jj] = uint32_t(x0[jj]);
            }
            std::fill(o + n, o + NR, 0u);
          }
        } else {
          to_f32(wrow(r), wrows, kb);
          if (have == 2) {
            to_f32(wrow(r + 1), wrows + KB, kb);
          } else {
            std::fill(wrows + KB, wrows + KB + kb, 0.0f);
          }
          for (int64_t c = 0; c < cp; c++) {
            uint32_t* o = out + c * pstride;
            const int64_t n = std::min(NR, kb - c * NR);
            const float* x0 = wrows + c * NR;
            const float* x1 = wrows + KB + c * NR;
            for (int64_t jj = 0; jj < n; jj++) o[jj] = pair_bf16(x0[jj], x1[jj]);
            std::fill(o + n, o + NR, 0u);
          }
        }
      }
      for (int64_t c = 0; c < cp; c++) {
        const uint32_t* panel = panels + size_t(c * np * NR);
        for (int64_t g = g0; g < g1; g++)
          k.gemm_bf16.kernel(np, packed + size_t(b * s.tgroups + g) * s.group_words() + size_t(blk * MR * KU),
                             size_t(KU), panel, cbuf + size_t(((g - g0) * s.cpanels + c) * MR * NR), blk > 0);
      }
    }
    // Each tile's rows are runs of dX's rows.
    for (int64_t g = g0; g < g1; g++)
      for (int64_t c = 0; c < cp; c++) {
        const float* t = cbuf + size_t(((g - g0) * s.cpanels + c) * MR * NR);
        const int64_t n = std::min(NR, kb - c * NR);
        for (int64_t i = 0; i < MR && g * MR + i < N; i++)
          std::memcpy(reinterpret_cast<float*>(dst->row_ptr(g * MR + i, i2, i3)) + k0 + c * NR, t + i * NR,
                      size_t(n) * sizeof(float));
      }
  });
}

}  // namespace ggml
