"""Map ONNX Runtime's profiled nodes (of the graph it optimized) onto the nodes of the model file.

ONNX Runtime rewrites the graph before it runs it (``onnxruntime/core/optimizer/``, v1.32:
Conv with a following activation becomes one ``FusedConv``, Conv + BatchNormalization/Mul/Add with
constants one Conv, Transposes cancel or move into the layout, and on x86 the NCHWc transformer
(``nchwc_transformer.cc``) turns convolutions and pools into blocked-layout kernels with
``ReorderInput``/``ReorderOutput`` nodes around them). Its profiler names the nodes of that
optimized graph, which the session saves (``optimized_model_filepath``) so that both graphs can be
compared tensor by tensor.

How: a tensor name that appears in both graphs is a boundary both runtimes agree on. Nodes linked
through tensors that only one graph has (a fused chain, a blocked-layout stretch) form one region;
regions of the two graphs that write the same boundary tensor are one cluster. Inside a cluster,
an optimized node that kept its file node's name is that node; the others are matched to file
nodes of the same kind in execution order (``FusedConv`` is a
``Conv``, ``Gemm`` may come from a ``MatMul``); a node only the optimized graph has (a reorder, an
inserted transpose) adds its time to the matched node it feeds or is fed by; a file node that
nothing matches ran inside another one and reads 0 ms (folded).
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Optimized node kinds and the file node kinds they stand for (first that the cluster has).
_KINDS = {
    "FusedConv": ("Conv",), "NhwcFusedConv": ("Conv",), "NhwcConv": ("Conv",),
    "FusedGemm": ("Gemm", "MatMul"), "Gemm": ("Gemm", "MatMul"),
    "FusedMatMul": ("MatMul", "Gemm"), "MatMul": ("MatMul", "Gemm"),
    "NhwcMaxPool": ("MaxPool",), "NhwcAveragePool": ("AveragePool",),
    "QuickGelu": ("Sigmoid", "Mul"), "BiasGelu": ("Gelu", "Add"),
}
# Work the runtime adds for its own layout: charged to the neighbour that needs it.
LAYOUT_NODES = ("ReorderInput", "ReorderOutput", "Transpose")
_HEAVY = ("Conv", "Gemm", "MatMul", "ConvTranspose")


@dataclass
class Node:
    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]


@dataclass
class Alignment:
    """Per file node (by index): the optimized nodes whose time it carries; ``folded``: file nodes
    that ran inside another one (0 ms); ``unmatched``: optimized nodes with no file node."""
    owners: dict[int, list[str]] = field(default_factory=dict)
    folded: set[int] = field(default_factory=set)
    unmatched: list[str] = field(default_factory=list)


class _Union:
    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def _kinds(op_type: str) -> tuple[str, ...]:
    return _KINDS.get(op_type, (op_type,))


def align_graphs(file_nodes: list[Node], optimized: list[Node]) -> Alignment:
    """See the module doc. Both lists are in execution order."""
    produced_f = {t for n in file_nodes for t in n.outputs if t}
    produced_o = {t for n in optimized for t in n.outputs if t}
    shared = produced_f & produced_o
    uf = _Union()
    for side, nodes, produced in (("f", file_nodes, produced_f), ("o", optimized, produced_o)):
        for i, n in enumerate(nodes):
            me = (side, i)
            uf.find(me)
            for t in n.outputs:
                if not t:
                    continue
                uf.union(me, ("s", t) if t in shared else (side, "t", t))
            for t in n.inputs:
                # a tensor only this graph writes links its writer and readers into one region
                if t and t in produced and t not in shared:
                    uf.union(me, (side, "t", t))
    clusters: dict = {}
    for i in range(len(file_nodes)):
        clusters.setdefault(uf.find(("f", i)), ([], []))[0].append(i)
    for j in range(len(optimized)):
        clusters.setdefault(uf.find(("o", j)), ([], []))[1].append(j)

    out = Alignment()
    for f_idx, o_idx in clusters.values():
        if not f_idx:
            out.unmatched += [optimized[j].name for j in o_idx]
            continue
        owner_of: dict[int, int] = {}            # optimized index -> file index
        free = list(f_idx)
        by_name = {file_nodes[i].name: i for i in f_idx}
        for j in o_idx:        # a node that kept its file node's name (and kind) is that node
            i = by_name.get(optimized[j].name)
            if i is not None and file_nodes[i].op_type in _kinds(optimized[j].op_type):
                owner_of[j] = i
                free.remove(i)
        for j in o_idx:
            if j in owner_of:
                continue
            for kind in _kinds(optimized[j].op_type):
                hit = next((i for i in free if file_nodes[i].op_type == kind), None)
                if hit is not None:
                    owner_of[j] = hit
                    free.remove(hit)
                    break
        rest = [j for j in o_idx if j not in owner_of]
        for j in _neighbour_order(rest, optimized):
            owner_of[j] = _neighbour(j, optimized, owner_of, file_nodes, f_idx)
        for j, i in owner_of.items():
            out.owners.setdefault(i, []).append(optimized[j].name)
        out.folded.update(i for i in f_idx if i not in out.owners)
    return out


def _neighbour_order(rest: list[int], optimized: list[Node]) -> list[int]:
    """Unmatched nodes, those next to a matched one first (chains of reorders resolve in turn)."""
    return sorted(rest, key=lambda j: (optimized[j].op_type not in LAYOUT_NODES, j))


def _neighbour(j: int, optimized: list[Node], owner_of: dict[int, int], file_nodes: list[Node],
               f_idx: list[int]) -> int:
    """The file node an unmatched optimized node's time goes to: the matched node that reads its
    output (a ReorderInput serves its consumer), else the one that wrote its input, else the
    cluster's heaviest kind of node, else its first node."""
    node = optimized[j]
    outs = set(node.outputs)
    ins = set(node.inputs)
    for k, i in owner_of.items():
        if outs & set(optimized[k].inputs):
            return i
    for k, i in owner_of.items():
        if ins & set(optimized[k].outputs):
            return i
    heavy = [i for i in f_idx if file_nodes[i].op_type in _HEAVY]
    return (heavy or f_idx)[0]


def onnx_nodes(model) -> list[Node]:
    """Nodes of an ``onnx.ModelProto`` (main graph) as :class:`Node` s."""
    return [Node(n.name, n.op_type, list(n.input), list(n.output)) for n in model.graph.node]
