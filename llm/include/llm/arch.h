#pragma once
// Architectures and the GGUF names llama.cpp gives their metadata keys and
// tensors (gguf-py's constants.py), so files move between the two engines.
// GPT-J is not in llama.cpp; its names follow the same pattern and are listed
// in docs/gguf-conventions.md.
#include <string>

namespace llm {

enum class Arch { LLAMA, GPTNEOX, GPTJ };

const char* arch_name(Arch a);              // "llama", "gptneox", "gptj"
Arch arch_from_name(const std::string& s);  // throws llm::Error for others

// "<arch>.<suffix>", e.g. key(Arch::LLAMA, kv::HEAD_COUNT_KV) = "llama.attention.head_count_kv".
std::string key(Arch a, const char* suffix);

namespace kv {
constexpr const char* ARCHITECTURE = "general.architecture";
constexpr const char* NAME = "general.name";
constexpr const char* FILE_TYPE = "general.file_type";
constexpr const char* QUANTIZATION_VERSION = "general.quantization_version";
// Suffixes for key().
constexpr const char* VOCAB_SIZE = "vocab_size";
constexpr const char* CONTEXT_LENGTH = "context_length";
constexpr const char* EMBEDDING_LENGTH = "embedding_length";
constexpr const char* BLOCK_COUNT = "block_count";
constexpr const char* FEED_FORWARD_LENGTH = "feed_forward_length";
constexpr const char* USE_PARALLEL_RESIDUAL = "use_parallel_residual";
constexpr const char* HEAD_COUNT = "attention.head_count";
constexpr const char* HEAD_COUNT_KV = "attention.head_count_kv";
constexpr const char* LAYERNORM_EPS = "attention.layer_norm_epsilon";
constexpr const char* LAYERNORM_RMS_EPS = "attention.layer_norm_rms_epsilon";
constexpr const char* ROPE_DIMENSION_COUNT = "rope.dimension_count";
constexpr const char* ROPE_FREQ_BASE = "rope.freq_base";
constexpr const char* ROPE_SCALING_TYPE = "rope.scaling.type";
constexpr const char* ROPE_SCALING_FACTOR = "rope.scaling.factor";
}  // namespace kv

// Tensor names: global ones, and per-block ones as blk(i, name) + ".weight"/".bias".
namespace tn {
constexpr const char* TOKEN_EMBD = "token_embd";
constexpr const char* OUTPUT_NORM = "output_norm";
constexpr const char* OUTPUT = "output";
constexpr const char* ATTN_NORM = "attn_norm";
constexpr const char* ATTN_Q = "attn_q";
constexpr const char* ATTN_K = "attn_k";
constexpr const char* ATTN_V = "attn_v";
constexpr const char* ATTN_QKV = "attn_qkv";
constexpr const char* ATTN_OUT = "attn_output";
constexpr const char* FFN_NORM = "ffn_norm";
constexpr const char* FFN_GATE = "ffn_gate";
constexpr const char* FFN_UP = "ffn_up";
constexpr const char* FFN_DOWN = "ffn_down";
std::string blk(int layer, const char* name);  // "blk.<layer>.<name>"
}  // namespace tn

// llama.cpp's general.file_type values for the types we write.
enum class FileType : uint32_t { ALL_F32 = 0, MOSTLY_F16 = 1, MOSTLY_Q4_0 = 2, MOSTLY_Q4_1 = 3, MOSTLY_Q8_0 = 7,
                                 MOSTLY_Q5_0 = 8, MOSTLY_Q5_1 = 9, MOSTLY_BF16 = 32 };

}  // namespace llm
