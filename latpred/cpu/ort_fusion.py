"""Ops of an ONNX model that ONNX Runtime's CPU execution provider folds into a neighbour.

ONNX Runtime rewrites the graph at session creation (``ORT_ENABLE_ALL``, its default; on x86 with
the NCHWc layout transformer); a file node the optimized graph no longer runs reads 0 ms in the
in-graph profile (:func:`latpred.profiling.onnxrt.measure_onnx_opprof`). The rules replay, from
the IR alone, the passes of onnxruntime v1.32 (``onnxruntime/core/optimizer/``) that remove nodes
from CNNs, in the order the runtime applies them:

1. Transposes (``transpose_optimization/onnx_transpose_optimization.cc``, the transpose optimizer):
   tf2onnx brackets NHWC-only ops with Transpose pairs; the optimizer pushes them through
   element-wise ops, Pad, Split/Concat and reductions and cancels inverse pairs. A Transpose that
   does not write a graph output is folded, and the later rules see through it, except one feeding
   a binary element-wise op whose other 4-D operand is not itself transposed: pushing it inserts a
   Transpose on that operand, which the profile charges to this file node.
2. Identity and Dropout (``identity_elimination.cc``, ``dropout_elimination.cc``): removed unless
   they write a graph output (Dropout only when its mask is unused).
3. Pad (``pad_fusion.cc``): mode ``constant``, value 0, constant non-negative pads with none on the
   batch and channel axes, one consumer, not a graph output, and the consumer a Conv without
   ``auto_pad`` SAME_*: the pads become the Conv's (also when the Conv has no ``pads`` attribute).
   Measured: a zero Pad before a MaxPool stays (-inf is MaxPool's padding); AveragePool is left
   out (the IR does not keep ``count_include_pad``). The reader keeps neither the Pad's mode nor its
   value: both are taken as the defaults unless ``op.attrs`` says otherwise.
4. Conv + constant Add/Mul of shape [C,1,1], Conv + BatchNormalization (``conv_add_fusion.cc``,
   ``conv_mul_fusion.cc``, ``conv_bn_fusion.cc``): the Conv has one consumer, which is no graph
   output.
5. Conv + activation (``conv_activation_fusion.cc``): a Conv (after 4) with one consumer, no graph
   output, then Relu, Sigmoid, Tanh, LeakyRelu, HardSigmoid or Clip with constant bounds. And
   ``x * Sigmoid(x)`` with a single-use Sigmoid (``quick_gelu_fusion.cc``): one QuickGelu node,
   which the profile names after the Sigmoid, so the Mul folds into the Sigmoid.
6. NCHWc (``nchwc_transformer.cc``, level 3, x86 only; block 16 with AVX-512, 8 with AVX2): a Conv
   with constant float 4-D weights goes blocked (output channels padded up to a block) when it is
   group-1 and its input is blocked, has fewer channels than a block or a multiple of 4, or
   depthwise with a blocked input or channels a multiple of 4; other grouped Convs never. Pools
   stay blocked only with channels a multiple of the block (measured: 728 channels reorder back);
   Relu/Sigmoid/Tanh/QuickGelu, Add/Mul of two blocked inputs of one shape, Concat of
   block-aligned blocked inputs stay blocked; anything else (Resize, Clip, ReduceMean, ...) reads
   NCHW. An Add of two blocked inputs folds into the first of its producers that is a blocked Conv
   with no activation, no fused sum and no other consumer (the Conv accumulates into the other
   input); a Relu/Sigmoid/Tanh/HardSigmoid on the single-use output of a blocked Conv without
   activation folds into it. A BatchNormalization on a blocked input becomes a blocked depthwise
   1x1 Conv (its kernel is charged to a Conv of the file, so the BN reads 0 ms) that an activation
   folds into likewise.
7. Conv + Add(residual) [+ activation] (``conv_add_act_fusion.cc``) for the Convs NCHWc left alone:
   one consumer, an Add of a non-constant tensor of the same shape, then optionally an activation
   on the Add's single-use output.
8. Gemm + activation (``gemm_activation_fusion.cc``), 2-D MatMul + constant Add
   (``matmul_add_fusion.cc``).

Measured agreement (ONNX Runtime 1.32.0, tf2onnx exports of Keras models, an AVX-512 host; 110
models: 94 synthetic NAS models, 16 zoo and Keras-application CNNs; 8124 IR ops): per model and op
type the rules give exactly the runtime's number of folded ops. Against ``measure_onnx_opprof``'s
``folded`` flags, op by op, 98.9 % of all ops agree (folded: 2746 both, 44 rule only, 44 runtime
only) with the alignment then in use, which matched optimized nodes to file nodes by kind
only; every disagreement was a pair of Add or Relu nodes inside one NCHWc stretch, the other node
of the pair marked folded. With a node that keeps its file name matched to that node first (as
:mod:`latpred.profiling.ort_align` now does), all 8124 agree.

Limit: the NCHWc block is this machine's (:func:`nchwc_block_size`), also when predicting for a
bundle measured elsewhere; ``LATPRED_ORT_NCHWC_BLOCK`` sets it.
"""
from __future__ import annotations

