// The C API (include/llm.h): models, tokens, contexts, adapters, embeddings
// and sampling; chat templates and streams are in c_api_chat.cpp. Thin
// wrappers that turn every exception into a status and a thread-local message.
#include <cmath>
#include <cstdio>
#include <mutex>
#include <unordered_set>

#include "c_api_internal.h"
#include "ggml/cuda.h"

namespace capi {

namespace {
// Every live handle, so that a freed or made-up pointer is refused without
// being read (a lookup per call, negligible beside an evaluation).
struct Handles {
  std::mutex mu;
  std::unordered_set<const void*> live;
};
Handles& handles() {
  static Handles* h = new Handles;  // never destroyed: handles may be freed during exit
  return *h;
}
}  // namespace

void remember(const void* p) {
  std::lock_guard<std::mutex> l(handles().mu);
  handles().live.insert(p);
}
bool forget(const void* p) {
  std::lock_guard<std::mutex> l(handles().mu);
  return handles().live.erase(p) == 1;
}
bool live(const void* p) {
  if (!p) return false;
  std::lock_guard<std::mutex> l(handles().mu);
  return handles().live.count(p) == 1;
}

std::string& last_error() {
  thread_local std::string e;
  return e;
}

llm_status invalid(const std::string& what) {
  last_error() = what;
  return LLM_ERR_INVALID_ARGUMENT;
}

}  // namespace capi

using namespace capi;

namespace {

// A live model's value, else `bad` with the error set.
template <class T, class F>
T model_value(const llm_model* m, T bad, const char* fn, F&& f) {
  if (!live(m)) {
    invalid(std::string(fn) + ": not a live model handle");
    return bad;
  }
  ok();
  return f();
}

// The sampler's parameters between the C struct and the engine's, one field
// list for both directions.
template <class From, class To>
void copy_sampling(const From& f, To& t) {
  t.temp = f.temp;
  t.top_k = f.top_k;
  t.top_p = f.top_p;
  t.min_p = f.min_p;
  t.repeat_penalty = f.repeat_penalty;
  t.frequency_penalty = f.frequency_penalty;
  t.presence_penalty = f.presence_penalty;
  t.penalty_last_n = f.penalty_last_n;
  t.seed = f.seed;
}

}  // namespace

