#include "llm/convert.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "llm/checkpoint.h"
#include "llm/files.h"
#include "llm/gguf.h"
#include "llm/hf_tokenizer.h"

namespace llm {

namespace fs = std::filesystem;
using json = nlohmann::json;

void permute_rope_rows(const float* src, float* dst, int64_t rows, int64_t cols, int n_head) {
  // Per head, Hugging Face orders rotary pairs as [x0..x(h/2-1), y0..y(h/2-1)];
  // the interleaved layout wants [x0, y0, x1, y1, ...].
  const int64_t hd = rows / n_head, half = hd / 2;
  for (int h = 0; h < n_head; h++)
    for (int64_t i = 0; i < half; i++)
      for (int j = 0; j < 2; j++)
        std::memcpy(dst + (h * hd + 2 * i + j) * cols, src + (h * hd + j * half + i) * cols, (size_t)cols * sizeof(float));
}

void neox_qkv_regroup(const float* src, float* dst, int n_head, int64_t head_dim, int64_t cols) {
  for (int h = 0; h < n_head; h++)
    for (int k = 0; k < 3; k++)
      std::memcpy(dst + ((int64_t)k * n_head * head_dim + h * head_dim) * cols,
                  src + ((int64_t)h * 3 * head_dim + k * head_dim) * cols, (size_t)(head_dim * cols) * sizeof(float));
}

namespace {

enum class Transform { None, RopeQ, RopeK, NeoxQkv };

struct Planned {
  std::string out;     // GGUF name
  std::string src;     // checkpoint name
  std::vector<int64_t> shape;  // expected PyTorch shape
  Transform tr = Transform::None;
  ggml::Type type = ggml::Type::F32;
};

struct Config {
  json j;
  std::string path;
  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }
  int64_t i(const char* k) const {
    if (!has(k) || !j[k].is_number_integer()) throw Error(path + ": '" + k + "' is missing or not an integer");
    int64_t v = j[k].get<int64_t>();
    if (v <= 0 || v > (int64_t(1) << 31)) throw Error(path + ": '" + k + "' = " + std::to_string(v) + " is out of range");
    return v;
  }
  int64_t i(const char* k, int64_t def) const { return has(k) ? i(k) : def; }
  double f(const char* k, double def) const {
    if (!has(k)) return def;
    if (!j[k].is_number()) throw Error(path + ": '" + k + "' is not a number");
    return j[k].get<double>();
  }
  bool b(const char* k, bool def) const {
    if (!has(k)) return def;
    if (!j[k].is_boolean()) throw Error(path + ": '" + k + "' is not a boolean");
    return j[k].get<bool>();
  }
  // transformers 5 nests rope settings in rope_parameters; older files use
  // rope_theta / rope_scaling / rotary_pct at the top level.
  const json* rope() const {
    if (has("rope_parameters") && j["rope_parameters"].is_object()) return &j["rope_parameters"];
    return nullptr;
  }
};

ggml::Type weight_type(ggml::Type outtype, int64_t ne0, const std::string& name, const ConvertOptions& opt) {
  if (outtype == ggml::Type::Q8_0 && ne0 % 32 != 0) {
    if (opt.warn) opt.warn(name + ": rows of " + std::to_string(ne0) + " are not whole Q8_0 blocks; writing F16");
    return ggml::Type::F16;
  }
  return outtype;
}

FileType file_type_of(ggml::Type t) {
  switch (t) {
    case ggml::Type::F32: return FileType::ALL_F32;
    case ggml::Type::F16: return FileType::MOSTLY_F16;
    case ggml::Type::BF16: return FileType::MOSTLY_BF16;
    default: return FileType::MOSTLY_Q8_0;
  }
}

}  // namespace

