#!/usr/bin/env python3
"""Reference fixtures for the block formats, made with the `gguf` package's
numpy implementation (pip install gguf numpy). Writes tests/data/quant/:

  input.f32                 rows of float32 to quantize (varied scales, edge rows)
  <type>.quant              gguf.quants.quantize(input, type) bytes
  <type>.blocks             random valid blocks of that type
  <type>.dequant.f32        gguf.quants.dequantize(blocks) as float32

Deterministic (fixed seed); the tests read these, CI needs no Python.
"""
import os
import numpy as np
from gguf import GGMLQuantizationType as T, quants

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "quant")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(1234)

# 16 rows of 256: normal at several scales, uniform, zeros, a constant row,
# a row with one large outlier, ties at .5 steps, tiny values.
rows = []
for s in (1.0, 0.01, 100.0, 3e-5):
    rows.append(rng.normal(0, s, 256))
rows.append(rng.uniform(-1, 1, 256))
rows.append(np.zeros(256))
rows.append(np.full(256, 0.75))
r = rng.normal(0, 0.1, 256); r[17] = 25.0; rows.append(r)
rows.append(np.round(rng.uniform(-8, 8, 256) * 2) / 2)   # many exact halves
rows.append(rng.uniform(0, 1, 256))                      # all positive
rows.append(-rng.uniform(0, 1, 256))                     # all negative
rows.append(rng.standard_t(2, 256))                      # heavy tails
for _ in range(4):
    rows.append(rng.normal(0, rng.uniform(0.1, 3), 256))
x = np.stack(rows).astype(np.float32)
x.tofile(os.path.join(OUT, "input.f32"))

for name, t in [("f16", T.F16), ("bf16", T.BF16), ("q8_0", T.Q8_0), ("q4_0", T.Q4_0),
                ("q4_1", T.Q4_1), ("q5_0", T.Q5_0), ("q5_1", T.Q5_1)]:
    q = quants.quantize(x, t)
    q.tofile(os.path.join(OUT, name + ".quant"))

def f16_bytes(vals):
    return np.asarray(vals, dtype=np.float16).view(np.uint8).reshape(-1, 2)

# Random blocks: random bytes with sane fp16 scale fields.
layouts = {  # type: (block bytes, offsets of fp16 scale fields)
    "q4_0": (T.Q4_0, 18, [0]), "q4_1": (T.Q4_1, 20, [0, 2]), "q5_0": (T.Q5_0, 22, [0]),
    "q5_1": (T.Q5_1, 24, [0, 2]), "q8_0": (T.Q8_0, 34, [0]),
    "q4_K": (T.Q4_K, 144, [0, 2]), "q5_K": (T.Q5_K, 176, [0, 2]), "q6_K": (T.Q6_K, 210, [208]),
}
for name, (t, size, offs) in layouts.items():
    nblk = 64
    b = rng.integers(0, 256, size=(nblk, size), dtype=np.uint8)
    for o in offs:
        b[:, o:o + 2] = f16_bytes(rng.normal(0, 0.05, nblk))
    b.tofile(os.path.join(OUT, name + ".blocks"))
    d = quants.dequantize(b.reshape(-1), t).astype(np.float32)
    d.tofile(os.path.join(OUT, name + ".dequant.f32"))
print("wrote", OUT)
