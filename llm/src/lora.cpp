#include "llm/lora.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "ggml/autodiff.h"
#include "llm/checkpoint.h"
#include "llm/convert.h"
#include "llm/error.h"
#include "llm/files.h"
#include "llm/gguf.h"

namespace llm {

using ggml::Tensor;

namespace {
struct Module {
  const char* name;    // PEFT's
  const char* parent;  // the submodule that holds it in transformers
  Tensor* Layer::*field;
  const char* gguf;    // the weight's GGUF name in a block
  const char* short_name;
};
const std::vector<Module>& modules_of(Arch arch) {
  static const std::vector<Module> llama = {{"q_proj", "self_attn", &Layer::wq, "attn_q", "q"},
                                            {"k_proj", "self_attn", &Layer::wk, "attn_k", "k"},
                                            {"v_proj", "self_attn", &Layer::wv, "attn_v", "v"},
                                            {"o_proj", "self_attn", &Layer::wo, "attn_output", "o"},
                                            {"gate_proj", "mlp", &Layer::w_gate, "ffn_gate", "gate"},
                                            {"up_proj", "mlp", &Layer::w_up, "ffn_up", "up"},
                                            {"down_proj", "mlp", &Layer::w_down, "ffn_down", "down"}};
  static const std::vector<Module> neox = {{"query_key_value", "attention", &Layer::wqkv, "attn_qkv", "qkv"},
                                           {"dense", "attention", &Layer::wo, "attn_output", "o"},
                                           {"dense_h_to_4h", "mlp", &Layer::w_up, "ffn_up", "up"},
                                           {"dense_4h_to_h", "mlp", &Layer::w_down, "ffn_down", "down"}};
  static const std::vector<Module> gptj = {{"q_proj", "attn", &Layer::wq, "attn_q", "q"},
                                           {"k_proj", "attn", &Layer::wk, "attn_k", "k"},
                                           {"v_proj", "attn", &Layer::wv, "attn_v", "v"},
                                           {"out_proj", "attn", &Layer::wo, "attn_output", "o"},
                                           {"fc_in", "mlp", &Layer::w_up, "ffn_up", "up"},
                                           {"fc_out", "mlp", &Layer::w_down, "ffn_down", "down"}};
  return arch == Arch::LLAMA ? llama : arch == Arch::GPTNEOX ? neox : gptj;
}
const Module& module_of(Arch arch, const std::string& name) {
  for (const Module& m : modules_of(arch))
    if (name == m.name || name == m.short_name) return m;
  std::string known;
  for (const Module& m : modules_of(arch))
    known += (known.empty() ? "" : ", ") + std::string(m.short_name) + " (" + m.name + ")";
  throw Error("LoRA: '" + name + "' is not a projection of a " + arch_name(arch) + " model: " + known);
}
const char* peft_prefix(Arch arch) {
  return arch == Arch::LLAMA ? "base_model.model.model.layers." : arch == Arch::GPTNEOX ? "base_model.model.gpt_neox.layers."
                                                                                       : "base_model.model.transformer.h.";
}
}  // namespace

std::string Lora::module_name(Arch arch, const std::string& name) { return module_of(arch, name).name; }

std::string Lora::weight_name(const LoraAdapter& a) const {
  return "blk." + std::to_string(a.layer) + "." + module_of(model_.hp.arch, a.module).gguf + ".weight";
}

std::vector<std::string> Lora::module_names(Arch arch) {
  std::vector<std::string> v;
  for (const Module& m : modules_of(arch)) v.push_back(m.name);
  return v;
}

LoraAdapter& Lora::add(int layer, const std::string& module) {
  const Module& m = module_of(model_.hp.arch, module);
  Tensor* w = model_.layers[size_t(layer)].*m.field;
  if (!w) throw Error("LoRA: this model has no " + module + " weight in layer " + std::to_string(layer));
  LoraAdapter a;
  a.weight = w;
  a.layer = layer;
  a.module = m.name;
  const std::string base = "blk." + std::to_string(layer) + "." + m.name;
  a.a = ctx_.new_tensor(ggml::Type::F32, {w->ne[0], rank_}, base + ".lora_a");
  a.b = ctx_.new_tensor(ggml::Type::F32, {rank_, w->ne[1]}, base + ".lora_b");
  ggml::set_trainable(a.a);
  ggml::set_trainable(a.b);
  by_weight_[w] = adapters_.size();
  adapters_.push_back(a);
  return adapters_.back();
}

std::unique_ptr<Lora> Lora::create(const Model& model, int rank, float alpha, const std::vector<std::string>& modules,
                                   uint64_t seed, bool rslora) {
  if (rank < 1 || rank > 4096) throw Error("LoRA: rank " + std::to_string(rank) + " out of range (1 to 4096)");
  if (!(alpha > 0)) throw Error("LoRA: alpha must be positive");
  if (modules.empty()) throw Error("LoRA: no modules to adapt");
  std::unique_ptr<Lora> l(new Lora(model));
  l->rank_ = rank;
  l->alpha_ = alpha;
  l->rslora_ = rslora;
  std::mt19937_64 rng(seed);
  for (int il = 0; il < int(model.hp.n_layer); il++)
    for (const std::string& m : modules) {
      LoraAdapter& a = l->add(il, m);
      a.scale = rslora ? alpha / std::sqrt(float(rank)) : alpha / float(rank);
      // torch's kaiming_uniform_(a=sqrt(5)) on [r, in]: bound = 1 / sqrt(in)
      const float bound = 1.0f / std::sqrt(float(a.a->ne[0]));
      std::uniform_real_distribution<float> u(-bound, bound);
      for (int64_t i = 0; i < a.a->nelements(); i++) a.a->as<float>()[i] = u(rng);
    }
  return l;
}

const LoraAdapter* Lora::find(const Tensor* w) const {
  auto it = by_weight_.find(w);
  return it == by_weight_.end() ? nullptr : &adapters_[it->second];
}

std::vector<Tensor*> Lora::params() const {
  std::vector<Tensor*> p;
  for (const LoraAdapter& a : adapters_) p.push_back(a.a), p.push_back(a.b);
  return p;
}

std::string Lora::peft_name(const LoraAdapter& a, bool b) const {
  const Module& m = module_of(model_.hp.arch, a.module);
  return std::string(peft_prefix(model_.hp.arch)) + std::to_string(a.layer) + "." + m.parent + "." + m.name +
         (b ? ".lora_B.weight" : ".lora_A.weight");
}

namespace {
// Which row reordering the converter gives W, so B gets the same.
enum class Rows { Same, RopeQ, RopeK, NeoxQkv };
Rows rows_of(const HParams& hp, const std::string& module) {
  if (hp.arch == Arch::LLAMA && module == "q_proj") return Rows::RopeQ;
  if (hp.arch == Arch::LLAMA && module == "k_proj") return Rows::RopeK;
  if (hp.arch == Arch::GPTNEOX && module == "query_key_value") return Rows::NeoxQkv;
  return Rows::Same;
}
}  // namespace

void Lora::b_from_peft(const LoraAdapter& a, const float* src, Tensor* dst) const {
  b_rows_from_peft(a, src, dst->as<float>(), dst->ne[1], dst->ne[0]);
}

void Lora::b_rows_from_peft(const LoraAdapter& a, const float* src, float* d, int64_t out, int64_t r) const {
  const HParams& hp = model_.hp;
  switch (rows_of(hp, a.module)) {
    case Rows::Same: std::copy(src, src + out * r, d); break;
    case Rows::RopeQ: permute_rope_rows(src, d, out, r, int(hp.n_head)); break;
    case Rows::RopeK: permute_rope_rows(src, d, out, r, int(hp.n_head_kv)); break;
    case Rows::NeoxQkv: neox_qkv_regroup(src, d, int(hp.n_head), hp.head_dim(), r); break;
  }
}

std::vector<float> Lora::b_to_peft(const LoraAdapter& a, const Tensor* b_like) const {
  // The reorderings are permutations of rows: find where each PEFT row went
  // by sending row indices through the forward transform.
  const int64_t out = b_like->ne[1], r = b_like->ne[0];
  std::vector<float> idx(static_cast<size_t>(out));
  for (int64_t i = 0; i < out; i++) idx[size_t(i)] = float(i);
  std::vector<float> moved(idx.size());
  b_rows_from_peft(a, idx.data(), moved.data(), out, 1);
  std::vector<float> res(size_t(out * r));
  for (int64_t g = 0; g < out; g++) {
    const int64_t p = int64_t(moved[size_t(g)]);  // GGUF row g holds PEFT row p
    for (int64_t j = 0; j < r; j++) res[size_t(p * r + j)] = b_like->as<float>()[g * r + j];
  }
  return res;
}

std::unique_ptr<Lora> Lora::load_peft(const Model& model, const std::string& dir) {
  using json = nlohmann::json;
  const std::string cfg_path = dir + "/adapter_config.json";
  std::ifstream in(cfg_path);
  if (!in) throw Error("LoRA: cannot open " + cfg_path);
  json c;
  try {
    c = json::parse(in);
  } catch (const json::exception& e) {
    throw Error("LoRA: " + cfg_path + " is not valid JSON (" + e.what() + ")");
  }
  auto num = [&](const char* k) -> double {
    if (!c.contains(k) || !c[k].is_number()) throw Error("LoRA: " + cfg_path + " has no number '" + k + "'");
    return c[k].get<double>();
  };
  if (c.value("peft_type", std::string("LORA")) != "LORA") throw Error("LoRA: " + cfg_path + " is not a LoRA adapter");
  if (c.value("use_dora", false)) throw Error("LoRA: DoRA adapters are not supported");
  if (c.value("fan_in_fan_out", false)) throw Error("LoRA: fan_in_fan_out adapters are not supported");
  for (const char* k : {"rank_pattern", "alpha_pattern"})
    if (c.contains(k) && c[k].is_object() && !c[k].empty())
      throw Error(std::string("LoRA: per-module ranks or alphas (") + k + ") are not supported");
  const double r = num("r"), alpha = num("lora_alpha");
  if (r < 1 || r > 4096 || r != std::floor(r)) throw Error("LoRA: rank " + std::to_string(r) + " out of range");
  const bool rs = c.value("use_rslora", false);

  std::unique_ptr<Lora> l(new Lora(model));
  l->rank_ = int(r);
  l->alpha_ = float(alpha);
  l->rslora_ = rs;
  const float scale = float(rs ? alpha / std::sqrt(r) : alpha / r);
  auto ck = Checkpoint::open_safetensors({dir + "/adapter_model.safetensors"});
  const std::string prefix = peft_prefix(model.hp.arch);
  for (const SourceTensor& t : ck->tensors()) {
    // <prefix><layer>.<parent>.<module>.lora_A.weight
    const std::string& n = t.name;
    const bool is_a = n.size() > 14 && n.compare(n.size() - 14, 14, ".lora_A.weight") == 0;
    const bool is_b = n.size() > 14 && n.compare(n.size() - 14, 14, ".lora_B.weight") == 0;
    if (n.compare(0, prefix.size(), prefix) != 0 || (!is_a && !is_b))
      throw Error("LoRA: unexpected tensor '" + n + "' in a " + arch_name(model.hp.arch) + " adapter");
    const std::string rest = n.substr(prefix.size(), n.size() - prefix.size() - 14);
    const size_t dot = rest.find('.');
    const std::string module = rest.substr(rest.rfind('.') + 1);
    int layer = -1;
    try {
      layer = std::stoi(rest.substr(0, dot));
    } catch (...) {
    }
    if (layer < 0 || layer >= int(model.hp.n_layer)) throw Error("LoRA: tensor '" + n + "' names no layer of this model");
    const Module& m = module_of(model.hp.arch, module);
    Tensor* w = model.layers[size_t(layer)].*m.field;
    const LoraAdapter* have = w ? l->find(w) : nullptr;
    LoraAdapter& a = have ? l->adapters_[l->by_weight_[w]] : l->add(layer, module);
    a.scale = scale;
    Tensor* dst = is_a ? a.a : a.b;
    // PyTorch [r, in] / [out, r] are ggml's [in, r] / [r, out]
    if (t.shape.size() != 2 || t.shape[0] != dst->ne[1] || t.shape[1] != dst->ne[0])
      throw Error("LoRA: tensor '" + n + "' has a shape that does not fit " + dst->shape_str());
    const std::vector<float> v = t.to_f32();
    if (is_a)
      std::copy(v.begin(), v.end(), dst->as<float>());
    else
      l->b_from_peft(a, v.data(), dst);
  }
  if (l->adapters_.empty()) throw Error("LoRA: " + dir + " holds no LoRA tensors");
  return l;
}

}  // namespace llm

