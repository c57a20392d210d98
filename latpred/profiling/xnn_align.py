"""Attribute in-graph profiler events to the model's ops.

Inside one full-graph run, LiteRT's profiler reports one event per operator the runtime executes:
XNNPACK operators for the delegated part (named like ``Convolution (NHWC, F32) IGEMM``) and TFLite
node invocations for ops left to the interpreter. XNNPACK does not keep a one-to-one map to the
.tflite ops: it fuses some (a PAD into the following convolution, a RELU into its producer), splits off
the fused activation of an ADD or MUL as a separate Clamp operator, runs
1x1 convolutions as ``Fully Connected``, and may split one op into two operators. We align the
operator sequence to the op sequence (both are in execution order) with a small edit-distance
dynamic programme: an op matches an operator whose name fits its type; an op the runtime fused
away gets 0 ms (its work is inside its neighbour's time); an extra operator is added to the op
before it. Pure functions, so the alignment is tested without a runtime.
"""
from __future__ import annotations

from typing import Sequence

# TFLite op type -> keywords one of which the XNNPACK operator name (lower case) contains.
_KEYWORDS: dict[str, tuple[str, ...]] = {
    "CONV_2D": ("convolution", "fully connected"),
    "DEPTHWISE_CONV_2D": ("convolution",),
    "TRANSPOSE_CONV": ("deconvolution",),
    "FULLY_CONNECTED": ("fully connected",),
    "BATCH_MATMUL": ("batch matrix", "fully connected"),
    "ADD": ("add",), "SUB": ("subtract",), "MUL": ("multiply",), "DIV": ("divide",),
    "MAXIMUM": ("maximum",), "MINIMUM": ("minimum",), "SQUARED_DIFFERENCE": ("squared difference",),
    "AVERAGE_POOL_2D": ("average pooling",), "MAX_POOL_2D": ("max pooling",),
    "MEAN": ("mean", "average pooling", "reduce"), "SUM": ("sum", "reduce"),
    "REDUCE_MAX": ("max", "reduce"),
    "PAD": ("pad",), "PADV2": ("pad",),
    "RESHAPE": ("reshape", "copy"), "SQUEEZE": ("reshape", "copy"),
    "EXPAND_DIMS": ("reshape", "copy"), "TRANSPOSE": ("transpose",),
    "CONCATENATION": ("concatenate", "copy"), "SPLIT": ("split", "slice", "copy"),
    "SPLIT_V": ("split", "slice", "copy"), "SLICE": ("slice",), "STRIDED_SLICE": ("slice",),
    "RELU": ("clamp", "relu"), "RELU6": ("clamp",), "RELU_N1_TO_1": ("clamp",),
    "RELU_0_TO_1": ("clamp",), "HARD_SWISH": ("hardswish", "hard swish"),
    "LOGISTIC": ("sigmoid",), "TANH": ("tanh",), "LEAKY_RELU": ("leaky",), "PRELU": ("prelu",),
    "ELU": ("elu",), "GELU": ("gelu",), "SOFTMAX": ("softmax",),
    "QUANTIZE": ("convert",), "DEQUANTIZE": ("convert",),
    "RESIZE_BILINEAR": ("resize",), "RESIZE_NEAREST_NEIGHBOR": ("resize",),
    "DEPTH_TO_SPACE": ("depth to space",), "SPACE_TO_DEPTH": ("space to depth",),
}
# Ops XNNPACK commonly fuses into a neighbour or turns into a no-op.
_FUSABLE = {"PAD", "PADV2", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "RELU", "RELU6", "RELU_N1_TO_1",
            "RELU_0_TO_1", "QUANTIZE", "DEQUANTIZE"}

MATCH, MISMATCH, SKIP_FUSABLE, SKIP_OTHER, EXTRA = 0.0, 3.0, 1.0, 4.0, 2.0
# XNNPACK runs the fused activation of an element-wise op (ADD with RELU) as its own Clamp
# operator: as an extra after its op it costs less than an ordinary extra, so that it is not
# matched to a fused-away PAD/RESHAPE that follows (a tie at 3 before, resolved the wrong way).
EXTRA_CLAMP = 0.5


def compatible(op_type: str, operator_name: str) -> bool:
    name = operator_name.lower()
    keys = _KEYWORDS.get(op_type.upper())
    if keys is None:
        # unknown pairing: a word of the op type in the operator name
        keys = tuple(w for w in op_type.lower().split("_") if len(w) > 2)
    return any(k in name for k in keys)


def align(op_types: Sequence[str], operators: Sequence[str]) -> tuple[list[list[int]], float]:
    """Map operators (runtime order) onto ops (execution order).

    Returns, per op, the indices of the operators whose time is that op's (empty: fused away), and
    the alignment cost (0 = every op matched an operator of its kind)."""
    n, m = len(op_types), len(operators)
    inf = float("inf")
    cost = [[inf] * (m + 1) for _ in range(n + 1)]
    move = [[""] * (m + 1) for _ in range(n + 1)]
    cost[0][0] = 0.0
    for i in range(n + 1):
        for j in range(m + 1):
            c = cost[i][j]
            if c == inf:
                continue
            if i < n and j < m:
                step = MATCH if compatible(op_types[i], operators[j]) else MISMATCH
                if c + step < cost[i + 1][j + 1]:
                    cost[i + 1][j + 1], move[i + 1][j + 1] = c + step, "m"
            if i < n:
                step = SKIP_FUSABLE if op_types[i].upper() in _FUSABLE else SKIP_OTHER
                if c + step < cost[i + 1][j]:
                    cost[i + 1][j], move[i + 1][j] = c + step, "s"
            if j < m and i > 0:   # an extra operator belongs to the op matched before it
                step = EXTRA_CLAMP if "clamp" in operators[j].lower() else EXTRA
                if c + step < cost[i][j + 1]:
                    cost[i][j + 1], move[i][j + 1] = c + step, "x"
    assign: list[list[int]] = [[] for _ in range(n)]
    i, j = n, m
    pending: list[int] = []
    while i > 0 or j > 0:
        mv = move[i][j]
        if mv == "m":
            assign[i - 1] = [j - 1] + pending[::-1]
            pending = []
            i, j = i - 1, j - 1
        elif mv == "s":
            i -= 1
        elif mv == "x":
            pending.append(j - 1)
            j -= 1
        else:  # operators before any op (cannot happen with i > 0 constraint) or empty
            break
    if pending and n:
        assign[0].extend(pending)
    return assign, cost[n][m]
