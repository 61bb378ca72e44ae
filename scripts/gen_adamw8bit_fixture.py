#!/usr/bin/env python3
"""8-bit AdamW references from bitsandbytes (its CPU backend) for test_optim.

tests/data/adamw8bit/, every array float32 .npy:
  qmap_signed.npy, qmap_unsigned.npy  create_dynamic_map(signed=True/False):
                   the 256 values of the first and second moments' codes;
  x.npy            1300 values over several magnitudes (blocks of 256 whose
                   absmax differ by powers of ten, a zero block, a tail);
  x_codes.npy, x_absmax.npy  quantize_blockwise(x, code=signed map, blocksize=256);
  p0.npy, grads.npy  a parameter of 5000 values and 6 gradients;
  p_steps.npy      AdamW8bit(lr=1e-2, betas=(0.9, 0.999), eps=1e-8,
                   weight_decay=0.01) after each of the 6 steps [6, 5000];
  state1.npy, state2.npy, absmax1.npy, absmax2.npy  its state after them
                   (codes as floats).

Needs: pip install torch bitsandbytes numpy. Fixed seeds.
"""
import os

import numpy as np
import torch
import bitsandbytes as bnb
import bitsandbytes.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "adamw8bit")


def save(name, a):
    np.save(os.path.join(OUT, name), np.ascontiguousarray(np.asarray(a, dtype=np.float32)))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(7)
    qs = F.create_dynamic_map(signed=True)
    qu = F.create_dynamic_map(signed=False)
    save("qmap_signed.npy", qs.numpy())
    save("qmap_unsigned.npy", qu.numpy())

    x = torch.randn(1300)
    for b, scale in enumerate([1.0, 1e-3, 1e2, 0.0, 1e-6]):
        x[b * 256:(b + 1) * 256] *= scale
    codes, st = F.quantize_blockwise(x, code=qs, blocksize=256)
    save("x.npy", x.numpy())
    save("x_codes.npy", codes.float().numpy())
    save("x_absmax.npy", st.absmax.numpy())

    p = torch.nn.Parameter(torch.randn(5000))
    save("p0.npy", p.detach().numpy())
    opt = bnb.optim.AdamW8bit([p], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, min_8bit_size=4096)
    grads, steps = [], []
    for _ in range(6):
        g = torch.randn(5000) * 0.1
        grads.append(g.numpy().copy())
        p.grad = g
        opt.step()
        steps.append(p.detach().numpy().copy())
    save("grads.npy", np.stack(grads))
    save("p_steps.npy", np.stack(steps))
    s = opt.state[p]
    for k in ("state1", "state2", "absmax1", "absmax2"):
        save(k + ".npy", s[k].float().numpy())
    print("wrote", OUT, "bitsandbytes", bnb.__version__)


if __name__ == "__main__":
    main()