namespace llm {

std::unique_ptr<Lora> Lora::load_gguf(const Model& model, const std::string& path) {
  auto f = gguf::File::open(path);
  auto str = [&](const char* k) -> std::string {
    const gguf::Value* v = f->find(k);
    return v && v->type == gguf::ValueType::STRING ? v->s : std::string();
  };
  if (str("general.type") != "adapter" || str("adapter.type") != "lora")
    throw Error("LoRA: " + path + " is not a LoRA adapter (general.type adapter, adapter.type lora)");
  if (str("general.architecture") != arch_name(model.hp.arch))
    throw Error("LoRA: " + path + " is an adapter for a " + str("general.architecture") + " model, not " +
                arch_name(model.hp.arch));
  std::unique_ptr<Lora> l(new Lora(model));
  l->alpha_ = float(f->get_float("adapter.lora.alpha"));
  // name -> (layer, module) through the GGUF names of the projections
  std::unordered_map<std::string, std::pair<int, const Module*>> by_name;
  for (int il = 0; il < int(model.hp.n_layer); il++)
    for (const Module& m : modules_of(model.hp.arch))
      by_name["blk." + std::to_string(il) + "." + m.gguf + ".weight"] = {il, &m};
  for (const gguf::TensorInfo& t : f->tensors()) {
    const bool is_a = t.name.size() > 7 && t.name.compare(t.name.size() - 7, 7, ".lora_a") == 0;
    const bool is_b = t.name.size() > 7 && t.name.compare(t.name.size() - 7, 7, ".lora_b") == 0;
    auto it = by_name.find(t.name.substr(0, t.name.size() - 7));
    if ((!is_a && !is_b) || it == by_name.end())
      throw Error("LoRA: tensor '" + t.name + "' in " + path + " adapts no weight of this model");
    if (t.type != ggml::Type::F32 && t.type != ggml::Type::F16 && t.type != ggml::Type::BF16)
      throw Error("LoRA: tensor '" + t.name + "' is " + ggml::type_name(t.type) + " (F32, F16 or BF16 expected)");
    if (t.n_dims != 2) throw Error("LoRA: tensor '" + t.name + "' is not 2-D");
    const int r = int(is_a ? t.ne[1] : t.ne[0]);
    if (l->rank_ == 0) l->rank_ = r;
    if (r != l->rank_) throw Error("LoRA: tensor '" + t.name + "' has rank " + std::to_string(r) + ", others " +
                                   std::to_string(l->rank_) + " (one rank per adapter file)");
    Tensor* w = model.layers[size_t(it->second.first)].*(it->second.second->field);
    if (!w) throw Error("LoRA: tensor '" + t.name + "' adapts a weight this model lacks");
    const LoraAdapter* have = l->find(w);
    LoraAdapter& a = have ? l->adapters_[l->by_weight_[w]] : l->add(it->second.first, it->second.second->name);
    Tensor* dst = is_a ? a.a : a.b;
    if (t.ne[0] != dst->ne[0] || t.ne[1] != dst->ne[1])
      throw Error("LoRA: tensor '" + t.name + "' has a shape that does not fit " + dst->shape_str());
    ggml::traits(t.type).to_float(t.data, dst->as<float>(), dst->nelements());
  }
  if (l->adapters_.empty()) throw Error("LoRA: " + path + " holds no LoRA tensors");
  for (LoraAdapter& a : l->adapters_) {
    if (!a.a || !a.b) throw Error("LoRA: " + path + " lacks an A or B for " + l->weight_name(a));
    a.scale = l->alpha_ / float(l->rank_);
  }
  return l;
}

std::unique_ptr<Lora> Lora::load(const Model& model, const std::string& path) {
  return not_a_directory_reason(path).empty() ? load_peft(model, path) : load_gguf(model, path);
}

void Lora::save_gguf(const std::string& path) const {
  gguf::Writer w;
  w.set("general.architecture", gguf::Value::make_string(arch_name(model_.hp.arch)));
  w.set("general.type", gguf::Value::make_string("adapter"));
  w.set("adapter.type", gguf::Value::make_string("lora"));
  // llama.cpp scales by alpha / r: rsLoRA's alpha / sqrt(r) is written as the alpha that gives it
  w.set("adapter.lora.alpha",
        gguf::Value::make_float(gguf::ValueType::F32, rslora_ ? alpha_ * std::sqrt(float(rank_)) : alpha_));
  for (const LoraAdapter& a : adapters_) {
    const std::string base = weight_name(a);
    w.add_tensor(base + ".lora_a", ggml::Type::F32, a.a->ne, 2, a.a->data);
    w.add_tensor(base + ".lora_b", ggml::Type::F32, a.b->ne, 2, a.b->data);
  }
  w.write(path);
}

namespace {
// A safetensors file: an 8-byte little-endian header length, the JSON header
// (padded with spaces to a multiple of 8), then the tensors' bytes.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, std::vector<float>>>& ts,
                       const std::vector<std::vector<int64_t>>& shapes) {
  nlohmann::ordered_json h;
  size_t off = 0;
  for (size_t i = 0; i < ts.size(); i++) {
    const size_t n = ts[i].second.size() * 4;
    h[ts[i].first] = {{"dtype", "F32"}, {"shape", shapes[i]}, {"data_offsets", {off, off + n}}};
    off += n;
  }
  h["__metadata__"] = {{"format", "pt"}};
  std::string js = h.dump();
  while (js.size() % 8) js.push_back(' ');
  OutputFile out(path);
  const uint64_t len = js.size();
  uint8_t le[8];
  for (int i = 0; i < 8; i++) le[i] = uint8_t(len >> (8 * i));
  bool ok = std::fwrite(le, 1, 8, out.stream()) == 8 && std::fwrite(js.data(), 1, js.size(), out.stream()) == js.size();
  for (const auto& t : ts) ok = ok && std::fwrite(t.second.data(), 4, t.second.size(), out.stream()) == t.second.size();
  if (!ok) throw Error("cannot write " + path);
  out.commit();
}
}  // namespace

