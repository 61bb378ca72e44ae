#include <cctype>
#include <cstdio>
#include <string>

#include "ggml/error.h"
#include "ggml/quants.h"
#include "ggml/types.h"

namespace ggml {

void fail(const std::string& msg) { throw Error(msg); }

void assert_failed(const char* file, int line, const char* expr) {
  std::fprintf(stderr, "ggml: internal error at %s:%d: %s\n", file, line, expr);
  std::abort();
}

namespace {
using namespace ref;

TypeTraits make(const char* name, int64_t bs, size_t ts, bool q, to_float_fn tf, from_float_fn ff, Type vdt) {
  TypeTraits t;
  t.name = name; t.block_size = bs; t.type_size = ts; t.quantized = q;
  t.to_float = tf; t.from_float = ff; t.vec_dot_type = vdt;
  return t;
}

struct Table {
  TypeTraits by_id[31];
  TypeTraits q8_s, q8_0r, q4_0r, q4_1r;
  Table() {
    auto set = [&](Type t, TypeTraits tr) { by_id[size_t(t)] = tr; };
    set(Type::F32, make("f32", 1, 4, false, dequantize_f32, quantize_f32, Type::F32));
    set(Type::F16, make("f16", 1, 2, false, dequantize_f16, quantize_f16, Type::F32));
    set(Type::BF16, make("bf16", 1, 2, false, dequantize_bf16, quantize_bf16, Type::F32));
    set(Type::Q4_0, make("q4_0", 32, sizeof(block_q4_0), true, dequantize_q4_0, quantize_q4_0, Type::Q8_S));
    set(Type::Q4_1, make("q4_1", 32, sizeof(block_q4_1), true, dequantize_q4_1, quantize_q4_1, Type::Q8_S));
    set(Type::Q5_0, make("q5_0", 32, sizeof(block_q5_0), true, dequantize_q5_0, quantize_q5_0, Type::Q8_S));
    set(Type::Q5_1, make("q5_1", 32, sizeof(block_q5_1), true, dequantize_q5_1, quantize_q5_1, Type::Q8_S));
    set(Type::Q8_0, make("q8_0", 32, sizeof(block_q8_0), true, dequantize_q8_0, quantize_q8_0, Type::Q8_S));
    set(Type::Q8_1, make("q8_1", 32, sizeof(block_q8_1), true, dequantize_q8_1, quantize_q8_1, Type::Q8_1));
    // Q2_K/Q3_K: sizes known so files that hold them can be read and skipped,
    // no kernels yet (name set, to_float nullptr: mul_mat refuses them).
    set(Type::Q2_K, make("q2_K", QK_K, 84, true, nullptr, nullptr, Type::Q8_K));
    set(Type::Q3_K, make("q3_K", QK_K, 110, true, nullptr, nullptr, Type::Q8_K));
    set(Type::Q4_K, make("q4_K", QK_K, sizeof(block_q4_K), true, dequantize_q4_K, quantize_q4_K, Type::Q8_K));
    set(Type::Q5_K, make("q5_K", QK_K, sizeof(block_q5_K), true, dequantize_q5_K, quantize_q5_K, Type::Q8_K));
    set(Type::Q6_K, make("q6_K", QK_K, sizeof(block_q6_K), true, dequantize_q6_K, quantize_q6_K, Type::Q8_K));
    set(Type::Q8_K, make("q8_K", QK_K, sizeof(block_q8_K), true, dequantize_q8_K, quantize_q8_K, Type::Q8_K));
    set(Type::I8, make("i8", 1, 1, false, nullptr, nullptr, Type::I8));
    set(Type::I16, make("i16", 1, 2, false, nullptr, nullptr, Type::I16));
    set(Type::I32, make("i32", 1, 4, false, nullptr, nullptr, Type::I32));
    set(Type::I64, make("i64", 1, 8, false, nullptr, nullptr, Type::I64));
    set(Type::F64, make("f64", 1, 8, false, nullptr, nullptr, Type::F64));
    q8_s = make("q8_s", 32, 40, true, dequantize_q8_s, quantize_q8_s, Type::Q8_S);
    q8_0r = make("q8_0r", 256, sizeof(block_q8_0r), true, dequantize_q8_0r, quantize_q8_0r, Type::Q8_S);
    q4_0r = make("q4_0r", 256, sizeof(block_q4_0r), true, dequantize_q4_0r, quantize_q4_0r, Type::Q8_S);
    q4_1r = make("q4_1r", 256, sizeof(block_q4_1r), true, dequantize_q4_1r, quantize_q4_1r, Type::Q8_S);
  }
};

const Table& table() {
  static const Table t;
  return t;
}
}  // namespace

bool type_known(uint32_t id) {
  if (type_internal(Type(id))) return true;
  return id < 31 && table().by_id[id].name != nullptr;
}

const TypeTraits& traits(Type t) {
  const uint32_t id = uint32_t(t);
  if (t == Type::Q8_S) return table().q8_s;
  if (t == Type::Q8_0R) return table().q8_0r;
  if (t == Type::Q4_0R) return table().q4_0r;
  if (t == Type::Q4_1R) return table().q4_1r;
  if (!type_known(id)) fail("unknown tensor type id " + std::to_string(id));
  return table().by_id[id];
}

const char* type_name(Type t) {
  return type_known(uint32_t(t)) ? traits(t).name : "unknown";
}

bool type_from_name(std::string_view name, Type* out) {
  std::string lower(name);
  for (auto& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
  for (uint32_t id = 0; id < 31; id++) {
    const TypeTraits& t = table().by_id[id];
    if (!t.name) continue;
    std::string tn(t.name);
    for (auto& c : tn) c = char(std::tolower(static_cast<unsigned char>(c)));
    if (tn == lower) { *out = Type(id); return true; }
  }
  return false;
}

size_t row_size(Type t, int64_t n) {
  const TypeTraits& tr = traits(t);
  if (n < 0 || n % tr.block_size != 0) {
    fail(std::string("row of ") + std::to_string(n) + " elements is not a multiple of " + tr.name +
         "'s block size " + std::to_string(tr.block_size));
  }
  return size_t(n / tr.block_size) * tr.type_size;
}

}  // namespace ggml
