#pragma once
// LoRA adapters: beside a frozen weight W (any type), a trainable low-rank
// update, y = W x + scale * B (A x), with A F32 [in, r] and B F32 [r, out]
// (the bytes of PEFT's lora_A.weight [r, in] and lora_B.weight [out, r]). B's
// rows follow the GGUF layout of W: for LLaMA's q and k the rotary
// permutation, for GPT-NeoX's fused qkv its regrouping, as the converter
// does to W itself.
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ggml/ggml.h"
#include "llm/model.h"

namespace llm {

struct LoraAdapter {
  ggml::Tensor* weight = nullptr;  // the frozen W it adapts
  ggml::Tensor* a = nullptr;       // F32 [in, r]
  ggml::Tensor* b = nullptr;       // F32 [r, out]
  float scale = 1.0f;              // alpha / r (alpha / sqrt(r) with rsLoRA)
  int layer = 0;
  std::string module;              // PEFT's module name: q_proj, query_key_value, fc_in, ...
};

class Lora {
 public:
  // The PEFT module names an architecture's projections go by, in layer order.
  static std::vector<std::string> module_names(Arch arch);
  // A module from its PEFT name or its short name: q, k, v, o, gate, up,
  // down for LLaMA; qkv, o, up, down for GPT-NeoX (query_key_value, dense,
  // dense_h_to_4h, dense_4h_to_h); q, k, v, o, up, down for GPT-J (out_proj,
  // fc_in, fc_out). Throws naming the ones this architecture has.
  static std::string module_name(Arch arch, const std::string& name);
  // Adapters of rank r on the named modules of every layer, initialised as
  // PEFT does (A Kaiming-uniform, B zero: the model is unchanged at first).
  static std::unique_ptr<Lora> create(const Model& model, int rank, float alpha, const std::vector<std::string>& modules,
                                      uint64_t seed, bool rslora = false);
  // A PEFT adapter directory (adapter_config.json, adapter_model.safetensors).
  static std::unique_ptr<Lora> load_peft(const Model& model, const std::string& dir);
  // llama.cpp's LoRA GGUF (general.type adapter, adapter.type lora,
  // adapter.lora.alpha; "<base tensor>.lora_a" F32 [in, r] and ".lora_b"
  // [r, out], B in the GGUF row order), as convert_lora_to_gguf.py writes it.
  static std::unique_ptr<Lora> load_gguf(const Model& model, const std::string& path);
  // A PEFT directory or a GGUF file, whichever path is.
  static std::unique_ptr<Lora> load(const Model& model, const std::string& path);
  void save_gguf(const std::string& path) const;  // atomically
  // adapter_config.json + adapter_model.safetensors that PEFT loads (F32), atomically.
  void save_peft(const std::string& dir) const;
  // The GGUF name of the weight an adapter adapts ("blk.0.attn_q.weight").
  std::string weight_name(const LoraAdapter& a) const;
  bool rslora() const { return rslora_; }

  const LoraAdapter* find(const ggml::Tensor* weight) const;
  const std::vector<LoraAdapter>& adapters() const { return adapters_; }
  std::vector<ggml::Tensor*> params() const;  // a then b of each adapter: what training updates
  int rank() const { return rank_; }
  float alpha() const { return alpha_; }
  // PEFT's tensor name of an adapter's A or B ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").
  std::string peft_name(const LoraAdapter& a, bool b) const;
  // B (or a tensor of B's shape, such as its gradient) in PEFT's row order
  // from the GGUF order the graph uses, as floats.
  std::vector<float> b_to_peft(const LoraAdapter& a, const ggml::Tensor* b_like) const;
  void b_from_peft(const LoraAdapter& a, const float* src, ggml::Tensor* dst) const;

 private:
  // b_from_peft on raw rows: out rows of r values.
  void b_rows_from_peft(const LoraAdapter& a, const float* src, float* dst, int64_t out, int64_t r) const;
  explicit Lora(const Model& m) : model_(m) {}
  LoraAdapter& add(int layer, const std::string& module);
  const Model& model_;
  int rank_ = 0;
  float alpha_ = 0;
  bool rslora_ = false;
  ggml::Context ctx_{size_t(1) << 20};
  std::vector<LoraAdapter> adapters_;
  std::unordered_map<const ggml::Tensor*, size_t> by_weight_;
};

}  // namespace llm
