// SIMD kernel sets against the scalar reference: dot products for every type
// on random data and on random-byte blocks (every bit pattern a file may hold),
// tiles equal to dot bit for bit, activation quantization.
#include <limits>

#include "ggml/cpu.h"
#include "ggml/quants.h"
#include "helpers.h"

using namespace ggml;

namespace {
const Type kTypes[] = {Type::F32,  Type::F16,   Type::BF16,  Type::Q4_0,  Type::Q4_1, Type::Q5_0, Type::Q5_1,
                       Type::Q8_0, cpu::Q8_0R, cpu::Q4_0R, cpu::Q4_1R, Type::Q4_K, Type::Q5_K, Type::Q6_K};

// The rearranged types: their stored type, the rearrangement, and whether a
// kernel set asks for it at load time.
struct Rearranged {
  Type stored, held;
  void (*repack)(const void*, void*, int64_t);
  bool cpu::KernelSet::*prefers;
};
const Rearranged kRearranged[] = {{Type::Q8_0, cpu::Q8_0R, ref::repack_q8_0r, &cpu::KernelSet::prefers_q8_0r},
                                  {Type::Q4_0, cpu::Q4_0R, ref::repack_q4_0r, &cpu::KernelSet::prefers_q4r},
                                  {Type::Q4_1, cpu::Q4_1R, ref::repack_q4_1r, &cpu::KernelSet::prefers_q4r}};

std::vector<const cpu::KernelSet*> simd_sets() {
  auto v = cpu::available();
  v.erase(v.begin());  // scalar
  return v;
}

struct Rows {
  std::vector<unsigned char> x, y;
  std::vector<float> xf, yf;  // dequantized, for the magnitude bound
};

// nx weight rows and ny activation rows of n elements; weights from random
// floats, or (raw) random bytes with sane scales from the gguf fixtures.
Rows make_rows(Type t, int64_t n, int nx, int ny, th::Rng& rng, bool raw) {
  for (const Rearranged& re : kRearranged)
    if (t == re.held) {  // the stored type's rows, rearranged (rows are whole groups)
      Rows r = make_rows(re.stored, n, nx, ny, rng, raw);
      re.repack(r.x.data(), r.x.data(), n * nx);
      return r;
    }
  const auto& tr = traits(t);
  const Type vdt = cpu::activation_format(t);
  Rows r;
  r.x.resize(row_size(t, n) * size_t(nx));
  r.y.resize(row_size(vdt, n) * size_t(ny));
  if (raw) {
    const auto blocks = th::read_file(th::data_path(std::string("quant/") + type_name(t) + ".blocks"));
    for (size_t i = 0; i < r.x.size(); i++) r.x[i] = blocks[(i * 7 + size_t(rng.range(0, 3))) % blocks.size()];
    // keep the fp16 scale fields of every block from the fixture (same offsets)
    const size_t ts = type_size(t);
    for (size_t b = 0; b < r.x.size() / ts; b++) std::memcpy(&r.x[b * ts], &blocks[(b % (blocks.size() / ts)) * ts], 4);
    if (t == Type::Q6_K) for (size_t b = 0; b < r.x.size() / ts; b++) std::memcpy(&r.x[b * ts + 192], &blocks[(b % 64) * ts + 192], 18);
  } else {
    const auto xs = rng.normals(size_t(n * nx));
    for (int i = 0; i < nx; i++) tr.from_float(xs.data() + i * n, r.x.data() + size_t(i) * row_size(t, n), n);
  }
  const auto ys = rng.normals(size_t(n * ny), 2.0f);
  for (int j = 0; j < ny; j++) traits(vdt).from_float(ys.data() + j * n, r.y.data() + size_t(j) * row_size(vdt, n), n);
  r.xf.resize(size_t(n * nx));
  r.yf.resize(size_t(n * ny));
  for (int i = 0; i < nx; i++) tr.to_float(r.x.data() + size_t(i) * row_size(t, n), r.xf.data() + i * n, n);
  for (int j = 0; j < ny; j++) traits(vdt).to_float(r.y.data() + size_t(j) * row_size(vdt, n), r.yf.data() + j * n, n);
  return r;
}

std::vector<int64_t> lengths(Type t) {
  if (block_size(t) == 1) return {1, 7, 8, 15, 16, 17, 31, 33, 100, 257, 1024, 2051};
  if (block_size(t) == 32) return {32, 64, 96, 160, 384, 416, 1152, 4096};  // groups of 4, pairs, tails
  return {block_size(t), 2 * block_size(t), 3 * block_size(t), 4096};
}
}  // namespace

