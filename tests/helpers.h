#pragma once
// Shared test utilities: fixture files, random data, naive double references.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <array>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ggml/cpu.h"
#include "ggml/quants.h"
#include "ggml/ggml.h"

namespace th {

inline std::string data_path(const std::string& rel) {
  const char* root = std::getenv("GGML_TEST_DATA");
  REQUIRE_MESSAGE(root != nullptr, "GGML_TEST_DATA is not set (run through ctest)");
  return std::string(root) + "/" + rel;
}

// The fixture directory; tests/data when a test is run by hand from the repo root.
inline std::string data_dir() {
  const char* d = std::getenv("GGML_TEST_DATA");
  return d ? d : "tests/data";
}

// A scratch directory for this test process (each suite is its own process), fresh from mkdtemp:
// a directory named by pid alone can be a leftover of an earlier run whose process had the same pid
// (containers reuse small pids), and tests that expect an empty directory then fail. Removed at exit
// by the process that made it (a forked child exiting must not remove its parent's files).
struct ScratchDir {
  std::filesystem::path path;
  pid_t owner = ::getpid();
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "llm_test_XXXXXX").string();
    REQUIRE_MESSAGE(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp failed for " << tmpl);
    path = tmpl;
  }
  ~ScratchDir() {
    if (::getpid() != owner || std::getenv("LLM_TEST_KEEP_TMP")) return;
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

inline std::filesystem::path temp_dir() {
  static const ScratchDir d;
  return d.path;
}

inline std::vector<unsigned char> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "cannot open " << path);
  return std::vector<unsigned char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

inline std::vector<float> read_f32(const std::string& path) {
  auto b = read_file(path);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  float normal(float sd = 1.0f) { return std::normal_distribution<float>(0.0f, sd)(g); }
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g); }
  int64_t range(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(g); }
  std::vector<float> normals(size_t n, float sd = 1.0f) {
    std::vector<float> v(n);
    for (auto& x : v) x = normal(sd);
    return v;
  }
};

// Fills any tensor with N(0, sd) values converted to its type (rows of
// quantized types are quantized with the reference quantizer).
inline void fill(ggml::Tensor* t, Rng& rng, float sd = 1.0f) {
  const auto& tr = ggml::traits(ggml::cpu::format_of(t->type, t->layout));
  std::vector<float> row(size_t(t->ne[0]));
  for (int64_t i3 = 0; i3 < t->ne[3]; i3++)
    for (int64_t i2 = 0; i2 < t->ne[2]; i2++)
      for (int64_t i1 = 0; i1 < t->ne[1]; i1++) {
        for (auto& x : row) x = rng.normal(sd);
        if (t->type == ggml::Type::I32) {
          for (int64_t i0 = 0; i0 < t->ne[0]; i0++) {
            int32_t v = int32_t(rng.range(0, 100));
            std::memcpy(t->row_ptr(i1, i2, i3) + i0 * t->nb[0], &v, 4);
          }
          continue;
        }
        if (t->rows_contiguous()) {
          tr.from_float(row.data(), t->row_ptr(i1, i2, i3), t->ne[0]);
        } else {
          for (int64_t i0 = 0; i0 < t->ne[0]; i0++) {
            char tmp[4];
            tr.from_float(&row[size_t(i0)], tmp, 1);
            std::memcpy(t->row_ptr(i1, i2, i3) + i0 * t->nb[0], tmp, tr.type_size);
          }
        }
      }
}

// A weight tensor of type t, where t may be one of the CPU backend's
// rearranged formats (cpu::Q8_0R, ...): then held as the CPU holds one, its
// stored GGUF type with LAYOUT_R256 (fill() writes the rearranged bytes).
inline ggml::Tensor* weight(ggml::Context& ctx, ggml::Type t, std::initializer_list<int64_t> ne) {
  using namespace ggml;
  const Type stored = t == cpu::Q8_0R ? Type::Q8_0 : t == cpu::Q4_0R ? Type::Q4_0 : t == cpu::Q4_1R ? Type::Q4_1 : t;
  Tensor* w = ctx.new_tensor(stored, ne);
  if (stored != t) w->layout = cpu::LAYOUT_R256;
  return w;
}

// Element (i0, i1, i2, i3) of a non-block tensor as double.
inline double get(const ggml::Tensor* t, int64_t i0, int64_t i1 = 0, int64_t i2 = 0, int64_t i3 = 0) {
  const char* p = t->row_ptr(i1, i2, i3) + i0 * t->nb[0];
  switch (t->type) {
    case ggml::Type::F32: { float v; std::memcpy(&v, p, 4); return v; }
    case ggml::Type::F16: { uint16_t v; std::memcpy(&v, p, 2); return ggml::fp16_to_fp32(v); }
    case ggml::Type::BF16: { uint16_t v; std::memcpy(&v, p, 2); return ggml::bf16_to_fp32(v); }
    case ggml::Type::I32: { int32_t v; std::memcpy(&v, p, 4); return v; }
    default: FAIL("get: block type"); return 0;
  }
}

// A whole row (i1, i2, i3) of any tensor dequantized to double.
inline std::vector<double> row_f64(const ggml::Tensor* t, int64_t i1, int64_t i2 = 0, int64_t i3 = 0) {
  std::vector<double> out(size_t(t->ne[0]));
  const ggml::Type f_of = ggml::cpu::format_of(t->type, t->layout);
  if (ggml::traits(f_of).quantized) {
    std::vector<float> f(size_t(t->ne[0]));
    ggml::traits(f_of).to_float(t->row_ptr(i1, i2, i3), f.data(), t->ne[0]);
    for (size_t i = 0; i < f.size(); i++) out[i] = f[i];
  } else {
    for (int64_t i = 0; i < t->ne[0]; i++) out[size_t(i)] = get(t, i, i1, i2, i3);
  }
  return out;
}

// Checks every element of F32 tensor t against ref(i0, i1, i2, i3) within
// atol + rtol * |ref|; reports the first mismatch.
template <class F>
void expect_close(const ggml::Tensor* t, F ref, double atol, double rtol = 0.0) {
  for (int64_t i3 = 0; i3 < t->ne[3]; i3++)
    for (int64_t i2 = 0; i2 < t->ne[2]; i2++)
      for (int64_t i1 = 0; i1 < t->ne[1]; i1++)
        for (int64_t i0 = 0; i0 < t->ne[0]; i0++) {
          const double want = ref(i0, i1, i2, i3), got = get(t, i0, i1, i2, i3);
          const double err = std::fabs(got - want);
          if (!(err <= atol + rtol * std::fabs(want))) {
            FAIL_CHECK("mismatch at [" << i0 << "," << i1 << "," << i2 << "," << i3 << "]: got " << got
                                       << " want " << want);
            return;
          }
        }
  CHECK(t->nelements() > 0);
}

// Builds, plans and runs a graph for out. Keep the result alive while reading
// out: it owns the memory of every op result.
struct Ran {
  ggml::Graph g;
  ggml::GraphAllocator alloc;
  explicit Ran(ggml::GraphAllocator::Mode m) : alloc(m) {}
};
[[nodiscard]] inline std::unique_ptr<Ran> run(ggml::Tensor* out, int threads = 2,
                                              const ggml::cpu::KernelSet* k = nullptr,
                                              ggml::GraphAllocator::Mode mode = ggml::GraphAllocator::Mode::Reuse) {
  auto r = std::make_unique<Ran>(mode);
  r->g.expand(out);
  r->alloc.allocate(r->g);
  ggml::Executor ex(threads, k);
  ex.compute(r->g);
  return r;
}

}  // namespace th
