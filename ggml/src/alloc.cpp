// Memory planning: a best-fit free list over one virtual buffer, walked in
// execution order. The high-water mark becomes the buffer size.
#include <algorithm>
#include <cstdlib>
#include <unordered_map>

#include "ggml/backend.h"
#include "ggml/graph.h"

namespace ggml {

namespace {
struct Block { size_t offset, size; };

class FreeList {
 public:
  size_t alloc(size_t size) {
    size_t best = blocks_.size();
    for (size_t i = 0; i < blocks_.size(); i++) {
      if (blocks_[i].size >= size && (best == blocks_.size() || blocks_[i].size < blocks_[best].size)) best = i;
    }
    if (best < blocks_.size()) {
      const size_t off = blocks_[best].offset;
      blocks_[best].offset += size;
      blocks_[best].size -= size;
      if (blocks_[best].size == 0) blocks_.erase(blocks_.begin() + long(best));
      return off;
    }
    // Grow at the top, absorbing a free block that already ends there.
    if (!blocks_.empty() && blocks_.back().offset + blocks_.back().size == top_) {
      const size_t off = blocks_.back().offset;
      blocks_.pop_back();
      top_ = off + size;
      high_ = std::max(high_, top_);
      return off;
    }
    const size_t off = top_;
    top_ += size;
    high_ = std::max(high_, top_);
    return off;
  }
  void free(size_t offset, size_t size) {
    auto it = std::lower_bound(blocks_.begin(), blocks_.end(), offset,
                               [](const Block& b, size_t off) { return b.offset < off; });
    it = blocks_.insert(it, Block{offset, size});
    // Merge with the next and previous neighbours when they touch.
    auto next = it + 1;
    if (next != blocks_.end() && it->offset + it->size == next->offset) {
      it->size += next->size;
      blocks_.erase(next);
    }
    if (it != blocks_.begin()) {
      auto prev = it - 1;
      if (prev->offset + prev->size == it->offset) {
        prev->size += it->size;
        blocks_.erase(it);
      }
    }
  }
  size_t high_water() const { return high_; }

 private:
  std::vector<Block> blocks_;  // sorted by offset
  size_t top_ = 0, high_ = 0;
};

size_t aligned(size_t n) { return (std::max<size_t>(n, 1) + TENSOR_ALIGN - 1) / TENSOR_ALIGN * TENSOR_ALIGN; }
Tensor* root_of(Tensor* t) { return t->view_src ? t->view_src : t; }
}  // namespace

GraphAllocator::GraphAllocator(Mode mode, Backend* backend) : mode_(mode), backend_(backend) {}
GraphAllocator::~GraphAllocator() = default;

void GraphAllocator::allocate(Graph& g) {
  const auto& nodes = g.nodes();
  // A result is planned when it is not a view and nobody gave it memory.
  std::unordered_map<const Tensor*, int> readers;
  std::unordered_map<const Tensor*, size_t> offset;
  readers.reserve(2 * nodes.size());  // no rehashing: planning runs once a token
  offset.reserve(nodes.size());
  auto planned = [&](const Tensor* t) { return offset.count(t) != 0; };
  for (Tensor* n : nodes) {
    if (op_is_view(n->op)) continue;  // a view reads nothing itself; its readers read its root
    for (Tensor* s : n->src) if (s) readers[root_of(s)]++;
  }
  for (Tensor* n : nodes) if (n->flags & FLAG_OUTPUT) root_of(n)->flags |= FLAG_OUTPUT;

  // Memory given by an earlier allocate() call is ours to plan again.
  const char* old_lo = buf_ ? static_cast<const char*>(buf_->base()) : nullptr;
  auto ours = [&](const Tensor* t) {
    const char* p = static_cast<const char*>(t->data);
    return p == nullptr || (old_lo && p >= old_lo && p < old_lo + capacity_);
  };
  FreeList fl;
  unplanned_ = 0;
  for (Tensor* n : nodes) {
    const bool owns = n->view_src == nullptr && ours(n);
    if (owns) {
      const size_t size = aligned(n->nbytes());
      unplanned_ += size;
      offset[n] = fl.alloc(size);
    }
    if (mode_ == Mode::NoReuse) continue;
    auto release = [&](Tensor* r) {
      if (planned(r) && !(r->flags & FLAG_OUTPUT)) fl.free(offset[r], aligned(r->nbytes()));
    };
    if (!op_is_view(n->op)) {
      for (Tensor* s : n->src) {
        if (!s) continue;
        Tensor* r = root_of(s);
        if (--readers[r] == 0) release(r);
      }
    }
    if (owns && readers[n] == 0) release(n);  // nobody reads it: free right away
  }

  size_ = mode_ == Mode::NoReuse ? unplanned_ : fl.high_water();
  if (size_ > capacity_ || !buf_) {
    buf_.reset();
    buf_ = backend_ ? backend_->alloc_graph(aligned(size_)) : host_buffer(aligned(size_));
    capacity_ = aligned(size_);
  }
  char* base = static_cast<char*>(buf_->base());
  for (auto& [t, off] : offset) const_cast<Tensor*>(t)->data = base + off;
}

}  // namespace ggml
