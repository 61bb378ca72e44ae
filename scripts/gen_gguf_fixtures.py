#!/usr/bin/env python3
"""A small GGUF file written by the `gguf` package (pip install gguf numpy),
with every metadata value type, nested arrays and tensors of several types.
tests/test_gguf.cpp reads it, checks every value, and writes it back with our
writer, which must reproduce it byte for byte. Deterministic."""
import os
import numpy as np
from gguf import GGUFWriter, GGMLQuantizationType as T

OUT_GGUF = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "gguf")
out = os.path.join(OUT_GGUF, "reference.gguf")
w = GGUFWriter(out, arch="llama")
w.add_uint8("test.u8", 200)
w.add_int8("test.i8", -100)
w.add_uint16("test.u16", 60000)
w.add_int16("test.i16", -30000)
w.add_uint32("test.u32", 4000000000)
w.add_int32("test.i32", -2000000000)
w.add_float32("test.f32", 0.15625)
w.add_uint64("test.u64", 18000000000000000000)
w.add_int64("test.i64", -9000000000000000000)
w.add_float64("test.f64", -2.5e-300)
w.add_bool("test.bool", True)
w.add_string("test.string", "héllo wörld ✓")
w.add_array("test.arr_i32", [1, -2, 3])
w.add_array("test.arr_str", ["a", "", "ccc"])
w.add_array("test.arr_f32", [0.5, -1.25])
w.add_array("test.arr_nested", [[1, 2], [3]])
rng = np.random.default_rng(7)
w.add_tensor("t.f32", rng.normal(size=(3, 5)).astype(np.float32))
w.add_tensor("t.f16", rng.normal(size=(2, 64)).astype(np.float16))
w.add_tensor("t.q8_0", rng.integers(0, 256, size=(4, 34), dtype=np.uint8), raw_dtype=T.Q8_0)
w.add_tensor("t.i32", np.arange(7, dtype=np.int32))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("wrote", out, os.path.getsize(out), "bytes")

# ---- index of the real model (when scripts/fetch-models.sh has fetched it) ----
# Every key (type and value, long values as FNV-1a 64 hashes) and every tensor
# (type, shape, offset, size, first bytes), as the gguf package reads them,
# plus the first row of token_embd.weight dequantized by the package.
from gguf import GGUFReader, GGUFValueType as V
from gguf.quants import dequantize

def fnv(data: bytes) -> str:
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h

def scalar(t, v):
    if t in (V.FLOAT32, V.FLOAT64):
        return "%.9g" % float(v)
    if t == V.BOOL:
        return "1" if v else "0"
    return str(int(v))

model = os.path.join(os.path.dirname(__file__), "..", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
if os.path.exists(model):
    r = GGUFReader(model)
    lines = []
    for f in r.fields.values():
        if f.name.startswith("GGUF."):
            continue
        t = f.types[0]
        if t == V.STRING:
            s = bytes(f.parts[f.data[0]])
            lines.append("kv %s string %d %s" % (f.name, len(s), fnv(s)))
        elif t == V.ARRAY:
            et = f.types[1]
            if et == V.STRING:
                blob = b"".join(bytes(f.parts[i]) + b"\n" for i in f.data)
            else:
                blob = "".join(scalar(et, f.parts[i][0]) + "\n" for i in f.data).encode()
            lines.append("kv %s array %d %d %s" % (f.name, int(et), len(f.data), fnv(blob)))
        else:
            lines.append("kv %s %d %s" % (f.name, int(t), scalar(t, f.parts[f.data[0]][0])))
    for t in r.tensors:
        first = bytes(t.data.reshape(-1).view(np.uint8)[:8]).hex()
        lines.append("tensor %s %d %s %d %d %s" % (t.name, int(t.tensor_type), ",".join(str(int(x)) for x in t.shape),
                                                 t.data_offset, t.n_bytes, first))
    emb = [t for t in r.tensors if t.name == "token_embd.weight"][0]
    row0 = dequantize(emb.data[0:1], emb.tensor_type).reshape(-1)
    lines.append("row0 token_embd.weight " + " ".join("%.9g" % float(v) for v in row0[:32]))
    with open(os.path.join(OUT_GGUF, "smollm2.index"), "w") as fo:
        fo.write("\n".join(lines) + "\n")
    print("wrote smollm2.index:", len(lines), "lines")
