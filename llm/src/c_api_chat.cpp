// The C API's chat templates and text streams (include/llm.h).
#include "c_api_internal.h"

using namespace capi;

namespace {

// The messages as the template's; false (with the error set) on a bad one.
bool read_messages(const llm_chat_message* msgs, int32_t n, std::vector<llm::ChatMessage>& out, const char* fn) {
  if (n < 0 || (!msgs && n > 0)) {
    invalid(std::string(fn) + ": bad message list");
    return false;
  }
  for (int32_t i = 0; i < n; i++) {
    if (!msgs[i].role || !msgs[i].content) {
      invalid(std::string(fn) + ": message " + std::to_string(i) + " has a NULL role or content");
      return false;
    }
    const std::string role = msgs[i].role;
    if (role != "system" && role != "user" && role != "assistant") {
      invalid(std::string(fn) + ": message " + std::to_string(i) + " has the role '" + role +
              "' (system, user or assistant)");
      return false;
    }
    out.push_back({role, msgs[i].content});
  }
  return true;
}

}  // namespace

extern "C" {

int32_t llm_chat_apply(const llm_model* m, const llm_chat_message* msgs, int32_t n, int add_assistant,
                       int add_default_system, char* buf, int32_t size) {
  std::vector<llm::ChatMessage> v;
  if (!live(m)) {
    invalid("llm_chat_apply: not a live model handle");
    return INT32_MIN;
  }
  if (!read_messages(msgs, n, v, "llm_chat_apply")) return INT32_MIN;
  int32_t r = INT32_MIN;
  guard([&] {
    if (add_default_system) v = m->chat->with_system(std::move(v));
    r = copy_out(m->chat->render(v, add_assistant != 0), buf, size);
    return LLM_OK;
  });
  return r;
}

int32_t llm_chat_tokenize(const llm_model* m, const llm_chat_message* msgs, int32_t n, int add_assistant,
                          int add_default_system, int add_bos, llm_token* tokens, int32_t capacity) {
  std::vector<llm::ChatMessage> v;
  if (!live(m) || capacity < 0 || (!tokens && capacity > 0)) {
    invalid("llm_chat_tokenize: bad model or token buffer");
    return INT32_MIN;
  }
  if (!read_messages(msgs, n, v, "llm_chat_tokenize")) return INT32_MIN;
  int32_t r = INT32_MIN;
  guard([&] {
    if (add_default_system) v = m->chat->with_system(std::move(v));
    std::vector<int32_t> ids;
    const llm::Vocab& voc = m->m->tokenizer->vocab();
    if (add_bos && voc.add_bos && voc.bos >= 0) ids.push_back(voc.bos);
    const auto body = m->chat->tokenize(*m->m->tokenizer, v, add_assistant != 0);
    ids.insert(ids.end(), body.begin(), body.end());
    r = copy_tokens(ids, tokens, capacity);
    return LLM_OK;
  });
  return r;
}

const char* llm_chat_stop_string(const llm_model* m, int32_t i) {
  if (!live(m)) {
    invalid("llm_chat_stop_string: not a live model handle");
    return nullptr;
  }
  ok();
  const auto& s = m->chat->stop_strings();
  return i >= 0 && (size_t)i < s.size() ? s[(size_t)i].c_str() : nullptr;
}

llm_status llm_stream_new(const llm_model* m, const char* const* stops, int32_t n, llm_stream** out) {
  if (!out) return invalid("llm_stream_new: NULL argument");
  *out = nullptr;
  if (!live(m)) return invalid("llm_stream_new: not a live model handle");
  if (n < 0 || (!stops && n > 0)) return invalid("llm_stream_new: bad stop-string list");
  std::vector<std::string> v;
  for (int32_t i = 0; i < n; i++) {
    if (!stops[i] || !*stops[i]) return invalid("llm_stream_new: stop string " + std::to_string(i) + " is NULL or empty");
    v.push_back(stops[i]);
  }
  return guard([&] {
    auto s = std::make_unique<llm_stream>();
    s->model = m->m;
    s->dec = std::make_unique<llm::StreamDecoder>(*s->model->tokenizer, false);
    s->stop = std::make_unique<llm::StopMatcher>(std::move(v));
    remember(s.get());
    *out = s.release();
    return LLM_OK;
  });
}

void llm_stream_free(llm_stream* s) {
  ok();
  if (s && forget(s)) delete s;
}

const char* llm_stream_push(llm_stream* s, llm_token token, int* stopped) {
  if (stopped) *stopped = 0;
  if (!live(s) || token < 0 || token >= s->model->hp.n_vocab) {
    invalid("llm_stream_push: not a live stream or the token is out of range");
    return nullptr;
  }
  const llm_status st = guard([&] {
    bool stop = false;
    s->out = s->stop->add(llm::utf8_sanitize(s->dec->push(token)), stop);
    if (stop) {
      s->dec = std::make_unique<llm::StreamDecoder>(*s->model->tokenizer, false);
      if (stopped) *stopped = 1;
    }
    return LLM_OK;
  });
  return st == LLM_OK ? s->out.c_str() : nullptr;
}

const char* llm_stream_flush(llm_stream* s) {
  if (!live(s)) {
    invalid("llm_stream_flush: not a live stream");
    return nullptr;
  }
  const llm_status st = guard([&] {
    bool stop = false;
    s->out = s->stop->add(llm::utf8_sanitize(s->dec->flush()), stop);
    s->out += s->stop->flush();
    s->dec = std::make_unique<llm::StreamDecoder>(*s->model->tokenizer, false);
    return LLM_OK;
  });
  return st == LLM_OK ? s->out.c_str() : nullptr;
}

}  // extern "C"
