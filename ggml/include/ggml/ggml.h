#pragma once
// The tensor library: types, tensors, ops, graphs. See docs/design.md.
#include "cpu.h"
#include "error.h"
#include "fp16.h"
#include "graph.h"
#include "ops.h"
#include "quants.h"
#include "tensor.h"
#include "types.h"