TEST_CASE("SIMD dot products match the scalar reference for every type") {
  th::Rng rng(31);
  for (const cpu::KernelSet* k : simd_sets()) {
    const std::string kname = k->name;
    CAPTURE(kname);
    for (Type t : kTypes) {
      const std::string tname = type_name(t);
      CAPTURE(tname);
      for (bool raw : {false, true}) {
        if (raw && !traits(t).quantized) continue;
        for (int64_t n : lengths(t)) {
          CAPTURE(n);
          CAPTURE(raw);
          const Rows r = make_rows(t, n, 1, 1, rng, raw);
          const float want = cpu::scalar().dot[cpu::slot(t)](n, r.x.data(), r.y.data());
          const float got = k->dot[cpu::slot(t)](n, r.x.data(), r.y.data());
          double mag = 0;
          for (int64_t i = 0; i < n; i++) mag += std::fabs(double(r.xf[size_t(i)]) * r.yf[size_t(i)]);
          if (block_size(t) == QK_K && !cpu::own_format(t)) {
            CHECK(got == want);  // integer sums per super-block, same float expression
          } else {
            CHECK(std::fabs(double(got) - want) <= 2e-6 * mag + 1e-30);
          }
        }
      }
    }
  }
}

TEST_CASE("tile kernels agree with the dot kernel and are deterministic") {
  // A tile may order its sums differently from a single dot product (more
  // accumulators), but the same call always gives the same bits: mul_mat cuts
  // its work into tiles that depend only on the shapes, never the threads.
  th::Rng rng(32);
  for (const cpu::KernelSet* k : cpu::available()) {
    const std::string kname = k->name;
    CAPTURE(kname);
    for (Type t : kTypes) {
      const std::string tname = type_name(t);
      CAPTURE(tname);
      // 18 and 6 blocks: rows that end in a partial group of blocks (SmolLM2's 576)
      for (int64_t n : {block_size(t) == 1 ? int64_t(203) : 2 * block_size(t), int64_t(2048), 18 * block_size(t),
                        6 * block_size(t)}) {
        const Rows r = make_rows(t, n, 4, 4, rng, false);
        const size_t bx = row_size(t, n), by = row_size(cpu::activation_format(t), n);
        for (int nx = 1; nx <= 4; nx++)
          for (int ny = 1; ny <= 4; ny++) {
            float out[4 * 7], again[4 * 7];
            const size_t ldc = 7;
            k->tile[cpu::slot(t)](n, out, ldc, r.x.data(), bx, nx, r.y.data(), by, ny);
            k->tile[cpu::slot(t)](n, again, ldc, r.x.data(), bx, nx, r.y.data(), by, ny);
            for (int i = 0; i < nx; i++)
              for (int j = 0; j < ny; j++) {
                const size_t at = size_t(j) * ldc + size_t(i);
                REQUIRE(std::memcmp(&out[at], &again[at], 4) == 0);
                const float d = k->dot[cpu::slot(t)](n, r.x.data() + size_t(i) * bx, r.y.data() + size_t(j) * by);
                double mag = 0;
                for (int64_t e = 0; e < n; e++) mag += std::fabs(double(r.xf[size_t(i * n + e)]) * r.yf[size_t(j * n + e)]);
                REQUIRE(std::fabs(double(out[at]) - d) <= 2e-6 * mag);
              }
          }
      }
    }
  }
}

TEST_CASE("SIMD F32 -> F16 conversion matches the reference bit for bit") {
  th::Rng rng(34);
  std::vector<float> x;
  for (float v : {0.0f, -0.0f, 1e-30f, 5.9604645e-08f, 2.9802322e-08f, 2.98023259e-08f, 6.1035156e-05f, 65504.0f,
                  65519.99f, 65520.0f, 1e6f, -1e6f, std::numeric_limits<float>::infinity(),
                  -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(), 1.00048828125f,
                  1.00146484375f})
    x.push_back(v);
  for (int i = 0; i < 3000; i++) x.push_back(rng.normal(i % 3 == 0 ? 1e-5f : i % 3 == 1 ? 1.0f : 3e4f));
  for (const cpu::KernelSet* k : simd_sets()) {
    const std::string kname = k->name;
    CAPTURE(kname);
    for (size_t n : {x.size(), size_t(7), size_t(9)}) {
      std::vector<fp16_t> want(n), got(n);
      ref::quantize_f16(x.data(), want.data(), int64_t(n));
      k->from_float[cpu::slot(Type::F16)](x.data(), got.data(), int64_t(n));
      for (size_t i = 0; i < n; i++) REQUIRE_MESSAGE(got[i] == want[i], "x = " << x[i]);
    }
  }
}

