// Reverse-mode autodiff: every backward rule against central finite
// differences of an independent double-precision evaluator of the same graph
// (RefEval below), on random shapes with views, broadcasting, partial rotary
// dimensions and non-contiguous inputs; gradients identical for any thread
// count and with or without memory reuse; a frozen quantized weight's dX
// equal to the product with its dequantized copy.
#include <algorithm>
#include <unordered_map>

#include "ggml/autodiff.h"
#include "helpers.h"

using namespace ggml;

namespace {

// A naive forward evaluator in double. Each root (a leaf or a result that is
// not a view) is an array of doubles addressed like its memory (byte offset
// / element size), so views, permutes and copies read and write what they do
// in the engine. Block-quantized leaves are held dequantized, in element order.
struct RefEval {
  struct Buf {
    std::vector<double> v;
    size_t esz = 4;
    bool logical = false;
  };
  std::unordered_map<const Tensor*, Buf> mem;

  static const Tensor* root(const Tensor* t) { return t->view_src ? t->view_src : t; }
  size_t at(const Tensor* t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    const Buf& b = mem.at(root(t));
    if (b.logical) {
      REQUIRE(t == root(t));
      return size_t(i0 + t->ne[0] * (i1 + t->ne[1] * (i2 + t->ne[2] * i3)));
    }
    return (t->view_offs + size_t(i0) * t->nb[0] + size_t(i1) * t->nb[1] + size_t(i2) * t->nb[2] +
            size_t(i3) * t->nb[3]) / b.esz;
  }
  double& ref(const Tensor* t, int64_t i0, int64_t i1 = 0, int64_t i2 = 0, int64_t i3 = 0) {
    return mem.at(root(t)).v[at(t, i0, i1, i2, i3)];
  }
  // Element e of t in element order (i0 fastest).
  double& flat(const Tensor* t, int64_t e) {
    const int64_t i0 = e % t->ne[0], i1 = (e / t->ne[0]) % t->ne[1], i2 = (e / (t->ne[0] * t->ne[1])) % t->ne[2],
                  i3 = e / (t->ne[0] * t->ne[1] * t->ne[2]);
    return ref(t, i0, i1, i2, i3);
  }

  void load_leaf(const Tensor* l) {
    Buf b;
    if (traits(l->type).block_size > 1 || l->layout != 0) {
      b.logical = true;
      for (int64_t i3 = 0; i3 < l->ne[3]; i3++)
        for (int64_t i2 = 0; i2 < l->ne[2]; i2++)
          for (int64_t i1 = 0; i1 < l->ne[1]; i1++) {
            auto r = th::row_f64(l, i1, i2, i3);
            b.v.insert(b.v.end(), r.begin(), r.end());
          }
    } else {
      b.esz = type_size(l->type);
      b.v.assign(l->nbytes() / b.esz, 0.0);
      mem[l] = b;
      for (int64_t i3 = 0; i3 < l->ne[3]; i3++)
        for (int64_t i2 = 0; i2 < l->ne[2]; i2++)
          for (int64_t i1 = 0; i1 < l->ne[1]; i1++)
            for (int64_t i0 = 0; i0 < l->ne[0]; i0++) ref(l, i0, i1, i2, i3) = th::get(l, i0, i1, i2, i3);
      return;
    }
    mem[l] = b;
  }

