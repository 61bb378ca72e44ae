// A digest of a model's logits, to show that a change to the graph builders,
// the planner or the executor leaves every float as it was (the backends
// issue's "bit for bit, before and after"): for each load mode (the file map
// as stored, and the default: copied, q/k/v fused, rearranged) and thread
// count, a prompt in batches (the GEMM paths), then the same ids one at a time
// through the reused token graph (matrix-vector kernels, a span short enough
// to rebuild it), then greedy tokens. Prints one FNV-1a hash per run.
//   logits_digest MODEL.gguf...
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "llm/model.h"
#include "llm/session.h"

namespace {

struct Fnv {
  uint64_t h = 1469598103934665603ull;
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  }
};

uint64_t run(const llm::Model& m, int threads, int64_t n_batch) {
  llm::SessionParams sp;
  sp.n_ctx = 96;
  sp.n_threads = threads;
  sp.n_batch = n_batch;
  sp.token_graph_span = 20;
  const int64_t V = m.hp.n_vocab;
  std::vector<int32_t> ids;
  for (int i = 0; i < 40; i++) ids.push_back(int32_t((int64_t(i) * 7919 + 13) % V));
  Fnv f;
  llm::Session a(m, sp);
  a.eval(ids, true);
  f.add(a.all_logits().data(), a.all_logits().size() * sizeof(float));
  llm::Session b(m, sp);
  for (int32_t id : ids) {
    b.eval(&id, 1);
    f.add(b.logits(), size_t(V) * sizeof(float));
  }
  for (int i = 0; i < 24; i++) {
    const float* l = b.logits();
    int32_t best = 0;
    for (int64_t j = 1; j < V; j++) if (l[j] > l[best]) best = int32_t(j);
    b.eval(&best, 1);
    f.add(b.logits(), size_t(V) * sizeof(float));
  }
  return f.h;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: logits_digest MODEL.gguf...\n");
    return 2;
  }
  try {
    for (int i = 1; i < argc; i++) {
      for (bool stored : {true, false}) {
        llm::LoadOptions o;
        if (stored) o.copy_weights = false, o.repack = false;
        auto m = llm::Model::load(argv[i], o);
        for (int threads : {1, 2}) {
          for (int64_t nb : {int64_t(512), int64_t(7)}) {
            std::printf("%016llx  %s %s t%d b%lld\n", (unsigned long long)run(*m, threads, nb), argv[i],
                        stored ? "stored" : "default", threads, (long long)nb);
            std::fflush(stdout);
          }
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "logits_digest: %s\n", e.what());
    return 1;
  }
  return 0;
}