import os

from ..ir import ModelGraph, Op

_ACTIVATIONS = ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "Clip")
_NCHWC_ACTIVATIONS = ("Relu", "Sigmoid", "Tanh", "HardSigmoid")
_POOLS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")
_PAD_CHILDREN = ("Conv",)   # zero padding is not MaxPool's -inf nor, in general, AveragePool's
_ALIGN = 4          # channel alignment of MLAS's NCHWc reorders


def nchwc_block_size() -> int:
    """MLAS's NCHWc block on this host: 16 with AVX-512F, 8 with AVX2, 1 (no NCHWc) otherwise.

    ``LATPRED_ORT_NCHWC_BLOCK`` overrides it (predicting for another x86 CPU)."""
    env = os.environ.get("LATPRED_ORT_NCHWC_BLOCK", "").strip()
    if env.isdigit():
        return max(int(env), 1)
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return 1
    return 16 if "avx512f" in flags else 8 if "avx2" in flags else 1


class _View:
    """The graph with folded Transposes/Identities taken out: producers and consumers joined."""

    def __init__(self, graph: ModelGraph, passthrough: set[int]):
        self.g = graph
        self.passthrough = passthrough
        self._cons: dict[int, list[int]] = {}      # memo: fan-out chains stay linear
        self._out: dict[int, bool] = {}

    def source(self, tensor: int) -> int:
        """The tensor a value really is, through passthrough ops."""
        seen = 0
        while seen < 64:
            p = self.g.producer(tensor)
            if p is None or p not in self.passthrough:
                return tensor
            ins = [t for t in self.g.ops[p].inputs if t >= 0]
            if not ins:
                return tensor
            tensor = ins[0]
            seen += 1
        return tensor

    def producer(self, tensor: int) -> int | None:
        return self.g.producer(self.source(tensor))

    def consumers(self, tensor: int, depth: int = 0) -> list[int]:
        if tensor in self._cons:
            return self._cons[tensor]
        out: list[int] = []
        for c in self.g.consumers(tensor):
            if c in self.passthrough and depth < 64:
                for t in self.g.ops[c].outputs[:1]:
                    out += self.consumers(t, depth + 1)
            else:
                out.append(c)
        self._cons[tensor] = out
        return out

    def is_output(self, tensor: int, depth: int = 0) -> bool:
        if tensor not in self._out:
            self._out[tensor] = tensor in self.g.outputs or (depth < 64 and any(
                self.is_output(self.g.ops[c].outputs[0], depth + 1)
                for c in self.g.consumers(tensor) if c in self.passthrough and self.g.ops[c].outputs))
        return self._out[tensor]

    def shape(self, tensor: int) -> tuple[int, ...]:
        return self.g.tensors[self.source(tensor)].shape


_ELEMENTWISE = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Relu", "Clip", "Sigmoid", "Tanh",
                "LeakyRelu", "HardSigmoid", "HardSwish", "Neg", "Abs", "Exp", "Sqrt")


def _transposed(graph: ModelGraph, tensor: int, memo: dict[int, bool], depth: int = 0) -> bool:
    """Whether a value comes from a Transpose through element-wise ops (the optimizer can push
    that Transpose down to here)."""
    if tensor in memo:
        return memo[tensor]
    p = graph.producer(tensor)
    if p is None or depth > 16:
        return False
    op = graph.ops[p]
    ins = _act_inputs(graph, op)
    memo[tensor] = op.type == "Transpose" or (op.type in _ELEMENTWISE and bool(ins) and all(
        _transposed(graph, t, memo, depth + 1) for t in ins))
    return memo[tensor]


