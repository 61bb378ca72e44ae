#!/usr/bin/env python3
"""Our ./bench against llama.cpp on the same GGUF files, in one run.

For every model and test (ppN: one batch of N prompt tokens; tgN: N tokens
generated one at a time from an empty cache, or from --depth tokens), the two
engines alternate repetition by repetition, so both see the same state of
this noisy machine, and the script prints tokens/s for each and our speed as
a ratio of theirs. llama.cpp comes from the PyPI package llama-cpp-python,
which builds it from source with native flags:
    CMAKE_ARGS="-DGGML_NATIVE=ON" pip install llama-cpp-python
On CPUs with AMX (Sapphire/Granite Rapids), llama.cpp 0.3.36's AMX buffer
type crashes (segfault in libggml-cpu on the first batch of a Q4_0 or Q8_0
model, seen on a Granite Rapids VM); build it without AMX, which keeps its
AVX-512 kernels and its REPACK layouts:
    CMAKE_ARGS="-DGGML_NATIVE=ON -DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' \
      -DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'" pip install llama-cpp-python
Usage:
    scripts/bench_vs_llamacpp.py -m models/bench/tinyllama-q4_0.gguf [-m ...] [-p 128] [-n 32] [-d 0] [-t 2] [-r 3]
    scripts/bench_vs_llamacpp.py -m ... --tests pp128,pp512,tg32,tg32@d512 -t 1,2
    scripts/bench_vs_llamacpp.py --against /tmp/before -m ...
    scripts/bench_vs_llamacpp.py -m ... --busy 0,1,2 -t 1,2   # other processes spinning meanwhile
(--tests names each test with its own depth; -t takes a list of thread counts.
--against DIR compares with another build of ours instead of llama.cpp: DIR
is a checkout whose `make tools` has run, e.g. `git worktree add /tmp/before
HEAD~1`: before and after a change, alternating, in one sitting.)
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ours(model, test, n, depth, threads, root=ROOT):
    args = [os.path.join(root, "bench"), "-m", model, "-t", str(threads), "-r", "1", "-o", "json", "--no-bandwidth",
            "-d", str(depth)]
    args += ["-p", str(n), "-n", "0"] if test == "pp" else ["-p", "0", "-n", str(n)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["tokens_per_s"]


class OtherBuild:
    def __init__(self, root, model, threads):
        self.root, self.model, self.threads = root, model, threads

    def run(self, test, n, depth):
        return ours(self.model, test, n, depth, self.threads, self.root)


class Theirs:
    def __init__(self, model, threads, n_ctx, n_batch):
        from llama_cpp import Llama
        self.llm = Llama(model_path=model, n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch, n_threads=threads,
                         n_threads_batch=threads, verbose=False, logits_all=False)
        self.n_vocab = self.llm.n_vocab()

    def run(self, test, n, depth):
        rnd = random.Random(1)
        self.llm.reset()
        self.llm._ctx.kv_cache_clear()
        if depth:
            self.llm.eval([rnd.randrange(3, self.n_vocab) for _ in range(depth)])
        toks = [rnd.randrange(3, self.n_vocab) for _ in range(n)]
        t0 = time.perf_counter()
        if test == "pp":
            self.llm.eval(toks)
        else:
            for t in toks:
                self.llm.eval([t])
        return n / (time.perf_counter() - t0)


def parse_tests(spec):
    tests = []
    for item in spec.split(","):
        name, _, depth = item.strip().partition("@d")
        kind, n = name[:2], name[2:]
        if kind not in ("pp", "tg") or not n.isdigit() or (depth and not depth.isdigit()):
            sys.exit(f"bench_vs_llamacpp: bad test '{item}' (ppN, tgN, optionally @dD)")
        tests.append((kind, int(n), int(depth or 0)))
    return tests


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", action="append", required=True)
    ap.add_argument("-p", type=int, default=128)
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("-d", "--depth", type=int, default=0)
    ap.add_argument("--tests", help="comma-separated tests, e.g. pp128,pp512,tg32,tg32@d512 (overrides -p/-n/-d)")
    ap.add_argument("-t", "--threads", default="2", help="thread count, or a comma-separated list")
    ap.add_argument("-r", "--reps", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    ap.add_argument("--against", metavar="DIR", help="another build of ours (DIR/bench) instead of llama.cpp")
    ap.add_argument("--busy", default="0", help="other processes spinning during the runs (a busy machine), "
                    "or a comma-separated list of counts, e.g. 0,1,2")
    a = ap.parse_args()
    if not os.path.exists(os.path.join(ROOT, "bench")):
        sys.exit("bench_vs_llamacpp: build first (make)")
    tests = parse_tests(a.tests) if a.tests else [t for t in (("pp", a.p, a.depth), ("tg", a.n, a.depth)) if t[1] > 0]
    threads = [int(x) for x in str(a.threads).split(",")]
    busy_list = [int(x) for x in str(a.busy).split(",")]
    if not a.json:
        print(f"{a.reps} alternating repetitions\n")
        other = f"{a.against}" if a.against else "llama.cpp"
        print(f"| model | test | busy | threads | ours t/s | {other} t/s | ratio (ours / {other}) |")
        print("|---|---|---|---|---|---|---|")
    for model, busy, nt in [(m, b, t) for m in a.model for b in busy_list for t in threads]:
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            n_ctx = max(d + n for _, n, d in tests) + 16
            n_batch = max([n for k, n, _ in tests if k == "pp"] + [1])
            theirs = OtherBuild(a.against, model, nt) if a.against else Theirs(model, nt, n_ctx, n_batch)
            for test, n, depth in tests:
                theirs.run(test, n, depth)  # warm-up
                ours(model, test, n, depth, nt)
                o, t = [], []
                for _ in range(a.reps):
                    o.append(ours(model, test, n, depth, nt))
                    t.append(theirs.run(test, n, depth))
                mo, mt = statistics.mean(o), statistics.mean(t)
                so = statistics.stdev(o) if len(o) > 1 else 0
                st = statistics.stdev(t) if len(t) > 1 else 0
                name = f"{test}{n}" + (f"@d{depth}" if depth else "")
                ratios = [x / y for x, y in zip(o, t)]
                if a.json:
                    print(json.dumps({"model": os.path.basename(model), "test": name, "busy": busy, "threads": nt,
                                      "ours": o, "llamacpp": t, "ratio_mean": mo / mt,
                                      "ratio_min": min(ratios), "ratio_max": max(ratios)}))
                else:
                    print(f"| {os.path.basename(model)} | {name} | {busy} | {nt} | {mo:.2f} ± {so:.2f} | {mt:.2f} ± {st:.2f} | "
                          f"{mo / mt:.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |")
                sys.stdout.flush()
            del theirs
        finally:
            for p in spinners:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()
