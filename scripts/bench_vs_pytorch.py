#!/usr/bin/env python3
"""LoRA fine-tuning speed and memory: ./finetune-lora against PyTorch + PEFT.

Same model shape (random weights: LlamaForCausalLM from the GGUF's shape on
the PyTorch side), the same pre-tokenized batches (.npy, batch 1), LoRA r 8
alpha 16 on all seven projections, AdamW, the same thread count; each
configuration in its own process (its peak resident memory is its own),
ours and PyTorch's alternating, --reps times. Reports tokens/s (steps after
the first) and peak RSS, as a markdown table.

  scripts/bench_vs_pytorch.py --model models/finetune/smollm2-f32.gguf \\
      --ours f32,f32:bf16,f32:ckpt,q8_0=PATH --torch f32,bf16,ckpt --seq 256 --steps 6

Needs: pip install torch transformers peft gguf numpy (not for CI).
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gguf_shape(path):
    import gguf
    r = gguf.GGUFReader(path)
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    def f(k):
        return r.fields[f"{arch}.{k}"].parts[-1][0]
    names = {t.name for t in r.tensors}
    vocab = next(int(t.shape[1]) for t in r.tensors if t.name == "token_embd.weight")
    return dict(hidden=int(f("embedding_length")), inter=int(f("feed_forward_length")), layers=int(f("block_count")),
                heads=int(f("attention.head_count")), kv=int(f("attention.head_count_kv")), vocab=vocab,
                tied="output.weight" not in names)


def torch_worker(a):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from peft import LoraConfig, get_peft_model
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    s = json.loads(a.shape_json)
    cfg = LlamaConfig(hidden_size=s["hidden"], intermediate_size=s["inter"], num_hidden_layers=s["layers"],
                      num_attention_heads=s["heads"], num_key_value_heads=s["kv"], vocab_size=s["vocab"],
                      tie_word_embeddings=s["tied"], max_position_embeddings=max(2048, a.seq))
    model = LlamaForCausalLM(cfg)
    if a.mode == "ckpt":
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    data = torch.from_numpy(np.load(a.data).astype(np.int64))
    times = []
    for step in range(data.shape[0]):
        ids = data[step]
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.mode == "bf16"):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    tokens = data.shape[1] * (data.shape[2] - 1)
    print(json.dumps({"tokens_per_s": tokens / np.mean(times[1:]),
                      "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def run_torch(a, shape, mode, data):
    out = subprocess.run([sys.executable, __file__, "--torch-worker", "--mode", mode, "--shape-json", json.dumps(shape),
                          "--data", data, "--seq", str(a.seq), "--threads", str(a.threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_ours(a, model, extra, data, tmp):
    log = os.path.join(tmp, "log.jsonl")
    cmd = [os.path.join(ROOT, "finetune-lora"), "-m", model, "--train", data, "--ctx", str(a.seq), "-t", str(a.threads),
           "--lr", "1e-4", "-o", os.path.join(tmp, "a.gguf"), "--log", log] + extra
    err = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    steps = [json.loads(l) for l in open(log)]
    peak = float(re.search(r"\| peak memory ([0-9.]+) MiB", err).group(1)) * 2**20
    return {"tokens_per_s": float(np.mean([s["tokens_per_s"] for s in steps[1:]])), "peak_bytes": peak}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="GGUF whose shape both sides use (and ours trains on unless NAME=PATH)")
    p.add_argument("--ours", default="f32,f32:bf16,f32:ckpt",
                   help="NAME[:bf16][:ckpt][:float] runs on --model, or NAME=PATH[:...] on another base "
                        "(float: --float-backward)")
    p.add_argument("--torch", default="f32,bf16,ckpt", help="PyTorch modes: f32, bf16 (autocast), ckpt (checkpointing)")
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--shape-json", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.torch_worker:
        return torch_worker(a)
    shape = gguf_shape(a.model)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "batches.npy")
        rng = np.random.default_rng(1)
        np.save(data, rng.integers(0, min(shape["vocab"], 30000), size=(a.steps, 1, a.seq), dtype=np.int32))
        rows = {}
        for _ in range(a.reps):
            ours = a.ours.split(",") if a.ours else []
            torch_modes = a.torch.split(",") if a.torch else []
            for i in range(max(len(ours), len(torch_modes))):  # alternating
                if i < len(ours):
                    spec = ours[i]
                    name, _, rest = spec.partition("=")
                    parts = (rest or spec).split(":")
                    model = parts[0] if rest else a.model
                    extra = ((["--bf16"] if "bf16" in parts else []) + (["--checkpointing"] if "ckpt" in parts else []) +
                             (["--float-backward"] if "float" in parts else []))
                    label = "ours " + (name if rest else spec)
                    rows.setdefault(label, []).append(run_ours(a, model, extra, data, tmp))
                    print(label, rows[label][-1], file=sys.stderr)
                if i < len(torch_modes):
                    label = "PyTorch " + torch_modes[i]
                    rows.setdefault(label, []).append(run_torch(a, shape, torch_modes[i], data))
                    print(label, rows[label][-1], file=sys.stderr)
    print(f"shape {shape}, seq {a.seq}, batch 1, {a.threads} threads, LoRA r 8 on all 7 projections, AdamW\n")
    print("| run | tokens/s | peak RSS |")
    print("|---|---|---|")
    for label, rs in rows.items():
        tps = np.mean([r["tokens_per_s"] for r in rs])
        peak = max(r["peak_bytes"] for r in rs)
        print(f"| {label} | {tps:.1f} | {peak / 2**30:.2f} GiB |")


if __name__ == "__main__":
    main()
