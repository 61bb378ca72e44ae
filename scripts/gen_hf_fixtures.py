#!/usr/bin/env python3
"""Tiny random-weight Hugging Face checkpoints for the converter's tests.

Writes tests/data/hf/<name>/ for each fixture below: a checkpoint directory as
transformers saves it (config.json, weights as safetensors - single or sharded -
or a PyTorch zip .bin, the tokenizer files of a tokenizer trained by
scripts/gen_tokenizer_fixtures.py, tokenizer_config.json), plus
  expected.gguf   written by the `gguf` package: the metadata keys llama.cpp's
                  converter would write and every tensor in F32 after the
                  documented transforms, computed here with numpy;
  fixture.json    which tokenizer fixture the checkpoint carries.

Needs: pip install torch transformers safetensors gguf numpy (run
gen_tokenizer_fixtures.py first). Fixed seeds; weights are drawn by torch.
"""
import json
import os
import shutil

import numpy as np
import torch
import transformers as T
from gguf import GGUFWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "hf")
TOK = os.path.join(ROOT, "tests", "data", "tokenizer")

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

FIXTURES = [
    # name, arch, tokenizer, weights format, dtype, config overrides
    ("llama_st", "llama", "spm_bytes", "sharded", torch.bfloat16,
     dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
          vocab_size=1000, max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=False,
          rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 50000.0})),
    ("llama_bin", "llama", "spm_unk", "bin", torch.float16,
     dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, intermediate_size=64,
          vocab_size=600, max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=True)),
    ("gptneox_st", "gptneox", "bpe_digits", "safetensors", torch.float32,
     dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=1280,
          max_position_embeddings=256, rotary_pct=0.25, use_parallel_residual=True, layer_norm_eps=1e-5)),
    ("gptneox_bin", "gptneox", "bpe_gpt2", "bin", torch.float32,
     dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=1200,
          max_position_embeddings=128, rotary_pct=0.5, use_parallel_residual=False, layer_norm_eps=1e-5)),
    ("gptj_st", "gptj", "bpe_gpt2", "safetensors", torch.float16,
     dict(n_embd=64, n_layer=2, n_head=4, rotary_dim=8, n_inner=128, vocab_size=1200, n_positions=256,
          layer_norm_epsilon=1e-5, bos_token_id=0, eos_token_id=0)),
    ("gptj_bin", "gptj", "bpe_gpt2", "bin", torch.float32,
     dict(n_embd=32, n_layer=1, n_head=2, rotary_dim=4, n_inner=64, vocab_size=1200, n_positions=128,
          layer_norm_epsilon=1e-5, bos_token_id=0, eos_token_id=0)),
]

CLASSES = {
    "llama": (T.LlamaConfig, T.LlamaForCausalLM),
    "gptneox": (T.GPTNeoXConfig, T.GPTNeoXForCausalLM),
    "gptj": (T.GPTJConfig, T.GPTJForCausalLM),
}


