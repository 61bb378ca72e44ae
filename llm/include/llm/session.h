#pragma once
// An inference session over a Model: the KV cache, batched evaluation of new
// tokens at the next positions, and their logits. Each eval builds the
// architecture's graph for the batch (llm/src/arch_*.cpp), plans its memory
// into one reused scratch buffer and runs it on the session's threads.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ggml/ggml.h"
#include "llm/model.h"

namespace llm {

class Lora;

// "1 token", "3 tokens": counts in messages.
std::string tokens_str(int64_t n);

struct SessionParams {
  int64_t n_ctx = 0;     // 0: the model's trained length, capped at 4096
  int64_t n_batch = 512; // tokens per graph when evaluating a long prompt
  int n_threads = 0;     // 0: one per physical core (ggml::physical_cores)
  ggml::Type kv_type = ggml::Type::F16;  // F16 or F32
  // One token at a time: one graph serves this many positions, patched for
  // each (0: a graph built for every token, as prompts are).
  int64_t token_graph_span = 512;
  // Allow a KV cache larger than the machine's physical memory (refused by
  // default, with the size it would take).
  bool ignore_memory_limit = false;
  // LoRA adapters applied beside the weights they adapt (never merged), each
  // with a scale on its update; they must outlive the session.
  std::vector<std::pair<const Lora*, float>> loras;
};

class Session {
 public:
  Session(const Model& model, const SessionParams& p = {});
  ~Session();

  // Evaluates tokens at positions n_past() ... and appends them to the cache.
  // all_logits: keep the logits of every token of this call, else only the last.
  // Throws llm::Error when the context would overflow or an id is out of range.
  void eval(const int32_t* tokens, size_t n, bool all_logits = false);
  void eval(const std::vector<int32_t>& tokens, bool all_logits = false) { eval(tokens.data(), tokens.size(), all_logits); }

  // Evaluates as eval() does, and returns every token's final hidden state
  // (after the output norm, what the output matrix turns into logits):
  // [n][n_embd]. No logits are left.
  std::vector<float> eval_hidden(const int32_t* tokens, size_t n);

  const float* logits() const;  // the last evaluated token's [n_vocab]
  // Every token's logits of the last eval(all_logits = true): [n_tokens][n_vocab].
  const std::vector<float>& all_logits() const { return logits_; }
  int64_t n_vocab() const;

  int64_t n_past() const { return n_past_; }
  // Adapters and their scales from now on (the next eval builds its graphs anew).
  void set_loras(const std::vector<std::pair<const Lora*, float>>& loras);
  void rewind(int64_t n_past);  // forget positions >= n_past
  int64_t n_ctx() const { return n_ctx_; }
  size_t kv_bytes() const;
  size_t kv_device_bytes() const;  // of those, in GPU memory (offloaded layers)
  // Nodes the last planned graph put on each backend (GPU first when there is
  // one) and values its last compute copied between them.
  std::vector<size_t> placement() const;
  size_t last_copies() const;
  size_t scratch_bytes() const;  // the graphs' planned buffers (they grow to the largest seen)
  // Builds and plans, without computing, the largest graphs this session
  // meets when it fills its context: a prompt batch ending at the last
  // position and one token attending to all of it. Their buffers are then
  // held (scratch_bytes), and the kernels' work memory that computing them
  // takes is returned: what a memory plan needs before a run.
  size_t reserve();
  const Model& model() const { return model_; }
  // Asked between graph nodes and between prompt batches of every eval;
  // true stops the eval with llm::Cancelled: the batches done before it stay
  // in the cache (n_past counts them), the rest is dropped, no logits are
  // left. Called on one of the session's compute threads.
  void set_abort(std::function<bool()> f);

 private:
  void build_token_graph(int64_t at);
  void run(const int32_t* tokens, size_t n, bool all_logits, bool hidden);
  struct Impl;
  std::unique_ptr<Impl> impl_;
  const Model& model_;
  int64_t n_ctx_ = 0, n_past_ = 0, n_batch_ = 512;
  std::vector<std::pair<const Lora*, float>> loras_;
  int64_t token_graph_span_ = 512;
  std::vector<float> logits_;
  size_t logits_rows_ = 0;
  std::function<bool()> abort_;
};

}  // namespace llm
