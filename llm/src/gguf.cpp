#include "llm/gguf.h"

#include "llm/files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace llm::gguf {

namespace {
constexpr int MAX_ARRAY_DEPTH = 8;

bool is_int(ValueType t) {
  return t == ValueType::I8 || t == ValueType::I16 || t == ValueType::I32 || t == ValueType::I64;
}
bool is_uint(ValueType t) {
  return t == ValueType::U8 || t == ValueType::U16 || t == ValueType::U32 || t == ValueType::U64;
}
size_t scalar_size(ValueType t) {
  switch (t) {
    case ValueType::U8: case ValueType::I8: case ValueType::BOOL: return 1;
    case ValueType::U16: case ValueType::I16: return 2;
    case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
    case ValueType::U64: case ValueType::I64: case ValueType::F64: return 8;
    default: return 0;
  }
}
bool known(uint32_t t) { return t <= uint32_t(ValueType::F64); }

// Bounds-checked little-endian reads from the map.
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t size, const std::string& path) : p_(p), size_(size), path_(path) {}
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(path_ + ": " + what + " (at byte " + std::to_string(pos_) + ")");
  }
  size_t pos() const { return pos_; }
  size_t left() const { return size_ - pos_; }
  template <class T>
  T read(const char* what) {
    if (left() < sizeof(T)) fail(std::string("file truncated while reading ") + what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  const uint8_t* take(size_t n) {
    if (n > left()) fail("file truncated");
    const uint8_t* r = p_ + pos_;
    pos_ += n;
    return r;
  }
  std::string read_string(const char* what) {
    const uint64_t n = read<uint64_t>(what);
    if (n > left()) fail(std::string(what) + " length " + std::to_string(n) + " runs past the end of the file");
    std::string s(reinterpret_cast<const char*>(p_ + pos_), size_t(n));
    pos_ += size_t(n);
    return s;
  }

 private:
  const uint8_t* p_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

Value read_value(Cursor& c, ValueType t, int depth, const std::string& key) {
  switch (t) {
    case ValueType::U8: return Value::make_uint(t, c.read<uint8_t>("a value"));
    case ValueType::U16: return Value::make_uint(t, c.read<uint16_t>("a value"));
    case ValueType::U32: return Value::make_uint(t, c.read<uint32_t>("a value"));
    case ValueType::U64: return Value::make_uint(t, c.read<uint64_t>("a value"));
    case ValueType::I8: return Value::make_int(t, c.read<int8_t>("a value"));
    case ValueType::I16: return Value::make_int(t, c.read<int16_t>("a value"));
    case ValueType::I32: return Value::make_int(t, c.read<int32_t>("a value"));
    case ValueType::I64: return Value::make_int(t, c.read<int64_t>("a value"));
    case ValueType::F32: return Value::make_float(t, c.read<float>("a value"));
    case ValueType::F64: return Value::make_float(t, c.read<double>("a value"));
    case ValueType::BOOL: {
      const uint8_t b = c.read<uint8_t>("a value");
      if (b > 1) c.fail("key '" + key + "': bool value " + std::to_string(b) + " is not 0 or 1");
      return Value::make_bool(b != 0);
    }
    case ValueType::STRING: return Value::make_string(c.read_string("a string value"));
    case ValueType::ARRAY: {
      if (depth >= MAX_ARRAY_DEPTH) c.fail("key '" + key + "': arrays nested deeper than 8 levels");
      const uint32_t et = c.read<uint32_t>("an array type");
      if (!known(et)) c.fail("key '" + key + "': unknown array element type " + std::to_string(et));
      const uint64_t n = c.read<uint64_t>("an array length");
      // Every element takes at least one byte (strings and arrays at least
      // eight): a count the rest of the file cannot hold is corrupt, and
      // refusing it here avoids a giant allocation.
      const size_t min_elem = scalar_size(ValueType(et)) ? scalar_size(ValueType(et)) : 8;
      if (n > c.left() / min_elem) {
        c.fail("key '" + key + "': array of " + std::to_string(n) + " elements runs past the end of the file");
      }
      Value a;
      a.type = ValueType::ARRAY;
      a.elem = ValueType(et);
      if (const size_t es = scalar_size(a.elem)) {
        const size_t bytes = size_t(n) * es;  // fits: n <= left / es
        const uint8_t* p = c.take(bytes);
        if (a.elem == ValueType::BOOL)
          for (size_t k = 0; k < bytes; k++)
            if (p[k] > 1) c.fail("key '" + key + "': bool value " + std::to_string(p[k]) + " is not 0 or 1");
        a.raw.assign(p, p + bytes);
      } else if (a.elem == ValueType::STRING) {
        a.strs.reserve(size_t(n));
        for (uint64_t k = 0; k < n; k++) a.strs.push_back(c.read_string("a string value"));
      } else {
        a.arr.reserve(size_t(n));
        for (uint64_t k = 0; k < n; k++) a.arr.push_back(read_value(c, a.elem, depth + 1, key));
      }
      return a;
    }
  }
  c.fail("key '" + key + "': unknown value type " + std::to_string(uint32_t(t)));
}
}  // namespace

const char* type_name(ValueType t) {
  static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
  return known(uint32_t(t)) ? names[uint32_t(t)] : "unknown";
}

Value Value::make_uint(ValueType t, uint64_t v) { Value x; x.type = t; x.u = v; return x; }
Value Value::make_int(ValueType t, int64_t v) { Value x; x.type = t; x.i = v; return x; }
Value Value::make_float(ValueType t, double v) { Value x; x.type = t; x.f = v; return x; }
Value Value::make_bool(bool v) { Value x; x.type = ValueType::BOOL; x.u = v ? 1 : 0; return x; }
Value Value::make_string(std::string v) { Value x; x.type = ValueType::STRING; x.s = std::move(v); return x; }
Value Value::make_array(ValueType elem, std::vector<Value> items) {
  Value x;
  x.type = ValueType::ARRAY;
  x.elem = elem;
  if (const size_t es = scalar_size(elem)) {
    x.raw.resize(items.size() * es);
    for (size_t k = 0; k < items.size(); k++) {
      const Value& e = items[k];
      if (e.type != elem) throw Error("gguf: an array of " + std::string(type_name(elem)) + " holds a " + type_name(e.type));
      uint8_t* p = x.raw.data() + k * es;
      switch (elem) {
        case ValueType::F32: { float v = float(e.f); std::memcpy(p, &v, 4); break; }
        case ValueType::F64: std::memcpy(p, &e.f, 8); break;
        default: {
          uint64_t bits = is_int(elem) ? uint64_t(e.i) : e.u;
          std::memcpy(p, &bits, es);  // little-endian: the low bytes
        }
      }
    }
  } else if (elem == ValueType::STRING) {
    for (auto& e : items) x.strs.push_back(std::move(e.s));
  } else {
    x.arr = std::move(items);
  }
  return x;
}

size_t Value::size() const {
  if (const size_t es = scalar_size(elem)) return raw.size() / es;
  return elem == ValueType::STRING ? strs.size() : arr.size();
}

uint64_t Value::uint_at(size_t k) const {
  const size_t es = scalar_size(elem);
  uint64_t v = 0;
  std::memcpy(&v, raw.data() + k * es, es);
  return v;
}

int64_t Value::int_at(size_t k) const {
  const size_t es = scalar_size(elem);
  if (is_uint(elem) || elem == ValueType::BOOL) {
    uint64_t v = uint_at(k);
    return v > uint64_t(INT64_MAX) ? -1 : int64_t(v);
  }
  switch (es) {
    case 1: { int8_t v; std::memcpy(&v, raw.data() + k, 1); return v; }
    case 2: { int16_t v; std::memcpy(&v, raw.data() + 2 * k, 2); return v; }
    case 4: { int32_t v; std::memcpy(&v, raw.data() + 4 * k, 4); return v; }
    default: { int64_t v; std::memcpy(&v, raw.data() + 8 * k, 8); return v; }
  }
}

double Value::float_at(size_t k) const {
  if (elem == ValueType::F32) {
    float v;
    std::memcpy(&v, raw.data() + 4 * k, 4);
    return v;
  }
  double v;
  std::memcpy(&v, raw.data() + 8 * k, 8);
  return v;
}

Value Value::at(size_t k) const {
  if (elem == ValueType::STRING) return make_string(strs[k]);
  if (elem == ValueType::ARRAY) return arr[k];
  if (elem == ValueType::F32 || elem == ValueType::F64) return make_float(elem, float_at(k));
  if (elem == ValueType::BOOL) return make_bool(uint_at(k) != 0);
  if (is_int(elem)) return make_int(elem, int_at(k));
  return make_uint(elem, uint_at(k));
}

bool Value::operator==(const Value& o) const {
  if (type != o.type) return false;
  if (is_uint(type) || type == ValueType::BOOL) return u == o.u;
  if (is_int(type)) return i == o.i;
  if (type == ValueType::F32 || type == ValueType::F64) return f == o.f || (f != f && o.f != o.f);
  if (type == ValueType::STRING) return s == o.s;
  return elem == o.elem && raw == o.raw && strs == o.strs && arr == o.arr;
}

// ---- reader -------------------------------------------------------------------

File::~File() {
  if (mapped_) munmap(const_cast<uint8_t*>(map_), size_);
}

std::unique_ptr<File> File::from_memory(const void* data, size_t size, const std::string& name) {
  std::unique_ptr<File> f(new File());
  f->path_ = name;
  f->map_ = static_cast<const uint8_t*>(data);
  f->size_ = size;
  f->parse();
  return f;
}

std::unique_ptr<File> File::open(const std::string& path) {
  std::unique_ptr<File> f(new File());
  f->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  f->size_ = size_t(st.st_size);
  if (f->size_ > 0) {
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      throw Error(path + ": cannot map: " + std::strerror(errno));
    }
    f->map_ = static_cast<const uint8_t*>(p);
    f->mapped_ = true;
  }
  ::close(fd);
  f->parse();
  return f;
}

