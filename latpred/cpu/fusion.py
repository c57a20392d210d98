"""Ops that TFLite/LiteRT's CPU runtime (the XNNPACK delegate) folds into a neighbouring op.

XNNPACK rewrites its subgraph before running it (``xnn_subgraph_fusion`` in XNNPACK's
``src/subgraph.c``, read at the version LiteRT 2.3 ships): a constant PAD whose only consumer is a
(depthwise) 2-D convolution becomes that convolution's own padding, so the PAD costs nothing in the
full run. The conditions replayed here: 4-D tensor, no padding of the batch or channel axis, pad
value 0 (PAD always pads with 0, or the zero point when quantized; PADV2 only when its constant is
0), exactly one consumer, which is CONV_2D or DEPTHWISE_CONV_2D with VALID padding (XNNPACK does not
fold into a convolution that already carries TensorFlow SAME padding), and the PAD's output is not a
graph output. MIRROR_PAD is never folded.

A 1x1, stride-1 pooling op without a fused activation is an identity: TFLite's XNNPACK delegate
defines it as a Clamp node with infinite bounds (``VisitAveragePool2DNode``/``VisitMaxPool2DNode``
in ``tensorflow/lite/delegates/xnnpack/xnnpack_delegate.cc``), and no operator of its own runs. The
rule is taken from measurements, which show it whatever produced the pool's input: 361 of the 381
identity pools in the host store read 0 ms, and 12 of the other 20 follow an op that itself
read 0 ms (the profiler put the pair's time on the second op). A pool that writes a graph output is
left alone (the output must still be written). A quantized AVERAGE_POOL_2D is no identity here:
the XNNPACK that LiteRT 2.3 ships takes no int8/uint8 average pooling, so the interpreter runs it
as a node of its own (seen in the in-graph profile: ~0.04 ms for a 1x1 pool of a small int8 CNN).

A chain of 8-bit element-wise ops becomes one lookup table
(``xnn_subgraph_fuse_unary_quantized_into_lut`` in XNNPACK's ``src/subgraph.c``, added 2025-05 and
in the XNNPACK that LiteRT 2.3 ships; read at google/XNNPACK 75db3c0): starting at a unary op (or a
binary one whose other operand is one constant scalar, or whose two operands are both values of the
chain, as in x * sigmoid(x)) that reads an 8-bit tensor, the chain takes the single consumer of its
last output while that is such an op too, up to 10 ops, and ends at the last op that writes an
8-bit tensor; with two or more ops all but the last are deleted and the last runs the table for all
of them. An int8 -> int8 QUANTIZE is delegated (and joins a chain) only with an input-to-output
scale ratio in [1/256, 128] (``tflite/delegates/xnnpack/xnnpack_delegate.cc``, google-ai-
edge/LiteRT f674577). The table's operator ("Invalid Unary Op") is named after no op, so the in-
graph profile gives its time to the chain op the alignment (:mod:`latpred.profiling.xnn_align`)
matches it to: the last one that is not a QUANTIZE/DEQUANTIZE or clamp (those are cheap for it to
drop). That op carries the chain's time here too and the others are folded into it: in the Xeon
int8 store a QUANTIZE after a LOGISTIC read 0 ms in 899 of 899 cases
(``datasets/host_xeon/CARD.md``).
"""
from __future__ import annotations

import math

from ..ir import ModelGraph, Op
from ..scenario import Scenario

FOLDING_RUNTIMES = ("litert", "tflite")
_PAD_TYPES = ("PAD", "PADV2")
_CONV_TYPES = ("CONV_2D", "DEPTHWISE_CONV_2D")
_POOL_TYPES = ("AVERAGE_POOL_2D", "MAX_POOL_2D")
# The TFLite ops the XNNPACK delegate defines as unary / binary element-wise nodes (VisitUnaryNode,
# VisitBinaryNode in xnnpack_delegate.cc); the LUT fusion takes both kinds.
_LUT_UNARY = frozenset({"ABS", "CEIL", "COS", "DEQUANTIZE", "ELU", "EXP", "FLOOR", "GELU",
                        "HARD_SWISH", "LEAKY_RELU", "LOGISTIC", "LOG", "NEG", "QUANTIZE", "RELU",
                        "RELU6", "RELU_N1_TO_1", "ROUND", "RSQRT", "SIN", "SQRT", "SQUARE", "TANH"})
_LUT_BINARY = frozenset({"ADD", "DIV", "MAXIMUM", "MINIMUM", "MUL", "PRELU",
                         "SQUARED_DIFFERENCE", "SUB"})
_LUT_MAX_OPS = 10            # XNN_MAX_UNARY_FUSION_NODES
# ops the profile alignment drops cheaply, so the table's time lands on another op of the chain
_LUT_TIME_SKIPS = frozenset({"QUANTIZE", "DEQUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1"})
_EIGHT_BIT = ("int8", "uint8")


def runtime_folds(scenario: Scenario) -> bool:
    """Whether a scenario's runtime folds ops into neighbours: TFLite/LiteRT on a CPU (XNNPACK),
    or ONNX Runtime's CPU execution provider (:mod:`.ort_fusion`) in its in-graph kind
    (``+opprof``: the optimized graph is timed; the plain kind times every node unoptimized).

    GPU scenarios predict kernels after their own fusion (:mod:`latpred.gpu`)."""
    if scenario.is_gpu:
        return False
    if scenario.runtime == "onnxruntime":
        return scenario.op_timing == "opprof"
    return scenario.runtime in FOLDING_RUNTIMES


def _zero_pad_value(op: Op) -> bool:
    if op.type == "PAD":
        return True
    value = op.attrs.get("pad_value")      # PADV2: its constant, when the file holds it
    return value is not None and value == op.attrs.get("pad_zero_point", 0.0)


