#include "device_ops.h"

#include "ggml/ops.h"

namespace ggml {

namespace {
bool float_type(Type t) { return t == Type::F32 || t == Type::F16 || t == Type::BF16; }
bool f32(const Tensor* t) { return t && t->type == Type::F32; }
}  // namespace

bool device_supports_type(Type t) {
  switch (t) {
    case Type::F32: case Type::F16: case Type::BF16: case Type::Q4_0: case Type::Q4_1:
    case Type::Q5_0: case Type::Q5_1: case Type::Q8_0: case Type::Q4_K: case Type::Q5_K: case Type::Q6_K:
      return true;
    default:
      return false;  // Q2_K, Q3_K and the rest: those weights stay on the host
  }
}

bool device_supports(const Tensor* n) {
  const Tensor* a = n->src[0];
  const Tensor* b = n->src[1];
  switch (n->op) {
    case Op::NONE: case Op::VIEW: case Op::RESHAPE: case Op::PERMUTE: case Op::TRANSPOSE:
      return true;
    case Op::CPY: case Op::CONT:
      return float_type(a->type) && float_type(n->type);
    case Op::ADD: case Op::MUL: case Op::SILU_MUL:
      return f32(a) && f32(b) && f32(n);
    case Op::SCALE: case Op::SILU: case Op::GELU: case Op::GELU_ERF:
      return f32(a) && f32(n);
    case Op::GET_ROWS:
      return device_supports_type(a->type) && a->ne[2] == 1 && a->ne[3] == 1 && a->rows_contiguous() &&
             b->type == Type::I32 && f32(n);
    case Op::MUL_MAT:
      // plain products (no CPU fusion, no bf16 training flag), activations
      // F32 with adjacent elements
      return n->op_params[0] == 0 && n->op_params[MM_BF16_PARAM] == 0 && device_supports_type(a->type) &&
             a->rows_contiguous() && f32(b) && b->nb[0] == 4 && b->nb[1] % 4 == 0 && f32(n) && n->is_contiguous();
    case Op::RMS_NORM:
      return f32(a) && f32(n) && (!b || (f32(b) && b->is_contiguous())) && n->is_contiguous();
    case Op::NORM:
      return f32(a) && f32(n) && n->is_contiguous();
    case Op::ROPE:
      return f32(a) && f32(n) && b->type == Type::I32 && n->is_contiguous();
    case Op::SOFT_MAX:
      return f32(a) && f32(n) && (!b || f32(b)) && n->is_contiguous();
    default:
      return false;  // the training ops: the CPU's
  }
}

}  // namespace ggml