  void eval(const Tensor* n) {
    if (op_is_view(n->op)) return;
    if (n->op != Op::CPY) {
      REQUIRE(n->type == Type::F32);
      Buf b;
      b.v.assign(n->nbytes() / 4, 0.0);
      mem[n] = b;
    }
    const Tensor* a = n->src[0];
    const Tensor* b = n->src[1];
    const int64_t ne0 = n->ne[0], rows = n->nrows();
    auto row_idx = [n](int64_t r, int64_t* i1, int64_t* i2, int64_t* i3) {
      *i1 = r % n->ne[1], *i2 = (r / n->ne[1]) % n->ne[2], *i3 = r / (n->ne[1] * n->ne[2]);
    };
    auto fparam = [n](int i) { return double(op_param_f32(n, i)); };
    switch (n->op) {
      case Op::CPY:
      case Op::CONT:
        for (int64_t e = 0; e < n->nelements(); e++) flat(n, e) = flat(a, e);
        break;
      case Op::ADD:
      case Op::MUL:
      case Op::SCALE:
      case Op::SILU:
      case Op::GELU:
      case Op::GELU_ERF:
      case Op::SILU_MUL:
        for (int64_t r = 0; r < rows; r++) {
          int64_t i1, i2, i3;
          row_idx(r, &i1, &i2, &i3);
          for (int64_t i0 = 0; i0 < ne0; i0++) {
            const double x = ref(a, i0, i1, i2, i3);
            double y = 0;
            auto bv = [&] { return ref(b, i0 % b->ne[0], i1 % b->ne[1], i2 % b->ne[2], i3 % b->ne[3]); };
            switch (n->op) {
              case Op::ADD: y = x + bv(); break;
              case Op::MUL: y = x * bv(); break;
              case Op::SCALE: y = x * fparam(0); break;
              case Op::SILU: y = x / (1 + std::exp(-x)); break;
              case Op::SILU_MUL: y = x / (1 + std::exp(-x)) * bv(); break;
              case Op::GELU: y = 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); break;
              default: y = 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); break;
            }
            ref(n, i0, i1, i2, i3) = y;
          }
        }
        break;
      case Op::GET_ROWS:
        for (int64_t r = 0; r < n->ne[1]; r++) {
          const int64_t id = int64_t(ref(b, r));
          for (int64_t i0 = 0; i0 < ne0; i0++) ref(n, i0, r) = ref(a, i0, id);
        }
        break;
      case Op::MUL_MAT: {
        const int64_t r2 = b->ne[2] / a->ne[2], r3 = b->ne[3] / a->ne[3];
        for (int64_t i3 = 0; i3 < n->ne[3]; i3++)
          for (int64_t i2 = 0; i2 < n->ne[2]; i2++)
            for (int64_t j = 0; j < n->ne[1]; j++)
              for (int64_t i = 0; i < ne0; i++) {
                double s = 0;
                for (int64_t k = 0; k < a->ne[0]; k++) s += ref(a, k, i, i2 / r2, i3 / r3) * ref(b, k, j, i2, i3);
                ref(n, i, j, i2, i3) = s;
              }
        break;
      }
      case Op::RMS_NORM:
      case Op::NORM:
        for (int64_t r = 0; r < rows; r++) {
          int64_t i1, i2, i3;
          row_idx(r, &i1, &i2, &i3);
          double mean = 0, sq = 0;
          for (int64_t i0 = 0; i0 < ne0; i0++) mean += ref(a, i0, i1, i2, i3);
          mean /= double(ne0);
          const double c = n->op == Op::NORM ? mean : 0.0;
          for (int64_t i0 = 0; i0 < ne0; i0++) sq += std::pow(ref(a, i0, i1, i2, i3) - c, 2);
          const double s = 1 / std::sqrt(sq / double(ne0) + fparam(0));
          for (int64_t i0 = 0; i0 < ne0; i0++)
            ref(n, i0, i1, i2, i3) = (ref(a, i0, i1, i2, i3) - c) * s * (b ? ref(b, i0) : 1.0);
        }
        break;
      case Op::ROPE: {
        REQUIRE(n->op_params[4] == 0);
        const int nd = n->op_params[0], half = nd / 2;
        const bool neox = RopeMode(n->op_params[1]) == RopeMode::Neox;
        for (int64_t r = 0; r < rows; r++) {
          int64_t i1, i2, i3;
          row_idx(r, &i1, &i2, &i3);
          for (int64_t i0 = 0; i0 < ne0; i0++) ref(n, i0, i1, i2, i3) = ref(a, i0, i1, i2, i3);
          const double pos = ref(b, i2) * fparam(3);
          for (int i = 0; i < half; i++) {
            const double th = pos * std::pow(fparam(2), -2.0 * i / nd);
            const int64_t p0 = neox ? i : 2 * i, p1 = neox ? i + half : 2 * i + 1;
            const double x0 = ref(a, p0, i1, i2, i3), x1 = ref(a, p1, i1, i2, i3);
            ref(n, p0, i1, i2, i3) = x0 * std::cos(th) - x1 * std::sin(th);
            ref(n, p1, i1, i2, i3) = x0 * std::sin(th) + x1 * std::cos(th);
          }
        }
        break;
      }
      case Op::SOFT_MAX: {
        const int32_t past = n->op_params[1];
        for (int64_t r = 0; r < rows; r++) {
          int64_t i1, i2, i3;
          row_idx(r, &i1, &i2, &i3);
          std::vector<double> v(static_cast<size_t>(ne0));
          double mx = -INFINITY;
          for (int64_t j = 0; j < ne0; j++) {
            const bool masked = past >= 0 && j > past + i1;
            v[size_t(j)] = masked ? -INFINITY : ref(a, j, i1, i2, i3) * fparam(0) + (b ? ref(b, j, i1) : 0.0);
            mx = std::max(mx, v[size_t(j)]);
          }
          double s = 0;
          for (double& x : v) s += (x = std::exp(x - mx));
          for (int64_t j = 0; j < ne0; j++) ref(n, j, i1, i2, i3) = v[size_t(j)] / s;
        }
        break;
      }
      case Op::CROSS_ENTROPY: {
        double sum = 0, count = 0;
        for (int64_t t = 0; t < a->ne[1]; t++) {
          const int64_t id = int64_t(ref(b, t));
          if (id < 0) continue;
          double mx = -INFINITY, s = 0;
          for (int64_t j = 0; j < a->ne[0]; j++) mx = std::max(mx, ref(a, j, t));
          for (int64_t j = 0; j < a->ne[0]; j++) s += std::exp(ref(a, j, t) - mx);
          sum += std::log(s) + mx - ref(a, id, t);
          count += 1;
        }
        if (n->src[2]) count = ref(n->src[2], 0);
        ref(n, 0) = count > 0 ? sum / count : 0.0;
        break;
      }
      default: FAIL("RefEval: no reference for " << op_name(n->op));
    }
  }
};

// A graph under test: trainable leaves and the loss's head.
struct Case {
  Context ctx;
  th::Rng rng;
  explicit Case(uint64_t seed) : rng(seed) {}
  Tensor* param(std::initializer_list<int64_t> ne, const std::string& name, float sd = 1.0f) {
    Tensor* t = ctx.new_tensor(Type::F32, ne, name);
    th::fill(t, rng, sd);
    set_trainable(t);
    return t;
  }
  Tensor* input(std::initializer_list<int64_t> ne, float sd = 1.0f) {
    Tensor* t = ctx.new_tensor(Type::F32, ne);
    th::fill(t, rng, sd);
    return t;
  }
  Tensor* ids(int64_t n, int64_t hi) {
    Tensor* t = ctx.new_tensor(Type::I32, {n});
    for (int64_t i = 0; i < n; i++) t->as<int32_t>()[i] = int32_t(rng.range(0, hi - 1));
    return t;
  }
  Tensor* positions(int64_t n) {
    Tensor* t = ids(n, 1);
    for (int64_t i = 0; i < n; i++) t->as<int32_t>()[i] = int32_t(3 + 2 * i);
    return t;
  }
  // Cross-entropy over y's rows, against random targets, every third position not counted.
  Tensor* loss(Tensor* y) {
    Tensor* yc = y->is_contiguous() ? y : cont(ctx, y);
    Tensor* logits = reshape_4d(ctx, yc, y->ne[0], y->nrows(), 1, 1);
    Tensor* tg = ids(y->nrows(), y->ne[0]);
    for (int64_t i = 0; i < y->nrows(); i += 3) tg->as<int32_t>()[i] = -1;
    return cross_entropy(ctx, logits, tg);
  }
};

