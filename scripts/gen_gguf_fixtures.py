#!/usr/bin/env python3
"""A small GGUF file written by the `gguf` package (pip install gguf numpy),
with every metadata value type, nested arrays and tensors of several types.
tests/test_gguf.cpp reads it, checks every value, and writes it back with our
writer, which must reproduce it byte for byte. Deterministic."""
import os
import numpy as np
from gguf import GGUFWriter, GGMLQuantizationType as T

out = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "gguf", "reference.gguf")
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
