#pragma once
// CPU kernel sets: one per instruction set, chosen at run time. The scalar set
// is the reference that every SIMD kernel is tested against.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "types.h"

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

constexpr int TYPE_SLOTS = 35;
constexpr int TILE_MAX = 4;  // largest nx and ny a tile kernel is asked for
inline int slot(Type t) {
  switch (t) {
    case Type::Q8_S: return 31;
    case Type::Q8_0R: return 32;
    case Type::Q4_0R: return 33;
    case Type::Q4_1R: return 34;
    default: return int(t);
  }
}

struct KernelSet {
  const char* name = "scalar";
  dot_fn dot[TYPE_SLOTS] = {};           // weight type -> dot with its vec_dot_type
  tile_fn tile[TYPE_SLOTS] = {};         // weight type -> multi-row dot products
  quant_fn from_float[TYPE_SLOTS] = {};  // F32 -> type (activations, copies)
  dequant_fn to_float[TYPE_SLOTS] = {};  // type -> F32
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

}  // namespace ggml::cpu
