// The C API's handle rules (include/llm.h): live-handle checks, a model
// freed before its contexts, a sampler used with another model's context.
#include <doctest/doctest.h>

#include "helpers.h"

#include <cstring>
#include <filesystem>
#include <string>

#include "llm.h"
#include "llm/convert.h"

namespace {

std::string converted(const std::string& name) {
  auto out = th::temp_dir() / (name + "-capi.gguf");
  if (!std::filesystem::exists(out)) {
    llm::ConvertOptions o;
    o.model_dir = th::data_dir() + "/hf/" + name;
    o.out_path = out.string();
    o.outtype = ggml::Type::F32;
    llm::convert_hf_checkpoint(o);
  }
  return out.string();
}

}  // namespace

TEST_CASE("C API: a model freed before its context keeps serving it") {
  llm_model* m = nullptr;
  REQUIRE(llm_model_load(converted("llama_st").c_str(), &m) == LLM_OK);
  llm_context* c = nullptr;
  REQUIRE(llm_context_new(m, nullptr, &c) == LLM_OK);
  llm_sampler* s = nullptr;
  llm_sampler_params sp = llm_sampler_default_params();
  sp.temp = 0;
  REQUIRE(llm_sampler_new(m, &sp, &s) == LLM_OK);
  const llm_token prompt[3] = {1, 5, 9};
  REQUIRE(llm_eval(c, prompt, 3, 0) == LLM_OK);
  const llm_token want = llm_sample(s, c);  // greedy: the argmax, before the model handle goes
  REQUIRE(want >= 0);
  REQUIRE(llm_rewind(c, 0) == LLM_OK);
  llm_model_free(m);
  CHECK(llm_model_n_vocab(m) == 0);  // the handle is gone ...
  REQUIRE(llm_eval(c, prompt, 3, 0) == LLM_OK);  // ... the context still works (ASan would see a use after free)
  CHECK(llm_sample(s, c) == want);
  llm_sampler_free(s);
  llm_context_free(c);
}

TEST_CASE("C API: freed and made-up handles are refused, double frees are harmless") {
  llm_model* m = nullptr;
  REQUIRE(llm_model_load(converted("llama_st").c_str(), &m) == LLM_OK);
  llm_context* c = nullptr;
  REQUIRE(llm_context_new(m, nullptr, &c) == LLM_OK);
  llm_context_free(c);
  const llm_token t = 1;
  CHECK(llm_eval(c, &t, 1, 0) == LLM_ERR_INVALID_ARGUMENT);
  CHECK(std::string(llm_last_error()).find("live") != std::string::npos);
  CHECK(llm_get_logits(c, -1) == nullptr);
  CHECK(llm_n_ctx(c) == 0);
  llm_context_free(c);  // again: nothing happens
  int junk = 0;
  llm_context* fake = reinterpret_cast<llm_context*>(&junk);
  CHECK(llm_eval(fake, &t, 1, 0) == LLM_ERR_INVALID_ARGUMENT);
  llm_context* c2 = nullptr;
  CHECK(llm_context_new(reinterpret_cast<llm_model*>(&junk), nullptr, &c2) == LLM_ERR_INVALID_ARGUMENT);
  CHECK(c2 == nullptr);
  llm_model_free(m);
  llm_model_free(m);
}

TEST_CASE("C API: a sampler of one model is refused on another model's context") {
  llm_model *a = nullptr, *b = nullptr;
  REQUIRE(llm_model_load(converted("llama_st").c_str(), &a) == LLM_OK);
  REQUIRE(llm_model_load(converted("gptneox_st").c_str(), &b) == LLM_OK);
  llm_context* cb = nullptr;
  REQUIRE(llm_context_new(b, nullptr, &cb) == LLM_OK);
  llm_sampler* sa = nullptr;
  REQUIRE(llm_sampler_new(a, nullptr, &sa) == LLM_OK);
  const llm_token t = 1;
  REQUIRE(llm_eval(cb, &t, 1, 0) == LLM_OK);
  CHECK(llm_sample(sa, cb) == -1);
  CHECK(std::string(llm_last_error()).find("another model") != std::string::npos);
  llm_sampler_free(sa);
  llm_context_free(cb);
  llm_model_free(a);
  llm_model_free(b);
}
