#!/usr/bin/env python3
"""Reference outputs of SmolLM2-135M-Instruct from transformers, for the
real-model inference tests.

transformers loads models/SmolLM2-135M-Instruct.Q4_1.gguf itself (its GGUF
loader dequantizes every tensor to F32 with the `gguf` package and undoes the
q/k permutation), runs it as LlamaForCausalLM in F32, and we record:
  tests/data/smollm2/reference.json  prompts, their token ids, and 32 greedy tokens each
  tests/data/smollm2/logits.npy      logits of every position of the first prompt

Needs: pip install torch transformers accelerate gguf numpy, and the model
(scripts/fetch-models.sh).
"""
import json
import os

import numpy as np
import torch
import transformers as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = os.path.join(ROOT, "tests", "data", "smollm2")

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n",
    "Once upon a time, in a small village by the sea,",
    "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n",
]


def main():
    torch.manual_seed(0)
    model = T.AutoModelForCausalLM.from_pretrained(MODELS, gguf_file=NAME, dtype=torch.float32).eval()
    tok = T.AutoTokenizer.from_pretrained(MODELS, gguf_file=NAME)
    os.makedirs(OUT, exist_ok=True)
    cases = []
    for i, text in enumerate(PROMPTS):
        ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=32, do_sample=False)  # stops after EOS
            if i == 0:
                logits = model(ids).logits[0].float().numpy()
                np.save(os.path.join(OUT, "logits.npy"), logits)
        gen = out[0, ids.shape[1]:].tolist()
        cases.append({"text": text, "ids": ids[0].tolist(), "greedy": gen, "greedy_text": tok.decode(gen)})
        print(repr(text), "->", repr(tok.decode(gen)))
    with open(os.path.join(OUT, "reference.json"), "w", encoding="utf-8") as f:
        json.dump({"model": NAME, "library": "transformers " + T.__version__ + ", torch " + torch.__version__,
                   "cases": cases}, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
