// Types: fp16/bf16 conversion, block layouts byte for byte (hand-computed and
// against the gguf package's numpy reference), round-trip error bounds.
#include "ggml/cpu.h"
#include "ggml/quants.h"
#include "helpers.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

using namespace ggml;

TEST_CASE("type traits follow the GGUF spec") {
  struct { Type t; int64_t bs; size_t ts; } spec[] = {
      {Type::F32, 1, 4},       {Type::F16, 1, 2},       {Type::BF16, 1, 2},      {Type::Q4_0, 32, 18},
      {Type::Q4_1, 32, 20},    {Type::Q5_0, 32, 22},    {Type::Q5_1, 32, 24},    {Type::Q8_0, 32, 34},
      {Type::Q8_1, 32, 36},    {Type::Q2_K, 256, 84},   {Type::Q3_K, 256, 110},  {Type::Q4_K, 256, 144},
      {Type::Q5_K, 256, 176},  {Type::Q6_K, 256, 210},  {Type::Q8_K, 256, 292},  {Type::I32, 1, 4},
  };
  for (auto& s : spec) {
    CHECK(block_size(s.t) == s.bs);
    CHECK(type_size(s.t) == s.ts);
  }
  CHECK(uint32_t(Type::BF16) == 30);
  CHECK(uint32_t(Type::Q6_K) == 14);
  CHECK_THROWS_AS(traits(Type(4)), Error);   // removed Q4_2
  CHECK_THROWS_AS(traits(Type(99)), Error);
  CHECK_THROWS_WITH_AS(row_size(Type::Q4_0, 33), doctest::Contains("block size"), Error);
  Type t;
  CHECK(type_from_name("Q4_K", &t));
  CHECK(t == Type::Q4_K);
  CHECK(!type_from_name("q4_9", &t));
}

TEST_CASE("fp16: every half survives a round trip through float") {
  for (uint32_t h = 0; h < 65536; h++) {
    const bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
    const float f = fp16_to_fp32(uint16_t(h));
    if (nan) { CHECK(std::isnan(f)); continue; }
    REQUIRE(fp32_to_fp16(f) == h);
  }
  CHECK(fp16_to_fp32(0x3c00) == 1.0f);
  CHECK(fp16_to_fp32(0xc000) == -2.0f);
  CHECK(fp16_to_fp32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(fp16_to_fp32(0x7bff) == 65504.0f);
  CHECK(fp32_to_fp16(65520.0f) == 0x7c00);  // halfway to 65536 rounds to inf
  CHECK(fp32_to_fp16(65519.0f) == 0x7bff);
}

TEST_CASE("fp16: float to half rounds to nearest, ties to even") {
  th::Rng rng(7);
  for (int i = 0; i < 200000; i++) {
    // Random floats across the half range, including subnormals.
    const float f = std::ldexp(rng.uniform(-1.0f, 1.0f), int(rng.range(-26, 16)));
    const uint16_t h = fp32_to_fp16(f);
    const double got = fp16_to_fp32(h);
    if ((h & 0x7fff) == 0x7c00) {  // overflow: only from halfway past the largest half
      REQUIRE(std::fabs(f) >= 65520.0f);
      continue;
    }
    // Neighbours of h (towards and away from zero) must not be nearer.
    for (int d : {-1, 1}) {
      const uint16_t n = uint16_t(h + d);
      if ((n & 0x7fff) >= 0x7c00 || ((h & 0x7fff) == 0 && d < 0)) continue;
      const double other = fp16_to_fp32(n);
      const double e_got = std::fabs(got - f), e_other = std::fabs(other - f);
      REQUIRE(e_got <= e_other);
      if (e_got == e_other) REQUIRE((h & 1) == 0);
    }
#if defined(__F16C__)
    REQUIRE(h == _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));  // the hardware agrees
#endif
  }
}