struct Computed {
  Graph g;
  GraphAllocator alloc;
  Gradients grads;
  std::vector<Tensor*> forward;
  explicit Computed(GraphAllocator::Mode m) : alloc(m) {}
};

std::unique_ptr<Computed> compute(Case& c, Tensor* loss, int threads = 2, const cpu::KernelSet* k = nullptr,
                                  GraphAllocator::Mode mode = GraphAllocator::Mode::Reuse) {
  auto r = std::make_unique<Computed>(mode);
  r->g.expand(loss);
  r->forward = r->g.nodes();
  r->grads = build_backward(c.ctx, r->g, loss);
  r->alloc.allocate(r->g);
  Executor ex(threads, k);
  ex.compute(r->g);
  return r;
}

double ref_loss(RefEval& ev, const std::vector<Tensor*>& fwd) {
  for (const Tensor* n : fwd) ev.eval(n);
  return ev.ref(fwd.back(), 0);
}

// The loss, and every trainable leaf's gradient against central differences
// (all elements of small tensors, 48 random ones of larger), within tol as
// the norm of the difference over the norm of the reference.
void check_gradients(Case& c, Tensor* y, double tol = 1e-4, const cpu::KernelSet* k = nullptr) {
  Tensor* loss = c.loss(y);
  auto r = compute(c, loss, 2, k);
  RefEval ev;
  for (const Tensor* l : r->g.leafs()) ev.load_leaf(l);
  const double want = ref_loss(ev, r->forward);
  CHECK(std::fabs(double(*loss->as<float>()) - want) <= 1e-5 * std::max(1.0, std::fabs(want)));
  REQUIRE(!r->grads.grads.empty());
  for (const auto& [p, gr] : r->grads.grads) {
    const int64_t n = p->nelements();
    std::vector<int64_t> which;
    if (n <= 96) {
      for (int64_t e = 0; e < n; e++) which.push_back(e);
    } else {
      for (int i = 0; i < 48; i++) which.push_back(c.rng.range(0, n - 1));
    }
    double diff = 0, norm = 0;
    constexpr double h = 1e-4;
    for (int64_t e : which) {
      double& x = ev.flat(p, e);
      const double x0 = x;
      x = x0 + h;
      const double up = ref_loss(ev, r->forward);
      x = x0 - h;
      const double dn = ref_loss(ev, r->forward);
      x = x0;
      const double fd = (up - dn) / (2 * h);
      const int64_t i0 = e % gr->ne[0], rest = e / gr->ne[0];
      const double got = th::get(gr, i0, rest % gr->ne[1], (rest / gr->ne[1]) % gr->ne[2], rest / (gr->ne[1] * gr->ne[2]));
      diff += (got - fd) * (got - fd);
      norm += fd * fd;
    }
    const double rel = std::sqrt(diff) / std::max(std::sqrt(norm), 1e-8);
    CHECK_MESSAGE(rel <= tol, p->name << ": gradient off by " << rel << " (norm " << std::sqrt(norm) << ")");
  }
}

}  // namespace

TEST_CASE("autodiff: element-wise ops, broadcasting and scale") {
  Case c(1);
  Tensor* a = c.param({6, 4, 3}, "a");
  Tensor* b1 = c.param({6, 1, 3}, "b_rows");
  Tensor* b2 = c.param({1, 4, 1}, "b_cols");
  Tensor* y = add(c.ctx, mul(c.ctx, a, b1), scale(c.ctx, b2, 0.5f));
  // b_cols broadcast as the first operand of nothing: add needs its full-shape operand first
  y = add(c.ctx, y, b2);
  y = mul(c.ctx, y, a);  // a used twice: contributions summed
  check_gradients(c, y);
}

TEST_CASE("autodiff: activations on non-contiguous inputs") {
  for (Op op : {Op::SILU, Op::GELU, Op::GELU_ERF, Op::SILU_MUL}) {
    CAPTURE(op_name(op));
    Case c(2);
    Tensor* a = c.param({5, 7}, "a", 1.5f);
    Tensor* b = c.param({7, 5}, "b");
    Tensor* at = transpose(c.ctx, a);  // [7, 5], strided
    Tensor* y = op == Op::SILU ? silu(c.ctx, at) : op == Op::GELU ? gelu(c.ctx, at) : op == Op::GELU_ERF ? gelu_erf(c.ctx, at)
                                                                                                   : silu_mul(c.ctx, b, at);
    check_gradients(c, y);
  }
}

TEST_CASE("autodiff: matrix products, batched and broadcast") {
  Case c(3);
  Tensor* a = c.param({8, 5}, "w");
  Tensor* x = c.param({8, 3}, "x");
  check_gradients(c, mul_mat(c.ctx, a, x));

  Case d(4);
  Tensor* w = d.param({6, 4, 2}, "w_batched");  // each used by two of x's four batches
  Tensor* xb = d.param({6, 3, 4}, "x_batched");
  check_gradients(d, mul_mat(d.ctx, w, xb));

  Case e(5);  // activations through a permuted view, weights frozen
  Tensor* wf = e.input({6, 4});
  Tensor* xp = e.param({3, 6}, "x_t");
  check_gradients(e, mul_mat(e.ctx, wf, cont(e.ctx, transpose(e.ctx, xp))));
}

