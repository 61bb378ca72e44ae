#include "ggml/cpu.h"
namespace ggml::cpu {
const KernelSet* avx2_kernels() { return nullptr; }
}
