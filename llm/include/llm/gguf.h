#pragma once
// GGUF v3 files: a validating reader over a read-only memory map (tensor data
// are views into the map, never copied) and an atomic writer. Layout and
// value types follow the GGUF specification and llama.cpp's gguf.cpp.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "ggml/types.h"
#include "llm/error.h"

namespace llm {

namespace gguf {

constexpr uint32_t MAGIC = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t VERSION = 3;
constexpr size_t DEFAULT_ALIGNMENT = 32;

enum class ValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* type_name(ValueType t);

// A metadata value. Integers keep their exact type so files round-trip.
// An array's elements are held by kind: scalars as the file's little-endian
// bytes (a byte of memory per byte of file; a Value each would cost ~90, so
// a 24 MiB array of u8 took 2.4 GB), strings as strings, arrays as Values.
struct Value {
  ValueType type = ValueType::U8;
  ValueType elem = ValueType::U8;  // element type of an array
  uint64_t u = 0;                  // U8..U64 and BOOL
  int64_t i = 0;                   // I8..I64
  double f = 0;                    // F32, F64
  std::string s;                   // STRING
  std::vector<uint8_t> raw;        // ARRAY of a scalar type
  std::vector<std::string> strs;   // ARRAY of STRING
  std::vector<Value> arr;          // ARRAY of ARRAY

  size_t size() const;             // an array's element count
  Value at(size_t k) const;        // element k as a Value (any element type)
  uint64_t uint_at(size_t k) const;  // element k of an unsigned or bool array
  int64_t int_at(size_t k) const;    // element k of an integer array of any width and sign (u64 > INT64_MAX: -1)
  double float_at(size_t k) const;   // element k of an F32 or F64 array

  static Value make_uint(ValueType t, uint64_t v);
  static Value make_int(ValueType t, int64_t v);
  static Value make_float(ValueType t, double v);
  static Value make_bool(bool v);
  static Value make_string(std::string v);
  static Value make_array(ValueType elem, std::vector<Value> items);

  bool operator==(const Value& o) const;
};

struct TensorInfo {
  std::string name;
  ggml::Type type = ggml::Type::F32;
  int n_dims = 1;
  int64_t ne[4] = {1, 1, 1, 1};
  uint64_t offset = 0;       // from the start of the data section
  size_t nbytes = 0;
  const void* data = nullptr;  // into the map (reader) or the caller's memory (writer)
};

// A parsed file. Open validates everything: magic, version, counts, string and
// array lengths, dimensions and their products, types, duplicate keys and
// names, alignment, and that every tensor lies inside the file.
class File {
 public:
  static std::unique_ptr<File> open(const std::string& path);
  // Parses bytes the caller keeps alive for the File's lifetime (fuzzing,
  // embedded files); name is used in error messages.
  static std::unique_ptr<File> from_memory(const void* data, size_t size, const std::string& name);
  ~File();

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  size_t data_offset() const { return data_start_; }  // where the data section starts in the file
  const void* bytes() const { return map_; }  // the whole file (its map)
  size_t size() const { return size_; }
  const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }

  const Value* find(const std::string& key) const;
  const TensorInfo* find_tensor(const std::string& name) const;
  // Typed getters: throw llm::Error naming the file and key when missing or
  // of another type (unsigned getters accept any unsigned width).
  uint64_t get_uint(const std::string& key) const;
  int64_t get_int(const std::string& key) const;   // any integer type that fits
  double get_float(const std::string& key) const;  // F32 or F64
  const std::string& get_string(const std::string& key) const;
  const Value& get_array(const std::string& key, ValueType elem) const;

 private:
  File() = default;
  void parse();
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;  // map_ is ours to unmap
  uint32_t version_ = 0;
  size_t alignment_ = DEFAULT_ALIGNMENT;
  size_t data_start_ = 0;
  std::vector<std::pair<std::string, Value>> kv_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

// Builds a file in memory order: metadata in insertion order, tensor infos,
// data (each tensor padded to the alignment), as the gguf Python package does.
class Writer {
 public:
  void set(const std::string& key, Value v);  // replaces an existing key in place
  // data must stay valid until write(); nbytes must match type and shape.
  // data may be null when the streaming write() below produces it.
  void add_tensor(const std::string& name, ggml::Type type, const int64_t* ne, int n_dims, const void* data);
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // Writes path.tmp, flushes it, then renames it over path.
  void write(const std::string& path) const;
  // Streaming: produce(i) returns tensor i's bytes (valid until the next call),
  // called in order, so memory is bounded by one tensor. An exception from
  // produce removes the temporary file and propagates.
  void write(const std::string& path, const std::function<const void*(size_t)>& produce) const;

 private:
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<TensorInfo> tensors_;
};

}  // namespace gguf
}  // namespace llm
