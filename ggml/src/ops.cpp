// Op constructors: shape and type rules for every op, in one place.
#include <cstring>

#include "ggml/ops.h"

namespace ggml {

namespace {
void set_param_f32(Tensor* t, int i, float v) { std::memcpy(&t->op_params[i], &v, 4); }

Tensor* result(Context& ctx, Op op, Type type, const int64_t* ne, Tensor* a, Tensor* b = nullptr,
               Tensor* c = nullptr) {
  Tensor* t = ctx.new_result(type, ne);
  t->op = op;
  t->src[0] = a;
  t->src[1] = b;
  t->src[2] = c;
  return t;
}

void need_f32(const Tensor* a, const char* op) {
  GGML_CHECK(a->type == Type::F32, a, std::string(op) + ": expects an F32 tensor");
}

// A view: result shares the root's memory at offset; strides given.
Tensor* make_view(Context& ctx, Op op, Tensor* a, const int64_t* ne, const size_t* nb, size_t offset) {
  Tensor* t = result(ctx, op, a->type, ne, a);
  for (int i = 0; i < MAX_DIMS; i++) t->nb[i] = nb[i];
  Tensor* root = a->view_src ? a->view_src : a;
  t->layout = a->layout;
  t->view_src = root;
  t->view_offs = a->view_offs + offset;
  t->name = a->name.empty() ? "" : a->name + " (" + op_name(op) + ")";
  // Bounds: the last byte the view touches must lie inside the root.
  const size_t root_bytes = root->nbytes();
  GGML_CHECK(t->view_offs + t->nbytes() <= root_bytes, a,
        std::string(op_name(op)) + ": view " + t->shape_str() + " at offset " + std::to_string(t->view_offs) +
            " reaches past the end of its " + std::to_string(root_bytes) + "-byte source");
  return t;
}
}  // namespace

Tensor* view_4d(Context& ctx, Tensor* a, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3, size_t nb1,
                size_t nb2, size_t nb3, size_t offset) {
  const int64_t ne[4] = {ne0, ne1, ne2, ne3};
  for (int i = 0; i < 4; i++) GGML_CHECK(ne[i] >= 1, a, "view: dimensions must be positive");
  GGML_CHECK(ne0 % block_size(a->type) == 0, a, "view: row length is not a multiple of the block size");
  const size_t nb[4] = {a->nb[0], nb1, nb2, nb3};
  return make_view(ctx, Op::VIEW, a, ne, nb, offset);
}
Tensor* view_1d(Context& ctx, Tensor* a, int64_t ne0, size_t offset) {
  const size_t row = row_size(a->type, ne0);
  return view_4d(ctx, a, ne0, 1, 1, 1, row, row, row, offset);
}
Tensor* view_2d(Context& ctx, Tensor* a, int64_t ne0, int64_t ne1, size_t nb1, size_t offset) {
  return view_4d(ctx, a, ne0, ne1, 1, 1, nb1, nb1 * size_t(ne1), nb1 * size_t(ne1), offset);
}
Tensor* view_3d(Context& ctx, Tensor* a, int64_t ne0, int64_t ne1, int64_t ne2, size_t nb1, size_t nb2,
                size_t offset) {
  return view_4d(ctx, a, ne0, ne1, ne2, 1, nb1, nb2, nb2 * size_t(ne2), offset);
}

Tensor* reshape(Context& ctx, Tensor* a, std::initializer_list<int64_t> shape) {
  GGML_CHECK(shape.size() >= 1 && shape.size() <= 4, a, "reshape: 1 to 4 dimensions");
  GGML_CHECK(a->is_contiguous(), a, "reshape: source must be contiguous (use cont first)");
  int64_t ne[4] = {1, 1, 1, 1};
  int64_t n = 1, i = 0;
  for (int64_t v : shape) { GGML_CHECK(v >= 1, a, "reshape: dimensions must be positive"); ne[i++] = v; n *= v; }
  GGML_CHECK(n == a->nelements(), a, "reshape: element count " + std::to_string(n) + " differs from the source's");
  GGML_CHECK(ne[0] % block_size(a->type) == 0, a, "reshape: row length is not a multiple of the block size");
  Tensor tmp;
  tmp.type = a->type;
  for (int k = 0; k < 4; k++) tmp.ne[k] = ne[k];
  set_contiguous_strides(&tmp);
  return make_view(ctx, Op::RESHAPE, a, ne, tmp.nb, 0);
}

Tensor* permute(Context& ctx, Tensor* a, int ax0, int ax1, int ax2, int ax3) {
  const int axes[4] = {ax0, ax1, ax2, ax3};
  bool seen[4] = {};
  for (int i = 0; i < 4; i++) {
    GGML_CHECK(axes[i] >= 0 && axes[i] < 4 && !seen[axes[i]], a, "permute: axes must be a permutation of 0..3");
    seen[axes[i]] = true;
  }
  GGML_CHECK(!traits(a->type).quantized || axes[0] == 0, a, "permute: cannot move the row dimension of a block type");
  int64_t ne[4];
  size_t nb[4];
  for (int i = 0; i < 4; i++) { ne[axes[i]] = a->ne[i]; nb[axes[i]] = a->nb[i]; }
  Tensor* t = make_view(ctx, Op::PERMUTE, a, ne, nb, 0);
  for (int i = 0; i < 4; i++) t->op_params[i] = axes[i];
  return t;
}

Tensor* transpose(Context& ctx, Tensor* a) {
  GGML_CHECK(!traits(a->type).quantized, a, "transpose: cannot transpose a block type");
  const int64_t ne[4] = {a->ne[1], a->ne[0], a->ne[2], a->ne[3]};
  const size_t nb[4] = {a->nb[1], a->nb[0], a->nb[2], a->nb[3]};
  return make_view(ctx, Op::TRANSPOSE, a, ne, nb, 0);
}

namespace {
void check_convertible(const Tensor* a, Type to, const char* op) {
  GGML_CHECK(traits(a->type).to_float != nullptr, a, std::string(op) + ": no conversion from " + type_name(a->type));
  GGML_CHECK(a->type == to || traits(to).from_float != nullptr, a,
        std::string(op) + ": no conversion to " + type_name(to));
  if (traits(a->type).quantized) GGML_CHECK(a->rows_contiguous(), a, std::string(op) + ": block rows must be contiguous");
}
}  // namespace

Tensor* cast(Context& ctx, Tensor* a, Type type) {
  check_convertible(a, type, "cast");
  GGML_CHECK(a->ne[0] % block_size(type) == 0, a,
        std::string("cast: row length is not a multiple of ") + type_name(type) + "'s block size");
  return result(ctx, Op::CONT, type, a->ne, a);
}
Tensor* cont(Context& ctx, Tensor* a) { return cast(ctx, a, a->type); }

Tensor* cpy(Context& ctx, Tensor* a, Tensor* b) {
  check_convertible(a, b->type, "cpy");
  GGML_CHECK(a->nelements() == b->nelements(), a,
        "cpy: element count differs from the destination " + b->shape_str());
  const bool same_rows = a->ne[0] == b->ne[0] && a->nrows() == b->nrows();
  GGML_CHECK(same_rows || (a->is_contiguous() && b->is_contiguous()), a,
        "cpy: shapes differ and a tensor is not contiguous: " + b->shape_str());
  if (traits(b->type).quantized) GGML_CHECK(b->rows_contiguous(), b, "cpy: destination block rows must be contiguous");
  GGML_CHECK(b->layout == 0, b, "cpy: the destination is held in a backend's own layout");
  Tensor* t = result(ctx, Op::CPY, b->type, b->ne, a, b);
  for (int i = 0; i < MAX_DIMS; i++) t->nb[i] = b->nb[i];
  t->view_src = b->view_src ? b->view_src : b;
  t->view_offs = b->view_offs;
  t->name = b->name.empty() ? "" : b->name + " (cpy)";
  return t;
}

namespace {
Tensor* binary(Context& ctx, Op op, Tensor* a, Tensor* b) {
  need_f32(a, op_name(op));
  need_f32(b, op_name(op));
  for (int i = 0; i < MAX_DIMS; i++) {
    GGML_CHECK(b->ne[i] > 0 && a->ne[i] % b->ne[i] == 0, a,
          std::string(op_name(op)) + ": cannot broadcast " + b->shape_str() + " over it");
  }
  return result(ctx, op, Type::F32, a->ne, a, b);
}
Tensor* unary(Context& ctx, Op op, Tensor* a) {
  need_f32(a, op_name(op));
  return result(ctx, op, Type::F32, a->ne, a);
}
}  // namespace

Tensor* add(Context& ctx, Tensor* a, Tensor* b) { return binary(ctx, Op::ADD, a, b); }
Tensor* mul(Context& ctx, Tensor* a, Tensor* b) { return binary(ctx, Op::MUL, a, b); }
Tensor* scale(Context& ctx, Tensor* a, float s) {
  Tensor* t = unary(ctx, Op::SCALE, a);
  set_param_f32(t, 0, s);
  return t;
}
Tensor* silu(Context& ctx, Tensor* a) { return unary(ctx, Op::SILU, a); }
Tensor* silu_mul(Context& ctx, Tensor* a, Tensor* b) {
  need_f32(a, "silu_mul");
  need_f32(b, "silu_mul");
  for (int i = 0; i < MAX_DIMS; i++)
    GGML_CHECK(a->ne[i] == b->ne[i], b, "silu_mul: shape differs from " + a->shape_str());
  return result(ctx, Op::SILU_MUL, Type::F32, a->ne, a, b);
}
Tensor* gelu(Context& ctx, Tensor* a) { return unary(ctx, Op::GELU, a); }
Tensor* gelu_erf(Context& ctx, Tensor* a) { return unary(ctx, Op::GELU_ERF, a); }

Tensor* get_rows(Context& ctx, Tensor* a, Tensor* ids) {
  GGML_CHECK(traits(a->type).to_float != nullptr, a, std::string("get_rows: no conversion from ") + type_name(a->type));
  GGML_CHECK(a->rows_contiguous(), a, "get_rows: rows must be contiguous");
  GGML_CHECK(a->ne[2] == 1 && a->ne[3] == 1, a, "get_rows: expects a 2-D table");
  GGML_CHECK(ids->type == Type::I32 && ids->ne[1] == 1 && ids->ne[2] == 1 && ids->ne[3] == 1, ids,
        "get_rows: ids must be a 1-D I32 tensor");
  const int64_t ne[4] = {a->ne[0], ids->ne[0], 1, 1};
  return result(ctx, Op::GET_ROWS, Type::F32, ne, a, ids);
}

Tensor* mul_mat(Context& ctx, Tensor* a, Tensor* b) {
  const TypeTraits& ta = traits(a->type);
  GGML_CHECK(ta.to_float != nullptr && type_known(uint32_t(a->type)) && a->type != Type::Q8_K && a->type != Type::Q8_1,
        a, std::string("mul_mat: unsupported weight type ") + type_name(a->type));
  GGML_CHECK(a->rows_contiguous(), a, "mul_mat: weight rows must be contiguous (use cont)");
  GGML_CHECK(b->type == Type::F32, b, "mul_mat: activations must be F32");
  GGML_CHECK(a->ne[0] == b->ne[0], a, "mul_mat: inner dimensions differ from " + b->shape_str());
  GGML_CHECK(b->ne[2] % a->ne[2] == 0 && b->ne[3] % a->ne[3] == 0, a,
        "mul_mat: cannot broadcast over " + b->shape_str());
  const int64_t ne[4] = {a->ne[1], b->ne[1], b->ne[2], b->ne[3]};
  return result(ctx, Op::MUL_MAT, Type::F32, ne, a, b);
}

Tensor* mul_mat_fused(Context& ctx, Tensor* a, Tensor* b, const MatMulFusion& f) {
  Tensor* t = mul_mat(ctx, a, b);
  GGML_CHECK(a->ne[2] == 1 && a->ne[3] == 1 && b->ne[2] == 1 && b->ne[3] == 1, a,
             "mul_mat_fused: weights and activations must be 2-D");
  GGML_CHECK(!(f.up && f.add), a, "mul_mat_fused: a gated product and an addend cannot be fused together");
  int32_t flags = 0;
  if (f.norm) {
    GGML_CHECK(f.eps >= 0, b, "mul_mat_fused: eps must be non-negative");
    GGML_CHECK(b->nb[0] == sizeof(float), b, "mul_mat_fused: normalized activations must have contiguous rows");
    if (f.norm_w) {
      need_f32(f.norm_w, "mul_mat_fused norm weight");
      GGML_CHECK(f.norm_w->ne[0] == b->ne[0] && f.norm_w->nrows() == 1 && f.norm_w->nb[0] == sizeof(float), f.norm_w,
                 "mul_mat_fused: the norm weight must be one contiguous row of " + std::to_string(b->ne[0]));
    }
    flags |= MM_NORM;
    set_param_f32(t, 1, f.eps);
    t->src[3] = f.norm_w;
  } else {
    GGML_CHECK(f.norm_w == nullptr, f.norm_w, "mul_mat_fused: a norm weight without norm");
  }
  if (f.up) {
    GGML_CHECK(f.up->type == a->type && f.up->layout == a->layout && f.up->ne[0] == a->ne[0] && f.up->ne[1] == a->ne[1] && f.up->ne[2] == 1 &&
                   f.up->ne[3] == 1 && f.up->rows_contiguous(),
               f.up, "mul_mat_fused: the up weights must match the gate's type and shape " + a->shape_str());
    flags |= MM_GLU;
    t->src[2] = f.up;
  }
  if (f.add) {
    need_f32(f.add, "mul_mat_fused addend");
    for (int i = 0; i < MAX_DIMS; i++)
      GGML_CHECK(f.add->ne[i] == t->ne[i], f.add, "mul_mat_fused: the addend's shape differs from " + t->shape_str());
    GGML_CHECK(f.add->nb[0] == sizeof(float), f.add, "mul_mat_fused: the addend's rows must be contiguous");
    flags |= MM_ADD;
    t->src[2] = f.add;
  }
  t->op_params[0] = flags;
  return t;
}

Tensor* rms_norm(Context& ctx, Tensor* a, float eps, Tensor* w) {
  GGML_CHECK(eps >= 0, a, "rms_norm: eps must be non-negative");
  Tensor* t = unary(ctx, Op::RMS_NORM, a);
  if (w) {
    need_f32(w, "rms_norm weight");
    GGML_CHECK(w->ne[0] == a->ne[0] && w->nrows() == 1 && w->nb[0] == sizeof(float), w,
               "rms_norm: the weight must be one contiguous row of " + std::to_string(a->ne[0]));
    t->src[1] = w;
  }
  set_param_f32(t, 0, eps);
  return t;
}
Tensor* norm(Context& ctx, Tensor* a, float eps) {
  GGML_CHECK(eps >= 0, a, "norm: eps must be non-negative");
  Tensor* t = unary(ctx, Op::NORM, a);
  set_param_f32(t, 0, eps);
  return t;
}
Tensor* layer_norm(Context& ctx, Tensor* a, Tensor* w, Tensor* b, float eps) {
  Tensor* t = mul(ctx, norm(ctx, a, eps), w);
  return b ? add(ctx, t, b) : t;
}

Tensor* rope(Context& ctx, Tensor* a, Tensor* pos, int n_dims, RopeMode mode, float freq_base, float freq_scale) {
  need_f32(a, "rope");
  GGML_CHECK(pos->type == Type::I32 && pos->ne[0] == a->ne[2] && pos->nelements() == a->ne[2], pos,
        "rope: positions must be I32 with one entry per token (dim 2 of the input)");
  GGML_CHECK(n_dims > 0 && n_dims % 2 == 0 && n_dims <= a->ne[0], a,
        "rope: n_dims " + std::to_string(n_dims) + " must be even and at most the head size");
  GGML_CHECK(mode == RopeMode::Interleaved || mode == RopeMode::Neox, a, "rope: unknown mode");
  GGML_CHECK(freq_base > 0 && freq_scale > 0, a, "rope: frequency base and scale must be positive");
  Tensor* t = result(ctx, Op::ROPE, Type::F32, a->ne, a, pos);
  t->op_params[0] = n_dims;
  t->op_params[1] = int32_t(mode);
  set_param_f32(t, 2, freq_base);
  set_param_f32(t, 3, freq_scale);
  return t;
}

Tensor* soft_max(Context& ctx, Tensor* a, float scale, Tensor* mask, int32_t causal_n_past) {
  need_f32(a, "soft_max");
  if (mask) {
    need_f32(mask, "soft_max mask");
    GGML_CHECK(mask->ne[0] == a->ne[0] && mask->ne[1] >= a->ne[1] && mask->ne[2] == 1 && mask->ne[3] == 1, mask,
          "soft_max: mask must be [ne0, >= ne1] of " + a->shape_str());
  }
  GGML_CHECK(causal_n_past >= -1, a, "soft_max: causal_n_past must be -1 or a position");
  Tensor* t = result(ctx, Op::SOFT_MAX, Type::F32, a->ne, a, mask);
  set_param_f32(t, 0, scale);
  t->op_params[1] = causal_n_past;
  return t;
}

}  // namespace ggml
