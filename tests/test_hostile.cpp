// Hostile files: one crafted file (or more) per finding of the hostile-files
// issue, made here at test time, each refused with a clear llm::Error (or
// read correctly), never a crash, undefined behaviour (the sanitizer target
// runs this too) or a giant allocation. Memory claims are measured: the
// load runs in a forked child and its peak RSS is compared with a child that
// does nothing.
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>

#include "llm/checkpoint.h"
#include "llm/convert.h"
#include "llm/gguf.h"
#include "llm/hf_tokenizer.h"
#include "llm/model.h"
#include "llm/perplexity.h"
#include "llm/session.h"
#include "llm/tokenizer.h"

namespace fs = std::filesystem;

namespace {

std::string le(uint64_t v, int n) {
  std::string s;
  for (int i = 0; i < n; i++) s += char((v >> (8 * i)) & 0xFF);
  return s;
}

std::string write(const std::string& name, const std::string& bytes) {
  const fs::path p = th::temp_dir() / name;
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), (std::streamsize)bytes.size());
  return p.string();
}

// Runs f in a child; returns its peak RSS in MiB, or -1 if it did not exit
// normally with status 0 (a crash, or f returned false). (libgomp does not
// survive a fork once its threads exist, so this process never starts them
// before the forking tests: conversions run in children too, and the tests
// that evaluate models in-process come last in the file.)
double child_peak_mib(const std::function<bool()>& f) {
  pid_t pid = fork();
  if (pid == 0) {
    bool ok = false;
    try {
      ok = f();
    } catch (...) {
    }
    _exit(ok ? 0 : 3);
  }
  int status = 0;
  struct rusage ru {};
  if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
  return ru.ru_maxrss / 1024.0;
}

// Peak memory of f beyond an idle child's, in MiB (-1 when f failed).
double extra_mib(const std::function<bool()>& f) {
  const double idle = child_peak_mib([] { return true; });
  const double used = child_peak_mib(f);
  return used < 0 ? -1 : used - idle;
}

template <class F>
bool refused_with(F&& f, const std::string& needle) {
  try {
    f();
  } catch (const llm::Error& e) {
    if (std::string(e.what()).find(needle) != std::string::npos) return true;
    MESSAGE("refused, but with: " << std::string(e.what()));
    return false;
  }
  MESSAGE("accepted");
  return false;
}

// ---- zip archives (stored entries), as torch.save writes them ----------------

std::string zip_stored(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out, cd;
  for (const auto& [name, data] : entries) {
    const uint64_t local = out.size();
    out += le(0x04034b50, 4) + le(20, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(0, 4) + le(data.size(), 4) +
           le(data.size(), 4) + le(name.size(), 2) + le(0, 2) + name + data;
    cd += le(0x02014b50, 4) + le(20, 2) + le(20, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(0, 4) + le(data.size(), 4) +
          le(data.size(), 4) + le(name.size(), 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(local, 4) +
          name;
  }
  const uint64_t cd_off = out.size();
  out += cd;
  out += le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(entries.size(), 2) + le(entries.size(), 2) + le(cd.size(), 4) +
         le(cd_off, 4) + le(0, 2);
  return out;
}

// Pickle opcodes for what a state dict uses.
struct Pickle {
  std::string b = "\x80\x02";
  Pickle& op(const std::string& s) { b += s; return *this; }
  Pickle& str(const std::string& s) { b += std::string("X") + le(s.size(), 4) + s; return *this; }
  Pickle& integer(int64_t v) { b += std::string("\x8a\x08", 2) + le((uint64_t)v, 8); return *this; }
  Pickle& global(const std::string& mod, const std::string& name) {
    b += std::string("c") + mod + "\n" + name + "\n";
    return *this;
  }
  // One tensor entry: key, storage (key "0", numel), offset, size, stride.
  Pickle& tensor(const std::string& key, int64_t numel, int64_t offset, const std::vector<int64_t>& size,
                 const std::vector<int64_t>& stride) {
    str(key).global("torch._utils", "_rebuild_tensor_v2").op("((").str("storage").global("torch", "FloatStorage");
    str("0").str("cpu").integer(numel).op("tQ").integer(offset).op("(");
    for (int64_t s : size) integer(s);
    op("t(");
    for (int64_t s : stride) integer(s);
    return op("t\x89").global("collections", "OrderedDict").op(")RtR");
  }
};

std::string torch_file(const std::string& name, const std::string& pkl, size_t storage_bytes) {
  return write(name, zip_stored({{"archive/data.pkl", pkl}, {"archive/data/0", std::string(storage_bytes, '\0')}}));
}

std::string state_dict(const std::function<void(Pickle&)>& body) {
  Pickle p;
  p.global("collections", "OrderedDict").op(")R(");
  body(p);
  return p.op("u.").b;
}

// ---- tokenizer.json -----------------------------------------------------------

std::string tokenizer_json(const std::string& vocab, const std::string& added = "[]",
                           const std::string& pre = R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true})") {
  return R"({"model": {"type": "BPE", "vocab": )" + vocab + R"(, "merges": []}, "added_tokens": )" + added +
         R"(, "pre_tokenizer": )" + pre + "}";
}

std::string converted(const std::string& name) {
  const fs::path out = th::temp_dir() / (name + "-hostile.gguf");
  if (!fs::exists(out)) {
    llm::ConvertOptions o;
    o.model_dir = th::data_dir() + "/hf/" + name;
    o.out_path = out.string();
    o.outtype = ggml::Type::F32;
    REQUIRE(child_peak_mib([&] {  // in a child: the conversion's OpenMP threads stay out of this process
      llm::convert_hf_checkpoint(o);
      return true;
    }) >= 0);
  }
  return out.string();
}

// A copy of a GGUF file with metadata changed (and tensors kept).
std::string gguf_with(const std::string& src, const std::string& name,
                      const std::function<void(llm::gguf::Writer&)>& edit) {
  auto f = llm::gguf::File::open(src);
  llm::gguf::Writer w;
  for (const auto& [k, v] : f->metadata()) w.set(k, v);
  for (const auto& t : f->tensors()) w.add_tensor(t.name, t.type, t.ne, t.n_dims, t.data);
  edit(w);
  const std::string out = (th::temp_dir() / name).string();
  w.write(out);
  return out;
}

}  // namespace