TEST_CASE("autodiff: norms with weight and bias") {
  Case c(6);
  Tensor* x = c.param({12, 4}, "x");
  Tensor* w = c.param({12}, "w");
  check_gradients(c, rms_norm(c.ctx, x, 1e-5f, w));

  Case d(7);
  Tensor* x2 = d.param({10, 3, 2}, "x");
  Tensor* w2 = d.param({10}, "w");
  Tensor* b2 = d.param({10}, "b");
  check_gradients(d, layer_norm(d.ctx, x2, w2, b2, 1e-5f));
}

TEST_CASE("autodiff: rope in both layouts, partial rotary dimensions") {
  for (RopeMode mode : {RopeMode::Interleaved, RopeMode::Neox})
    for (int nd : {8, 4}) {
      CAPTURE(nd);
      Case c(8 + nd);
      Tensor* x = c.param({8, 3, 4}, "x");  // head 8, 3 heads, 4 tokens
      check_gradients(c, rope(c.ctx, x, c.positions(4), nd, mode, 10000.0f, 0.5f));
    }
}

TEST_CASE("autodiff: soft_max with scale, causal mask and additive mask") {
  Case c(9);
  Tensor* x = c.param({6, 4, 2}, "x");
  check_gradients(c, soft_max(c.ctx, x, 0.7f, nullptr, 2));
  Case d(10);
  Tensor* x2 = d.param({6, 4}, "x");
  Tensor* mask = d.input({6, 5});
  check_gradients(d, soft_max(d.ctx, x2, 1.3f, mask));
}

TEST_CASE("autodiff: get_rows with repeated ids, views, reshape, permute, copies") {
  Case c(11);
  Tensor* table = c.param({5, 9}, "table");
  Tensor* ids = c.ids(7, 9);
  ids->as<int32_t>()[3] = ids->as<int32_t>()[0];  // a repeated row sums its gradients
  check_gradients(c, get_rows(c.ctx, table, ids));

  Case d(12);
  Tensor* x = d.param({6, 4, 3}, "x");
  Tensor* part = view_3d(d.ctx, x, 3, 2, 3, x->nb[1], x->nb[2], 2 * sizeof(float) + x->nb[1]);  // an inner block
  Tensor* firsts = view_2d(d.ctx, x, 6, 3, x->nb[2], 0);  // row 0 of each slice: a strided view
  Tensor* y = permute(d.ctx, part, 2, 0, 1, 3);            // [2, 3, 3]
  y = reshape(d.ctx, cont(d.ctx, y), {3, 6});
  Tensor* dst = d.ctx.new_tensor(Type::F32, {18});
  Tensor* copied = reshape(d.ctx, cpy(d.ctx, y, dst), {6, 3});
  check_gradients(d, add(d.ctx, copied, firsts));
}

TEST_CASE("autodiff: views of one product (q, k, v) accumulate into one gradient") {
  Case c(13);
  Tensor* w = c.param({8, 12}, "wqkv");
  Tensor* x = c.param({8, 3}, "x");
  Tensor* qkv = mul_mat(c.ctx, w, x);  // [12, 3]
  Tensor* q = view_2d(c.ctx, qkv, 4, 3, qkv->nb[1], 0);
  Tensor* k = view_2d(c.ctx, qkv, 4, 3, qkv->nb[1], 4 * sizeof(float));
  Tensor* v = view_2d(c.ctx, qkv, 4, 3, qkv->nb[1], 8 * sizeof(float));
  check_gradients(c, add(c.ctx, mul(c.ctx, q, k), silu(c.ctx, v)));
}

