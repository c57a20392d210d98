"""Checks both readers run on the IR they build, so that a corrupt or hostile model is one clear
:class:`LatpredError` instead of a crash, a blow-up or silently wrong features later.

What a model must satisfy: tensor ranks, dims and sizes within bounds; every op the inputs and
outputs its type needs; convolution and pooling windows (kernel, stride, dilation) positive and
bounded; and the shapes of the modelled ops (conv, depthwise, pooling, fully connected, mean,
concat, split, pad, element-wise) consistent with their inputs and attributes. Ops latpred does not
model (category Other) are checked for arity and tensor bounds, and the common shape-preserving
ones (quantize, softmax, reshape, transpose, ...) for their output shape.
"""
from __future__ import annotations

import math

from .. import categories as C
from ..errors import LatpredError
from ..ir import ModelGraph, Op, Tensor

MAX_RANK = 8
MAX_DIM = 2**31 - 1
# Elements per tensor: far above any real activation or weight (2^36 float32 = 256 GiB), far below
# what overflows int64 arithmetic or float features.
MAX_ELEMENTS = 2**36
# Kernel sizes, strides, dilations and paddings.
MAX_WINDOW = 2**16

_INF = None
# op type -> (min inputs, max inputs or None, min outputs, max outputs or None). The first
# ``min inputs`` inputs must be present (not omitted).
ARITY: dict[str, tuple[int, int | None, int, int | None]] = {
    # TFLite
    "CONV_2D": (2, 3, 1, 1), "DEPTHWISE_CONV_2D": (2, 3, 1, 1), "FULLY_CONNECTED": (2, 3, 1, 2),
    "BATCH_MATMUL": (2, 2, 1, 1), "MEAN": (2, 2, 1, 1), "CONCATENATION": (1, _INF, 1, 1),
    "SPLIT": (2, 2, 1, _INF), "SPLIT_V": (3, 3, 1, _INF), "AVERAGE_POOL_2D": (1, 1, 1, 1),
    "MAX_POOL_2D": (1, 1, 1, 1), "L2_POOL_2D": (1, 1, 1, 1), "PAD": (2, 2, 1, 1),
    "PADV2": (2, 3, 1, 1), "MIRROR_PAD": (2, 2, 1, 1), "ADD_N": (1, _INF, 1, 1),
    "RESHAPE": (1, 2, 1, 1), "SOFTMAX": (1, 1, 1, 1), "TRANSPOSE": (2, 2, 1, 1),
    "QUANTIZE": (1, 1, 1, 1), "DEQUANTIZE": (1, 1, 1, 1),
    # ONNX
    "Conv": (2, 3, 1, 1), "MaxPool": (1, 1, 1, 2), "AveragePool": (1, 1, 1, 1),
    "GlobalAveragePool": (1, 1, 1, 1), "GlobalMaxPool": (1, 1, 1, 1), "ReduceMean": (1, 2, 1, 1),
    "Gemm": (2, 3, 1, 1), "MatMul": (2, 2, 1, 1), "Concat": (1, _INF, 1, 1),
    "Split": (1, 2, 1, _INF), "Pad": (1, 4, 1, 1), "Max": (1, _INF, 1, 1),
    "Min": (1, _INF, 1, 1), "Sum": (1, _INF, 1, 1), "Mean": (1, _INF, 1, 1),
    "Clip": (1, 3, 1, 1), "BatchNormalization": (5, 5, 1, 3),
}
_BINARY = C.BINARY_ELEMENTWISE_TYPES | {
    "SQUARED_DIFFERENCE", "PRELU", "EQUAL", "NOT_EQUAL", "GREATER", "GREATER_EQUAL", "LESS",
    "LESS_EQUAL", "PRelu", "Equal", "Greater", "Less"}
for _t in C.TFLITE_ELEMENTWISE | C.ONNX_ELEMENTWISE:
    if _t not in ARITY:
        ARITY[_t] = (2, 2, 1, 1) if _t in _BINARY else (1, 1, 1, 1)
ARITY.update({"STRIDED_SLICE": (4, 4, 1, 1), "Softmax": (1, 1, 1, 1), "Reshape": (2, 2, 1, 1),
              "Transpose": (1, 1, 1, 1), "Flatten": (1, 1, 1, 1)})
