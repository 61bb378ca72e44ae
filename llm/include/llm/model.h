#pragma once
// A GGUF model loaded for inference: hyperparameters from the metadata, the
// vocabulary, and every weight as a ggml tensor (copied into memory, or
// pointing into the file's memory map: LoadOptions), checked for presence,
// shape and a supported type.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ggml/ggml.h"
#include "llm/arch.h"
#include "llm/gguf.h"
#include "llm/tokenizer.h"

namespace llm {

struct HParams {
  Arch arch = Arch::LLAMA;
  int64_t n_vocab = 0, n_ctx_train = 0, n_embd = 0, n_layer = 0, n_ff = 0;
  int64_t n_head = 0, n_head_kv = 0, n_rot = 0;
  float norm_eps = 1e-5f;
  float rope_base = 10000.0f, rope_freq_scale = 1.0f;  // freq_scale = 1 / linear factor
  bool parallel_residual = true;                       // GPT-NeoX
  int64_t head_dim() const { return n_embd / n_head; }
  int64_t n_embd_kv() const { return head_dim() * n_head_kv; }
};

// One transformer block's weights; absent ones are null (per architecture).
struct Layer {
  ggml::Tensor *attn_norm = nullptr, *attn_norm_b = nullptr;
  ggml::Tensor *wq = nullptr, *wk = nullptr, *wv = nullptr, *wqkv = nullptr, *wo = nullptr;
  ggml::Tensor *bq = nullptr, *bk = nullptr, *bv = nullptr, *bqkv = nullptr, *bo = nullptr;
  ggml::Tensor *ffn_norm = nullptr, *ffn_norm_b = nullptr;
  ggml::Tensor *w_gate = nullptr, *w_up = nullptr, *w_down = nullptr;
  ggml::Tensor *b_up = nullptr, *b_down = nullptr;
  // wqkv: GPT-NeoX's as stored; for LLaMA with copied weights, one matrix
  // holding wq's, wk's and wv's rows one after another (they are views into
  // it), so generation reads them in one product.
};

struct LoadOptions {
  // Dequantize every weight to F32 at load (a copy in memory): for parity
  // checks against reference implementations that run in F32.
  bool f32_weights = false;
  // Hold F32 and F16 weight matrices as BF16 (not the token embedding, whose
  // rows are looked up, not multiplied): for fine-tuning in mixed precision,
  // whose products round the frozen weights to bf16 anyway (the same floats
  // then, without a conversion per product; an F32 base in half the memory).
  // finetune-lora --bf16 asks for it where the kernel set has the BF16 GEMM.
  bool bf16_matrices = false;
  // Copy the weights into anonymous memory backed by transparent huge pages
  // (the file's pages are then released from this process, so the memory is
  // counted once); false: use the file map directly. Copying costs load time
  // and the sharing of the file's pages between processes, and on some
  // machines buys generation speed (docs/performance.md, "file map").
  bool copy_weights = true;
  // Hold weight matrices in the backend's own layout where it has one (the
  // CPU rearranges Q8_0, Q4_0 and Q4_1 for its matrix-vector kernels; see
  // docs/performance.md). They are copied into memory then, even with
  // copy_weights false. Results are the stored layout's, bit for bit.
  bool repack = true;
  // The backend whose layouts weights are prepared in (nullptr: the CPU).
  const ggml::Backend* backend = nullptr;
  // Threads that copy and rearrange weights (0: OpenMP's default).
  int n_threads = 0;
  // Layers whose weights (and KV cache) live on the GPU, the last ones of
  // the model; past the layer count, the output matrix and norm too (and a
  // tied token embedding). Weights of types the GPU backend does not compute
  // (the K-quants) stay in host memory. Needs a build with the CUDA backend.
  int n_gpu_layers = 0;
  int gpu_device = 0;
  // Called after each weight with the share of the file's tensor bytes
  // loaded (0..1, 1 last); returning false stops the load (llm::Cancelled).
  std::function<bool(double)> progress;
  // What the tools' --mmap (the file map as stored) and --no-repack ask for.
  static LoadOptions for_flags(bool mmap, bool no_repack) {
    LoadOptions o;
    o.copy_weights = !mmap;
    o.repack = !mmap && !no_repack;
    return o;
  }
};

class Model {
 public:
  static std::unique_ptr<Model> load(const std::string& path, const LoadOptions& opt = {});

  HParams hp;
  std::unique_ptr<Tokenizer> tokenizer;
  ggml::Tensor* tok_embd = nullptr;
  ggml::Tensor *output_norm = nullptr, *output_norm_b = nullptr;
  ggml::Tensor *output = nullptr, *output_b = nullptr;  // output null: tied to tok_embd
  std::vector<Layer> layers;

  const gguf::File& file() const { return *file_; }
  const std::string& path() const { return file_->path(); }
  std::string name() const;          // general.name, else the file name
  std::string type_name() const;     // the most common weight type, e.g. "q4_1"
  uint64_t n_params() const { return n_params_; }
  uint64_t weight_bytes() const { return weight_bytes_; }  // bytes of all weight tensors
  // Of those, the bytes computed with straight from the file map (resident
  // once touched; the rest are copies in memory of their own).
  uint64_t mapped_bytes() const { return mapped_bytes_; }
  // GPU offload (LoadOptions::n_gpu_layers): layers offloaded (clamped to the
  // layer count), whether layer il is one, the device's name and the weight
  // bytes in its memory.
  int n_gpu_layers() const { return n_gpu_layers_; }
  bool layer_on_device(int64_t il) const { return n_gpu_layers_ > 0 && il >= hp.n_layer - n_gpu_layers_; }
  int gpu_device() const { return gpu_device_; }
  std::string device_name() const;
  uint64_t device_bytes() const { return device_bytes_; }

 private:
  Model() = default;
  static void offload(Model& m, bool all);
  std::shared_ptr<ggml::Backend> device_;  // before the buffer: freed after it
  std::unique_ptr<ggml::Buffer> device_buf_;
  int n_gpu_layers_ = 0, gpu_device_ = 0;
  uint64_t device_bytes_ = 0;
  std::unique_ptr<gguf::File> file_;
  ggml::Context ctx_{size_t(1) << 20};
  uint64_t n_params_ = 0, weight_bytes_ = 0, mapped_bytes_ = 0;
  std::string main_type_;
};

}  // namespace llm
