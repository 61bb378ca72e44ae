// GGUF: reading a file written by the gguf Python package, writing it back
// byte for byte, and refusing corrupt or truncated files with clear errors.
#include <filesystem>
#include <fstream>

#include "ggml/cpu.h"
#include "ggml/quants.h"
#include "helpers.h"
#include "llm/gguf.h"

using namespace llm::gguf;
using llm::Error;

namespace {
std::string temp_path(const std::string& name) {
  static const auto dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("test_gguf_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return (dir / name).string();
}

void write_bytes(const std::string& path, const std::vector<unsigned char>& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

// Little-endian byte builder for hand-made (and broken) files.
struct Bytes {
  std::vector<unsigned char> b;
  template <class T> Bytes& put(T v) {
    const size_t at = b.size();
    b.resize(at + sizeof(T));
    std::memcpy(b.data() + at, &v, sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return put<uint32_t>(MAGIC).put<uint32_t>(version).put<uint64_t>(n_tensors).put<uint64_t>(n_kv);
  }
  Bytes& pad(size_t a = 32) {
    while (b.size() % a) b.push_back(0);
    return *this;
  }
};

std::string open_error(const std::vector<unsigned char>& bytes, const std::string& name = "bad.gguf") {
  const std::string p = temp_path(name);
  write_bytes(p, bytes);
  try {
    File::open(p);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("reads every value type and tensor of a gguf-package file") {
  auto f = File::open(th::data_path("gguf/reference.gguf"));
  CHECK(f->version() == 3);
  CHECK(f->alignment() == 32);
  CHECK(f->metadata().size() == 17);
  CHECK(f->metadata()[0].first == "general.architecture");
  CHECK(f->get_string("general.architecture") == "llama");
  CHECK(f->get_uint("test.u8") == 200);
  CHECK(f->find("test.u8")->type == ValueType::U8);
  CHECK(f->get_int("test.i8") == -100);
  CHECK(f->get_uint("test.u16") == 60000);
  CHECK(f->get_int("test.i16") == -30000);
  CHECK(f->get_uint("test.u32") == 4000000000u);
  CHECK(f->get_int("test.i32") == -2000000000);
  CHECK(f->get_float("test.f32") == 0.15625);
  CHECK(f->find("test.f32")->type == ValueType::F32);
  CHECK(f->get_uint("test.u64") == 18000000000000000000ull);
  CHECK(f->get_int("test.i64") == -9000000000000000000ll);
  CHECK(f->get_float("test.f64") == -2.5e-300);
  CHECK(f->find("test.bool")->u == 1);
  CHECK(f->get_string("test.string") == "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93");
  const Value& ai = f->get_array("test.arr_i32", ValueType::I32);
  REQUIRE(ai.size() == 3);
  CHECK(ai.int_at(1) == -2);
  CHECK(ai.at(1).i == -2);
  const Value& as = f->get_array("test.arr_str", ValueType::STRING);
  REQUIRE(as.size() == 3);
  CHECK(as.strs[1].empty());
  CHECK(as.strs[2] == "ccc");
  CHECK(as.at(2).s == "ccc");
  CHECK(f->get_array("test.arr_f32", ValueType::F32).float_at(1) == -1.25);
  const Value& an = f->get_array("test.arr_nested", ValueType::ARRAY);
  REQUIRE(an.size() == 2);
  CHECK(an.arr[0].elem == ValueType::I32);
  CHECK(an.arr[0].int_at(1) == 2);
  CHECK(an.arr[1].size() == 1);

  CHECK_THROWS_WITH_AS(f->get_uint("nope"), doctest::Contains("missing key 'nope'"), Error);
  CHECK_THROWS_WITH_AS(f->get_string("test.u8"), doctest::Contains("is a u8, expected a string"), Error);
  CHECK_THROWS_WITH_AS(f->get_array("test.arr_i32", ValueType::F32), doctest::Contains("array of i32"), Error);

  REQUIRE(f->tensors().size() == 4);
  const TensorInfo* t = f->find_tensor("t.f32");
  REQUIRE(t);
  CHECK(t->type == ggml::Type::F32);
  CHECK(t->n_dims == 2);
  CHECK(t->ne[0] == 5);
  CHECK(t->ne[1] == 3);
  CHECK(t->nbytes == 60);
  const TensorInfo* q = f->find_tensor("t.q8_0");
  REQUIRE(q);
  CHECK(q->type == ggml::Type::Q8_0);
  CHECK(q->ne[0] == 32);
  CHECK(q->ne[1] == 4);
  CHECK(q->nbytes == 136);
  const TensorInfo* ti = f->find_tensor("t.i32");
  REQUIRE(ti);
  for (int k = 0; k < 7; k++) CHECK(static_cast<const int32_t*>(ti->data)[k] == k);
  // Data are views into the file: the f16 tensor's bytes sit where the
  // package put them (absolute offset 864).
  const auto raw = th::read_file(th::data_path("gguf/reference.gguf"));
  const TensorInfo* h = f->find_tensor("t.f16");
  REQUIRE(h);
  CHECK(std::memcmp(h->data, raw.data() + 864, h->nbytes) == 0);
}

TEST_CASE("the writer refuses the CPU backend's own formats: no file holds them") {
  std::vector<unsigned char> data(272);
  const int64_t ne[1] = {256};
  Writer w;
  CHECK_THROWS_WITH_AS(w.add_tensor("a", ggml::cpu::Q8_0R, ne, 1, data.data()), doctest::Contains("q8_0r, which is not a GGUF type"),
                       Error);
}

TEST_CASE("the writer reproduces the gguf package's file byte for byte") {
  auto f = File::open(th::data_path("gguf/reference.gguf"));
  Writer w;
  for (const auto& [k, v] : f->metadata()) w.set(k, v);
  for (const TensorInfo& t : f->tensors()) w.add_tensor(t.name, t.type, t.ne, t.n_dims, t.data);
  const std::string out = temp_path("rewritten.gguf");
  w.write(out);
  CHECK(th::read_file(out) == th::read_file(th::data_path("gguf/reference.gguf")));
  CHECK(!std::filesystem::exists(out + ".tmp"));
  // and what we write reads back the same
  auto g = File::open(out);
  REQUIRE(g->metadata().size() == f->metadata().size());
  for (size_t k = 0; k < g->metadata().size(); k++) {
    CHECK(g->metadata()[k].first == f->metadata()[k].first);
    CHECK(g->metadata()[k].second == f->metadata()[k].second);
  }
}

TEST_CASE("vocab-only files (metadata, no tensors) load") {
  Writer w;
  w.set("general.architecture", Value::make_string("llama"));
  std::vector<Value> toks;
  for (const char* s : {"<s>", "</s>", "hello"}) toks.push_back(Value::make_string(s));
  w.set("tokenizer.ggml.tokens", Value::make_array(ValueType::STRING, toks));
  const std::string p = temp_path("vocab.gguf");
  w.write(p);
  auto f = File::open(p);
  CHECK(f->tensors().empty());
  CHECK(f->get_array("tokenizer.ggml.tokens", ValueType::STRING).strs[2] == "hello");
}

TEST_CASE("corrupt files are refused with one clear line") {
  SUBCASE("missing file") {
    CHECK_THROWS_WITH_AS(File::open(temp_path("does-not-exist.gguf")), doctest::Contains("cannot open"), Error);
  }
  SUBCASE("bad magic and versions") {
    Bytes b;
    b.put<uint32_t>(0x12345678).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(0);
    CHECK(open_error(b.b).find("bad magic") != std::string::npos);
    CHECK(open_error(Bytes().header(0, 0, 1).b).find("version 1 is not supported") != std::string::npos);
    CHECK(open_error(Bytes().header(0, 0, 4).b).find("version 4") != std::string::npos);
    CHECK(open_error({}).find("truncated") != std::string::npos);
  }
  SUBCASE("counts and lengths the file cannot hold") {
    CHECK(open_error(Bytes().header(0, uint64_t(1) << 60).b).find("metadata count") != std::string::npos);
    CHECK(open_error(Bytes().header(uint64_t(1) << 60, 0).b).find("tensor count") != std::string::npos);
    Bytes s;
    s.header(0, 1).put<uint64_t>(uint64_t(1) << 62).put<uint64_t>(0).put<uint64_t>(0);
    CHECK(open_error(s.b).find("runs past the end") != std::string::npos);
    Bytes a;
    a.header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(uint64_t(1) << 61);
    CHECK(open_error(a.b).find("array of") != std::string::npos);
    Bytes deep;
    deep.header(0, 1).str("k").put<uint32_t>(9);
    for (int d = 0; d < 12; d++) deep.put<uint32_t>(9).put<uint64_t>(1);
    CHECK(open_error(deep.b).find("nested deeper") != std::string::npos);
  }
  SUBCASE("bad values and keys") {
    Bytes t;
    t.header(0, 1).str("k").put<uint32_t>(77);
    CHECK(open_error(t.b).find("unknown value type 77") != std::string::npos);
    Bytes bo;
    bo.header(0, 1).str("flag").put<uint32_t>(7).put<uint8_t>(2);
    CHECK(open_error(bo.b).find("bool value 2") != std::string::npos);
    Bytes dup;
    dup.header(0, 2).str("k").put<uint32_t>(4).put<uint32_t>(1).str("k").put<uint32_t>(4).put<uint32_t>(2);
    CHECK(open_error(dup.b).find("duplicate key 'k'") != std::string::npos);
    Bytes al;
    al.header(0, 1).str("general.alignment").put<uint32_t>(4).put<uint32_t>(24);
    CHECK(open_error(al.b).find("power of two") != std::string::npos);
  }
  SUBCASE("bad tensor infos") {
    auto tensor = [](const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
      Bytes b;
      b.str(name).put<uint32_t>(uint32_t(dims.size()));
      for (uint64_t d : dims) b.put<uint64_t>(d);
      b.put<uint32_t>(type).put<uint64_t>(offset);
      return b.b;
    };
    auto file = [&](std::vector<std::vector<unsigned char>> infos, size_t data_bytes) {
      Bytes b;
      b.header(infos.size(), 0);
      for (auto& i : infos) b.b.insert(b.b.end(), i.begin(), i.end());
      b.pad();
      b.b.resize(b.b.size() + data_bytes, 0);
      return b.b;
    };
    CHECK(open_error(file({tensor("a", {4}, 0, 0)}, 16)).empty());  // the control case opens
    CHECK(open_error(file({tensor("a", {1, 2, 3, 4, 5}, 0, 0)}, 0)).find("5 dimensions") != std::string::npos);
    CHECK(open_error(file({tensor("a", {uint64_t(1) << 40, uint64_t(1) << 40}, 0, 0)}, 0)).find("overflow") != std::string::npos);
    CHECK(open_error(file({tensor("a", {4}, 99, 0)}, 16)).find("unknown type 99") != std::string::npos);
    // the CPU backend's own formats (Q8_S activations, Q8_0R/Q4_0R/Q4_1R rearranged weights) are no file's,
    // whatever id they have; and GGUF's ids past the old ones are GGUF's (TQ1_0 = 34, of 54-byte blocks of 256)
    for (ggml::Type t : {ggml::cpu::Q8_S, ggml::cpu::Q8_0R, ggml::cpu::Q4_0R, ggml::cpu::Q4_1R}) {
      const std::string id = std::to_string(uint32_t(t));
      CHECK(open_error(file({tensor("a", {256}, uint32_t(t), 0)}, 320)).find("unknown type " + id) != std::string::npos);
    }
    CHECK(open_error(file({tensor("a", {256}, 34, 0)}, 64)).empty());
    CHECK(open_error(file({tensor("a", {256}, 34, 0)}, 32)).find("lies outside") != std::string::npos);
    CHECK(open_error(file({tensor("a", {33}, 2, 0)}, 64)).find("block size") != std::string::npos);
    CHECK(open_error(file({tensor("a", {4}, 0, 8)}, 64)).find("not aligned") != std::string::npos);
    CHECK(open_error(file({tensor("a", {4}, 0, 0)}, 8)).find("lies outside") != std::string::npos);
    CHECK(open_error(file({tensor("a", {4}, 0, 0), tensor("a", {4}, 0, 32)}, 64)).find("duplicate tensor name") != std::string::npos);
    CHECK(open_error(file({tensor("a", {16}, 0, 0), tensor("b", {4}, 0, 32)}, 64)).find("overlap") != std::string::npos);
  }
}

TEST_CASE("every truncation and random bit flips are refused or read, never a crash") {
  const auto good = th::read_file(th::data_path("gguf/reference.gguf"));
  // Cutting the file anywhere before its last tensor ends must fail cleanly.
  for (size_t n = 0; n < good.size() - 28; n += 1) {
    std::vector<unsigned char> cut(good.begin(), good.begin() + long(n));
    REQUIRE_MESSAGE(!open_error(cut, "cut.gguf").empty(), "a file cut at " << n << " bytes opened");
  }
  th::Rng rng(5);
  int refused = 0;
  for (int trial = 0; trial < 1500; trial++) {
    auto b = good;
    const int flips = int(rng.range(1, 4));
    for (int k = 0; k < flips; k++) b[size_t(rng.range(0, 799))] ^= uint8_t(1u << rng.range(0, 7));
    const std::string p = temp_path("flip.gguf");
    write_bytes(p, b);
    try {
      auto f = File::open(p);
      for (const TensorInfo& t : f->tensors()) {  // whatever opened must be readable
        volatile unsigned char sink = 0;
        for (size_t i = 0; i < t.nbytes; i++) sink = sink ^ static_cast<const unsigned char*>(t.data)[i];
      }
    } catch (const Error&) {
      refused++;
    }
  }
  MESSAGE("bit flips refused: " << refused << " of 1500");
  CHECK(refused > 0);
}

TEST_CASE("a write that fails part way leaves nothing behind, with or without O_TMPFILE") {
  for (bool named : {false, true}) {
    CAPTURE(named);
    if (named) setenv("LLM_NO_O_TMPFILE", "1", 1);
    else unsetenv("LLM_NO_O_TMPFILE");
    const auto dir = th::temp_dir() / (named ? "wfail-named" : "wfail-tmpfile");
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    Writer w;
    w.set("general.name", Value::make_string("x"));
    const int64_t ne[1] = {64};
    std::vector<float> data(64, 1.0f);
    w.add_tensor("a", ggml::Type::F32, ne, 1, nullptr);
    w.add_tensor("b", ggml::Type::F32, ne, 1, nullptr);
    const std::string out = (dir / "out.gguf").string();
    auto produce = [&](size_t i) -> const void* {
      if (i == 1) throw llm::Error("produce failed");
      return data.data();
    };
    CHECK_THROWS_WITH_AS(w.write(out, produce), doctest::Contains("produce failed"), llm::Error);
    CHECK(std::filesystem::is_empty(dir));
    // And a good write leaves exactly the file, readable.
    w.write(out, [&](size_t) -> const void* { return data.data(); });
    CHECK(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()) == 1);
    CHECK(File::open(out)->tensors().size() == 2);
  }
  unsetenv("LLM_NO_O_TMPFILE");
}
