#pragma once
// The training graph of a model: a batch's forward pass from position 0
// without a KV cache (LoRA adapters applied), the logits of every position
// and their cross-entropy against targets. build_backward (ggml/autodiff.h)
// then adds the gradients to the same graph.
#include <cstdint>
#include <vector>

#include "ggml/ggml.h"
#include "llm/model.h"

namespace llm {

class Lora;

struct TrainGraph {
  ggml::Tensor* tokens = nullptr;   // I32 [n = len * n_seq]: fill before each compute
  ggml::Tensor* targets = nullptr;  // I32 [n]: the next token of each position; -1 where it does not count
  ggml::Tensor* count = nullptr;    // F32 [1]: the counted targets of the whole step (all micro-batches)
  ggml::Tensor* logits = nullptr;   // F32 [n_vocab, n]
  ggml::Tensor* loss = nullptr;     // F32 [1]: the sum of the counted positions' losses / count
  // Each layer's input and the last layer's output: the checkpoints for
  // build_backward's gradient checkpointing (BackwardOptions).
  std::vector<ggml::Tensor*> layer_inputs;
  // With LoRA dropout: one mask per adapter (F32, the shape of its input),
  // to fill before each compute with 0 or 1 / (1 - p) (PEFT's nn.Dropout on
  // the adapter's input; the base sees the input as it is).
  std::vector<ggml::Tensor*> dropout_masks;
};

// Builds the graph into ctx and g for n_seq sequences of len tokens, one
// after another in tokens and targets, each attending to itself alone
// (positions 0..len-1 are set here; count to len * n_seq).
TrainGraph build_train_graph(const Model& model, const Lora* lora, ggml::Context& ctx, ggml::Graph& g, int64_t len,
                             bool lora_dropout = false, int64_t n_seq = 1);

}  // namespace llm
