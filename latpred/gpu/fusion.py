"""Kernel fusion (paper Algorithm 3.1) as a pass over the graph IR.

The GPU delegate first rewrites the TFLite graph into its own graph (a fused activation of CONV_2D
etc. becomes a separate RELU/TANH/SIGMOID node; some graph transformations absorb PAD and constant
ADD/MUL into convolutions), then ``MergeNodes`` links element-wise nodes into their producer.
We rebuild that delegate graph from the IR (:func:`build_nodes`) and replay ``MergeNodes``
(:func:`merge_nodes`). Each value comes from latpred/kernels_rules/tflite-<version>/fusion.json.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable

from ..ir import ModelGraph, Op
from .rules import RuleSet

TensorKey = Hashable   # IR tensor id, or ('act', op_index) for the delegate's activation tensor


@dataclass
class DelegateNode:
    """One node of the delegate's graph; after merging, one GPU kernel."""
    ops: list[int]                 # IR op indices covered, in execution order
    main_op: int                   # op whose configuration defines the kernel (the root of a merge)
    type: str                      # delegate OperationType, e.g. CONVOLUTION_2D, RELU, ADD
    inputs: list[TensorKey]        # runtime inputs only (constants are node attributes)
    outputs: list[TensorKey]
    linkable: bool
    activation: str | None = None  # set on a node that is a split-off fused activation
    merged: list[str] = field(default_factory=list)  # delegate types linked into this node


def _pad_is_spatial(op: Op) -> bool:
    pads = op.attrs.get("pads")
    if not pads or len(pads) != 4:
        return False
    return pads[0] == [0, 0] and pads[3] == [0, 0]


def _is_channel_constant(graph: ModelGraph, op: Op) -> bool:
    """ADD/MUL with one runtime input and a scalar or per-channel constant."""
    consts = graph.constant_inputs(op)
    acts = graph.activation_inputs(op)
    if len(acts) != 1 or len(consts) != 1 or not op.outputs:
        return False
    c = graph.tensors[op.outputs[0]].shape[-1] if graph.tensors[op.outputs[0]].shape else 1
    n = consts[0].num_elements
    return n == 1 or n == c


def plan_transforms(graph: ModelGraph, gpu_ops: set[int], rules: RuleSet) -> tuple[dict[int, int], dict[int, int]]:
    """Graph transformations the delegate applies before building kernels.

    Returns (absorbed, removed): ``absorbed[op] = host op`` for a PAD merged into the following
    conv/pooling or a constant ADD/MUL merged into the preceding conv; ``removed[op] = -1`` for no-op
    nodes (single-input CONCAT/ADD, identity RESHAPE) whose output aliases their input."""
    gt = rules.fusion.get("graph_transforms", {})
    absorbed: dict[int, int] = {}
    removed: dict[int, int] = {}
    ops = graph.ops
    for op in ops:
        if op.index not in gpu_ops or not op.outputs:
            continue
        acts = graph.activation_inputs(op)
        out = graph.tensors[op.outputs[0]]
        if (op.type == "CONCATENATION" and gt.get("remove_single_input_concat", {}).get("enabled")
                and len(acts) == 1 and not graph.constant_inputs(op)):
            removed[op.index] = -1
        elif (op.type == "ADD" and gt.get("remove_single_input_add", {}).get("enabled")
              and len([t for t in op.inputs if t >= 0]) == 1):
            removed[op.index] = -1
        elif (op.type == "RESHAPE" and gt.get("remove_identity_reshape", {}).get("enabled")
              and acts and tuple(acts[0].shape) == tuple(out.shape)):
            removed[op.index] = -1
    mp = gt.get("merge_padding", {})
    if mp.get("enabled"):
        for op in ops:
            if op.index not in gpu_ops or op.type not in mp["pad_types"] or not _pad_is_spatial(op):
                continue
            cons = graph.consumers(op.outputs[0])
            if len(cons) == 1 and cons[0] in gpu_ops and ops[cons[0]].type in mp["into"] \
                    and ops[cons[0]].inputs[0] == op.outputs[0] and op.outputs[0] not in graph.outputs:
                absorbed[op.index] = cons[0]
    mc = gt.get("merge_convolution_with_add_mul", {})
    if mc.get("enabled"):
        for op in ops:
            if op.index not in gpu_ops or op.type not in mc["into"] or op.attrs.get("activation", "NONE") != "NONE":
                continue
            cons = graph.consumers(op.outputs[0])
            if len(cons) != 1 or op.outputs[0] in graph.outputs:
                continue
            nxt = ops[cons[0]]
            if nxt.index in gpu_ops and nxt.type in mc["op_types"] and _is_channel_constant(graph, nxt):
                absorbed[nxt.index] = op.index
    return absorbed, removed


