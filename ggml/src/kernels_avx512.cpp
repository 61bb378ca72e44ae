// AVX-512 F/BW/VL/DQ kernels with VNNI integer dot products and VBMI byte
// permutes and GFNI (Ice Lake, Zen 4 and later; older AVX-512 CPUs use the
// AVX2 set).
#define KSET_NAME "avx512"
#define KSET_FN avx512_kernels
#define KSET_SUPPORTED()                                                                      \
  (features().avx2 && features().fma && features().f16c && features().avx512f &&              \
   features().avx512bw && features().avx512vl && features().avx512dq && features().avx512vnni && features().avx512vbmi && features().gfni)
#include "kernels_x86.inc"