void File::parse() {
  Cursor c(map_, size_, path_);
  if (c.read<uint32_t>("the magic") != MAGIC) c.fail("not a GGUF file (bad magic)");
  version_ = c.read<uint32_t>("the version");
  if (version_ != 2 && version_ != 3) {
    c.fail("GGUF version " + std::to_string(version_) + " is not supported (2 and 3 are)");
  }
  const uint64_t n_tensors = c.read<uint64_t>("the tensor count");
  const uint64_t n_kv = c.read<uint64_t>("the metadata count");
  // A key-value pair takes at least 13 bytes, a tensor info at least 28.
  if (n_kv > c.left() / 13) c.fail("metadata count " + std::to_string(n_kv) + " is more than the file can hold");
  if (n_tensors > c.left() / 28) c.fail("tensor count " + std::to_string(n_tensors) + " is more than the file can hold");

  kv_.reserve(size_t(n_kv));
  for (uint64_t k = 0; k < n_kv; k++) {
    std::string key = c.read_string("a key");
    const uint32_t t = c.read<uint32_t>("a value type");
    if (!known(t)) c.fail("key '" + key + "': unknown value type " + std::to_string(t));
    Value v = read_value(c, ValueType(t), 0, key);
    if (kv_index_.count(key)) c.fail("duplicate key '" + key + "'");
    kv_index_[key] = kv_.size();
    kv_.emplace_back(std::move(key), std::move(v));
  }
  if (const Value* a = find("general.alignment")) {
    if (a->type != ValueType::U32 || a->u == 0 || (a->u & (a->u - 1)) != 0) {
      c.fail("general.alignment must be a u32 power of two");
    }
    alignment_ = size_t(a->u);
  }

  tensors_.reserve(size_t(n_tensors));
  for (uint64_t k = 0; k < n_tensors; k++) {
    TensorInfo ti;
    ti.name = c.read_string("a tensor name");
    const uint32_t nd = c.read<uint32_t>("a tensor's dimension count");
    if (nd < 1 || nd > 4) c.fail("tensor '" + ti.name + "': " + std::to_string(nd) + " dimensions (1 to 4 allowed)");
    ti.n_dims = int(nd);
    int64_t total = 1;
    for (uint32_t d = 0; d < nd; d++) {
      const uint64_t v = c.read<uint64_t>("a tensor dimension");
      // An empty dimension makes a tensor of nothing, which no model has; it
      // would also let the other dimensions grow past any product check.
      if (v == 0) c.fail("tensor '" + ti.name + "': dimension " + std::to_string(d) + " is 0");
      if (v > uint64_t(INT64_MAX) || total > (int64_t(1) << 50) / int64_t(v)) {
        c.fail("tensor '" + ti.name + "': dimensions overflow");
      }
      ti.ne[d] = int64_t(v);
      total *= int64_t(v);
    }
    const uint32_t t = c.read<uint32_t>("a tensor type");
    if (!ggml::type_known(t)) {
      c.fail("tensor '" + ti.name + "': unknown type " + std::to_string(t));
    }
    ti.type = ggml::Type(t);
    const int64_t bs = ggml::block_size(ti.type);
    if (ti.ne[0] % bs != 0) {
      c.fail("tensor '" + ti.name + "': row length " + std::to_string(ti.ne[0]) + " is not a multiple of " +
             ggml::type_name(ti.type) + "'s block size");
    }
    ti.nbytes = size_t(total / bs) * ggml::type_size(ti.type);
    ti.offset = c.read<uint64_t>("a tensor offset");
    if (ti.offset % alignment_ != 0) {
      c.fail("tensor '" + ti.name + "': data offset " + std::to_string(ti.offset) + " is not aligned to " +
             std::to_string(alignment_));
    }
    if (tensor_index_.count(ti.name)) c.fail("duplicate tensor name '" + ti.name + "'");
    tensor_index_[ti.name] = tensors_.size();
    tensors_.push_back(std::move(ti));
  }

  // The data section starts at the next multiple of the alignment.
  const size_t data_start = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  data_start_ = data_start;
  const size_t data_size = data_start <= size_ ? size_ - data_start : 0;
  std::vector<std::pair<uint64_t, const TensorInfo*>> spans;
  for (TensorInfo& ti : tensors_) {
    if (ti.offset > data_size || ti.nbytes > data_size - ti.offset) {
      throw Error(path_ + ": tensor '" + ti.name + "' (" + std::to_string(ti.nbytes) + " bytes at offset " +
                  std::to_string(ti.offset) + ") lies outside the file's " + std::to_string(data_size) +
                  "-byte data section");
    }
    ti.data = map_ + data_start + ti.offset;
    spans.emplace_back(ti.offset, &ti);
  }
  std::sort(spans.begin(), spans.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t k = 1; k < spans.size(); k++) {
    const TensorInfo& prev = *spans[k - 1].second;
    if (prev.offset + prev.nbytes > spans[k].first) {
      throw Error(path_ + ": tensors '" + prev.name + "' and '" + spans[k].second->name + "' overlap");
    }
  }
}

