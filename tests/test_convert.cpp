// ./convert's library: every Hugging Face fixture (scripts/gen_hf_fixtures.py)
// converts; tensors equal the reference the script computed with numpy after
// llama.cpp's transforms, keys equal llama.cpp's, the tokenizer reproduces
// the reference libraries' ids; corrupt checkpoints are refused cleanly.
#include <doctest/doctest.h>

#include "ggml/cpu.h"
#include "ggml/quants.h"
#include "helpers.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "ggml/fp16.h"
#include "ggml/quants.h"
#include "llm/checkpoint.h"
#include "llm/convert.h"
#include "llm/gguf.h"
#include "llm/tokenizer.h"

using json = nlohmann::json;
namespace fs = std::filesystem;
using llm::gguf::File;

namespace {

using th::data_dir;
using th::temp_dir;

json load_json(const fs::path& p) {
  std::ifstream f(p);
  REQUIRE_MESSAGE(f.good(), "missing " << p);
  return json::parse(f);
}

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

void write_bytes(const fs::path& p, const std::string& b) { std::ofstream(p, std::ios::binary) << b; }

const char* FIXTURES[] = {"llama_st", "llama_bin", "gptneox_st", "gptneox_bin", "gptj_st", "gptj_bin"};

std::string convert(const std::string& fixture, ggml::Type t, bool vocab_only = false) {
  llm::ConvertOptions o;
  o.model_dir = data_dir() + "/hf/" + fixture;
  o.out_path = (temp_dir() / (fixture + "-" + ggml::type_name(t) + (vocab_only ? "-vocab" : "") + ".gguf")).string();
  o.outtype = t;
  o.vocab_only = vocab_only;
  size_t calls = 0, total = 0;
  o.progress = [&](size_t d, size_t n, const std::string&) {
    CHECK(d == ++calls);
    total = n;
  };
  auto s = llm::convert_hf_checkpoint(o);
  CHECK(calls == total);
  CHECK(s.n_tensors == total);
  CHECK(fs::file_size(o.out_path) == s.out_bytes);
  CHECK(!fs::exists(o.out_path + ".tmp"));
  return o.out_path;
}

std::string expect_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const llm::Error& e) {
    std::string m = e.what();
    CHECK(m.find('\n') == std::string::npos);
    return m;
  }
  FAIL("no error raised");
  return "";
}

}  // namespace

TEST_CASE("every fixture converts to F32 and equals the reference tensors, keys and tokenizer") {
  for (const char* name : FIXTURES) {
    CAPTURE(name);
    const fs::path dir = fs::path(data_dir()) / "hf" / name;
    auto out = File::open(convert(name, ggml::Type::F32));
    auto ref = File::open((dir / "expected.gguf").string());
    const json fx = load_json(dir / "fixture.json");

    CHECK(out->get_string("general.architecture") == fx["arch"].get<std::string>());
    for (const auto& [k, v] : ref->metadata()) {
      if (k.rfind("general.", 0) == 0) continue;
      CAPTURE(k);
      const auto* got = out->find(k);
      REQUIRE(got != nullptr);
      CHECK(*got == v);
    }
    REQUIRE(out->tensors().size() == ref->tensors().size());
    for (const auto& rt : ref->tensors()) {
      CAPTURE(rt.name);
      const auto* t = out->find_tensor(rt.name);
      REQUIRE(t != nullptr);
      CHECK(t->type == ggml::Type::F32);
      CHECK(t->n_dims == rt.n_dims);
      for (int d = 0; d < 4; d++) CHECK(t->ne[d] == rt.ne[d]);
      REQUIRE(t->nbytes == rt.nbytes);
      CHECK(std::memcmp(t->data, rt.data, rt.nbytes) == 0);
    }

    // The tokenizer in the GGUF gives the reference library's ids.
    llm::Tokenizer tok(llm::Vocab::from_gguf(*out));
    const std::string tk = fx["tokenizer"];
    const json expected = load_json(fs::path(data_dir()) / "tokenizer" / tk / "expected.json");
    const std::vector<std::string> strings = load_json(fs::path(data_dir()) / "tokenizer" / "hard_strings.json");
    for (size_t i = 0; i < strings.size(); i++) {
      CAPTURE(strings[i]);
      CHECK(tok.encode(strings[i], false, false) == expected["raw"][i].get<std::vector<int32_t>>());
      if (expected.contains("special"))
        CHECK(tok.encode(strings[i], false, true) == expected["special"][i].get<std::vector<int32_t>>());
    }
    const llm::Vocab& v = tok.vocab();
    CHECK(v.size() == (int32_t)out->get_uint(std::string(fx["arch"].get<std::string>()) + ".vocab_size"));
    CHECK(v.chat_template.find("<|im_start|>") != std::string::npos);
    if (fx["arch"] == "llama") {
      CHECK(v.model == llm::Vocab::Model::SPM);
      CHECK(v.tokens[v.bos] == "<s>");
      CHECK(v.add_bos);
      CHECK(tok.encode("hi", true, false)[0] == v.bos);
    } else {
      CHECK(v.model == llm::Vocab::Model::BPE);
      CHECK(v.tokens[v.eos] == "<|endoftext|>");
      CHECK(!v.add_bos);
    }
  }
}

