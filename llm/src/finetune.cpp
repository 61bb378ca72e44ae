#include "llm/finetune.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "llm/chat.h"
#include "llm/error.h"
#include "llm/gguf.h"
#include "llm/memory.h"
#include "llm/npy.h"
#include "llm/train.h"

namespace llm {

using ggml::Tensor;

int64_t TrainData::counted() const {
  int64_t n = 0;
  for (const TrainSequence& s : seqs)
    for (int32_t t : s.targets) n += t >= 0;
  return n;
}

namespace {
bool ends_with(const std::string& s, const char* suf) {
  const size_t n = std::strlen(suf);
  return s.size() >= n && s.compare(s.size() - n, n, suf) == 0;
}

// Windows of at most ctx tokens over ids, BOS first where the model adds one.
void add_windows(TrainData& d, const std::vector<int32_t>& ids, const Vocab& v, int64_t ctx) {
  const bool bos = v.add_bos && v.bos >= 0;
  const int64_t body = ctx - (bos ? 1 : 0);
  for (size_t at = 0; at < ids.size(); at += size_t(body)) {
    TrainSequence s;
    if (bos) s.tokens.push_back(v.bos);
    const size_t end = std::min(ids.size(), at + size_t(body));
    s.tokens.insert(s.tokens.end(), ids.begin() + long(at), ids.begin() + long(end));
    if (s.tokens.size() < 2) continue;  // nothing to predict
    s.targets.assign(s.tokens.begin() + 1, s.tokens.end());
    s.targets.push_back(-1);
    d.seqs.push_back(std::move(s));
  }
}

void check_ids(const TrainData& d, const Model& m, const std::string& path) {
  for (const TrainSequence& s : d.seqs)
    for (int32_t t : s.tokens)
      if (t < 0 || t >= m.hp.n_vocab)
        throw Error(path + ": token id " + std::to_string(t) + " is outside the model's vocabulary of " +
                    std::to_string(m.hp.n_vocab));
}
}  // namespace

TrainData load_train_data(const std::string& path, const Model& model, int64_t ctx) {
  if (ctx < 2) throw Error("the context must be at least 2 tokens");
  TrainData d;
  const Tokenizer* tok = model.tokenizer.get();
  if (ends_with(path, ".npy")) {
    const NpyI32 a = read_npy_i32(path);
    if (a.shape.size() != 3 || a.shape[0] < 1 || a.shape[1] < 1 || a.shape[2] < 2)
      throw Error(path + ": expected int32 [n_batches, batch, seq] with seq >= 2");
    if (a.shape[2] > ctx)
      throw Error(path + ": sequences of " + std::to_string(a.shape[2]) + " tokens are longer than the context (" +
                  std::to_string(ctx) + "; raise --ctx)");
    d.file_batch = a.shape[1];
    const int64_t seq = a.shape[2];
    for (int64_t b = 0; b < a.shape[0] * a.shape[1]; b++) {
      TrainSequence s;
      s.tokens.assign(a.data.begin() + long(b * seq), a.data.begin() + long((b + 1) * seq));
      s.targets.assign(s.tokens.begin() + 1, s.tokens.end());
      s.targets.push_back(-1);
      d.seqs.push_back(std::move(s));
    }
  } else if (ends_with(path, ".jsonl")) {
    if (!tok) throw Error(path + ": the model has no tokenizer to read text with");
    std::ifstream in(path);
    if (!in) throw Error(path + ": cannot open");
    std::string line;
    int64_t n = 0;
    const ChatFormat fmt(tok->vocab());
    while (std::getline(in, line)) {
      n++;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception&) {
        throw Error(path + ":" + std::to_string(n) + ": not JSON");
      }
      if (j.is_object() && j.contains("text") && j["text"].is_string()) {
        add_windows(d, tok->encode(j["text"].get<std::string>(), false, false), tok->vocab(), ctx);
      } else if (j.is_object() && j.contains("messages") && j["messages"].is_array()) {
        // Each turn tokenized as the template renders it after the turns
        // before; the assistant's tokens are the targets.
        std::vector<ChatMessage> msgs;
        for (const auto& m : j["messages"]) {
          if (!m.is_object() || !m.contains("role") || !m.contains("content") || !m["role"].is_string() ||
              !m["content"].is_string())
            throw Error(path + ":" + std::to_string(n) + ": a message needs a \"role\" and a \"content\" string");
          msgs.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
        }
        bool any = false;
        for (const ChatMessage& m : msgs) any |= m.role == "assistant";
        if (!any) throw Error(path + ":" + std::to_string(n) + ": a chat without an assistant turn has nothing to learn");
        TrainSequence s;
        std::vector<int32_t> mask;
        std::vector<ChatMessage> so_far = fmt.with_system({});
        if (!msgs.empty() && msgs[0].role == "system") so_far.clear();
        size_t prev = 0;
        std::vector<int32_t> all = fmt.tokenize(*tok, so_far, false);
        mask.assign(all.size(), 0);
        prev = all.size();
        for (const ChatMessage& m : msgs) {
          // an assistant turn counts from after its header (what the
          // template adds to prompt for it) to its end marker
          size_t header = prev;
          if (m.role == "assistant") header = fmt.tokenize(*tok, so_far, true).size();
          so_far.push_back(m);
          all = fmt.tokenize(*tok, so_far, false);
          if (all.size() < header || header < prev)
            throw Error(path + ":" + std::to_string(n) + ": the chat template re-tokenizes earlier turns");
          mask.resize(header, 0);
          mask.resize(all.size(), m.role == "assistant" ? 1 : 0);
          prev = all.size();
        }
        if (int64_t(all.size()) > ctx)
          throw Error(path + ":" + std::to_string(n) + ": a chat of " + std::to_string(all.size()) +
                      " tokens is longer than the context (" + std::to_string(ctx) + "; raise --ctx)");
        s.tokens = all;
        s.targets.assign(all.size(), -1);
        for (size_t i = 0; i + 1 < all.size(); i++)
          if (mask[i + 1]) s.targets[i] = all[i + 1];
        d.seqs.push_back(std::move(s));
      } else {
        throw Error(path + ":" + std::to_string(n) + ": expected {\"text\": ...} or {\"messages\": [...]}");
      }
    }
  } else {
    if (!tok) throw Error(path + ": the model has no tokenizer to read text with");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    add_windows(d, tok->encode(text, false, false), tok->vocab(), ctx);
  }
  if (d.seqs.empty() || d.counted() == 0) throw Error(path + ": the data set is empty (nothing to predict)");
  check_ids(d, model, path);
  for (const TrainSequence& s : d.seqs) d.max_len = std::max<int64_t>(d.max_len, int64_t(s.tokens.size()));
  return d;
}

