// Matrix multiplication: dst[i, j] = dot(row i of weights, row j of activations).
//
// Activations are converted once into the weight type's vec_dot_type (Q8 blocks
// for quantized weights). The product is then cut into fixed work items (batch,
// chunk of weight rows, chunk of activation rows) shared among threads; each item
// sweeps its activation rows against a chunk of weights small enough to stay in
// cache, TILE_MAX x TILE_MAX dot products at a time. Item and tile boundaries
// depend only on the shapes and every kernel is deterministic, so the result is
// the same for any number of threads. Prompt-sized products with float
// weights go to the kernel set's GEMM microkernel (compute_gemm.cpp) where it
// has one; otherwise large F32 products go to OpenBLAS (one single-threaded
// sgemm per panel of weight rows) when built in.
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <mutex>

#include "compute.h"

#if defined(GGML_USE_OPENBLAS)
#include <cblas.h>
#endif

namespace ggml {

namespace {
constexpr int64_t M_CHUNK = 16;     // weight rows per work item
constexpr int64_t N_CHUNK = 64;     // activation rows per work item
constexpr int64_t BLAS_PANEL = 256; // weight rows per sgemm call
[[maybe_unused]] constexpr int64_t BLAS_MIN = 32;  // smallest dimension worth a BLAS call (BLAS builds only)

#if defined(GGML_USE_OPENBLAS)
// GGML_BLAS_OFF=1 in the environment routes every product to our kernels
// (for comparisons).
bool blas_disabled() {
  static const bool off = [] {
    const char* e = std::getenv("GGML_BLAS_OFF");
    return e && *e && *e != '0';
  }();
  return off;
}
#endif

int32_t fusion(const Tensor* dst) { return dst->op_params[0]; }

bool use_blas(const Tensor* dst) {
#if defined(GGML_USE_OPENBLAS)
  if (blas_disabled() || fusion(dst)) return false;
  const Tensor* a = dst->src[0];
  const Tensor* b = dst->src[1];
  // F16/BF16 weights stay on our tiled kernels: converting them to F32 panels
  // for sgemm measured slower (bench-ops mm512, 2 threads: F16 148 vs 255,
  // BF16 165 vs 240 GFLOP/s); for F32 the two were even (167 vs 175), and
  // the GEMM microkernel, which runs first where the kernel set has one, is
  // 1.6x faster than either (bench-ops mm512 ~350 vs 216 GFLOP/s).
  const bool ftype = a->type == Type::F32;
  return ftype && b->ne[1] >= BLAS_MIN && a->ne[1] >= BLAS_MIN && a->ne[0] >= BLAS_MIN;
#else
  (void)dst;
  return false;
#endif
}

// Activation rows are used in place when already in the right format.
bool needs_conversion(const Tensor* dst, bool blas) {
  const Tensor* a = dst->src[0];
  const Tensor* b = dst->src[1];
  const Type vdt = blas ? Type::F32 : cpu::activation_format(fmt(a));
  if (fusion(dst) & MM_NORM) return true;  // the normalized rows are written somewhere
  return !(vdt == Type::F32 && b->nb[0] == sizeof(float) && b->nb[1] % sizeof(float) == 0);
}

size_t align64(size_t n) { return (n + 63) / 64 * 64; }

// Generation's products have a row or two of activations: each thread
// converts them itself into its own buffer, which costs less than the barrier
// that sharing one conversion needs (SmolLM2 has 210 such products a token).
bool private_conversion(const Tensor* dst) { return dst->src[1]->nrows() <= 2; }

// Per-thread scratch of a fused product: a normalized activation row, and the
// up product's results of one work item.
size_t fused_scratch(const Tensor* dst) {
  const int32_t f = fusion(dst);
  size_t size = 0;
  if (f & MM_NORM) size += align64(size_t(dst->src[1]->ne[0]) * sizeof(float));
  if (f & MM_GLU) size += align64(size_t(M_CHUNK * N_CHUNK) * sizeof(float));
  return size;
}
}  // namespace

size_t mul_mat_work_size(const Tensor* dst, int nth, const cpu::KernelSet& k) {
  if (gemm_applies(dst, k)) return gemm_work_size(dst, nth, k);
  const Tensor* a = dst->src[0];
  const Tensor* b = dst->src[1];
  const bool blas = use_blas(dst);
  const Type vdt = blas ? Type::F32 : cpu::activation_format(fmt(a));
  size_t size = 0;
  if (needs_conversion(dst, blas)) {
    const size_t conv = align64(row_size(vdt, b->ne[0]) * size_t(b->nrows()));
    size += private_conversion(dst) ? size_t(nth) * conv : conv;
  }
  if (blas && a->type != Type::F32) size += size_t(nth) * align64(size_t(BLAS_PANEL * a->ne[0]) * sizeof(float));
  size += size_t(nth) * fused_scratch(dst);
  return size + 64;
}

void compute_mul_mat(const ComputeParams& p, Tensor* dst) {
  const Tensor* a = dst->src[0];
  const Tensor* b = dst->src[1];
  const cpu::KernelSet& k = *p.k;
  if (gemm_applies(dst, k)) return compute_gemm(p, dst);
  const bool blas = use_blas(dst);
  const Type vdt = blas ? Type::F32 : cpu::activation_format(fmt(a));
  const int64_t K = a->ne[0], M = a->ne[1], N = b->ne[1];
  const int64_t C2 = b->ne[2], C3 = b->ne[3];
  const int64_t r2 = C2 / a->ne[2], r3 = C3 / a->ne[3];

  // Phase 1: activations into vdt rows (row j of batch (i2, i3) at index
  // j + N * (i2 + C2 * i3)), split by rows among threads.
  char* wbase = static_cast<char*>(p.wdata);
  const size_t act_row = row_size(vdt, K);
  const bool convert = needs_conversion(dst, blas);
  const bool priv = convert && private_conversion(dst);
  const size_t conv = convert ? align64(act_row * size_t(b->nrows())) : 0;
  // (fusions never take the BLAS path, whose panels would lie here)
  char* scratch = wbase + (priv ? size_t(p.nth) * conv : conv) + size_t(p.ith) * fused_scratch(dst);
  if (priv) wbase += size_t(p.ith) * conv;
  const int32_t fused = fusion(dst);
  float* norm_row = nullptr;
  if (fused & MM_NORM) {
    norm_row = reinterpret_cast<float*>(scratch);
    scratch += align64(size_t(K) * sizeof(float));
  }
  float* up_out = (fused & MM_GLU) ? reinterpret_cast<float*>(scratch) : nullptr;
  if (convert) {
    const int64_t rows = b->nrows();
    int64_t r0 = 0, r1 = rows;
    if (!priv) split_range(rows, p.ith, p.nth, &r0, &r1);
    float* tmp = nullptr;
    std::vector<float> row_buf;
    if (b->nb[0] != sizeof(float)) { row_buf.resize(size_t(K)); tmp = row_buf.data(); }
    for (int64_t r = r0; r < r1; r++) {
      const int64_t i1 = r % N, i2 = (r / N) % C2, i3 = r / (N * C2);
      const float* src = reinterpret_cast<const float*>(b->row_ptr(i1, i2, i3));
      if (tmp) { load_row_f32(k, b, i1, i2, i3, tmp); src = tmp; }
      if (norm_row) {
        const Tensor* w = dst->src[3];
        rms_norm_row(src, norm_row, K, op_param_f32(dst, 1), w ? static_cast<const float*>(w->data) : nullptr);
        src = norm_row;
      }
      k.from_float[cpu::slot(vdt)](src, wbase + size_t(r) * act_row, K);
    }
    if (!priv) p.barrier();
  }
  auto act = [&](int64_t j, int64_t i2, int64_t i3) -> const char* {
    if (convert) return wbase + size_t(j + N * (i2 + C2 * i3)) * act_row;
    return b->row_ptr(j, i2, i3);
  };
  const size_t act_stride = convert ? act_row : b->nb[1];
  const size_t ldc = dst->nb[1] / sizeof(float);

#if defined(GGML_USE_OPENBLAS)
  if (blas) {
    const int64_t batches = C2 * C3;
    static std::once_flag once;
    std::call_once(once, [] { openblas_set_num_threads(1); });
    const int64_t panels = (M + BLAS_PANEL - 1) / BLAS_PANEL;
    float* panel_buf = reinterpret_cast<float*>(
        wbase + (convert ? align64(act_row * size_t(b->nrows())) : 0) +
        size_t(p.ith) * align64(size_t(BLAS_PANEL * K) * sizeof(float)));
    int64_t w0, w1;
    split_range(batches * panels, p.ith, p.nth, &w0, &w1);
    for (int64_t w = w0; w < w1; w++) {
      const int64_t batch = w / panels, m0 = (w % panels) * BLAS_PANEL;
      const int64_t i2 = batch % C2, i3 = batch / C2;
      const int64_t mp = std::min(BLAS_PANEL, M - m0);
      const char* wrow = a->row_ptr(m0, i2 / r2, i3 / r3);
      const float* A = reinterpret_cast<const float*>(wrow);
      size_t lda = a->nb[1] / sizeof(float);
      if (a->type != Type::F32 || a->nb[1] % sizeof(float) != 0) {
        for (int64_t i = 0; i < mp; i++) k.to_float[cpu::slot(fmt(a))](wrow + size_t(i) * a->nb[1], panel_buf + i * K, K);
        A = panel_buf;
        lda = size_t(K);
      }
      float* C = reinterpret_cast<float*>(dst->row_ptr(0, i2, i3)) + m0;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(N), int(mp), int(K), 1.0f,
                  reinterpret_cast<const float*>(act(0, i2, i3)), int(act_stride / sizeof(float)), A, int(lda), 0.0f,
                  C, int(ldc));
    }
    return;
  }
#endif

