#include "llm/sampling.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "llm/error.h"

namespace llm {

Sampler::Sampler(const SamplingParams& p, int64_t n_vocab) : p_(p), n_vocab_(n_vocab), rng_(p.seed) {
  if (n_vocab <= 0) throw Error("sampler: empty vocabulary");
  if (!(p.top_p > 0 && p.top_p <= 1)) throw Error("sampler: top-p must be in (0, 1]");
  if (!(p.min_p >= 0 && p.min_p <= 1)) throw Error("sampler: min-p must be in [0, 1]");
  if (!(p.repeat_penalty > 0) || !std::isfinite(p.repeat_penalty)) throw Error("sampler: the repeat penalty must be positive");
  if (p.penalty_last_n < 0) throw Error("sampler: the penalty window must not be negative");
  if (std::isnan(p.temp) || !std::isfinite(p.frequency_penalty) || !std::isfinite(p.presence_penalty))
    throw Error("sampler: the temperature and penalties must be numbers");
}

void Sampler::reset() {
  recent_.clear();
  rng_.seed(p_.seed);
}

void Sampler::accept(int32_t id) {
  if (p_.penalty_last_n == 0) return;
  recent_.push_back(id);
  while ((int)recent_.size() > p_.penalty_last_n) recent_.pop_front();
}

int32_t Sampler::sample(const float* logits) {
  cand_.resize((size_t)n_vocab_);
  for (int64_t i = 0; i < n_vocab_; i++) cand_[(size_t)i] = {logits[i], (int32_t)i};
  if (!recent_.empty() && (p_.repeat_penalty != 1 || p_.frequency_penalty != 0 || p_.presence_penalty != 0)) {
    std::unordered_map<int32_t, int> count;
    for (int32_t t : recent_) count[t]++;
    for (const auto& [t, c] : count) {
      if (t < 0 || t >= n_vocab_) continue;
      float& l = cand_[(size_t)t].first;
      l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
      l -= (float)c * p_.frequency_penalty + p_.presence_penalty;
    }
  }
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  if (p_.temp <= 0) return std::min_element(cand_.begin(), cand_.end(), by_logit)->second;

  size_t n = cand_.size();
  if (p_.top_k > 0 && (size_t)p_.top_k < n) n = (size_t)p_.top_k;
  std::partial_sort(cand_.begin(), cand_.begin() + (ptrdiff_t)n, cand_.end(), by_logit);
  cand_.resize(n);
  // Probabilities at temperature 1 decide top-p and min-p, as llama.cpp does.
  std::vector<double> prob(n);
  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += prob[i] = std::exp((double)cand_[i].first - cand_[0].first);
  size_t keep = n;
  if (p_.top_p < 1) {
    double cum = 0;
    for (size_t i = 0; i < n; i++) {
      cum += prob[i] / sum;
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  if (p_.min_p > 0) {
    size_t k = 1;
    while (k < keep && prob[k] >= p_.min_p * prob[0]) k++;
    keep = k;
  }
  // Temperature, then a draw.
  std::vector<double> w(keep);
  double wsum = 0;
  for (size_t i = 0; i < keep; i++)
    wsum += w[i] = std::exp(((double)cand_[i].first - cand_[0].first) / p_.temp);
  double r = std::uniform_real_distribution<double>(0.0, wsum)(rng_);
  for (size_t i = 0; i < keep; i++) {
    if (r < w[i]) return cand_[i].second;
    r -= w[i];
  }
  return cand_[keep - 1].second;
}

}  // namespace llm
