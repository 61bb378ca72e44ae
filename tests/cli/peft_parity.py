#!/usr/bin/env python3
"""finetune-lora's --log and --peft-out against a PEFT fixture (scripts/gen_lora_fixtures.py).

Usage: peft_parity.py FIXTURE_DIR LOG.jsonl PEFT_OUT_DIR
The log's per-step losses must be within 1e-4 (relative) of PEFT's npy_losses,
and every tensor of the written adapter within 1e-4 (norm of the difference
over the norm) of PEFT's final adapter. Standard library only: CI has no numpy.
"""
import json
import math
import struct
import sys


def safetensors_f32(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {info['dtype']}, expected F32")
        a, b = info["data_offsets"]
        out[name] = struct.unpack(f"<{(b - a) // 4}f", body[a:b])
    return out


def main():
    fixture, log, peft_out = sys.argv[1:4]
    want = json.load(open(f"{fixture}/fixture.json"))["npy_losses"]
    got = [json.loads(line)["loss"] for line in open(log) if line.strip()]
    if len(got) != len(want):
        sys.exit(f"{len(got)} steps logged, PEFT ran {len(want)}")
    worst_loss = max(abs(g - w) / w for g, w in zip(got, want))
    ref = safetensors_f32(f"{fixture}/final_adapter.safetensors")
    ours = safetensors_f32(f"{peft_out}/adapter_model.safetensors")
    if set(ref) != set(ours):
        sys.exit(f"tensor names differ: {sorted(set(ref) ^ set(ours))[:4]}")
    worst_w = 0.0
    for name, r in ref.items():
        o = ours[name]
        if len(o) != len(r):
            sys.exit(f"{name}: {len(o)} values, PEFT has {len(r)}")
        d = math.sqrt(sum((x - y) ** 2 for x, y in zip(o, r)))
        worst_w = max(worst_w, d / max(math.sqrt(sum(y * y for y in r)), 1e-12))
    print(f"{len(got)} steps: worst loss {worst_loss:.2e}, worst adapter tensor {worst_w:.2e} (relative)")
    if worst_loss > 1e-4 or worst_w > 1e-4:
        sys.exit("outside 1e-4")


if __name__ == "__main__":
    main()