// ---- tokenizer.json ---------------------------------------------------------------

TEST_CASE("tokenizer.json: a token id of 2^63-1 is refused before anything is sized from it") {
  auto v = write("tj/huge_id.json", tokenizer_json(R"({"a": 0, "b": 9223372036854775807})"));
  CHECK(refused_with([&] { llm::load_tokenizer_json(v); }, "outside"));
  auto a = write("tj/huge_added.json", tokenizer_json(R"({"a": 0})", R"([{"id": 9223372036854775807, "content": "x"}])"));
  CHECK(refused_with([&] { llm::load_tokenizer_json(a); }, "outside"));
  auto u = write("tj/u64_id.json", tokenizer_json(R"({"a": 0, "b": 18446744073709551615})"));
  CHECK(refused_with([&] { llm::load_tokenizer_json(u); }, "outside"));
  auto fl = write("tj/float_id.json", tokenizer_json(R"({"a": 0, "b": 1e300})"));
  CHECK(refused_with([&] { llm::load_tokenizer_json(fl); }, "not an integer"));
}

TEST_CASE("tokenizer.json: a sparse vocabulary cannot size a giant table") {
  auto p = write("tj/sparse.json", tokenizer_json(R"({"a": 0, "b": 2000000})"));
  CHECK(refused_with([&] { llm::load_tokenizer_json(p); }, "holes"));
  double mib = extra_mib([&] {
    try {
      llm::load_tokenizer_json(p);
    } catch (const llm::Error&) {
      return true;
    }
    return false;
  });
  CHECK(mib >= 0);
  CHECK(mib < 64);
}

TEST_CASE("tokenizer.json: a pre-tokenizer entry without its pattern is refused, not read out of bounds") {
  auto p = write("tj/nopattern.json",
                 tokenizer_json(R"({"a": 0})", "[]",
                                R"({"type": "Sequence", "pretokenizers": [{"type": "Split"}, {"type": "ByteLevel", "use_regex": false}]})"));
  CHECK(refused_with([&] { llm::load_tokenizer_json(p); }, "not supported"));
}

TEST_CASE("tokenizer.model: more pieces than a vocabulary may have are refused") {
  // 2^21 + 1 empty pieces: 2 bytes each in the file, ~100 in memory once read.
  std::string m;
  for (int64_t i = 0; i <= llm::Vocab::kMaxTokens; i++) m += std::string("\x0a\x00", 2);
  auto p = write("spm/many.model", m);
  CHECK(refused_with([&] { llm::load_sentencepiece_model(p); }, "more pieces"));
}

