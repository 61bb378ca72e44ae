#pragma once
// LoRA fine-tuning: training data sets, the training loop and evaluation,
// on the training graph (train.h), autodiff and the optimizer (ggml).
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ggml/ggml.h"
#include "llm/lora.h"
#include "llm/memory.h"
#include "llm/model.h"

namespace llm {

// One sequence: its tokens and, at each position, the id that should come
// next (-1 where nothing counts: past the end, a masked turn).
struct TrainSequence {
  std::vector<int32_t> tokens, targets;
};

struct TrainData {
  std::vector<TrainSequence> seqs;
  int64_t file_batch = 0;  // .npy: sequences per optimizer step, as the file groups them
  int64_t max_len = 0;     // the longest sequence
  int64_t counted() const;
};

// .txt: the text tokenized and cut into windows of ctx tokens (the
// tokenizer's BOS first where it adds one), each position's target the next
// token of its window. .jsonl: one object a line, {"text": ...} cut the same
// way, or {"messages": [{"role", "content"}...]} rendered with the model's
// chat template, targets on the assistant turns only. .npy: int32
// [n_batches, batch, seq], used in order, labels the inputs shifted by one
// (as transformers does). Throws a one-line error naming the file and what is
// wrong (an empty set, a line that is not JSON, a chat longer than ctx, ids
// outside the vocabulary, ...).
TrainData load_train_data(const std::string& path, const Model& model, int64_t ctx);

struct FinetuneOptions {
  int64_t ctx = 512;         // tokens per sequence (the graph's length)
  int64_t batch = 8;         // sequences per optimizer step (.npy: the file's)
  int64_t micro_batch = 1;   // sequences per forward/backward (computed one after another)
  int64_t epochs = 1, steps = 0;  // steps 0: as many as epochs take
  bool shuffle = true;
  uint64_t seed = 1;
  ggml::OptimizerConfig optim;
  bool checkpointing = false;
  bool bf16 = false;         // mixed precision (BackwardOptions::bf16_products and bf16_activations)
  bool int8_backward = true; // a Q8_0/Q4_0/Q4_1 base's backward products in int8 (BackwardOptions::int8_products)
  float lora_dropout = 0;    // on each adapter's input, a new mask every compute (seeded by seed, step, sequence)
  int threads = 0;           // 0: one per physical core
};

struct StepLog {
  int64_t step = 0;
  double loss = 0;  // the batch's loss before its update
  double lr = 0, grad_norm = 0;
  int64_t tokens = 0;  // counted targets in the batch
  double seconds = 0;
};

// What a fine-tuning run's memory is made of, in bytes (Finetuner::memory).
struct MemoryPlan {
  size_t weights = 0;      // the base model's tensors (resident once touched)
  size_t lora = 0;         // the adapter's parameters
  size_t gradients = 0;    // each compute's and the step's accumulated gradients
  size_t optimizer = 0;    // AdamW's moments (SGD's momentum), the update graphs
  size_t activations = 0;  // forward results kept for the backward pass
  size_t recompute = 0;    // recomputed (checkpointing) and late-made results alive at once
  size_t scratch = 0;      // the rest of the graph's buffer, the kernels' work memory
  size_t inputs = 0;       // tokens, targets, dropout masks
  size_t eval = 0;         // the validation graph (when one was prepared)
  size_t runtime = 0;      // the rest of the process: code, libraries, tokenizer, data, threads
  size_t total = 0;        // their sum: resident while training
  size_t load_peak = 0;    // the most resident while loading (measured)
  size_t peak_bytes = 0;   // the larger of the two: the predicted peak resident memory
};

class Finetuner {
 public:
  // lora: the adapter trained in place (its tensors are updated each step).
  Finetuner(const Model& model, Lora& lora, const TrainData& train, const FinetuneOptions& o);
  ~Finetuner();
  int64_t total_steps() const { return total_; }
  int64_t batch() const;  // sequences per optimizer step
  int64_t steps_done() const;
  bool done() const { return steps_done() >= total_; }
  StepLog step();                          // the next batch: forward, backward, update
  double evaluate(const TrainData& data);  // mean loss over data's counted targets (no update)
  size_t planned_bytes() const;            // the training graph's buffer
  // Builds (once) the evaluation graph for sequences of up to max_len
  // tokens, as evaluate() does: so memory() counts it before a run.
  void prepare_eval(int64_t max_len);
  // The plan of this run's memory; before: measured just before this
  // Finetuner was made (with the model and adapter loaded, the data read).
  // Call it before the first step: it measures what construction made
  // resident.
  MemoryPlan memory(const ProcessBaseline& before) const;
  // A checkpoint: the adapter, the optimizer's state and step, the position
  // in the data (the shuffle follows the seed and the epoch), as one GGUF
  // written atomically. resume() refuses one from other settings or data;
  // the run then goes on exactly as if it had not stopped.
  void save_checkpoint(const std::string& path) const;
  void resume(const std::string& path);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t total_ = 0;
};

}  // namespace llm
