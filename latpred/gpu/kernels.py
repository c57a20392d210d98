"""Kernel deduction for a mobile GPU: which kernels TFLite's GPU delegate runs for a model.

Pipeline (paper §4.1): ops the delegate does not take stay on the CPU; the rest is rewritten into
the delegate's graph, fused (Algorithm 3.1) and each convolution gets a kernel (Algorithm 3.2)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import categories
from ..errors import LatpredError
from ..features import FEATURES, op_features
from ..ir import ModelGraph, Op, spatial
from .fusion import DelegateNode, build_nodes, merge_nodes, plan_transforms
from .rules import DEFAULT_TFLITE_VERSION, GpuSpec, RuleSet, load_rules, resolve_gpu
from .selection import grouped_conv_supported, select_kernel

_CONV_TYPES = ("CONV_2D", "DEPTHWISE_CONV_2D")


@dataclass
class Kernel:
    kernel: str            # selection name (Conv2D, Winograd, ...) or the main op's type (ADD, MEAN, ...)
    category: str          # predictor key: selection name for convs, else the main op's category
    ops: list[int]         # IR op indices this kernel covers
    main_op: int
    dispatches: int = 1    # GPU programs launched (Winograd: 3)
    merged: list[str] = field(default_factory=list)
    activation: str | None = None   # a fused activation left as its own kernel (fusion disabled)

    def to_json(self) -> dict:
        return {"kernel": self.kernel, "ops": list(self.ops)}


@dataclass
class KernelGraph:
    gpu: GpuSpec
    tflite_version: str
    kernels: list[Kernel]
    cpu_fallback_ops: list[int]
    removed_ops: list[int]     # no-op nodes the delegate drops (identity reshape, 1-input concat)
    fusion: bool = True
    selection: bool = True

    def __len__(self) -> int:
        return len(self.kernels)

    def kernel_of(self, op_index: int) -> Kernel | None:
        for k in self.kernels:
            if op_index in k.ops:
                return k
        return None

    def count(self, kernel: str) -> int:
        return sum(1 for k in self.kernels if k.kernel == kernel)

    def to_json(self) -> dict:
        return {"gpu": self.gpu.name, "family": self.gpu.family, "tflite_version": self.tflite_version,
                "fusion": self.fusion, "selection": self.selection,
                "kernels": [k.to_json() for k in self.kernels],
                "cpu_fallback_ops": list(self.cpu_fallback_ops), "removed_ops": list(self.removed_ops)}


def _op_supported(graph: ModelGraph, op: Op, rules: RuleSet) -> bool:
    if op.type not in rules.supported_ops:
        return False
    act = op.attrs.get("activation", "NONE")
    if act not in rules.support["supported_fused_activations"]:
        return False
    runtime = [t for t in op.inputs if t >= 0 and not graph.tensors[t].is_constant]
    if op.type in ("ADD", "MUL") and len([t for t in op.inputs if t >= 0]) != 2:
        return False
    if op.type == "MUL" and len(runtime) == 2:
        a, b = (graph.tensors[t].shape for t in runtime)
        if len(a) == len(b) and any(x < y for x, y in zip(a, b)) and any(y < x for x, y in zip(a, b)):
            return False
    if op.type == "DEPTHWISE_CONV_2D":
        acts = graph.activation_inputs(op)
        cin = acts[0].shape[-1] if acts and acts[0].shape else 1
        if op.attrs.get("depth_multiplier", 1) != 1 and cin != 1:
            return False
    if op.type == "MEAN" and "axes" not in op.attrs:
        return False
    if op.type == "CONV_2D" and not grouped_conv_supported(graph, op, rules):
        return False
    return True


def _delegated_partitions(graph: ModelGraph, supported: list[bool], rules: RuleSet) -> list[list[int]]:
    """Runs of consecutive supported ops (execution order); the delegate takes the largest
    ``max_delegated_partitions`` of them. Approximates TFLite's GraphPartitionHelper."""
    runs: list[list[int]] = []
    cur: list[int] = []
    for op in graph.ops:
        if supported[op.index]:
            cur.append(op.index)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    limit = int(rules.support.get("delegation", {}).get("max_delegated_partitions", 1))
    if limit <= 0:
        return runs
    ranked = sorted(range(len(runs)), key=lambda r: (-len(runs[r]), r))[:limit]
    return [runs[r] for r in sorted(ranked)]