void Lora::save_peft(const std::string& dir) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (!not_a_directory_reason(dir).empty()) throw Error("--peft-out " + dir + ": " + not_a_directory_reason(dir));
  std::vector<std::pair<std::string, std::vector<float>>> ts;
  std::vector<std::vector<int64_t>> shapes;
  std::vector<std::string> modules;
  for (const LoraAdapter& a : adapters_) {
    ts.push_back({peft_name(a, false), std::vector<float>(a.a->as<float>(), a.a->as<float>() + a.a->nelements())});
    shapes.push_back({a.a->ne[1], a.a->ne[0]});
    ts.push_back({peft_name(a, true), b_to_peft(a, a.b)});
    shapes.push_back({a.b->ne[1], a.b->ne[0]});
    if (std::find(modules.begin(), modules.end(), a.module) == modules.end()) modules.push_back(a.module);
  }
  write_safetensors(dir + "/adapter_model.safetensors", ts, shapes);
  nlohmann::ordered_json c = {{"peft_type", "LORA"},
                              {"task_type", "CAUSAL_LM"},
                              {"base_model_name_or_path", model_.name()},
                              {"r", rank_},
                              {"lora_alpha", alpha_},
                              {"lora_dropout", 0.0},
                              {"target_modules", modules},
                              {"bias", "none"},
                              {"fan_in_fan_out", false},
                              {"use_rslora", rslora_},
                              {"inference_mode", true}};
  OutputFile cf(dir + "/adapter_config.json");
  const std::string js = c.dump(2) + "\n";
  if (std::fwrite(js.data(), 1, js.size(), cf.stream()) != js.size()) throw Error("cannot write " + cf.path());
  cf.commit();
}

}  // namespace llm
