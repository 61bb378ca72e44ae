#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "error.h"
#include "types.h"

namespace ggml {

constexpr int MAX_DIMS = 4;
constexpr int MAX_SRC = 4;  // a fused matrix product: weights, activations, up or addend, norm weight
constexpr size_t TENSOR_ALIGN = 64;

enum class Op : uint8_t {
  NONE,       // leaf: data set by the caller or the context arena
  CPY,        // src0 converted into the memory of view_src (a destination tensor)
  CONT,       // contiguous copy of src0, possibly to another type
  ADD, MUL,   // src0 (op) src1, src1 broadcast over src0
  SCALE,
  GET_ROWS,   // rows of src0 picked by I32 ids in src1, as F32
  MUL_MAT,    // dst[i, j] = dot(src0 row i, src1 row j), batched over dims 2,3
  RMS_NORM,   // optional src1: per-column weight
  NORM,
  ROPE,
  SOFT_MAX,   // softmax(src0 * scale + mask), optional src1 mask, optional causal
  SILU, GELU, GELU_ERF,
  SILU_MUL,   // silu(src0) * src1
  VIEW, RESHAPE, PERMUTE, TRANSPOSE,  // no computation: a view of src0
  // The ops backward rules build (autodiff.h); each is described at its
  // constructor in ops.h.
  SUM_TO, ACC, MUL_MAT_T, GET_ROWS_BACK, RMS_NORM_BACK, NORM_BACK, SOFT_MAX_BACK, SILU_BACK, GELU_BACK,
  CROSS_ENTROPY, CROSS_ENTROPY_BACK,
  // Optimizer ops (optim.h): in place, like CPY.
  SUM_SQ, OPT_ADAMW, OPT_ADAMW8, OPT_SGD,
  COUNT_,
};
// What every backend and pass knows of an op: one row per op (tensor.cpp).
// Its shape rule and checks are its constructor (ops.cpp); each backend adds
// its kernel and work size (the CPU's: kCpuOps in exec.cpp); the backward
// rule (reverse-mode autodiff, autodiff.h) is `backward`.
struct BackwardContext;
struct Tensor;
using BackwardFn = void (*)(BackwardContext& ctx, Tensor* node);
struct OpInfo {
  Op op;
  const char* name;
  int min_src, max_src;  // non-null sources a node of it has
  bool view;             // computes nothing: shares its root's memory
  BackwardFn backward;   // null: no rule yet
};
const OpInfo& op_info(Op op);
const char* op_name(Op op);
constexpr bool op_is_view(Op op) {
  return op == Op::VIEW || op == Op::RESHAPE || op == Op::PERMUTE || op == Op::TRANSPOSE;
}

enum TensorFlags : uint32_t {
  FLAG_INPUT = 1,   // data filled by the caller before each compute
  FLAG_OUTPUT = 2,  // result kept after compute; never reused by the planner
  FLAG_PARAM = 4,   // trainable: autodiff makes a gradient for it
  // A forward node computed again for the backward pass (checkpointing): the
  // graph orders it after its readers' other inputs, so it is made just
  // before it is needed, not kept from the start of the backward pass.
  FLAG_RECOMPUTE = 8,
  // data is in a device backend's memory (a GPU's): the host never reads it;
  // views of it are views into that memory.
  FLAG_DEVICE = 16,
};

// A tensor of up to 4 dimensions. ne[] are element counts, nb[] byte strides
// (nb[0] is the element or block size for a contiguous row). A view shares
// the memory of view_src, a non-view tensor at its root, view_offs bytes in.
struct Tensor {
  Type type = Type::F32;
  int64_t ne[MAX_DIMS] = {1, 1, 1, 1};
  size_t nb[MAX_DIMS] = {0, 0, 0, 0};
  Op op = Op::NONE;
  int32_t op_params[8] = {};
  Tensor* src[MAX_SRC] = {};
  Tensor* view_src = nullptr;
  size_t view_offs = 0;
  void* data = nullptr;
  uint32_t flags = 0;
  // 0: the bytes as GGUF lays out `type`; else an arrangement of the backend
  // that holds them (Backend::prepare_weight), which views keep.
  uint8_t layout = 0;
  // Which of its scheduler's backends computes this node (Scheduler::plan).
  uint8_t backend = 0;
  std::string name;

  int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t nrows() const { return ne[1] * ne[2] * ne[3]; }
  // Bytes spanned from the first to one past the last element.
  size_t nbytes() const;
  bool is_contiguous() const;      // rows packed one after another, no gaps
  bool rows_contiguous() const;    // each row's elements (blocks) adjacent
  int n_dims() const;              // 1..4, trailing dims of 1 do not count
  std::string shape_str() const;   // "[4096, 32, 1, 1] q4_0"

  template <class T> T* as() { return static_cast<T*>(data); }
  template <class T> const T* as() const { return static_cast<const T*>(data); }
  char* row_ptr(int64_t i1, int64_t i2 = 0, int64_t i3 = 0) const {
    return static_cast<char*>(data) + i1 * nb[1] + i2 * nb[2] + i3 * nb[3];
  }
};

// Owns tensor descriptors and, for leaves it allocates, their data (in
// 64-byte aligned chunks of an arena). Op results get memory from the planner.
class Context {
 public:
  explicit Context(size_t arena_chunk = size_t(16) << 20) : chunk_(arena_chunk) {}
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // A leaf tensor with data in the arena (zeroed).
  Tensor* new_tensor(Type type, std::initializer_list<int64_t> ne, const std::string& name = "");
  Tensor* new_tensor(Type type, const int64_t* ne, int n_dims, const std::string& name = "");
  // A leaf whose data the caller provides (an mmap'd file): data stays null.
  Tensor* new_tensor_external(Type type, std::initializer_list<int64_t> ne, const std::string& name = "");
  Tensor* new_tensor_external(Type type, const int64_t* ne, int n_dims, const std::string& name = "");
  // A descriptor for an op result (no data); used by the op constructors.
  Tensor* new_result(Type type, const int64_t* ne4);

  size_t arena_used() const { return arena_used_; }
  size_t n_tensors() const { return tensors_.size(); }

 private:
  Tensor* make(Type type, const int64_t* ne, int n_dims, const std::string& name);
  void* arena_alloc(size_t size);

  struct FreeDel { void operator()(void* p) const; };
  std::deque<Tensor> tensors_;
  std::vector<std::unique_ptr<void, FreeDel>> chunks_;
  size_t chunk_;
  size_t chunk_used_ = 0, chunk_cap_ = 0;
  size_t arena_used_ = 0;
};

// Sets strides for a contiguous tensor of the given type and shape.
void set_contiguous_strides(Tensor* t);
// Fails with a one-line message naming the tensor unless ok.
void check(bool ok, const Tensor* t, const std::string& what);
// The same, building the message only on failure (graphs are rebuilt for
// every token, so passing checks must cost nothing).
#define GGML_CHECK(ok, t, ...)                         \
  do {                                                 \
    if (!(ok)) ::ggml::check(false, (t), __VA_ARGS__); \
  } while (0)

}  // namespace ggml