namespace {
// A LLaMA block: RMS norms with weights, q/k/v as views of one product,
// partial NeoX rope, grouped-query attention (4 heads, 2 KV heads) with a
// causal soft_max, SwiGLU, two residuals (x read twice).
Tensor* llama_block(Case& c, Tensor* x, int64_t T) {
  Context& ctx = c.ctx;
  const int64_t d = 16, hd = 4, nh = 4, nkv = 2;
  Tensor* h = rms_norm(ctx, x, 1e-5f, c.param({d}, "attn_norm"));
  Tensor* qkv = mul_mat(ctx, c.param({d, d + 2 * nkv * hd}, "wqkv", 0.3f), h);
  Tensor* q = view_3d(ctx, qkv, hd, nh, T, hd * 4, qkv->nb[1], 0);
  Tensor* k = view_3d(ctx, qkv, hd, nkv, T, hd * 4, qkv->nb[1], size_t(d) * 4);
  Tensor* v = view_3d(ctx, qkv, hd, nkv, T, hd * 4, qkv->nb[1], size_t(d + nkv * hd) * 4);
  Tensor* pos = c.positions(T);
  q = rope(ctx, q, pos, 2, RopeMode::Neox);
  k = rope(ctx, k, pos, 2, RopeMode::Neox);
  Tensor* Q = permute(ctx, q, 0, 2, 1, 3);  // [hd, T, nh]
  Tensor* K = permute(ctx, k, 0, 2, 1, 3);  // [hd, T, nkv]
  Tensor* kq = soft_max(ctx, mul_mat(ctx, K, Q), 0.5f, nullptr, 0);
  Tensor* V = cont(ctx, permute(ctx, v, 1, 2, 0, 3));  // [T, hd, nkv]
  Tensor* o = cont(ctx, permute(ctx, mul_mat(ctx, V, kq), 0, 2, 1, 3));
  o = mul_mat(ctx, c.param({d, d}, "wo", 0.3f), reshape(ctx, o, {d, T}));
  Tensor* x2 = add(ctx, x, o);
  Tensor* h2 = rms_norm(ctx, x2, 1e-5f, c.param({d}, "ffn_norm"));
  Tensor* gate = mul_mat(ctx, c.param({d, 24}, "w_gate", 0.3f), h2);
  Tensor* up = mul_mat(ctx, c.param({d, 24}, "w_up", 0.3f), h2);
  Tensor* down = mul_mat(ctx, c.param({24, d}, "w_down", 0.3f), silu_mul(ctx, gate, up));
  return add(ctx, x2, down);
}

// A GPT-NeoX block with a parallel residual: layer norms with bias,
// interleaved partial rope, biased products, GELU (tanh or erf).
Tensor* neox_block(Case& c, Tensor* x, int64_t T, bool erf) {
  Context& ctx = c.ctx;
  const int64_t d = 12, hd = 6, nh = 2;
  auto ln = [&](const char* n) {
    return layer_norm(ctx, x, c.param({d}, std::string(n) + ".w"), c.param({d}, std::string(n) + ".b"), 1e-5f);
  };
  auto linear = [&](Tensor* in, int64_t out, const char* n) {
    return add(ctx, mul_mat(ctx, c.param({in->ne[0], out}, n, 0.3f), in), c.param({out}, std::string(n) + ".bias", 0.1f));
  };
  Tensor* h = ln("ln1");
  Tensor* qkv = linear(h, 3 * d, "qkv");
  auto head = [&](int i) { return view_3d(ctx, qkv, hd, nh, T, hd * 4, qkv->nb[1], size_t(i * d) * 4); };
  Tensor* pos = c.positions(T);
  Tensor* Q = permute(ctx, rope(ctx, head(0), pos, 4, RopeMode::Interleaved), 0, 2, 1, 3);
  Tensor* K = permute(ctx, rope(ctx, head(1), pos, 4, RopeMode::Interleaved), 0, 2, 1, 3);
  Tensor* kq = soft_max(ctx, mul_mat(ctx, K, Q), 0.4f, nullptr, 0);
  Tensor* V = cont(ctx, permute(ctx, head(2), 1, 2, 0, 3));
  Tensor* o = cont(ctx, permute(ctx, mul_mat(ctx, V, kq), 0, 2, 1, 3));
  Tensor* attn = linear(reshape(ctx, o, {d, T}), d, "dense");
  Tensor* h2 = ln("ln2");
  Tensor* act = erf ? gelu_erf(ctx, linear(h2, 20, "fc_in")) : gelu(ctx, linear(h2, 20, "fc_in"));
  Tensor* mlp = linear(act, d, "fc_out");
  return add(ctx, add(ctx, x, attn), mlp);
}
}  // namespace

TEST_CASE("autodiff: a LLaMA block, every weight and the input") {
  Case c(14);
  Tensor* x = c.param({16, 5}, "x");
  check_gradients(c, llama_block(c, x, 5));
}

TEST_CASE("autodiff: a GPT-NeoX block (parallel residual, GELU tanh and erf)") {
  for (bool erf : {false, true}) {
    Case c(15);
    Tensor* x = c.param({12, 4}, "x");
    check_gradients(c, neox_block(c, x, 4, erf));
  }
}

TEST_CASE("autodiff: every kernel set gives the finite-difference gradients") {
  for (const cpu::KernelSet* k : cpu::available()) {
    CAPTURE(k->name);
    Case c(16);
    Tensor* x = c.param({16, 6}, "x");
    check_gradients(c, llama_block(c, x, 6), 1e-4, k);
  }
}

TEST_CASE("autodiff: gradients identical for 1-4 threads and with or without memory reuse") {
  std::vector<std::vector<float>> runs;
  size_t planned = 0, unplanned = 0;
  for (int threads = 1; threads <= 4; threads++)
    for (auto mode : {GraphAllocator::Mode::Reuse, GraphAllocator::Mode::NoReuse}) {
      Case c(17);
      Tensor* x = c.param({16, 7}, "x");
      Tensor* y = llama_block(c, x, 7);
      auto r = compute(c, c.loss(y), threads, nullptr, mode);
      std::vector<float> all;
      for (const auto& [p, gr] : r->grads.grads) all.insert(all.end(), gr->as<float>(), gr->as<float>() + gr->nelements());
      runs.push_back(all);
      if (mode == GraphAllocator::Mode::Reuse) planned = r->alloc.buffer_size(), unplanned = r->alloc.unplanned_size();
    }
  for (const auto& r : runs) CHECK(r == runs.front());
  MESSAGE("LLaMA block forward+backward: " << planned << " bytes planned, " << unplanned << " without reuse");
  CHECK(planned < unplanned);
}

TEST_CASE("autodiff: nothing is built for frozen tensors") {
  Case c(18);
  Tensor* w = c.input({40, 6});
  Tensor* x = c.param({40, 3}, "x");
  Tensor* w2 = c.input({3, 4});  // 3 rows, frozen: no transposed copy (a trained one, LoRA's B, gets one)
  Tensor* y = mul_mat(c.ctx, w2, cont(c.ctx, transpose(c.ctx, mul_mat(c.ctx, w, x))));
  Graph g;
  Tensor* loss = c.loss(y);
  g.expand(loss);
  build_backward(c.ctx, g, loss);
  int mul_mat_t_nodes = 0;
  for (const Tensor* n : g.nodes()) {
    // the two forward products and the two dX: no dW for the frozen weights
    if (n->op == Op::MUL_MAT) CHECK((n->src[0] == w || n->src[0] == w2));
    if (n->op == Op::MUL_MAT_T) CHECK((n->src[0] == w || n->src[0] == w2));
    mul_mat_t_nodes += n->op == Op::MUL_MAT_T;
  }
  CHECK(mul_mat_t_nodes == 2);  // dX through w and through w2
}