_DEFAULT_ARITY = (0, _INF, 1, _INF)
# TFLite inputs that carry an op's parameters rather than data.
_PARAM_INPUTS = {"MEAN": (1,), "PAD": (1,), "PADV2": (1, 2), "MIRROR_PAD": (1,), "SPLIT": (0,),
                 "SPLIT_V": (1, 2)}
# Ops outside Table 3's categories whose shapes are still checked: their input_size/output_size
# features (and the next op's input) come from them.
_SAME_SHAPE = {"QUANTIZE", "DEQUANTIZE", "SOFTMAX", "LOG_SOFTMAX", "CAST", "L2_NORMALIZATION",
               "Softmax", "LogSoftmax", "Cast", "Identity", "QuantizeLinear", "DequantizeLinear"}
_SAME_ELEMENTS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "Reshape", "Flatten", "Squeeze", "Unsqueeze"}


_WINDOWED = set(C.CONV_CATEGORIES) | {C.POOLING, C.FULLY_CONNECTED, C.MEAN}


def fail(graph_or_path, op: Op | None, what: str) -> LatpredError:
    path = graph_or_path.path if isinstance(graph_or_path, ModelGraph) else graph_or_path
    where = f"op {op.index} ({op.type}): " if op is not None else ""
    return LatpredError(f"{path}: {where}{what}")


def check_shape(path: str, what: str, shape) -> None:
    """Rank, dims and element count of one tensor shape (readers call it as soon as they see one)."""
    shape = tuple(shape)
    if len(shape) > MAX_RANK:
        raise LatpredError(f"{path}: {what} has rank {len(shape)} (latpred reads at most {MAX_RANK})")
    for d in shape:
        if d is not None and not 0 <= d <= MAX_DIM:
            raise LatpredError(f"{path}: {what} has dimension {d} (each must be in 0..{MAX_DIM})")
    n = math.prod(d for d in shape if d is not None)
    if n > MAX_ELEMENTS:
        raise LatpredError(f"{path}: {what} has shape {list(shape)}, {n} elements "
                           f"(latpred reads at most 2^{MAX_ELEMENTS.bit_length() - 1})")


def check_arity(path: str, op: Op) -> None:
    """Inputs and outputs the op type needs; readers call it before reading the op's attributes."""
    lo, hi, olo, ohi = ARITY.get(op.type, _DEFAULT_ARITY)
    n = len(op.inputs)
    if n < lo or (hi is not None and n > hi):
        want = f"{lo}" if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
        raise fail(path, op, f"needs {want} inputs, has {n}")
    missing = [k for k in range(lo) if op.inputs[k] < 0]
    if missing:
        raise fail(path, op, f"required input {missing[0]} is missing")
    m = len(op.outputs)
    if m < olo or (ohi is not None and m > ohi):
        want = f"{olo}" if olo == ohi else (f"at least {olo}" if ohi is None else f"{olo} to {ohi}")
        raise fail(path, op, f"needs {want} outputs, has {m}")
    if any(t < 0 for t in op.outputs):
        raise fail(path, op, "has an omitted output")


def _sh(t: Tensor) -> list[int]:
    return list(t.shape)