TEST_CASE("bf16: round to nearest even, nan stays nan") {
  CHECK(fp32_to_bf16(1.0f) == 0x3f80);
  CHECK(bf16_to_fp32(0x3f80) == 1.0f);
  CHECK(fp32_to_bf16(bits_f32(0x3f808000)) == 0x3f80);  // tie, even stays
  CHECK(fp32_to_bf16(bits_f32(0x3f818000)) == 0x3f82);  // tie, odd rounds up
  CHECK(fp32_to_bf16(bits_f32(0x3f808001)) == 0x3f81);
  CHECK(std::isnan(bf16_to_fp32(fp32_to_bf16(NAN))));
}

TEST_CASE("hand-computed blocks, byte for byte") {
  float x[32];
  SUBCASE("q4_0") {
    for (int j = 0; j < 32; j++) x[j] = float(j - 16) / 4.0f;  // max |x| is -4: d = 0.5
    block_q4_0 b;
    ref::quantize_q4_0(x, &b, 32);
    CHECK(b.d == 0x3800);
    const uint8_t want[16] = {0x80, 0x91, 0x91, 0xa2, 0xa2, 0xb3, 0xb3, 0xc4,
                              0xc4, 0xd5, 0xd5, 0xe6, 0xe6, 0xf7, 0xf7, 0xf8};
    CHECK(std::memcmp(b.qs, want, 16) == 0);
  }
  SUBCASE("q4_1") {
    for (int j = 0; j < 32; j++) x[j] = 2.0f + float(j % 16) * 0.5f;  // min 2, d 0.5
    block_q4_1 b;
    ref::quantize_q4_1(x, &b, 32);
    CHECK(b.d == 0x3800);
    CHECK(b.m == 0x4000);
    for (int i = 0; i < 16; i++) CHECK(b.qs[i] == uint8_t(i | (i << 4)));
  }
  SUBCASE("q5_0") {
    for (int j = 0; j < 32; j++) x[j] = float(j - 16) / 4.0f;  // d = 0.25, q_j = j
    block_q5_0 b;
    ref::quantize_q5_0(x, &b, 32);
    CHECK(b.d == 0x3400);
    const uint8_t qh[4] = {0x00, 0x00, 0xff, 0xff};
    CHECK(std::memcmp(b.qh, qh, 4) == 0);
    for (int i = 0; i < 16; i++) CHECK(b.qs[i] == uint8_t(i | (i << 4)));
  }
  SUBCASE("q5_1") {
    for (int j = 0; j < 32; j++) x[j] = 1.0f + float(j) * 0.25f;  // min 1, d 0.25, q_j = j
    block_q5_1 b;
    ref::quantize_q5_1(x, &b, 32);
    CHECK(b.d == 0x3400);
    CHECK(b.m == 0x3c00);
    const uint8_t qh[4] = {0x00, 0x00, 0xff, 0xff};
    CHECK(std::memcmp(b.qh, qh, 4) == 0);
    for (int i = 0; i < 16; i++) CHECK(b.qs[i] == uint8_t(i | (i << 4)));
  }
  SUBCASE("q8_0") {
    for (int j = 0; j < 32; j++) x[j] = float(j - 16) * 0.5f;  // amax 8: d = 8/127
    block_q8_0 b;
    ref::quantize_q8_0(x, &b, 32);
    CHECK(b.d == 0x2c08);  // 8/127 = 0.0629921 -> 2^-4 * (1 + 8/1024)
    CHECK(b.qs[0] == -127);
    CHECK(b.qs[16] == 0);
    CHECK(b.qs[18] == 16);   // 1.0 * 15.875 = 15.875
    CHECK(b.qs[31] == 119);  // 7.5 * 15.875 = 119.06
  }
}