extern "C" {

// The build's version (CMake's project version), which the test compares
// with the header's LLM_VERSION_*.
const char* llm_version(void) {
  ok();
  return LLM_LIB_VERSION;
}

const char* llm_last_error(void) { return last_error().c_str(); }

llm_model_params llm_model_default_params(void) {
  ok();
  llm_model_params p;
  p.use_mmap = 0;
  p.n_threads = 0;
  p.progress = nullptr;
  p.progress_user = nullptr;
  p.n_gpu_layers = 0;
  return p;
}

llm_status llm_model_load_ex(const char* path, const llm_model_params* params, llm_model** out) {
  if (!path || !out) return invalid("llm_model_load: NULL argument");
  *out = nullptr;
  const llm_model_params p = params ? *params : llm_model_default_params();
  if (p.n_threads < 0) return invalid("llm_model_load: n_threads must not be negative");
  if (p.n_gpu_layers < 0) return invalid("llm_model_load: n_gpu_layers must not be negative");
  if (std::string why; p.n_gpu_layers > 0 && !ggml::device_available(&why))
    return invalid("llm_model_load: n_gpu_layers: " + why);
  return guard(
      [&] {
        llm::LoadOptions o = llm::LoadOptions::for_flags(p.use_mmap != 0, false);
        o.n_threads = p.n_threads;
        o.n_gpu_layers = p.n_gpu_layers;
        if (p.progress) o.progress = [&](double f) { return p.progress((float)f, p.progress_user) == 0; };
        auto m = std::make_unique<llm_model>();
        m->m = llm::Model::load(path, o);
        m->chat = std::make_unique<llm::ChatFormat>(m->m->tokenizer->vocab());
        m->n_threads = p.n_threads;
        remember(m.get());
        *out = m.release();
        return LLM_OK;
      },
      LLM_ERR_FILE);
}

llm_status llm_model_load(const char* path, llm_model** out) { return llm_model_load_ex(path, nullptr, out); }

void llm_model_free(llm_model* model) {
  ok();
  if (model && forget(model)) delete model;
}

int32_t llm_model_n_vocab(const llm_model* m) {
  return model_value(m, 0, "llm_model_n_vocab", [&] { return (int32_t)m->m->hp.n_vocab; });
}
int32_t llm_model_n_ctx_train(const llm_model* m) {
  return model_value(m, 0, "llm_model_n_ctx_train", [&] { return (int32_t)m->m->hp.n_ctx_train; });
}
int32_t llm_model_n_embd(const llm_model* m) {
  return model_value(m, 0, "llm_model_n_embd", [&] { return (int32_t)m->m->hp.n_embd; });
}
llm_token llm_token_bos(const llm_model* m) {
  return model_value(m, -1, "llm_token_bos", [&] { return (llm_token)m->m->tokenizer->vocab().bos; });
}
llm_token llm_token_eos(const llm_model* m) {
  return model_value(m, -1, "llm_token_eos", [&] { return (llm_token)m->m->tokenizer->vocab().eos; });
}
llm_token llm_token_eot(const llm_model* m) {
  return model_value(m, -1, "llm_token_eot", [&] { return (llm_token)m->chat->end_of_turn(); });
}

int32_t llm_model_desc(const llm_model* m, char* buf, int32_t size) {
  if (!buf || size <= 0) {
    invalid("llm_model_desc: no buffer");
    return 0;
  }
  return model_value(m, 0, "llm_model_desc", [&] {
    return std::snprintf(buf, (size_t)size, "%s %s %.1fM", llm::arch_name(m->m->hp.arch), m->m->type_name().c_str(),
                         m->m->n_params() / 1e6);
  });
}

int32_t llm_tokenize(const llm_model* m, const char* text, size_t len, int add_special, int parse_special,
                     llm_token* tokens, int32_t capacity) {
  if (!live(m) || (!text && len) || capacity < 0 || (!tokens && capacity > 0)) {
    invalid("llm_tokenize: bad argument");
    return INT32_MIN;
  }
  int32_t result = INT32_MIN;
  guard([&] {
    result = copy_tokens(
        m->m->tokenizer->encode(std::string_view(text ? text : "", len), add_special != 0, parse_special != 0), tokens,
        capacity);
    return LLM_OK;
  });
  return result;
}

int32_t llm_token_to_piece(const llm_model* m, llm_token token, char* buf, int32_t size, int special) {
  if (!live(m) || token < 0 || token >= m->m->hp.n_vocab) {
    invalid("llm_token_to_piece: bad model or token");
    return INT32_MIN;
  }
  int32_t r = INT32_MIN;
  guard([&] {
    r = copy_out(m->m->tokenizer->piece(token, special != 0), buf, size);
    return LLM_OK;
  });
  return r;
}

int32_t llm_detokenize(const llm_model* m, const llm_token* tokens, int32_t n, char* buf, int32_t size, int special) {
  if (!live(m) || n < 0 || (!tokens && n > 0)) {
    invalid("llm_detokenize: bad argument");
    return INT32_MIN;
  }
  for (int32_t i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= m->m->hp.n_vocab) {
      invalid("llm_detokenize: token id out of range");
      return INT32_MIN;
    }
  int32_t r = INT32_MIN;
  guard([&] {
    r = copy_out(m->m->tokenizer->decode(std::vector<int32_t>(tokens, tokens + n), special != 0), buf, size);
    return LLM_OK;
  });
  return r;
}

llm_context_params llm_context_default_params(void) {
  ok();
  llm_context_params p;
  p.n_ctx = 0;
  p.n_batch = 512;
  p.n_threads = 0;
  p.kv_f32 = 0;
  return p;
}

llm_status llm_context_new(const llm_model* m, const llm_context_params* p, llm_context** out) {
  if (!out) return invalid("llm_context_new: NULL argument");
  *out = nullptr;
  if (!live(m)) return invalid("llm_context_new: not a live model handle");
  llm_context_params d = p ? *p : llm_context_default_params();
  if (d.n_ctx < 0 || d.n_batch < 0 || d.n_threads < 0) return invalid("llm_context_new: negative parameter");
  if (d.n_ctx > m->m->hp.n_ctx_train)
    return invalid("llm_context_new: n_ctx " + std::to_string(d.n_ctx) + " exceeds the " +
                   std::to_string(m->m->hp.n_ctx_train) + " tokens the model was trained for");
  // What remains (a cache larger than the machine's memory) is the caller's
  // parameter too.
  return guard(
      [&] {
        llm::SessionParams sp;
        sp.n_ctx = d.n_ctx;
        sp.n_batch = d.n_batch > 0 ? d.n_batch : 512;
        sp.n_threads = d.n_threads > 0 ? d.n_threads : m->n_threads;
        sp.kv_type = d.kv_f32 ? ggml::Type::F32 : ggml::Type::F16;
        auto c = std::make_unique<llm_context>();
        c->model = m->m;
        c->s = std::make_unique<llm::Session>(*c->model, sp);
        llm_context* raw = c.get();
        c->s->set_abort([raw] {
          return raw->cancel.load(std::memory_order_relaxed) || (raw->abort && raw->abort(raw->abort_user) != 0);
        });
        remember(raw);
        *out = c.release();
        return LLM_OK;
      },
      LLM_ERR_INVALID_ARGUMENT);
}

void llm_context_free(llm_context* ctx) {
  ok();
  if (ctx && forget(ctx)) delete ctx;
}

llm_status llm_context_set_cancel(llm_context* ctx, int cancel) {
  if (!live(ctx)) return invalid("llm_context_set_cancel: not a live context handle");
  ctx->cancel.store(cancel != 0);
  ok();
  return LLM_OK;
}

llm_status llm_context_set_abort(llm_context* ctx, int (*abort)(void*), void* user) {
  if (!live(ctx)) return invalid("llm_context_set_abort: not a live context handle");
  ctx->abort = abort;
  ctx->abort_user = user;
  ok();
  return LLM_OK;
}

llm_status llm_lora_load(const llm_model* m, const char* path, llm_lora** out) {
  if (!path || !out) return invalid("llm_lora_load: NULL argument");
  *out = nullptr;
  if (!live(m)) return invalid("llm_lora_load: not a live model handle");
  return guard(
      [&] {
        auto h = std::make_unique<llm_lora>();
        h->model = m->m;
        h->l = llm::Lora::load(*h->model, path);
        remember(h.get());
        *out = h.release();
        return LLM_OK;
      },
      LLM_ERR_FILE);
}

void llm_lora_free(llm_lora* lora) {
  ok();
  if (lora && forget(lora)) delete lora;
}

llm_status llm_context_set_lora(llm_context* ctx, llm_lora* lora, float scale) {
  if (!live(ctx) || !live(lora)) return invalid("llm_context_set_lora: need a live context and adapter");
  if (lora->model != ctx->model) return invalid("llm_context_set_lora: the adapter was loaded for another model");
  if (!std::isfinite(scale)) return invalid("llm_context_set_lora: the scale must be finite");
  return guard([&] {
    bool found = false;
    for (auto& [l, s] : ctx->loras)
      if (l == lora->l) s = scale, found = true;
    if (!found) ctx->loras.push_back({lora->l, scale});
    ctx->apply();
    return LLM_OK;
  });
}

llm_status llm_context_remove_lora(llm_context* ctx, llm_lora* lora) {
  if (!live(ctx) || !live(lora)) return invalid("llm_context_remove_lora: need a live context and adapter");
  for (size_t i = 0; i < ctx->loras.size(); i++)
    if (ctx->loras[i].first == lora->l) {
      ctx->loras.erase(ctx->loras.begin() + long(i));
      return guard([&] {
        ctx->apply();
        return LLM_OK;
      });
    }
  return invalid("llm_context_remove_lora: the adapter is not applied to this context");
}

namespace {
// The checks llm_eval and llm_embed share; LLM_OK when the tokens may go in
// at the next positions.
llm_status check_tokens(llm_context* ctx, const llm_token* tokens, int32_t n, const char* fn) {
  if (!live(ctx) || !tokens || n <= 0) return invalid(std::string(fn) + ": need a live context and at least one token");
  const int64_t vocab = ctx->s->n_vocab();
  for (int32_t i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= vocab) return invalid(std::string(fn) + ": token id out of range");
  return LLM_OK;
}
}  // namespace

llm_status llm_eval(llm_context* ctx, const llm_token* tokens, int32_t n, int all_logits) {
  if (llm_status st = check_tokens(ctx, tokens, n, "llm_eval")) return st;
  if (ctx->s->n_past() + n > ctx->s->n_ctx()) {
    last_error() = "llm_eval: " + std::to_string(n) + " tokens do not fit the context";
    return LLM_ERR_CONTEXT_FULL;
  }
  ctx->last_rows = 0;
  return guard([&] {
    ctx->s->eval(tokens, (size_t)n, all_logits != 0);
    ctx->last_rows = all_logits ? n : 1;
    return LLM_OK;
  });
}

int32_t llm_embed(llm_context* ctx, const llm_token* tokens, int32_t n, int32_t pooling, int normalize,
                  float* out, int32_t capacity) {
  if (check_tokens(ctx, tokens, n, "llm_embed") != LLM_OK) return INT32_MIN;
  if (pooling != LLM_POOL_MEAN && pooling != LLM_POOL_LAST && pooling != LLM_POOL_NONE) {
    invalid("llm_embed: unknown pooling");
    return INT32_MIN;
  }
  if (n > ctx->s->n_ctx()) {
    last_error() = "llm_embed: " + std::to_string(n) + " tokens do not fit the context";
    return INT32_MIN;
  }
  const int64_t E = ctx->model->hp.n_embd;
  const int64_t need = pooling == LLM_POOL_NONE ? E * n : E;
  if (need > INT32_MAX) {
    invalid("llm_embed: the result has more than INT32_MAX values");
    return INT32_MIN;
  }
  if (capacity < 0 || (!out && capacity > 0)) {
    invalid("llm_embed: bad output buffer");
    return INT32_MIN;
  }
  if (capacity < need) {
    ok();
    return -(int32_t)need;
  }
  ctx->last_rows = 0;
  const llm_status st = guard([&] {
    ctx->s->rewind(0);
    std::vector<float> h;
    try {
      h = ctx->s->eval_hidden(tokens, (size_t)n);
    } catch (...) {
      ctx->s->rewind(0);
      throw;
    }
    const int64_t rows = pooling == LLM_POOL_NONE ? n : 1;
    for (int64_t r = 0; r < rows; r++) {
      float* o = out + r * E;
      if (pooling == LLM_POOL_MEAN) {
        std::vector<double> acc((size_t)E, 0.0);
        for (int64_t t = 0; t < n; t++)
          for (int64_t e = 0; e < E; e++) acc[(size_t)e] += h[(size_t)(t * E + e)];
        for (int64_t e = 0; e < E; e++) o[e] = (float)(acc[(size_t)e] / (double)n);
      } else {
        const int64_t t = pooling == LLM_POOL_LAST ? n - 1 : r;
        std::memcpy(o, h.data() + t * E, (size_t)E * sizeof(float));
      }
      if (normalize) {
        double ss = 0;
        for (int64_t e = 0; e < E; e++) ss += (double)o[e] * o[e];
        const double inv = ss > 0 ? 1.0 / std::sqrt(ss) : 0.0;
        for (int64_t e = 0; e < E; e++) o[e] = (float)(o[e] * inv);
      }
    }
    return LLM_OK;
  });
  return st == LLM_OK ? (int32_t)need : INT32_MIN;
}

const float* llm_get_logits(llm_context* ctx, int32_t i) {
  if (!live(ctx)) {
    invalid("llm_get_logits: not a live context handle");
    return nullptr;
  }
  if (ctx->last_rows == 0) {
    invalid("llm_get_logits: no logits (evaluate first; a rewind past the last token drops them)");
    return nullptr;
  }
  if (i < 0) i = ctx->last_rows - 1;
  if (i >= ctx->last_rows) {
    invalid("llm_get_logits: row " + std::to_string(i) + " was not kept (all_logits)");
    return nullptr;
  }
  ok();
  return ctx->s->all_logits().data() + (size_t)i * (size_t)ctx->s->n_vocab();
}

int32_t llm_n_past(const llm_context* ctx) {
  if (!live(ctx)) return invalid("llm_n_past: not a live context handle"), 0;
  ok();
  return (int32_t)ctx->s->n_past();
}
int32_t llm_n_ctx(const llm_context* ctx) {
  if (!live(ctx)) return invalid("llm_n_ctx: not a live context handle"), 0;
  ok();
  return (int32_t)ctx->s->n_ctx();
}

llm_status llm_rewind(llm_context* ctx, int32_t n_past) {
  if (!live(ctx) || n_past < 0 || n_past > ctx->s->n_past()) return invalid("llm_rewind: position not in the cache");
  // The logits belong to the last evaluated token: gone with it.
  if (n_past < ctx->s->n_past()) ctx->last_rows = 0;
  ctx->s->rewind(n_past);
  ok();
  return LLM_OK;
}

llm_sampler_params llm_sampler_default_params(void) {
  ok();
  llm_sampler_params p;
  copy_sampling(llm::SamplingParams{}, p);
  return p;
}

llm_status llm_sampler_new(const llm_model* m, const llm_sampler_params* p, llm_sampler** out) {
  if (!out) return invalid("llm_sampler_new: NULL argument");
  *out = nullptr;
  if (!live(m)) return invalid("llm_sampler_new: not a live model handle");
  llm_sampler_params d = p ? *p : llm_sampler_default_params();
  return guard(
      [&] {
        llm::SamplingParams sp;
        copy_sampling(d, sp);
        auto s = std::make_unique<llm_sampler>();
        s->model = m->m;
        s->s = std::make_unique<llm::Sampler>(sp, m->m->hp.n_vocab);  // checks the ranges
        remember(s.get());
        *out = s.release();
        return LLM_OK;
      },
      LLM_ERR_INVALID_ARGUMENT);
}

void llm_sampler_free(llm_sampler* s) {
  ok();
  if (s && forget(s)) delete s;
}

llm_token llm_sample(llm_sampler* s, llm_context* ctx) {
  if (!live(s) || !live(ctx)) {
    invalid("llm_sample: not a live sampler and context");
    return -1;
  }
  // Its logits are the context's model's vocabulary: another model's may be shorter.
  if (s->model != ctx->model) {
    invalid("llm_sample: the sampler was made for another model than the context's");
    return -1;
  }
  const float* l = llm_get_logits(ctx, -1);
  if (!l) {
    invalid("llm_sample: no logits (evaluate first; a rewind past the last token drops them)");
    return -1;
  }
  llm_token t = -1;
  guard([&] {
    t = s->s->sample(l);
    s->s->accept(t);
    return LLM_OK;
  });
  return t;
}

void llm_sampler_accept(llm_sampler* s, llm_token token) {
  if (live(s) && token >= 0 && token < s->model->hp.n_vocab) {
    s->s->accept(token);
    ok();
  } else {
    invalid("llm_sampler_accept: not a live sampler or the token is out of range");
  }
}

}  // extern "C"
