#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "ggml/tensor.h"
#include "backward.h"

namespace ggml {

namespace {
constexpr OpInfo kOps[] = {
    {Op::NONE, "none", 0, 0, false, nullptr},
    {Op::CPY, "cpy", 2, 2, false, backward_cpy},
    {Op::CONT, "cont", 1, 1, false, backward_cpy},
    {Op::ADD, "add", 2, 2, false, backward_add},
    {Op::MUL, "mul", 2, 2, false, backward_mul},
    {Op::SCALE, "scale", 1, 1, false, backward_scale},
    {Op::GET_ROWS, "get_rows", 2, 2, false, backward_get_rows},
    {Op::MUL_MAT, "mul_mat", 2, 4, false, backward_mul_mat},  // fused: + up or addend, + norm weight
    {Op::RMS_NORM, "rms_norm", 1, 2, false, backward_rms_norm},
    {Op::NORM, "norm", 1, 1, false, backward_norm},
    {Op::ROPE, "rope", 2, 2, false, backward_rope},
    {Op::SOFT_MAX, "soft_max", 1, 2, false, backward_soft_max},
    {Op::SILU, "silu", 1, 1, false, backward_silu},
    {Op::GELU, "gelu", 1, 1, false, backward_gelu},
    {Op::GELU_ERF, "gelu_erf", 1, 1, false, backward_gelu},
    {Op::SILU_MUL, "silu_mul", 2, 2, false, backward_silu_mul},
    {Op::VIEW, "view", 1, 1, true, backward_view},
    {Op::RESHAPE, "reshape", 1, 1, true, backward_reshape},
    {Op::PERMUTE, "permute", 1, 1, true, backward_permute},
    {Op::TRANSPOSE, "transpose", 1, 1, true, backward_permute},
    {Op::SUM_TO, "sum_to", 1, 1, false, nullptr},
    {Op::ACC, "acc", 1, 2, false, nullptr},
    {Op::MUL_MAT_T, "mul_mat_t", 2, 2, false, nullptr},
    {Op::GET_ROWS_BACK, "get_rows_back", 2, 2, false, nullptr},
    {Op::RMS_NORM_BACK, "rms_norm_back", 2, 2, false, nullptr},
    {Op::NORM_BACK, "norm_back", 2, 2, false, nullptr},
    {Op::SOFT_MAX_BACK, "soft_max_back", 2, 2, false, nullptr},
    {Op::SILU_BACK, "silu_back", 2, 2, false, nullptr},
    {Op::GELU_BACK, "gelu_back", 2, 2, false, nullptr},
    {Op::CROSS_ENTROPY, "cross_entropy", 2, 3, false, backward_cross_entropy},
    {Op::CROSS_ENTROPY_BACK, "cross_entropy_back", 3, 4, false, nullptr},
    {Op::SUM_SQ, "sum_sq", 1, 1, false, nullptr},
    {Op::OPT_ADAMW, "opt_adamw", 4, 4, false, nullptr},
    {Op::OPT_ADAMW8, "opt_adamw8", 4, 4, false, nullptr},
    {Op::OPT_SGD, "opt_sgd", 3, 3, false, nullptr},
};
static_assert(sizeof(kOps) / sizeof(kOps[0]) == size_t(Op::COUNT_), "a row for every op");
constexpr bool rows_in_order() {
  for (size_t i = 0; i < size_t(Op::COUNT_); i++)
    if (size_t(kOps[i].op) != i || kOps[i].view != op_is_view(Op(i))) return false;
  return true;
}
static_assert(rows_in_order(), "kOps in Op's order, views marked as op_is_view says");
}  // namespace

const OpInfo& op_info(Op op) {
  GGML_CHECK(size_t(op) < size_t(Op::COUNT_), nullptr, "unknown op " + std::to_string(int(op)));
  return kOps[size_t(op)];
}

const char* op_name(Op op) { return size_t(op) < size_t(Op::COUNT_) ? kOps[size_t(op)].name : "?"; }

size_t Tensor::nbytes() const {
  for (int i = 0; i < MAX_DIMS; i++) if (ne[i] <= 0) return 0;
  const int64_t bs = block_size(type);
  size_t n = type_size(type) + size_t(ne[0] / bs - 1) * nb[0];
  for (int i = 1; i < MAX_DIMS; i++) n += size_t(ne[i] - 1) * nb[i];
  return n;
}

bool Tensor::rows_contiguous() const { return nb[0] == type_size(type); }

bool Tensor::is_contiguous() const {
  size_t expect = type_size(type);
  if (nb[0] != expect) return false;
  expect = size_t(ne[0] / block_size(type)) * expect;
  for (int i = 1; i < MAX_DIMS; i++) {
    if (ne[i] != 1 && nb[i] != expect) return false;
    expect *= size_t(ne[i]);
  }
  return true;
}

int Tensor::n_dims() const {
  for (int i = MAX_DIMS - 1; i >= 1; i--) if (ne[i] != 1) return i + 1;
  return 1;
}

std::string Tensor::shape_str() const {
  std::ostringstream s;
  s << "[" << ne[0] << ", " << ne[1] << ", " << ne[2] << ", " << ne[3] << "] " << type_name(type);
  return s.str();
}

void set_contiguous_strides(Tensor* t) {
  t->nb[0] = type_size(t->type);
  t->nb[1] = t->nb[0] * size_t(t->ne[0] / block_size(t->type));
  for (int i = 2; i < MAX_DIMS; i++) t->nb[i] = t->nb[i - 1] * size_t(t->ne[i - 1]);
}

void check(bool ok, const Tensor* t, const std::string& what) {
  if (ok) return;
  std::string who = "tensor";
  if (t && !t->name.empty()) who.append(" '").append(t->name).append("'");
  if (t) who.append(" ").append(t->shape_str());
  fail(who.append(": ").append(what));
}

void Context::FreeDel::operator()(void* p) const { std::free(p); }

void* Context::arena_alloc(size_t size) {
  size = (size + TENSOR_ALIGN - 1) / TENSOR_ALIGN * TENSOR_ALIGN;
  if (size == 0) size = TENSOR_ALIGN;
  if (chunk_used_ + size > chunk_cap_) {
    const size_t cap = std::max(chunk_, size);
    // Large chunks on 2 MiB boundaries, with transparent huge pages asked
    // for: streaming weights then costs one TLB entry per 2 MiB, not per 4 KiB.
    constexpr size_t huge = size_t(2) << 20;
    void* p = nullptr;
    if (cap >= huge) {
      p = std::aligned_alloc(huge, (cap + huge - 1) / huge * huge);
      if (p) madvise(p, (cap + huge - 1) / huge * huge, MADV_HUGEPAGE);
    } else {
      p = std::aligned_alloc(TENSOR_ALIGN, cap);
    }
    if (!p) fail("out of memory allocating a " + std::to_string(cap) + "-byte tensor arena chunk");
    chunks_.emplace_back(p);
    chunk_used_ = 0;
    chunk_cap_ = cap;
  }
  char* base = static_cast<char*>(chunks_.back().get());
  void* p = base + chunk_used_;
  chunk_used_ += size;
  arena_used_ += size;
  std::memset(p, 0, size);
  return p;
}

Tensor* Context::make(Type type, const int64_t* ne, int n_dims, const std::string& name) {
  const TypeTraits& tr = traits(type);  // throws for an unknown type
  if (n_dims < 1 || n_dims > MAX_DIMS) fail("tensor '" + name + "': " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
  Tensor t;
  t.type = type;
  t.name = name;
  // Guard against element counts whose byte size would overflow.
  const int64_t limit = int64_t(1) << 50;
  int64_t total = 1;
  for (int i = 0; i < n_dims; i++) {
    if (ne[i] < 0) fail("tensor '" + name + "': negative dimension " + std::to_string(ne[i]));
    t.ne[i] = ne[i];
    if (ne[i] != 0 && total > limit / ne[i]) fail("tensor '" + name + "': element count overflows");
    total *= ne[i];
  }
  if (t.ne[0] % tr.block_size != 0) {
    fail("tensor '" + name + "': row length " + std::to_string(t.ne[0]) + " is not a multiple of " +
         tr.name + "'s block size " + std::to_string(tr.block_size));
  }
  set_contiguous_strides(&t);
  tensors_.push_back(std::move(t));
  return &tensors_.back();
}

Tensor* Context::new_tensor(Type type, const int64_t* ne, int n_dims, const std::string& name) {
  Tensor* t = make(type, ne, n_dims, name);
  t->data = arena_alloc(t->nbytes());
  return t;
}

Tensor* Context::new_tensor(Type type, std::initializer_list<int64_t> ne, const std::string& name) {
  return new_tensor(type, ne.begin(), int(ne.size()), name);
}

Tensor* Context::new_tensor_external(Type type, const int64_t* ne, int n_dims, const std::string& name) {
  return make(type, ne, n_dims, name);
}

Tensor* Context::new_tensor_external(Type type, std::initializer_list<int64_t> ne, const std::string& name) {
  return make(type, ne.begin(), int(ne.size()), name);
}

Tensor* Context::new_result(Type type, const int64_t* ne4) { return make(type, ne4, MAX_DIMS, ""); }

}  // namespace ggml
