#include "ggml/cpu.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif

namespace ggml::cpu {

namespace {
Features detect() {
  Features f;
#if defined(__x86_64__)
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  f.fma = c & (1u << 12);
  f.f16c = c & (1u << 29);
  uint64_t xcr0 = 0;
  if (osxsave) {
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (uint64_t(hi) << 32) | lo;
  }
  const bool os_avx = (xcr0 & 6) == 6;              // XMM and YMM state saved
  const bool os_avx512 = (xcr0 & 0xe6) == 0xe6;     // plus opmask and ZMM state
  if (!os_avx) { f.fma = f.f16c = false; return f; }
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = b & (1u << 5);
  if (os_avx512) {
    f.avx512f = b & (1u << 16);
    f.avx512dq = b & (1u << 17);
    f.avx512bw = b & (1u << 30);
    f.avx512vl = b & (1u << 31);
    f.avx512vnni = c & (1u << 11);
    f.avx512vbmi = c & (1u << 1);
    f.gfni = c & (1u << 8);
  }
  // AMX: the tile registers' state (XCR0 bits 17, 18) must be enabled too;
  // Linux still asks each process to request it (amx_kernels() does).
  if ((xcr0 & (3u << 17)) == (3u << 17)) {
    f.amx_bf16 = d & (1u << 22);
    f.amx_tile = d & (1u << 24);
  }
  __cpuid_count(7, 1, a, b, c, d);
  f.avxvnni = a & (1u << 4);
  if (os_avx512) f.avx512bf16 = a & (1u << 5);
#elif defined(__aarch64__)
  f.neon = true;
#if defined(__ARM_FEATURE_DOTPROD)
  f.dotprod = true;
#endif
#endif
  return f;
}
}  // namespace

const Features& features() {
  static const Features f = detect();
  return f;
}

std::string Features::str() const {
  std::string s;
  auto add = [&](bool on, const char* name) { if (on) { if (!s.empty()) s += ' '; s += name; } };
  add(avx2, "avx2"); add(fma, "fma"); add(f16c, "f16c"); add(avx512f, "avx512f"); add(avx512bw, "avx512bw");
  add(avx512vl, "avx512vl"); add(avx512vnni, "avx512vnni"); add(avx512vbmi, "avx512vbmi"); add(gfni, "gfni"); add(avx512bf16, "avx512bf16"); add(avxvnni, "avxvnni");
  add(amx_tile, "amx_tile"); add(amx_bf16, "amx_bf16");
  add(neon, "neon"); add(dotprod, "dotprod");
  return s.empty() ? "none" : s;
}

}  // namespace ggml::cpu