TEST_CASE("user-defined tokens: the trie finds the same longest matches as a scan") {
  // Reference: the naive longest match over every token at every position.
  std::mt19937 rng(3);
  llm::Vocab v;
  v.model = llm::Vocab::Model::BPE;
  v.pre = "gpt-2";
  for (int b = 0; b < 256; b++) {  // byte-level base characters
    uint32_t cp = llm::byte_to_codepoint((uint8_t)b);
    v.tokens.push_back(llm::utf8_encode(cp));
    v.types.push_back(llm::TokenType::Normal);
  }
  std::vector<std::string> special;
  for (int i = 0; i < 300; i++) {
    std::string t = "<";
    for (int k = 0, n = 1 + (int)(rng() % 4); k < n; k++) t += "abc"[rng() % 3];
    special.push_back(t);
    v.tokens.push_back(t);
    v.types.push_back(llm::TokenType::UserDefined);
  }
  llm::Tokenizer tok(v);
  for (int it = 0; it < 200; it++) {
    std::string text;
    for (int k = 0; k < 40; k++) text += "<abc x"[rng() % 6];
    auto ids = tok.encode(text, false, false);
    // Walk the text as the reference would: at each position the longest
    // user-defined token (lowest id among equal texts), else ordinary text.
    std::vector<int32_t> want_specials;
    for (size_t pos = 0; pos < text.size();) {
      int32_t best = -1;
      size_t best_len = 0;
      for (size_t s = 0; s < special.size(); s++)
        if (special[s].size() > best_len && text.compare(pos, special[s].size(), special[s]) == 0)
          best = 256 + (int32_t)s, best_len = special[s].size();
      if (best >= 0) {
        want_specials.push_back(best);
        pos += best_len;
      } else {
        pos++;
      }
    }
    std::vector<int32_t> got_specials;
    for (int32_t id : ids)
      if (id >= 256) got_specials.push_back(id);
    // Equal texts map to the first id: compare by text.
    REQUIRE(got_specials.size() == want_specials.size());
    for (size_t k = 0; k < got_specials.size(); k++) CHECK(v.tokens[got_specials[k]] == v.tokens[want_specials[k]]);
    CHECK(tok.decode(ids) == text);
  }
}

// ---- PyTorch zip and pickle ---------------------------------------------------------

TEST_CASE("torch: a view whose (size-1)*stride wraps is refused") {
  auto p = torch_file("pt/wrap.bin", state_dict([](Pickle& k) {
                        k.tensor("w", 4, 0, {int64_t(1) << 33, 2}, {int64_t(1) << 31, 1});
                      }), 16);
  CHECK(refused_with([&] { llm::Checkpoint::open_pytorch({p}); }, "reaches past the end"));
  auto q = torch_file("pt/wrap2.bin", state_dict([](Pickle& k) {
                        k.tensor("w", 4, 0, {3, int64_t(1) << 62}, {int64_t(1) << 62, 1});
                      }), 16);
  CHECK(refused_with([&] { llm::Checkpoint::open_pytorch({q}); }, "overflows"));
}

TEST_CASE("torch: a stride-0 view cannot turn 16 stored bytes into gigabytes") {
  auto p = torch_file("pt/stride0.bin", state_dict([](Pickle& k) {
                        k.tensor("w", 4, 0, {int64_t(1) << 30}, {0});
                      }), 16);
  CHECK(refused_with([&] { llm::Checkpoint::open_pytorch({p}); }, "repeats elements"));
}

TEST_CASE("torch: a well-formed view still reads right (the reference: the bytes written)") {
  std::string data(24, '\0');
  const float vals[6] = {1, 2, 3, 4, 5, 6};
  std::memcpy(data.data(), vals, 24);
  // A transposed 2x3 view of a 3x2 storage: strides (1, 2).
  auto pkl = state_dict([](Pickle& k) { k.tensor("w", 6, 0, {2, 3}, {1, 2}); });
  auto p = write("pt/good.bin", zip_stored({{"archive/data.pkl", pkl}, {"archive/data/0", data}}));
  auto ck = llm::Checkpoint::open_pytorch({p});
  REQUIRE(ck->tensors().size() == 1);
  auto f = ck->tensors()[0].to_f32();
  CHECK(f == std::vector<float>{1, 3, 5, 2, 4, 6});
}