def _push_inserts_transpose(graph: ModelGraph, op: Op, memo: dict[int, bool]) -> bool:
    """A Transpose pushed through a binary element-wise op whose other operand is a 4-D activation
    not itself transposed: the optimizer inserts a Transpose on that operand, which ort_align
    charges to this file Transpose (measured on tf2onnx's NAS blocks: Clip, Transpose, Mul by a
    reshaped scale)."""
    rank = len(graph.tensors[op.outputs[0]].shape)
    for c in graph.consumers(op.outputs[0]):
        e = graph.ops[c]
        if e.type not in ("Add", "Sub", "Mul", "Div"):
            continue
        for t in _act_inputs(graph, e):
            if t != op.outputs[0] and len(graph.tensors[t].shape) == rank \
                    and not _transposed(graph, t, memo):
                return True
    return False


def _const(graph: ModelGraph, tensor: int) -> bool:
    return tensor >= 0 and graph.tensors[tensor].is_constant


def _act_inputs(graph: ModelGraph, op: Op) -> list[int]:
    return [t for t in op.inputs if t >= 0 and not graph.tensors[t].is_constant]


def _single_consumer(view: _View, tensor: int) -> int | None:
    cons = view.consumers(tensor)
    if len(cons) != 1 or view.is_output(tensor):
        return None
    return cons[0]


def _pad_ok(op: Op) -> bool:
    if op.attrs.get("mode", "constant") not in ("constant", b"constant"):
        return False
    if op.attrs.get("pad_value", 0.0) not in (0, 0.0):
        return False
    pads = op.attrs.get("pads")
    if not pads or any(int(v) < 0 for p in pads for v in p):
        return False
    # batch axis plus one channel axis unpadded (NCHW, or NHWC before the transposes are pushed)
    zero_axes = [i for i, p in enumerate(pads) if int(p[0]) == 0 and int(p[1]) == 0]
    return 0 in zero_axes and len(zero_axes) >= 2 and len(pads) - len(zero_axes) >= 1


def _bias_like(graph: ModelGraph, tensor: int, channels: int) -> bool:
    shape = graph.tensors[tensor].shape
    return (len(shape) == 3 and shape[0] == channels and shape[1:] == (1, 1)) or \
        (len(shape) == 4 and shape[0] == 1 and shape[1] == channels and shape[2:] == (1, 1))


