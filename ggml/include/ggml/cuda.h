#pragma once
// The CUDA backend (ggml/src/cuda/, built with -DGGML_CUDA=ON): weights and
// KV caches of offloaded layers in GPU memory, kernels for every op of the
// inference graphs, CUDA graphs for generation. Without the build option
// these functions still exist and say there is no backend.
#include <memory>
#include <string>

#include "backend.h"

namespace ggml {

// Whether this build has the CUDA backend.
bool cuda_built();
// GPUs the CUDA runtime sees (0 without the backend, a driver or a GPU).
int cuda_device_count();
// One line on the GPU ("NVIDIA H200, sm_90, 139.8 GiB"), or on why there is none.
std::string cuda_describe(int device = 0);
// A CUDA backend on a GPU (its own stream, scratch and cuBLAS handle: one per
// session that computes, all reading the same device weights). Throws
// ggml::Error saying why when there is no GPU or no backend in this build.
std::shared_ptr<Backend> cuda_backend(int device = 0);
// The GPU's measured read bandwidth in GB/s (a kernel summing 1 GiB, the best
// of 5), the roofline ./bench -ngl reports against; 0 without a GPU.
double cuda_read_bandwidth(int device = 0);

}  // namespace ggml
