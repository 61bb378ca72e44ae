#pragma once
// Chunked perplexity and KL-divergence against a base model (./perplexity).
//
// The token stream is cut into windows of n_ctx tokens (with BOS first when
// the vocabulary adds one, then n_ctx - 1 text tokens; windows do not
// overlap). Each window is evaluated from an empty cache and only its second
// half is scored: token j+1 given logits j for j in [n_ctx/2, n_ctx - 1), so
// every scored token has at least half a window of context (llama.cpp's
// method).
//
// KL base files (--kl-base) store, for every scored position, the base
// model's top_k log-probabilities with their token ids, the log-probability
// of the true next token and its argmax; "top-k compressed": the KL sum runs
// over the base's top_k tokens plus one bucket for all the others,
//   KL ~= sum_{i in topk} p_i (log p_i - log q_i) + p_rest (log p_rest - log q_rest),
// which is exact when the base puts (almost) all its mass on its top_k tokens
// and otherwise a lower bound (the bucketing merges the tail).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "llm/model.h"

namespace llm {

struct PerplexityOptions {
  int64_t n_ctx = 512;
  int64_t n_chunks = -1;  // -1: every whole window of the text
  int64_t n_batch = 512;
  // LoRA adapters (and their scales) applied while scoring.
  std::vector<std::pair<const class Lora*, float>> loras;
  int n_threads = 0;
  int top_k = 32;               // entries kept per position in a KL base file
  std::string kl_base_out;      // write the base file here
  std::string kl_in;            // compare against this base file
  // After each window: windows done, total, running perplexity.
  std::function<void(int64_t done, int64_t total, double ppl)> progress;
};

struct PerplexityResult {
  int64_t n_chunks = 0, n_scored = 0;
  double ppl = 0, ppl_se = 0;  // exp(mean NLL) and its standard error (delta method)
  bool has_kl = false;
  double kl_mean = 0, kl_se = 0;   // nats
  double top1 = 0;                 // fraction of positions where both argmaxes agree
  double base_ppl = 0;             // the base model's perplexity on the same positions
};

// tokens: the whole text, without BOS. Throws llm::Error when the text is
// shorter than one window or a base file does not match.
PerplexityResult perplexity(const Model& m, const std::vector<int32_t>& tokens, const PerplexityOptions& opt);

}  // namespace llm