TEST_CASE("autodiff: a trained matrix of a few rows (LoRA's B, ranks to 128) takes dX on a transposed copy") {
  for (int64_t r : {3, 32}) {
    CAPTURE(r);
    Case c(30);
    Tensor* b = c.param({r, 40}, "b");  // r columns in, 40 rows out: B's shape
    Tensor* h = c.param({r, 5}, "h");
    Tensor* y = mul_mat(c.ctx, b, h);
    int transposed = 0;
    {
      Graph g;
      Tensor* loss = c.loss(y);
      g.expand(loss);
      build_backward(c.ctx, g, loss);
      for (const Tensor* n : g.nodes())
        transposed += n->op == Op::MUL_MAT && n->src[0]->op == Op::CONT && n->src[0]->src[0]->op == Op::TRANSPOSE &&
                      n->src[0]->src[0]->src[0] == b;
    }
    CHECK(transposed == 1);
    check_gradients(c, y);
  }
}

TEST_CASE("autodiff: clear errors") {
  Case c(19);
  Tensor* x = c.input({4, 2});
  Tensor* l = c.loss(silu(c.ctx, x));
  Graph g;
  g.expand(l);
  CHECK_THROWS_WITH_AS(build_backward(c.ctx, g, l), doctest::Contains("no trainable tensor"), Error);
  Case d(20);
  Tensor* h = d.ctx.new_tensor(Type::F16, {4, 2});
  set_trainable(h);
  Tensor* l2 = d.loss(cast(d.ctx, h, Type::F32));
  Graph g2;
  g2.expand(l2);
  CHECK_THROWS_WITH_AS(build_backward(d.ctx, g2, l2), doctest::Contains("must be F32"), Error);
  Case e(21);
  Tensor* p = e.param({4, 2}, "p");
  Graph g3;
  Tensor* s = silu(e.ctx, p);
  g3.expand(s);
  CHECK_THROWS_WITH_AS(build_backward(e.ctx, g3, s), doctest::Contains("F32 scalar"), Error);
}

TEST_CASE("mul_mat_t: a frozen quantized weight's dX equals its dequantized copy's, bit for bit") {
  const Type types[] = {Type::Q8_0, Type::Q4_0, Type::Q4_1, Type::Q5_0, Type::Q5_1, Type::Q4_K,
                        Type::Q5_K, Type::Q6_K, Type::F16,  Type::BF16, cpu::Q8_0R, cpu::Q4_0R, cpu::Q4_1R};
  for (Type t : types) {
    CAPTURE(type_name(t));
    th::Rng rng(22);
    Context ctx;
    const int64_t K = 512, M = 70, N = 9;  // M: two full tiles and a part; N: two blocks of 4 and one
    Tensor* w = th::weight(ctx, t, {K, M});
    th::fill(w, rng);
    Tensor* deq = ctx.new_tensor(Type::F32, {K, M});
    for (int64_t i = 0; i < M; i++) {
      auto r = th::row_f64(w, i);
      for (int64_t k = 0; k < K; k++) deq->as<float>()[i * K + k] = float(r[size_t(k)]);
    }
    Tensor* d = ctx.new_tensor(Type::F32, {M, N});
    th::fill(d, rng);
    std::vector<std::vector<float>> outs;
    for (int threads : {1, 3}) {
      for (Tensor* a : {w, deq}) {
        auto r = th::run(mul_mat_t(ctx, a, d), threads);
        const Tensor* o = r->g.nodes().back();
        outs.emplace_back(o->as<float>(), o->as<float>() + o->nelements());
      }
    }
    for (const auto& o : outs) CHECK(o == outs.front());
    // and the products are the naive double sums
    double err = 0;
    for (int64_t j = 0; j < N; j++)
      for (int64_t k = 0; k < K; k++) {
        double s = 0;
        for (int64_t i = 0; i < M; i++) s += double(deq->as<float>()[i * K + k]) * double(d->as<float>()[j * M + i]);
        err = std::max(err, std::fabs(s - double(outs[0][size_t(j * K + k)])));
      }
    CHECK(err < 1e-4);
  }
}

TEST_CASE("autodiff: through a frozen quantized base, the same gradients as through its F32 copy") {
  for (Type t : {Type::Q8_0, Type::Q4_0}) {
    CAPTURE(type_name(t));
    std::vector<float> got[2];
    for (int copy = 0; copy < 2; copy++) {
      Case c(23);
      Tensor* w = c.ctx.new_tensor(t, {64, 10});
      th::fill(w, c.rng, 0.1f);  // logits of order 1: a softmax far from saturated
      Tensor* base = w;
      if (copy) {
        base = c.ctx.new_tensor(Type::F32, {64, 10});
        for (int64_t i = 0; i < 10; i++) {
          auto r = th::row_f64(w, i);
          for (int64_t k = 0; k < 64; k++) base->as<float>()[i * 64 + k] = float(r[size_t(k)]);
        }
      }
      // a LoRA-shaped path: base(x) + B(A(x)), the adapter and x trainable
      Tensor* x = c.param({64, 4}, "x");
      Tensor* A = c.param({64, 2}, "lora_a", 0.2f);
      Tensor* B = c.param({2, 10}, "lora_b", 0.2f);
      Tensor* y = add(c.ctx, mul_mat(c.ctx, base, x), mul_mat(c.ctx, B, mul_mat(c.ctx, A, x)));
      auto r = compute(c, c.loss(y));
      for (const auto& [p, gr] : r->grads.grads) got[copy].insert(got[copy].end(), gr->as<float>(), gr->as<float>() + gr->nelements());
    }
    // The quantized forward rounds the activations to 8 bits (the base's
    // kernels) and the gradients agree to that precision; the backward
    // product itself is bit-exact (mul_mat_t above).
    double diff = 0, norm = 0;
    for (size_t i = 0; i < got[0].size(); i++) diff += std::pow(got[0][i] - got[1][i], 2), norm += std::pow(got[1][i], 2);
    CHECK(std::sqrt(diff / norm) < 1e-2);
  }
}

