// The CPU backend's own formats: their traits, and which format a weight's
// activations and rearranged layout take.
#include "ggml/cpu.h"
#include "ggml/quants.h"

namespace ggml::cpu {

namespace {
struct Formats {
  TypeTraits t[N_FORMATS];
  Formats() {
    auto set = [&](Type id, const char* name, int64_t bs, size_t ts, to_float_fn tf, from_float_fn ff) {
      TypeTraits& x = t[uint32_t(id) - BACKEND_FORMAT_BASE];
      x.name = name;
      x.block_size = bs;
      x.type_size = ts;
      x.quantized = true;
      x.to_float = tf;
      x.from_float = ff;
    };
    set(Q8_S, "q8_s", 32, 40, ref::dequantize_q8_s, ref::quantize_q8_s);
    set(Q8_0R, "q8_0r", 256, sizeof(block_q8_0r), ref::dequantize_q8_0r, ref::quantize_q8_0r);
    set(Q4_0R, "q4_0r", 256, sizeof(block_q4_0r), ref::dequantize_q4_0r, ref::quantize_q4_0r);
    set(Q4_1R, "q4_1r", 256, sizeof(block_q4_1r), ref::dequantize_q4_1r, ref::quantize_q4_1r);
  }
};
}  // namespace

const TypeTraits* format_traits(Type t) {
  static const Formats f;
  return own_format(t) ? &f.t[uint32_t(t) - BACKEND_FORMAT_BASE] : nullptr;
}

Type rearranged(Type t) {
  switch (t) {
    case Type::Q8_0: return Q8_0R;
    case Type::Q4_0: return Q4_0R;
    case Type::Q4_1: return Q4_1R;
    default: return t;
  }
}

Type activation_format(Type w) {
  if (own_format(w)) return Q8_S;  // the rearranged 32-element types (and Q8_S itself)
  switch (w) {
    case Type::Q4_0: case Type::Q4_1: case Type::Q5_0: case Type::Q5_1: case Type::Q8_0: return Q8_S;
    case Type::Q8_1: return Type::Q8_1;
    case Type::Q2_K: case Type::Q3_K: case Type::Q4_K: case Type::Q5_K: case Type::Q6_K: case Type::Q8_K:
    case Type::TQ1_0: case Type::TQ2_0: return Type::Q8_K;
    default: return Type::F32;
  }
}

}  // namespace ggml::cpu
