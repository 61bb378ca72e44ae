// PyTorch checkpoints (torch.save's zip archive): the central directory gives
// data.pkl and the storages (stored, not compressed); data.pkl is run on a
// pickle machine that knows only what a state dict needs. Any other global or
// call is refused, so nothing in the file can execute.
#include <map>
#include <memory>
#include <unordered_map>

#include "llm/checkpoint.h"
#include "llm/error.h"
#include "mapped_file.h"

namespace llm {

namespace {

uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] | p[1] << 8); }
uint32_t rd32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }
uint64_t rd64(const uint8_t* p) { return uint64_t(rd32(p)) | uint64_t(rd32(p + 4)) << 32; }

struct ZipEntry {
  uint64_t offset = 0;  // of the data in the file
  uint64_t size = 0;
};

std::map<std::string, ZipEntry> read_zip(const MappedFile& f) {
  const uint8_t* d = f.data();
  const size_t n = f.size();
  auto fail = [&](const std::string& why) -> Error { return Error(f.path() + ": not a PyTorch zip checkpoint (" + why + ")"); };
  if (n < 22) throw fail("too short");
  // End of central directory: the last 22+ bytes, a comment of up to 64 KiB after it.
  size_t eocd = SIZE_MAX;
  for (size_t i = n - 22 + 1; i-- > 0 && n - i <= 22 + 65535;) {
    if (rd32(d + i) == 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd == SIZE_MAX) throw fail("no end-of-central-directory record");
  uint64_t count = rd16(d + eocd + 10), cd_size = rd32(d + eocd + 12), cd_off = rd32(d + eocd + 16);
  if (count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_off == 0xFFFFFFFF) {  // zip64
    if (eocd < 20 || rd32(d + eocd - 20) != 0x07064b50) throw fail("zip64 locator missing");
    uint64_t z = rd64(d + eocd - 20 + 8);
    if (n < 56 || z > n - 56 || rd32(d + z) != 0x06064b50) throw fail("zip64 record out of range");
    count = rd64(d + z + 32);
    cd_size = rd64(d + z + 40);
    cd_off = rd64(d + z + 48);
  }
  if (cd_off > n || cd_size > n - cd_off) throw fail("central directory out of range");
  if (count > cd_size / 46) throw fail("entry count does not fit the central directory");
  std::map<std::string, ZipEntry> out;
  size_t p = cd_off;
  const size_t end = cd_off + cd_size;
  for (uint64_t k = 0; k < count; k++) {
    if (end - p < 46 || rd32(d + p) != 0x02014b50) throw fail("bad central directory entry");
    uint16_t method = rd16(d + p + 10);
    uint64_t csize = rd32(d + p + 20), usize = rd32(d + p + 24);
    size_t nlen = rd16(d + p + 28), xlen = rd16(d + p + 30), clen = rd16(d + p + 32);
    uint64_t local = rd32(d + p + 42);
    if (end - p - 46 < nlen + xlen + clen) throw fail("central directory entry runs past its end");
    std::string name((const char*)d + p + 46, nlen);
    // zip64 extra field: the 0xFFFFFFFF fields follow in a fixed order.
    const uint8_t* x = d + p + 46 + nlen;
    for (size_t q = 0; q + 4 <= xlen;) {
      uint16_t id = rd16(x + q), len = rd16(x + q + 2);
      if (q + 4 + len > xlen) throw fail("bad extra field");
      if (id == 0x0001) {
        const uint8_t* z = x + q + 4;
        size_t zl = len;
        auto take = [&](uint64_t& v) {
          if (v != 0xFFFFFFFF) return;
          if (zl < 8) throw fail("short zip64 field");
          v = rd64(z);
          z += 8;
          zl -= 8;
        };
        take(usize);
        take(csize);
        take(local);
      }
      q += 4 + len;
    }
    p += 46 + nlen + xlen + clen;
    if (method != 0) throw fail("entry " + name + " is compressed; torch.save stores entries uncompressed");
    if (csize != usize) throw fail("entry " + name + " has differing sizes");
    if (local > n - 30 || rd32(d + local) != 0x04034b50) throw fail("local header of " + name + " out of range");
    uint64_t data = local + 30 + rd16(d + local + 26) + rd16(d + local + 28);
    if (data > n || usize > n - data) throw fail("entry " + name + " runs past the end of the file");
    out[name] = {data, usize};
  }
  return out;
}

// ---- the pickle machine ---------------------------------------------------------

// Objects live in the unpickler's arena and refer to each other by plain
// pointers: a list that contains itself is no leak, and a million-deep
// nesting is freed one object at a time, not by recursion.
struct Obj;
using ObjP = Obj*;
struct Storage {
  DType dtype;
  std::string key;
  int64_t numel;
};
struct TensorRef {
  std::shared_ptr<Storage> storage;
  int64_t offset;
  std::vector<int64_t> size, stride;
};
struct Obj {
  enum Kind { None, Bool, Int, Float, Str, Tuple, List, Dict, Global, StorageK, TensorK, Mark } kind = None;
  int64_t i = 0;
  double f = 0;
  std::string s;  // Str, Global ("module.name")
  std::vector<ObjP> items;                      // Tuple, List
  std::vector<std::pair<ObjP, ObjP>> dict;      // Dict
  std::shared_ptr<Storage> storage;
  std::shared_ptr<TensorRef> tensor;
};

const std::map<std::string, DType>& storage_types() {
  static const std::map<std::string, DType> m = {
      {"torch.FloatStorage", DType::F32},  {"torch.HalfStorage", DType::F16}, {"torch.BFloat16Storage", DType::BF16},
      {"torch.DoubleStorage", DType::F64}, {"torch.LongStorage", DType::I64}, {"torch.IntStorage", DType::I32},
      {"torch.ShortStorage", DType::I16},  {"torch.CharStorage", DType::I8},  {"torch.ByteStorage", DType::U8},
      {"torch.BoolStorage", DType::BOOL}};
  return m;
}

class Unpickler {
 public:
  // A state dict needs a few objects a tensor (the largest models: ~10^4);
  // these caps keep a small hostile pickle from costing gigabytes.
  static constexpr size_t kMaxObjects = size_t(1) << 22;
  static constexpr size_t kMaxItems = size_t(1) << 24;  // container slots, all containers together

  Unpickler(const uint8_t* p, size_t n, std::string where) : p_(p), end_(p + n), where_(std::move(where)) {}

  ObjP run() {
    for (;;) {
      uint8_t op = byte();
      switch (op) {
        case 0x80: byte(); break;              // PROTO
        case 0x95: take(8); break;             // FRAME
        case '}': push(make(Obj::Dict)); break;
        case ']': push(make(Obj::List)); break;
        case ')': push(make(Obj::Tuple)); break;
        case '(': push(make(Obj::Mark)); break;
        case 'N': push(make(Obj::None)); break;
        case 0x88: case 0x89: { auto o = make(Obj::Bool); o->i = op == 0x88; push(o); break; }
        case 'K': push_int(byte()); break;
        case 'M': { const uint8_t* b = take(2); push_int(rd16(b)); break; }
        case 'J': { const uint8_t* b = take(4); push_int((int32_t)rd32(b)); break; }
        case 0x8a: {  // LONG1: little-endian two's complement of n bytes
          size_t len = byte();
          if (len > 8) fail("integer wider than 64 bits");
          const uint8_t* b = take(len);
          uint64_t v = 0;
          for (size_t k = 0; k < len; k++) v |= uint64_t(b[k]) << (8 * k);
          if (len && len < 8 && (b[len - 1] & 0x80)) v |= ~uint64_t(0) << (8 * len);
          push_int((int64_t)v);
          break;
        }
        case 'G': {
          const uint8_t* b = take(8);
          uint64_t u = 0;
          for (int k = 0; k < 8; k++) u = u << 8 | b[k];  // big-endian
          auto o = make(Obj::Float);
          std::memcpy(&o->f, &u, 8);
          push(o);
          break;
        }
        case 'X': { size_t len = rd32(take(4)); push_str(take(len), len); break; }
        case 0x8c: { size_t len = byte(); push_str(take(len), len); break; }
        case 'q': memo(byte()); break;
        case 'r': memo(rd32(take(4))); break;
        case 0x94: memo(memo_next_++); break;  // MEMOIZE: the next index
        case 'h': get(byte()); break;
        case 'j': get(rd32(take(4))); break;
        case 'c': {
          std::string mod = line(), name = line();
          auto o = make(Obj::Global);
          o->s = mod + "." + name;
          if (o->s != "collections.OrderedDict" && o->s != "torch._utils._rebuild_tensor_v2" &&
              o->s != "torch._utils._rebuild_parameter" && !storage_types().count(o->s))
            fail("refers to " + o->s + ", which a plain state dict does not contain; refusing it");
          push(o);
          break;
        }
        case 't': { auto o = make(Obj::Tuple); o->items = pop_mark(); count_items(o->items.size()); push(o); break; }
        case 0x85: case 0x86: case 0x87: {
          auto o = make(Obj::Tuple);
          size_t k = op - 0x84;
          if (stack_.size() < k) fail("stack underflow");
          o->items.assign(stack_.end() - k, stack_.end());
          count_items(k);
          stack_.resize(stack_.size() - k);
          push(o);
          break;
        }
        case 'Q': push(persistent(pop())); break;
        case 'R': { auto args = pop(); auto fn = pop(); push(reduce(fn, args)); break; }
        case 's': { auto v = pop(); auto k = pop(); count_items(2); dict_of(top())->dict.emplace_back(k, v); break; }
        case 'u': {
          auto items = pop_mark();
          if (items.size() % 2) fail("odd SETITEMS");
          count_items(items.size());
          auto d = dict_of(top());
          for (size_t k = 0; k < items.size(); k += 2) d->dict.emplace_back(items[k], items[k + 1]);
          break;
        }
        case 'a': { auto v = pop(); count_items(1); list_of(top())->items.push_back(v); break; }
        case 'e': {
          auto items = pop_mark();
          count_items(items.size());
          auto l = list_of(top());
          l->items.insert(l->items.end(), items.begin(), items.end());
          break;
        }
        case 'b': pop(); break;  // BUILD: object state (OrderedDict's _metadata); not needed
        case '.': if (stack_.size() != 1) fail("stack not empty at STOP"); return stack_.back();
        default: {
          char b[8];
          std::snprintf(b, sizeof b, "0x%02x", op);
          fail(std::string("pickle opcode ") + b + " is not supported");
        }
      }
      if (++ops_ > 100'000'000) fail("too many operations");
    }
  }

 private:
  [[noreturn]] void fail(const std::string& why) const { throw Error(where_ + ": " + why); }
  ObjP make(Obj::Kind k) {
    if (arena_.size() >= kMaxObjects)
      fail("more than " + std::to_string(kMaxObjects) + " objects; a state dict has a few per tensor");
    arena_.push_back(std::make_unique<Obj>());
    arena_.back()->kind = k;
    return arena_.back().get();
  }
  void count_items(size_t n) {
    items_ += n;
    if (items_ > kMaxItems) fail("containers hold more than " + std::to_string(kMaxItems) + " items");
  }
  uint8_t byte() { return *take(1); }
  const uint8_t* take(size_t n) {
    if ((size_t)(end_ - p_) < n) fail("truncated pickle");
    const uint8_t* r = p_;
    p_ += n;
    return r;
  }
  std::string line() {
    const uint8_t* s = p_;
    while (p_ < end_ && *p_ != '\n') p_++;
    if (p_ >= end_) fail("truncated pickle");
    std::string r((const char*)s, (size_t)(p_ - s));
    p_++;
    return r;
  }
  void push(ObjP o) {
    if (stack_.size() > 100000) fail("pickle stack too deep");
    stack_.push_back(std::move(o));
  }
  void push_int(int64_t v) { auto o = make(Obj::Int); o->i = v; push(o); }
  void push_str(const uint8_t* s, size_t n) { auto o = make(Obj::Str); o->s.assign((const char*)s, n); push(o); }
  ObjP pop() {
    if (stack_.empty() || stack_.back()->kind == Obj::Mark) fail("stack underflow");
    ObjP o = stack_.back();
    stack_.pop_back();
    return o;
  }
  ObjP& top() {
    if (stack_.empty()) fail("stack underflow");
    return stack_.back();
  }
  std::vector<ObjP> pop_mark() {
    size_t m = stack_.size();
    while (m > 0 && stack_[m - 1]->kind != Obj::Mark) m--;
    if (m == 0) fail("no MARK on the stack");
    std::vector<ObjP> items(stack_.begin() + m, stack_.end());
    stack_.resize(m - 1);
    return items;
  }
  // A map, not a table indexed by the file's number (a 4-byte index would size it).
  void memo(size_t k) {
    if (memo_.size() >= kMaxObjects) fail("memo too large");
    memo_[k] = top();
  }
  void get(size_t k) {
    auto it = memo_.find(k);
    if (it == memo_.end()) fail("memo entry missing");
    push(it->second);
  }
  ObjP dict_of(const ObjP& o) { if (o->kind != Obj::Dict) fail("SETITEM on a non-dict"); return o; }
  ObjP list_of(const ObjP& o) { if (o->kind != Obj::List) fail("APPEND on a non-list"); return o; }
  static int64_t as_int(const ObjP& o, const Unpickler& u) {
    if (o->kind != Obj::Int) u.fail("expected an integer");
    return o->i;
  }
  std::vector<int64_t> ints(const ObjP& o) const {
    if (o->kind != Obj::Tuple) fail("expected a tuple of sizes");
    std::vector<int64_t> v;
    for (const auto& x : o->items) v.push_back(as_int(x, *this));
    return v;
  }
  // ('storage', StorageType, key, location, numel)
  ObjP persistent(const ObjP& pid) {
    if (pid->kind != Obj::Tuple || pid->items.size() != 5 || pid->items[0]->kind != Obj::Str ||
        pid->items[0]->s != "storage" || pid->items[1]->kind != Obj::Global || pid->items[2]->kind != Obj::Str)
      fail("persistent id is not a storage reference");
    auto it = storage_types().find(pid->items[1]->s);
    if (it == storage_types().end()) fail("storage type " + pid->items[1]->s + " is not supported");
    auto o = make(Obj::StorageK);
    o->storage = std::make_shared<Storage>(Storage{it->second, pid->items[2]->s, as_int(pid->items[4], *this)});
    return o;
  }
  ObjP reduce(const ObjP& fn, const ObjP& args) {
    if (fn->kind != Obj::Global || args->kind != Obj::Tuple) fail("REDUCE of something that is not a known function");
    if (fn->s == "collections.OrderedDict") {
      if (!args->items.empty()) fail("OrderedDict with arguments");
      return make(Obj::Dict);
    }
    if (fn->s == "torch._utils._rebuild_parameter") {
      if (args->items.empty() || args->items[0]->kind != Obj::TensorK) fail("_rebuild_parameter without a tensor");
      return args->items[0];
    }
    if (fn->s == "torch._utils._rebuild_tensor_v2") {
      const auto& a = args->items;
      if (a.size() < 4 || a[0]->kind != Obj::StorageK) fail("_rebuild_tensor_v2 with unexpected arguments");
      auto o = make(Obj::TensorK);
      o->tensor = std::make_shared<TensorRef>(TensorRef{a[0]->storage, as_int(a[1], *this), ints(a[2]), ints(a[3])});
      if (o->tensor->size.size() != o->tensor->stride.size()) fail("tensor size and stride differ in length");
      return o;
    }
    fail("calls " + fn->s + "; refusing it");
  }

  const uint8_t* p_;
  const uint8_t* end_;
  std::string where_;
  std::vector<std::unique_ptr<Obj>> arena_;  // owns every object (see Obj)
  std::vector<ObjP> stack_;
  std::unordered_map<size_t, ObjP> memo_;
  size_t memo_next_ = 0;
  size_t items_ = 0;
  uint64_t ops_ = 0;
};

}  // namespace

