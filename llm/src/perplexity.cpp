#include "llm/perplexity.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>

#include "llm/files.h"
#include "llm/session.h"

namespace llm {

namespace {

constexpr char MAGIC[8] = {'L', 'L', 'M', 'K', 'L', 'B', '0', '1'};

struct BaseHeader {
  char magic[8];
  uint32_t version, top_k;
  int64_t n_vocab, n_ctx, n_chunks, n_positions;
  uint64_t tokens_hash;  // FNV-1a of the token ids: same text, same tokenizer
};

uint64_t fnv(const int32_t* t, size_t n) {
  uint64_t h = 1469598103934665603ull;
  const auto* b = reinterpret_cast<const uint8_t*>(t);
  for (size_t i = 0; i < n * 4; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

}  // namespace

PerplexityResult perplexity(const Model& m, const std::vector<int32_t>& text, const PerplexityOptions& opt) {
  const Vocab& v = m.tokenizer->vocab();
  const int64_t n_ctx = opt.n_ctx;
  if (n_ctx < 8) throw Error("the context must be at least 8 tokens");
  if (opt.top_k < 1 || opt.top_k > 1024) throw Error("top-k must be between 1 and 1024");
  const bool bos = v.add_bos && v.bos >= 0;
  const int64_t step = bos ? n_ctx - 1 : n_ctx;  // text tokens per window
  int64_t n_chunks = (int64_t)text.size() / step;
  if (opt.n_chunks >= 0) n_chunks = std::min(n_chunks, opt.n_chunks);
  if (n_chunks < 1)
    throw Error("the text has " + std::to_string(text.size()) + (text.size() == 1 ? " token" : " tokens") +
                ", fewer than one window of " + std::to_string(n_ctx) + (opt.n_chunks == 0 ? " (--chunks 0)" : ""));
  const int64_t first = n_ctx / 2, per_chunk = n_ctx - 1 - first;
  const int64_t V = m.hp.n_vocab;
  // A base file keeps the top-k of each position: at most the whole vocabulary.
  const int K = (int)std::min<int64_t>(opt.top_k, V);
  const uint64_t hash = fnv(text.data(), (size_t)(n_chunks * step));

  // Base file to compare against.
  FilePtr base;
  BaseHeader bh{};
  const size_t rec_base = 0;
  (void)rec_base;
  if (!opt.kl_in.empty()) {
    base.reset(std::fopen(opt.kl_in.c_str(), "rb"));
    if (!base) throw Error(opt.kl_in + ": cannot open: " + std::strerror(errno));
    if (std::fread(&bh, sizeof bh, 1, base.get()) != 1 || std::memcmp(bh.magic, MAGIC, 8) != 0 || bh.version != 1)
      throw Error(opt.kl_in + ": not a KL base file written by ./perplexity --kl-base");
    if (bh.n_vocab != V) throw Error(opt.kl_in + ": the base model has another vocabulary size");
    if (bh.n_ctx != n_ctx) throw Error(opt.kl_in + ": written with -c " + std::to_string(bh.n_ctx) + "; use the same");
    if (bh.top_k < 1 || bh.top_k > 1024 || bh.top_k > V) throw Error(opt.kl_in + ": bad top-k");
    if (bh.n_chunks < n_chunks) n_chunks = bh.n_chunks;
    if (bh.tokens_hash != fnv(text.data(), (size_t)(n_chunks * step)) && bh.n_chunks == n_chunks)
      throw Error(opt.kl_in + ": written for another text or tokenizer");
    if (bh.n_positions != bh.n_chunks * per_chunk) throw Error(opt.kl_in + ": inconsistent header");
  }
  std::unique_ptr<OutputFile> out_file;
  std::FILE* out = nullptr;
  const std::string& out_tmp = opt.kl_base_out;  // errors name the file being written
  if (!opt.kl_base_out.empty()) {
    out_file = std::make_unique<OutputFile>(opt.kl_base_out);
    out = out_file->stream();
    BaseHeader h{};
    std::memcpy(h.magic, MAGIC, 8);
    h.version = 1;
    h.top_k = (uint32_t)K;
    h.n_vocab = V;
    h.n_ctx = n_ctx;
    h.n_chunks = n_chunks;
    h.n_positions = n_chunks * per_chunk;
    h.tokens_hash = hash;
    if (std::fwrite(&h, sizeof h, 1, out) != 1) throw Error(out_tmp + ": write failed");
  }

  SessionParams sp;
  sp.n_ctx = n_ctx;
  sp.n_batch = opt.n_batch;
  sp.n_threads = opt.n_threads;
  sp.loras = opt.loras;
  Session s(m, sp);
  PerplexityResult r;
  double nll_sum = 0, nll_sq = 0, kl_sum = 0, kl_sq = 0, base_nll = 0;
  int64_t agree = 0;
  std::vector<int32_t> win((size_t)n_ctx), idx((size_t)V);
  std::vector<int32_t> b_ids;
  std::vector<float> b_lp;
  for (int64_t c = 0; c < n_chunks; c++) {
    size_t k = 0;
    if (bos) win[k++] = v.bos;
    std::copy(text.begin() + c * step, text.begin() + (c + 1) * step, win.begin() + (ptrdiff_t)k);
    s.rewind(0);
    s.eval(win, true);
    const std::vector<float>& L = s.all_logits();
    for (int64_t j = first; j < n_ctx - 1; j++) {
      const float* l = L.data() + (size_t)j * (size_t)V;
      double mx = *std::max_element(l, l + V), se = 0;
      for (int64_t i = 0; i < V; i++) se += std::exp((double)l[i] - mx);
      const double lse = mx + std::log(se);
      const double nll = lse - l[win[(size_t)j + 1]];
      nll_sum += nll;
      nll_sq += nll * nll;
      const int32_t top = (int32_t)(std::max_element(l, l + V) - l);
      if (out) {
        std::iota(idx.begin(), idx.end(), 0);
        std::partial_sort(idx.begin(), idx.begin() + K, idx.end(),
                          [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
        std::vector<float> lp(K);
        for (int i = 0; i < K; i++) lp[i] = (float)(l[idx[i]] - lse);
        const float lt = (float)-nll;
        if (std::fwrite(idx.data(), 4, K, out) != (size_t)K || std::fwrite(lp.data(), 4, K, out) != (size_t)K ||
            std::fwrite(&lt, 4, 1, out) != 1 || std::fwrite(&top, 4, 1, out) != 1)
          throw Error(out_tmp + ": write failed");
      }
      if (base) {
        const int BK = (int)bh.top_k;
        b_ids.resize(BK);
        b_lp.resize(BK);
        float b_true;
        int32_t b_top;
        if (std::fread(b_ids.data(), 4, BK, base.get()) != (size_t)BK || std::fread(b_lp.data(), 4, BK, base.get()) != (size_t)BK ||
            std::fread(&b_true, 4, 1, base.get()) != 1 || std::fread(&b_top, 4, 1, base.get()) != 1)
          throw Error(opt.kl_in + ": truncated");
        double kl = 0, p_sum = 0, q_sum = 0;
        for (int i = 0; i < BK; i++) {
          if (b_ids[i] < 0 || b_ids[i] >= V) throw Error(opt.kl_in + ": token id out of range");
          const double p = std::exp((double)b_lp[i]), lq = (double)l[b_ids[i]] - lse;
          kl += p * ((double)b_lp[i] - lq);
          p_sum += p;
          q_sum += std::exp(lq);
        }
        const double p_rest = std::max(0.0, 1.0 - p_sum), q_rest = std::max(1e-30, 1.0 - q_sum);
        if (p_rest > 1e-12) kl += p_rest * (std::log(p_rest) - std::log(q_rest));
        kl_sum += kl;
        kl_sq += kl * kl;
        base_nll += -(double)b_true;
        agree += b_top == top;
      }
    }
    r.n_scored += per_chunk;
    r.n_chunks = c + 1;
    if (opt.progress) opt.progress(c + 1, n_chunks, std::exp(nll_sum / (double)r.n_scored));
  }
  const double n = (double)r.n_scored;
  const double mean = nll_sum / n, var = std::max(0.0, nll_sq / n - mean * mean);
  r.ppl = std::exp(mean);
  r.ppl_se = r.ppl * std::sqrt(var / std::max(1.0, n - 1));
  if (base) {
    r.has_kl = true;
    r.kl_mean = kl_sum / n;
    r.kl_se = std::sqrt(std::max(0.0, kl_sq / n - r.kl_mean * r.kl_mean) / std::max(1.0, n - 1));
    r.top1 = (double)agree / n;
    r.base_ppl = std::exp(base_nll / n);
  }
  if (out_file) out_file->commit();
  return r;
}

}  // namespace llm