namespace {
// Each compute thread's own memory once running (its stack's touched pages,
// the allocator's per-thread cache), measured.
constexpr size_t kThreadBytes = size_t(256) << 10;
}  // namespace

struct Finetuner::Impl {
  const Model& model;
  Lora& lora;
  const TrainData& train;
  FinetuneOptions o;
  std::shared_ptr<ggml::Backend> be;
  ggml::Context ctx{size_t(1) << 20};
  ggml::Graph g;
  TrainGraph t;
  ggml::Gradients grads;
  std::unique_ptr<ggml::Optimizer> opt;
  ggml::GraphAllocator alloc;
  int64_t len = 0;            // tokens per sequence in the graphs (the longest training sequence)
  // evaluation: the forward graph alone, one sequence, made when first needed
  std::unique_ptr<ggml::Context> ectx;
  std::unique_ptr<ggml::Graph> eg;
  TrainGraph et;
  std::unique_ptr<ggml::GraphAllocator> ealloc;
  int64_t batch = 1;
  std::vector<size_t> order;  // this epoch's sequence order
  int64_t epoch = -1;
  size_t next = 0;            // position in order

  Impl(const Model& m, Lora& l, const TrainData& d, const FinetuneOptions& op) : model(m), lora(l), train(d), o(op) {}

  // Sequence s into slot j of a graph's batch (padded: targets -1).
  void load(TrainGraph& tg, int64_t n, int64_t j, const TrainSequence& s) {
    int32_t* tok = tg.tokens->as<int32_t>() + j * n;
    int32_t* tgt = tg.targets->as<int32_t>() + j * n;
    for (int64_t i = 0; i < n; i++) {
      const bool in = i < int64_t(s.tokens.size());
      tok[i] = in ? s.tokens[size_t(i)] : 0;
      tgt[i] = in ? s.targets[size_t(i)] : -1;
    }
  }
  void new_epoch() {
    epoch++;
    order.resize(train.seqs.size());
    for (size_t i = 0; i < order.size(); i++) order[i] = i;
    if (o.shuffle && train.file_batch == 0) {
      std::mt19937_64 rng(o.seed * 1000003ULL + uint64_t(epoch));
      std::shuffle(order.begin(), order.end(), rng);
    }
    next = 0;
  }
};

