// Prompt-sized products on the kernel set's register-blocked GEMM
// microkernels: F16 and BF16 weights on the BF16 one where the CPU has it
// (weights and activations rounded to bf16, float sums), other float weights
// on the float one, Q4_0, Q4_1 and Q8_0 weights on the int8 one (activations
// quantized to Q8 per block).
//
// Phase 1 packs the activations into panels of nr rows interleaved by k
// (zero-padded past the last row), once per product. Phase 2 cuts the product
// into work items of GROUPS x mr weight rows by a run of panels; for each
// block of k an item unpacks its weight rows into a per-thread buffer (F32
// rows, bf16 pairs, or unsigned bytes with their scales) reused by every
// panel of the item, and runs the microkernel on every (row group, panel)
// pair, keeping running totals in a per-thread tile buffer written to dst at
// the end. Blocks and items depend only on the shapes, so results do not
// depend on the thread count.
#include <algorithm>
#include <cstring>
#include <vector>

#include "compute.h"
#include "ggml/quants.h"

namespace ggml {

namespace {
constexpr int64_t GROUPS = 4;              // microkernel row groups per work item
constexpr int64_t ITEM_ACTIVATIONS = 128;  // activation rows per work item (whole panels)
// Float path: columns of k per block: a panel block is KC x nr floats (32 KiB
// at nr 32), an item's weight block GROUPS x mr x KC floats. 128 and 384
// measured slower. BF16 path: as many pairs (the same bytes). Int8 path: 8
// blocks of 32 (the same 256 columns).
constexpr int64_t KC = 256;
constexpr int64_t KCB = 8;  // a multiple of 8: Q8_0R/Q4_0R/Q4_1R rows are packed whole groups of 8 blocks at a time

size_t align64(size_t n) { return (n + 63) / 64 * 64; }

enum class Path { F32, BF16, Q8 };

bool quantized_path(Type t) {
  return t == Type::Q4_0 || t == Type::Q4_1 || t == Type::Q8_0 || t == cpu::Q8_0R || t == cpu::Q4_0R ||
         t == cpu::Q4_1R;
}

bool bf16_ok(const Tensor* dst, Type t) { return t == Type::F16 || t == Type::BF16 || (t == Type::F32 && dst->op_params[MM_BF16_PARAM] == 1); }

Path path_for(const Tensor* dst, Type t, const cpu::KernelSet& k) {
  if (quantized_path(t)) return Path::Q8;
  if (bf16_ok(dst, t) && k.gemm_bf16.kernel) return Path::BF16;
  return Path::F32;
}

// Sizes shared by the paths; a "unit" is one column of k (float path), a
// pair of columns (bf16 path) or one block of 32 (int8 path).
struct Shape {
  Path path;
  int64_t K, M, N, C2, C3, mr, nr, mb, ppi, panels, batches;
  int64_t unit, units, ku;     // columns per unit, units in K, units per k block
  size_t panel_unit_bytes;     // packed activations per unit of one panel
  size_t group_bytes;          // one row group's weight buffer for a k block
  size_t row_bytes;            // phase 1 scratch: one activation row
  Shape(const Tensor* dst, const cpu::KernelSet& k) {
    const Tensor* a = dst->src[0];
    const Tensor* b = dst->src[1];
    path = path_for(dst, fmt(a), k);
    const bool q = path == Path::Q8;
    K = a->ne[0], M = a->ne[1], N = b->ne[1], C2 = b->ne[2], C3 = b->ne[3];
    mr = q ? k.gemm_q.mr : path == Path::BF16 ? k.gemm_bf16.mr : k.gemm.mr;
    nr = q ? k.gemm_q.nr : path == Path::BF16 ? k.gemm_bf16.nr : k.gemm.nr;
    mb = mr * GROUPS;
    ppi = std::max<int64_t>(1, ITEM_ACTIVATIONS / nr);
    panels = (N + nr - 1) / nr;
    batches = C2 * C3;
    unit = q ? 32 : path == Path::BF16 ? 2 : 1;
    units = (K + unit - 1) / unit;  // K is whole blocks on the int8 path
    // AMX tiles take 16 pairs at a time: both operands zero-padded to that.
    if (path == Path::BF16) units = (units + k.gemm_bf16.kalign - 1) / k.gemm_bf16.kalign * k.gemm_bf16.kalign;
    ku = q ? KCB : KC;
    panel_unit_bytes = size_t(nr) * (q ? 40 : 4);
    group_bytes = q ? size_t(ku * mr * 40) : size_t(mr * ku) * 4;
    row_bytes = q ? align64(size_t(K) * sizeof(float)) + align64(row_size(cpu::Q8_S, K))
                : path == Path::BF16 ? align64(size_t(std::max<int64_t>(K, nr * PANEL_TMP_PAIRS)) * sizeof(float)) +
                                           align64(size_t(units) * 4)
                                     : 0;
  }
  // Columns of k in the units [u0, u0 + nu).
  int64_t cols(int64_t u0, int64_t nu) const { return std::min(nu * unit, K - u0 * unit); }
  size_t panel_bytes() const { return size_t(units) * panel_unit_bytes; }
  size_t packed_bytes() const { return align64(size_t(batches * panels) * panel_bytes()); }
  size_t thread_bytes() const {
    return align64(size_t(GROUPS) * group_bytes) + align64(size_t(ppi * mb * nr) * sizeof(float)) + row_bytes;
  }
};
}  // namespace

bool gemm_q_format(Type f) { return quantized_path(f); }

bool gemm_applies(const Tensor* dst, const cpu::KernelSet& k) {
  if (dst->op_params[0] != 0) return false;  // fused products (generation's) take the tiles
  const Type t = fmt(dst->src[0]);
  int mr = 0, nr = 0;
  if (k.gemm.kernel && (t == Type::F32 || t == Type::F16 || t == Type::BF16)) mr = k.gemm.mr, nr = k.gemm.nr;
  if (k.gemm_bf16.kernel && bf16_ok(dst, t)) mr = k.gemm_bf16.mr, nr = k.gemm_bf16.nr;
  if (k.gemm_q.kernel && quantized_path(t)) mr = k.gemm_q.mr, nr = k.gemm_q.nr;
  // Below half a panel the zero padding wastes more than the tiles lose.
  // Below two row groups of F32 weights (LoRA's A, rank 8 or 16: M = r)
  // packing every activation row costs more than the product: the tiles ran
  // LoRA's products 3-4x faster (SmolLM2 fine-tune, GGML_PROFILE). (Only F32:
  // the tiles would round F16 attention's activations to F16, not bf16.)
  const bool few_rows = t == Type::F32 && !bf16_ok(dst, t) && dst->src[0]->ne[1] < 2 * mr;
  return nr > 0 && dst->src[1]->ne[1] >= nr / 2 && !few_rows;
}

size_t gemm_work_size(const Tensor* dst, int nth, const cpu::KernelSet& k) {
  const Shape s(dst, k);
  return s.packed_bytes() + size_t(nth) * s.thread_bytes() + 64;
}

namespace {
// Phase 1, float path: panel[k][jj] = row jj's value k.
void pack_panel_f32(const cpu::KernelSet& k, const Tensor* b, const Shape& s, int64_t pn, int64_t i2, int64_t i3,
                    float* out, std::vector<float>& tmp) {
  const int64_t K = s.K, NR = s.nr;
  const bool rows_f32 = b->type == Type::F32 && b->nb[0] == sizeof(float);
  const float* rows[256];
  GGML_ASSERT(NR <= 256);
  for (int64_t jj = 0; jj < NR; jj++) {
    const int64_t j = pn * NR + jj;
    rows[jj] = nullptr;
    if (j >= s.N) continue;
    if (rows_f32) {
      rows[jj] = reinterpret_cast<const float*>(b->row_ptr(j, i2, i3));
    } else {  // strided activations only (not on the model's paths)
      tmp.resize(size_t(NR * K));
      load_row_f32(k, b, j, i2, i3, tmp.data() + jj * K);
      rows[jj] = tmp.data() + jj * K;
    }
  }
  const int64_t valid = std::max<int64_t>(0, std::min(NR, s.N - pn * NR));
  if (rows_f32) {  // the rows a uniform stride apart: one transposition
    k.transpose32(reinterpret_cast<const uint32_t*>(rows[0]), int64_t(b->nb[1] / sizeof(float)), valid, K,
                  reinterpret_cast<uint32_t*>(out), NR);
    if (valid < NR)
      for (int64_t kk = 0; kk < K; kk++) std::fill(out + kk * NR + valid, out + (kk + 1) * NR, 0.0f);
    return;
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

// Phase 1, int8 path: each row quantized to Q8_S, then per block 8 groups of
// 4 values x nr rows, nr scales, nr d * sums (see cpu.h).
void pack_panel_q8(const cpu::KernelSet& k, const Tensor* b, const Shape& s, int64_t pn, int64_t i2, int64_t i3,
                   uint8_t* out, char* scratch) {
  const int64_t K = s.K, NR = s.nr, nb = K / 32;
  float* f = reinterpret_cast<float*>(scratch);
  char* qrow = scratch + align64(size_t(K) * sizeof(float));
  const size_t bstride = size_t(NR) * 40;
  for (int64_t jj = 0; jj < NR; jj++) {
    const int64_t j = pn * NR + jj;
    if (j >= s.N) {
      for (int64_t blk = 0; blk < nb; blk++) {
        uint8_t* o = out + size_t(blk) * bstride;
        for (int kq = 0; kq < 8; kq++) std::memset(o + (kq * NR + jj) * 4, 0, 4);
        std::memset(o + NR * 32 + jj * 4, 0, 4);
        std::memset(o + NR * 36 + jj * 4, 0, 4);
      }
      continue;
    }
    const float* src;
    if (b->type == Type::F32 && b->nb[0] == sizeof(float)) {
      src = reinterpret_cast<const float*>(b->row_ptr(j, i2, i3));
    } else {
      load_row_f32(k, b, j, i2, i3, f);
      src = f;
    }
    k.from_float[cpu::slot(cpu::Q8_S)](src, qrow, K);
    const Q8SRow yr(qrow, K);
    for (int64_t blk = 0; blk < nb; blk++) {
      uint8_t* o = out + size_t(blk) * bstride;
      for (int kq = 0; kq < 8; kq++) std::memcpy(o + (kq * NR + jj) * 4, yr.qs + Q8SRow::index(nb, blk, 4 * kq), 4);
      std::memcpy(o + NR * 32 + jj * 4, yr.d + blk, 4);
      std::memcpy(o + NR * 36 + jj * 4, yr.ds + blk, 4);
    }
  }
}

// Phase 1, bf16 path: panel[p][jj] = row jj's pair p.
void pack_panel_bf16(const cpu::KernelSet& k, const Tensor* b, const Shape& s, int64_t pn, int64_t i2, int64_t i3,
                     uint32_t* out, char* scratch) {
  const int64_t NR = s.nr, P = s.units, real = (s.K + 1) / 2;  // pairs past `real` are padding
  float* f = reinterpret_cast<float*>(scratch);
  uint32_t* pairs = reinterpret_cast<uint32_t*>(
      scratch + align64(size_t(std::max<int64_t>(s.K, NR * PANEL_TMP_PAIRS)) * sizeof(float)));
  if (b->type == Type::F32 && b->nb[0] == sizeof(float) && pn * NR < s.N) {
    const int64_t valid = std::min(NR, s.N - pn * NR);
    return pack_bf16_panel(k, reinterpret_cast<const float*>(b->row_ptr(pn * NR, i2, i3)), b->nb[1] / sizeof(float),
                           valid, NR, s.K, P, out, reinterpret_cast<uint32_t*>(f));
  }
  for (int64_t jj = 0; jj < NR; jj++) {
    const int64_t j = pn * NR + jj;
    if (j >= s.N) {
      for (int64_t p = 0; p < P; p++) out[p * NR + jj] = 0;
      continue;
    }
    if (b->type == Type::F32 && b->nb[0] == sizeof(float)) {
      k.gemm_bf16.pack(Type::F32, b->row_ptr(j, i2, i3), s.K, pairs);
    } else {
      load_row_f32(k, b, j, i2, i3, f);
      k.gemm_bf16.pack(Type::F32, f, s.K, pairs);
    }
    for (int64_t p = 0; p < real; p++) out[p * NR + jj] = pairs[p];
    for (int64_t p = real; p < P; p++) out[p * NR + jj] = 0;
  }
}
}  // namespace

void pack_bf16_panel(const cpu::KernelSet& k, const float* first, size_t ld, int64_t valid, int64_t nr, int64_t K,
                     int64_t units, uint32_t* out, uint32_t* tmp) {
  const int64_t real = (K + 1) / 2;
  for (int64_t q0 = 0; q0 < real; q0 += PANEL_TMP_PAIRS) {
    const int64_t nq = std::min(PANEL_TMP_PAIRS, real - q0), cols = std::min(2 * PANEL_TMP_PAIRS, K - 2 * q0);
    for (int64_t jj = 0; jj < valid; jj++)
      k.gemm_bf16.pack(Type::F32, first + size_t(jj) * ld + size_t(2 * q0), cols, tmp + jj * PANEL_TMP_PAIRS);
    k.transpose32(tmp, PANEL_TMP_PAIRS, valid, nq, out + q0 * nr, nr);
  }
  if (valid < nr)
    for (int64_t q = 0; q < real; q++) std::fill(out + q * nr + valid, out + (q + 1) * nr, 0u);
  std::fill(out + real * nr, out + units * nr, 0u);
}

void compute_gemm(const ComputeParams& p, Tensor* dst) {
  const Tensor* a = dst->src[0];
  const Tensor* b = dst->src[1];
  const cpu::KernelSet& k = *p.k;
  const Shape s(dst, k);
  const int64_t M = s.M, N = s.N, NR = s.nr, MR = s.mr;
  const int64_t r2 = s.C2 / a->ne[2], r3 = s.C3 / a->ne[3];
  char* packed = static_cast<char*>(p.wdata);
  char* tbuf = packed + s.packed_bytes() + size_t(p.ith) * s.thread_bytes();
  char* abuf = tbuf;
  float* cbuf = reinterpret_cast<float*>(tbuf + align64(size_t(GROUPS) * s.group_bytes));
  char* scratch = reinterpret_cast<char*>(cbuf) + align64(size_t(s.ppi * s.mb * NR) * sizeof(float));

  // Phase 1: activation panels, split among threads by panel.
  {
    int64_t u0, u1;
    split_range(s.batches * s.panels, p.ith, p.nth, &u0, &u1);
    std::vector<float> tmp;
    for (int64_t u = u0; u < u1; u++) {
      const int64_t batch = u / s.panels, pn = u % s.panels;
      const int64_t i2 = batch % s.C2, i3 = batch / s.C2;
      char* out = packed + size_t(u) * s.panel_bytes();
      if (s.path == Path::Q8) {
        pack_panel_q8(k, b, s, pn, i2, i3, reinterpret_cast<uint8_t*>(out), scratch);
      } else if (s.path == Path::BF16) {
        pack_panel_bf16(k, b, s, pn, i2, i3, reinterpret_cast<uint32_t*>(out), scratch);
      } else {
        pack_panel_f32(k, b, s, pn, i2, i3, reinterpret_cast<float*>(out), tmp);
      }
    }
  }
  p.barrier();

  // Phase 2: items of (batch, block of mb weight rows, ppi panels).
  const cpu::dequant_fn to_f32 = k.to_float[cpu::slot(fmt(a))];
  auto unpack_row = [&](char* group, int64_t i, const char* src, int64_t u0, int64_t nu) {
    if (s.path == Path::Q8) {
      k.gemm_q.pack(fmt(a), src, nu, reinterpret_cast<uint8_t*>(group), int(i));
    } else if (s.path == Path::BF16) {
      uint32_t* row = reinterpret_cast<uint32_t*>(group) + i * s.ku;
      const int64_t cols = s.cols(u0, nu), pairs = (cols + 1) / 2;
      k.gemm_bf16.pack(fmt(a), src, cols, row);
      // padding up to kalign: zeros, not the previous block's weights (which
      // could hold infinities, and inf * 0 is nan)
      if (pairs < nu) std::memset(row + pairs, 0, size_t(nu - pairs) * 4);
    } else {
      to_f32(src, reinterpret_cast<float*>(group) + i * s.ku, nu);
    }
  };
  auto zero_row = [&](char* group, int64_t i, int64_t nu) {
    if (s.path == Path::Q8) {
      for (int64_t blk = 0; blk < nu; blk++) {
        char* g = group + size_t(blk * MR * 40);
        std::memset(g + i * 32, 0, 32);
        std::memset(g + MR * 32 + i * 4, 0, 4);
        std::memset(g + MR * 36 + i * 4, 0, 4);
      }
    } else {
      std::memset(group + size_t(i * s.ku) * 4, 0, size_t(nu) * 4);
    }
  };
  auto kernel = [&](int64_t nu, const char* group, const char* panel, float* c, bool acc) {
    if (s.path == Path::Q8) {
      k.gemm_q.kernel(nu, reinterpret_cast<const uint8_t*>(group), reinterpret_cast<const uint8_t*>(panel), c, acc);
    } else if (s.path == Path::BF16) {
      k.gemm_bf16.kernel(nu, reinterpret_cast<const uint32_t*>(group), size_t(s.ku),
                         reinterpret_cast<const uint32_t*>(panel), c, acc);
    } else {
      k.gemm.kernel(nu, reinterpret_cast<const float*>(group), size_t(s.ku), reinterpret_cast<const float*>(panel), c,
                    acc);
    }
  };
  const int64_t m_blocks = (M + s.mb - 1) / s.mb;
  const int64_t n_chunks = (s.panels + s.ppi - 1) / s.ppi;
  const size_t ldc = dst->nb[1] / sizeof(float);
  for_each_item(p, s.batches * m_blocks * n_chunks, [&](int64_t w) {
    const int64_t nc = w % n_chunks, mblk = (w / n_chunks) % m_blocks, batch = w / (n_chunks * m_blocks);
    const int64_t i2 = batch % s.C2, i3 = batch / s.C2;
    const int64_t m0 = mblk * s.mb, rows_here = std::min(s.mb, M - m0);
    const int64_t groups = (rows_here + MR - 1) / MR;
    const int64_t p0 = nc * s.ppi, p1 = std::min(s.panels, p0 + s.ppi);
    auto wrow = [&](int64_t r) { return a->row_ptr(m0 + r, i2 / r2, i3 / r3); };
    for (int64_t k0 = 0; k0 < s.units; k0 += s.ku) {
      const int64_t nu = std::min(s.ku, s.units - k0);
      const size_t src_off = row_size(fmt(a), k0 * s.unit);
      for (int64_t r = 0; r < groups * MR; r++) {
        char* group = abuf + size_t(r / MR) * s.group_bytes;
        if (r < rows_here) {
          unpack_row(group, r % MR, wrow(r) + src_off, k0, nu);
        } else {
          zero_row(group, r % MR, nu);
        }
      }
      // The next block's weights are fetched while this one is multiplied, a
      // share before each microkernel call; otherwise its short row segments
      // come from DRAM a few misses at a time during the unpacking.
      const bool ahead = k0 + s.ku < s.units;
      const size_t off = ahead ? row_size(fmt(a), (k0 + s.ku) * s.unit) : 0;
      const int64_t lines_per_row =
          ahead ? int64_t(row_size(fmt(a), s.cols(k0 + s.ku, s.ku)) + 63) / 64 : 0;
      const int64_t lines = lines_per_row * rows_here;
      const int64_t calls = (p1 - p0) * groups;
      const int64_t per_call = (lines + calls - 1) / std::max<int64_t>(calls, 1);
      int64_t line = 0;
      for (int64_t pn = p0; pn < p1; pn++) {
        const char* panel = packed + size_t(batch * s.panels + pn) * s.panel_bytes() + size_t(k0) * s.panel_unit_bytes;
        for (int64_t gi = 0; gi < groups; gi++) {
          for (int64_t e = std::min(lines, line + per_call); line < e; line++) {
            __builtin_prefetch(wrow(line / lines_per_row) + off + (line % lines_per_row) * 64, 0, 2);
          }
          kernel(nu, abuf + size_t(gi) * s.group_bytes, panel, cbuf + ((pn - p0) * GROUPS + gi) * MR * NR, k0 > 0);
        }
      }
    }
    // Each tile (weight rows x activations) transposed into dst's rows: one
    // value at a time this had taken a sixth of the product.
    float* out = reinterpret_cast<float*>(dst->row_ptr(0, i2, i3));
    for (int64_t pn = p0; pn < p1; pn++)
      for (int64_t gi = 0; gi < groups; gi++)
        k.transpose32(reinterpret_cast<const uint32_t*>(cbuf + ((pn - p0) * GROUPS + gi) * MR * NR), NR,
                      std::min(MR, rows_here - gi * MR), std::min(NR, N - pn * NR),
                      reinterpret_cast<uint32_t*>(out + size_t(pn * NR) * ldc + size_t(m0 + gi * MR)), int64_t(ldc));
  });
}

}  // namespace ggml