void Checkpoint::add_pytorch(const std::string& path) {
  auto map = std::make_unique<MappedFile>(path);
  auto entries = read_zip(*map);
  std::string pkl;
  for (const auto& [name, e] : entries) {
    if (name == "data.pkl" || (name.size() > 9 && name.compare(name.size() - 9, 9, "/data.pkl") == 0 &&
                               name.find('/') == name.size() - 9)) {
      pkl = name;
    }
  }
  if (pkl.empty()) throw Error(path + ": no data.pkl in the archive (a legacy, non-zip torch.save file is not supported)");
  const std::string prefix = pkl.substr(0, pkl.size() - 8);  // "archive/"
  const ZipEntry& pe = entries[pkl];
  Unpickler u(map->data() + pe.offset, pe.size, path + ": data.pkl");
  ObjP root = u.run();
  if (root->kind != Obj::Dict) throw Error(path + ": the pickle is not a state dict");
  for (const auto& [k, v] : root->dict) {
    if (k->kind != Obj::Str) throw Error(path + ": state dict key is not a string");
    if (v->kind != Obj::TensorK) continue;  // e.g. _metadata or integer buffers stored as Python values
    const TensorRef& t = *v->tensor;
    auto it = entries.find(prefix + "data/" + t.storage->key);
    if (it == entries.end()) throw Error(path + ": storage " + t.storage->key + " of '" + k->s + "' is missing");
    SourceTensor st;
    st.name = k->s;
    st.file = path;
    st.dtype = t.storage->dtype;
    st.shape = t.size;
    st.strides = t.stride;
    const int64_t es = (int64_t)dtype_size(st.dtype);
    const int64_t avail = (int64_t)(it->second.size / (uint64_t)es);
    // The farthest element the view touches must lie inside the storage
    // (sums and products checked: a wrapped product would pass a plain
    // comparison), and the view may not repeat elements: a stride-0 or
    // overlapping view would turn a few stored bytes into gigabytes.
    const std::string what = path + ": tensor '" + k->s + "'";
    if (t.offset < 0) throw Error(what + " has a negative storage offset");
    int64_t last = t.offset, numel = 1;
    for (size_t d = 0; d < t.size.size(); d++) {
      if (t.size[d] < 0 || t.stride[d] < 0) throw Error(what + " has a negative size or stride");
      if (__builtin_mul_overflow(numel, t.size[d], &numel)) throw Error(what + ": its size overflows");
    }
    for (size_t d = 0; d < t.size.size() && numel > 0; d++) {
      int64_t reach;
      if (__builtin_mul_overflow(t.size[d] - 1, t.stride[d], &reach) || __builtin_add_overflow(last, reach, &last))
        throw Error(what + " reaches past the end of its storage");
    }
    if (numel > 0 && last >= avail) throw Error(what + " reaches past the end of its storage");
    if (numel > avail)
      throw Error(what + " has " + std::to_string(numel) + " elements but its storage " + std::to_string(avail) +
                  ": a view that repeats elements (stride 0) is not a checkpoint tensor");
    st.base = map->data() + it->second.offset + (uint64_t)t.offset * (uint64_t)es;
    add(std::move(st));
  }
  maps_.push_back(std::move(map));
  files_.push_back(path);
}

}  // namespace llm
