#include "llm/npy.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <unistd.h>

#include "llm/files.h"
#include "llm/error.h"

namespace llm {

void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  std::string dims;
  int64_t n = 1;
  for (size_t i = 0; i < shape.size(); i++) {
    dims += (i ? ", " : "") + std::to_string(shape[i]);
    n *= shape[i];
  }
  if (shape.size() == 1) dims += ",";  // numpy's spelling: "(3,)", "(3, 4)"
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + length (2) + header + '\n' is padded to 64 bytes.
  const size_t total = (10 + header.size() + 1 + 63) / 64 * 64;
  header.append(total - 10 - header.size() - 1, ' ');
  header += '\n';
  OutputFile out(path);
  std::FILE* f = out.stream();
  const uint16_t hl = (uint16_t)header.size();
  bool ok = std::fwrite("\x93NUMPY\x01\x00", 1, 8, f) == 8 && std::fwrite(&hl, 2, 1, f) == 1 &&
            std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
            std::fwrite(data, sizeof(float), (size_t)n, f) == (size_t)n;
  if (!ok) throw Error(path + ": write failed: " + std::strerror(errno));
  out.commit();
}

namespace {
template <class R>
R read_npy(const std::string& path, const char* descr, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  char magic[10];
  if (!in.read(magic, 10) || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw Error(path + ": not a .npy file");
  size_t hl;
  if (magic[6] == 1) {
    hl = (uint8_t)magic[8] | (size_t)(uint8_t)magic[9] << 8;
  } else {
    char more[2];
    if (!in.read(more, 2)) throw Error(path + ": truncated header");
    hl = (uint8_t)magic[8] | (size_t)(uint8_t)magic[9] << 8 | (size_t)(uint8_t)more[0] << 16 | (size_t)(uint8_t)more[1] << 24;
  }
  if (hl > 65536) throw Error(path + ": header too long");
  std::string h(hl, '\0');
  if (!in.read(h.data(), (std::streamsize)hl)) throw Error(path + ": truncated header");
  if (h.find(descr) == std::string::npos || h.find("'fortran_order': False") == std::string::npos)
    throw Error(path + ": only C-order little-endian " + what + " arrays are supported");
  size_t a = h.find("'shape': ("), b = h.find(')', a);
  if (a == std::string::npos || b == std::string::npos) throw Error(path + ": no shape");
  R r;
  int64_t n = 1;
  for (size_t p = a + 10; p < b;) {
    while (p < b && (h[p] == ' ' || h[p] == ',')) p++;
    if (p >= b) break;
    char* end;
    long long d = std::strtoll(h.c_str() + p, &end, 10);
    if (end == h.c_str() + p || d < 0 || d > (1ll << 40)) throw Error(path + ": bad shape");
    r.shape.push_back(d);
    n *= d;
    if (n > (int64_t(1) << 32)) throw Error(path + ": array too large");
    p = (size_t)(end - h.c_str());
  }
  r.data.resize((size_t)n);
  if (!in.read(reinterpret_cast<char*>(r.data.data()), (std::streamsize)(n * 4))) throw Error(path + ": truncated data");
  return r;
}
}  // namespace

NpyF32 read_npy_f32(const std::string& path) { return read_npy<NpyF32>(path, "'<f4'", "float32"); }
NpyI32 read_npy_i32(const std::string& path) { return read_npy<NpyI32>(path, "'<i4'", "int32"); }

}  // namespace llm
