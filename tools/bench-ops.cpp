// bench-ops: matrix-vector and matrix-matrix throughput for every weight type,
// beside the machine's measured memory read bandwidth.
//
// The matrix-vector case is token generation: weights stream from memory once
// per token. Each measurement runs one graph holding enough copies of the
// weight matrix (>= 8x the last-level cache) that every product reads from
// DRAM, as a model's many layers do.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <cxxopts.hpp>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ggml/cpu.h"
#include "ggml/quants.h"
#include "common.h"

#include "bandwidth.h"
#include "bench_train.h"
#include "peak.h"
#include "ggml/ggml.h"

using namespace ggml;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Result {
  std::string type;
  double bpw = 0;
  double mv_us = 0, mv_gbs = 0, mv_gflops = 0, bw = 0;
  std::vector<std::pair<int, double>> mm_gflops;  // rows, GFLOP/s
};

// One graph of `copies` products W_c (K x M) * X (K x N), ready to run.
struct Products {
  Context ctx{size_t(64) << 20};
  Graph g;
  GraphAllocator alloc;
  int copies;
  Products(Type t, int64_t K, int64_t M, int64_t N, int copies_) : copies(copies_) {
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<float> row(static_cast<size_t>(K));
    std::vector<Tensor*> ws;
    for (int c = 0; c < copies; c++) {
      Tensor* w = ctx.new_tensor(t, {K, M});
      if (c == 0) {
        for (int64_t i = 0; i < M; i++) {
          for (auto& v : row) v = nd(rng);
          traits(t).from_float(row.data(), w->row_ptr(i), K);
        }
      } else {
        std::memcpy(w->data, ws[0]->data, w->nbytes());
      }
      ws.push_back(w);
    }
    Tensor* x = ctx.new_tensor(Type::F32, {K, N});
    for (int64_t i = 0; i < K * N; i++) x->as<float>()[i] = nd(rng) * 50.0f;
    for (Tensor* w : ws) g.expand(mul_mat(ctx, w, x));
    alloc.allocate(g);
  }
  // Seconds per product for one run of the graph.
  double run(Executor& ex) {
    const auto t0 = Clock::now();
    ex.compute(g);
    return seconds_since(t0) / copies;
  }
};

}  // namespace

