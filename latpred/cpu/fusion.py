"""Ops that TFLite/LiteRT's CPU runtime (the XNNPACK delegate) folds into the op after them.

XNNPACK rewrites its subgraph before running it (``xnn_subgraph_fusion`` in XNNPACK's
``src/subgraph.c``, read at the version LiteRT 2.3 ships): a constant PAD whose only consumer is a
(depthwise) 2-D convolution becomes that convolution's own padding, so the PAD costs nothing in the
full run. The conditions replayed here: 4-D tensor, no padding of the batch or channel axis, pad
value 0 (PAD always pads with 0, or the zero point when quantized; PADV2 only when its constant is
0), exactly one consumer, which is CONV_2D or DEPTHWISE_CONV_2D with VALID padding (XNNPACK does not
fold into a convolution that already carries TensorFlow SAME padding), and the PAD's output is not a
graph output. MIRROR_PAD is never folded.

A 1x1, stride-1 pooling op is an identity: TFLite's XNNPACK delegate defines it as a Clamp node
(``VisitAveragePool2DNode``/``VisitMaxPool2DNode`` in ``tensorflow/lite/delegates/xnnpack/
xnnpack_delegate.cc``), and XNNPACK fuses a Clamp into its producer when the producer's output has no
other consumer, is not a graph output, and the producer can clamp its own output (add, subtract,
multiply, divide, convolutions, fully-connected, pooling, another clamp; ``xnn_subgraph_fusion``).
Measured: 93-96 % of the 381 identity pools in the host store read 0 ms.

Measured on the 104 real-world models (LiteRT 2.3.0, 1 core, in-graph op timings): every PAD this
rule folds read 0 ms, every PAD before a pooling op or with several consumers did not.
"""
from __future__ import annotations

from ..errors import LatpredError
from ..ir import ModelGraph, Op

FOLDING_RUNTIMES = ("litert", "tflite")
_PAD_TYPES = ("PAD", "PADV2")
_CONV_TYPES = ("CONV_2D", "DEPTHWISE_CONV_2D")
_POOL_TYPES = ("AVERAGE_POOL_2D", "MAX_POOL_2D")
# TFLite ops XNNPACK runs as nodes that take a fused output clamp
_CLAMPING_PRODUCERS = ("ADD", "SUB", "MUL", "DIV", "CONV_2D", "DEPTHWISE_CONV_2D",
                       "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "RELU", "RELU6",
                       "RELU_N1_TO_1", "RELU_0_TO_1",
                       # not in the fusion list read, but measured: 19 of 19 such pools read 0 ms
                       "CONCATENATION")


def runtime_folds(scenario: str) -> bool:
    """Whether a scenario's runtime folds PADs into convolutions: TFLite/LiteRT on a CPU (XNNPACK).

    GPU scenarios predict kernels after their own fusion (:mod:`latpred.gpu`); ONNX Runtime is not
    covered."""
    from ..profiling.scenario import parse_scenario
    try:
        sc = parse_scenario(scenario)
    except LatpredError:
        return False
    return not sc.is_gpu and sc.runtime in FOLDING_RUNTIMES


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
            and a.get("stride_h", 1) == 1 and a.get("stride_w", 1) == 1)


def folded_ops(graph: ModelGraph) -> dict[int, int]:
    """{index of a folded op: index of the op it is folded into} for a .tflite graph."""
    if graph.format != "tflite":
        return {}
    out: dict[int, int] = {}
    graph_outputs = set(graph.outputs)
    for op in graph.ops:
        if _identity_pool(op) and op.inputs:
            source = op.inputs[0]
            producer = graph.producer(source)
            if (producer is not None and source not in graph_outputs
                    and len(graph.consumers(source)) == 1
                    and graph.ops[producer].type in _CLAMPING_PRODUCERS):
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