  // Phase 2: tiled dot products over fixed work items. (For one activation
  // row the tile kernels walk their weight rows one after another: a single
  // sequential stream is what the memory system serves fastest.)
  const int64_t tile_m = cpu::TILE_MAX;
  const cpu::tile_fn tile = k.tile[cpu::slot(fmt(a))];
  GGML_ASSERT(tile != nullptr);
  // Generation's attention (one activation row per head, r2 heads sharing a
  // KV head): the heads that share a weight matrix are taken as the rows of
  // one product, so a tile reuses each weight row for up to TILE_MAX heads
  // instead of reading it once per head with one horizontal sum per row.
  // Their rows (and results) lie a uniform stride apart: converted rows are
  // consecutive, unconverted ones nb[2] apart.
  const bool group_heads = N == 1 && r2 > 1;
  const int64_t NG = group_heads ? r2 : N;                 // activation rows per item batch
  const int64_t groups2 = group_heads ? C2 / r2 : C2;      // item batches along dim 2
  const size_t y_stride = group_heads ? (convert ? act_row : b->nb[2]) : act_stride;
  const size_t ldo = group_heads ? dst->nb[2] / sizeof(float) : ldc;
  const int64_t m_chunks = (M + M_CHUNK - 1) / M_CHUNK;
  const int64_t n_chunks = (NG + N_CHUNK - 1) / N_CHUNK;
  for_each_item(p, groups2 * C3 * m_chunks * n_chunks, [&](int64_t w) {
    const int64_t nc = w % n_chunks, mc = (w / n_chunks) % m_chunks, batch = w / (n_chunks * m_chunks);
    const int64_t g2 = batch % groups2, i3 = batch / groups2;
    const int64_t i2 = group_heads ? g2 * r2 : g2;  // first activation batch of the item
    const int64_t m_begin = mc * M_CHUNK, m_end = std::min(M, m_begin + M_CHUNK);
    const int64_t n_begin = nc * N_CHUNK, n_end = std::min(NG, n_begin + N_CHUNK);
    float* out = reinterpret_cast<float*>(dst->row_ptr(0, i2, i3));
    for (int64_t j = n_begin; j < n_end; j += cpu::TILE_MAX) {
      const int ny = int(std::min<int64_t>(cpu::TILE_MAX, n_end - j));
      const char* y = group_heads ? act(0, i2 + j, i3) : act(j, i2, i3);
      for (int64_t i = m_begin; i < m_end; i += tile_m) {
        const int nx = int(std::min<int64_t>(tile_m, m_end - i));
        tile(K, out + size_t(j) * ldo + size_t(i), ldo, a->row_ptr(i, i2 / r2, i3 / r3), a->nb[1], nx, y, y_stride,
             ny);
        // SwiGLU: the same rows of the up weights, into scratch (M_CHUNK wide)
        if (up_out)
          tile(K, up_out + size_t(j - n_begin) * M_CHUNK + size_t(i - m_begin), M_CHUNK, dst->src[2]->row_ptr(i),
               dst->src[2]->nb[1], nx, y, y_stride, ny);
      }
    }
    if (!(fused & (MM_GLU | MM_ADD))) return;
    // (fusions are 2-D: no head groups, out is row 0 of the only batch)
    const int64_t len = m_end - m_begin;
    for (int64_t j = n_begin; j < n_end; j++) {
      float* o = out + size_t(j) * ldo + size_t(m_begin);
      if (up_out) {  // as the silu_mul node
        silu_mul_row(k, o, o, up_out + size_t(j - n_begin) * M_CHUNK, len);
      } else {  // as add(addend, product)
        const float* r = reinterpret_cast<const float*>(dst->src[2]->row_ptr(j)) + m_begin;
        for (int64_t i = 0; i < len; i++) o[i] = r[i] + o[i];
      }
    }
  });
}

}  // namespace ggml
