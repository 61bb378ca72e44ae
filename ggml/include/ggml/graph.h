#pragma once
// A static compute graph: built once from its outputs, memory-planned, then
// executed any number of times with new input data.
#include <cstddef>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "tensor.h"

namespace ggml {

// A field of a tensor that a graph parameter sets (Graph::bind).
enum class Field : uint8_t { NE0, NE1, NE2, NE3, VIEW_OFFS, OP_PARAM0, OP_PARAM1, OP_PARAM2, OP_PARAM3 };

class Graph {
 public:
  // Adds t and every tensor it depends on, in dependency order, and marks t
  // as an output (its memory is never reused).
  void expand(Tensor* t);
  const std::vector<Tensor*>& nodes() const { return nodes_; }  // ops, in execution order
  const std::vector<Tensor*>& leafs() const { return leafs_; }  // tensors with op NONE
  std::string dump() const;  // one line per node: index, op, shape, sources
  // Orders the nodes again from the outputs, in the order they were
  // expanded, after a pass (a backend's fusion) rewrote some in place: nodes
  // nothing reads any more drop out.
  void rebuild();
  // Orders s (whose sources must all be leaves or t itself) right after t
  // whenever t is added: a copy of t that outlives it (stored in bf16 for the
  // backward pass, say) is then made while t is fresh, and t can be freed.
  void follow(Tensor* t, Tensor* s) { followers_.emplace(t, s); }

  // Parameters: values set before a compute (a cache position) that fields
  // of the graph's tensors follow, so that one graph, built and planned for
  // the largest value, serves every smaller one without being rebuilt.
  // bind() declares field = value * scale + bias; the field's value at that
  // moment is its upper bound (what was planned), and set_param() refuses a
  // value past any bound. A result whose shape changes gets contiguous
  // strides again; views keep theirs.
  int new_param(const std::string& name);
  void bind(int param, Tensor* t, Field f, int64_t scale, int64_t bias);
  void set_param(int param, int64_t value);
  int64_t param(int id) const;

 private:
  void visit(Tensor* t);
  std::vector<Tensor*> nodes_, leafs_, roots_;
  std::unordered_set<const Tensor*> seen_;
  std::unordered_multimap<const Tensor*, Tensor*> followers_;
  struct Binding {
    int param;
    Tensor* t;
    Field f;
    int64_t scale, bias, max;
  };
  std::vector<std::string> param_names_;
  std::vector<int64_t> param_values_;
  std::vector<Binding> bindings_;
};

// Assigns memory to every op result of a graph from one buffer it owns. With
// reuse, a result's block returns to the free list after its last reader has
// run (views count as readers of their root), so intermediates share memory.
class Backend;
class Buffer;

class GraphAllocator {
 public:
  enum class Mode { Reuse, NoReuse };
  // The buffer comes from the backend that computes the graph (host memory
  // when none is given).
  explicit GraphAllocator(Mode mode = Mode::Reuse, Backend* backend = nullptr);
  ~GraphAllocator();
  void set_backend(Backend* b) { backend_ = b; }
  void allocate(Graph& g);
  size_t buffer_size() const { return size_; }      // planned bytes
  size_t unplanned_size() const { return unplanned_; }  // bytes without reuse

 private:
  Mode mode_;
  Backend* backend_;
  std::unique_ptr<Buffer> buf_;
  size_t size_ = 0, unplanned_ = 0, capacity_ = 0;
};

// GGML_PROFILE=1 in the environment: per-op wall time of every compute,
// summed by kind and printed to stderr at exit. Callers may add their own
// named phases.
bool profiling();
void profile_add_named(const std::string& name, double seconds);


}  // namespace ggml
