#pragma once
// bench-ops --train: forward + backward speed and planned memory of one
// TinyLlama-shaped layer with LoRA on every projection.
#include <string>
#include <vector>

#include "ggml/ggml.h"

struct TrainBenchOptions {
  std::vector<ggml::Type> types;  // the frozen base's
  int threads = 2;
  int64_t tokens = 256;
  int layers = 1;
  bool bf16 = false;  // mixed precision: BackwardOptions::bf16_products and bf16_activations
  bool int8 = true;   // BackwardOptions::int8_products (finetune-lora's default; --float-backward)
  int rank = 8;
  int reps = 3;
  bool json = false;
};
void bench_train(const TrainBenchOptions& o);
