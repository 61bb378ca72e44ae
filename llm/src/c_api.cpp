// The C API (include/llm.h): thin wrappers that turn every exception into a
// status and a thread-local message.
#include "llm.h"

#include <cmath>

#include "llm/lora.h"

#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_set>

#include "llm/model.h"
#include "llm/sampling.h"
#include "llm/session.h"

// Contexts and samplers share their model: freeing the model's handle
// first is allowed, its memory goes with the last handle that uses it.
struct llm_model {
  std::shared_ptr<llm::Model> m;
};
struct llm_context {
  std::shared_ptr<llm::Model> model;  // declared first: destroyed after the session that uses it
  std::vector<std::pair<std::shared_ptr<llm::Lora>, float>> loras;  // before the session too
  std::unique_ptr<llm::Session> s;
  int32_t last_rows = 0;
  void apply() {
    std::vector<std::pair<const llm::Lora*, float>> v;
    for (const auto& [l, sc] : loras) v.push_back({l.get(), sc});
    s->set_loras(v);
  }
};
struct llm_lora {
  std::shared_ptr<llm::Model> model;
  std::shared_ptr<llm::Lora> l;
};
struct llm_sampler {
  std::shared_ptr<llm::Model> model;
  std::unique_ptr<llm::Sampler> s;
};

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
void remember(const void* p) {
  std::lock_guard<std::mutex> l(handles().mu);
  handles().live.insert(p);
}
bool forget(const void* p) {  // false: not a live handle
  std::lock_guard<std::mutex> l(handles().mu);
  return handles().live.erase(p) == 1;
}
bool live(const void* p) {
  if (!p) return false;
  std::lock_guard<std::mutex> l(handles().mu);
  return handles().live.count(p) == 1;
}

thread_local std::string g_error;

template <class F>
llm_status guard(F&& f) {
  try {
    g_error.clear();
    return f();
  } catch (const llm::Error& e) {
    g_error = e.what();
    return LLM_ERR_FILE;
  } catch (const std::bad_alloc&) {
    g_error = "out of memory";
    return LLM_ERR_INTERNAL;
  } catch (const std::exception& e) {
    g_error = e.what();
    return LLM_ERR_INTERNAL;
  } catch (...) {
    g_error = "unknown error";
    return LLM_ERR_INTERNAL;
  }
}

llm_status invalid(const char* what) {
  g_error = what;
  return LLM_ERR_INVALID_ARGUMENT;
}

// Copies bytes out C-style: the length, or -(needed) when buf is too small.
int32_t copy_out(const std::string& s, char* buf, int32_t size) {
  if (s.size() > (size_t)INT32_MAX) return INT32_MIN;
  if (!buf || size < (int32_t)s.size()) return -(int32_t)s.size();
  std::memcpy(buf, s.data(), s.size());
  return (int32_t)s.size();
}

}  // namespace

