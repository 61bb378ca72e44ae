#pragma once
// Hugging Face checkpoint weights, read without Python: safetensors files
// (single or sharded with model.safetensors.index.json) and PyTorch zip
// archives (pytorch_model*.bin), whose pickle is interpreted by a small
// machine that understands a state dict's opcodes and refuses any other call.
// Files are memory-mapped; a tensor's bytes are read only when asked for.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llm {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };
const char* dtype_name(DType t);
size_t dtype_size(DType t);

class MappedFile;

struct SourceTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;    // PyTorch order: outermost first
  std::vector<int64_t> strides;  // in elements, PyTorch order
  const uint8_t* base = nullptr; // element [0, 0, ...]
  std::string file;              // for messages

  int64_t numel() const;
  // The values as F32 in row-major order (strides gathered); throws for
  // integer and boolean tensors.
  std::vector<float> to_f32() const;
};

class Checkpoint {
 public:
  // Finds the weights in a checkpoint directory: model.safetensors,
  // model.safetensors.index.json, *.safetensors, pytorch_model.bin,
  // pytorch_model.bin.index.json (first match wins).
  static std::unique_ptr<Checkpoint> open_dir(const std::string& dir);
  static std::unique_ptr<Checkpoint> open_safetensors(const std::vector<std::string>& files);
  static std::unique_ptr<Checkpoint> open_pytorch(const std::vector<std::string>& files);
  ~Checkpoint();

  const std::vector<SourceTensor>& tensors() const { return tensors_; }
  const SourceTensor* find(const std::string& name) const;
  const std::vector<std::string>& files() const { return files_; }

 private:
  Checkpoint() = default;
  void add(SourceTensor t);
  void add_safetensors(const std::string& path);
  void add_pytorch(const std::string& path);
  std::vector<std::unique_ptr<MappedFile>> maps_;
  std::vector<SourceTensor> tensors_;
  std::vector<std::string> files_;
};

}  // namespace llm
