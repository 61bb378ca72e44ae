#pragma once
// What a device backend computes: the ops and types of the inference graphs
// the CUDA kernels cover. One definition for the CUDA backend and the
// emulated device, so that tests without a GPU place nodes as a GPU would.
#include "ggml/tensor.h"

namespace ggml {

bool device_supports_type(Type t);
bool device_supports(const Tensor* n);

}  // namespace ggml