const Value* File::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const TensorInfo* File::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
[[noreturn]] void key_error(const std::string& path, const std::string& key, const Value* v, const char* want) {
  if (!v) throw Error(path + ": missing key '" + key + "'");
  throw Error(path + ": key '" + key + "' is a " + type_name(v->type) + ", expected " + want);
}
}  // namespace

uint64_t File::get_uint(const std::string& key) const {
  const Value* v = find(key);
  if (!v || !is_uint(v->type)) key_error(path_, key, v, "an unsigned integer");
  return v->u;
}
int64_t File::get_int(const std::string& key) const {
  const Value* v = find(key);
  if (v && is_int(v->type)) return v->i;
  if (v && is_uint(v->type) && v->u <= uint64_t(INT64_MAX)) return int64_t(v->u);
  key_error(path_, key, v, "an integer");
}
double File::get_float(const std::string& key) const {
  const Value* v = find(key);
  if (!v || (v->type != ValueType::F32 && v->type != ValueType::F64)) key_error(path_, key, v, "a float");
  return v->f;
}
const std::string& File::get_string(const std::string& key) const {
  const Value* v = find(key);
  if (!v || v->type != ValueType::STRING) key_error(path_, key, v, "a string");
  return v->s;
}
const Value& File::get_array(const std::string& key, ValueType elem) const {
  const Value* v = find(key);
  if (!v || v->type != ValueType::ARRAY) key_error(path_, key, v, "an array");
  if (v->elem != elem) {
    throw Error(path_ + ": key '" + key + "' is an array of " + type_name(v->elem) + ", expected " + type_name(elem));
  }
  return *v;
}

