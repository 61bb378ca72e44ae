// AMX kernels (Sapphire Rapids, Granite Rapids and later): the AVX-512 set
// with its prompt products moved onto the tile unit. One TDPBF16PS multiplies
// a 16 x 32 bf16 tile by a 32 x 16 one into 16 x 16 float sums: 8192 products
// in one instruction, where vdpbf16ps does 32. The vector kernels stay for
// everything else (generation's matrix-vector products are bound by memory).
// Quantized prompts stay on the AVX-512 int8 microkernel: an AMX one (TDPBUSD
// per block of 32, the sums stored and scaled per block with AVX-512, since
// every block has its own scales) measured no faster, 272 vs 266 GMAC/s per
// core on cached operands (a throwaway program calling both kernels; not a
// repo command): the per-block scaling, not the products, bounds it.
#include <immintrin.h>

#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "ggml/cpu.h"

namespace ggml::cpu {

namespace {

// Linux keeps the 8 KiB tile state out of a process until it asks for it
// (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); the grant covers
// every thread of the process. Without it the first tile instruction faults.
bool os_grants_amx() {
#if defined(__linux__) && defined(SYS_arch_prctl)
  constexpr long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
  return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
  return false;
#endif
}

// Palette 1: eight tiles of up to 16 rows of 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Each thread loads the configuration once, at its first call: tiles 0-3
// the 32 x 32 float totals (four 16 x 16 quarters), 4-5 weight rows 0-15 and
// 16-31 (16 pairs each), 6-7 activations 0-15 and 16-31 (16 rows of pairs):
// every tile 16 rows of 64 bytes. (Nothing else in the process configures
// tiles, so it stays loaded. Loading it at every call, which would survive an
// embedding application configuring tiles on the same threads, cost a third
// of the speed: bench-ops F16 mm512 ~930 -> ~630 GFLOP/s, alternating.)
thread_local bool configured = false;

void configure() {
  if (configured) return;
  TileConfig cfg;
  for (int t = 0; t < 8; t++) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  configured = true;
}

// ---- BF16 GEMM (the gemm_bf16_fn contract of cpu.h, mr = nr = 32) -----------
// kp is a multiple of 16 pairs. Weights: rows of pairs at stride lda, so a
// tile of 16 rows x 16 pairs loads at stride 4 * lda. Activations: bp[p * 32
// + j], i.e. 16 pairs of k as tile rows, 16 activations (64 bytes) per row;
// the two halves of the panel are 64 bytes apart in 128-byte rows. c: 32 rows
// of 32 floats, the quarters at (16 r) * 32 + 16 s.
constexpr int AMX_MR = 32, AMX_NR = 32, AMX_KALIGN = 16;

void gemm_bf16_amx(int64_t kp, const uint32_t* a, size_t lda, const uint32_t* bp, float* c, bool accumulate) {
  configure();
  constexpr size_t cs = AMX_NR * sizeof(float);
  if (accumulate) {
    _tile_loadd(0, c, cs);
    _tile_loadd(1, c + 16, cs);
    _tile_loadd(2, c + 16 * AMX_NR, cs);
    _tile_loadd(3, c + 16 * AMX_NR + 16, cs);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  const size_t as = lda * sizeof(uint32_t);
  for (int64_t p = 0; p < kp; p += AMX_KALIGN) {
    _tile_loadd(4, a + p, as);
    _tile_loadd(5, a + 16 * lda + size_t(p), as);
    _tile_loadd(6, bp + p * AMX_NR, cs);
    _tile_loadd(7, bp + p * AMX_NR + 16, cs);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, cs);
  _tile_stored(1, c + 16, cs);
  _tile_stored(2, c + 16 * AMX_NR, cs);
  _tile_stored(3, c + 16 * AMX_NR + 16, cs);
}

bool amx_wanted() {
  const char* e = std::getenv("GGML_AMX");
  return !(e && std::strcmp(e, "0") == 0);
}

KernelSet make_set(const KernelSet& base) {
  KernelSet k = base;
  k.name = "amx";
  k.gemm_bf16 = {AMX_MR, AMX_NR, gemm_bf16_amx, base.gemm_bf16.pack, AMX_KALIGN};
  return k;
}

}  // namespace

const KernelSet* amx_kernels() {
  static const KernelSet* k = []() -> const KernelSet* {
    const Features& f = features();
    const KernelSet* base = avx512_kernels();
    // GGML_BF16_GEMM=0 (no bf16 GEMM in the AVX-512 set, F16 kept exact)
    // leaves nothing for this set to add.
    if (!base || !base->gemm_bf16.kernel || !f.amx_tile || !f.amx_bf16 || !amx_wanted() || !os_grants_amx())
      return nullptr;
    static const KernelSet set = make_set(*base);
    return &set;
  }();
  return k;
}

}  // namespace ggml::cpu