Finetuner::Finetuner(const Model& model, Lora& lora, const TrainData& train, const FinetuneOptions& o)
    : impl_(std::make_unique<Impl>(model, lora, train, o)) {
  Impl& m = *impl_;
  if (o.micro_batch < 1 || o.batch < 1) throw Error("--batch and --micro-batch must be at least 1");
  m.batch = train.file_batch > 0 ? train.file_batch : o.batch;
  if (m.batch % o.micro_batch != 0)
    throw Error("--batch " + std::to_string(m.batch) + " is not a multiple of --micro-batch " + std::to_string(o.micro_batch));
  if (train.max_len > o.ctx)
    throw Error("a training sequence of " + std::to_string(train.max_len) + " tokens is longer than --ctx " +
                std::to_string(o.ctx));
  const int64_t per_epoch = std::max<int64_t>(1, int64_t(train.seqs.size()) / m.batch);
  total_ = o.steps > 0 ? o.steps : per_epoch * std::max<int64_t>(1, o.epochs);
  // Sequences are padded to the longest one, not to --ctx: a set of short
  // chats costs what its longest needs.
  m.len = std::max<int64_t>(train.max_len, 2);
  m.be = ggml::cpu_backend(o.threads > 0 ? o.threads : ggml::physical_cores());
  if (!(o.lora_dropout >= 0 && o.lora_dropout < 1)) throw Error("--lora-dropout must be in [0, 1)");
  m.t = build_train_graph(model, &lora, m.ctx, m.g, m.len, o.lora_dropout > 0, o.micro_batch);
  ggml::BackwardOptions bo;
  if (o.checkpointing) bo.checkpoints = m.t.layer_inputs;
  bo.bf16_products = o.bf16;
  bo.bf16_activations = o.bf16;
  bo.bf16_attention = o.bf16;
  bo.int8_products = o.int8_backward;
  m.grads = ggml::build_backward(m.ctx, m.g, m.t.loss, bo);
  const ggml::Gradients& grads = m.grads;
  ggml::OptimizerConfig oc = o.optim;
  if (oc.total == 0) oc.total = total_;
  m.opt = std::make_unique<ggml::Optimizer>(lora.params(), oc, *m.be);
  m.opt->accumulate(m.ctx, m.g, grads);
  m.alloc.set_backend(m.be.get());
  m.alloc.allocate(m.g);
  m.new_epoch();
}

Finetuner::~Finetuner() = default;

int64_t Finetuner::steps_done() const { return impl_->opt->steps(); }
int64_t Finetuner::batch() const { return impl_->batch; }
size_t Finetuner::planned_bytes() const { return impl_->alloc.buffer_size(); }

StepLog Finetuner::step() {
  Impl& m = *impl_;
  const auto t0 = std::chrono::steady_clock::now();
  if (m.next + size_t(m.batch) > m.order.size()) m.new_epoch();
  std::vector<const TrainSequence*> batch;
  for (int64_t i = 0; i < m.batch; i++) batch.push_back(&m.train.seqs[m.order[m.next + size_t(i)]]);
  m.next += size_t(m.batch);
  int64_t counted = 0;
  for (const TrainSequence* s : batch)
    for (int32_t t : s->targets) counted += t >= 0;
  StepLog log;
  log.tokens = counted;
  *m.t.count->as<float>() = float(std::max<int64_t>(counted, 1));
  // micro_batch sequences per compute: each micro-batch's gradients sum into the step's.
  const int64_t mb = m.o.micro_batch;
  for (size_t first = 0; first < batch.size(); first += size_t(mb)) {
    for (int64_t j = 0; j < mb; j++) {
      const size_t si = first + size_t(j);
      if (!m.t.dropout_masks.empty()) {
        // a function of (seed, step, sequence): a resumed run draws the same
        // masks, and so does one with another micro-batch
        std::mt19937_64 rng(m.o.seed * 0x9E3779B97F4A7C15ULL + uint64_t(m.opt->steps()) * 1000003ULL + si);
        std::bernoulli_distribution keep(1.0 - double(m.o.lora_dropout));
        const float kept = 1.0f / (1.0f - m.o.lora_dropout);
        for (Tensor* mk : m.t.dropout_masks) {
          const int64_t per = mk->nelements() / mb;
          float* v = mk->as<float>() + j * per;
          for (int64_t i = 0; i < per; i++) v[i] = keep(rng) ? kept : 0.0f;
        }
      }
      m.load(m.t, m.len, j, *batch[si]);
    }
    m.be->compute(m.g);
    log.loss += double(*m.t.loss->as<float>());
  }
  const ggml::StepStats st = m.opt->step();
  log.step = st.step;
  log.lr = st.lr;
  log.grad_norm = st.grad_norm;
  log.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return log;
}

