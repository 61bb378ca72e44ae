#!/usr/bin/env python3
"""Do our adapters load in PEFT and llama.cpp, with the same effect?

Takes the tiny LLaMA fixture (tests/data/hf/llama_st) and its PEFT adapter
(tests/data/lora/llama), passes the adapter through ./finetune-lora (one step
at learning rate 0: unchanged) to get our GGUF (-o) and PEFT (--peft-out)
outputs, then
  - PEFT: PeftModel.from_pretrained with our directory gives the original
    adapter's logits (max difference printed);
  - llama.cpp (llama-cpp-python): the base with our GGUF adapter against our
    ./main --lora logits, beside the base's own difference and the
    adapter's effect.
Needs: make tools; pip install torch transformers peft llama-cpp-python numpy.
"""
import os
import subprocess
import tempfile

import numpy as np
import torch
import transformers as T
from llama_cpp import Llama
from peft import PeftModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HF = os.path.join(ROOT, "tests/data/hf/llama_st")
ADAPTER = os.path.join(ROOT, "tests/data/lora/llama")
IDS = [5, 17, 99, 230, 11, 42]


def run(*args):
    subprocess.run([os.path.join(ROOT, args[0]), *args[1:]], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def main():
    d = tempfile.mkdtemp()
    base = os.path.join(d, "base.gguf")
    text = os.path.join(d, "t.txt")
    with open(text, "w") as f:
        f.write("the quick brown fox jumps over the lazy dog\n" * 50)
    run("convert", HF, "-o", base, "--outtype", "f32")
    run("finetune-lora", "-m", base, "--train", text, "--ctx", "32", "--batch", "2", "--steps", "1", "--lr", "0",
        "--adapter-in", ADAPTER, "-o", os.path.join(d, "a.gguf"), "--peft-out", os.path.join(d, "peft"))
    ids = torch.tensor([IDS])
    load = lambda: T.AutoModelForCausalLM.from_pretrained(HF, dtype=torch.float32)
    with torch.no_grad():
        want = PeftModel.from_pretrained(load(), ADAPTER)(ids).logits
        got = PeftModel.from_pretrained(load(), os.path.join(d, "peft"))(ids).logits
    print(f"PEFT loads --peft-out: max logit difference from the original adapter {float((want - got).abs().max()):.3g}")
    ids_s = ",".join(map(str, IDS))
    run("main", "-m", base, "--ids", ids_s, "-n", "0", "--dump-logits", os.path.join(d, "base.npy"))
    run("main", "-m", base, "--lora", os.path.join(d, "a.gguf"), "--ids", ids_s, "-n", "0", "--dump-logits",
        os.path.join(d, "ours.npy"))
    res = {}
    for lp in (None, os.path.join(d, "a.gguf")):
        m = Llama(model_path=base, lora_path=lp, n_ctx=64, logits_all=True, verbose=False)
        m.eval(IDS)
        res[lp] = np.array(m.scores[:len(IDS)])
    ours, ob = np.load(os.path.join(d, "ours.npy")), np.load(os.path.join(d, "base.npy"))
    print(f"llama.cpp loads -o: logits with the adapter differ from ours by {np.abs(res[os.path.join(d, 'a.gguf')] - ours).max():.3g} "
          f"(the base alone by {np.abs(res[None] - ob).max():.3g}; the adapter moves them by {np.abs(ours - ob).max():.3g})")


if __name__ == "__main__":
    main()