TEST_CASE("hand-built K-quant blocks dequantize as the layout says") {
  SUBCASE("q4_K") {
    block_q4_K b{};
    b.d = 0x3c00;     // 1.0
    b.dmin = 0x3800;  // 0.5
    // sub-block k: scale k+1, min 2k (all below 16, so no high bits)
    const uint8_t scales[12] = {1, 2, 3, 4, 0, 2, 4, 6, 0x85, 0xa6, 0xc7, 0xe8};
    std::memcpy(b.scales, scales, 12);
    std::memset(b.qs, 0x31, sizeof(b.qs));  // low nibble 1 (even sub-blocks), high 3 (odd)
    float y[256];
    ref::dequantize_q4_K(&b, y, 256);
    for (int k = 0; k < 8; k++) {
      const float q = k % 2 == 0 ? 1.0f : 3.0f;
      const float want = float(k + 1) * q - 0.5f * float(2 * k);
      for (int l = 0; l < 32; l++) REQUIRE(y[32 * k + l] == want);
    }
  }
  SUBCASE("q6_K") {
    block_q6_K b{};
    b.d = 0x3800;  // 0.5
    for (int i = 0; i < 16; i++) b.scales[i] = int8_t(i - 8);
    std::memset(b.ql, 0x21, sizeof(b.ql));
    std::memset(b.qh, 0xe4, sizeof(b.qh));  // high bits 0,1,2,3 for the four quarter-chunks
    float y[256];
    ref::dequantize_q6_K(&b, y, 256);
    const int q_of_quarter[4] = {1 - 32, 17 - 32, 34 - 32, 50 - 32};
    for (int e = 0; e < 256; e++) {
      const float want = 0.5f * float(e / 16 - 8) * float(q_of_quarter[(e % 128) / 32]);
      REQUIRE(y[e] == want);
    }
  }
}

TEST_CASE("quantizers match the gguf package byte for byte") {
  const auto x = th::read_f32(th::data_path("quant/input.f32"));
  REQUIRE(x.size() == 16 * 256);
  for (const char* name : {"f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"}) {
    const std::string sname = name;
    CAPTURE(sname);
    Type t;
    REQUIRE(type_from_name(name, &t));
    const auto want = th::read_file(th::data_path(std::string("quant/") + name + ".quant"));
    std::vector<unsigned char> got(row_size(t, int64_t(x.size())));
    REQUIRE(got.size() == want.size());
    traits(t).from_float(x.data(), got.data(), int64_t(x.size()));
    size_t first_diff = got.size();
    for (size_t i = 0; i < got.size(); i++) if (got[i] != want[i]) { first_diff = i; break; }
    CHECK_MESSAGE(first_diff == got.size(), "first differing byte " << first_diff);
  }
}

TEST_CASE("dequantizers match the gguf package on random blocks") {
  for (const char* name : {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_K", "q5_K", "q6_K"}) {
    const std::string sname = name;
    CAPTURE(sname);
    Type t;
    REQUIRE(type_from_name(name, &t));
    const auto blocks = th::read_file(th::data_path(std::string("quant/") + name + ".blocks"));
    const auto want = th::read_f32(th::data_path(std::string("quant/") + name + ".dequant.f32"));
    REQUIRE(blocks.size() / type_size(t) * size_t(block_size(t)) == want.size());
    std::vector<float> got(want.size());
    traits(t).to_float(blocks.data(), got.data(), int64_t(got.size()));
    for (size_t i = 0; i < got.size(); i++) {
      REQUIRE_MESSAGE(std::fabs(got[i] - want[i]) <= 1e-6f * std::fabs(want[i]), "element " << i);
    }
  }
}

namespace {
double rms(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s / double(v.size()));
}
}  // namespace

