#!/usr/bin/env python3
"""Writes random-weight LLaMA-architecture GGUF models for benchmarks.

  --shape tinyllama : TinyLlama-1.1B's shapes (2048 wide, 22 layers, 32 heads,
                      4 KV heads, 5632 FFN, 32000 vocab), 1.1 B parameters
  --shape llama7b   : LLaMA-7B's layer sizes (4096 wide, 11008 FFN, 32 heads)
                      with --layers of them (default 4), 32000 vocab

The weights are F16 draws from N(0, 0.02) (norm gains 1), the vocabulary a
synthetic SentencePiece one (byte pieces plus numbered words), so both this
engine and llama.cpp load the file. Quantized variants come from ./quantize
(scripts/make_bench_models.sh). Needs: pip install gguf numpy.
"""
import argparse
import os

import numpy as np
from gguf import GGUFWriter, GGMLQuantizationType, TokenType

SHAPES = {
    "tinyllama": dict(n_embd=2048, n_layer=22, n_head=32, n_head_kv=4, n_ff=5632, n_vocab=32000, n_ctx=2048),
    "llama7b": dict(n_embd=4096, n_layer=4, n_head=32, n_head_kv=32, n_ff=11008, n_vocab=32000, n_ctx=4096),
}


def vocab(n):
    tokens, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        scores.append(0.0)
        types.append(TokenType.BYTE)
    i = 0
    while len(tokens) < n:
        tokens.append(f"\u2581w{i}")
        scores.append(-float(i))
        types.append(TokenType.NORMAL)
        i += 1
    return tokens, scores, types


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=SHAPES, default="tinyllama")
    ap.add_argument("--layers", type=int, default=None, help="override the layer count")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    h = dict(SHAPES[a.shape])
    if a.layers:
        h["n_layer"] = a.layers
    rng = np.random.default_rng(a.seed)
    E, F, V, L = h["n_embd"], h["n_ff"], h["n_vocab"], h["n_layer"]
    hd = E // h["n_head"]
    ekv = hd * h["n_head_kv"]

    tmp = a.out + ".tmp"
    w = GGUFWriter(tmp, "llama")
    w.add_name(f"random-{a.shape}-{L}L")
    w.add_context_length(h["n_ctx"])
    w.add_embedding_length(E)
    w.add_block_count(L)
    w.add_feed_forward_length(F)
    w.add_rope_dimension_count(hd)
    w.add_head_count(h["n_head"])
    w.add_head_count_kv(h["n_head_kv"])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(V)
    w.add_file_type(1)
    tokens, scores, types = vocab(V)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    def mat(rows, cols):  # PyTorch order [out, in]
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    w.add_tensor("token_embd.weight", mat(V, E))
    for l in range(L):
        b = f"blk.{l}."
        w.add_tensor(b + "attn_norm.weight", np.ones(E, dtype=np.float32))
        w.add_tensor(b + "attn_q.weight", mat(E, E))
        w.add_tensor(b + "attn_k.weight", mat(ekv, E))
        w.add_tensor(b + "attn_v.weight", mat(ekv, E))
        w.add_tensor(b + "attn_output.weight", mat(E, E))
        w.add_tensor(b + "ffn_norm.weight", np.ones(E, dtype=np.float32))
        w.add_tensor(b + "ffn_gate.weight", mat(F, E))
        w.add_tensor(b + "ffn_up.weight", mat(F, E))
        w.add_tensor(b + "ffn_down.weight", mat(E, F))
    w.add_tensor("output_norm.weight", np.ones(E, dtype=np.float32))
    w.add_tensor("output.weight", mat(V, E))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    os.replace(tmp, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