def broadcast(shapes: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    """numpy broadcasting of ``shapes``; None when they do not broadcast."""
    rank = max((len(s) for s in shapes), default=0)
    out = [1] * rank
    for s in shapes:
        for i, d in enumerate((1,) * (rank - len(s)) + tuple(s)):
            if d != 1:
                if out[i] not in (1, d):
                    return None
                out[i] = d
    return tuple(out)


def window_out(size: int, k: int, s: int, d: int, padding, begin: int = 0, end: int = 0,
               ceil: bool = False) -> list[int]:
    """Output sizes a window op may produce along one axis (two with ceil_mode: ONNX tools differ
    on dropping a last window that starts in the end padding). Empty when the window does not fit."""
    eff = (k - 1) * d + 1
    if padding == "SAME":
        return [-(-size // s)]
    span = size + begin + end - eff
    if span < 0:
        return []
    if not ceil:
        return [span // s + 1]
    out = -(-span // s) + 1
    alt = out - 1 if (out - 1) * s >= size + begin else out
    return sorted({out, alt})


class _Checker:
    def __init__(self, graph: ModelGraph, sources: set[int], converted: bool):
        self.g = graph
        self.converted = converted
        self.nchw = graph.layout == "NCHW"
        self.sources = sources

    def t(self, tid: int) -> Tensor:
        return self.g.tensors[tid]

    def run(self) -> None:
        g = self.g  # tensor shapes: the readers call check_shape on each as they read it
        for what, ids in (("graph input", g.inputs), ("graph output", g.outputs)):
            for t in ids:
                if t not in g.tensors:
                    raise fail(g, None, f"{what} refers to tensor {t}, which does not exist")
        produced_by: dict[int, int] = {}
        # Where a tensor's value can come from besides an earlier op.
        given = set(g.inputs) | self.sources | {t.id for t in g.tensors.values() if t.is_constant}
        for op in g.ops:
            check_arity(g.path, op)
            for t in op.inputs:
                if t < 0 or t in produced_by or t in given:
                    continue
                p = g.producer(t)
                later = f"which op {p} produces later" if p is not None else "which no op produces"
                raise fail(g, op, f"reads tensor {t} ('{self.t(t).name}'), {later}")
            for t in op.outputs:
                if t in produced_by:
                    raise fail(g, op, f"writes tensor {t} ('{self.t(t).name}'), which op "
                                      f"{produced_by[t]} already produces")
                produced_by[t] = op.index
            self.op(op)
        for t in g.outputs:
            if t not in produced_by and t not in given:
                raise fail(g, None, f"graph output tensor {t} ('{self.t(t).name}') is produced by no op")

    # -- per op ----------------------------------------------------------------------------------
    def op(self, op: Op) -> None:
        cat = op.category
        if cat == C.OTHER:
            return self.other(op)
        if self.converted:
            self.converter_invariants(op)
        # Features read the inputs and the first output.
        for t in [self.t(t) for t in op.inputs if t >= 0] + [self.t(op.outputs[0])]:
            if t.is_constant:
                continue
            if not t.shape_known:
                raise fail(self.g, op, f"the shape of tensor '{t.name}' is unknown (shape inference "
                                       f"could not determine it)")
            if 0 in t.shape and cat in _WINDOWED:  # no work to describe, no channels to divide
                raise fail(self.g, op, f"tensor '{t.name}' has an empty shape {_sh(t)}")
        if cat in C.CONV_CATEGORIES:
            self.conv(op)
        elif cat == C.POOLING or op.type in ("GlobalAveragePool", "GlobalMaxPool"):
            self.pool(op)
        elif cat == C.FULLY_CONNECTED:
            self.fc(op)
        elif cat == C.MEAN:
            self.mean(op)
        elif cat == C.CONCAT:
            self.concat(op)
        elif cat == C.SPLIT:
            self.split(op)
        elif cat == C.PADDING:
            self.pad(op)
        elif cat == C.ELEMENTWISE:
            self.elementwise(op)

    def converter_invariants(self, op: Op) -> None:
        """What the TFLite converter guarantees for Table 3's ops: they read an activation, take
        their parameters (axes, paddings, split sizes) as constants, and are not dead."""
        if not self.g.activation_inputs(op):
            raise fail(self.g, op, "has no activation input (only constants)")
        params = _PARAM_INPUTS.get(op.type, ())
        for k in params:
            if k < len(op.inputs) and op.inputs[k] >= 0 and not self.t(op.inputs[k]).is_constant:
                raise fail(self.g, op, f"input {k} (its parameters) is not a constant")
        if not any(self.g.consumers(t) or t in self.g.outputs for t in op.outputs):
            raise fail(self.g, op, "no op reads its output and it is no graph output")

    def other(self, op: Op) -> None:
        x = self.t(op.inputs[0]) if op.inputs and op.inputs[0] >= 0 else None
        y = self.t(op.outputs[0])
        if x is None or not x.shape_known or not y.shape_known:
            return
        if op.type in _SAME_SHAPE and x.shape != y.shape:
            raise fail(self.g, op, f"output shape {_sh(y)} differs from input shape {_sh(x)}")
        if op.type in _SAME_ELEMENTS and x.num_elements != y.num_elements:
            raise fail(self.g, op, f"output shape {_sh(y)} does not hold the {x.num_elements} "
                                   f"elements of input {_sh(x)}")
        if op.type in ("TRANSPOSE", "Transpose") and sorted(x.shape) != sorted(y.shape):
            raise fail(self.g, op, f"output shape {_sh(y)} is not a permutation of input {_sh(x)}")
        if op.type == "STRIDED_SLICE":
            for k in (1, 2, 3):
                if _sh(self.t(op.inputs[k])) != [len(x.shape)]:
                    raise fail(self.g, op, f"input {k} has shape {_sh(self.t(op.inputs[k]))}, "
                                           f"not [{len(x.shape)}]")

    def window(self, op: Op) -> None:
        a = op.attrs
        for k in ("kernel_h", "kernel_w", "stride_h", "stride_w", "dilation_h", "dilation_w"):
            v = a.get(k, 1)
            if not isinstance(v, int) or not 1 <= v <= MAX_WINDOW:
                raise fail(self.g, op, f"{k} {v} is not in 1..{MAX_WINDOW}")
        pads = a.get("padding")
        if isinstance(pads, list) and any(not 0 <= p <= MAX_WINDOW for p in pads):
            raise fail(self.g, op, f"pads {pads} are not in 0..{MAX_WINDOW}")
        if isinstance(pads, list) and op.category == C.POOLING and len(pads) >= 4:
            # A window that covers only padding has no value (ONNX Runtime refuses it too).
            n = len(pads) // 2
            for i, axis in enumerate("hw"):
                if max(pads[i], pads[n + i]) >= a.get(f"kernel_{axis}", 1):
                    raise fail(self.g, op, f"pads {pads} are not smaller than the kernel")

    def spatial_out(self, op: Op, x: list[int], y: list[int]) -> None:
        """Output H, W from the input, kernel, stride, dilation and padding (rank-4 maps)."""
        a = op.attrs
        hw_in = x[2:4] if self.nchw else x[1:3]
        hw_out = y[2:4] if self.nchw else y[1:3]
        pads = a.get("padding", "VALID")
        if isinstance(pads, list):
            n = len(pads) // 2
            if n < 2:
                raise fail(self.g, op, f"pads {pads} do not cover both spatial axes")
            begin, end, mode = pads[:2], pads[n:n + 2], "EXPLICIT"
        else:
            begin, end, mode = [0, 0], [0, 0], pads
        for i, axis in enumerate("hw"):
            k, s, d = a.get(f"kernel_{axis}", 1), a.get(f"stride_{axis}", 1), a.get(f"dilation_{axis}", 1)
            ok = window_out(hw_in[i], k, s, d, mode, begin[i], end[i], bool(a.get("ceil_mode")))
            if not ok:
                raise fail(self.g, op, f"kernel_{axis} {k} (dilation {d}) is larger than the padded "
                                       f"input ({hw_in[i]} + padding {begin[i] + end[i]})")
            if hw_out[i] not in ok:
                raise fail(self.g, op, f"output shape {y} does not follow from input {x}: "
                                       f"{'height' if axis == 'h' else 'width'} should be "
                                       f"{' or '.join(map(str, ok))}")

    def conv(self, op: Op) -> None:
        self.window(op)
        x, w, y = _sh(self.t(op.inputs[0])), _sh(self.t(op.inputs[1])), _sh(self.t(op.outputs[0]))
        if self.nchw and len(x) != 4:
            return  # 1-D / 3-D ONNX convs: ONNX shape inference has checked them
        if len(x) != 4 or len(w) != 4 or len(y) != 4:
            raise fail(self.g, op, f"needs rank-4 input, weights and output, has {x}, {w}, {y}")
        a = op.attrs
        cin, cout = (x[1], y[1]) if self.nchw else (x[3], y[3])
        if x[0] != y[0]:
            raise fail(self.g, op, f"output batch {y[0]} differs from input batch {x[0]}")
        if self.nchw:                      # ONNX weights [O, I/groups, KH, KW]
            groups = a.get("groups", 1)
            if not 1 <= groups <= max(cin, 1) or w[1] * groups != cin or w[0] % groups:
                raise fail(self.g, op, f"weights {w} with group {groups} do not fit input channels {cin}")
            kernel, filters = (w[2], w[3]), w[0]
        elif op.type == "CONV_2D":         # TFLite [O, KH, KW, I/groups]
            if w[3] < 1 or cin % w[3] or w[0] % (cin // w[3]):
                raise fail(self.g, op, f"weights {w} do not fit input channels {cin}")
            kernel, filters = (w[1], w[2]), w[0]
        else:                              # TFLite depthwise [1, KH, KW, I*multiplier]
            if w[0] != 1 or cin < 1 or w[3] % cin:
                raise fail(self.g, op, f"depthwise weights {w} do not fit input channels {cin}")
            kernel, filters = (w[1], w[2]), w[3]
        if kernel != (a.get("kernel_h"), a.get("kernel_w")):
            raise fail(self.g, op, f"kernel {a.get('kernel_h')}x{a.get('kernel_w')} differs from "
                                   f"the weights' {kernel[0]}x{kernel[1]}")
        if cout != filters:
            raise fail(self.g, op, f"output channels {cout} differ from the weights' {filters}")
        if len(op.inputs) > 2 and op.inputs[2] >= 0 and self.t(op.inputs[2]).num_elements != filters:
            raise fail(self.g, op, f"bias {_sh(self.t(op.inputs[2]))} does not match {filters} filters")
        self.spatial_out(op, x, y)

    def pool(self, op: Op) -> None:
        x, y = _sh(self.t(op.inputs[0])), _sh(self.t(op.outputs[0]))
        if op.type in ("GlobalAveragePool", "GlobalMaxPool"):
            if len(x) < 3 or y != x[:2] + [1] * (len(x) - 2):
                raise fail(self.g, op, f"output shape {y} does not follow from input {x}")
            return
        self.window(op)
        if self.nchw and len(x) != 4:
            return
        if len(x) != 4 or len(y) != 4:
            raise fail(self.g, op, f"needs rank-4 input and output, has {x}, {y}")
        c = 1 if self.nchw else 3
        if x[0] != y[0] or x[c] != y[c]:
            raise fail(self.g, op, f"output shape {y} does not follow from input {x}: batch and "
                                   f"channels must be kept")
        self.spatial_out(op, x, y)

    def fc(self, op: Op) -> None:
        x, w, y = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        xs, ws, ys = _sh(x), _sh(w), _sh(y)
        a = op.attrs
        if op.type == "FULLY_CONNECTED":
            if len(ws) != 2 or ws[1] < 1 or x.num_elements % ws[1]:
                raise fail(self.g, op, f"weights {ws} do not fit input {xs}")
            want = x.num_elements // ws[1] * ws[0]
            if not ys or ys[-1] != ws[0] or y.num_elements != want:
                raise fail(self.g, op, f"output shape {ys} does not follow from input {xs} and "
                                       f"weights {ws}")
            out_f = ws[0]
        elif op.type == "Gemm":
            if len(xs) != 2 or len(ws) != 2:
                raise fail(self.g, op, f"needs rank-2 inputs, has {xs}, {ws}")
            m, k = xs[::-1] if a.get("trans_a") else xs
            k2, n = ws[::-1] if a.get("trans_b") else ws
            if k != k2 or ys != [m, n]:
                raise fail(self.g, op, f"output shape {ys} does not follow from inputs {xs}, {ws}")
            out_f = n
        else:                                   # MatMul / BATCH_MATMUL: numpy matmul
            if not xs or not ws:
                raise fail(self.g, op, f"needs inputs of rank 1 or more, has {xs}, {ws}")
            xm = [1] + xs if len(xs) == 1 else list(xs)
            wm = ws + [1] if len(ws) == 1 else list(ws)
            if a.get("adj_x"):
                xm[-2:] = xm[-1:-3:-1]
            if a.get("adj_y"):
                wm[-2:] = wm[-1:-3:-1]
            batch = broadcast([tuple(xm[:-2]), tuple(wm[:-2])])
            want = None if batch is None or xm[-1] != wm[-2] else list(batch) + [xm[-2], wm[-1]]
            if want is not None:
                if len(xs) == 1:
                    del want[-2]
                if len(ws) == 1:
                    del want[-1]
            if want != ys:
                raise fail(self.g, op, f"output shape {ys} does not follow from inputs {xs}, {ws}")
            out_f = ys[-1] if ys else 1
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            bs = tuple(_sh(self.t(op.inputs[2])))
            ok = (self.t(op.inputs[2]).num_elements == out_f if op.type == "FULLY_CONNECTED"
                  else broadcast([bs, tuple(ys)]) == tuple(ys))
            if not ok:
                raise fail(self.g, op, f"bias {list(bs)} does not fit output {ys}")

    def mean(self, op: Op) -> None:
        x, y = _sh(self.t(op.inputs[0])), _sh(self.t(op.outputs[0]))
        a = op.attrs
        if op.type == "GlobalAveragePool":
            return self.pool(op)
        axes = a.get("axes")
        if axes is None:
            return
        keep = a.get("keepdims", False)
        want = [1 if i in axes else d for i, d in enumerate(x)] if keep else [
            d for i, d in enumerate(x) if i not in axes]
        if y != want:
            raise fail(self.g, op, f"output shape {y} does not follow from input {x} reduced over "
                                   f"axes {axes}")

    def concat(self, op: Op) -> None:
        y = _sh(self.t(op.outputs[0]))
        axis = op.attrs.get("axis")
        parts = [_sh(self.t(t)) for t in op.inputs if t >= 0]
        if axis is None:
            return
        if any(len(p) != len(y) for p in parts) or not 0 <= axis < len(y):
            raise fail(self.g, op, f"inputs {parts} and output {y} differ in rank")
        for p in parts:
            if any(p[i] != y[i] for i in range(len(y)) if i != axis):
                raise fail(self.g, op, f"input {p} does not fit output {y} (axis {axis})")
        if sum(p[axis] for p in parts) != y[axis]:
            raise fail(self.g, op, f"inputs {parts} do not add up to output {y} along axis {axis}")

    def split(self, op: Op) -> None:
        data = op.inputs[1] if op.type == "SPLIT" else op.inputs[0]
        x = _sh(self.t(data))
        axis = op.attrs.get("axis")
        parts = [_sh(self.t(t)) for t in op.outputs]
        if op.type == "SPLIT" and op.attrs.get("num_splits") not in (None, len(parts)):
            raise fail(self.g, op, f"num_splits {op.attrs['num_splits']} but {len(parts)} outputs")
        if axis is None:
            return
        if any(len(p) != len(x) for p in parts) or not 0 <= axis < len(x):
            raise fail(self.g, op, f"outputs {parts} and input {x} differ in rank")
        for p in parts:
            if any(p[i] != x[i] for i in range(len(x)) if i != axis):
                raise fail(self.g, op, f"output {p} does not fit input {x} (axis {axis})")
        if sum(p[axis] for p in parts) != x[axis]:
            raise fail(self.g, op, f"outputs {parts} do not add up to input {x} along axis {axis}")

    def pad(self, op: Op) -> None:
        x, y = _sh(self.t(op.inputs[0])), _sh(self.t(op.outputs[0]))
        pads = op.attrs.get("pads")
        if pads is None:
            # paddings not readable as a constant: a pad still never shrinks a dimension
            if op.type != "Pad" and (len(y) != len(x) or any(b < a for a, b in zip(x, y))):
                raise fail(self.g, op, f"output shape {y} is smaller than its input {x}")
            return
        if len(pads) != len(x):
            raise fail(self.g, op, f"pads {pads} do not match input rank {len(x)}")
        negative_ok = op.type == "Pad"          # ONNX Pad crops with negative pads
        for b, e in pads:
            if abs(b) > MAX_DIM or abs(e) > MAX_DIM or (not negative_ok and (b < 0 or e < 0)):
                raise fail(self.g, op, f"pads {pads} are out of range")
        if y != [d + b + e for d, (b, e) in zip(x, pads)]:
            raise fail(self.g, op, f"output shape {y} does not follow from input {x} and pads {pads}")

    def elementwise(self, op: Op) -> None:
        y = tuple(_sh(self.t(op.outputs[0])))
        ins = [tuple(_sh(self.t(t))) for t in op.inputs if t >= 0]
        if op.type == "BatchNormalization":
            want = ins[0]
        else:
            want = broadcast(ins)
        if want != y:
            raise fail(self.g, op, f"output shape {list(y)} does not follow from inputs "
                                   f"{[list(s) for s in ins]}")


def validate_graph(graph: ModelGraph, sources: set[int] = frozenset(),
                   converted: bool = False) -> ModelGraph:
    """Raise LatpredError naming the op and what is wrong when ``graph`` is not consistent.
    ``sources``: tensors that hold values without being graph inputs, constants or op outputs
    (TFLite variable tensors). ``converted``: the graph comes from the TFLite converter, which
    folds ops on constants and removes dead ops (ONNX exports may keep both)."""
    _Checker(graph, set(sources), converted).run()
    return graph