def _broadcasts(graph: ModelGraph, ins: list[TensorKey], out: TensorKey) -> bool:
    def dims(k):
        s = list(graph.tensors[k].shape) if isinstance(k, int) else []
        return [1] * (4 - len(s)) + s if len(s) <= 4 else s
    od = dims(out)
    for k in ins:
        d = dims(k)
        if len(d) != len(od) or any(a != b and a == 1 for a, b in zip(d, od)):
            return True
    return False


def build_nodes(graph: ModelGraph, gpu_ops: list[int], rules: RuleSet,
                absorbed: dict[int, int], removed: dict[int, int]) -> list[DelegateNode]:
    """The delegate's node list for the ops in ``gpu_ops`` (execution order)."""
    tmap = rules.fusion["tflite_to_delegate"]["map"]
    act_map = rules.fusion["fused_activation"]["to_delegate"]
    linkable = rules.linkable
    reorder = rules.fusion.get("reorder_associative_inputs", {})
    alias: dict[int, int] = {}
    for i in removed:
        acts = [t for t in graph.ops[i].inputs if t >= 0 and not graph.tensors[t].is_constant]
        if acts:
            alias[graph.ops[i].outputs[0]] = acts[0]
    for i, host in absorbed.items():
        op = graph.ops[i]
        if op.type in ("PAD", "MIRROR_PAD"):     # the host reads the pad's input directly
            alias[op.outputs[0]] = op.inputs[0]

    def resolve(t: int) -> int:
        while t in alias:
            t = alias[t]
        return t

    hosted: dict[int, list[int]] = {}
    for i, host in absorbed.items():
        hosted.setdefault(host, []).append(i)
    producer_pos: dict[TensorKey, int] = {}
    nodes: list[DelegateNode] = []
    for i in gpu_ops:
        if i in removed or i in absorbed:
            continue
        op = graph.ops[i]
        chain = sorted([i] + hosted.get(i, []))
        last = graph.ops[max(chain)]       # a constant ADD/MUL absorbed after the conv
        ins = [resolve(t) for t in op.inputs if t >= 0 and not graph.tensors[t].is_constant]
        outs: list[TensorKey] = list(last.outputs)
        dtype = tmap.get(op.type, op.type)
        if (reorder.get("enabled") and dtype in reorder["op_types"] and len(ins) > 1
                and not _broadcasts(graph, ins, outs[0])):
            latest = max(range(len(ins)), key=lambda j: (producer_pos.get(ins[j], -1), -j))
            if producer_pos.get(ins[latest], -1) > producer_pos.get(ins[0], -1):
                ins[0], ins[latest] = ins[latest], ins[0]
        act = last.attrs.get("activation", "NONE")
        act_type = act_map.get(act) if act not in (None, "NONE") else None
        node_outs: list[TensorKey] = [("act", i)] if act_type else outs
        nodes.append(DelegateNode(ops=chain, main_op=i, type=dtype, inputs=ins, outputs=node_outs,
                                  linkable=dtype in linkable))
        for t in node_outs:
            producer_pos[t] = len(nodes) - 1
        if act_type:
            nodes.append(DelegateNode(ops=[i], main_op=i, type=act_type, inputs=[("act", i)],
                                      outputs=outs, linkable=act_type in linkable, activation=act))
            for t in outs:
                producer_pos[t] = len(nodes) - 1
    return nodes


def merge_nodes(nodes: list[DelegateNode], ready_inputs: set[TensorKey]) -> list[DelegateNode]:
    """Replay of the delegate's MergeNodes: link a node's single consumer into it when that consumer
    is linkable, reads the tensor as its first input, has one output and all its inputs are ready.

    Differences from the paper's pseudo-code (see latpred/kernels_rules/README.md): only *later* nodes are
    searched; every input of the consumer must be ready (not only the first); a tensor read twice by
    the same consumer counts as two consumers; the merged node is examined again, so chains link."""
    nodes = [DelegateNode(list(n.ops), n.main_op, n.type, list(n.inputs), list(n.outputs), n.linkable,
                          n.activation, list(n.merged)) for n in nodes]
    ready = set(ready_inputs)
    i = 0
    while i < len(nodes):
        node = nodes[i]
        ready.update(node.outputs)
        if len(node.outputs) != 1:
            i += 1
            continue
        out = node.outputs[0]
        next_nodes: list[int] = []
        link_index = 0
        for j in range(i + 1, len(nodes)):
            for k, t in enumerate(nodes[j].inputs):
                if t == out:
                    next_nodes.append(j)
                    link_index = k
        if len(next_nodes) != 1 or link_index != 0:
            i += 1
            continue
        nxt = nodes[next_nodes[0]]
        if not nxt.linkable or len(nxt.outputs) != 1 or not all(t in ready for t in nxt.inputs):
            i += 1
            continue
        node.inputs.extend(nxt.inputs[1:])
        node.outputs = [nxt.outputs[0]]
        node.ops = sorted(set(node.ops) | set(nxt.ops))
        node.merged.append(nxt.type)
        del nodes[next_nodes[0]]
        # stay on i: the merged node may link its new consumer too
    return nodes