TEST_CASE("zip: files of 22 to 60 bytes, zip64 markers included, are refused") {
  for (size_t n = 22; n <= 60; n++) {
    CAPTURE(n);
    // An end record at the very end claiming zip64, a locator right before it.
    std::string eocd = le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(0xFFFF, 2) + le(0xFFFF, 2) + le(0xFFFFFFFF, 4) +
                       le(0xFFFFFFFF, 4) + le(0, 2);
    std::string pre(n - eocd.size(), '\0');
    if (pre.size() >= 20) pre.replace(pre.size() - 20, 20, le(0x07064b50, 4) + le(0, 4) + le(0, 8) + le(1, 4));
    auto p = write("zip/tiny" + std::to_string(n) + ".bin", pre + eocd);
    CHECK(refused_with([&] { llm::Checkpoint::open_pytorch({p}); }, "not a PyTorch zip checkpoint"));
  }
}

TEST_CASE("pickle: a million-deep nesting is freed without recursion; a list containing itself does not leak") {
  // L0; then per level: get the innermost, a new list, memoize it, append, pop.
  Pickle p;
  p.op("]").op("r").op(le(0, 4));
  const int depth = 1000000;
  for (int i = 0; i < depth; i++) p.op("j").op(le((uint64_t)i, 4)).op("]").op("r").op(le((uint64_t)i + 1, 4)).op("ab");
  p.op(".");
  auto deep = torch_file("pt/deep.bin", p.b, 0);
  CHECK(refused_with([&] { llm::Checkpoint::open_pytorch({deep}); }, "not a state dict"));
  Pickle s;
  s.op(std::string("]q\x00" "h\x00" "a.", 7));
  auto self = torch_file("pt/self.bin", s.b, 0);
  CHECK(refused_with([&] { llm::Checkpoint::open_pytorch({self}); }, "not a state dict"));
}

TEST_CASE("pickle: small files cannot claim large memory (memo index, long lists)") {
  Pickle memo;
  memo.op("]").op("r").op(le(0xFFFFFFF0u, 4)).op(".");
  auto mp = torch_file("pt/memo.bin", memo.b, 0);
  double mib = extra_mib([&] { return refused_with([&] { llm::Checkpoint::open_pytorch({mp}); }, "not a state dict"); });
  CHECK(mib >= 0);
  CHECK(mib < 32);
  Pickle list;
  list.op("]");  // 10 MB: None appended five million times
  for (int i = 0; i < 5000000; i++) list.b += "Na";
  list.op(".");
  auto lp = torch_file("pt/list.bin", list.b, 0);
  mib = extra_mib([&] { return refused_with([&] { llm::Checkpoint::open_pytorch({lp}); }, "objects"); });
  CHECK(mib >= 0);
  CHECK(mib < 1024);  // the object cap (4M) times ~150 bytes, not the 1.7 GB of one object per byte
}

// ---- safetensors --------------------------------------------------------------------

TEST_CASE("safetensors: an empty tensor with huge other dimensions has no overflowing strides") {
  const std::string header = R"({"w": {"dtype": "F32", "shape": [0, 1099511627776, 1099511627776, 1099511627776], "data_offsets": [0, 0]}})";
  auto p = write("st/empty.safetensors", le(header.size(), 8) + header);
  auto ck = llm::Checkpoint::open_safetensors({p});  // UBSan would report a signed overflow here before the fix
  REQUIRE(ck->tensors().size() == 1);
  CHECK(ck->tensors()[0].numel() == 0);
  CHECK(ck->tensors()[0].to_f32().empty());
}

// ---- GGUF -----------------------------------------------------------------------------

TEST_CASE("GGUF: a tensor with an empty dimension is refused by the reader") {
  llm::gguf::Writer w;
  const int64_t ne[2] = {0, 1ll << 40};
  w.add_tensor("t", ggml::Type::F32, ne, 2, nullptr);
  const std::string p = (th::temp_dir() / "empty_dim.gguf").string();
  w.write(p, [](size_t) -> const void* { return nullptr; });
  CHECK(refused_with([&] { llm::gguf::File::open(p); }, "dimension 0 is 0"));
}

TEST_CASE("GGUF: block_count 2^31 is checked against the tensors before the layers are sized") {
  const std::string src = converted("llama_st");
  auto p = gguf_with(src, "blocks.gguf", [](llm::gguf::Writer& w) {
    w.set("llama.block_count", llm::gguf::Value::make_uint(llm::gguf::ValueType::U32, uint64_t(1) << 31));
  });
  double mib = extra_mib([&] { return refused_with([&] { llm::Model::load(p); }, "layers, but the file has only"); });
  CHECK(mib >= 0);
  CHECK(mib < 64);
}

