#include "llm/model.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ggml/backend.h"
#include "ggml/cuda.h"
#include "ggml/ops.h"
#include "llm/error.h"

namespace llm {

namespace {

// The file map's pages of a tensor that was copied out: dropped from this
// process (they stay in the page cache), so its memory is counted once. The
// map is read-only and private (MappedFile): touching the bytes again reads
// the file again; on anonymous memory this would zero them instead.
void release_pages(const void* p, size_t n) {
#if defined(__unix__) || defined(__APPLE__)
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
#else
  (void)p;
  (void)n;
#endif
}

// The OpenMP team size of the calling thread's parallel regions, for a scope
// (0: left as it is).
struct OmpThreads {
  int saved = 0;
  explicit OmpThreads(int n) {
#ifdef _OPENMP
    if (n > 0) saved = omp_get_max_threads(), omp_set_num_threads(n);
#else
    (void)n;
#endif
  }
  ~OmpThreads() {
#ifdef _OPENMP
    if (saved > 0) omp_set_num_threads(saved);
#endif
  }
};

struct Loader {
  const gguf::File& f;
  Model& m;
  ggml::Context& ctx;
  const LoadOptions& opt;
  const ggml::Backend& be;
  uint64_t& n_params;
  uint64_t& bytes;
  uint64_t& mapped;
  std::map<ggml::Type, uint64_t> type_count;
  // The GPU backend, and whether the tensors loaded now go to it: they are
  // then used from the file map (copied to the GPU after the load, their
  // pages then released), never copied or rearranged on the host.
  ggml::Backend* device = nullptr;
  bool to_device = false;
  uint64_t done = 0, total = 0;  // the file's tensor bytes, for opt.progress

  void loaded(const gguf::TensorInfo* ti) {
    done += ti->nbytes;
    if (opt.progress && !opt.progress(total ? std::min(1.0, double(done) / double(total)) : 1.0))
      throw Cancelled(f.path() + ": loading cancelled");
  }

  // Finds `name` and checks its shape (GGUF order) and type; nullptr when
  // absent and not required.
  const gguf::TensorInfo* find(const std::string& name, const std::vector<int64_t>& want, bool required) {
    const gguf::TensorInfo* ti = f.find_tensor(name);
    if (!ti) {
      if (required) throw Error(f.path() + ": tensor '" + name + "' is missing");
      return nullptr;
    }
    bool ok = ti->n_dims <= (int)want.size() || (ti->n_dims == 2 && want.size() == 1);
    for (size_t d = 0; d < 4 && ok; d++) ok = ti->ne[d] == (d < want.size() ? want[d] : 1);
    if (!ok) {
      std::string got = "[", exp = "[";
      for (int d = 0; d < ti->n_dims; d++) got += (d ? ", " : "") + std::to_string(ti->ne[d]);
      for (size_t d = 0; d < want.size(); d++) exp += (d ? ", " : "") + std::to_string(want[d]);
      throw Error(f.path() + ": tensor '" + name + "' has shape " + got + "], expected " + exp + "]");
    }
    if (!ggml::traits(ti->type).to_float)
      throw Error(f.path() + ": tensor '" + name + "' has type " + ggml::type_name(ti->type) +
                  ", which this engine cannot compute with");
    if (want.size() == 1 && ti->type != ggml::Type::F32 && ti->type != ggml::Type::F16)
      throw Error(f.path() + ": 1-D tensor '" + name + "' must be F32 or F16, not " + ggml::type_name(ti->type));
    return ti;
  }

  // How a tensor is held: dequantized to F32 (norm gains and biases are
  // added/multiplied as F32; every weight with f32_weights), in the
  // backend's own layout (the CPU's rearranged Q8_0/Q4_0/Q4_1), copied as
  // stored, or used from the file map.
  enum class Hold { F32, BF16, Prepared, Copy, Mapped };
  Hold hold(const gguf::TensorInfo* ti, size_t dims) const {
    if (opt.f32_weights || (dims == 1 && ti->type != ggml::Type::F32)) return Hold::F32;
    if (opt.bf16_matrices && dims == 2 && (ti->type == ggml::Type::F32 || ti->type == ggml::Type::F16) &&
        ti->name != "token_embd.weight")
      return Hold::BF16;
    if (to_device && device->supports_type(ti->type)) return Hold::Mapped;
    if (opt.repack && dims == 2) {
      ggml::Tensor probe;
      probe.type = ti->type;
      for (int d = 0; d < 4; d++) probe.ne[d] = ti->ne[d];
      ggml::set_contiguous_strides(&probe);
      if (const size_t n = be.weight_layout_size(&probe)) {
        if (n != ti->nbytes) throw Error(f.path() + ": tensor '" + ti->name + "': a backend layout of another size is not supported");
        return Hold::Prepared;
      }
    }
    return opt.copy_weights ? Hold::Copy : Hold::Mapped;
  }
  static ggml::Type held_type(const gguf::TensorInfo* ti, Hold h) {
    return h == Hold::F32 ? ggml::Type::F32 : h == Hold::BF16 ? ggml::Type::BF16 : ti->type;
  }

