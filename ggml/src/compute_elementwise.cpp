// Copies and conversions, element-wise arithmetic, activations, row lookup.
#include <cmath>
#include <cstring>

#include "compute.h"
#include "ggml/fp16.h"

namespace ggml {

namespace {
struct RowIndex { int64_t i1, i2, i3; };
inline RowIndex row_index(const Tensor* t, int64_t r) {
  return {r % t->ne[1], (r / t->ne[1]) % t->ne[2], r / (t->ne[1] * t->ne[2])};
}

float load_elem(const char* p, Type type) {
  switch (type) {
    case Type::F32: { float v; std::memcpy(&v, p, 4); return v; }
    case Type::F16: { fp16_t v; std::memcpy(&v, p, 2); return fp16_to_fp32(v); }
    case Type::BF16: { bf16_t v; std::memcpy(&v, p, 2); return bf16_to_fp32(v); }
    default: GGML_ASSERT(false && "strided access to a block type");
  }
  return 0;
}

void store_elem(char* p, Type type, float v) {
  switch (type) {
    case Type::F32: std::memcpy(p, &v, 4); break;
    case Type::F16: { fp16_t h = fp32_to_fp16(v); std::memcpy(p, &h, 2); break; }
    case Type::BF16: { bf16_t h = fp32_to_bf16(v); std::memcpy(p, &h, 2); break; }
    default: GGML_ASSERT(false && "strided access to a block type");
  }
}

void store_row_f32(const cpu::KernelSet& k, Tensor* t, int64_t i1, int64_t i2, int64_t i3, const float* in) {
  char* row = t->row_ptr(i1, i2, i3);
  if (t->rows_contiguous()) {
    k.from_float[cpu::slot(fmt(t))](in, row, t->ne[0]);
  } else {
    for (int64_t i = 0; i < t->ne[0]; i++) store_elem(row + size_t(i) * t->nb[0], t->type, in[i]);
  }
}

float* thread_row_buffer(const ComputeParams& p, int64_t n) {
  const size_t per = (size_t(n) + 64) * sizeof(float);
  GGML_ASSERT(per * size_t(p.nth) <= p.wsize);
  return reinterpret_cast<float*>(static_cast<char*>(p.wdata) + per * size_t(p.ith));
}
}  // namespace

void load_row_f32(const cpu::KernelSet& k, const Tensor* t, int64_t i1, int64_t i2, int64_t i3, float* out) {
  const char* row = t->row_ptr(i1, i2, i3);
  if (t->rows_contiguous()) {
    k.to_float[cpu::slot(fmt(t))](row, out, t->ne[0]);
  } else {
    for (int64_t i = 0; i < t->ne[0]; i++) out[i] = load_elem(row + size_t(i) * t->nb[0], t->type);
  }
}

namespace {
// A transposed F32 matrix made contiguous (the backward pass's x^T and g^T:
// source rows are columns, element i at stride nb[0], dimension 1 packed):
// bands of 16 rows through the kernel set's register transpose, every source
// cache line read once per 16 values instead of one strided load per value.
bool copy_transposed_f32(const ComputeParams& p, const Tensor* src, Tensor* dst) {
  if (src->type != Type::F32 || dst->type != Type::F32 || src->nb[1] != sizeof(float) || src->nb[0] <= sizeof(float) ||
      src->nb[0] % sizeof(float) != 0 || !dst->is_contiguous())
    return false;
  for (int i = 0; i < MAX_DIMS; i++)
    if (src->ne[i] != dst->ne[i]) return false;
  constexpr int64_t T = 16;
  const int64_t C = dst->ne[0], R = dst->ne[1], slices = dst->ne[2] * dst->ne[3], bands = (R + T - 1) / T;
  const size_t ld = src->nb[0] / sizeof(float);
  int64_t w0, w1;
  split_range(slices * bands, p.ith, p.nth, &w0, &w1);
  for (int64_t w = w0; w < w1; w++) {
    const int64_t s = w / bands, r0 = (w % bands) * T, r1 = std::min(R, r0 + T);
    const int64_t i2 = s % dst->ne[2], i3 = s / dst->ne[2];
    const float* in = reinterpret_cast<const float*>(static_cast<const char*>(src->data) + i2 * src->nb[2] + i3 * src->nb[3]);
    float* out = static_cast<float*>(dst->data) + s * R * C;
    p.k->transpose32(reinterpret_cast<const uint32_t*>(in + r0), int64_t(ld), C, r1 - r0,
                     reinterpret_cast<uint32_t*>(out + r0 * C), C);
  }
  return true;
}
}  // namespace

void compute_copy(const ComputeParams& p, Tensor* dst) {
  const Tensor* src = dst->src[0];
  const cpu::KernelSet& k = *p.k;
  if (copy_transposed_f32(p, src, dst)) return;
  if (src->ne[0] == dst->ne[0] && src->nrows() == dst->nrows()) {
    int64_t r0, r1;
    split_range(dst->nrows(), p.ith, p.nth, &r0, &r1);
    const bool raw = fmt(src) == fmt(dst) && src->rows_contiguous() && dst->rows_contiguous();
    auto scalar = [](Type t) { return t == Type::F32 || t == Type::F16 || t == Type::BF16; };
    if (!raw && dst->ne[0] < 16 && scalar(src->type) && scalar(dst->type)) {
      // Short rows (a token's values into the transposed V cache: rows of
      // one): element by element, without two row calls per element.
      for (int64_t r = r0; r < r1; r++) {
        const RowIndex s = row_index(src, r), d = row_index(dst, r);
        const char* sr = src->row_ptr(s.i1, s.i2, s.i3);
        char* dr = dst->row_ptr(d.i1, d.i2, d.i3);
        for (int64_t i = 0; i < dst->ne[0]; i++)
          store_elem(dr + size_t(i) * dst->nb[0], dst->type, load_elem(sr + size_t(i) * src->nb[0], src->type));
      }
      return;
    }
    const size_t row_bytes = row_size(dst->type, dst->ne[0]);
    float* tmp = raw ? nullptr : thread_row_buffer(p, src->ne[0]);
    // F32 on one side with packed rows (the bf16 copies of kept activations,
    // and back): converted in one pass, not through the row buffer.
    const bool from_f32 = src->type == Type::F32 && src->rows_contiguous();
    const bool to_f32 = dst->type == Type::F32 && dst->rows_contiguous();
    for (int64_t r = r0; r < r1; r++) {
      const RowIndex s = row_index(src, r), d = row_index(dst, r);
      if (raw) {
        std::memcpy(dst->row_ptr(d.i1, d.i2, d.i3), src->row_ptr(s.i1, s.i2, s.i3), row_bytes);
      } else if (from_f32) {
        store_row_f32(k, dst, d.i1, d.i2, d.i3, reinterpret_cast<const float*>(src->row_ptr(s.i1, s.i2, s.i3)));
      } else if (to_f32) {
        load_row_f32(k, src, s.i1, s.i2, s.i3, reinterpret_cast<float*>(dst->row_ptr(d.i1, d.i2, d.i3)));
      } else {
        load_row_f32(k, src, s.i1, s.i2, s.i3, tmp);
        store_row_f32(k, dst, d.i1, d.i2, d.i3, tmp);
      }
    }
    return;
  }
  // Different shapes, both contiguous: a flat conversion in chunks that are a
  // multiple of every block size.
  const int64_t chunk = 4096, n = dst->nelements();
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  int64_t c0, c1;
  split_range(n_chunks, p.ith, p.nth, &c0, &c1);
  float* tmp = thread_row_buffer(p, chunk);
  for (int64_t c = c0; c < c1; c++) {
    const int64_t e0 = c * chunk, len = std::min(chunk, n - e0);
    const char* s = static_cast<const char*>(src->data) + row_size(fmt(src), e0);
    char* d = static_cast<char*>(dst->data) + row_size(fmt(dst), e0);
    k.to_float[cpu::slot(fmt(src))](s, tmp, len);
    k.from_float[cpu::slot(fmt(dst))](tmp, d, len);
  }
}

namespace {
template <class F>
void binary_op(const ComputeParams& p, Tensor* dst, F f) {
  const Tensor* a = dst->src[0];
  const Tensor* b = dst->src[1];
  int64_t r0, r1;
  split_range(dst->nrows(), p.ith, p.nth, &r0, &r1);
  const int64_t n = dst->ne[0], nb0 = b->ne[0];
  for (int64_t r = r0; r < r1; r++) {
    const RowIndex i = row_index(dst, r);
    float* d = reinterpret_cast<float*>(dst->row_ptr(i.i1, i.i2, i.i3));
    const char* ar = a->row_ptr(i.i1, i.i2, i.i3);
    const char* br = b->row_ptr(i.i1 % b->ne[1], i.i2 % b->ne[2], i.i3 % b->ne[3]);
    if (a->nb[0] == 4 && b->nb[0] == 4 && nb0 == n) {
      const float* x = reinterpret_cast<const float*>(ar);
      const float* y = reinterpret_cast<const float*>(br);
      for (int64_t j = 0; j < n; j++) d[j] = f(x[j], y[j]);
    } else {
      for (int64_t j = 0; j < n; j++) {
        float x, y;
        std::memcpy(&x, ar + size_t(j) * a->nb[0], 4);
        std::memcpy(&y, br + size_t(j % nb0) * b->nb[0], 4);
        d[j] = f(x, y);
      }
    }
  }
}

template <class F>
void unary_op(const ComputeParams& p, Tensor* dst, F f) {
  const Tensor* a = dst->src[0];
  int64_t r0, r1;
  split_range(dst->nrows(), p.ith, p.nth, &r0, &r1);
  const int64_t n = dst->ne[0];
  for (int64_t r = r0; r < r1; r++) {
    const RowIndex i = row_index(dst, r);
    float* d = reinterpret_cast<float*>(dst->row_ptr(i.i1, i.i2, i.i3));
    const char* ar = a->row_ptr(i.i1, i.i2, i.i3);
    if (a->nb[0] == 4) {
      const float* x = reinterpret_cast<const float*>(ar);
      for (int64_t j = 0; j < n; j++) d[j] = f(x[j]);
    } else {
      for (int64_t j = 0; j < n; j++) {
        float x;
        std::memcpy(&x, ar + size_t(j) * a->nb[0], 4);
        d[j] = f(x);
      }
    }
  }
}
}  // namespace

void compute_add(const ComputeParams& p, Tensor* dst) { binary_op(p, dst, [](float x, float y) { return x + y; }); }
void compute_mul(const ComputeParams& p, Tensor* dst) { binary_op(p, dst, [](float x, float y) { return x * y; }); }

void compute_scale(const ComputeParams& p, Tensor* dst) {
  const float s = op_param_f32(dst, 0);
  unary_op(p, dst, [s](float x) { return x * s; });
}

void compute_unary(const ComputeParams& p, Tensor* dst) {
  switch (dst->op) {
    case Op::SILU:
    case Op::SILU_MUL: {  // the kernel set's row loop; strided rows are gathered into dst first
      const Tensor* src = dst->src[0];
      const Tensor* b = dst->op == Op::SILU_MUL ? dst->src[1] : nullptr;  // times b, in place
      int64_t r0, r1;
      split_range(dst->nrows(), p.ith, p.nth, &r0, &r1);
      const int64_t n = dst->ne[0];
      for (int64_t r = r0; r < r1; r++) {
        const RowIndex i = row_index(dst, r);
        float* y = reinterpret_cast<float*>(dst->row_ptr(i.i1, i.i2, i.i3));
        const float* x = reinterpret_cast<const float*>(src->row_ptr(i.i1, i.i2, i.i3));
        if (src->nb[0] != sizeof(float) || src->type != Type::F32) {
          load_row_f32(*p.k, src, i.i1, i.i2, i.i3, y);
          x = y;
        }
        const char* br = b ? b->row_ptr(i.i1, i.i2, i.i3) : nullptr;
        if (!b) {
          p.k->silu(x, y, n);
        } else if (b->nb[0] == sizeof(float)) {
          silu_mul_row(*p.k, x, y, reinterpret_cast<const float*>(br), n);
        } else {
          p.k->silu(x, y, n);
          for (int64_t j = 0; j < n; j++) {
            float v;
            std::memcpy(&v, br + size_t(j) * b->nb[0], 4);
            y[j] *= v;
          }
        }
      }
      break;
    }
    case Op::GELU:
      unary_op(p, dst, [](float x) {
        constexpr float c = 0.7978845608028654f;  // sqrt(2/pi)
        return 0.5f * x * (1.0f + std::tanh(c * (x + 0.044715f * x * x * x)));
      });
      break;
    case Op::GELU_ERF:
      unary_op(p, dst, [](float x) { return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f)); });
      break;
    default: GGML_ASSERT(false);
  }
}

void compute_get_rows(const ComputeParams& p, Tensor* dst) {
  const Tensor* a = dst->src[0];
  const Tensor* ids = dst->src[1];
  int64_t r0, r1;
  split_range(dst->ne[1], p.ith, p.nth, &r0, &r1);
  for (int64_t r = r0; r < r1; r++) {
    int32_t id;
    std::memcpy(&id, static_cast<const char*>(ids->data) + size_t(r) * ids->nb[0], 4);
    if (id < 0 || id >= a->ne[1]) {
      p.err->raise("get_rows: id " + std::to_string(id) + " out of range [0, " + std::to_string(a->ne[1]) +
                   ") for '" + a->name + "'");
      continue;
    }
    load_row_f32(*p.k, a, id, 0, 0, reinterpret_cast<float*>(dst->row_ptr(r)));
  }
}

}  // namespace ggml