TEST_CASE("SIMD Q8_0 quantization matches the reference byte for byte") {
  th::Rng rng(35);
  auto x = rng.normals(32 * 96, 2.0f);
  for (int i = 0; i < 32; i++) x[size_t(32 * 3 + i)] = 0.0f;  // an all-zero block
  // Blocks whose values land exactly on and next to half steps (the rounding
  // std::round does half away from zero; x + 0.5 truncated differs at
  // 0.49999997).
  for (int i = 0; i < 32; i++) x[size_t(32 * 4 + i)] = float(i - 16) * 0.5f + (i == 0 ? 127.0f : 0.0f);
  x[32 * 5] = 127.0f;
  x[32 * 5 + 1] = 0.49999997f;
  x[32 * 5 + 2] = -0.49999997f;
  x[32 * 5 + 3] = -2.5f;
  x[32 * 6] = 1e-30f;
  const int64_t n = int64_t(x.size());
  std::vector<unsigned char> want(row_size(Type::Q8_0, n)), got(want.size());
  ref::quantize_q8_0(x.data(), want.data(), n);
  for (const cpu::KernelSet* k : cpu::available()) {
    const std::string kname = k->name;
    CAPTURE(kname);
    std::fill(got.begin(), got.end(), 0xAA);
    k->from_float[cpu::slot(Type::Q8_0)](x.data(), got.data(), n);
    for (size_t i = 0; i < got.size(); i++) REQUIRE_MESSAGE(got[i] == want[i], "byte " << i);
  }
}

TEST_CASE("SIMD activation quantization matches the reference") {
  th::Rng rng(33);
  for (const cpu::KernelSet* k : simd_sets()) {
    const std::string kname = k->name;
    CAPTURE(kname);
    auto x = rng.normals(32 * 64, 3.0f);
    for (int i = 0; i < 32; i++) x[size_t(32 * 5 + i)] = 0.0f;  // an all-zero block
    x[7] = 1e-30f;
    const int64_t n = int64_t(x.size()), nb = n / 32;
    std::vector<unsigned char> a(row_size(cpu::Q8_S, n)), b(a.size());
    ref::quantize_q8_s(x.data(), a.data(), n);
    k->from_float[cpu::slot(cpu::Q8_S)](x.data(), b.data(), n);
    const Q8SRow ra(a.data(), n), rb(b.data(), n);
    for (int64_t blk = 0; blk < nb; blk++) {
      REQUIRE(ra.d[blk] == rb.d[blk]);
      int sum = 0;
      for (int j = 0; j < 32; j++) {
        // the same rounding up to float ties: never more than one step apart
        REQUIRE(std::abs(ra.q(blk, j) - rb.q(blk, j)) <= 1);
        sum += rb.q(blk, j);
      }
      REQUIRE(rb.ds[blk] == rb.d[blk] * float(sum));
    }
  }
}

TEST_CASE("transpose32 of every kernel set: every block edge, strides wider than the block") {
  for (const cpu::KernelSet* k : cpu::available()) {
    const std::string kname = k->name;
    CAPTURE(kname);
    for (int64_t rows : {1, 5, 16, 17, 33})
      for (int64_t cols : {1, 12, 16, 31, 48}) {
        CAPTURE(rows);
        CAPTURE(cols);
        const int64_t lds = cols + 3, ldd = rows + 5;
        std::vector<uint32_t> src(size_t(rows * lds)), dst(size_t(cols * ldd), 0xdeadbeefu);
        for (size_t i = 0; i < src.size(); i++) src[i] = uint32_t(i * 2654435761u);
        k->transpose32(src.data(), lds, rows, cols, dst.data(), ldd);
        for (int64_t c = 0; c < cols; c++)
          for (int64_t r = 0; r < ldd; r++)  // the gaps between dst's rows untouched
            REQUIRE(dst[size_t(c * ldd + r)] == (r < rows ? src[size_t(r * lds + c)] : 0xdeadbeefu));
      }
  }
}

