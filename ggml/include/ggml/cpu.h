#pragma once
// CPU kernel sets: one per instruction set, chosen at run time. The scalar set
// is the reference that every SIMD kernel is tested against.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "types.h"

namespace ggml {
class Graph;
class Context;
struct Tensor;
}

namespace ggml::cpu {

struct Features {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avx512bf16 = false, avx512vbmi = false, gfni = false, avxvnni = false;
  bool amx_tile = false, amx_bf16 = false;
  bool neon = false, dotprod = false;
  std::string str() const;
};
const Features& features();

using dot_fn = float (*)(int64_t n, const void* x, const void* y);
// s[j * ldc + i] = dot(row i of x, row j of y) for i < nx, j < ny. A tile may
// sum in another order than dot() but must be deterministic: mul_mat's tiles
// depend only on the shapes, so results never depend on the thread count.
using tile_fn = void (*)(int64_t n, float* s, size_t ldc, const void* x, size_t bx, int nx, const void* y,
                         size_t by, int ny);
using quant_fn = void (*)(const float* x, void* y, int64_t n);
// Register-blocked GEMM microkernel for prompt-sized products with float
// weights: c[i * nr + j] (+)= sum over k < kc of a[i * lda + k] * bp[k * nr + j]
// for i < mr, j < nr. bp holds nr activation rows interleaved by k, so each
// step loads nr/width activation vectors and broadcasts mr weights: no
// horizontal sums, and c is the tile's running total across blocks of k.
using gemm_fn = void (*)(int64_t kc, const float* a, size_t lda, const float* bp, float* c, bool accumulate);
struct Gemm {
  int mr = 0, nr = 0;
  gemm_fn kernel = nullptr;
};
// Int8 GEMM microkernel for prompt products with Q4_0, Q4_1 and Q8_0 weights
// against Q8_S activations, block by block (32 values of k):
//  a: per block, mr rows of 32 unsigned weight bytes in k order, then mr
//     floats d (the block scale), then mr floats c (the constant: the min of
//     Q4_1, -8 d for Q4_0, -128 d for Q8_0 stored with its sign bit flipped);
//  b: per block, 8 groups of 4 values of k, each nr activations x 4 int8,
//     then nr floats d and nr floats d * sum(q) of the activations;
//  c: mr x nr running totals, c[i][j] (+)= sum_b d_a d_b sum(q_a q_b) + c_a ds_b.
using gemm_q_fn = void (*)(int64_t nblocks, const uint8_t* a, const uint8_t* b, float* c, bool accumulate);
// Writes nblocks blocks of one weight row (type t) as row i of a's layout above.
using pack_q_fn = void (*)(Type t, const void* row, int64_t nblocks, uint8_t* a, int i);
struct GemmQ {
  int mr = 0, nr = 0;
  gemm_q_fn kernel = nullptr;
  pack_q_fn pack = nullptr;
};
using dequant_fn = void (*)(const void* x, float* y, int64_t n);
// BF16 GEMM microkernel (AVX512_BF16 vdpbf16ps: two products per lane, twice
// the float FMA rate) for prompt products with F16 and BF16 weights. As
// gemm_fn, but a unit of k is a pair of columns held as two bf16 in 32 bits
// (low half first): c[i * nr + j] (+)= sum over p < kp of a[i * lda + p] .
// bp[p * nr + j]. Products of bf16 values are exact in float; the sums round.
using gemm_bf16_fn = void (*)(int64_t kp, const uint32_t* a, size_t lda, const uint32_t* bp, float* c,
                              bool accumulate);
// n values of a row of type t (F32, F16 or BF16) as (n + 1) / 2 bf16 pairs,
// rounded to nearest even, the last pair zero-padded when n is odd.
using pack_bf16_fn = void (*)(Type t, const void* row, int64_t n, uint32_t* out);
// kalign: the kernel takes kp in whole multiples of kalign pairs (AMX tiles
// hold 16); the caller zero-pads both operands up to it.
struct GemmBF16 {
  int mr = 0, nr = 0;
  gemm_bf16_fn kernel = nullptr;
  pack_bf16_fn pack = nullptr;
  int kalign = 1;
};

constexpr int TILE_MAX = 4;  // largest nx and ny a tile kernel is asked for

// The CPU backend's own formats (cpu_formats.cpp), with ids past GGUF's:
// never in a file, never seen by llm/.
//  - Q8_S: the activations of the 32-element block types: int8 values with an
//    F32 scale and their exact integer sum.
//  - Q8_0R, Q4_0R, Q4_1R: Q8_0, Q4_0 and Q4_1 rearranged for the
//    matrix-vector kernels (block_q8_0r, block_q4_0r, block_q4_1r in quants.h:
//    256 values a block, the stored blocks' bytes in another order). A weight
//    held so keeps its GGUF type and carries LAYOUT_R256 (Tensor::layout).
constexpr Type Q8_S = Type(BACKEND_FORMAT_BASE + 0);
constexpr Type Q8_0R = Type(BACKEND_FORMAT_BASE + 1);
constexpr Type Q4_0R = Type(BACKEND_FORMAT_BASE + 2);
constexpr Type Q4_1R = Type(BACKEND_FORMAT_BASE + 3);
constexpr uint32_t N_FORMATS = 4;
constexpr uint8_t LAYOUT_R256 = 1;
inline bool own_format(Type t) {
  return uint32_t(t) >= BACKEND_FORMAT_BASE && uint32_t(t) < BACKEND_FORMAT_BASE + N_FORMATS;
}
// Traits of an own format; nullptr for any other id.
const TypeTraits* format_traits(Type t);
// The rearranged format of a stored type (Q8_0 -> Q8_0R, ...); t itself for the others.
Type rearranged(Type t);
// The format a tensor's bytes are in: its type, or the rearranged format.
inline Type format_of(Type t, uint8_t layout) { return layout == LAYOUT_R256 ? rearranged(t) : t; }
// What mul_mat converts activations into for a weight format: Q8_S for the
// 32-element block types, Q8_K for the K-quants, F32 for float weights.
Type activation_format(Type weight);

// Index of a type or own format in the kernel tables below: GGUF ids, then
// the formats, then one slot no kernel is ever set in (any other id).
constexpr int SLOTS = int(TYPE_ID_END + N_FORMATS) + 1;
inline int slot(Type t) {
  const uint32_t id = uint32_t(t);
  return id < TYPE_ID_END ? int(id) : own_format(t) ? int(TYPE_ID_END + (id - BACKEND_FORMAT_BASE)) : SLOTS - 1;
}

struct KernelSet {
  const char* name = "scalar";
  dot_fn dot[SLOTS] = {};           // weight format -> dot with its activation_format
  tile_fn tile[SLOTS] = {};         // weight type -> multi-row dot products
  quant_fn from_float[SLOTS] = {};  // F32 -> type (activations, copies)
  dequant_fn to_float[SLOTS] = {};  // type -> F32
  Gemm gemm;                             // float-weight prompt products (none in the scalar set)
  GemmQ gemm_q;                          // Q4_0/Q4_1/Q8_0 prompt products (AVX-512 VNNI)
  GemmBF16 gemm_bf16;                    // F16/BF16 prompt products (AVX512_BF16), before gemm
  // Q8_0 matrices are worth rearranging into Q8_0R at load time (the set's
  // Q8_0R kernels are faster; every set can run Q8_0R, through the scalar one).
  bool prefers_q8_0r = false;
  // The same for Q4_0 and Q4_1 into Q4_0R and Q4_1R.
  bool prefers_q4r = false;
  // y = x / (1 + exp(-x)); and y = exp(y - sub) in place, returning the sum.
  void (*silu)(const float* x, float* y, int64_t n) = nullptr;
  double (*exp_sum)(float* y, int64_t n, float sub) = nullptr;
  // dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols (32-bit
  // values): the GEMMs' panels and their results between the layouts.
  void (*transpose32)(const uint32_t* src, int64_t lds, int64_t rows, int64_t cols, uint32_t* dst,
                      int64_t ldd) = nullptr;
  // silu's backward: y = g s (1 + x (1 - s)), s = 1 / (1 + exp(-x)).
  void (*silu_back)(const float* x, const float* g, float* y, int64_t n) = nullptr;
  // The transposed product's update (mul_mat_t, dX = W^T dY): for q < nq,
  // y[q][k] += sum over i < rows of d[q][i0 + i] * w[i * ldw + k], k < K. The
  // order of the sums depends only on the shapes.
  void (*mmt)(const float* w, int64_t rows, int64_t K, size_t ldw, const float* const* d, int64_t i0, float* const* y,
              int nq) = nullptr;
  // The set's product instructions in register-only loops of n rounds (16
  // independent accumulators), for bench-ops' peak: each returns the
  // operations it did. Float multiply-adds (2 per lane); bf16 pair dot
  // products (4 per lane: AVX512-BF16's vdpbf16ps); u8 x s8 quad dot
  // products (8 per lane: VNNI's vpdpbusd). Null where the set lacks one.
  // Hosts differ more than their flags say: one of this project's VMs ran
  // vdpbf16ps at half the float FMA's FLOP/s, another at twice.
  double (*peak_fma)(int64_t n) = nullptr;
  double (*peak_bf16)(int64_t n) = nullptr;
  double (*peak_int8)(int64_t n) = nullptr;
};

const KernelSet& scalar();
// Kernel sets built into this binary that this CPU can run, scalar first.
std::vector<const KernelSet*> available();
// The fastest set this CPU can run; GGML_KERNELS=scalar|avx2|avx512|neon forces one.
const KernelSet& best();

// Fills unset entries of k from base (a SIMD set falls back to narrower ones).
void inherit(KernelSet& k, const KernelSet& base);
// A tile kernel built from a dot kernel, for types without a specialised one.
template <dot_fn D>
void tile_from_dot(int64_t n, float* s, size_t ldc, const void* x, size_t bx, int nx, const void* y, size_t by,
                   int ny) {
  for (int j = 0; j < ny; j++) {
    for (int i = 0; i < nx; i++) {
      s[size_t(j) * ldc + size_t(i)] =
          D(n, static_cast<const char*>(x) + size_t(i) * bx, static_cast<const char*>(y) + size_t(j) * by);
    }
  }
}

// Defined in the per-ISA files; nullptr when not built for this architecture.
const KernelSet* avx2_kernels();
const KernelSet* avx512_kernels();
const KernelSet* neon_kernels();
// The AVX-512 set with its prompt GEMMs on AMX tiles, where the CPU has AMX
// and the OS grants the process its tile state (GGML_AMX=0 leaves it out).
const KernelSet* amx_kernels();

// The fusion pass (cpu_fuse.cpp): rewrites a built graph's one-token
// neighbours into the fused nodes these kernels have (a norm into the
// products that read it, SwiGLU, residual adds, adjacent products and q/k
// ropes merged), each giving the floats of the nodes it replaces. New
// tensors go to ctx. Once per graph, before planning. mine (when given):
// only nodes it accepts are rewritten or absorbed (the CPU's part of a graph
// split with a device).
void fuse(Graph& g, Context& ctx, const std::function<bool(const Tensor*)>& mine = {});

}  // namespace ggml::cpu

