#!/usr/bin/env python3
"""LoRA training references from PyTorch + PEFT for the autodiff tests.

For each tiny checkpoint of tests/data/hf/ named below (run
gen_hf_fixtures.py first), loaded in F32: LoRA (PEFT) on every projection
with random A and B (PEFT starts B at zero, which would make A's gradient
zero and hide mistakes), then on one fixed batch of tokens with some targets
masked:
  adapter_model.safetensors, adapter_config.json
                   the adapter before training, as PEFT saves it;
  grads.safetensors  d(loss)/d(every LoRA tensor), under the adapter's names;
  fixture.json     the tokens, targets (-100: not counted), the loss, and the
                   losses of 10 AdamW steps (the loss before each step, then
                   the one after the last) with the optimizer's settings;
                   npy_losses: from the same adapter, 10 AdamW steps over
                   batches.npy (int32 [10, 2, 12], one batch a step,
                   transformers' shifted labels), each batch's loss before
                   its update;
  final_adapter.safetensors  the adapter after those 10 steps.
The loss is the mean cross-entropy over counted positions of logits
computed by transformers in F32.

Needs: pip install torch transformers peft safetensors numpy. Fixed seeds.
"""
import json
import os
import shutil

import numpy as np
import torch
import torch.nn.functional as F
import transformers as T
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HF = os.path.join(ROOT, "tests", "data", "hf")
OUT = os.path.join(ROOT, "tests", "data", "lora")

CASES = [
    # name, HF fixture, PEFT target modules
    ("llama", "llama_st", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    ("gptneox_parallel", "gptneox_st", ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]),
    ("gptneox_sequential", "gptneox_bin", ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]),
    ("gptj", "gptj_st", ["q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out"]),
]
RANK, ALPHA = 4, 8
LR, WD, STEPS = 5e-3, 0.01, 10


def main():
    torch.use_deterministic_algorithms(True)
    for i, (name, fixture, targets) in enumerate(CASES):
        src = os.path.join(HF, fixture)
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        model = T.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
        cfg = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=targets, lora_dropout=0.0, bias="none")
        model = get_peft_model(model, cfg)
        torch.manual_seed(2000 + i)
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "lora_" in pname:
                    p.copy_(0.2 * torch.randn_like(p))
        model.save_pretrained(d)  # adapter_model.safetensors + adapter_config.json
        for extra in ("README.md",):
            if os.path.exists(os.path.join(d, extra)):
                os.remove(os.path.join(d, extra))

        vocab = model.config.vocab_size
        g = torch.Generator().manual_seed(300 + i)
        n = 16
        ids = torch.randint(4, min(vocab, 1000), (n,), generator=g)
        tgt = torch.cat([ids[1:], torch.tensor([-100])])  # the next token; the last position has none
        tgt[3] = -100
        tgt[9] = -100

        def loss_fn():
            logits = model(input_ids=ids[None]).logits[0].float()
            return F.cross_entropy(logits, tgt, ignore_index=-100)

        lora = {pn: p for pn, p in model.named_parameters() if "lora_" in pn}
        init = {pn: p.detach().clone() for pn, p in lora.items()}
        loss = loss_fn()
        loss.backward()
        grads = {pn.replace(".default", ""): p.grad.detach().clone().contiguous() for pn, p in lora.items()}
        save_file(grads, os.path.join(d, "grads.safetensors"))
        model.zero_grad()

        opt = torch.optim.AdamW(list(lora.values()), lr=LR, weight_decay=WD, betas=(0.9, 0.999), eps=1e-8)
        losses = []
        for _ in range(STEPS):
            opt.zero_grad()
            l = loss_fn()
            l.backward()
            losses.append(l.item())
            opt.step()
        with torch.no_grad():
            losses.append(loss_fn().item())

        # finetune-lora's parity: from the same initial adapter, 10 AdamW steps
        # over a fixed .npy batch sequence [10, 2, 12], transformers' labels
        # (the inputs, shifted inside the loss), the loss of each step's
        # batch before its update, then the final adapter.
        with torch.no_grad():
            for pn, p in lora.items():
                p.copy_(init[pn])
        gb = torch.Generator().manual_seed(500 + i)
        batches = torch.randint(4, min(vocab, 1000), (STEPS, 2, 12), generator=gb, dtype=torch.int32)
        np.save(os.path.join(d, "batches.npy"), batches.numpy())
        opt = torch.optim.AdamW(list(lora.values()), lr=LR, weight_decay=WD, betas=(0.9, 0.999), eps=1e-8)
        npy_losses = []
        for b in batches:
            opt.zero_grad()
            l = model(input_ids=b.long(), labels=b.long()).loss
            l.backward()
            npy_losses.append(l.item())
            opt.step()
        save_file({pn.replace(".default", ""): p.detach().clone().contiguous() for pn, p in lora.items()},
                  os.path.join(d, "final_adapter.safetensors"))

        with open(os.path.join(d, "fixture.json"), "w") as f:
            json.dump({"hf": fixture, "rank": RANK, "alpha": ALPHA, "tokens": ids.tolist(),
                       "targets": [int(t) for t in tgt.tolist()], "loss": loss.item(),
                       "adamw": {"lr": LR, "weight_decay": WD, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                 "steps": STEPS},
                       "losses": losses, "npy_losses": npy_losses, "torch": torch.__version__, "peft": __import__("peft").__version__},
                      f, indent=1)
        size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
        print(f"{name}: loss {loss.item():.6f}, {len(grads)} LoRA tensors, {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