void Finetuner::prepare_eval(int64_t max_len) {
  Impl& m = *impl_;
  if (max_len > m.o.ctx)
    throw Error("a validation sequence of " + std::to_string(max_len) + " tokens is longer than --ctx " +
                std::to_string(m.o.ctx));
  const int64_t n = std::max<int64_t>(max_len, 2);
  if (!m.eg || m.et.tokens->ne[0] < n) {
    m.ealloc.reset();
    m.ectx = std::make_unique<ggml::Context>(size_t(1) << 20);
    m.eg = std::make_unique<ggml::Graph>();
    m.et = build_train_graph(m.model, &m.lora, *m.ectx, *m.eg, n);
    m.ealloc = std::make_unique<ggml::GraphAllocator>(ggml::GraphAllocator::Mode::Reuse, m.be.get());
    m.ealloc->allocate(*m.eg);
  }
}

double Finetuner::evaluate(const TrainData& data) {
  Impl& m = *impl_;
  const int64_t counted = data.counted();
  prepare_eval(data.max_len);
  *m.et.count->as<float>() = float(std::max<int64_t>(counted, 1));
  double sum = 0;
  for (const TrainSequence& s : data.seqs) {
    m.load(m.et, m.et.tokens->ne[0], 0, s);
    m.be->compute(*m.eg);
    sum += double(*m.et.loss->as<float>());
  }
  return sum;
}

MemoryPlan Finetuner::memory(const ProcessBaseline& before) const {
  const Impl& m = *impl_;
  MemoryPlan p;
  p.weights = size_t(m.model.weight_bytes());
  for (const Tensor* t : m.lora.params()) p.lora += t->nbytes();
  const ggml::BackwardMemory bm = ggml::backward_memory(m.g, m.t.loss);
  const ggml::Optimizer::Memory om = m.opt->memory();
  // The graph's buffer split by what its results are (the split follows
  // lifetimes; the buffer's size is the planner's, exact).
  const size_t buf = m.alloc.buffer_size();
  size_t left = buf;
  auto take = [&](size_t want) {
    const size_t got = std::min(want, left);
    left -= got;
    return got;
  };
  p.gradients = take(bm.gradients) + om.gradients;
  p.activations = take(bm.kept);
  p.recompute = take(bm.recompute);
  size_t work = m.be->work_size(m.g);
  for (const ggml::Graph* g : m.opt->graphs()) work = std::max(work, m.be->work_size(*g));
  if (m.eg) work = std::max(work, m.be->work_size(*m.eg));
  p.scratch = left + work;
  p.optimizer = om.state + om.other;
  p.inputs = m.ctx.arena_used();
  const size_t eval_arena = m.eg ? m.ectx->arena_used() : 0;
  if (m.eg) p.eval = m.ealloc->buffer_size() + eval_arena;
  // What was resident before, less what is counted above (the weights
  // copied out of the file map and the adapter were already there), plus
  // what building this Finetuner made resident beyond what it zeroed (the
  // optimizer's state, the contexts' tensors: inputs): the graphs'
  // bookkeeping, measured now (so call this right after construction), and
  // the compute threads' own memory once they run.
  const size_t copies = size_t(m.model.weight_bytes() - m.model.mapped_bytes());
  const size_t own = before.own(), now = ProcessBaseline::measure(m.model).own();
  const size_t zeroed = om.gradients + om.state + p.inputs + eval_arena;
  const size_t built = now > own + zeroed ? now - own - zeroed : 0;
  p.runtime = (own > copies + p.lora ? own - copies - p.lora : 0) + built + kThreadBytes * size_t(m.be->threads());
  p.total = p.weights + p.lora + p.gradients + p.optimizer + p.activations + p.recompute + p.scratch + p.inputs + p.eval +
            p.runtime;
  p.load_peak = before.peak;
  p.peak_bytes = std::max(p.total, p.load_peak);
  return p;
}

