// ./quantize's library: every 2-D tensor becomes the reference quantizer's
// bytes (the quantizers themselves are byte-identical to the gguf package:
// tests/test_types.cpp), 1-D tensors stay F32, metadata is carried over, the
// type rules hold, and bad input is refused.
#include <doctest/doctest.h>

#include "helpers.h"

#include <filesystem>
#include <fstream>

#include "ggml/quants.h"
#include "llm/convert.h"
#include "llm/gguf.h"
#include "llm/quantize.h"

namespace fs = std::filesystem;
using llm::gguf::File;

namespace {

using th::data_dir;
using th::temp_dir;

std::string f32_model(const std::string& fixture) {
  fs::path out = temp_dir() / (fixture + "-f32.gguf");
  if (!fs::exists(out)) {
    llm::ConvertOptions o;
    o.model_dir = data_dir() + "/hf/" + fixture;
    o.out_path = out.string();
    o.outtype = ggml::Type::F32;
    llm::convert_hf_checkpoint(o);
  }
  return out.string();
}

std::string quantize(const std::string& in, ggml::Type t, bool pure, const std::string& tag = "") {
  llm::QuantizeOptions o;
  o.in_path = in;
  o.out_path = (temp_dir() / (fs::path(in).stem().string() + "-" + ggml::type_name(t) + (pure ? "-pure" : "") + tag + ".gguf")).string();
  o.type = t;
  o.pure = pure;
  size_t calls = 0;
  o.progress = [&](size_t d, size_t, const llm::QuantizeOptions::TensorReport& r) {
    CHECK(d == ++calls);
    CHECK(r.rms_error >= 0);
    if (r.to == r.from) CHECK(r.rms_error == 0);
  };
  auto s = llm::quantize_file(o);
  CHECK(s.out_bytes == fs::file_size(o.out_path));
  return o.out_path;
}

}  // namespace

TEST_CASE("quantized tensors are the reference quantizer's bytes; the rest is carried over") {
  const std::string in = f32_model("gptneox_st");
  auto src = File::open(in);
  for (ggml::Type t : {ggml::Type::Q8_0, ggml::Type::Q4_0, ggml::Type::Q4_1, ggml::Type::Q5_0, ggml::Type::Q5_1,
                       ggml::Type::F16, ggml::Type::BF16}) {
    CAPTURE(ggml::type_name(t));
    auto out = File::open(quantize(in, t, true));
    for (const auto& [k, v] : src->metadata()) {
      if (k == "general.file_type") continue;
      const auto* got = out->find(k);
      REQUIRE(got != nullptr);
      CHECK(*got == v);
    }
    REQUIRE(out->tensors().size() == src->tensors().size());
    for (const auto& st : src->tensors()) {
      CAPTURE(st.name);
      const auto* ot = out->find_tensor(st.name);
      REQUIRE(ot != nullptr);
      const ggml::Type want_type = st.n_dims == 1 ? ggml::Type::F32 : t;
      CHECK(ot->type == want_type);
      const int64_t n = st.ne[0] * st.ne[1] * st.ne[2] * st.ne[3];
      std::vector<uint8_t> want(ggml::row_size(want_type, st.ne[0]) * (size_t)(n / st.ne[0]));
      ggml::traits(want_type).from_float((const float*)st.data, want.data(), n);
      REQUIRE(ot->nbytes == want.size());
      CHECK(std::memcmp(ot->data, want.data(), want.size()) == 0);
    }
  }
}

TEST_CASE("4/5-bit types keep the output matrix (or the tied embedding) at q8_0 unless --pure") {
  auto untied = File::open(quantize(f32_model("gptneox_st"), ggml::Type::Q4_0, false));
  CHECK(untied->find_tensor("output.weight")->type == ggml::Type::Q8_0);
  CHECK(untied->find_tensor("token_embd.weight")->type == ggml::Type::Q4_0);
  CHECK(untied->find_tensor("blk.0.attn_qkv.weight")->type == ggml::Type::Q4_0);
  CHECK(untied->get_uint("general.file_type") == 2);
  CHECK(untied->get_uint("general.quantization_version") == 2);
  auto tied = File::open(quantize(f32_model("llama_bin"), ggml::Type::Q4_1, false));
  CHECK(tied->find_tensor("output.weight") == nullptr);
  CHECK(tied->find_tensor("token_embd.weight")->type == ggml::Type::Q8_0);
  auto q8 = File::open(quantize(f32_model("gptneox_st"), ggml::Type::Q8_0, false));
  CHECK(q8->find_tensor("output.weight")->type == ggml::Type::Q8_0);
}

TEST_CASE("bad quantize input is refused with one line") {
  auto expect = [](auto fn, const std::string& needle) {
    try {
      fn();
      FAIL("no error");
    } catch (const llm::Error& e) {
      std::string m = e.what();
      CHECK_MESSAGE(m.find(needle) != std::string::npos, m);
      CHECK(m.find('\n') == std::string::npos);
    }
  };
  expect([] { llm::parse_quant_type("q3_k"); }, "not one of");
  const std::string q = quantize(f32_model("gptneox_st"), ggml::Type::Q8_0, true, "-src");
  llm::QuantizeOptions o;
  o.in_path = q;
  o.out_path = (temp_dir() / "requant.gguf").string();
  o.type = ggml::Type::Q4_0;
  expect([&] { llm::quantize_file(o); }, "--allow-requantize");
  CHECK(!fs::exists(o.out_path));
  o.allow_requantize = true;
  bool warned = false;
  o.warn = [&](const std::string&) { warned = true; };
  llm::quantize_file(o);
  CHECK(warned);
  // Rows of 16 values are not whole 32-blocks.
  llm::gguf::Writer w;
  w.set("general.architecture", llm::gguf::Value::make_string("llama"));
  std::vector<float> x(16 * 4, 0.5f);
  int64_t ne[2] = {16, 4};
  w.add_tensor("w.weight", ggml::Type::F32, ne, 2, x.data());
  const std::string odd = (temp_dir() / "odd.gguf").string();
  w.write(odd);
  o.in_path = odd;
  o.allow_requantize = false;
  expect([&] { llm::quantize_file(o); }, "not a multiple of q4_0's block of 32");
  o.in_path = (temp_dir() / "missing.gguf").string();
  expect([&] { llm::quantize_file(o); }, "missing.gguf");
}
