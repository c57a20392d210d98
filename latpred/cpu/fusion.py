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
"""
from __future__ import annotations

from ..ir import ModelGraph, Op
from ..scenario import Scenario

FOLDING_RUNTIMES = ("litert", "tflite")
_PAD_TYPES = ("PAD", "PADV2")
_CONV_TYPES = ("CONV_2D", "DEPTHWISE_CONV_2D")
_POOL_TYPES = ("AVERAGE_POOL_2D", "MAX_POOL_2D")


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
    return out
