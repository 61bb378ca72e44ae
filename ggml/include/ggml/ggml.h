#pragma once
// The tensor library as the model layer sees it: types, tensors, ops, graphs
// and backends. The CPU backend's own header (cpu.h: kernel sets, its
// formats) and the reference quantizers (quants.h) are included by name
// where needed. See docs/design.md.
#include "autodiff.h"
#include "backend.h"
#include "error.h"
#include "fp16.h"
#include "graph.h"
#include "optim.h"
#include "ops.h"
#include "tensor.h"
#include "types.h"
