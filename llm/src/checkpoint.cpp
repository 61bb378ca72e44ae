// Checkpoint discovery, safetensors parsing and tensor gathering.
#include "llm/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "ggml/fp16.h"
#include "llm/files.h"
#include "llm/error.h"
#include "mapped_file.h"

namespace llm {

namespace fs = std::filesystem;
using json = nlohmann::json;

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F64: return "F64";
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
  }
  return "?";
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    default: return 1;
  }
}

int64_t SourceTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<float> SourceTensor::to_f32() const {
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16 && dtype != DType::F64)
    throw Error(file + ": tensor '" + name + "' has dtype " + dtype_name(dtype) + ", not a float type");
  const int64_t n = numel();
  std::vector<float> out((size_t)n);
  const size_t es = dtype_size(dtype);
  const int nd = (int)shape.size();
  auto load = [&](const uint8_t* p) -> float {
    switch (dtype) {
      case DType::F32: { float v; std::memcpy(&v, p, 4); return v; }
      case DType::F64: { double v; std::memcpy(&v, p, 8); return (float)v; }
      case DType::F16: { uint16_t h; std::memcpy(&h, p, 2); return ggml::fp16_to_fp32(h); }
      default: { uint16_t h; std::memcpy(&h, p, 2); uint32_t b = uint32_t(h) << 16; float v; std::memcpy(&v, &b, 4); return v; }
    }
  };
  // Walk the index space row-major; the innermost dimension is the hot loop.
  std::vector<int64_t> idx(nd, 0);
  const int64_t inner = nd ? shape[nd - 1] : 1;
  const int64_t inner_stride = nd ? strides[nd - 1] : 1;
  for (int64_t i = 0; i < n; i += inner) {
    int64_t off = 0;
    for (int d = 0; d + 1 < nd; d++) off += idx[d] * strides[d];
    const uint8_t* p = base + off * (int64_t)es;
    if (inner_stride == 1 && dtype == DType::F32) {
      std::memcpy(&out[i], p, (size_t)inner * 4);
    } else {
      for (int64_t j = 0; j < inner; j++) out[i + j] = load(p + j * inner_stride * (int64_t)es);
    }
    for (int d = nd - 2; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

Checkpoint::~Checkpoint() = default;

const SourceTensor* Checkpoint::find(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

void Checkpoint::add(SourceTensor t) {
  if (find(t.name)) throw Error(t.file + ": tensor '" + t.name + "' appears twice in the checkpoint");
  tensors_.push_back(std::move(t));
}

// ---- safetensors ------------------------------------------------------------
// 8-byte little-endian header length, a JSON header {name: {dtype, shape,
// data_offsets: [begin, end]}, "__metadata__": {...}}, then the data.

void Checkpoint::add_safetensors(const std::string& path) {
  auto map = std::make_unique<MappedFile>(path);
  const uint8_t* d = map->data();
  const size_t size = map->size();
  if (size < 8) throw Error(path + ": truncated safetensors file (" + std::to_string(size) + " bytes)");
  uint64_t hlen;
  std::memcpy(&hlen, d, 8);
  if (hlen > size - 8) throw Error(path + ": safetensors header length " + std::to_string(hlen) + " runs past the end of the file");
  if (hlen > (uint64_t(100) << 20)) throw Error(path + ": safetensors header of " + std::to_string(hlen) + " bytes is too large");
  json h;
  try {
    h = json::parse(d + 8, d + 8 + hlen);
  } catch (const json::exception& e) {
    throw Error(path + ": safetensors header is not valid JSON: " + e.what());
  }
  if (!h.is_object()) throw Error(path + ": safetensors header is not a JSON object");
  const uint8_t* data = d + 8 + hlen;
  const uint64_t data_size = size - 8 - hlen;
  static const std::pair<const char*, DType> names[] = {
      {"F64", DType::F64}, {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"I64", DType::I64},
      {"I32", DType::I32}, {"I16", DType::I16}, {"I8", DType::I8},   {"U8", DType::U8},     {"BOOL", DType::BOOL}};
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string where = path + ": tensor '" + it.key() + "'";
    const json& e = it.value();
    if (!e.is_object() || !e.contains("dtype") || !e["dtype"].is_string() || !e.contains("shape") ||
        !e["shape"].is_array() || !e.contains("data_offsets") || !e["data_offsets"].is_array() ||
        e["data_offsets"].size() != 2)
      throw Error(where + ": entry needs dtype, shape and data_offsets");
    SourceTensor t;
    t.name = it.key();
    t.file = path;
    std::string dt = e["dtype"].get<std::string>();
    bool known = false;
    for (const auto& [n, ty] : names)
      if (dt == n) t.dtype = ty, known = true;
    if (!known) throw Error(where + ": dtype " + dt + " is not supported");
    if (e["shape"].size() > 8) throw Error(where + ": more than 8 dimensions");
    uint64_t numel = 1;
    for (const json& s : e["shape"]) {
      if (!s.is_number_unsigned()) throw Error(where + ": shape holds something other than a size");
      uint64_t v = s.get<uint64_t>();
      if (v > (uint64_t(1) << 40) || (v && numel > (uint64_t(1) << 40) / v))
        throw Error(where + ": shape is impossibly large");
      numel *= v;
      t.shape.push_back((int64_t)v);
    }
    const json& off = e["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) throw Error(where + ": bad data_offsets");
    uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    if (b > en || en > data_size)
      throw Error(where + ": data [" + std::to_string(b) + ", " + std::to_string(en) + ") lies outside the " +
                  std::to_string(data_size) + " data bytes");
    if (en - b != numel * dtype_size(t.dtype))
      throw Error(where + ": " + std::to_string(en - b) + " bytes for " + std::to_string(numel) + " " + dt + " values");
    ranges.emplace_back(b, en);
    t.strides.assign(t.shape.size(), 1);
    // (An empty tensor reads nothing; its strides stay 1 rather than a
    // product of the other sizes, which could overflow.)
    if (numel > 0)
      for (int k = (int)t.shape.size() - 2; k >= 0; k--) t.strides[k] = t.strides[k + 1] * t.shape[k + 1];
    t.base = data + b;
    add(std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); i++)
    if (ranges[i].first < ranges[i - 1].second) throw Error(path + ": two tensors' data overlap");
  maps_.push_back(std::move(map));
  files_.push_back(path);
}

std::unique_ptr<Checkpoint> Checkpoint::open_safetensors(const std::vector<std::string>& files) {
  std::unique_ptr<Checkpoint> c(new Checkpoint());
  for (const auto& f : files) c->add_safetensors(f);
  return c;
}

std::unique_ptr<Checkpoint> Checkpoint::open_pytorch(const std::vector<std::string>& files) {
  std::unique_ptr<Checkpoint> c(new Checkpoint());
  for (const auto& f : files) c->add_pytorch(f);
  return c;
}

// Shard lists come from the index's weight_map (each file once, sorted).
static std::vector<std::string> shards_from_index(const fs::path& index) {
  std::ifstream in(index);
  if (!in) throw Error(index.string() + ": cannot open");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw Error(index.string() + ": invalid JSON: " + e.what());
  }
  if (!j.contains("weight_map") || !j["weight_map"].is_object()) throw Error(index.string() + ": no weight_map");
  std::set<std::string> files;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string()) throw Error(index.string() + ": weight_map value is not a file name");
    std::string f = it.value().get<std::string>();
    if (f.find('/') != std::string::npos || f == "..") throw Error(index.string() + ": shard '" + f + "' is not a plain file name");
    files.insert(f);
  }
  std::vector<std::string> out;
  for (const auto& f : files) {
    fs::path p = index.parent_path() / f;
    if (!fs::exists(p)) throw Error(index.string() + ": shard " + f + " is missing");
    out.push_back(p.string());
  }
  if (out.empty()) throw Error(index.string() + ": weight_map is empty");
  return out;
}

std::unique_ptr<Checkpoint> Checkpoint::open_dir(const std::string& dir) {
  fs::path d(dir);
  if (std::string why = not_a_directory_reason(dir); !why.empty()) throw Error(dir + ": " + why);
  if (fs::exists(d / "model.safetensors")) return open_safetensors({(d / "model.safetensors").string()});
  if (fs::exists(d / "model.safetensors.index.json"))
    return open_safetensors(shards_from_index(d / "model.safetensors.index.json"));
  std::vector<std::string> st;
  for (const auto& e : fs::directory_iterator(d))
    if (e.path().extension() == ".safetensors") st.push_back(e.path().string());
  std::sort(st.begin(), st.end());
  if (!st.empty()) return open_safetensors(st);
  if (fs::exists(d / "pytorch_model.bin")) return open_pytorch({(d / "pytorch_model.bin").string()});
  if (fs::exists(d / "pytorch_model.bin.index.json"))
    return open_pytorch(shards_from_index(d / "pytorch_model.bin.index.json"));
  throw Error(dir + ": no weights (model.safetensors, *.safetensors or pytorch_model.bin)");
}

}  // namespace llm