TEST_CASE("GGUF: a 24 MiB u8 array costs about its size in memory, not 100x") {
  // Written by hand per the GGUF spec: header, one key of type array (9),
  // element type u8 (0), count, the bytes; no tensors.
  const size_t n = size_t(24) << 20;
  std::string blob(n, '\0');
  for (size_t i = 0; i < n; i++) blob[i] = char(i & 0xFF);
  const std::string key = "test.blob";
  const std::string p = write("u8array.gguf", le(0x46554747, 4) + le(3, 4) + le(0, 8) + le(1, 8) + le(key.size(), 8) +
                                                  key + le(9, 4) + le(0, 4) + le(n, 8) + blob);
  double mib = extra_mib([&] {
    auto f = llm::gguf::File::open(p);
    const auto& a = f->get_array("test.blob", llm::gguf::ValueType::U8);
    return a.size() == n && a.uint_at(n - 1) == ((n - 1) & 0xFF);
  });
  CHECK(mib >= 0);
  CHECK(mib < 24 * 3);  // the file's map and the array's bytes (2.4 GB before)
}

// ---- convert ------------------------------------------------------------------------

TEST_CASE("convert: config.json's layer count and vocabulary size are bounded before planning") {
  for (const char* edit : {"layers", "vocab"}) {
    CAPTURE(edit);
    const fs::path dir = th::temp_dir() / (std::string("cfg_") + edit);
    fs::remove_all(dir);
    fs::copy(th::data_dir() + "/hf/llama_st", dir);
    std::ifstream in(dir / "config.json");
    std::string cfg((std::istreambuf_iterator<char>(in)), {});
    in.close();
    const std::string key = edit == std::string("layers") ? "\"num_hidden_layers\"" : "\"vocab_size\"";
    size_t at = cfg.find(key);
    REQUIRE(at != std::string::npos);
    size_t colon = cfg.find(':', at), end = cfg.find_first_of(",}", colon);
    cfg.replace(colon + 1, end - colon - 1, " 2147483648");
    std::ofstream(dir / "config.json") << cfg;
    llm::ConvertOptions o;
    o.model_dir = dir.string();
    o.out_path = (dir / "out.gguf").string();
    double mib = extra_mib([&] {
      return refused_with([&] { llm::convert_hf_checkpoint(o); },
                          edit == std::string("layers") ? "layers, but the checkpoint has only" : "tokens");
    });
    CHECK(mib >= 0);
    CHECK(mib < 64);
  }
}

// ---- perplexity -----------------------------------------------------------------------

TEST_CASE("perplexity: a top-k above the vocabulary keeps the whole vocabulary (no sort past the end)") {
  auto model = llm::Model::load(converted("llama_st"));
  std::mt19937 rng(9);
  std::vector<int32_t> text(200);
  for (auto& t : text) t = (int32_t)(rng() % (uint32_t)model->hp.n_vocab);
  llm::PerplexityOptions o;
  o.n_ctx = 64;
  o.top_k = 1024;  // > the fixture's 1000 tokens
  REQUIRE(model->hp.n_vocab < o.top_k);
  o.kl_base_out = (th::temp_dir() / "k.kl").string();
  auto base = llm::perplexity(*model, text, o);
  o.kl_base_out.clear();
  o.kl_in = (th::temp_dir() / "k.kl").string();
  auto again = llm::perplexity(*model, text, o);
  REQUIRE(again.has_kl);
  // The same model: no divergence (float32 log-probabilities in the file), and
  // exact, as the top-k hold every token.
  CHECK(again.kl_mean < 1e-6);
  CHECK(again.top1 == 1.0);
  CHECK(again.ppl == doctest::Approx(base.ppl).epsilon(1e-12));
}

// ---- sessions ----------------------------------------------------------------------------

TEST_CASE("session: a KV cache larger than the machine's memory is refused with its size") {
  const std::string p = th::data_dir() + "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(p)) {
    MESSAGE("skipped: SmolLM2 not fetched");
    return;
  }
  auto model = llm::Model::load(p);
  model->hp.n_ctx_train = int64_t(1) << 20;  // as a file claiming a million positions would
  llm::SessionParams sp;
  sp.n_ctx = int64_t(1) << 20;
  sp.kv_type = ggml::Type::F32;
  // 30 layers x 2 x 2^20 positions x 192 x 4 bytes = 45 GiB.
  const double need = 2.0 * model->hp.n_layer * sp.n_ctx * model->hp.n_embd_kv() * 4;
  const double phys = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
  if (need <= phys) {
    MESSAGE("skipped: this machine has more than " << need / (1 << 30) << " GiB");
    return;
  }
  CHECK(refused_with([&] { llm::Session s(*model, sp); }, "MiB, more than this machine's"));
}
