#pragma once
// Op constructors: each checks its inputs, records shapes and sources, and
// computes nothing. Bad shapes or types throw ggml::Error with a clear message.
#include "tensor.h"

namespace ggml {

// Views share memory with a; offsets and strides are in bytes.
Tensor* view_1d(Context& ctx, Tensor* a, int64_t ne0, size_t offset);
Tensor* view_2d(Context& ctx, Tensor* a, int64_t ne0, int64_t ne1, size_t nb1, size_t offset);
Tensor* view_3d(Context& ctx, Tensor* a, int64_t ne0, int64_t ne1, int64_t ne2, size_t nb1, size_t nb2, size_t offset);
Tensor* view_4d(Context& ctx, Tensor* a, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3,
                size_t nb1, size_t nb2, size_t nb3, size_t offset);
// a must be contiguous; the element count is kept.
Tensor* reshape(Context& ctx, Tensor* a, std::initializer_list<int64_t> ne);
// Dimension i of a becomes dimension axes[i] of the result.
Tensor* permute(Context& ctx, Tensor* a, int ax0, int ax1, int ax2, int ax3);
Tensor* transpose(Context& ctx, Tensor* a);  // swaps dims 0 and 1

Tensor* cont(Context& ctx, Tensor* a);              // contiguous copy, same type
Tensor* cast(Context& ctx, Tensor* a, Type type);   // contiguous copy as type
// Writes a (converted) into b, e.g. a view of the KV cache; returns a view of b.
Tensor* cpy(Context& ctx, Tensor* a, Tensor* b);

Tensor* add(Context& ctx, Tensor* a, Tensor* b);    // b broadcast over a
Tensor* mul(Context& ctx, Tensor* a, Tensor* b);    // b broadcast over a
Tensor* scale(Context& ctx, Tensor* a, float s);

Tensor* get_rows(Context& ctx, Tensor* a, Tensor* ids);  // F32 [a.ne0, ids.ne0]
// a: weights [K, M, B2, B3] (rows contiguous), b: [K, N, C2, C3] with C2 % B2 ==
// 0 and C3 % B3 == 0. Result F32 [M, N, C2, C3]; b's batch i uses a's i / (C/B).
Tensor* mul_mat(Context& ctx, Tensor* a, Tensor* b);

// A matrix product with its neighbours in one node, for generation, where
// every node costs a barrier between threads and one-row norms run on one
// thread: the activations RMS-normalized first (each thread normalizes the
// rows it converts), the product gated by a second one (SwiGLU), or a
// residual added. The same floats as the separate nodes:
//   x = norm ? rms_norm(b, eps, norm_w) : b
//   r = up ? silu_mul(mul_mat(a, x), mul_mat(up, x)) : mul_mat(a, x)
//   result = add ? add(add, r) : r
// a (and up, of a's type and shape) 2-D; b 2-D; add F32 of the result's shape
// with contiguous rows; up and add not both.
struct MatMulFusion {
  bool norm = false;
  float eps = 0;
  Tensor* norm_w = nullptr;  // optional with norm: F32 [K]
  Tensor* up = nullptr;
  Tensor* add = nullptr;
};
Tensor* mul_mat_fused(Context& ctx, Tensor* a, Tensor* b, const MatMulFusion& f);
// The fusion flags of a MUL_MAT node (op_params[0]); 0 for a plain product.
enum : int32_t { MM_NORM = 1, MM_GLU = 2, MM_ADD = 4 };
// op_params[2] of a MUL_MAT node: 1 where an F32 weight's prompt products may
// round both operands to bf16 (mixed precision, BackwardOptions::bf16_products).
constexpr int MM_BF16_PARAM = 2;

// x / sqrt(mean(x^2) + eps) per row; with w (F32 [ne0]), times w as well, in
// one node: the same floats as mul(rms_norm(a, eps), w).
Tensor* rms_norm(Context& ctx, Tensor* a, float eps, Tensor* w = nullptr);
Tensor* norm(Context& ctx, Tensor* a, float eps);   // (x - mean) / sqrt(var + eps)
// Layer norm with weight and bias: norm(a) * w + b (three nodes).
Tensor* layer_norm(Context& ctx, Tensor* a, Tensor* w, Tensor* b, float eps);

enum class RopeMode : int32_t {
  Interleaved = 0,  // GPT-J, and LLaMA in GGUF (q/k rows permuted): (x[2i], x[2i+1])
  Neox = 2,         // GPT-NeoX (and HF LLaMA before conversion): (x[i], x[i + n_dims/2])
};
// a: [head_dim, n_head, n_tokens, 1] F32; pos: I32 [n_tokens]. Rotates the first
// n_dims of each head by pos * freq_scale * freq_base^(-2i/n_dims).
Tensor* rope(Context& ctx, Tensor* a, Tensor* pos, int n_dims, RopeMode mode,
             float freq_base = 10000.0f, float freq_scale = 1.0f);

// softmax over dim 0 of a * scale + mask. mask (optional): F32 [ne0, >= ne1],
// broadcast over dims 2 and 3. causal_n_past >= 0 masks column j of row i1 when
// j > causal_n_past + i1 (the row's absolute position); -1 for no causal mask.
Tensor* soft_max(Context& ctx, Tensor* a, float scale, Tensor* mask = nullptr, int32_t causal_n_past = -1);

Tensor* silu(Context& ctx, Tensor* a);
// silu(a) * b in one node (SwiGLU's gate); a and b of one shape. The same
// floats as mul(silu(a), b).
Tensor* silu_mul(Context& ctx, Tensor* a, Tensor* b);
Tensor* gelu(Context& ctx, Tensor* a);      // tanh approximation
Tensor* gelu_erf(Context& ctx, Tensor* a);  // exact, with erf

// Reshape to a full 4-D shape (a contiguous; the element count kept).
Tensor* reshape_4d(Context& ctx, Tensor* a, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3);

// Cross-entropy of logits [V, T] (F32) against targets (I32 [T]; a negative
// id marks a position that does not count): the sum over counted tokens of
// logsumexp(row) - row[target], divided by the count in norm (F32 [1], the
// counted tokens of every micro-batch of a step) or, without norm, by this
// batch's count. Result F32 [1].
Tensor* cross_entropy(Context& ctx, Tensor* logits, Tensor* targets, Tensor* norm = nullptr);

// The ops backward rules build (autodiff.h), each F32.
// a summed down to shape ne (each ne[i] divides a's): the reverse of the
// broadcast in add and mul (index i of a goes to i % ne).
Tensor* sum_to(Context& ctx, Tensor* a, const int64_t* ne);
// A contiguous F32 tensor of shape ne: base (or zeros without it) with b
// added into the view of it at byte offset offs with strides nb1..nb3 (the
// reverse of a view; b's shape gives the view's).
Tensor* acc(Context& ctx, Tensor* b, Tensor* base, const int64_t* ne, size_t nb1, size_t nb2, size_t nb3, size_t offs);
// The product with a transposed: dst[k, j] = sum_i a[k, i] * d[i, j] for
// a [K, M, B2, B3] of any type mul_mat takes, d F32 [M, N, C2, C3] (batches
// broadcast as in mul_mat). Result [K, N, C2, C3]: dX = W^T dY through a
// frozen weight, dequantized a block of rows at a time, never whole.
// bf16: in mixed precision where the backend has a BF16 product (the CPU's
// AVX512-BF16 or AMX microkernel): both operands rounded to bf16, float sums.
// int8: through a Q8_0, Q4_0 or Q4_1 weight, on the backend's int8 product
// where it has one (W^T requantized to Q8_0 along W's columns, d to 8 bits
// per block of 32); before bf16 where both apply.
Tensor* mul_mat_t(Context& ctx, Tensor* a, Tensor* d, bool bf16 = false, bool int8 = false);
// Rows of g [ne0, n] added into a zero [ne0, n_rows] at ids (I32 [n]): the
// reverse of get_rows.
Tensor* get_rows_back(Context& ctx, Tensor* g, Tensor* ids, int64_t n_rows);
// dL/dx of y = rms_norm(x) (no weight) and y = norm(x), given g = dL/dy.
Tensor* rms_norm_back(Context& ctx, Tensor* x, Tensor* g, float eps);
Tensor* norm_back(Context& ctx, Tensor* x, Tensor* g, float eps);
// dL/da of y = soft_max(a, scale, ...) from y and g = dL/dy.
Tensor* soft_max_back(Context& ctx, Tensor* y, Tensor* g, float scale);
// g * silu'(x) and g * gelu'(x) (erf: the exact gelu's).
Tensor* silu_back(Context& ctx, Tensor* x, Tensor* g);
Tensor* gelu_back(Context& ctx, Tensor* x, Tensor* g, bool erf);
// dL/dlogits of cross_entropy, given dL/dloss (F32 [1]): (softmax - one-hot)
// * dloss / count per counted row, zero elsewhere; the softmax is
// recomputed here, never kept from the forward pass.
Tensor* cross_entropy_back(Context& ctx, Tensor* logits, Tensor* targets, Tensor* dloss, Tensor* norm = nullptr);
// The inverse rotation of rope (its transpose: the angle negated).
Tensor* rope_back(Context& ctx, Tensor* g, Tensor* pos, int n_dims, RopeMode mode, float freq_base, float freq_scale);

inline float op_param_f32(const Tensor* t, int i) {
  float f;
  static_assert(sizeof(float) == sizeof(int32_t));
  __builtin_memcpy(&f, &t->op_params[i], 4);
  return f;
}

}  // namespace ggml
