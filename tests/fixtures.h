#pragma once
// The HF fixtures (tests/data/hf) converted to GGUF once per test run.
#include <filesystem>
#include <string>

#include "helpers.h"
#include "llm/convert.h"

namespace th {

inline std::string converted(const std::string& name, ggml::Type t) {
  const std::filesystem::path out = temp_dir() / (name + "-" + ggml::type_name(t) + ".gguf");
  if (!std::filesystem::exists(out)) {
    llm::ConvertOptions o;
    o.model_dir = data_dir() + "/hf/" + name;
    o.out_path = out.string();
    o.outtype = t;
    llm::convert_hf_checkpoint(o);
  }
  return out.string();
}

}  // namespace th