def _spatial_only(op: Op) -> bool:
    pads = op.attrs.get("pads")
    if not pads or len(pads) != 4:
        return False
    return all(int(v) == 0 for v in (*pads[0], *pads[3]))


def _identity_pool(op: Op) -> bool:
    a = op.attrs
    return (op.type in _POOL_TYPES and a.get("kernel_h") == 1 and a.get("kernel_w") == 1
            and a.get("stride_h", 1) == 1 and a.get("stride_w", 1) == 1
            and a.get("activation", "NONE") in (None, "NONE"))


def _interpreter_pool(graph: ModelGraph, op: Op) -> bool:
    """A pool XNNPACK leaves to the interpreter: average pooling of a quantized tensor."""
    if op.type != "AVERAGE_POOL_2D" or not op.inputs:
        return False
    tensor = graph.tensors.get(op.inputs[0])
    return tensor is not None and str(tensor.dtype) in ("int8", "uint8")


def _is_8bit(graph: ModelGraph, tensor_id: int) -> bool:
    tensor = graph.tensors.get(tensor_id)
    return tensor is not None and str(tensor.dtype) in _EIGHT_BIT


def _delegated_quantize(graph: ModelGraph, op: Op) -> bool:
    """QUANTIZE between two 8-bit tensors: XNNPACK takes it within its scale-ratio bounds."""
    src, dst = graph.tensors.get(op.inputs[0]), graph.tensors.get(op.outputs[0])
    if src is None or dst is None or str(src.dtype) not in _EIGHT_BIT:
        return True                       # float -> int8: always delegated
    if str(src.dtype) != str(dst.dtype) or not src.quantization or not dst.quantization:
        return False
    ratio = src.quantization[0] / dst.quantization[0] if dst.quantization[0] else math.inf
    return 1.0 / 256.0 <= ratio <= 128.0


def _unary_input(graph: ModelGraph, op: Op, chain_values: set[int]) -> int | None:
    """The tensor a LUT would read for ``op`` (XNNPACK's ``is_pure_unary_elementwise``), or
    None."""
    if len(op.outputs) != 1:
        return None
    inputs = [t for t in op.inputs if t >= 0]
    if op.type in _LUT_UNARY and len(inputs) == 1:
        if op.type == "QUANTIZE" and not _delegated_quantize(graph, op):
            return None
        return inputs[0]
    if op.type in _LUT_BINARY and len(inputs) == 2:
        a, b = (graph.tensors.get(t) for t in inputs)
        if a is None or b is None:
            return None
        if b.is_constant and b.num_elements == 1 and not a.is_constant:
            return inputs[0]
        if a.is_constant and a.num_elements == 1 and not b.is_constant:
            return inputs[1]
        if inputs[0] in chain_values and inputs[1] in chain_values:
            return inputs[0]
    return None


def lut_chains(graph: ModelGraph) -> list[list[int]]:
    """The op chains XNNPACK runs as one lookup table, in execution order (module docstring)."""
    chains, taken = [], set()
    graph_outputs = set(graph.outputs)
    for op in graph.ops:
        if op.index in taken:
            continue
        source = _unary_input(graph, op, set())
        if source is None or not _is_8bit(graph, source):
            continue
        chain, values = [op.index], {source, op.outputs[0]}
        while len(chain) < _LUT_MAX_OPS:
            out = graph.ops[chain[-1]].outputs[0]
            consumers = graph.consumers(out)
            if len(consumers) != 1 or out in graph_outputs:
                break
            nxt = graph.ops[consumers[0]]
            if nxt.index in taken or _unary_input(graph, nxt, values) is None:
                break
            chain.append(nxt.index)
            values.add(nxt.outputs[0])
        while len(chain) > 1 and not _is_8bit(graph, graph.ops[chain[-1]].outputs[0]):
            chain.pop()
        if len(chain) > 1:
            chains.append(chain)
            taken.update(chain)
    return chains


def _lut_time_holder(graph: ModelGraph, chain: list[int]) -> int:
    kept = [i for i in chain if graph.ops[i].type not in _LUT_TIME_SKIPS]
    return kept[-1] if kept else chain[-1]


def folded_ops(graph: ModelGraph) -> dict[int, int]:
    """{index of a folded op: index of the op it is folded into}: XNNPACK's rules for a .tflite
    graph, ONNX Runtime's (:func:`.ort_fusion.folded_ops_ort`) for an ONNX one."""
    if graph.format == "onnx":
        from .ort_fusion import folded_ops_ort
        return folded_ops_ort(graph)
    if graph.format != "tflite":
        return {}
    out: dict[int, int] = {}
    graph_outputs = set(graph.outputs)
    for op in graph.ops:
        if _identity_pool(op) and op.inputs and not _interpreter_pool(graph, op):
            producer = graph.producer(op.inputs[0])
            if producer is not None and not set(op.outputs) & graph_outputs:
                out[op.index] = producer
            continue
        if op.type not in _PAD_TYPES or len(op.outputs) != 1:
            continue
        value = op.outputs[0]
        consumers = graph.consumers(value)
        if value in graph_outputs or len(consumers) != 1:
            continue
        consumer = graph.ops[consumers[0]]
        if consumer.type not in _CONV_TYPES or consumer.attrs.get("padding", "SAME") != "VALID":
            continue
        if _spatial_only(op) and _zero_pad_value(op):
            out[op.index] = consumer.index
    for chain in lut_chains(graph):
        holder = _lut_time_holder(graph, chain)
        out.update({i: holder for i in chain if i != holder})
    return out