TEST_CASE("round trip error stays within each format's bound") {
  th::Rng rng(42);
  const float h = std::ldexp(1.0f, -11);  // fp16 relative rounding of a stored scale
  for (float sd : {1.0f, 1e-3f, 50.0f}) {
    const auto x = rng.normals(4096, sd);
    auto roundtrip = [&](Type t) {
      std::vector<unsigned char> q(row_size(t, 4096));
      std::vector<float> y(4096);
      traits(t).from_float(x.data(), q.data(), 4096);
      traits(t).to_float(q.data(), y.data(), 4096);
      return y;
    };
    // Per-element bounds derived from each block's scale.
    auto per_block = [&](Type t, auto bound) {
      const std::string tname = type_name(t);
      CAPTURE(tname);
      const auto y = roundtrip(t);
      for (int b = 0; b < 4096 / 32; b++) {
        float mn = INFINITY, mx = -INFINITY, amax = 0;
        for (int j = 0; j < 32; j++) {
          mn = std::min(mn, x[32 * b + j]);
          mx = std::max(mx, x[32 * b + j]);
          amax = std::max(amax, std::fabs(x[32 * b + j]));
        }
        const double lim = bound(mn, mx, amax);
        for (int j = 0; j < 32; j++) REQUIRE(std::fabs(y[32 * b + j] - x[32 * b + j]) <= lim);
      }
    };
    CAPTURE(sd);
    // A stored fp16 scale is off by half an ulp: relative 2^-11, or 2^-25
    // absolute where it is subnormal.
    auto e16 = [&](double v) { return std::max(std::fabs(v) * h, std::ldexp(1.0, -25)); };
    per_block(Type::Q8_0, [&](float, float, float a) { return (a / 127 * 0.5 + 127 * e16(a / 127)) * 1.0001; });
    per_block(Type::Q4_0, [&](float, float, float a) { return (a / 8 + 8 * e16(a / 8)) * 1.0001; });
    per_block(Type::Q5_0, [&](float, float, float a) { return (a / 16 + 16 * e16(a / 16)) * 1.0001; });
    per_block(Type::Q4_1, [&](float mn, float mx, float) {
      const double d = (mx - mn) / 15.0;
      return (d * 0.5 + 15 * e16(d) + e16(mn)) * 1.0001;
    });
    per_block(Type::Q5_1, [&](float mn, float mx, float) {
      const double d = (mx - mn) / 31.0;
      return (d * 0.5 + 31 * e16(d) + e16(mn)) * 1.0001;
    });
    {
      const auto y = roundtrip(Type::F16);
      for (int i = 0; i < 4096; i++) REQUIRE(std::fabs(y[i] - x[i]) <= e16(x[i]));
    }
    {
      const auto y = roundtrip(Type::BF16);
      for (int i = 0; i < 4096; i++) REQUIRE(std::fabs(y[i] - x[i]) <= std::fabs(x[i]) * std::ldexp(1.0f, -8));
    }
    // K-quants: our quantizers fit a min/max per sub-block, so the error is
    // bounded relative to the signal (Gaussian data, 16/32/64 levels).
    for (auto [t, lim] : {std::pair{Type::Q4_K, 0.12}, {Type::Q5_K, 0.06}, {Type::Q6_K, 0.035}}) {
      const auto y = roundtrip(t);
      std::vector<double> err(4096), sig(4096);
      for (int i = 0; i < 4096; i++) { err[size_t(i)] = y[i] - x[i]; sig[size_t(i)] = x[i]; }
      const std::string tname = type_name(t);
      CAPTURE(tname);
      CHECK(rms(err) / rms(sig) < lim);
    }
  }
}

TEST_CASE("Q8_0R holds Q8_0's blocks rearranged, as its layout says") {
  CHECK(block_size(cpu::Q8_0R) == 256);
  CHECK(type_size(cpu::Q8_0R) == 8 * type_size(Type::Q8_0));
  CHECK(cpu::own_format(cpu::Q8_0R));
  CHECK(!type_known(uint32_t(cpu::Q8_0R)));  // no file may hold it
  Type t;
  CHECK(!type_from_name("q8_0r", &t));  // never a file's or a tool's type
  th::Rng rng(77);
  const int64_t n = 3 * 256;
  std::vector<block_q8_0> q(size_t(n / 32));
  for (auto& b : q) {
    b.d = fp32_to_fp16(float(rng.range(1, 1000)) / 4096.0f);
    for (auto& v : b.qs) v = int8_t(rng.range(-128, 127));
  }
  std::vector<block_q8_0r> r(size_t(n / 256));
  ref::repack_q8_0r(q.data(), r.data(), n);
  // position p of a group: 128-byte half of blocks 0-3 or 4-7, then 64 bytes
  // of first (or last) 16 values, 16 per block
  for (int64_t g = 0; g < n / 256; g++) {
    for (int p = 0; p < 256; p++) {
      const int blk = (p / 128) * 4 + (p % 64) / 16, v = ((p % 128) / 64) * 16 + p % 16;
      REQUIRE(r[size_t(g)].qs[p] == q[size_t(g * 8 + blk)].qs[v]);
    }
    for (int j = 0; j < 8; j++) CHECK(r[size_t(g)].d[j] == q[size_t(g * 8 + j)].d);
  }
  std::vector<block_q8_0> back(q.size());
  ref::unpack_q8_0r(r.data(), back.data(), n);
  CHECK(std::memcmp(back.data(), q.data(), q.size() * sizeof(block_q8_0)) == 0);
  std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
  traits(Type::Q8_0).to_float(q.data(), a.data(), n);
  traits(cpu::Q8_0R).to_float(r.data(), b.data(), n);
  CHECK(a == b);
  // quantizing to Q8_0R is quantizing to Q8_0, rearranged
  const auto x = rng.normals(size_t(n));
  std::vector<block_q8_0r> r1(r.size()), r2(r.size());
  traits(cpu::Q8_0R).from_float(x.data(), r1.data(), n);
  traits(Type::Q8_0).from_float(x.data(), q.data(), n);
  ref::repack_q8_0r(q.data(), r2.data(), n);
  CHECK(std::memcmp(r1.data(), r2.data(), r1.size() * sizeof(block_q8_0r)) == 0);
}

