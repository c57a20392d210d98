"""Per-operation features of the paper's Table 3, and multiply-accumulate counts.

Conventions (also in the README and the `inspect --json` output):
- FLOPs are counted as multiply-accumulates (MACs): one MAC = one multiply plus one add.
  For pooling and mean, which have no multiply, ``flops`` counts one MAC-equivalent per element read
  by the window. Only convolutions and fully-connected ops contribute to a model's total ``macs``.
- Table 3 writes "input height (width)" as one feature because its networks use square maps; for a
  non-square map we use sqrt(H*W), which equals H when H == W and keeps H*W*C == input size.
- Sizes are element counts (input_size = H*W*C of the activation input, kernel_size = weight elements).
- Table 3 lists "kernel height (width)" for Concat and Split, which have no kernel; in that slot we
  put the number of tensors joined or produced (``num_parts``).
"""
from __future__ import annotations

import math

from .categories import (CONCAT, CONV2D, CONV_CATEGORIES, DEPTHWISE_CONV2D, ELEMENTWISE,
                         FULLY_CONNECTED, GROUPED_CONV2D, MEAN, OTHER, PADDING, POOLING, SPLIT)
from .ir import ModelGraph, Op, spatial

CONV_FEATURES = ("input_hw", "input_c", "output_hw", "stride", "kernel_hw", "filters",
                 "input_size", "output_size", "kernel_size", "flops")
FEATURES: dict[str, tuple[str, ...]] = {
    CONV2D: CONV_FEATURES,
    DEPTHWISE_CONV2D: CONV_FEATURES,
    GROUPED_CONV2D: CONV_FEATURES[:-1] + ("groups", "flops"),
    FULLY_CONNECTED: ("input_c", "filters", "param_size", "flops"),
    MEAN: ("input_hw", "input_c", "kernel_hw", "input_size", "flops"),
    CONCAT: ("input_hw", "input_c", "num_parts", "output_c", "input_size", "output_size"),
    SPLIT: ("input_hw", "input_c", "num_parts", "output_c", "input_size", "output_size"),
    POOLING: ("input_hw", "input_c", "output_hw", "stride", "kernel_hw", "input_size",
                "output_size", "flops"),
    PADDING: ("input_hw", "input_c", "output_hw", "pad_size", "output_size"),
    ELEMENTWISE: ("input_hw", "input_c", "input_size"),
    # Not in Table 3: the fallback category gets memory-traffic features only.
    OTHER: ("input_size", "output_size"),
}
# GPU kernel types (after kernel selection) share the features of the op category they came from.
FEATURES["Winograd"] = CONV_FEATURES
ALL_FEATURES: tuple[str, ...] = tuple(dict.fromkeys(f for fs in FEATURES.values() for f in fs))


def _hw(h: int, w: int) -> float:
    return float(h) if h == w else math.sqrt(h * w)


def op_macs(graph: ModelGraph, op: Op) -> int:
    """Multiply-accumulates of convolutions and fully-connected ops; 0 for everything else."""
    if op.category in CONV_CATEGORIES:
        acts = graph.activation_inputs(op)
        if not acts or not op.outputs:
            return 0
        _, _, cin = spatial(acts[0].shape, graph.layout)
        # Every output element (batch included, as FullyConnected counts its rows) is one window.
        out = graph.tensors[op.outputs[0]].num_elements
        groups = max(int(op.attrs.get("groups", 1)), 1)
        kh, kw = op.attrs.get("kernel_h", 1), op.attrs.get("kernel_w", 1)
        return int(out * kh * kw * (cin // groups))
    if op.category == FULLY_CONNECTED:
        return int(op.attrs.get("macs", 0))
    return 0


def op_features(graph: ModelGraph, op: Op, category: str | None = None) -> dict[str, float]:
    """Table 3 features of one op (``category`` overrides the op's own, e.g. for GPU kernels)."""
    cat = category or op.category
    acts = graph.activation_inputs(op)
    outs = graph.output_tensors(op)
    in_t = acts[0] if acts else (outs[0] if outs else None)
    ih, iw, ic = spatial(in_t.shape, graph.layout) if in_t is not None else (1, 1, 1)
    oh, ow, oc = spatial(outs[0].shape, graph.layout) if outs else (1, 1, 1)
    a = op.attrs
    f: dict[str, float] = {
        "input_hw": _hw(ih, iw), "input_c": ic, "output_hw": _hw(oh, ow), "output_c": oc,
        "input_size": ih * iw * ic, "output_size": oh * ow * oc,
        "stride": _hw(a.get("stride_h", 1), a.get("stride_w", 1)),
        "kernel_hw": _hw(a.get("kernel_h", 1), a.get("kernel_w", 1)),
    }
    if cat in CONV_CATEGORIES or cat == "Winograd":
        weights = graph.constant_inputs(op)
        f["filters"] = oc
        f["kernel_size"] = weights[0].num_elements if weights else (
            a.get("kernel_h", 1) * a.get("kernel_w", 1) * ic // max(a.get("groups", 1), 1) * oc)
        f["groups"] = a.get("groups", 1)
        f["flops"] = op_macs(graph, op)
    elif cat == FULLY_CONNECTED:
        f["input_c"] = a.get("in_features", ic)
        f["filters"] = a.get("out_features", oc)
        f["param_size"] = sum(t.num_elements for t in graph.constant_inputs(op))
        f["flops"] = op_macs(graph, op)
    elif cat == MEAN:
        f["kernel_hw"] = _hw(a.get("kernel_h", ih), a.get("kernel_w", iw))
        f["flops"] = f["input_size"]
    elif cat in (CONCAT, SPLIT):
        f["num_parts"] = len(acts) if cat == CONCAT else len(outs)
        if cat == CONCAT:
            # Channels and size over all joined inputs: the op reads every one of them.
            f["input_c"] = sum(spatial(t.shape, graph.layout)[2] for t in acts)
            f["input_size"] = sum(t.num_elements for t in acts)
        else:
            f["output_c"] = oc
            f["output_size"] = sum(t.num_elements for t in outs)
    elif cat == POOLING:
        f["flops"] = f["output_size"] * a.get("kernel_h", 1) * a.get("kernel_w", 1)
    elif cat == PADDING:
        f["pad_size"] = f["output_size"] - f["input_size"]
    elif cat == ELEMENTWISE:
        # Element-wise ops may broadcast a small input: describe the largest one.
        if acts:
            big = max(acts, key=lambda t: t.num_elements)
            ih, iw, ic = spatial(big.shape, graph.layout)
            f.update(input_hw=_hw(ih, iw), input_c=ic, input_size=big.num_elements)
    names = FEATURES.get(cat, FEATURES[OTHER])
    return {k: float(f.get(k, 0.0)) for k in names}


# Row flag, not a model input: 1.0 when the CPU runtime folds the op into the op after it
# (:mod:`latpred.cpu.fusion`); such ops cost 0 ms where the bundle's runtime does that.
FOLDED = "folded"


def graph_features(graph: ModelGraph) -> list[dict[str, float]]:
    """``op_features`` of every op, with the ``folded`` flag on ops the CPU runtime folds away."""
    from .cpu.fusion import folded_ops
    feats = [op_features(graph, op) for op in graph.ops]
    for index in folded_ops(graph):
        feats[index][FOLDED] = 1.0
    return feats