def folded_ops_ort(graph: ModelGraph, block: int | None = None) -> dict[int, int]:
    """{index of a folded op: index of the op it is folded into} for an ONNX graph (see module)."""
    if graph.format != "onnx":
        return {}
    block = nchwc_block_size() if block is None else block
    ops = graph.ops
    out: dict[int, int] = {}

    # 1-2: transposes and identities vanish; fold each into its producer (else its consumer)
    passthrough: set[int] = set()
    for op in ops:
        if not op.outputs or op.outputs[0] in graph.outputs:
            continue
        if op.type == "Dropout" and len(op.outputs) > 1 and graph.consumers(op.outputs[1]):
            continue
        if op.type in ("Transpose", "Identity", "Dropout") and _act_inputs(graph, op):
            passthrough.add(op.index)
    view = _View(graph, passthrough)
    memo: dict[int, bool] = {}
    for i in sorted(passthrough):
        op = ops[i]
        if op.type == "Transpose" and _push_inserts_transpose(graph, op, memo):
            continue
        host = view.producer(op.inputs[0])
        if host is None:
            cons = view.consumers(op.outputs[0])
            host = cons[0] if cons else None
        if host is not None:
            out[i] = host

    # 3: Pad into its (through-transpose) consumer
    for op in ops:
        if op.type != "Pad" or not op.outputs or not _pad_ok(op):
            continue
        c = _single_consumer(view, op.outputs[0])
        if c is not None and ops[c].type in _PAD_CHILDREN and ops[c].attrs.get("padding") != "SAME":
            out[op.index] = c

    # 4-5: Conv + constant Add/Mul/BN, then + activation; ``tail`` = the tensor the fused Conv writes
    activation: dict[int, bool] = {}
    tail: dict[int, int] = {}
    for op in ops:
        if op.type != "Conv" or not op.outputs:
            continue
        t = op.outputs[0]
        filters = int(op.attrs.get("filters", 0))
        while True:
            c = _single_consumer(view, t)
            if c is None:
                break
            nxt = ops[c]
            others = [x for x in nxt.inputs if x >= 0 and view.source(x) != view.source(t)]
            if nxt.type in ("Add", "Mul") and len(others) == 1 and _const(graph, others[0]) \
                    and _bias_like(graph, others[0], filters) and not activation.get(op.index):
                out[c] = op.index
                t = nxt.outputs[0]
                continue
            if nxt.type == "BatchNormalization" and not activation.get(op.index) \
                    and all(_const(graph, x) for x in nxt.inputs[1:] if x >= 0):
                out[c] = op.index
                t = nxt.outputs[0]
                continue
            if nxt.type in _ACTIVATIONS and not activation.get(op.index) and (
                    nxt.type != "Clip" or all(_const(graph, x) for x in nxt.inputs[1:] if x >= 0)):
                out[c] = op.index
                activation[op.index] = True
                t = nxt.outputs[0]
            break
        tail[op.index] = t

    # 5b: x * Sigmoid(x) -> QuickGelu (the profiler names it after the Sigmoid: the Mul folds)
    for op in ops:
        if op.type != "Sigmoid" or op.index in out or not op.outputs:
            continue
        c = _single_consumer(view, op.outputs[0])
        if c is None or ops[c].type != "Mul" or c in out:
            continue
        x = view.source(op.inputs[0])
        if x in {view.source(t) for t in ops[c].inputs if t >= 0 and view.source(t) != view.source(op.outputs[0])}:
            out[c] = op.index

    # 6: NCHWc: track blocked tensors (by source id) and the blocked Conv that writes each
    blocked = _nchwc(graph, view, block, out, activation, tail) if block > 1 else {}
    nchwc_convs = {c for c in blocked.values() if c is not None}

    # 6b: Conv + Add(residual) [+ activation] on the Convs NCHWc left alone (conv_add_act_fusion.cc)
    for op in ops:
        if op.type != "Conv" or op.index in out or op.index in nchwc_convs or activation.get(op.index):
            continue
        t = tail.get(op.index, op.outputs[0])
        c = _single_consumer(view, t)
        if c is None or c in out or ops[c].type != "Add":
            continue
        ins = [x for x in ops[c].inputs if x >= 0]
        others = [x for x in ins if view.source(x) != view.source(t)]
        if len(ins) != 2 or len(others) != 1 or _const(graph, others[0]) \
                or sorted(view.shape(others[0])) != sorted(view.shape(t)):
            continue
        out[c] = op.index
        a = _single_consumer(view, ops[c].outputs[0])
        if a is not None and a not in out and ops[a].type in _ACTIVATIONS and (
                ops[a].type != "Clip" or all(_const(graph, x) for x in ops[a].inputs[1:] if x >= 0)):
            out[a] = op.index

    # 7: Gemm + activation, 2-D MatMul + constant Add
    for op in ops:
        if op.type not in ("Gemm", "MatMul") or not op.outputs:
            continue
        c = _single_consumer(view, op.outputs[0])
        if c is None or c in out:
            continue
        nxt = ops[c]
        if op.type == "Gemm" and nxt.type in _ACTIVATIONS[:-1]:
            out[c] = op.index
        elif op.type == "MatMul" and nxt.type == "Add" and len(graph.tensors[op.outputs[0]].shape) == 2:
            others = [x for x in nxt.inputs if x >= 0 and x != op.outputs[0]]
            if len(others) == 1 and _const(graph, others[0]):
                out[c] = op.index
    return _resolve(out)


def _resolve(out: dict[int, int]) -> dict[int, int]:
    """A host that is itself folded hands its folds on to its own host (cycles stop)."""
    done: dict[int, int] = {}
    for i in out:
        path, host = [i], out[i]
        while host in out and host not in done and host not in path:
            path.append(host)
            host = out[host]
        final = done.get(host, host)
        for j in path:
            done[j] = final
    return {i: h for i, h in done.items() if h != i}