// Q4_0R and Q4_1R: the stored blocks' qs one after another per group of 8,
// then the scales (and mins), as block_q4_0r / block_q4_1r say.
template <class B, class R>
void check_q4r(Type stored, Type held, void (*repack)(const void*, void*, int64_t),
               void (*unpack)(const void*, void*, int64_t)) {
  const std::string tname = type_name(held);
  CAPTURE(tname);
  CHECK(block_size(held) == 256);
  CHECK(type_size(held) == 8 * type_size(stored));
  CHECK(cpu::own_format(held));
  CHECK(!type_known(uint32_t(held)));
  Type t;
  CHECK(!type_from_name(tname, &t));
  th::Rng rng(78);
  const int64_t n = 3 * 256;
  std::vector<B> q(size_t(n / 32));
  for (auto& b : q) {
    b.d = fp32_to_fp16(float(rng.range(1, 1000)) / 4096.0f);
    if constexpr (std::is_same_v<B, block_q4_1>) b.m = fp32_to_fp16(-float(rng.range(1, 1000)) / 512.0f);
    for (auto& v : b.qs) v = uint8_t(rng.range(0, 255));
  }
  std::vector<R> r(size_t(n / 256));
  repack(q.data(), r.data(), n);
  for (int64_t g = 0; g < n / 256; g++)
    for (int j = 0; j < 8; j++) {
      const B& b = q[size_t(g * 8 + j)];
      for (int k = 0; k < 16; k++) REQUIRE(r[size_t(g)].qs[16 * j + k] == b.qs[k]);
      CHECK(r[size_t(g)].d[j] == b.d);
      if constexpr (std::is_same_v<B, block_q4_1>) CHECK(r[size_t(g)].m[j] == b.m);
    }
  std::vector<B> back(q.size());
  unpack(r.data(), back.data(), n);
  CHECK(std::memcmp(back.data(), q.data(), q.size() * sizeof(B)) == 0);
  std::vector<float> a(static_cast<size_t>(n)), c(static_cast<size_t>(n));
  traits(stored).to_float(q.data(), a.data(), n);
  traits(held).to_float(r.data(), c.data(), n);
  CHECK(a == c);
  // quantizing to the rearranged type is quantizing to the stored one, rearranged
  const auto x = rng.normals(size_t(n));
  std::vector<R> r1(r.size()), r2(r.size());
  traits(held).from_float(x.data(), r1.data(), n);
  traits(stored).from_float(x.data(), q.data(), n);
  repack(q.data(), r2.data(), n);
  CHECK(std::memcmp(r1.data(), r2.data(), r1.size() * sizeof(R)) == 0);
}

TEST_CASE("Q4_0R and Q4_1R hold Q4_0's and Q4_1's blocks rearranged, as their layouts say") {
  check_q4r<block_q4_0, block_q4_0r>(Type::Q4_0, cpu::Q4_0R, ref::repack_q4_0r, ref::unpack_q4_0r);
  check_q4r<block_q4_1, block_q4_1r>(Type::Q4_1, cpu::Q4_1R, ref::repack_q4_1r, ref::unpack_q4_1r);
}
