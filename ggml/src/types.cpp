#include <cctype>
#include <cstdio>
#include <string>
#include <vector>

#include "ggml/cpu.h"

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

TypeTraits make(const char* name, int64_t bs, size_t ts, bool q, to_float_fn tf, from_float_fn ff) {
  TypeTraits t;
  t.name = name; t.block_size = bs; t.type_size = ts; t.quantized = q;
  t.to_float = tf; t.from_float = ff;
  return t;
}

// GGUF's types by id; ids past the end, or with no name, are unknown.
struct Table {
  std::vector<TypeTraits> by_id;
  Table() {
    auto set = [&](Type t, TypeTraits tr) {
      if (by_id.size() <= size_t(t)) by_id.resize(size_t(t) + 1);
      by_id[size_t(t)] = tr;
    };
    set(Type::F32, make("f32", 1, 4, false, dequantize_f32, quantize_f32));
    set(Type::F16, make("f16", 1, 2, false, dequantize_f16, quantize_f16));
    set(Type::BF16, make("bf16", 1, 2, false, dequantize_bf16, quantize_bf16));
    set(Type::Q4_0, make("q4_0", 32, sizeof(block_q4_0), true, dequantize_q4_0, quantize_q4_0));
    set(Type::Q4_1, make("q4_1", 32, sizeof(block_q4_1), true, dequantize_q4_1, quantize_q4_1));
    set(Type::Q5_0, make("q5_0", 32, sizeof(block_q5_0), true, dequantize_q5_0, quantize_q5_0));
    set(Type::Q5_1, make("q5_1", 32, sizeof(block_q5_1), true, dequantize_q5_1, quantize_q5_1));
    set(Type::Q8_0, make("q8_0", 32, sizeof(block_q8_0), true, dequantize_q8_0, quantize_q8_0));
    set(Type::Q8_1, make("q8_1", 32, sizeof(block_q8_1), true, dequantize_q8_1, quantize_q8_1));
    // Q2_K/Q3_K: sizes known so files that hold them can be read and skipped,
    // no kernels yet (name set, to_float nullptr: mul_mat refuses them).
    set(Type::Q2_K, make("q2_K", QK_K, 84, true, nullptr, nullptr));
    set(Type::Q3_K, make("q3_K", QK_K, 110, true, nullptr, nullptr));
    set(Type::Q4_K, make("q4_K", QK_K, sizeof(block_q4_K), true, dequantize_q4_K, quantize_q4_K));
    set(Type::Q5_K, make("q5_K", QK_K, sizeof(block_q5_K), true, dequantize_q5_K, quantize_q5_K));
    set(Type::Q6_K, make("q6_K", QK_K, sizeof(block_q6_K), true, dequantize_q6_K, quantize_q6_K));
    set(Type::Q8_K, make("q8_K", QK_K, sizeof(block_q8_K), true, dequantize_q8_K, quantize_q8_K));
    set(Type::I8, make("i8", 1, 1, false, nullptr, nullptr));
    set(Type::I16, make("i16", 1, 2, false, nullptr, nullptr));
    set(Type::I32, make("i32", 1, 4, false, nullptr, nullptr));
    set(Type::I64, make("i64", 1, 8, false, nullptr, nullptr));
    set(Type::F64, make("f64", 1, 8, false, nullptr, nullptr));
    // Ternary types: sizes known (files that hold them are read and
    // refused by name), no kernels.
    set(Type::TQ1_0, make("tq1_0", QK_K, 54, true, nullptr, nullptr));
    set(Type::TQ2_0, make("tq2_0", QK_K, 66, true, nullptr, nullptr));
    if (by_id.size() != TYPE_ID_END) fail("ggml: TYPE_ID_END does not follow the type table");
  }
};

const Table& table() {
  static const Table t;
  return t;
}
}  // namespace

bool type_known(uint32_t id) {
  const auto& v = table().by_id;
  return id < v.size() && v[id].name != nullptr;
}

const TypeTraits& traits(Type t) {
  const uint32_t id = uint32_t(t);
  if (type_known(id)) return table().by_id[id];
  if (const TypeTraits* f = id >= BACKEND_FORMAT_BASE ? cpu::format_traits(t) : nullptr) return *f;
  fail("unknown tensor type id " + std::to_string(id));
}

const char* type_name(Type t) {
  const uint32_t id = uint32_t(t);
  if (type_known(id)) return table().by_id[id].name;
  const TypeTraits* f = id >= BACKEND_FORMAT_BASE ? cpu::format_traits(t) : nullptr;
  return f ? f->name : "unknown";
}

bool type_from_name(std::string_view name, Type* out) {
  std::string lower(name);
  for (auto& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
  for (uint32_t id = 0; id < table().by_id.size(); id++) {
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
