#include "ggml/cpu.h"
namespace ggml::cpu {
const KernelSet* avx512_kernels() { return nullptr; }
}