TEST_CASE("silu, silu_back and exp_sum of every kernel set against std::exp in double, over the float range") {
  th::Rng rng(21);
  std::vector<float> x;
  for (float v : {-200.0f, -104.0f, -88.0f, -30.0f, -1e-3f, -0.0f, 0.0f, 1e-30f, 0.5f, 20.0f, 88.0f, 88.7f, 150.0f})
    x.push_back(v);
  for (int i = 0; i < 1000; i++) x.push_back(rng.uniform(-90.0f, 90.0f));
  for (int i = 0; i < 1000; i++) x.push_back(rng.normal(3.0f));
  for (const cpu::KernelSet* k : cpu::available()) {
    const std::string kname = k->name;
    CAPTURE(kname);
    for (size_t n : {x.size(), size_t(1), size_t(15), size_t(17)}) {  // masked tails
      std::vector<float> y(n);
      k->silu(x.data(), y.data(), int64_t(n));
      for (size_t j = 0; j < n; j++) {
        const double want = double(x[j]) / (1.0 + std::exp(-double(x[j])));
        REQUIRE_MESSAGE(std::fabs(y[j] - want) <= 1e-30 + 1e-6 * std::fabs(want), "silu(" << x[j] << ") = " << y[j]);
      }
      std::vector<float> g(n), d(n);
      for (size_t j = 0; j < n; j++) g[j] = float(j % 7) - 2.5f;
      k->silu_back(x.data(), g.data(), d.data(), int64_t(n));
      for (size_t j = 0; j < n; j++) {
        const double s = 1.0 / (1.0 + std::exp(-double(x[j]))), want = g[j] * s * (1.0 + x[j] * (1.0 - s));
        // (near x = -1.28, where the derivative is 0, the cancellation of 1 + x (1 - s) in float)
        REQUIRE_MESSAGE(std::fabs(d[j] - want) <= 1e-30 + 2e-6 * std::fabs(g[j]) * (1.0 + std::fabs(x[j])) * s,
                        "silu_back(" << x[j] << ") = " << d[j] << " want " << want);
      }
      // softmax subtracts the row maximum, so exp_sum's arguments are <= 0;
      // here up to 78 (inside the float range).
      std::vector<float> e(x.begin(), x.begin() + long(n));
      for (float& v : e) v = std::min(v, 88.0f);
      const float sub = 10.0f;
      const double sum = k->exp_sum(e.data(), int64_t(n), sub);
      double want_sum = 0;
      for (size_t j = 0; j < n; j++) {
        const double want = std::exp(double(std::min(x[j], 88.0f) - sub));  // the float difference, as the kernels take it
        want_sum += want;
        // below the smallest normal float the result may flush to zero
        REQUIRE_MESSAGE(std::fabs(e[j] - want) <= 2e-38 + 1e-6 * want, "exp(" << x[j] << " - 10) = " << e[j]);
      }
      CHECK(std::fabs(sum - want_sum) <= 1e-5 * want_sum + 1e-30);
    }
  }
}

// The BF16 GEMM's row packing: each value rounded to bf16 to nearest even
// (ties included, checked against integer rounding of the float's bits), odd
// lengths zero-padded, nothing written past (n + 1) / 2 words.
TEST_CASE("bf16 pair packing of every kernel set that has a BF16 GEMM") {
  th::Rng rng(22);
  auto want_bf16 = [](float f) -> uint16_t {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint32_t hi = u >> 16, lo = u & 0xffff;
    return uint16_t(hi + (lo > 0x8000 || (lo == 0x8000 && (hi & 1))));
  };
  for (const cpu::KernelSet* k : cpu::available()) {
    if (!k->gemm_bf16.pack) continue;
    const std::string kname = k->name;
    CAPTURE(kname);
    for (Type t : {Type::F32, Type::F16, Type::BF16}) {
      const std::string tname = type_name(t);
      CAPTURE(tname);
      for (int64_t n : {1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 65, 301}) {
        CAPTURE(n);
        std::vector<float> f(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; i++) {
          f[size_t(i)] = rng.normal(3.0f);
          if (i % 7 == 3) {  // an exact tie between two bf16 values
            uint32_t u;
            std::memcpy(&u, &f[size_t(i)], 4);
            u = (u & 0xffff0000u) | 0x8000u;
            std::memcpy(&f[size_t(i)], &u, 4);
          }
        }
        std::vector<unsigned char> row(row_size(t, n));
        traits(t).from_float(f.data(), row.data(), n);
        std::vector<float> exact(static_cast<size_t>(n));
        traits(t).to_float(row.data(), exact.data(), n);
        const size_t words = size_t(n + 1) / 2;
        std::vector<uint32_t> out(words + 4, 0xdeadbeefu);
        k->gemm_bf16.pack(t, row.data(), n, out.data());
        for (int64_t i = 0; i < 2 * int64_t(words); i++) {
          const uint16_t got = uint16_t(out[size_t(i / 2)] >> (16 * (i % 2)));
          REQUIRE(got == (i < n ? want_bf16(exact[size_t(i)]) : 0));
        }
        for (size_t w = words; w < out.size(); w++) REQUIRE(out[w] == 0xdeadbeefu);
      }
    }
  }
}