TEST_CASE("F16, BF16 and Q8_0 outputs are the reference rounded or quantized") {
  for (ggml::Type t : {ggml::Type::F16, ggml::Type::BF16, ggml::Type::Q8_0}) {
    for (const char* name : {"llama_st", "gptneox_bin", "gptj_st"}) {
      CAPTURE(name);
      CAPTURE(ggml::type_name(t));
      auto out = File::open(convert(name, t));
      auto ref = File::open((fs::path(data_dir()) / "hf" / name / "expected.gguf").string());
      CHECK(out->get_uint("general.file_type") ==
            (t == ggml::Type::F16 ? 1u : t == ggml::Type::BF16 ? 32u : 7u));
      for (const auto& rt : ref->tensors()) {
        CAPTURE(rt.name);
        const auto* o = out->find_tensor(rt.name);
        REQUIRE(o != nullptr);
        const float* x = (const float*)rt.data;
        const int64_t n = (int64_t)(rt.nbytes / 4);
        if (rt.n_dims == 1) {
          CHECK(o->type == ggml::Type::F32);
          CHECK(std::memcmp(o->data, rt.data, rt.nbytes) == 0);
          continue;
        }
        CHECK(o->type == t);
        std::vector<uint8_t> want(ggml::row_size(t, rt.ne[0]) * (size_t)(n / rt.ne[0]));
        ggml::traits(t).from_float(x, want.data(), n);
        REQUIRE(o->nbytes == want.size());
        CHECK(std::memcmp(o->data, want.data(), want.size()) == 0);
        // And an independent spot check of the encodings themselves.
        if (t == ggml::Type::F16) CHECK(((const uint16_t*)o->data)[1] == ggml::fp32_to_fp16(x[1]));
        if (t == ggml::Type::BF16) CHECK(((const uint16_t*)o->data)[1] == ggml::fp32_to_bf16(x[1]));
      }
    }
  }
}

TEST_CASE("a vocab-only file carries the tokenizer and no tensors") {
  auto out = File::open(convert("gptneox_st", ggml::Type::F16, true));
  CHECK(out->tensors().empty());
  llm::Tokenizer tok(llm::Vocab::from_gguf(*out));
  CHECK(tok.decode(tok.encode("Hello world 123", false, false)) == "Hello world 123");
}

TEST_CASE("a PyTorch archive's tied weights share one storage and are read in place") {
  auto ck = llm::Checkpoint::open_dir(data_dir() + "/hf/llama_bin");
  const auto* e = ck->find("model.embed_tokens.weight");
  const auto* h = ck->find("lm_head.weight");
  REQUIRE(e != nullptr);
  REQUIRE(h != nullptr);
  CHECK(e->base == h->base);
  CHECK(e->dtype == llm::DType::F16);
  CHECK(e->to_f32() == h->to_f32());
}