extern "C" {

const char* llm_last_error(void) { return g_error.c_str(); }

llm_status llm_model_load(const char* path, llm_model** out) {
  if (!path || !out) return invalid("llm_model_load: NULL argument");
  *out = nullptr;
  return guard([&] {
    auto m = std::make_unique<llm_model>();
    m->m = llm::Model::load(path);
    remember(m.get());
    *out = m.release();
    return LLM_OK;
  });
}

void llm_model_free(llm_model* model) {
  if (model && forget(model)) delete model;
}

int32_t llm_model_n_vocab(const llm_model* m) { return live(m) ? (int32_t)m->m->hp.n_vocab : 0; }
int32_t llm_model_n_ctx_train(const llm_model* m) { return live(m) ? (int32_t)m->m->hp.n_ctx_train : 0; }
int32_t llm_model_n_embd(const llm_model* m) { return live(m) ? (int32_t)m->m->hp.n_embd : 0; }
llm_token llm_token_bos(const llm_model* m) { return live(m) ? m->m->tokenizer->vocab().bos : -1; }
llm_token llm_token_eos(const llm_model* m) { return live(m) ? m->m->tokenizer->vocab().eos : -1; }

int32_t llm_model_desc(const llm_model* m, char* buf, int32_t size) {
  if (!live(m) || !buf || size <= 0) return 0;
  return std::snprintf(buf, (size_t)size, "%s %s %.1fM", llm::arch_name(m->m->hp.arch), m->m->type_name().c_str(),
                       m->m->n_params() / 1e6);
}

int32_t llm_tokenize(const llm_model* m, const char* text, size_t len, int add_special, int parse_special,
                     llm_token* tokens, int32_t capacity) {
  if (!live(m) || (!text && len) || capacity < 0 || (!tokens && capacity > 0)) {
    invalid("llm_tokenize: bad argument");
    return INT32_MIN;
  }
  int32_t result = INT32_MIN;
  guard([&] {
    auto ids = m->m->tokenizer->encode(std::string_view(text ? text : "", len), add_special != 0, parse_special != 0);
    if (ids.size() > (size_t)INT32_MAX) throw llm::Error("too many tokens");
    if ((int32_t)ids.size() > capacity) {
      result = -(int32_t)ids.size();
    } else {
      std::copy(ids.begin(), ids.end(), tokens);
      result = (int32_t)ids.size();
    }
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
  *out = nullptr;
  llm_context_params d = p ? *p : llm_context_default_params();
  if (d.n_ctx < 0 || d.n_batch < 0 || d.n_threads < 0) return invalid("llm_context_new: negative parameter");
  return guard([&] {
    llm::SessionParams sp;
    sp.n_ctx = d.n_ctx;
    sp.n_batch = d.n_batch > 0 ? d.n_batch : 512;
    sp.n_threads = d.n_threads;
    sp.kv_type = d.kv_f32 ? ggml::Type::F32 : ggml::Type::F16;
    auto c = std::make_unique<llm_context>();
    c->model = m->m;
    c->s = std::make_unique<llm::Session>(*c->model, sp);
    remember(c.get());
    *out = c.release();
    return LLM_OK;
  });
}

void llm_context_free(llm_context* ctx) {
  if (ctx && forget(ctx)) delete ctx;
}

llm_status llm_lora_load(const llm_model* m, const char* path, llm_lora** out) {
  if (!path || !out) return invalid("llm_lora_load: NULL argument");
  *out = nullptr;
  if (!live(m)) return invalid("llm_lora_load: not a live model handle");
  return guard([&] {
    auto h = std::make_unique<llm_lora>();
    h->model = m->m;
    h->l = llm::Lora::load(*h->model, path);
    remember(h.get());
    *out = h.release();
    return LLM_OK;
  });
}

void llm_lora_free(llm_lora* lora) {
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

llm_status llm_eval(llm_context* ctx, const llm_token* tokens, int32_t n, int all_logits) {
  if (!live(ctx) || !tokens || n <= 0) return invalid("llm_eval: need a live context and at least one token");
  const int64_t vocab = ctx->s->n_vocab();
  for (int32_t i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= vocab) return invalid("llm_eval: token id out of range");
  if (ctx->s->n_past() + n > ctx->s->n_ctx()) {
    g_error = "llm_eval: " + std::to_string(n) + " tokens do not fit the context";
    return LLM_ERR_CONTEXT_FULL;
  }
  return guard([&] {
    ctx->s->eval(tokens, (size_t)n, all_logits != 0);
    ctx->last_rows = all_logits ? n : 1;
    return LLM_OK;
  });
}

const float* llm_get_logits(llm_context* ctx, int32_t i) {
  if (!live(ctx) || ctx->last_rows == 0) return nullptr;
  if (i < 0) i = ctx->last_rows - 1;
  if (i >= ctx->last_rows) return nullptr;
  return ctx->s->all_logits().data() + (size_t)i * (size_t)ctx->s->n_vocab();
}

int32_t llm_n_past(const llm_context* ctx) { return live(ctx) ? (int32_t)ctx->s->n_past() : 0; }
int32_t llm_n_ctx(const llm_context* ctx) { return live(ctx) ? (int32_t)ctx->s->n_ctx() : 0; }

llm_status llm_rewind(llm_context* ctx, int32_t n_past) {
  if (!live(ctx) || n_past < 0 || n_past > ctx->s->n_past()) return invalid("llm_rewind: position not in the cache");
  ctx->s->rewind(n_past);
  return LLM_OK;
}

llm_sampler_params llm_sampler_default_params(void) {
  llm::SamplingParams d;
  llm_sampler_params p;
  p.temp = d.temp;
  p.top_k = d.top_k;
  p.top_p = d.top_p;
  p.min_p = d.min_p;
  p.repeat_penalty = d.repeat_penalty;
  p.frequency_penalty = d.frequency_penalty;
  p.presence_penalty = d.presence_penalty;
  p.penalty_last_n = d.penalty_last_n;
  p.seed = d.seed;
  return p;
}

llm_status llm_sampler_new(const llm_model* m, const llm_sampler_params* p, llm_sampler** out) {
  if (!out) return invalid("llm_sampler_new: NULL argument");
  *out = nullptr;
  if (!live(m)) return invalid("llm_sampler_new: not a live model handle");
  llm_sampler_params d = p ? *p : llm_sampler_default_params();
  return guard([&] {
    llm::SamplingParams sp;
    sp.temp = d.temp;
    sp.top_k = d.top_k;
    sp.top_p = d.top_p;
    sp.min_p = d.min_p;
    sp.repeat_penalty = d.repeat_penalty;
    sp.frequency_penalty = d.frequency_penalty;
    sp.presence_penalty = d.presence_penalty;
    sp.penalty_last_n = d.penalty_last_n;
    sp.seed = d.seed;
    auto s = std::make_unique<llm_sampler>();
    s->model = m->m;
    s->s = std::make_unique<llm::Sampler>(sp, m->m->hp.n_vocab);
    remember(s.get());
    *out = s.release();
    return LLM_OK;
  });
}

void llm_sampler_free(llm_sampler* s) {
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
    invalid("llm_sample: no logits (evaluate first)");
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
  if (live(s) && token >= 0 && token < s->model->hp.n_vocab) s->s->accept(token);
}

}  // extern "C"
