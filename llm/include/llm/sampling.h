#pragma once
// Token sampling in llama.cpp's order: repetition / frequency / presence
// penalties over the last `penalty_last_n` accepted tokens, then top-k,
// top-p, min-p, temperature, and a draw from a seeded generator. A
// temperature <= 0 is greedy (argmax after the penalties).
#include <cstdint>
#include <deque>
#include <random>
#include <vector>

namespace llm {

struct SamplingParams {
  float temp = 0.8f;
  int top_k = 40;          // <= 0: all tokens
  float top_p = 0.95f;     // 1: off
  float min_p = 0.05f;     // 0: off; relative to the most likely token
  float repeat_penalty = 1.1f;    // 1: off
  float frequency_penalty = 0.0f; // subtracted per occurrence
  float presence_penalty = 0.0f;  // subtracted once if present
  int penalty_last_n = 64;
  uint64_t seed = 0;
};

class Sampler {
 public:
  Sampler(const SamplingParams& p, int64_t n_vocab);
  int32_t sample(const float* logits);  // does not accept the token
  void accept(int32_t id);
  void reset();
  const SamplingParams& params() const { return p_; }

 private:
  SamplingParams p_;
  int64_t n_vocab_;
  std::mt19937_64 rng_;
  std::deque<int32_t> recent_;
  std::vector<std::pair<float, int32_t>> cand_;
};

}  // namespace llm
