// AVX2 + FMA + F16C kernels (x86-64-v3).
#define KSET_NAME "avx2"
#define KSET_FN avx2_kernels
#define KSET_SUPPORTED() (features().avx2 && features().fma && features().f16c)
#include "kernels_x86.inc"