def _name_kernel(graph: ModelGraph, node: DelegateNode, gpu: GpuSpec, rules: RuleSet,
                 selection: bool) -> Kernel:
    op = graph.ops[node.main_op]
    dispatches = 1
    if node.activation is not None:          # fused activation kept apart (fusion disabled)
        name, category = node.activation, categories.ELEMENTWISE
    elif op.type in _CONV_TYPES:
        name, dispatches = select_kernel(graph, op, gpu, rules, selection=selection)
        category = name
    elif op.type == "FULLY_CONNECTED":
        name, category = op.type, categories.FULLY_CONNECTED
    else:
        name, category = op.type, op.category
    return Kernel(kernel=name, category=category, ops=list(node.ops), main_op=node.main_op,
                  dispatches=dispatches, merged=list(node.merged), activation=node.activation)


def deduce_kernels(graph: ModelGraph, gpu: str | GpuSpec, tflite_version: str = DEFAULT_TFLITE_VERSION,
                   fusion: bool = True, selection: bool = True) -> KernelGraph:
    """The kernels TFLite's GPU delegate (``tflite_version``) runs for ``graph`` on ``gpu``."""
    if graph.format != "tflite":
        raise LatpredError(f"{graph.path or graph.name}: GPU kernel deduction needs a .tflite model "
                           f"(the TFLite GPU delegate's rules); got {graph.format}")
    rules = load_rules(tflite_version)
    spec = resolve_gpu(gpu) if not isinstance(gpu, GpuSpec) else gpu
    supported = [_op_supported(graph, op, rules) for op in graph.ops]
    partitions = _delegated_partitions(graph, supported, rules)
    on_gpu = {i for part in partitions for i in part}
    cpu_ops = [op.index for op in graph.ops if op.index not in on_gpu]
    absorbed, removed = plan_transforms(graph, on_gpu, rules)
    kernels: list[Kernel] = []
    for part in partitions:
        nodes = build_nodes(graph, part, rules, absorbed, removed)
        if fusion:
            produced = {t for n in nodes for t in n.outputs}
            ready = {t for n in nodes for t in n.inputs if t not in produced}
            nodes = merge_nodes(nodes, ready)
        kernels.extend(_name_kernel(graph, n, spec, rules, selection) for n in nodes)
    return KernelGraph(gpu=spec, tflite_version=rules.version, kernels=kernels, cpu_fallback_ops=cpu_ops,
                       removed_ops=sorted(removed), fusion=fusion, selection=selection)


def _activation_features(graph: ModelGraph, op: Op) -> dict[str, float]:
    """A split-off activation reads the op's output tensor."""
    h, w, c = spatial(graph.tensors[op.outputs[0]].shape, graph.layout)
    f = {"input_hw": float(h if h == w else (h * w) ** 0.5), "input_c": float(c), "input_size": float(h * w * c)}
    return {k: f.get(k, 0.0) for k in FEATURES[categories.ELEMENTWISE]}


def kernel_feature_rows(graph: ModelGraph, kernel_graph: KernelGraph) -> list[tuple[str, dict[str, float]]]:
    """One (category, Table 3 features of the kernel's main op) row per GPU kernel, in kernel order.

    ``category`` is the predictor key: Conv2D / Winograd / GroupedConv2D / DepthwiseConv2D /
    FullyConnected for convolution kernels, otherwise the main op's category. Element-wise ops fused
    into a kernel add no row: their cost is part of the kernel's measured latency."""
    rows = []
    for k in kernel_graph.kernels:
        op = graph.ops[k.main_op]
        if k.activation is not None:
            rows.append((k.category, _activation_features(graph, op)))
        else:
            cat = k.category if k.category in FEATURES else op.category
            rows.append((k.category, op_features(graph, op, category=cat)))
    return rows