// ---- writer -------------------------------------------------------------------

void Writer::set(const std::string& key, Value v) {
  for (auto& kv : kv_) {
    if (kv.first == key) { kv.second = std::move(v); return; }
  }
  kv_.emplace_back(key, std::move(v));
}

void Writer::add_tensor(const std::string& name, ggml::Type type, const int64_t* ne, int n_dims, const void* data) {
  if (n_dims < 1 || n_dims > 4) throw Error("gguf writer: tensor '" + name + "' has " + std::to_string(n_dims) + " dimensions");
  for (const TensorInfo& t : tensors_) {
    if (t.name == name) throw Error("gguf writer: duplicate tensor name '" + name + "'");
  }
  TensorInfo ti;
  ti.name = name;
  ti.type = type;
  ti.n_dims = n_dims;
  int64_t total = 1;
  for (int d = 0; d < n_dims; d++) {
    if (ne[d] < 0) throw Error("gguf writer: tensor '" + name + "' has a negative dimension");
    ti.ne[d] = ne[d];
    total *= ne[d];
  }
  if (!ggml::type_known(uint32_t(type)))
    throw Error("gguf writer: tensor '" + name + "' has type " + ggml::type_name(type) + ", which is not a GGUF type");
  ti.nbytes = ggml::row_size(type, total);  // throws for a partial block
  if (ne[0] % ggml::block_size(type) != 0) throw Error("gguf writer: tensor '" + name + "': row not whole blocks");
  ti.data = data;
  tensors_.push_back(std::move(ti));
}

