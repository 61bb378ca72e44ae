#!/usr/bin/env python3
"""Seeds for the convert and tokenize fuzzers (standard library only, so CI
can run it): a tiny LLaMA checkpoint (safetensors + tokenizer.json, and the
committed PyTorch-zip fixture with its tokenizer.model) packed in
fuzz_convert's section format, and vocabularies in fuzz_tokenize's format.
Usage: make_fuzz_seeds.py convert|tokenize OUT_DIR"""
import json
import os
import random
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = {"config.json": 0, "model.safetensors": 1, "pytorch_model.bin": 2, "tokenizer.json": 3,
         "tokenizer.model": 4, "tokenizer_config.json": 5}


def byte_chars():
    # GPT-2's bytes_to_unicode.
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def tiny_tokenizer_json():
    chars = byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    return {"model": {"type": "BPE", "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
            "added_tokens": [{"id": vocab["<|endoftext|>"], "content": "<|endoftext|>", "special": True}],
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}}


def safetensors(tensors):
    header, data = {}, b""
    for name, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        raw = struct.pack(f"<{n}f", *[random.uniform(-0.1, 0.1) for _ in range(n)])
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def tiny_llama(vocab):
    e, ff, kv = 8, 16, 4
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": e, "intermediate_size": ff, "num_hidden_layers": 1,
           "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": vocab, "max_position_embeddings": 64,
           "rms_norm_eps": 1e-6, "tie_word_embeddings": True}
    p = "model.layers.0."
    ts = [("model.embed_tokens.weight", [vocab, e]), (p + "input_layernorm.weight", [e]),
          (p + "self_attn.q_proj.weight", [e, e]), (p + "self_attn.k_proj.weight", [kv, e]),
          (p + "self_attn.v_proj.weight", [kv, e]), (p + "self_attn.o_proj.weight", [e, e]),
          (p + "post_attention_layernorm.weight", [e]), (p + "mlp.gate_proj.weight", [ff, e]),
          (p + "mlp.up_proj.weight", [ff, e]), (p + "mlp.down_proj.weight", [e, ff]), ("model.norm.weight", [e])]
    return json.dumps(cfg).encode(), safetensors(ts)


def pack(outtype, files):
    out = bytes([outtype])
    for name, data in files:
        out += bytes([KINDS[name]]) + struct.pack("<I", len(data)) + data
    return out


def convert_seeds(out):
    random.seed(1)
    tj = tiny_tokenizer_json()
    cfg, st = tiny_llama(len(tj["model"]["vocab"]))
    seeds = {"tiny_st_json": pack(0, [("config.json", cfg), ("model.safetensors", st),
                                      ("tokenizer.json", json.dumps(tj).encode())]),
             "tiny_st_json_q8": pack(2, [("config.json", cfg), ("model.safetensors", st),
                                         ("tokenizer.json", json.dumps(tj).encode())])}
    fix = os.path.join(ROOT, "tests/data/hf/llama_bin")
    files = []
    for name in ("config.json", "pytorch_model.bin", "tokenizer.model", "tokenizer_config.json"):
        with open(os.path.join(fix, name), "rb") as f:
            files.append((name, f.read()))
    seeds["llama_bin"] = pack(1, files)
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


def tokenize_seeds(out):
    tj = tiny_tokenizer_json()
    toks = sorted(tj["model"]["vocab"].items(), key=lambda kv: kv[1])
    entries = [(3 if t == "<|endoftext|>" else 1, t) for t, _ in toks] + [(4, "<user>")]
    text = "the thin <user> hint <|endoftext|> the end \xe9 \u2603"
    bpe = bytes([0, 1]) + "\n".join(chr(48 + ty - 1) + t for ty, t in entries).encode() + b"\0" + \
        "\n".join(tj["model"]["merges"]).encode() + b"\0" + text.encode()
    spm_tokens = [(2, "<unk>"), (3, "<s>"), (3, "</s>")] + [(6, f"<0x{b:02X}>") for b in range(256)] + \
        [(1, "\u2581"), (1, "\u2581t"), (1, "he"), (1, "\u2581the"), (4, "<user>")]
    spm = bytes([1, 0]) + "\n".join(chr(48 + ty - 1) + t for ty, t in spm_tokens).encode() + b"\0\0" + text.encode()
    for name, data in {"bpe": bpe, "spm": spm}.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    kind, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    (convert_seeds if kind == "convert" else tokenize_seeds)(out)