ConvertSummary convert_hf_checkpoint(const ConvertOptions& opt) {
  using gguf::Value;
  using gguf::ValueType;
  if (opt.outtype != ggml::Type::F32 && opt.outtype != ggml::Type::F16 && opt.outtype != ggml::Type::BF16 &&
      opt.outtype != ggml::Type::Q8_0)
    throw Error(std::string("output type ") + ggml::type_name(opt.outtype) + " is not supported (f32, f16, bf16, q8_0)");
  const fs::path dir(opt.model_dir);
  if (std::string why = not_a_directory_reason(opt.model_dir); !why.empty()) throw Error(opt.model_dir + ": " + why);
  // The output is renamed over its path at the end: never onto a checkpoint file.
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && same_file(e.path().string(), opt.out_path))
      throw Error(opt.out_path + " is a file of the checkpoint: the output must not overwrite it");
  Config c;
  c.path = (dir / "config.json").string();
  {
    std::ifstream in(c.path);
    if (!in) throw Error(c.path + ": missing (is this a Hugging Face checkpoint directory?)");
    try {
      c.j = json::parse(in);
    } catch (const json::exception& e) {
      throw Error(c.path + ": invalid JSON: " + e.what());
    }
    if (!c.j.is_object()) throw Error(c.path + ": not a JSON object");
  }
  std::string arch_hf;
  if (c.has("architectures") && c.j["architectures"].is_array() && !c.j["architectures"].empty() &&
      c.j["architectures"][0].is_string())
    arch_hf = c.j["architectures"][0].get<std::string>();
  ConvertSummary sum;
  if (arch_hf == "LlamaForCausalLM") sum.arch = Arch::LLAMA;
  else if (arch_hf == "GPTNeoXForCausalLM") sum.arch = Arch::GPTNEOX;
  else if (arch_hf == "GPTJForCausalLM") sum.arch = Arch::GPTJ;
  else
    throw Error(c.path + ": architecture '" + (arch_hf.empty() ? "(none)" : arch_hf) +
                "' is not supported (LlamaForCausalLM, GPTNeoXForCausalLM, GPTJForCausalLM)");
  const Arch A = sum.arch;

  HfTokenizer tok = load_hf_tokenizer(opt.model_dir);
  for (const auto& w : tok.warnings)
    if (opt.warn) opt.warn(tok.source + ": " + w);
  if (tok.vocab.model == Vocab::Model::SPM && opt.warn &&
      std::find(tok.vocab.types.begin(), tok.vocab.types.end(), TokenType::Byte) == tok.vocab.types.end())
    opt.warn(tok.source + ": no <0xXX> byte pieces; this file works here but llama.cpp refuses such vocabularies");

  gguf::Writer w;
  w.set(kv::ARCHITECTURE, Value::make_string(arch_name(A)));
  std::string name = fs::absolute(dir).lexically_normal().filename().string();
  if (name.empty()) name = fs::absolute(dir).lexically_normal().parent_path().filename().string();
  w.set(kv::NAME, Value::make_string(name));
  auto u32 = [&](const char* suffix, int64_t v) { w.set(key(A, suffix), Value::make_uint(ValueType::U32, (uint64_t)v)); };
  auto f32 = [&](const char* suffix, double v) { w.set(key(A, suffix), Value::make_float(ValueType::F32, v)); };

  // ---- hyperparameters and the tensor plan ------------------------------------
  // Nothing is sized from config.json before it is bounded by what the
  // checkpoint holds: each layer has tensors of its own, so a layer count
  // above the checkpoint's tensor count is a lie (2^31 layers would be a
  // plan of billions of entries); --vocab-only has no weights to count.
  std::unique_ptr<Checkpoint> ck;
  if (!opt.vocab_only) ck = Checkpoint::open_dir(opt.model_dir);
  auto layers = [&](const char* k) {
    const int64_t n = c.i(k), cap = ck ? (int64_t)ck->tensors().size() : 4096;
    if (n > cap)
      throw Error(c.path + ": '" + k + "' = " + std::to_string(n) + " layers, but " +
                  (ck ? "the checkpoint has only " + std::to_string(cap) + " tensors" : std::string("at most 4096 are supported")));
    return n;
  };
  auto vocab_size = [&] {
    const int64_t n = c.i("vocab_size");
    if (n > Vocab::kMaxTokens)
      throw Error(c.path + ": 'vocab_size' = " + std::to_string(n) + " is more than " + std::to_string(Vocab::kMaxTokens) +
                  " tokens");
    return n;
  };
  std::vector<Planned> plan;
  int64_t n_vocab = 0, n_embd = 0;
  auto add = [&](std::string out, std::string src, std::vector<int64_t> shape, Transform tr = Transform::None) {
    plan.push_back({std::move(out), std::move(src), std::move(shape), tr, ggml::Type::F32});
  };
  std::set<std::string> ignorable;  // buffers HF stores that carry no weights
  bool tied = false;
  if (A == Arch::LLAMA) {
    n_embd = c.i("hidden_size");
    const int64_t n_layer = layers("num_hidden_layers"), n_head = c.i("num_attention_heads");
    const int64_t n_head_kv = c.i("num_key_value_heads", n_head), n_ff = c.i("intermediate_size");
    n_vocab = vocab_size();
    const int64_t hd = n_embd / n_head;
    if (n_embd % n_head) throw Error(c.path + ": hidden_size is not a multiple of num_attention_heads");
    if (c.has("head_dim") && c.i("head_dim") != hd)
      throw Error(c.path + ": head_dim " + std::to_string(c.i("head_dim")) + " != hidden_size / heads is not supported");
    if (n_head % n_head_kv) throw Error(c.path + ": num_attention_heads is not a multiple of num_key_value_heads");
    double theta = c.f("rope_theta", 10000.0);
    std::string scaling;
    double factor = 1.0;
    if (const json* rp = c.rope()) {
      theta = rp->value("rope_theta", theta);
      scaling = rp->value("rope_type", rp->value("type", std::string("default")));
      factor = rp->value("factor", 1.0);
    } else if (c.has("rope_scaling") && c.j["rope_scaling"].is_object()) {
      scaling = c.j["rope_scaling"].value("rope_type", c.j["rope_scaling"].value("type", std::string("default")));
      factor = c.j["rope_scaling"].value("factor", 1.0);
    }
    if (!scaling.empty() && scaling != "default" && scaling != "linear")
      throw Error(c.path + ": rope scaling '" + scaling + "' is not supported (linear only)");
    const bool bias = c.b("attention_bias", false);
    if (c.b("mlp_bias", false)) throw Error(c.path + ": mlp_bias is not supported");
    u32(kv::VOCAB_SIZE, n_vocab);
    u32(kv::CONTEXT_LENGTH, c.i("max_position_embeddings", 2048));
    u32(kv::EMBEDDING_LENGTH, n_embd);
    u32(kv::BLOCK_COUNT, n_layer);
    u32(kv::FEED_FORWARD_LENGTH, n_ff);
    u32(kv::ROPE_DIMENSION_COUNT, hd);
    u32(kv::HEAD_COUNT, n_head);
    u32(kv::HEAD_COUNT_KV, n_head_kv);
    f32(kv::LAYERNORM_RMS_EPS, c.f("rms_norm_eps", 1e-6));
    f32(kv::ROPE_FREQ_BASE, theta);
    if (scaling == "linear" && factor != 1.0) {
      w.set(key(A, kv::ROPE_SCALING_TYPE), Value::make_string("linear"));
      f32(kv::ROPE_SCALING_FACTOR, factor);
    }
    add("token_embd.weight", "model.embed_tokens.weight", {n_vocab, n_embd});
    for (int64_t l = 0; l < n_layer; l++) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      auto b = [&](const char* n) { return tn::blk((int)l, n); };
      add(b(tn::ATTN_NORM) + ".weight", p + "input_layernorm.weight", {n_embd});
      add(b(tn::ATTN_Q) + ".weight", p + "self_attn.q_proj.weight", {n_embd, n_embd}, Transform::RopeQ);
      add(b(tn::ATTN_K) + ".weight", p + "self_attn.k_proj.weight", {n_head_kv * hd, n_embd}, Transform::RopeK);
      add(b(tn::ATTN_V) + ".weight", p + "self_attn.v_proj.weight", {n_head_kv * hd, n_embd});
      if (bias) {
        add(b(tn::ATTN_Q) + ".bias", p + "self_attn.q_proj.bias", {n_embd}, Transform::RopeQ);
        add(b(tn::ATTN_K) + ".bias", p + "self_attn.k_proj.bias", {n_head_kv * hd}, Transform::RopeK);
        add(b(tn::ATTN_V) + ".bias", p + "self_attn.v_proj.bias", {n_head_kv * hd});
        add(b(tn::ATTN_OUT) + ".bias", p + "self_attn.o_proj.bias", {n_embd});
      }
      add(b(tn::ATTN_OUT) + ".weight", p + "self_attn.o_proj.weight", {n_embd, n_embd});
      add(b(tn::FFN_NORM) + ".weight", p + "post_attention_layernorm.weight", {n_embd});
      add(b(tn::FFN_GATE) + ".weight", p + "mlp.gate_proj.weight", {n_ff, n_embd});
      add(b(tn::FFN_UP) + ".weight", p + "mlp.up_proj.weight", {n_ff, n_embd});
      add(b(tn::FFN_DOWN) + ".weight", p + "mlp.down_proj.weight", {n_embd, n_ff});
      ignorable.insert(p + "self_attn.rotary_emb.inv_freq");
    }
    add("output_norm.weight", "model.norm.weight", {n_embd});
    tied = c.b("tie_word_embeddings", false);
    if (!tied) add("output.weight", "lm_head.weight", {n_vocab, n_embd});
    ignorable.insert("lm_head.weight");  // a tied checkpoint may still store the copy
    ignorable.insert("model.rotary_emb.inv_freq");
  } else if (A == Arch::GPTNEOX) {
    n_embd = c.i("hidden_size");
    const int64_t n_layer = layers("num_hidden_layers"), n_head = c.i("num_attention_heads");
    const int64_t n_ff = c.i("intermediate_size");
    n_vocab = vocab_size();
    if (n_embd % n_head) throw Error(c.path + ": hidden_size is not a multiple of num_attention_heads");
    const int64_t hd = n_embd / n_head;
    double pct = c.f("rotary_pct", 1.0), theta = c.f("rotary_emb_base", 10000.0);
    if (const json* rp = c.rope()) {
      pct = rp->value("partial_rotary_factor", pct);
      theta = rp->value("rope_theta", theta);
      std::string t = rp->value("rope_type", std::string("default"));
      if (t != "default") throw Error(c.path + ": rope type '" + t + "' is not supported for GPT-NeoX");
    }
    const int64_t n_rot = (int64_t)(hd * pct);
    if (n_rot <= 0 || n_rot > hd || n_rot % 2) throw Error(c.path + ": rotary dimensions " + std::to_string(n_rot) + " out of range");
    u32(kv::VOCAB_SIZE, n_vocab);
    u32(kv::CONTEXT_LENGTH, c.i("max_position_embeddings", 2048));
    u32(kv::EMBEDDING_LENGTH, n_embd);
    u32(kv::BLOCK_COUNT, n_layer);
    u32(kv::FEED_FORWARD_LENGTH, n_ff);
    u32(kv::ROPE_DIMENSION_COUNT, n_rot);
    u32(kv::HEAD_COUNT, n_head);
    f32(kv::LAYERNORM_EPS, c.f("layer_norm_eps", 1e-5));
    f32(kv::ROPE_FREQ_BASE, theta);
    w.set(key(A, kv::USE_PARALLEL_RESIDUAL), Value::make_bool(c.b("use_parallel_residual", true)));
    if (!c.b("attention_bias", true)) throw Error(c.path + ": GPT-NeoX without attention biases is not supported");
    add("token_embd.weight", "gpt_neox.embed_in.weight", {n_vocab, n_embd});
    for (int64_t l = 0; l < n_layer; l++) {
      const std::string p = "gpt_neox.layers." + std::to_string(l) + ".";
      auto b = [&](const char* n) { return tn::blk((int)l, n); };
      for (const char* s : {"weight", "bias"}) {
        std::string sfx = std::string(".") + s;
        add(b(tn::ATTN_NORM) + sfx, p + "input_layernorm" + sfx, {n_embd});
        add(b(tn::ATTN_QKV) + sfx, p + "attention.query_key_value" + sfx,
            s[0] == 'w' ? std::vector<int64_t>{3 * n_embd, n_embd} : std::vector<int64_t>{3 * n_embd}, Transform::NeoxQkv);
        add(b(tn::ATTN_OUT) + sfx, p + "attention.dense" + sfx,
            s[0] == 'w' ? std::vector<int64_t>{n_embd, n_embd} : std::vector<int64_t>{n_embd});
        add(b(tn::FFN_NORM) + sfx, p + "post_attention_layernorm" + sfx, {n_embd});
        add(b(tn::FFN_UP) + sfx, p + "mlp.dense_h_to_4h" + sfx,
            s[0] == 'w' ? std::vector<int64_t>{n_ff, n_embd} : std::vector<int64_t>{n_ff});
        add(b(tn::FFN_DOWN) + sfx, p + "mlp.dense_4h_to_h" + sfx,
            s[0] == 'w' ? std::vector<int64_t>{n_embd, n_ff} : std::vector<int64_t>{n_embd});
      }
      for (const char* s : {"attention.bias", "attention.masked_bias", "attention.rotary_emb.inv_freq"}) ignorable.insert(p + s);
    }
    add("output_norm.weight", "gpt_neox.final_layer_norm.weight", {n_embd});
    add("output_norm.bias", "gpt_neox.final_layer_norm.bias", {n_embd});
    tied = c.b("tie_word_embeddings", false);
    if (!tied) add("output.weight", "embed_out.weight", {n_vocab, n_embd});
    ignorable.insert("embed_out.weight");
    ignorable.insert("lm_head.weight");
    ignorable.insert("gpt_neox.rotary_emb.inv_freq");
  } else {  // GPT-J
    n_embd = c.i("n_embd");
    const int64_t n_layer = layers("n_layer"), n_head = c.i("n_head");
    const int64_t n_ff = c.i("n_inner", 4 * n_embd);
    n_vocab = vocab_size();
    if (n_embd % n_head) throw Error(c.path + ": n_embd is not a multiple of n_head");
    const int64_t hd = n_embd / n_head;
    const int64_t n_rot = c.i("rotary_dim", hd);
    if (n_rot > hd || n_rot % 2) throw Error(c.path + ": rotary_dim " + std::to_string(n_rot) + " out of range");
    u32(kv::VOCAB_SIZE, n_vocab);
    u32(kv::CONTEXT_LENGTH, c.i("n_positions", 2048));
    u32(kv::EMBEDDING_LENGTH, n_embd);
    u32(kv::BLOCK_COUNT, n_layer);
    u32(kv::FEED_FORWARD_LENGTH, n_ff);
    u32(kv::ROPE_DIMENSION_COUNT, n_rot);
    u32(kv::HEAD_COUNT, n_head);
    f32(kv::LAYERNORM_EPS, c.f("layer_norm_epsilon", 1e-5));
    f32(kv::ROPE_FREQ_BASE, 10000.0);
    add("token_embd.weight", "transformer.wte.weight", {n_vocab, n_embd});
    for (int64_t l = 0; l < n_layer; l++) {
      const std::string p = "transformer.h." + std::to_string(l) + ".";
      auto b = [&](const char* n) { return tn::blk((int)l, n); };
      add(b(tn::ATTN_NORM) + ".weight", p + "ln_1.weight", {n_embd});
      add(b(tn::ATTN_NORM) + ".bias", p + "ln_1.bias", {n_embd});
      add(b(tn::ATTN_Q) + ".weight", p + "attn.q_proj.weight", {n_embd, n_embd});
      add(b(tn::ATTN_K) + ".weight", p + "attn.k_proj.weight", {n_embd, n_embd});
      add(b(tn::ATTN_V) + ".weight", p + "attn.v_proj.weight", {n_embd, n_embd});
      add(b(tn::ATTN_OUT) + ".weight", p + "attn.out_proj.weight", {n_embd, n_embd});
      add(b(tn::FFN_UP) + ".weight", p + "mlp.fc_in.weight", {n_ff, n_embd});
      add(b(tn::FFN_UP) + ".bias", p + "mlp.fc_in.bias", {n_ff});
      add(b(tn::FFN_DOWN) + ".weight", p + "mlp.fc_out.weight", {n_embd, n_ff});
      add(b(tn::FFN_DOWN) + ".bias", p + "mlp.fc_out.bias", {n_embd});
      for (const char* s : {"attn.bias", "attn.masked_bias", "attn.rotary_emb.inv_freq"}) ignorable.insert(p + s);
    }
    add("output_norm.weight", "transformer.ln_f.weight", {n_embd});
    add("output_norm.bias", "transformer.ln_f.bias", {n_embd});
    tied = c.b("tie_word_embeddings", false);
    if (!tied) {
      add("output.weight", "lm_head.weight", {n_vocab, n_embd});
      add("output.bias", "lm_head.bias", {n_vocab});
    }
    ignorable.insert("lm_head.weight");
    ignorable.insert("lm_head.bias");
  }

  // ---- vocabulary ------------------------------------------------------------------
  Vocab& v = tok.vocab;
  if (v.size() > n_vocab)
    throw Error(opt.model_dir + ": the tokenizer has " + std::to_string(v.size()) + " tokens but vocab_size is " +
                std::to_string(n_vocab));
  if (v.size() < n_vocab) {  // padded embeddings (e.g. Pythia): name the spare rows, never produced
    for (int64_t i = v.size(); i < n_vocab; i++) {
      v.tokens.push_back("[PAD" + std::to_string(i) + "]");
      v.types.push_back(TokenType::Unused);
      if (!v.scores.empty()) v.scores.push_back(0.0f);
    }
  }
  v.write_gguf(w);
  sum.n_vocab = v.size();

  if (opt.vocab_only) {
    w.set(kv::FILE_TYPE, Value::make_uint(ValueType::U32, (uint32_t)file_type_of(opt.outtype)));
    w.write(opt.out_path);
    sum.out_bytes = fs::file_size(opt.out_path);
    return sum;
  }

  // ---- weights: check the plan against the checkpoint ------------------------------
  std::set<std::string> used;
  for (Planned& p : plan) {
    const SourceTensor* t = ck->find(p.src);
    // GPT-NeoX's head: embed_out.weight in published checkpoints, lm_head.weight
    // in a state_dict() saved by recent transformers.
    if (!t && p.src == "embed_out.weight" && (t = ck->find("lm_head.weight"))) p.src = "lm_head.weight";
    if (!t) throw Error(opt.model_dir + ": tensor '" + p.src + "' is missing from the checkpoint");
    if (t->shape != p.shape) {
      auto str = [](const std::vector<int64_t>& s) {
        std::string r = "[";
        for (size_t k = 0; k < s.size(); k++) r += (k ? ", " : "") + std::to_string(s[k]);
        return r + "]";
      };
      throw Error(t->file + ": tensor '" + p.src + "' has shape " + str(t->shape) + ", config.json implies " + str(p.shape));
    }
    if (t->dtype != DType::F32 && t->dtype != DType::F16 && t->dtype != DType::BF16 && t->dtype != DType::F64)
      throw Error(t->file + ": tensor '" + p.src + "' has dtype " + dtype_name(t->dtype) + ", expected a float type");
    used.insert(p.src);
    p.type = p.shape.size() == 1 ? ggml::Type::F32 : weight_type(opt.outtype, p.shape.back(), p.out, opt);
  }
  for (const auto& t : ck->tensors()) {
    if (used.count(t.name) || ignorable.count(t.name)) continue;
    throw Error(t.file + ": tensor '" + t.name + "' is not part of a " + arch_hf + " checkpoint");
  }
  w.set(kv::FILE_TYPE, Value::make_uint(ValueType::U32, (uint32_t)file_type_of(opt.outtype)));
  if (opt.outtype == ggml::Type::Q8_0) w.set(kv::QUANTIZATION_VERSION, Value::make_uint(ValueType::U32, 2));
  for (const Planned& p : plan) {
    int64_t ne[4] = {1, 1, 1, 1};
    const int nd = (int)p.shape.size();
    for (int d = 0; d < nd; d++) ne[d] = p.shape[nd - 1 - d];
    w.add_tensor(p.out, p.type, ne, nd, nullptr);
  }

  // ---- stream: one tensor in memory at a time --------------------------------------
  std::vector<float> buf;
  std::vector<uint8_t> out;
  const int64_t n_head = A == Arch::GPTJ ? c.i("n_head") : c.i("num_attention_heads");
  const int64_t n_head_kv = A == Arch::LLAMA ? c.i("num_key_value_heads", n_head) : n_head;
  size_t done = 0;
  w.write(opt.out_path, [&](size_t i) -> const void* {
    const Planned& p = plan[i];
    const SourceTensor& t = *ck->find(p.src);
    std::vector<float> x = t.to_f32();
    const int64_t rows = p.shape[0], cols = p.shape.size() > 1 ? p.shape[1] : 1;
    if (p.tr != Transform::None) {
      buf.resize(x.size());
      if (p.tr == Transform::RopeQ) permute_rope_rows(x.data(), buf.data(), rows, cols, (int)n_head);
      else if (p.tr == Transform::RopeK) permute_rope_rows(x.data(), buf.data(), rows, cols, (int)n_head_kv);
      else neox_qkv_regroup(x.data(), buf.data(), (int)n_head, n_embd / n_head, cols);
      x.swap(buf);
    }
    const ggml::TypeTraits& tt = ggml::traits(p.type);
    const int64_t ne0 = p.shape.back(), nrows = (int64_t)x.size() / ne0;
    const size_t row_bytes = ggml::row_size(p.type, ne0);
    out.resize(row_bytes * (size_t)nrows);
    // Rows are independent; quantizing a large matrix uses every core.
#pragma omp parallel for schedule(static) if (nrows >= 64)
    for (int64_t r = 0; r < nrows; r++) tt.from_float(x.data() + r * ne0, out.data() + (size_t)r * row_bytes, ne0);
    sum.n_params += (uint64_t)x.size();
    sum.n_tensors++;
    if (opt.progress) opt.progress(++done, plan.size(), p.out);
    return out.data();
  });
  sum.out_bytes = fs::file_size(opt.out_path);
  return sum;
}

}  // namespace llm
