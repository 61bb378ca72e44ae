#!/usr/bin/env python3
"""Do files written by ./convert load in llama.cpp, and does llama.cpp
tokenize them as we do? A manual cross-check (needs `pip install
llama-cpp-python`, which builds llama.cpp); not part of CI.

For each checkpoint fixture in tests/data/hf whose architecture llama.cpp
knows (llama, gptneox), converts it with ./convert, loads the whole model in
llama.cpp (which checks every tensor name, shape and key), evaluates a few
tokens, and compares llama.cpp's token ids with ./tokenize on the hard strings.
Also compares on SmolLM2's GGUF when models/ has it.
"""
import json
import os
import subprocess
import sys
import tempfile

from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARD = json.load(open(os.path.join(ROOT, "tests", "data", "tokenizer", "hard_strings.json"), encoding="utf-8"))


def ours(model, text):
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text.encode("utf-8"))
    out = subprocess.check_output([os.path.join(ROOT, "tokenize"), "-m", model, "-f", f.name, "--no-bos"])
    os.unlink(f.name)
    return [int(x) for x in out.split()]


def compare(model, label, load_weights):
    llm = Llama(model_path=model, vocab_only=not load_weights, verbose=False, n_ctx=64)
    if load_weights:
        llm.eval([1, 2, 3])  # the graph builds and runs on our tensors
    same = 0
    for s in HARD:
        theirs = llm.tokenize(s.encode("utf-8"), add_bos=False, special=False)
        mine = ours(model, s)
        if theirs == mine:
            same += 1
        else:
            print(f"  {label}: differs on {s!r}:\n    llama.cpp {theirs}\n    ours      {mine}")
    print(f"{label}: loads in llama.cpp{' with weights' if load_weights else ''}; "
          f"tokenization equal on {same}/{len(HARD)} hard strings")
    return same == len(HARD)


def main():
    ok = True
    tmp = tempfile.mkdtemp()
    # llama_bin is left out: its SentencePiece vocabulary has no <0xXX> byte
    # pieces, and llama.cpp aborts on such a vocabulary (it looks up <0x0A>).
    for name in ("llama_st", "gptneox_st", "gptneox_bin"):
        out = os.path.join(tmp, name + ".gguf")
        subprocess.check_call([os.path.join(ROOT, "convert"), os.path.join(ROOT, "tests", "data", "hf", name),
                               "-o", out, "--outtype", "f16", "-q"])
        ok &= compare(out, name, True)
    smol = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if os.path.exists(smol):
        ok &= compare(smol, "SmolLM2", False)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