TEST_CASE("a pickle that calls anything but a state dict's functions is refused") {
  std::string m = expect_error([] { llm::Checkpoint::open_pytorch({data_dir() + "/hf_bad/evil.bin"}); });
  CHECK(m.find("system") != std::string::npos);
}

TEST_CASE("bad checkpoints are refused with one clear line") {
  const fs::path src = fs::path(data_dir()) / "hf" / "gptj_st";
  auto copy_fixture = [&](const std::string& name) {
    fs::path d = temp_dir() / name;
    fs::remove_all(d);
    fs::copy(src, d);
    fs::remove(d / "expected.gguf");
    return d;
  };
  auto run = [&](const fs::path& d) {
    return expect_error([&] {
      llm::ConvertOptions o;
      o.model_dir = d.string();
      o.out_path = (d / "out.gguf").string();
      llm::convert_hf_checkpoint(o);
    });
  };
  {
    fs::path d = copy_fixture("arch");
    json c = load_json(d / "config.json");
    c["architectures"] = {"BertForMaskedLM"};
    write_bytes(d / "config.json", c.dump());
    CHECK(run(d).find("BertForMaskedLM") != std::string::npos);
    CHECK(!fs::exists(d / "out.gguf"));
  }
  {
    fs::path d = copy_fixture("shape");
    json c = load_json(d / "config.json");
    c["n_inner"] = 96;
    write_bytes(d / "config.json", c.dump());
    CHECK(run(d).find("has shape") != std::string::npos);
  }
  {
    fs::path d = copy_fixture("notok");
    fs::remove(d / "tokenizer.json");
    CHECK(run(d).find("no tokenizer") != std::string::npos);
  }
  {
    fs::path d = copy_fixture("noconfig");
    fs::remove(d / "config.json");
    CHECK(run(d).find("config.json") != std::string::npos);
  }
  {
    fs::path d = copy_fixture("badjson");
    write_bytes(d / "config.json", "{\"architectures\": [");
    CHECK(run(d).find("invalid JSON") != std::string::npos);
  }
  {
    fs::path d = copy_fixture("noweights");
    fs::remove(d / "model.safetensors");
    CHECK(run(d).find("no weights") != std::string::npos);
  }
}

TEST_CASE("truncated and bit-flipped safetensors and PyTorch files are refused or read, never a crash") {
  struct Case {
    fs::path file;
    bool torch;
  };
  const Case cases[] = {{fs::path(data_dir()) / "hf/gptj_bin/pytorch_model.bin", true},
                        {fs::path(data_dir()) / "hf/gptj_st/model.safetensors", false}};
  std::mt19937 rng(7);
  for (const auto& c : cases) {
    CAPTURE(c.file);
    const std::string good = read_bytes(c.file);
    const fs::path p = temp_dir() / (c.torch ? "t.bin" : "t.safetensors");
    auto open = [&] {
      auto ck = c.torch ? llm::Checkpoint::open_pytorch({p.string()}) : llm::Checkpoint::open_safetensors({p.string()});
      // Reading every tensor must stay inside the map (ASan would tell).
      double sum = 0;
      for (const auto& t : ck->tensors())
        for (float v : t.to_f32()) sum += v;
      return sum;
    };
    // Truncation at many points, always refused (the data is needed).
    for (size_t cut : {size_t(0), size_t(7), size_t(8), size_t(40), good.size() / 3, good.size() / 2, good.size() - 1}) {
      CAPTURE(cut);
      write_bytes(p, good.substr(0, cut));
      expect_error([&] { open(); });
    }
    // Random bit flips: an error or a successful read, nothing else.
    int refused = 0;
    for (int k = 0; k < 300; k++) {
      std::string bad = good;
      // Flip in the metadata region most of the time: that is where parsing happens.
      size_t region = c.torch ? bad.size() : std::min(bad.size(), size_t(8 + 4096));
      size_t at = rng() % region;
      bad[at] ^= (char)(1u << (rng() % 8));
      write_bytes(p, bad);
      try {
        open();
      } catch (const llm::Error& e) {
        refused++;
        CHECK(std::string(e.what()).find('\n') == std::string::npos);
      }
    }
    CHECK(refused > 0);
  }
}