namespace {
constexpr const char* kKeys[] = {"finetune.seed", "finetune.batch", "finetune.sequences", "finetune.counted",
                                 "finetune.total_steps", "finetune.rank"};
// The products' precision (--bf16: 1, int8 backward: 2): a resumed run must
// round as the interrupted one did to give its floats. (Older checkpoints
// lack the key and are taken as they are.)
constexpr const char* kPrecision = "finetune.precision";
uint64_t precision_bits(const FinetuneOptions& o) { return (o.bf16 ? 1u : 0u) | (o.int8_backward ? 2u : 0u); }
std::string precision_options(uint64_t bits) {
  std::string s = bits & 1 ? "--bf16" : "no --bf16";
  return s + (bits & 2 ? ", int8 backward" : ", --float-backward");
}
}

void Finetuner::save_checkpoint(const std::string& path) const {
  const Impl& m = *impl_;
  gguf::Writer w;
  auto u64 = [&](const char* k, uint64_t v) { w.set(k, gguf::Value::make_uint(gguf::ValueType::U64, v)); };
  w.set("general.type", gguf::Value::make_string("finetune-checkpoint"));
  w.set("general.architecture", gguf::Value::make_string(arch_name(m.model.hp.arch)));
  const uint64_t vals[] = {m.o.seed, uint64_t(m.batch), m.train.seqs.size(), uint64_t(m.train.counted()), uint64_t(total_),
                           uint64_t(m.lora.rank())};
  for (size_t i = 0; i < sizeof(kKeys) / sizeof(kKeys[0]); i++) u64(kKeys[i], vals[i]);
  u64(kPrecision, precision_bits(m.o));
  u64("finetune.step", uint64_t(m.opt->steps()));
  u64("finetune.epoch", uint64_t(m.epoch));
  u64("finetune.next", m.next);
  std::vector<Tensor*> ts = m.lora.params();
  for (Tensor* s : m.opt->state()) ts.push_back(s);
  for (const Tensor* t : ts) w.add_tensor(t->name, t->type, t->ne, 2, t->data);
  w.write(path);
}

void Finetuner::resume(const std::string& path) {
  Impl& m = *impl_;
  auto f = gguf::File::open(path);
  const gguf::Value* type = f->find("general.type");
  if (!type || type->type != gguf::ValueType::STRING || type->s != "finetune-checkpoint")
    throw Error(path + ": not a finetune-lora checkpoint");
  const uint64_t vals[] = {m.o.seed, uint64_t(m.batch), m.train.seqs.size(), uint64_t(m.train.counted()), uint64_t(total_),
                           uint64_t(m.lora.rank())};
  for (size_t i = 0; i < sizeof(kKeys) / sizeof(kKeys[0]); i++)
    if (f->get_uint(kKeys[i]) != vals[i])
      throw Error(path + ": written by a run with other settings or data (" + std::string(kKeys[i]) + " " +
                  std::to_string(f->get_uint(kKeys[i])) + ", this run " + std::to_string(vals[i]) + ")");
  if (f->find(kPrecision) && f->get_uint(kPrecision) != precision_bits(m.o))
    throw Error(path + ": written by a run with other precision options (" + precision_options(f->get_uint(kPrecision)) +
                "; this run " + precision_options(precision_bits(m.o)) + ")");
  std::vector<Tensor*> ts = m.lora.params();
  for (Tensor* s : m.opt->state()) ts.push_back(s);
  for (Tensor* t : ts) {
    const gguf::TensorInfo* ti = f->find_tensor(t->name);
    if (!ti || ti->type != t->type || ti->ne[0] != t->ne[0] || ti->ne[1] != t->ne[1])
      throw Error(path + ": no tensor '" + t->name + "' of shape " + t->shape_str() + " and type " +
                  ggml::type_name(t->type) + " (another adapter's or optimizer's checkpoint)");
    std::memcpy(t->data, ti->data, t->nbytes());
  }
  m.opt->set_steps(int64_t(f->get_uint("finetune.step")));
  m.epoch = int64_t(f->get_uint("finetune.epoch")) - 1;
  m.new_epoch();  // the epoch's order again
  m.next = size_t(f->get_uint("finetune.next"));
}

}  // namespace llm