def _nchwc(graph: ModelGraph, view: _View, block: int, out: dict[int, int],
           activation: dict[int, bool], tail: dict[int, int]) -> dict[int, int | None]:
    """Adds the NCHWc folds to ``out``; returns the blocked tensors (source id -> writer Conv)."""
    ops = graph.ops
    blocked: dict[int, int | None] = {}       # tensor -> blocked Conv writing it (None: other op)
    has_sum: set[int] = set()
    tail_of = {view.source(t): i for i, t in tail.items()}  # fused Conv output -> the Conv
    src = view.source

    for op in ops:
        if op.index in out or not op.outputs:
            continue
        ins = _act_inputs(graph, op)
        o = src(op.outputs[0])
        if op.type == "Conv":
            if not _conv_nchwc(graph, view, op, block, blocked, out):
                continue
            t = tail.get(op.index, op.outputs[0])
            blocked[src(t)] = op.index
            continue
        if not ins:
            continue
        if op.type in _POOLS:
            x = src(ins[0])
            shape = graph.tensors[x].shape
            if len(shape) == 4 and shape[1] % block == 0:     # measured: padded channels reorder back
                blocked[o] = None
            continue
        if op.type in ("Add", "Sum", "Mul") and len(ins) == 2 and len(op.inputs) == 2:
            a, b = src(ins[0]), src(ins[1])
            # sorted: one side may still be NHWC in the file (its transposes are pushed through)
            if a not in blocked or b not in blocked or sorted(view.shape(a)) != sorted(view.shape(b)):
                continue
            if op.type != "Mul":
                fused = False
                for x in (a, b):
                    conv = blocked[x]
                    if (conv is not None and not activation.get(conv) and conv not in has_sum
                            and len(view.consumers(x)) == 1 and tail_of.get(x) == conv):
                        out[op.index] = conv
                        has_sum.add(conv)
                        blocked[o] = conv
                        tail_of[o] = conv
                        fused = True
                        break
                if fused:
                    continue
            blocked[o] = None
            continue
        if op.type == "Sigmoid" and any(out.get(c) == op.index for c in graph.consumers(op.outputs[0])):
            if src(ins[0]) in blocked:                   # QuickGelu runs blocked
                mul = next(c for c in graph.consumers(op.outputs[0]) if out.get(c) == op.index)
                blocked[src(ops[mul].outputs[0])] = None
            continue
        if op.type in _NCHWC_ACTIVATIONS and len(ins) == 1:
            x = src(ins[0])
            if x not in blocked:
                continue
            conv = blocked[x]
            if (conv is not None and not activation.get(conv)
                    and len(view.consumers(x)) == 1 and not view.is_output(x)):
                out[op.index] = conv
                activation[conv] = True
                blocked[o] = conv
                continue
            blocked[o] = None
            continue
        if op.type == "Concat" and ins and all(src(x) in blocked for x in ins) \
                and all(len(view.shape(x)) == 4 and view.shape(x)[1] % block == 0 for x in ins):
            blocked[o] = None
            continue
        if op.type == "BatchNormalization" and src(ins[0]) in blocked and len(op.inputs) == 5 \
                and all(_const(graph, t) for t in op.inputs[1:]):
            # becomes a blocked depthwise 1x1 Conv (reads 0 ms: its kernel is matched to a Conv)
            host = graph.producer(src(ins[0]))
            if host is not None:
                out[op.index] = host
            blocked[o] = op.index
            tail_of[o] = op.index
    return blocked


def _conv_nchwc(graph: ModelGraph, view: _View, op: Op, block: int, blocked: dict,
                folded: dict) -> bool:
    if len(op.inputs) < 2 or op.inputs[0] < 0 or not _const(graph, op.inputs[1]):
        return False
    w = graph.tensors[op.inputs[1]]
    if len(w.shape) != 4 or w.dtype != "float32":
        return False
    x = view.source(op.inputs[0])
    p = graph.producer(x)
    if p is not None and graph.ops[p].type == "Pad" and p in folded:     # padding now in the Conv
        x = view.source(graph.ops[p].inputs[0])
    groups = int(op.attrs.get("groups", 1))
    cin = w.shape[1] * groups
    # ReorderInput pads channels up to a block but needs them aligned to 4
    if groups == 1:
        return x in blocked or cin < block or cin % _ALIGN == 0
    if w.shape[1] == 1 and groups == w.shape[0]:          # depthwise
        return x in blocked or cin % _ALIGN == 0
    return False