TEST_CASE("checkpointing: the same gradients from less planned memory") {
  std::vector<float> got[2];
  size_t planned[2] = {0, 0};
  size_t recomputed = 0;
  for (int ck = 0; ck < 2; ck++) {
    Case c(24);
    Tensor* x = c.param({16, 32}, "x");
    std::vector<Tensor*> inputs;
    Tensor* h = x;
    for (int l = 0; l < 4; l++) {
      inputs.push_back(h);
      h = llama_block(c, h, 32);
    }
    inputs.push_back(h);
    Tensor* loss = c.loss(h);
    Graph g;
    g.expand(loss);
    BackwardOptions opt;
    if (ck) opt.checkpoints = inputs;
    Gradients grads = build_backward(c.ctx, g, loss, opt);
    GraphAllocator alloc;
    alloc.allocate(g);
    Executor(2).compute(g);
    planned[ck] = alloc.buffer_size();
    for (const auto& [p, gr] : grads.grads) got[ck].insert(got[ck].end(), gr->as<float>(), gr->as<float>() + gr->nelements());
    if (ck)
      for (const Tensor* n : g.nodes()) recomputed += (n->flags & FLAG_RECOMPUTE) != 0;
  }
  CHECK(got[0] == got[1]);
  CHECK(recomputed > 0);
  MESSAGE("4 LLaMA blocks, 32 tokens: " << planned[0] << " bytes planned, " << planned[1] << " with checkpointing ("
                                         << recomputed << " nodes recomputed)");
  CHECK(planned[1] < planned[0]);
}

namespace {
// mul_mat_t(w, d, bf16, int8) on 1 and 3 threads (checked equal), and its
// relative RMS error against a double sum over w's values as stored.
double mmt_rel_error(Context& ctx, Tensor* w, Tensor* d, bool bf16, bool int8 = false) {
  const int64_t K = w->ne[0], M = w->ne[1], N = d->ne[1];
  std::vector<std::vector<float>> outs;
  for (int threads : {1, 3}) {
    auto r = th::run(mul_mat_t(ctx, w, d, bf16, int8), threads);
    const Tensor* o = r->g.nodes().back();
    outs.emplace_back(o->as<float>(), o->as<float>() + o->nelements());
  }
  CHECK(outs[0] == outs[1]);
  std::vector<std::vector<double>> rows;
  for (int64_t i = 0; i < M; i++) rows.push_back(th::row_f64(w, i));
  double diff = 0, norm = 0;
  for (int64_t j = 0; j < N; j++)
    for (int64_t k = 0; k < K; k++) {
      double s = 0;
      for (int64_t i = 0; i < M; i++) s += rows[size_t(i)][size_t(k)] * double(d->as<float>()[j * M + i]);
      diff += std::pow(s - outs[0][size_t(j * K + k)], 2);
      norm += s * s;
    }
  return std::sqrt(diff / norm);
}
}  // namespace

TEST_CASE("mul_mat_t in mixed precision: within bf16 rounding of the exact product, any thread count") {
  for (Type t : {Type::Q4_0, Type::Q8_0, Type::Q4_K, Type::F16, Type::BF16, Type::F32, cpu::Q4_0R}) {
    CAPTURE(type_name(t));
    th::Rng rng(25);
    Context ctx;
    // An odd row count (a pair padded with zero) past one block of 256 pairs;
    // K not whole items (96 columns for floats, 256 for blocks) where the
    // type allows (Q4_K and Q4_0R rows are whole 256s).
    const int64_t K = t == Type::Q4_K || t == cpu::Q4_0R ? 768 : 544, M = 601, N = 37;
    Tensor* w = th::weight(ctx, t, {K, M});
    th::fill(w, rng);
    Tensor* d = ctx.new_tensor(Type::F32, {M, N});
    th::fill(d, rng);
    const double rel = mmt_rel_error(ctx, w, d, true);
    // bf16 keeps 8 bits: about 2^-9 relative per operand; the sums average it down
    CHECK(rel < 4e-3);
    if (cpu::best().gemm_bf16.kernel) CHECK(rel > 1e-6);  // the bf16 path did run (it rounds)
  }
}

