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

TEST_CASE("C API: LoRA adapters applied, rescaled and removed without merging") {
  llm_model *m = nullptr, *other = nullptr;
  REQUIRE(llm_model_load(converted("llama_st").c_str(), &m) == LLM_OK);
  REQUIRE(llm_model_load(converted("gptneox_st").c_str(), &other) == LLM_OK);
  llm_lora* a = nullptr;
  REQUIRE(llm_lora_load(m, (th::data_dir() + "/lora/llama").c_str(), &a) == LLM_OK);
  llm_lora* wrong = nullptr;
  CHECK(llm_lora_load(other, (th::data_dir() + "/lora/llama").c_str(), &wrong) == LLM_ERR_FILE);
  CHECK(std::string(llm_last_error()).find("unexpected tensor") != std::string::npos);
  CHECK(wrong == nullptr);
  llm_context* c = nullptr;
  REQUIRE(llm_context_new(m, nullptr, &c) == LLM_OK);
  const llm_token ids[] = {5, 17, 99, 230};
  auto logits = [&](void) {
    REQUIRE(llm_rewind(c, 0) == LLM_OK);
    REQUIRE(llm_eval(c, ids, 4, 0) == LLM_OK);
    const float* l = llm_get_logits(c, -1);
    return std::vector<float>(l, l + llm_model_n_vocab(m));
  };
  const auto base = logits();
  REQUIRE(llm_context_set_lora(c, a, 1.0f) == LLM_OK);
  const auto with = logits();
  REQUIRE(llm_context_set_lora(c, a, 0.0f) == LLM_OK);  // scale 0: the base again
  const auto zero = logits();
  REQUIRE(llm_context_set_lora(c, a, 1.0f) == LLM_OK);
  llm_lora_free(a);  // the context keeps it while applied
  CHECK(logits() == with);
  CHECK(zero == base);
  CHECK(with != base);
  llm_context* c2 = nullptr;
  REQUIRE(llm_context_new(other, nullptr, &c2) == LLM_OK);
  llm_lora* a2 = nullptr;
  REQUIRE(llm_lora_load(m, (th::data_dir() + "/lora/llama").c_str(), &a2) == LLM_OK);
  CHECK(llm_context_set_lora(c2, a2, 1.0f) == LLM_ERR_INVALID_ARGUMENT);  // another model's context
  CHECK(llm_context_remove_lora(c, a2) == LLM_ERR_INVALID_ARGUMENT);     // not applied there
  CHECK(llm_context_set_lora(c, a, 1.0f) == LLM_ERR_INVALID_ARGUMENT);   // freed handle
  llm_context* c3 = nullptr;
  REQUIRE(llm_context_new(m, nullptr, &c3) == LLM_OK);
  std::swap(c, c3);
  REQUIRE(llm_context_set_lora(c, a2, 1.0f) == LLM_OK);
  CHECK(logits() == with);
  REQUIRE(llm_context_remove_lora(c, a2) == LLM_OK);
  CHECK(logits() == base);
  std::swap(c, c3);
  llm_context_free(c3);
  llm_lora_free(a2);
  llm_context_free(c2);
  llm_context_free(c);
  llm_model_free(m);
  llm_model_free(other);
}