TEST_CASE("kernel selection") {
  const auto v = cpu::available();
  REQUIRE(!v.empty());
  CHECK(std::string(v.front()->name) == "scalar");
  MESSAGE("cpu features: " << cpu::features().str() << "; best kernels: " << std::string(cpu::best().name));
  for (const cpu::KernelSet* k : v)
    for (Type t : kTypes) {
      CHECK((k->dot[cpu::slot(t)] != nullptr));
      CHECK((k->tile[cpu::slot(t)] != nullptr));
    }
}

TEST_CASE("Q8_0R, Q4_0R and Q4_1R kernels give their stored types' results bit for bit") {
  // The rearranged layout feeds the same products to the same lanes, in the
  // sets with kernels of their own for it (the others run the scalar one).
  th::Rng rng(35);
  for (const Rearranged& re : kRearranged)
    for (const cpu::KernelSet* k : cpu::available()) {
      if (!(k->*re.prefers) && k != &cpu::scalar()) continue;
      const std::string kname = k->name, tname = type_name(re.held);
      CAPTURE(kname);
      CAPTURE(tname);
      for (int64_t n : {256, 512, 2048, 5632}) {
        CAPTURE(n);
        for (bool raw : {false, true}) {
          Rows r = make_rows(re.stored, n, 4, 4, rng, raw);
          std::vector<unsigned char> xr(r.x.size());
          re.repack(r.x.data(), xr.data(), n * 4);
          const size_t bx = row_size(re.stored, n), by = row_size(cpu::Q8_S, n);
          CHECK(k->dot[cpu::slot(re.held)](n, xr.data(), r.y.data()) ==
                k->dot[cpu::slot(re.stored)](n, r.x.data(), r.y.data()));
          for (int nx = 1; nx <= 4; nx++)
            for (int ny = 1; ny <= 4; ny++) {
              float a[16] = {}, b[16] = {};
              k->tile[cpu::slot(re.stored)](n, a, 4, r.x.data(), bx, nx, r.y.data(), by, ny);
              k->tile[cpu::slot(re.held)](n, b, 4, xr.data(), bx, nx, r.y.data(), by, ny);
              for (int i = 0; i < 16; i++) CHECK(a[i] == b[i]);
            }
        }
      }
    }
}

TEST_CASE("every kernel set's dequantization equals the reference's, bit for bit") {
  // The transposed products of training convert tiles of weight rows with
  // the kernel set's to_float; the result must not depend on which one.
  th::Rng rng(41);
  const Type formats[] = {Type::F16,  Type::BF16, Type::Q8_0, Type::Q4_0, Type::Q4_1,  Type::Q5_0,  Type::Q5_1,
                          Type::Q4_K, Type::Q5_K, Type::Q6_K, cpu::Q8_0R, cpu::Q4_0R, cpu::Q4_1R};
  for (Type t : formats) {
    const TypeTraits& tr = *(cpu::own_format(t) ? cpu::format_traits(t) : &traits(t));
    for (int64_t n : {256, 2048}) {
      std::vector<float> x = rng.normals(size_t(n));
      std::vector<unsigned char> q(row_size(t, n));
      tr.from_float(x.data(), q.data(), n);
      std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n));
      tr.to_float(q.data(), want.data(), n);
      for (const cpu::KernelSet* k : cpu::available()) {
        CAPTURE(k->name);
        CAPTURE(type_name(t));
        k->to_float[cpu::slot(t)](q.data(), got.data(), n);
        CHECK(std::memcmp(got.data(), want.data(), got.size() * 4) == 0);
      }
    }
  }
}