TEST_CASE("mul_mat_t in mixed precision: batches, broadcast weights and a few tokens") {
  // Attention's products: [K, M, B2] weights broadcast over C2 = 2 B2 batches;
  // N under one microkernel row group and over one.
  for (int64_t N : {7, 29}) {
    CAPTURE(N);
    th::Rng rng(26);
    Context ctx;
    const int64_t K = 70, M = 33, B2 = 2, C2 = 4;
    Tensor* w = ctx.new_tensor(Type::F32, {K, M, B2});
    th::fill(w, rng);
    Tensor* d = ctx.new_tensor(Type::F32, {M, N, C2});
    th::fill(d, rng);
    auto r = th::run(mul_mat_t(ctx, w, d, true), 2);
    const Tensor* o = r->g.nodes().back();
    double diff = 0, norm = 0;
    for (int64_t c = 0; c < C2; c++)
      for (int64_t j = 0; j < N; j++)
        for (int64_t k = 0; k < K; k++) {
          double s = 0;
          for (int64_t i = 0; i < M; i++) s += th::get(w, k, i, c / (C2 / B2)) * th::get(d, i, j, c);
          diff += std::pow(s - th::get(o, k, j, c), 2);
          norm += s * s;
        }
    CHECK(std::sqrt(diff / norm) < 4e-3);
  }
}

TEST_CASE("mul_mat_t in int8: within 8-bit rounding of the exact product, any thread count") {
  for (Type t : {Type::Q4_0, Type::Q4_1, Type::Q8_0, cpu::Q4_0R, cpu::Q8_0R}) {
    CAPTURE(type_name(t));
    th::Rng rng(27);
    Context ctx;
    // M = 608: 19 blocks of W^T (two GEMM blocks of 8, the second partial)
    // over two threads' shares; K not whole tiles of 256 where the layout
    // allows; N = 37: a partial panel of 32 tokens.
    const bool r256 = t == cpu::Q4_0R || t == cpu::Q8_0R;
    const int64_t K = r256 ? 768 : 544, M = 608, N = 37;
    Tensor* w = th::weight(ctx, t, {K, M});
    th::fill(w, rng);
    Tensor* d = ctx.new_tensor(Type::F32, {M, N});
    th::fill(d, rng);
    const double rel = mmt_rel_error(ctx, w, d, false, true);
    MESSAGE(std::string(type_name(t)) << ": int8 dX relative error " << rel);
    // Two roundings to 8 bits per block of 32 (W^T's and dY's): each about
    // 0.5 / 127 of the block's largest value, uniform
    CHECK(rel < 1.5e-2);
    if (cpu::best().gemm_q.kernel) CHECK(rel > 1e-5);  // the int8 path did run (it rounds)
  }
}

TEST_CASE("mul_mat_t in int8: shapes the int8 path does not take are the float path's floats") {
  // M not whole blocks of 32, a float weight, and N under half a panel.
  struct Case { Type t; int64_t M, N; };
  for (const Case& cs : {Case{Type::Q8_0, 601, 37}, Case{Type::F16, 64, 37}, Case{Type::Q4_0, 64, 5}}) {
    CAPTURE(type_name(cs.t));
    th::Rng rng(28);
    Context ctx;
    Tensor* w = th::weight(ctx, cs.t, {64, cs.M});
    th::fill(w, rng);
    Tensor* d = ctx.new_tensor(Type::F32, {cs.M, cs.N});
    th::fill(d, rng);
    std::vector<float> outs[2];
    for (int int8 = 0; int8 < 2; int8++) {
      auto r = th::run(mul_mat_t(ctx, w, d, false, int8 == 1), 2);
      const Tensor* o = r->g.nodes().back();
      outs[int8].assign(o->as<float>(), o->as<float>() + o->nelements());
    }
    CHECK(outs[0] == outs[1]);
  }
}

TEST_CASE("bf16 activations: gradients within bf16 rounding of F32's, from less planned memory") {
  // Runs: F32; bf16 with reuse on 2 threads; without reuse on 1; with reuse on 3.
  std::vector<float> got[4];
  size_t planned[4] = {0, 0, 0, 0};
  for (int run = 0; run < 4; run++) {
    const int bf = run > 0;
    Case c(24);
    Tensor* x = c.param({16, 32}, "x");
    Tensor* h = x;
    for (int l = 0; l < 4; l++) h = llama_block(c, h, 32);
    Tensor* loss = c.loss(h);
    Graph g;
    g.expand(loss);
    BackwardOptions opt;
    opt.bf16_activations = bf != 0;
    Gradients grads = build_backward(c.ctx, g, loss, opt);
    GraphAllocator alloc(run == 2 ? GraphAllocator::Mode::NoReuse : GraphAllocator::Mode::Reuse);
    alloc.allocate(g);
    Executor(run == 2 ? 1 : run == 3 ? 3 : 2).compute(g);
    planned[run] = alloc.buffer_size();
    for (const auto& [p, gr] : grads.grads) got[run].insert(got[run].end(), gr->as<float>(), gr->as<float>() + gr->nelements());
    if (!bf) continue;
    // Each bf16 copy is made right after what it copies (so that can be freed), each is widened late.
    const auto& nodes = g.nodes();
    int copies = 0;
    for (size_t i = 0; i < nodes.size(); i++) {
      if (nodes[i]->type != Type::BF16) continue;
      copies++;
      REQUIRE(i > 0);
      CHECK(nodes[i]->src[0] == nodes[i - 1]);
    }
    CHECK(copies > 10);
  }
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got[0].size(); i++) {
    diff += std::pow(double(got[1][i]) - got[0][i], 2);
    norm += std::pow(double(got[0][i]), 2);
  }
  const double rel = std::sqrt(diff / norm);
  MESSAGE("4 LLaMA blocks, 32 tokens: " << planned[0] << " bytes planned, " << planned[1]
                                         << " with bf16 activations; gradients within " << rel << " (relative)");
  CHECK(rel > 0);      // the copies did round
  CHECK(rel < 1e-2);   // bf16 keeps 8 bits (2^-9 relative per value)
  CHECK(planned[1] < planned[0]);
  CHECK(got[2] == got[1]);
  CHECK(got[3] == got[1]);
}