def permute(w, n_head):
    """HF half-split rotary rows -> interleaved (llama.cpp convert_hf_to_gguf.LlamaModel.permute)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def neox_qkv(w, n_head):
    """Per-head [q, k, v] rows -> [all q; all k; all v] (llama.cpp GPTNeoXModel.modify_tensors)."""
    hd = w.shape[0] // 3 // n_head
    x = w.reshape(n_head, 3, hd, *w.shape[1:])
    return np.concatenate([x[:, k].reshape(n_head * hd, *w.shape[1:]) for k in range(3)], axis=0)


def expected_tensors(arch, cfg, sd):
    """GGUF name -> F32 numpy array in PyTorch order, after the transforms."""
    f = {k: v.float().numpy() for k, v in sd.items()}
    out = {}
    if arch == "llama":
        nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
        out["token_embd.weight"] = f["model.embed_tokens.weight"]
        for l in range(cfg.num_hidden_layers):
            p, b = f"model.layers.{l}.", f"blk.{l}."
            out[b + "attn_norm.weight"] = f[p + "input_layernorm.weight"]
            out[b + "attn_q.weight"] = permute(f[p + "self_attn.q_proj.weight"], nh)
            out[b + "attn_k.weight"] = permute(f[p + "self_attn.k_proj.weight"], nkv)
            out[b + "attn_v.weight"] = f[p + "self_attn.v_proj.weight"]
            out[b + "attn_output.weight"] = f[p + "self_attn.o_proj.weight"]
            out[b + "ffn_norm.weight"] = f[p + "post_attention_layernorm.weight"]
            out[b + "ffn_gate.weight"] = f[p + "mlp.gate_proj.weight"]
            out[b + "ffn_up.weight"] = f[p + "mlp.up_proj.weight"]
            out[b + "ffn_down.weight"] = f[p + "mlp.down_proj.weight"]
        out["output_norm.weight"] = f["model.norm.weight"]
        if not cfg.tie_word_embeddings:
            out["output.weight"] = f["lm_head.weight"]
    elif arch == "gptneox":
        nh = cfg.num_attention_heads
        out["token_embd.weight"] = f["gpt_neox.embed_in.weight"]
        for l in range(cfg.num_hidden_layers):
            p, b = f"gpt_neox.layers.{l}.", f"blk.{l}."
            for s in ("weight", "bias"):
                out[b + "attn_norm." + s] = f[p + "input_layernorm." + s]
                out[b + "attn_qkv." + s] = neox_qkv(f[p + "attention.query_key_value." + s], nh)
                out[b + "attn_output." + s] = f[p + "attention.dense." + s]
                out[b + "ffn_norm." + s] = f[p + "post_attention_layernorm." + s]
                out[b + "ffn_up." + s] = f[p + "mlp.dense_h_to_4h." + s]
                out[b + "ffn_down." + s] = f[p + "mlp.dense_4h_to_h." + s]
        out["output_norm.weight"] = f["gpt_neox.final_layer_norm.weight"]
        out["output_norm.bias"] = f["gpt_neox.final_layer_norm.bias"]
        # transformers saves the head as embed_out.weight in safetensors but
        # names it lm_head.weight in state_dict() (so in a torch.save .bin).
        out["output.weight"] = f["embed_out.weight"] if "embed_out.weight" in f else f["lm_head.weight"]
    else:
        out["token_embd.weight"] = f["transformer.wte.weight"]
        for l in range(cfg.n_layer):
            p, b = f"transformer.h.{l}.", f"blk.{l}."
            out[b + "attn_norm.weight"] = f[p + "ln_1.weight"]
            out[b + "attn_norm.bias"] = f[p + "ln_1.bias"]
            for x in "qkv":
                out[b + f"attn_{x}.weight"] = f[p + f"attn.{x}_proj.weight"]
            out[b + "attn_output.weight"] = f[p + "attn.out_proj.weight"]
            out[b + "ffn_up.weight"] = f[p + "mlp.fc_in.weight"]
            out[b + "ffn_up.bias"] = f[p + "mlp.fc_in.bias"]
            out[b + "ffn_down.weight"] = f[p + "mlp.fc_out.weight"]
            out[b + "ffn_down.bias"] = f[p + "mlp.fc_out.bias"]
        out["output_norm.weight"] = f["transformer.ln_f.weight"]
        out["output_norm.bias"] = f["transformer.ln_f.bias"]
        out["output.weight"] = f["lm_head.weight"]
        out["output.bias"] = f["lm_head.bias"]
    return out


def expected_keys(arch, cfg):
    """The hyperparameter keys, with llama.cpp's names and types."""
    u, fl = "u32", "f32"
    if arch == "llama":
        rp = cfg.rope_parameters or {}
        k = {"vocab_size": (u, cfg.vocab_size), "context_length": (u, cfg.max_position_embeddings),
             "embedding_length": (u, cfg.hidden_size), "block_count": (u, cfg.num_hidden_layers),
             "feed_forward_length": (u, cfg.intermediate_size),
             "rope.dimension_count": (u, cfg.hidden_size // cfg.num_attention_heads),
             "attention.head_count": (u, cfg.num_attention_heads),
             "attention.head_count_kv": (u, cfg.num_key_value_heads),
             "attention.layer_norm_rms_epsilon": (fl, cfg.rms_norm_eps),
             "rope.freq_base": (fl, rp.get("rope_theta", 10000.0))}
        if rp.get("rope_type") == "linear":
            k["rope.scaling.type"] = ("str", "linear")
            k["rope.scaling.factor"] = (fl, rp["factor"])
    elif arch == "gptneox":
        rp = cfg.rope_parameters or {}
        hd = cfg.hidden_size // cfg.num_attention_heads
        k = {"vocab_size": (u, cfg.vocab_size), "context_length": (u, cfg.max_position_embeddings),
             "embedding_length": (u, cfg.hidden_size), "block_count": (u, cfg.num_hidden_layers),
             "feed_forward_length": (u, cfg.intermediate_size),
             "rope.dimension_count": (u, int(hd * rp.get("partial_rotary_factor", 1.0))),
             "attention.head_count": (u, cfg.num_attention_heads),
             "attention.layer_norm_epsilon": (fl, cfg.layer_norm_eps),
             "rope.freq_base": (fl, rp.get("rope_theta", 10000.0)),
             "use_parallel_residual": ("bool", cfg.use_parallel_residual)}
    else:
        k = {"vocab_size": (u, cfg.vocab_size), "context_length": (u, cfg.n_positions),
             "embedding_length": (u, cfg.n_embd), "block_count": (u, cfg.n_layer),
             "feed_forward_length": (u, cfg.n_inner or 4 * cfg.n_embd),
             "rope.dimension_count": (u, cfg.rotary_dim),
             "attention.head_count": (u, cfg.n_head),
             "attention.layer_norm_epsilon": (fl, cfg.layer_norm_epsilon),
             "rope.freq_base": (fl, 10000.0)}
    return k


def main():
    for i, (name, arch, tok, fmt, dtype, overrides) in enumerate(FIXTURES):
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        torch.manual_seed(1000 + i)
        cfg_cls, model_cls = CLASSES[arch]
        cfg = cfg_cls(**overrides)
        cfg.architectures = [model_cls.__name__]
        model = model_cls(cfg).eval()
        with torch.no_grad():
            # Every parameter random (norm gains and biases too), so no transform can hide.
            for pname, p in model.named_parameters():
                base = 1.0 if pname.endswith("norm.weight") or ".ln_" in pname or "layernorm.weight" in pname else 0.0
                p.copy_(base + 0.1 * torch.randn_like(p))
        model = model.to(dtype)
        if fmt == "bin":
            cfg.save_pretrained(d)
            torch.save(model.state_dict(), os.path.join(d, "pytorch_model.bin"))
        else:
            model.save_pretrained(d, max_shard_size="150KB" if fmt == "sharded" else "1GB")
        for fn in ("tokenizer.model", "tokenizer.json"):
            src = os.path.join(TOK, tok, fn)
            if os.path.exists(src):
                shutil.copy(src, os.path.join(d, fn))
        tc = {"chat_template": CHATML}
        if arch == "llama":
            tc.update(bos_token="<s>", eos_token="</s>", unk_token="<unk>", add_bos_token=True, add_eos_token=False)
        else:
            tc.update(bos_token="<|endoftext|>", eos_token="<|endoftext|>", add_bos_token=False)
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(tc, f, indent=1)
        # Reference logits in F32 on the saved (rounded) weights: a prompt in one
        # pass, then token by token through transformers' KV cache.
        # A fresh F32 model with the saved weights: model.float() would keep the
        # rotary tables that model.to(dtype) rounded to BF16/F16.
        ref_model = model_cls(cfg).eval()
        ref_model.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
        g = torch.Generator().manual_seed(77 + i)
        ids = torch.randint(4, cfg.vocab_size if arch != "gptneox" else 1000, (12,), generator=g)
        n_prompt = 8
        with torch.no_grad():
            out = ref_model(ids[None, :n_prompt], use_cache=True)
            rows = [out.logits[0]]
            past = out.past_key_values
            for t in range(n_prompt, len(ids)):
                out = ref_model(ids[None, t:t + 1], past_key_values=past, use_cache=True)
                past = out.past_key_values
                rows.append(out.logits[0])
        logits = torch.cat(rows, 0).float().numpy()
        np.save(os.path.join(d, "logits.npy"), logits)
        with open(os.path.join(d, "fixture.json"), "w") as f:
            json.dump({"arch": arch, "tokenizer": tok, "format": fmt, "dtype": str(dtype),
                       "tokens": ids.tolist(), "n_prompt": n_prompt}, f)

        # The reference: state dict as torch holds it (tied weights included once).
        sd = {k: v for k, v in model.state_dict().items()}
        w = GGUFWriter(os.path.join(d, "expected.gguf"), arch)
        for kname, (ty, val) in expected_keys(arch, cfg).items():
            full = f"{arch}.{kname}"
            if ty == "u32": w.add_uint32(full, int(val))
            elif ty == "f32": w.add_float32(full, float(val))
            elif ty == "bool": w.add_bool(full, bool(val))
            else: w.add_string(full, val)
        for tname, arr in expected_tensors(arch, cfg, sd).items():
            w.add_tensor(tname, np.ascontiguousarray(arr, dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
        print(f"{name}: {size / 1024:.0f} KiB")


class Evil:
    """A pickle payload that would run a shell command if unpickled by Python."""
    def __reduce__(self):
        return (os.system, ("echo this-should-never-run",))


def bad_fixtures():
    """tests/data/hf_bad/: a torch.save archive whose pickle calls os.system."""
    d = os.path.join(ROOT, "tests", "data", "hf_bad")
    os.makedirs(d, exist_ok=True)
    torch.save({"w": torch.zeros(2), "x": Evil()}, os.path.join(d, "evil.bin"))


if __name__ == "__main__":
    main()
    bad_fixtures()