namespace {
class Out {
 public:
  explicit Out(std::FILE* f) : f_(f) {}
  void bytes(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) ok_ = false;
    pos_ += n;
  }
  template <class T> void put(T v) { bytes(&v, sizeof(T)); }
  void str(const std::string& s) { put<uint64_t>(s.size()); bytes(s.data(), s.size()); }
  void pad(size_t align) {
    static const char zeros[64] = {};
    while (pos_ % align) bytes(zeros, std::min<size_t>(align - pos_ % align, sizeof(zeros)));
  }
  void value(const Value& v) {
    switch (v.type) {
      case ValueType::U8: put<uint8_t>(uint8_t(v.u)); break;
      case ValueType::U16: put<uint16_t>(uint16_t(v.u)); break;
      case ValueType::U32: put<uint32_t>(uint32_t(v.u)); break;
      case ValueType::U64: put<uint64_t>(v.u); break;
      case ValueType::I8: put<int8_t>(int8_t(v.i)); break;
      case ValueType::I16: put<int16_t>(int16_t(v.i)); break;
      case ValueType::I32: put<int32_t>(int32_t(v.i)); break;
      case ValueType::I64: put<int64_t>(v.i); break;
      case ValueType::F32: put<float>(float(v.f)); break;
      case ValueType::F64: put<double>(v.f); break;
      case ValueType::BOOL: put<uint8_t>(v.u ? 1 : 0); break;
      case ValueType::STRING: str(v.s); break;
      case ValueType::ARRAY:
        put<uint32_t>(uint32_t(v.elem));
        put<uint64_t>(v.size());
        if (!v.raw.empty()) bytes(v.raw.data(), v.raw.size());
        for (const std::string& e : v.strs) str(e);
        for (const Value& e : v.arr) value(e);
        break;
    }
  }
  bool ok() const { return ok_; }
  size_t pos() const { return pos_; }

 private:
  std::FILE* f_;
  size_t pos_ = 0;
  bool ok_ = true;
};
}  // namespace

void Writer::write(const std::string& path) const {
  write(path, [this](size_t i) { return tensors_[i].data; });
}

void Writer::write(const std::string& path, const std::function<const void*(size_t)>& produce) const {
  size_t alignment = DEFAULT_ALIGNMENT;
  for (const auto& kv : kv_) {
    if (kv.first == "general.alignment") {
      if (kv.second.type != ValueType::U32 || kv.second.u == 0 || (kv.second.u & (kv.second.u - 1))) {
        throw Error(path + ": general.alignment must be a u32 power of two");
      }
      alignment = size_t(kv.second.u);
    }
  }
  OutputFile out(path);
  Out o(out.stream());
  o.put<uint32_t>(MAGIC);
  o.put<uint32_t>(VERSION);
  o.put<uint64_t>(tensors_.size());
  o.put<uint64_t>(kv_.size());
  for (const auto& kv : kv_) {
    o.str(kv.first);
    o.put<uint32_t>(uint32_t(kv.second.type));
    o.value(kv.second);
  }
  uint64_t offset = 0;
  for (const TensorInfo& t : tensors_) {
    o.str(t.name);
    o.put<uint32_t>(uint32_t(t.n_dims));
    for (int d = 0; d < t.n_dims; d++) o.put<uint64_t>(uint64_t(t.ne[d]));
    o.put<uint32_t>(uint32_t(t.type));
    o.put<uint64_t>(offset);
    offset += (t.nbytes + alignment - 1) / alignment * alignment;
  }
  o.pad(alignment);
  for (size_t i = 0; i < tensors_.size(); i++) {  // an exception discards the temporary (~OutputFile)
    const void* data = produce(i);
    if (!data && tensors_[i].nbytes) throw Error(path + ": no data for tensor '" + tensors_[i].name + "'");
    o.bytes(data, tensors_[i].nbytes);
    o.pad(alignment);
  }
  if (!o.ok()) throw Error(path + ": write failed: " + std::strerror(errno));
  out.commit();
}

}  // namespace llm::gguf
