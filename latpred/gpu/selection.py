"""Convolution kernel selection (paper Algorithm 3.2), replaying TFLite's GPU delegate.

Sources (v2.10-era, cited per value in latpred/kernels_rules/tflite-2.10/selection.json):
operation_selector.cc (case CONVOLUTION_2D, IsRecommendedForWinograd4x4To6x6) and
winograd_util.cc (IsSuitableForWinograd4x4To6x6)."""
from __future__ import annotations

import math

from .. import categories
from ..ir import ModelGraph, Op, spatial
from .rules import GpuSpec, RuleSet

CONV2D = "Conv2D"
WINOGRAD = "Winograd"
GROUPED_CONV2D = "GroupedConv2D"
DEPTHWISE_CONV2D = "DepthwiseConv2D"
FULLY_CONNECTED = "FullyConnected"


def _conv_channels(graph: ModelGraph, op: Op) -> tuple[int, int]:
    acts = graph.activation_inputs(op)
    cin = spatial(acts[0].shape, graph.layout)[2] if acts else 1
    cout = spatial(graph.tensors[op.outputs[0]].shape, graph.layout)[2]
    return cin, cout


def grouped_conv_supported(graph: ModelGraph, op: Op, rules: RuleSet) -> bool:
    """The delegate builds a grouped CONV_2D only when each group's input and output channel counts
    are multiples of 4; otherwise it refuses the op. The code tests the *per-group* input channels
    (the weights' I dimension), not the layer's input channels as the paper's line 6 writes."""
    groups = int(op.attrs.get("groups", 1))
    if op.type != "CONV_2D" or groups <= 1:
        return True
    rule = rules.selection["grouped_conv"]
    cin, cout = _conv_channels(graph, op)
    return ((cin // groups) % rule["per_group_input_channels_multiple"] == 0
            and (cout // groups) % rule["per_group_output_channels_multiple"] == 0)


def winograd_check(graph: ModelGraph, op: Op, gpu: GpuSpec, rules: RuleSet) -> dict:
    """Every quantity Algorithm 3.2 looks at, and the verdict (``winograd``)."""
    w = rules.selection["winograd"]
    suit = w["suitable"]
    a = op.attrs
    cin, cout = _conv_channels(graph, op)
    oh, ow, _ = spatial(graph.tensors[op.outputs[0]].shape, graph.layout)
    tile = w["tile"]
    src_depth, dst_depth = math.ceil(cin / 4), math.ceil(cout / 4)
    total_tiles = math.ceil(ow / tile) * math.ceil(oh / tile)
    t = rules.winograd_thresholds(gpu.family)
    suitable = (op.type == "CONV_2D"
                and [a.get("kernel_h", 1), a.get("kernel_w", 1)] == suit["kernel"]
                and [a.get("stride_h", 1), a.get("stride_w", 1)] == suit["stride"]
                and [a.get("dilation_h", 1), a.get("dilation_w", 1)] == suit["dilation"]
                and int(a.get("groups", 1)) == suit["groups"])
    channels_ok = src_depth >= t["min_src_depth"] and dst_depth >= t["min_dst_depth"]
    tiles_ok = total_tiles >= t["min_tiles"]
    return {"src_depth": src_depth, "dst_depth": dst_depth, "total_tiles": total_tiles,
            "suitable": suitable, "channels_ok": channels_ok, "tiles_ok": tiles_ok,
            "winograd": bool(suitable and channels_ok and tiles_ok)}


def _is_fc_equivalent(graph: ModelGraph, op: Op) -> bool:
    """make_fully_connected_from_convolution: a 1x1, stride-1, unpadded conv over a 1x1 map."""
    a = op.attrs
    acts = graph.activation_inputs(op)
    if not acts:
        return False
    h, w, _ = spatial(acts[0].shape, graph.layout)
    return (a.get("kernel_h", 1) == 1 and a.get("kernel_w", 1) == 1 and a.get("stride_h", 1) == 1
            and a.get("stride_w", 1) == 1 and a.get("dilation_h", 1) == 1 and a.get("dilation_w", 1) == 1
            and int(a.get("groups", 1)) == 1 and h == 1 and w == 1)


def select_kernel(graph: ModelGraph, op: Op, gpu: GpuSpec, rules: RuleSet,
                  selection: bool = True) -> tuple[str, int]:
    """(kernel type, GPU dispatches) for a convolution op. With ``selection=False`` every conv keeps
    its op category (no Winograd): the "w/o kernel selection" baseline of the paper's Fig. 20."""
    if op.type == "DEPTHWISE_CONV_2D" or op.category == categories.DEPTHWISE_CONV2D:
        return DEPTHWISE_CONV2D, 1
    if int(op.attrs.get("groups", 1)) > 1:
        return GROUPED_CONV2D, 1
    if not selection:
        return CONV2D, 1
    if rules.selection.get("fully_connected_from_conv", {}).get("enabled") and _is_fc_equivalent(graph, op):
        return FULLY_CONNECTED, 1
    if winograd_check(graph, op, gpu, rules)["winograd"]:
        return WINOGRAD, int(rules.selection["winograd"]["dispatches"])
    return CONV2D, 1