static int run(int argc, char** argv) {
  cxxopts::Options opts("bench-ops", "Matrix-vector and matrix-matrix throughput per weight type, with the "
                                     "machine's measured read bandwidth.");
  opts.add_options()
      ("t,threads", "threads", cxxopts::value<int>()->default_value("2"))
      ("types", "comma-separated weight types (also q8_0r, q4_0r, q4_1r: the layouts Q8_0, Q4_0 and Q4_1 "
                "matrices are rearranged into at load time)", cxxopts::value<std::string>()->default_value(
          "f32,f16,bf16,q8_0,q4_0,q4_1,q5_0,q5_1,q4_K,q5_K,q6_K"))
      ("k", "inner dimension (row length)", cxxopts::value<int64_t>()->default_value("2048"))
      ("m", "output rows", cxxopts::value<int64_t>()->default_value("5632"))
      ("mm", "matrix-matrix activation rows, comma-separated (empty: none)",
       cxxopts::value<std::string>()->default_value("128,512"))
      ("r,reps", "repetitions (best is reported)", cxxopts::value<int>()->default_value("5"))
      ("kernels", "kernel set: scalar, avx2, avx512, neon (default: best for this CPU)",
       cxxopts::value<std::string>()->default_value(""))
      ("cached", "use one weight copy that stays in cache (measures compute, not memory)")
      ("train", "instead: forward and forward+backward tokens/s and planned memory of one TinyLlama-shaped "
                "layer with LoRA on every projection, with and without checkpointing (--types defaults to "
                "f32,f16,q8_0,q4_0)")
      ("tokens", "tokens per training step (--train)", cxxopts::value<int64_t>()->default_value("256"))
      ("rank", "LoRA rank (--train)", cxxopts::value<int>()->default_value("8"))
      ("layers", "layers (--train; checkpointing keeps each one's input)", cxxopts::value<int>()->default_value("1"))
      ("bf16", "mixed precision (--train): products through the frozen base and attention's, and the activations kept, in bf16")
      ("float-backward", "(--train) a Q8_0/Q4_0/Q4_1 base's backward products in float, not int8 (finetune-lora --float-backward)")
      ("o,output", "output format: md or json", cxxopts::value<std::string>()->default_value("md"));
  tool::add_standard_options(opts);
  {
    auto args = opts.parse(argc, argv);
    if (tool::answer_standard_options(args, opts, "bench-ops")) return 0;
    const int threads = tool::in_range(args, "threads", 1, 1024, "a count from 1 to 1024");
    const int64_t K = args["k"].as<int64_t>(), M = args["m"].as<int64_t>();
    const int reps = args["reps"].as<int>();
    const std::string fmt = args["output"].as<std::string>();
    if (fmt != "md" && fmt != "json") throw Error("--output must be md or json, not '" + fmt + "'");
    if (K <= 0 || M <= 0 || K % 32 != 0) throw Error("-k must be a positive multiple of 32 and -m positive");
    if (reps < 1) throw Error("--reps must be at least 1");
    std::vector<Type> types;
    {
      std::string s = args["types"].as<std::string>();
      size_t pos = 0;
      while (pos <= s.size()) {
        const size_t e = std::min(s.find(',', pos), s.size());
        const std::string name = s.substr(pos, e - pos);
        Type t;
        // the load-time rearranged types too (no file holds them, so no file name)
        const bool rearranged = name == "q8_0r" || name == "q4_0r" || name == "q4_1r";
        if (rearranged) t = name == "q8_0r" ? cpu::Q8_0R : name == "q4_0r" ? cpu::Q4_0R : cpu::Q4_1R;
        if ((!rearranged && !type_from_name(name, &t)) || !traits(t).from_float || t == Type::Q8_1 || t == Type::Q8_K)
          throw Error("unknown or unsupported weight type '" + name + "'");
        if (K % block_size(t) == 0) types.push_back(t);  // K-quants need rows of whole 256-blocks
        pos = e + 1;
      }
    }
    if (args.count("train")) {
      TrainBenchOptions o;
      o.types = args.count("types") ? types : std::vector<Type>{Type::F32, Type::F16, Type::Q8_0, Type::Q4_0};
      o.threads = threads;
      o.tokens = args["tokens"].as<int64_t>();
      o.rank = args["rank"].as<int>();
      o.layers = args["layers"].as<int>();
      o.bf16 = args.count("bf16") > 0;
      o.int8 = args.count("float-backward") == 0;
      if (o.layers < 1 || o.layers > 64) throw Error("--layers must be from 1 to 64");
      o.reps = reps;
      o.json = fmt == "json";
      if (o.tokens < 1 || o.tokens > 65536) throw Error("--tokens must be from 1 to 65536");
      if (o.rank < 1 || o.rank > 1024) throw Error("--rank must be from 1 to 1024");
      for (Type t : o.types)
        if (cpu::own_format(t)) throw Error("--train takes stored types (the loader rearranges them itself)");
      bench_train(o);
      return 0;
    }
    std::vector<int> mm_rows;
    {
      std::string s = args["mm"].as<std::string>();
      size_t pos = 0;
      while (!s.empty() && pos <= s.size()) {
        const size_t e = std::min(s.find(',', pos), s.size());
        const int v = std::stoi(s.substr(pos, e - pos));
        if (v < 1) throw Error("--mm rows must be positive");
        mm_rows.push_back(v);
        pos = e + 1;
      }
    }
    const cpu::KernelSet* kset = &cpu::best();
    if (const std::string want = args["kernels"].as<std::string>(); !want.empty()) {
      kset = nullptr;
      for (const cpu::KernelSet* k : cpu::available()) if (want == k->name) kset = k;
      if (!kset) throw Error("kernel set '" + want + "' is not available on this CPU");
    }
    Executor ex(threads, kset);

    const double bw = measure_read_bandwidth(threads, size_t(512) << 20);
    const Peaks peak = measure_peaks(*kset, threads);
    const size_t llc_x8 = size_t(8) * 32 << 20;  // 8 x a 32 MiB last-level cache
    if (fmt == "md") {
      std::printf("bench-ops: %d threads, kernels %s, cpu %s\n", threads, kset->name, cpu::features().str().c_str());
      std::printf("read bandwidth at start: %.1f GB/s (%d threads, 512 MiB buffer); each row is compared with\n"
                  "the bandwidth measured just before and after it (the higher of the two)\n", bw, threads);
      std::printf("peak (register-only loops, %d threads): float FMA %.0f GFLOP/s", threads, peak.fma);
      if (peak.bf16 > 0) std::printf(", bf16 dot %.0f GFLOP/s", peak.bf16);
      if (peak.int8 > 0) std::printf(", int8 dot %.0f GOP/s", peak.int8);
      std::printf("\n");
      std::printf("matrix-vector: 1x%lld by %lldx%lld; matrix-matrix: N x %lld by %lldx%lld\n\n", (long long)K,
                  (long long)K, (long long)M, (long long)K, (long long)K, (long long)M);
      std::printf("| type | bits/weight | mv time (us) | mv GFLOP/s | mv GB/s | read bw GB/s | mv %% of read bw |");
      for (int n : mm_rows) std::printf(" mm%d GFLOP/s |", n);
      std::printf("\n|---|---|---|---|---|---|---|");
      for (size_t i = 0; i < mm_rows.size(); i++) std::printf("---|");
      std::printf("\n");
    } else {
      std::printf("{\"read_bandwidth_gbs\": %.2f, \"threads\": %d, \"kernels\": \"%s\", \"peak_fma_gflops\": %.1f, "
                  "\"peak_bf16_gflops\": %.1f, \"peak_int8_gops\": %.1f}\n",
                  bw, threads, kset->name, peak.fma, peak.bf16, peak.int8);
    }
    for (Type t : types) {
      const size_t wbytes = row_size(t, K) * size_t(M);
      const int copies =
          args.count("cached") ? 1 : int(std::max<size_t>(2, (llc_x8 + wbytes - 1) / wbytes));
      Result r;
      r.type = type_name(t);
      r.bpw = 8.0 * double(type_size(t)) / double(block_size(t));
      // The machine's bandwidth drifts (shared hosts): alternate bandwidth and
      // product runs and compare the best of each, taken under the same load.
      Products mv(t, K, M, 1, copies);
      mv.run(ex);  // warm up: page in, first touch of the work buffer
      double s = 1e30, bw_here = 0;
      for (int rep = 0; rep < 2 * reps; rep++) {
        bw_here = std::max(bw_here, measure_read_bandwidth(threads, size_t(512) << 20));
        for (int k = 0; k < 3; k++) s = std::min(s, mv.run(ex));
      }
      r.bw = bw_here;
      r.mv_us = s * 1e6;
      r.mv_gbs = double(wbytes) / s / 1e9;
      r.mv_gflops = 2.0 * double(K) * double(M) / s / 1e9;
      for (int n : mm_rows) {
        Products mm(t, K, M, n, 2);
        double sm = mm.run(ex);
        for (int rep = 0; rep < reps; rep++) sm = std::min(sm, mm.run(ex));
        r.mm_gflops.push_back({n, 2.0 * double(K) * double(M) * n / sm / 1e9});
      }
      if (fmt == "md") {
        std::printf("| %s | %.2f | %.0f | %.1f | %.1f | %.1f | %.0f%% |", r.type.c_str(), r.bpw, r.mv_us, r.mv_gflops,
                    r.mv_gbs, r.bw, 100.0 * r.mv_gbs / r.bw);
        for (auto& [n, g] : r.mm_gflops) std::printf(" %.1f |", g);
        std::printf("\n");
      } else {
        std::printf("{\"type\": \"%s\", \"bits_per_weight\": %.3f, \"mv_us\": %.2f, \"mv_gbs\": %.2f, "
                    "\"mv_fraction_of_bw\": %.4f, \"mv_gflops\": %.2f",
                    r.type.c_str(), r.bpw, r.mv_us, r.mv_gbs, r.mv_gbs / r.bw, r.mv_gflops);
        for (auto& [n, g] : r.mm_gflops) std::printf(", \"mm%d_gflops\": %.2f", n, g);
        std::printf("}\n");
      }
      std::fflush(stdout);
    }
  }
  return 0;
}

int main(int argc, char** argv) { return tool::guarded_main("bench-ops", run, argc, argv); }
