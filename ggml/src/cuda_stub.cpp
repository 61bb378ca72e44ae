// The CUDA entry points of a build without the backend (-DGGML_CUDA=OFF).
#include "ggml/cuda.h"

namespace ggml {

bool cuda_built() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_describe(int) { return "this build has no CUDA backend (configure with -DGGML_CUDA=ON)"; }
std::shared_ptr<Backend> cuda_backend(int) {
  fail("GPU offload needs the CUDA backend: this build has none (cmake -DGGML_CUDA=ON, or make cuda)");
}

double cuda_read_bandwidth(int) { return 0; }

}  // namespace ggml