namespace ggml {

// The CPU backend's engine: runs a graph's nodes on n threads (one OpenMP
// team for the whole graph, a barrier between nodes). Kernels come from the
// given set, or the CPU's best.
class ThreadPool;

// Threads are the executor's own (thread_pool.h); the team size adapts to a
// busy machine (exec.cpp, Executor::Adapt).
class Executor {
 public:
  explicit Executor(int n_threads = 1, const cpu::KernelSet* kernels = nullptr);
  ~Executor();
  void set_threads(int n);
  int threads() const { return n_threads_; }
  int last_team() const { return last_team_; }  // threads the last compute ran on
  const cpu::KernelSet& kernels() const { return *k_; }
  // Every leaf must have data and every result memory (GraphAllocator).
  // Throws ggml::Error for bad runtime input (e.g. a token id out of range).
  // abort: asked by thread 0 after each node; true ends the compute there
  // (every thread leaves at the same node) with ggml::Cancelled.
  // nodes: only these of g's nodes (a scheduler's part), else all of them.
  void compute(Graph& g, const std::function<bool()>* abort = nullptr, const std::vector<Tensor*>* nodes = nullptr);
  size_t work_size() const { return work_.size(); }
  size_t work_size(const Graph& g) const;  // what compute(g) makes the work buffer (the bytes it touches)

 private:
  struct Adapt;
  int n_threads_;
  const cpu::KernelSet* k_;
  std::vector<unsigned char> work_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Adapt> adapt_;
  int last_team_ = 1;
};

}  // namespace ggml
