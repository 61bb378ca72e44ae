#include "llm/session.h"

#include <unistd.h>

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "blocks.h"
#include "ggml/cuda.h"

namespace llm {

using ggml::Tensor;

std::string tokens_str(int64_t n) { return std::to_string(n) + (n == 1 ? " token" : " tokens"); }

// One token's graph, kept between tokens: built once for positions below
// cap, its cache position a graph parameter set for each token, it skips building and planning
// a graph of ~500-750 nodes a token (~0.3 ms of SmolLM2's ~5 ms). Its own
// allocator: prompt graphs may move the other's buffer.
struct TokenGraph {
  std::unique_ptr<ggml::Context> ctx;
  std::unique_ptr<ggml::Graph> g;
  ggml::GraphAllocator alloc;
  int n_past = -1;  // the graph's parameter
  Tensor *tokens = nullptr, *positions = nullptr, *out = nullptr;
  int64_t cap = 0;  // serves n_past < cap
};

struct Session::Impl {
  ggml::Scheduler sched;  // first: the buffers below are its backends', freed before them
  ggml::Context cache_ctx{size_t(1) << 20};
  std::vector<Tensor*> k, v;
  std::unique_ptr<ggml::Buffer> kv_buf, kv_dev_buf;  // the host's layers, the GPU's
  ggml::GraphAllocator alloc;
  TokenGraph token;
  size_t kv_bytes = 0, kv_dev_bytes = 0;
  // With offloaded layers a GPU backend of the session's own (its stream and
  // scratch) goes first; graph memory is then mirrored on the GPU.
  static std::vector<std::shared_ptr<ggml::Backend>> backends(const Model& m, int threads) {
    std::vector<std::shared_ptr<ggml::Backend>> b;
    if (m.n_gpu_layers() > 0) b.push_back(ggml::device_backend(m.gpu_device()));
    b.push_back(ggml::cpu_backend(threads));
    return b;
  }
  Impl(const Model& m, int threads) : sched(backends(m, threads)) {
    alloc.set_backend(&sched.graph_memory());
    token.alloc.set_backend(&sched.graph_memory());
  }
};

namespace {
// The forward graph of nt tokens at n_past into ctx and g; the logits of the
// last n_out tokens (none: the hidden state, so that the cache is filled).
struct Built {
  Tensor *tokens, *positions, *out;
};
// hidden: out is every token's final hidden state (after the output norm)
// instead of logits.
Built build_forward(const Model& model, ggml::Context& ctx, ggml::Graph& g, int64_t n_past, int64_t nt, int64_t n_out,
                    const std::vector<Tensor*>& k, const std::vector<Tensor*>& v, int n_past_param,
                    const std::vector<std::pair<const Lora*, float>>& loras, bool hidden = false) {
  const HParams& hp = model.hp;
  GraphInputs in{ctx, g, model, n_past, nt, nullptr, nullptr, k, v, n_past_param, loras, nullptr, nullptr, 1};
  in.tokens = ctx.new_tensor(ggml::Type::I32, {nt}, "tokens");
  in.positions = ctx.new_tensor(ggml::Type::I32, {nt}, "positions");
  Tensor* h = nullptr;
  switch (hp.arch) {
    case Arch::LLAMA: h = build_llama(in); break;
    case Arch::GPTNEOX: h = build_gptneox(in); break;
    case Arch::GPTJ: h = build_gptj(in); break;
  }
  Tensor* out = nullptr;
  if (hidden) {
    out = h;
    g.expand(out);
  } else if (n_out > 0) {
    // Only the rows whose logits are wanted go through the output matrix.
    if (n_out < nt) h = ggml::view_2d(ctx, h, hp.n_embd, n_out, h->nb[1], (size_t)(nt - n_out) * h->nb[1]);
    out = linear(ctx, h, model.output ? model.output : model.tok_embd, model.output_b);
    g.expand(out);
  } else {
    g.expand(h);  // the cache still has to be filled
  }
  return {in.tokens, in.positions, out};
}
}  // namespace

Session::Session(const Model& model, const SessionParams& p) : model_(model) {
  const HParams& hp = model.hp;
  n_ctx_ = p.n_ctx > 0 ? p.n_ctx : std::min<int64_t>(hp.n_ctx_train, 4096);
  if (n_ctx_ < 1 || n_ctx_ > (int64_t(1) << 20))
    throw Error("context length " + std::to_string(n_ctx_) + " is out of range");
  if (n_ctx_ > hp.n_ctx_train)
    throw Error("context length " + std::to_string(n_ctx_) + " exceeds the " + std::to_string(hp.n_ctx_train) +
                " tokens the model was trained for");
  if (p.kv_type != ggml::Type::F16 && p.kv_type != ggml::Type::F32)
    throw Error("the KV cache type must be f16 or f32");
  if (p.n_batch < 1) throw Error("the batch size must be positive");
  // The cache is the one allocation a user's -c sizes: said before it is
  // made, and refused past the machine's memory unless asked for.
  const double kv_need = 2.0 * (double)hp.n_layer * (double)n_ctx_ * (double)hp.n_embd_kv() *
                         (double)ggml::type_size(p.kv_type);
  const double phys = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
  if (!p.ignore_memory_limit && phys > 0 && kv_need > phys)
    throw Error("the KV cache for a context of " + std::to_string(n_ctx_) + " tokens would take " +
                std::to_string((int64_t)(kv_need / (1 << 20))) + " MiB, more than this machine's " +
                std::to_string((int64_t)(phys / (1 << 20))) + " MiB of memory (lower -c, or --no-memory-check)");
  int threads = p.n_threads > 0 ? p.n_threads : ggml::physical_cores();
  impl_ = std::make_unique<Impl>(model, threads);
  n_batch_ = p.n_batch;
  loras_ = p.loras;
  if (p.token_graph_span < 0) throw Error("the token graph span must be 0 or positive");
  token_graph_span_ = p.token_graph_span;
  size_t host_bytes = 0, dev_bytes = 0;
  auto padded = [](size_t n) { return (n + 63) / 64 * 64; };
  for (int il = 0; il < (int)hp.n_layer; il++) {
    // Keys by position (rows of head_dim); values transposed (rows of positions)
    // so that probabilities x values is a plain matrix product.
    Tensor* k = impl_->cache_ctx.new_tensor_external(p.kv_type, {hp.head_dim(), n_ctx_, hp.n_head_kv}, "k_cache." + std::to_string(il));
    Tensor* v = impl_->cache_ctx.new_tensor_external(p.kv_type, {n_ctx_, hp.head_dim(), hp.n_head_kv}, "v_cache." + std::to_string(il));
    impl_->k.push_back(k);
    impl_->v.push_back(v);
    (model.layer_on_device(il) ? dev_bytes : host_bytes) += padded(k->nbytes()) + padded(v->nbytes());
  }
  impl_->kv_bytes = host_bytes + dev_bytes;
  impl_->kv_dev_bytes = dev_bytes;
  // Each layer's cache in the memory of the backend that computes with it
  // (one buffer each side, 64-byte aligned tensors), zeroed.
  impl_->kv_buf = impl_->sched.host().alloc(host_bytes);
  std::memset(impl_->kv_buf->base(), 0, host_bytes);
  char* at = static_cast<char*>(impl_->kv_buf->base());
  char* at_dev = nullptr;
  if (dev_bytes) {
    impl_->kv_dev_buf = impl_->sched.primary().alloc(dev_bytes);  // a device's memory comes zeroed
    at_dev = static_cast<char*>(impl_->kv_dev_buf->base());
  }
  for (int il = 0; il < (int)hp.n_layer; il++) {
    const bool dev = model.layer_on_device(il);
    for (Tensor* t : {impl_->k[size_t(il)], impl_->v[size_t(il)]}) {
      char*& p = dev ? at_dev : at;
      t->data = p;
      if (dev) t->flags |= ggml::FLAG_DEVICE;
      p += padded(t->nbytes());
    }
  }
}

Session::~Session() = default;

void Session::set_loras(const std::vector<std::pair<const Lora*, float>>& loras) {
  loras_ = loras;
  impl_->token.cap = 0;  // the kept token graph has the old adapters in it
}

int64_t Session::n_vocab() const { return model_.hp.n_vocab; }

void Session::set_abort(std::function<bool()> f) {
  abort_ = f;
  impl_->sched.set_abort(abort_);
}
void Session::build_token_graph(int64_t at) {
  // Built for the last position below cap, so its plan holds every shorter
  // attention. tg changes only once all of it has worked.
  TokenGraph& tg = impl_->token;
  const int64_t cap = std::min<int64_t>(n_ctx_, (at / token_graph_span_ + 1) * token_graph_span_);
  tg.cap = 0;
  auto ctx = std::make_unique<ggml::Context>(size_t(1) << 20);
  auto graph = std::make_unique<ggml::Graph>();
  const int n_past = graph->new_param("n_past");
  const Built tb = build_forward(model_, *ctx, *graph, cap - 1, 1, 1, impl_->k, impl_->v, n_past, loras_);
  impl_->sched.plan(*graph, *ctx);
  tg.alloc.allocate(*graph);
  tg.ctx = std::move(ctx);
  tg.g = std::move(graph);
  tg.n_past = n_past;
  tg.tokens = tb.tokens;
  tg.positions = tb.positions;
  tg.out = tb.out;
  tg.cap = cap;
}

size_t Session::reserve() {
  const int64_t nt = std::min(n_batch_, n_ctx_);
  ggml::Context ctx(size_t(1) << 20);
  ggml::Graph g;
  build_forward(model_, ctx, g, n_ctx_ - nt, nt, 1, impl_->k, impl_->v, -1, loras_);
  impl_->sched.plan(g, ctx);
  impl_->alloc.allocate(g);
  ggml::Backend& be = impl_->sched.host();
  size_t work = be.work_size(g);
  if (token_graph_span_ > 0) {
    if (impl_->token.cap < n_ctx_) build_token_graph(n_ctx_ - 1);
    work = std::max(work, be.work_size(*impl_->token.g));
  }
  return work;
}

size_t Session::kv_bytes() const { return impl_->kv_bytes; }
size_t Session::kv_device_bytes() const { return impl_->kv_dev_bytes; }
std::vector<size_t> Session::placement() const { return impl_->sched.last_placement(); }
size_t Session::last_copies() const { return impl_->sched.last_copies(); }
size_t Session::scratch_bytes() const { return impl_->alloc.buffer_size() + impl_->token.alloc.buffer_size(); }

const float* Session::logits() const {
  if (logits_rows_ == 0) throw Error("no logits yet: evaluate some tokens first");
  return logits_.data() + (logits_rows_ - 1) * (size_t)model_.hp.n_vocab;
}

void Session::rewind(int64_t n_past) {
  if (n_past < 0 || n_past > n_past_) throw Error("rewind: position " + std::to_string(n_past) + " is not in the cache");
  n_past_ = n_past;
}

void Session::eval(const int32_t* tokens, size_t n, bool all_logits) { run(tokens, n, all_logits, false); }

std::vector<float> Session::eval_hidden(const int32_t* tokens, size_t n) {
  run(tokens, n, true, true);
  std::vector<float> h;
  h.swap(logits_);
  logits_rows_ = 0;
  return h;
}

void Session::run(const int32_t* tokens, size_t n, bool all_logits, bool hidden) {
  const HParams& hp = model_.hp;
  if (n == 0) throw Error("eval: no tokens");
  if ((int64_t)n > n_ctx_ - n_past_)
    throw Error("eval: " + std::to_string(n) + " tokens do not fit the context (" + std::to_string(n_past_) + " of " +
                std::to_string(n_ctx_) + " used)");
  for (size_t i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= hp.n_vocab)
      throw Error("eval: token id " + std::to_string(tokens[i]) + " is outside the vocabulary of " +
                  std::to_string(hp.n_vocab));
  logits_.clear();
  logits_rows_ = 0;
  for (size_t done = 0; done < n;) {
    if (abort_ && abort_()) {
      logits_.clear();
      logits_rows_ = 0;
      throw Cancelled("eval: cancelled");
    }
    const int64_t nt = std::min<int64_t>(n_batch_, (int64_t)(n - done));
    const bool last_chunk = done + (size_t)nt == n;
    const int64_t n_out = all_logits ? nt : (last_chunk ? 1 : 0);

    auto t_build = std::chrono::steady_clock::now();
    std::unique_ptr<ggml::Context> own_ctx;
    std::unique_ptr<ggml::Graph> own_g;
    ggml::Graph* g = nullptr;
    Built b{};
    auto t_alloc = t_build;
    TokenGraph& tg = impl_->token;
    if (token_graph_span_ > 0 && nt == 1 && n_out == 1 && !hidden) {
      if (n_past_ >= tg.cap) build_token_graph(n_past_);
      tg.g->set_param(tg.n_past, n_past_);
      g = tg.g.get();
      b = {tg.tokens, tg.positions, tg.out};
      t_alloc = std::chrono::steady_clock::now();
    } else {
      own_ctx = std::make_unique<ggml::Context>(size_t(1) << 20);
      own_g = std::make_unique<ggml::Graph>();
      g = own_g.get();
      b = build_forward(model_, *own_ctx, *g, n_past_, nt, n_out, impl_->k, impl_->v, -1, loras_, hidden);
      impl_->sched.plan(*g, *own_ctx);
      t_alloc = std::chrono::steady_clock::now();
      impl_->alloc.allocate(*g);
    }
    std::memcpy(b.tokens->data, tokens + done, (size_t)nt * 4);
    for (int64_t i = 0; i < nt; i++) b.positions->as<int32_t>()[i] = (int32_t)(n_past_ + i);
    Tensor* out = b.out;
    auto t_exec = std::chrono::steady_clock::now();
    try {
      impl_->sched.compute(*g);
    } catch (const ggml::Cancelled&) {
      logits_.clear();
      logits_rows_ = 0;
      throw Cancelled("eval: cancelled");
    } catch (const ggml::Error& e) {
      throw Error(std::string("eval: ") + e.what());
    }
    if (ggml::profiling()) {
      auto t_end = std::chrono::steady_clock::now();
      auto sec = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
      ggml::profile_add_named("session: build graph", sec(t_build, t_alloc));
      ggml::profile_add_named("session: plan memory", sec(t_alloc, t_exec));
      ggml::profile_add_named("session: compute (total)", sec(t_exec, t_end));
    }
    if (out) {
      const size_t row = (size_t)(hidden ? hp.n_embd : hp.n_vocab);
      logits_.resize((logits_rows_ + (size_t)n_out) * row);
      for (int64_t r = 0; r < n_out; r++)
        std::memcpy(logits_.data() + (logits_rows_ + (size_t)r) * row, out->row_ptr(r), row * sizeof(float));
      logits_rows_ += (size_t)n_out;
    }
    n_past_ += nt;
    done += (size_t)nt;
  }
}

}  // namespace llm