  // Writes ti's values, held as h, into t (its memory; not for Hold::Mapped).
  void fill(const gguf::TensorInfo* ti, Hold h, ggml::Tensor* t) {
    const int64_t n = ti->ne[0] * ti->ne[1] * ti->ne[2] * ti->ne[3];
    const auto* src = static_cast<const char*>(ti->data);
    auto* out = static_cast<char*>(t->data);
    if (h == Hold::F32) {
      ggml::traits(ti->type).to_float(ti->data, static_cast<float*>(t->data), n);
      bytes += (uint64_t)n * 4;
      return;
    }
    if (h == Hold::BF16) {  // row by row through F32 (round to nearest even, as the products' packing)
      const int64_t K = ti->ne[0], rows = n / K;
      const size_t in_row = ggml::row_size(ti->type, K);
      const auto to_f32 = ggml::traits(ti->type).to_float;
      const auto to_bf16 = ggml::traits(ggml::Type::BF16).from_float;
#pragma omp parallel
      {
        std::vector<float> tmp(static_cast<size_t>(K));
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
          to_f32(src + size_t(r) * in_row, tmp.data(), K);
          to_bf16(tmp.data(), out + size_t(r) * size_t(K) * 2, K);
        }
      }
      release_pages(ti->data, ti->nbytes);
      bytes += uint64_t(n) * 2;
      return;
    }
    if (h == Hold::Prepared) {
      be.prepare_weight(t, src, out);
    } else {
      const int64_t chunks = int64_t((ti->nbytes + (size_t(1) << 20) - 1) >> 20);  // 1 MiB each
#pragma omp parallel for schedule(static)
      for (int64_t c = 0; c < chunks; c++) {
        const size_t off = size_t(c) << 20;
        std::memcpy(out + off, src + off, std::min(size_t(1) << 20, ti->nbytes - off));
      }
    }
    release_pages(ti->data, ti->nbytes);
    bytes += ti->nbytes;
  }

  void count(const gguf::TensorInfo* ti, size_t dims) {
    const int64_t n = ti->ne[0] * ti->ne[1] * ti->ne[2] * ti->ne[3];
    n_params += (uint64_t)n;
    if (dims > 1) type_count[ti->type] += (uint64_t)n;
  }

  // ti (with `dims` dimensions wanted) as a tensor of its own.
  ggml::Tensor* make(const gguf::TensorInfo* ti, const std::string& name, size_t dims) {
    count(ti, dims);
    const Hold h = hold(ti, dims);
    ggml::Tensor* t;
    if (h == Hold::Mapped) {
      t = ctx.new_tensor_external(ti->type, ti->ne, ti->n_dims, name);
      t->data = const_cast<void*>(ti->data);
      bytes += ti->nbytes;
      mapped += ti->nbytes;
    } else {
      t = ctx.new_tensor(held_type(ti, h), ti->ne, ti->n_dims, name);
      fill(ti, h, t);
    }
    loaded(ti);
    return t;
  }

  // Finds `name`, checks it, makes it a tensor.
  ggml::Tensor* get(const std::string& name, std::initializer_list<int64_t> ne, bool required = true) {
    const std::vector<int64_t> want(ne);
    const gguf::TensorInfo* ti = find(name, want, required);
    return ti ? make(ti, name, want.size()) : nullptr;
  }

