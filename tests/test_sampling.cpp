// Sampling against direct computations: greedy is the argmax, filters keep
// exactly the tokens their definitions keep, draws follow the softmax, seeds
// reproduce, penalties follow llama.cpp's formulas.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "helpers.h"
#include "llm/error.h"
#include "llm/sampling.h"

namespace {

std::vector<float> random_logits(int n, uint64_t seed) {
  th::Rng rng(seed);
  std::vector<float> l(n);
  for (auto& x : l) x = rng.uniform(-4.0f, 4.0f);
  return l;
}

std::vector<double> softmax(const std::vector<float>& l, double temp) {
  double mx = *std::max_element(l.begin(), l.end()), s = 0;
  std::vector<double> p(l.size());
  for (size_t i = 0; i < l.size(); i++) s += p[i] = std::exp((l[i] - mx) / temp);
  for (auto& x : p) x /= s;
  return p;
}

// Tokens drawn over many samples.
std::set<int32_t> support(llm::Sampler& s, const std::vector<float>& l, int draws) {
  std::set<int32_t> seen;
  for (int i = 0; i < draws; i++) seen.insert(s.sample(l.data()));
  return seen;
}

}  // namespace

TEST_CASE("greedy is the argmax; top-k 1 is greedy at any temperature") {
  auto l = random_logits(500, 1);
  const int32_t best = (int32_t)(std::max_element(l.begin(), l.end()) - l.begin());
  llm::SamplingParams p;
  p.temp = 0;
  p.repeat_penalty = 1;
  llm::Sampler g(p, 500);
  CHECK(g.sample(l.data()) == best);
  p.temp = 5;
  p.top_k = 1;
  llm::Sampler k1(p, 500);
  for (int i = 0; i < 50; i++) CHECK(k1.sample(l.data()) == best);
}

TEST_CASE("draws follow the softmax at the temperature") {
  auto l = random_logits(8, 2);
  for (double temp : {0.5, 1.0, 2.0}) {
    CAPTURE(temp);
    llm::SamplingParams p;
    p.temp = (float)temp;
    p.top_k = 0;
    p.top_p = 1;
    p.min_p = 0;
    p.repeat_penalty = 1;
    p.seed = 7;
    llm::Sampler s(p, 8);
    const int N = 40000;
    std::vector<int> count(8);
    for (int i = 0; i < N; i++) count[s.sample(l.data())]++;
    auto want = softmax(l, temp);
    for (int i = 0; i < 8; i++) {
      const double sd = std::sqrt(want[i] * (1 - want[i]) / N);
      CHECK(std::fabs(count[i] / (double)N - want[i]) < 5 * sd + 1e-4);
    }
  }
}

TEST_CASE("top-k, top-p and min-p keep exactly the tokens their definitions keep") {
  auto l = random_logits(64, 3);
  std::vector<int32_t> order(64);
  for (int i = 0; i < 64; i++) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
  auto p1 = softmax(l, 1.0);
  llm::SamplingParams base;
  base.temp = 3;  // flatten the draw so every kept token shows up
  base.repeat_penalty = 1;
  base.top_k = 0;
  base.top_p = 1;
  base.min_p = 0;
  {
    auto p = base;
    p.top_k = 5;
    llm::Sampler s(p, 64);
    CHECK(support(s, l, 5000) == std::set<int32_t>(order.begin(), order.begin() + 5));
  }
  {
    auto p = base;
    p.top_p = 0.6f;
    size_t k = 0;
    double cum = 0;
    while (cum < 0.6) cum += p1[order[k++]];
    llm::Sampler s(p, 64);
    CHECK(support(s, l, 20000) == std::set<int32_t>(order.begin(), order.begin() + (ptrdiff_t)k));
  }
  {
    auto p = base;
    p.min_p = 0.2f;
    std::set<int32_t> want;
    for (int i = 0; i < 64; i++)
      if (p1[i] >= 0.2 * p1[order[0]]) want.insert(i);
    llm::Sampler s(p, 64);
    CHECK(support(s, l, 20000) == want);
  }
}

TEST_CASE("the same seed reproduces the same draws; reset restarts them") {
  auto l = random_logits(1000, 4);
  llm::SamplingParams p;
  p.seed = 123;
  llm::Sampler a(p, 1000), b(p, 1000);
  std::vector<int32_t> da, db;
  for (int i = 0; i < 100; i++) {
    da.push_back(a.sample(l.data()));
    db.push_back(b.sample(l.data()));
  }
  CHECK(da == db);
  a.reset();
  CHECK(a.sample(l.data()) == da[0]);
  p.seed = 124;
  llm::Sampler c(p, 1000);
  std::vector<int32_t> dc;
  for (int i = 0; i < 100; i++) dc.push_back(c.sample(l.data()));
  CHECK(dc != da);
}

TEST_CASE("penalties: repeat divides positive and multiplies negative logits, frequency and presence subtract") {
  // Two tokens: which wins greedily after the penalties tells the penalized value.
  llm::SamplingParams p;
  p.temp = 0;
  p.repeat_penalty = 2;
  p.penalty_last_n = 4;
  {
    llm::Sampler s(p, 2);
    std::vector<float> l = {3.0f, 1.6f};  // 3 / 2 = 1.5 < 1.6
    CHECK(s.sample(l.data()) == 0);
    s.accept(0);
    CHECK(s.sample(l.data()) == 1);
  }
  {
    llm::Sampler s(p, 2);
    std::vector<float> l = {-1.0f, -1.9f};  // -1 * 2 = -2 < -1.9
    s.accept(0);
    CHECK(s.sample(l.data()) == 1);
  }
  {
    // The window forgets: after 4 other tokens, token 0 is unpenalized again.
    llm::Sampler s(p, 3);
    std::vector<float> l = {3.0f, 1.6f, -5.0f};
    s.accept(0);
    for (int i = 0; i < 4; i++) s.accept(2);
    CHECK(s.sample(l.data()) == 0);
  }
  p.repeat_penalty = 1;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  {
    llm::Sampler s(p, 2);
    std::vector<float> l = {2.0f, 0.8f};
    s.accept(0);
    CHECK(s.sample(l.data()) == 0);  // once: 2 - 0.5 - 0.25 = 1.25 > 0.8
    s.accept(0);
    CHECK(s.sample(l.data()) == 1);  // twice: 2 - 2 * 0.5 - 0.25 = 0.75 < 0.8
  }
}

TEST_CASE("bad sampling parameters are refused") {
  llm::SamplingParams p;
  p.top_p = 0;
  CHECK_THROWS_AS(llm::Sampler(p, 10), llm::Error);
  p = {};
  p.min_p = 1.5f;
  CHECK_THROWS_AS(llm::Sampler(p, 10), llm::Error);
  p = {};
  p.repeat_penalty = 0;
  CHECK_THROWS_AS(llm::Sampler(p, 10), llm::Error);
  p = {};
  CHECK_THROWS_AS(llm::Sampler(p, 0), llm::Error);
}
