#pragma once
// What the C API's sources share: the handles' structs, the live-handle
// registry, and the wrapper that turns exceptions into a status and the
// thread's last error.
#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "llm.h"
#include "llm/chat.h"
#include "llm/error.h"
#include "llm/lora.h"
#include "llm/model.h"
#include "llm/sampling.h"
#include "llm/session.h"
#include "llm/stop.h"

// Contexts, samplers, adapters and streams share their model: freeing the
// model's handle first is allowed, its memory goes with the last handle that
// uses it.
struct llm_model {
  std::shared_ptr<llm::Model> m;
  std::unique_ptr<llm::ChatFormat> chat;  // read-only: shared by the model's users
  int n_threads = 0;                      // contexts' default
};
struct llm_context {
  std::shared_ptr<llm::Model> model;  // declared first: destroyed after the session that uses it
  std::vector<std::pair<std::shared_ptr<llm::Lora>, float>> loras;  // before the session too
  std::unique_ptr<llm::Session> s;
  int32_t last_rows = 0;  // rows of logits the last eval left (0: none)
  std::atomic<bool> cancel{false};
  int (*abort)(void*) = nullptr;
  void* abort_user = nullptr;
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
struct llm_stream {
  std::shared_ptr<llm::Model> model;
  std::unique_ptr<llm::StreamDecoder> dec;
  std::unique_ptr<llm::StopMatcher> stop;
  std::string out;  // what the last call returned
};

namespace capi {

void remember(const void* p);
bool forget(const void* p);  // false: not a live handle
bool live(const void* p);

// The calling thread's last error; ok() clears it (every call that succeeds).
std::string& last_error();
inline void ok() { last_error().clear(); }
llm_status invalid(const std::string& what);

// Runs f (returning llm_status); an llm::Error becomes on_error's status, a
// cancel LLM_ERR_CANCELLED, anything else LLM_ERR_INTERNAL, with the message.
template <class F>
llm_status guard(F&& f, llm_status on_error = LLM_ERR_INTERNAL) {
  try {
    ok();
    return f();
  } catch (const llm::Cancelled& e) {
    last_error() = e.what();
    return LLM_ERR_CANCELLED;
  } catch (const llm::Error& e) {
    last_error() = e.what();
    return on_error;
  } catch (const std::bad_alloc&) {
    last_error() = "out of memory";
    return LLM_ERR_INTERNAL;
  } catch (const std::exception& e) {
    last_error() = e.what();
    return LLM_ERR_INTERNAL;
  } catch (...) {
    last_error() = "unknown error";
    return LLM_ERR_INTERNAL;
  }
}

// Copies bytes out C-style: the length, or -(needed) when buf is too small.
inline int32_t copy_out(const std::string& s, char* buf, int32_t size) {
  if (s.size() > (size_t)INT32_MAX) return INT32_MIN;
  if (!buf || size < (int32_t)s.size()) return -(int32_t)s.size();
  std::memcpy(buf, s.data(), s.size());
  return (int32_t)s.size();
}

// Copies token ids out C-style: the count, or -(count) when capacity is too
// small.
inline int32_t copy_tokens(const std::vector<int32_t>& ids, llm_token* tokens, int32_t capacity) {
  if (ids.size() > (size_t)INT32_MAX) throw llm::Error("too many tokens");
  if ((int32_t)ids.size() > capacity) return -(int32_t)ids.size();
  std::copy(ids.begin(), ids.end(), tokens);
  return (int32_t)ids.size();
}

}  // namespace capi
