#!/usr/bin/env python3
"""Our ./bench against llama.cpp on the same GGUF files, in one run.

For every model and test (ppN: one batch of N prompt tokens; tgN: N tokens
generated one at a time from an empty cache, or from --depth tokens), the two
engines alternate repetition by repetition, so both see the same state of
this noisy machine, and the script prints tokens/s for each and our speed as
a ratio of theirs. llama.cpp comes from the PyPI package llama-cpp-python,
which builds it from source with native flags:
    CMAKE_ARGS="-DGGML_NATIVE=ON" pip install llama-cpp-python
Usage:
    scripts/bench_vs_llamacpp.py -m models/bench/tinyllama-q4_0.gguf [-m ...] [-p 128] [-n 32] [-t 2] [-r 3] [--md]
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


def ours(model, test, n, depth, threads):
    args = [os.path.join(ROOT, "bench"), "-m", model, "-t", str(threads), "-r", "1", "-o", "json", "--no-bandwidth",
            "-d", str(depth)]
    args += ["-p", str(n), "-n", "0"] if test == "pp" else ["-p", "0", "-n", str(n)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["tokens_per_s"]


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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", action="append", required=True)
    ap.add_argument("-p", type=int, default=128)
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("-d", "--depth", type=int, default=0)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--reps", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    a = ap.parse_args()
    if not os.path.exists(os.path.join(ROOT, "bench")):
        sys.exit("bench_vs_llamacpp: build first (make)")
    if not a.json:
        print(f"threads {a.threads}, {a.reps} alternating repetitions, depth {a.depth}\n")
        print("| model | test | ours t/s | llama.cpp t/s | ratio (ours / llama.cpp) |")
        print("|---|---|---|---|---|")
    for model in a.model:
        tests = [("pp", a.p), ("tg", a.n)]
        theirs = Theirs(model, a.threads, a.depth + max(a.p, a.n) + 16, max(a.p, 1))
        for test, n in tests:
            if n <= 0:
                continue
            theirs.run(test, n, a.depth)  # warm-up
            ours(model, test, n, a.depth, a.threads)
            o, t = [], []
            for _ in range(a.reps):
                o.append(ours(model, test, n, a.depth, a.threads))
                t.append(theirs.run(test, n, a.depth))
            mo, mt = statistics.mean(o), statistics.mean(t)
            so = statistics.stdev(o) if len(o) > 1 else 0
            st = statistics.stdev(t) if len(t) > 1 else 0
            name = f"{test}{n}" + (f"@d{a.depth}" if a.depth else "")
            ratios = [x / y for x, y in zip(o, t)]
            if a.json:
                print(json.dumps({"model": os.path.basename(model), "test": name, "threads": a.threads,
                                  "ours": o, "llamacpp": t, "ratio_mean": mo / mt,
                                  "ratio_min": min(ratios), "ratio_max": max(ratios)}))
            else:
                print(f"| {os.path.basename(model)} | {name} | {mo:.2f} ± {so:.2f} | {mt:.2f} ± {st:.2f} | "
                      f"{mo / mt:.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |")
            sys.stdout.flush()
        del theirs


if __name__ == "__main__":
    main()