  // Matrices read with the same activations (LLaMA's q, k and v), held one
  // after another in one buffer: the rows of the first, then of the second,
  // ... Returns that [row length, all rows] matrix, and the parts as views of
  // it in `parts` (the backend's fusion pass reads them with one product); nullptr (parts loaded one by one) where they are not
  // copied anyway or differ in type or row length.
  ggml::Tensor* get_fused(const std::string& fused_name, const std::vector<std::pair<std::string, std::vector<int64_t>>>& want,
                          std::vector<ggml::Tensor*>& parts) {
    std::vector<const gguf::TensorInfo*> tis;
    for (const auto& [name, ne] : want) tis.push_back(find(name, ne, true));
    const Hold h = hold(tis[0], 2);
    bool same = h == Hold::Prepared || h == Hold::Copy;
    int64_t rows = 0;
    for (const auto* ti : tis) {
      same = same && ti->n_dims == 2 && ti->type == tis[0]->type && ti->ne[0] == tis[0]->ne[0] && hold(ti, 2) == h;
      rows += ti->ne[1];
    }
    parts.clear();
    if (!same) {
      for (size_t i = 0; i < tis.size(); i++) parts.push_back(make(tis[i], want[i].first, 2));
      return nullptr;
    }
    const ggml::Type type = held_type(tis[0], h);
    ggml::Tensor* fused = ctx.new_tensor(type, {tis[0]->ne[0], rows}, fused_name);
    size_t at = 0;
    for (size_t i = 0; i < tis.size(); i++) {
      count(tis[i], 2);
      ggml::Tensor* t = ggml::view_2d(ctx, fused, tis[i]->ne[0], tis[i]->ne[1], fused->nb[1], at);
      t->name = want[i].first;
      t->data = static_cast<char*>(fused->data) + at;
      fill(tis[i], h, t);
      loaded(tis[i]);
      at += t->nbytes();
      parts.push_back(t);
    }
    fused->layout = parts[0]->layout;  // each part prepared alike
    return fused;
  }
};

uint64_t get_u(const gguf::File& f, Arch a, const char* suffix) {
  uint64_t v = f.get_uint(key(a, suffix));
  if (v == 0 || v > (uint64_t(1) << 31))
    throw Error(f.path() + ": " + key(a, suffix) + " = " + std::to_string(v) + " is out of range");
  return v;
}

float get_f(const gguf::File& f, const std::string& k, float def) {
  return f.find(k) ? (float)f.get_float(k) : def;
}

}  // namespace

std::string Model::name() const {
  if (const auto* v = file_->find("general.name"); v && v->type == gguf::ValueType::STRING && !v->s.empty()) return v->s;
  return std::filesystem::path(file_->path()).filename().string();
}

std::string Model::type_name() const { return main_type_; }

std::string Model::device_name() const { return device_ ? device_->name() : std::string(); }

// Copies the offloaded tensors the loader left on the file map (or in F32)
// into one GPU buffer; their host pages are released.
void Model::offload(Model& m, bool all) {
  std::vector<ggml::Tensor*> ts;
  auto take = [&](ggml::Tensor* t) {
    if (t && !t->view_src && m.device_->supports_type(t->type)) ts.push_back(t);
  };
  for (int64_t il = 0; il < m.hp.n_layer; il++) {
    if (!m.layer_on_device(il)) continue;
    const Layer& l = m.layers[size_t(il)];
    for (ggml::Tensor* t : {l.attn_norm, l.attn_norm_b, l.wq, l.wk, l.wv, l.wqkv, l.wo, l.bq, l.bk, l.bv, l.bqkv, l.bo,
                            l.ffn_norm, l.ffn_norm_b, l.w_gate, l.w_up, l.w_down, l.b_up, l.b_down})
      take(t);
  }
  if (all) {
    for (ggml::Tensor* t : {m.output_norm, m.output_norm_b, m.output, m.output_b}) take(t);
    if (!m.output) take(m.tok_embd);
  }
  auto padded = [](size_t n) { return (n + 255) / 256 * 256; };
  size_t total = 0;
  for (const ggml::Tensor* t : ts) total += padded(t->nbytes());
  m.device_buf_ = m.device_->alloc(total);
  char* at = static_cast<char*>(m.device_buf_->base());
  for (ggml::Tensor* t : ts) {
    // Only tensors the loader kept as stored (or made F32) are here: a host
    // layout of the CPU's would not be the GPU's.
    if (t->layout != 0) throw Error("offload: '" + t->name + "' is held in a CPU layout");
    const size_t n = t->nbytes();
    m.device_->write(at, t->data, n);
    const char* map = static_cast<const char*>(m.file_->bytes());
    const bool mapped = t->data >= map && t->data < map + m.file_->size();
    if (mapped) {
      release_pages(t->data, n);
      m.mapped_bytes_ -= n;
    }
    t->data = at;
    t->flags |= ggml::FLAG_DEVICE;
    m.device_bytes_ += n;
    at += padded(n);
  }
}

std::unique_ptr<Model> Model::load(const std::string& path, const LoadOptions& opt) {
  std::unique_ptr<Model> m(new Model());
  m->file_ = gguf::File::open(path);
  const gguf::File& f = *m->file_;
  HParams& hp = m->hp;
  hp.arch = arch_from_name(f.get_string(kv::ARCHITECTURE));
  const Arch A = hp.arch;
  m->tokenizer = std::make_unique<Tokenizer>(Vocab::from_gguf(f));
  hp.n_vocab = m->tokenizer->vocab().size();
  if (f.find(key(A, kv::VOCAB_SIZE)) && (int64_t)get_u(f, A, kv::VOCAB_SIZE) != hp.n_vocab)
    throw Error(f.path() + ": " + key(A, kv::VOCAB_SIZE) + " differs from the " + std::to_string(hp.n_vocab) +
                " tokens of the vocabulary");
  hp.n_ctx_train = (int64_t)get_u(f, A, kv::CONTEXT_LENGTH);
  hp.n_embd = (int64_t)get_u(f, A, kv::EMBEDDING_LENGTH);
  hp.n_layer = (int64_t)get_u(f, A, kv::BLOCK_COUNT);
  hp.n_ff = (int64_t)get_u(f, A, kv::FEED_FORWARD_LENGTH);
  hp.n_head = (int64_t)get_u(f, A, kv::HEAD_COUNT);
  hp.n_head_kv = f.find(key(A, kv::HEAD_COUNT_KV)) ? (int64_t)get_u(f, A, kv::HEAD_COUNT_KV) : hp.n_head;
  if (hp.n_embd % hp.n_head) throw Error(f.path() + ": embedding length is not a multiple of the head count");
  if (hp.n_head % hp.n_head_kv) throw Error(f.path() + ": head count is not a multiple of the KV head count");
  hp.n_rot = f.find(key(A, kv::ROPE_DIMENSION_COUNT)) ? (int64_t)get_u(f, A, kv::ROPE_DIMENSION_COUNT) : hp.head_dim();
  if (hp.n_rot > hp.head_dim() || hp.n_rot % 2)
    throw Error(f.path() + ": rope dimension count " + std::to_string(hp.n_rot) + " does not fit the head");
  hp.rope_base = get_f(f, key(A, kv::ROPE_FREQ_BASE), 10000.0f);
  if (const auto* st = f.find(key(A, kv::ROPE_SCALING_TYPE))) {
    const std::string& type = f.get_string(key(A, kv::ROPE_SCALING_TYPE));
    if (type == "linear") hp.rope_freq_scale = 1.0f / get_f(f, key(A, kv::ROPE_SCALING_FACTOR), 1.0f);
    else if (type != "none") throw Error(f.path() + ": rope scaling '" + type + "' is not supported (linear)");
    (void)st;
  }
  if (!(hp.rope_base > 0) || !(hp.rope_freq_scale > 0)) throw Error(f.path() + ": bad rope frequency base or scale");
  hp.norm_eps = A == Arch::LLAMA ? get_f(f, key(A, kv::LAYERNORM_RMS_EPS), 1e-5f) : get_f(f, key(A, kv::LAYERNORM_EPS), 1e-5f);
  if (A == Arch::GPTNEOX) {
    if (const auto* v = f.find(key(A, kv::USE_PARALLEL_RESIDUAL))) hp.parallel_residual = v->u != 0;
  }

  Loader L{f, *m, m->ctx_, opt, opt.backend ? *opt.backend : ggml::default_backend(), m->n_params_, m->weight_bytes_, m->mapped_bytes_, {}};
  for (const auto& ti : f.tensors()) L.total += ti.nbytes;
  OmpThreads threads(opt.n_threads);
  const int64_t E = hp.n_embd, V = hp.n_vocab, F = hp.n_ff, EKV = hp.n_embd_kv();
  if (opt.n_gpu_layers < 0) throw Error("the GPU layer count must be 0 or more");
  m->n_gpu_layers_ = (int)std::min<int64_t>(opt.n_gpu_layers, hp.n_layer);
  m->gpu_device_ = opt.gpu_device;
  if (m->n_gpu_layers_ > 0) {
    try {
      m->device_ = ggml::device_backend(opt.gpu_device);
    } catch (const ggml::Error& e) {
      throw Error(std::string("-ngl ") + std::to_string(opt.n_gpu_layers) + ": " + e.what());
    }
    L.device = m->device_.get();
  }
  const bool all_on_device = m->n_gpu_layers_ > 0 && m->n_gpu_layers_ == hp.n_layer;
  // A tied output matrix is the token embedding: on the GPU with the output.
  L.to_device = all_on_device && !f.find_tensor("output.weight");
  m->tok_embd = L.get("token_embd.weight", {E, V});
  L.to_device = all_on_device;
  m->output_norm = L.get("output_norm.weight", {E});
  if (A != Arch::LLAMA) m->output_norm_b = L.get("output_norm.bias", {E});
  m->output = L.get("output.weight", {E, V}, A != Arch::LLAMA);
  if (A == Arch::GPTJ) m->output_b = L.get("output.bias", {V});
  // The layer table (and later the KV cache) is sized from this: bounded first by the
  // tensors the file really has, each layer having several of its own.
  if (hp.n_layer > (int64_t)f.tensors().size())
    throw Error(f.path() + ": " + key(A, kv::BLOCK_COUNT) + " = " + std::to_string(hp.n_layer) +
                " layers, but the file has only " + std::to_string(f.tensors().size()) + " tensors");
  m->layers.resize((size_t)hp.n_layer);
  for (int il = 0; il < (int)hp.n_layer; il++) {
    Layer& l = m->layers[il];
    L.to_device = m->layer_on_device(il);
    auto n = [&](const char* t, const char* s) { return tn::blk(il, t) + "." + s; };
    l.attn_norm = L.get(n(tn::ATTN_NORM, "weight"), {E});
    if (A == Arch::LLAMA) {
      std::vector<ggml::Tensor*> p;
      l.wqkv = L.get_fused(n("attn_qkv_fused", "weight"),
                           {{n(tn::ATTN_Q, "weight"), {E, E}}, {n(tn::ATTN_K, "weight"), {E, EKV}},
                            {n(tn::ATTN_V, "weight"), {E, EKV}}}, p);
      l.wq = p[0], l.wk = p[1], l.wv = p[2];
      l.wo = L.get(n(tn::ATTN_OUT, "weight"), {E, E});
      l.bq = L.get(n(tn::ATTN_Q, "bias"), {E}, false);
      l.bk = L.get(n(tn::ATTN_K, "bias"), {EKV}, false);
      l.bv = L.get(n(tn::ATTN_V, "bias"), {EKV}, false);
      l.bo = L.get(n(tn::ATTN_OUT, "bias"), {E}, false);
      l.ffn_norm = L.get(n(tn::FFN_NORM, "weight"), {E});
      l.w_gate = L.get(n(tn::FFN_GATE, "weight"), {E, F});
      l.w_up = L.get(n(tn::FFN_UP, "weight"), {E, F});
      l.w_down = L.get(n(tn::FFN_DOWN, "weight"), {F, E});
    } else if (A == Arch::GPTNEOX) {
      l.attn_norm_b = L.get(n(tn::ATTN_NORM, "bias"), {E});
      l.wqkv = L.get(n(tn::ATTN_QKV, "weight"), {E, 3 * E});
      l.bqkv = L.get(n(tn::ATTN_QKV, "bias"), {3 * E});
      l.wo = L.get(n(tn::ATTN_OUT, "weight"), {E, E});
      l.bo = L.get(n(tn::ATTN_OUT, "bias"), {E});
      l.ffn_norm = L.get(n(tn::FFN_NORM, "weight"), {E});
      l.ffn_norm_b = L.get(n(tn::FFN_NORM, "bias"), {E});
      l.w_up = L.get(n(tn::FFN_UP, "weight"), {E, F});
      l.b_up = L.get(n(tn::FFN_UP, "bias"), {F});
      l.w_down = L.get(n(tn::FFN_DOWN, "weight"), {F, E});
      l.b_down = L.get(n(tn::FFN_DOWN, "bias"), {E});
    } else {  // GPT-J
      l.attn_norm_b = L.get(n(tn::ATTN_NORM, "bias"), {E});
      l.wq = L.get(n(tn::ATTN_Q, "weight"), {E, E});
      l.wk = L.get(n(tn::ATTN_K, "weight"), {E, E});
      l.wv = L.get(n(tn::ATTN_V, "weight"), {E, E});
      l.wo = L.get(n(tn::ATTN_OUT, "weight"), {E, E});
      l.w_up = L.get(n(tn::FFN_UP, "weight"), {E, F});
      l.b_up = L.get(n(tn::FFN_UP, "bias"), {F});
      l.w_down = L.get(n(tn::FFN_DOWN, "weight"), {F, E});
      l.b_down = L.get(n(tn::FFN_DOWN, "bias"), {E});
    }
  }
  if (m->device_) offload(*m, all_on_device);
  if (opt.progress && !opt.progress(1.0)) throw Cancelled(f.path() + ": loading cancelled");
  uint64_t best = 0;
  for (const auto& [t, c] : L.type_count)
    if (c > best) best = c, m->main_type_ = ggml::type_name(t);
  return m;
}

}  // namespace llm
