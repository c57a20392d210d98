"""NAS-Bench-201 (Dong & Yang, ICLR 2020) as a model source: arch strings, the network, its files,
and its graph IR straight from the string (no TensorFlow).

The network, as NAS-Bench-201 defines it (D-X-Y/AutoDL-Projects at f46486e,
``xautodl/models/cell_infers/tiny_network.py``, ``cells.py``, ``cell_operations.py``):
  * stem: 3x3 conv (pad 1, no bias) to 16 channels + BN;
  * three stages of 5 cells at 16, 32, 64 channels, joined by a residual reduction block
    (``ResNetBasicblock`` with stride 2): ReLU -> 3x3 conv stride 2 (pad 1) -> BN, ReLU -> 3x3 conv
    -> BN, plus a shortcut 2x2 average pool (stride 2) -> 1x1 conv (no BN); shortcut + branch;
  * BN + ReLU, global average pooling, linear classifier;
  * cell: nodes 0..3, node i = sum of its edges from nodes j < i, in the order of the arch string;
    edge ops ``none`` (``Zero``: x * 0, the cell's case of stride 1 and equal channels),
    ``skip_connect`` (identity), ``nor_conv_1x1`` / ``nor_conv_3x3`` (ReLU -> conv, pad 0 / 1,
    no bias -> BN), ``avg_pool_3x3`` (stride 1, pad 1, padding not counted).
HW-NAS-Bench-360 (roldebijvank/HW-NAS-Bench-360 at 7207620, ``config/pipeline_config.py``,
``utils/model_utils.py``) builds the same network for its tasks, swapping the stem conv's input
channels and the classifier's classes; see ``TASKS``.

Files are built with tf_keras at batch 1 (BN in inference mode, folded by the TFLite converter into
the conv before it; BN statistics and the classifier bias random) and converted by TensorFlow's
TFLite converter (``export.to_tflite``) or tf2onnx (``export.to_onnx``). The stride-2 conv pads 1
on every side as NAS-Bench-201's does (an explicit PAD before a VALID conv, which XNNPACK folds),
not TensorFlow's SAME (0 before, 1 after).

What the converter makes of ``none``: x * 0 is kept, as a MUL by a scalar 0 (the converter does not
fold it: x * 0 is not 0 for inf/NaN), or folded into a CONV_2D before it whose output feeds nothing
else (the conv then has zero weights). So a "dead" cell (every input->output path crosses a
``none``, 341 of the 15,625 archs) is converted like any other: nothing is pruned, every op runs,
and the network's output is a constant. The files behind the CARD's HW-NAS-Bench and
HW-NAS-Bench-360 TFLite latencies were pruned instead (those archs read well under 1 ms there),
so latpred's latency for a dead-cell arch is that of the full graph, not of theirs. ``edges="live"``
(:func:`nb201_graph` and the functions after it) gives the pruned network: only the edges on a
path from node 0 to node 3 that uses no ``none`` (:func:`live_edges`), as the converter makes that
network; a dead cell's network is then a constant, with no ops.

:func:`nb201_graph` builds the IR of the converted .tflite without TensorFlow by replaying what the
converter does with this graph (each rule checked op for op against real conversions): the
GraphDef import orders ops by a topological sort driven by node names (``_import_order``; layers
are named ``NB201/n<k>`` in build order, and every weight sorts before the input, so that the
order follows the graph from the input); then conv+BN are folded (also the head's BN into a
live cell's last conv), identical ops
merged (CSE: one ReLU, one x*0, one pool per tensor; ADD commutes), a BN after an ADD becomes
MUL + ADD, a ReLU is fused into a CONV_2D / ADD / MUL / AVERAGE_POOL_2D whose output feeds
nothing else, and an x*0 into such a CONV_2D. :func:`nb201_features` gives the same features
without building the IR, per unit (stem, cell, reduction, head), :func:`nb201_rows` the rows a
CPU bundle predicts, and :func:`predict_archs` the predictions of many archs at once.
The IR mirrors the TFLite file only; ONNX files (tf2onnx) are not replayed.
"""
from __future__ import annotations

import csv
import hashlib
import itertools
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from .. import categories
from ..errors import LatpredError

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_NODES = 4
STEM_CHANNELS = 16
STAGE_CHANNELS = (16, 32, 64)
CELLS_PER_STAGE = 5
NUM_ARCHS = 5 ** 6
BN_EPSILON = 1e-5                  # PyTorch's BatchNorm2d default, as NAS-Bench-201 trains it
DEFAULT_INPUT = (32, 32, 3)
DEFAULT_CLASSES = 10
# HW-NAS-Bench-360's tasks (config/pipeline_config.py at 7207620; inputs given there as C,H,W,
# here H,W,C). darcy: 85x85 zero-padded to 88x88 (scripts/utils/task_specs.py at 3798d8b), and
# built with NAS-Bench-201's own head and num_classes=1 (utils/model_utils.py at 7207620): one
# value after global pooling, not a dense 88x88 map.
TASKS = {
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
    "ninapro": ((52, 16, 1), 18),
    "darcy": ((88, 88, 1), 1),
}
MODEL_NAME = "NB201"               # op names "NB201/n0001/..." (and weights) sort before "input"
INPUT_NAME = "input"
# The CARD's table, read where it lies (../shared/data/real-devices/ beside the repository)
DEFAULT_TABLE = (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real-devices"
                 / "nb201_help.csv")


# -- arch strings -------------------------------------------------------------------------------
Cell = tuple  # ((op, src), ...) per node 1..3


@lru_cache(maxsize=65536)
def parse_arch(text: str) -> Cell:
    """'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' -> ((('op', 0),), (('op', 0), ('op', 1)), ...)."""
    s = str(text).strip()
    nodes = s.split("+")
    if len(nodes) != NUM_NODES - 1:
        raise LatpredError(f"bad NAS-Bench-201 arch {text!r}: expected {NUM_NODES - 1} nodes "
                           "'|op~j|...|' joined by '+'")
    out = []
    for i, node in enumerate(nodes, start=1):
        if len(node) < 3 or node[0] != "|" or node[-1] != "|":
            raise LatpredError(f"bad NAS-Bench-201 arch {text!r}: node {i} must be '|op~j|...|'")
        edges = []
        for item in node[1:-1].split("|"):
            op, sep, src = item.partition("~")
            if not sep or op not in OPS or not src.isdigit():
                raise LatpredError(f"bad NAS-Bench-201 arch {text!r}: edge {item!r} (ops: "
                                   f"{', '.join(OPS)})")
            edges.append((op, int(src)))
        if sorted(j for _, j in edges) != list(range(i)):
            raise LatpredError(f"bad NAS-Bench-201 arch {text!r}: node {i} needs one edge from "
                               f"each of nodes 0..{i - 1}")
        out.append(tuple(edges))
    return tuple(out)


def arch_str(cell: Cell) -> str:
    return "+".join("|" + "|".join(f"{op}~{j}" for op, j in node) + "|" for node in cell)


_OP = "(?:" + "|".join(OPS) + ")"
_PLAIN_ARCH = re.compile(r"\|{0}~0\|\+\|{0}~0\|{0}~1\|\+\|{0}~0\|{0}~1\|{0}~2\|".format(_OP))


def canonical_arch(text: str) -> str:
    """``arch_str(parse_arch(text))``; a string already so written is returned without parsing
    (a table of 15,625 archs loads in a few ms)."""
    return text if _PLAIN_ARCH.fullmatch(text) else arch_str(parse_arch(text))


def dead_cell(cell: Cell) -> bool:
    """True when no input->output path of the cell avoids ``none``: the cell computes x * 0."""
    live = {0}
    for i, node in enumerate(cell, start=1):
        if any(op != "none" and j in live for op, j in node):
            live.add(i)
    return NUM_NODES - 1 not in live


def live_edges(cell: Cell | str) -> list[bool]:
    """Per edge of the cell (6, in the order the arch lists them: node 1's, node 2's, node 3's):
    True when the edge lies on a path from node 0 to node 3 that uses no ``none`` edge."""
    if isinstance(cell, str):
        cell = parse_arch(cell)
    fwd = {0}                                  # reached from node 0 without a none
    for i, node in enumerate(cell, start=1):
        if any(op != "none" and j in fwd for op, j in node):
            fwd.add(i)
    bwd = {NUM_NODES - 1}                      # reaching node 3 without a none
    for i in range(NUM_NODES - 1, 0, -1):
        if i in bwd:
            bwd.update(j for op, j in cell[i - 1] if op != "none")
    return [op != "none" and j in fwd and i in bwd
            for i, node in enumerate(cell, start=1) for op, j in node]


def arch_hash(arch: str) -> str:
    return hashlib.sha1(arch_str(parse_arch(arch)).encode()).hexdigest()[:12]


# -- the index table (NAS-Bench-201's own order) ---------------------------------------------------
class ArchTable:
    """index <-> arch string, read from a CSV with an index column (``nb201_index`` or ``index``)
    and ``arch_str``, such as the CARD's ``nb201_help.csv``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            with open(self.path, newline="", encoding="utf-8") as fh:
                reader = csv.reader(fh)
                cols = next(reader, [])
                key = next((c for c in ("nb201_index", "index") if c in cols), None)
                if key is None or "arch_str" not in cols:
                    raise LatpredError(f"{self.path}: arch table needs columns nb201_index (or "
                                       "index) and arch_str")
                k, a = cols.index(key), cols.index("arch_str")
                rows = [(int(r[k]), r[a]) for r in reader if r]
        except OSError as exc:
            raise LatpredError(f"{self.path}: cannot read arch table ({exc.strerror})") from None
        except (ValueError, IndexError) as exc:     # IndexError: a row short of a column
            raise LatpredError(f"{self.path}: bad arch table row ({exc})") from None
        self.by_index = dict(rows)
        self.by_arch = {canonical_arch(a): i for i, a in rows}

    def arch(self, index: int) -> str:
        if index not in self.by_index:
            raise LatpredError(f"NAS-Bench-201 index {index} not in {self.path} "
                               f"(0..{NUM_ARCHS - 1})")
        return self.by_index[index]

    def index(self, arch: str) -> int | None:
        return self.by_arch.get(canonical_arch(arch))


def load_table(path: str | os.PathLike | None = None, required: bool = False) -> ArchTable | None:
    """The arch table at ``path`` (default: the CARD's nb201_help.csv beside the repository);
    None when the default is absent and not ``required``."""
    if path is not None:
        return ArchTable(path)
    if DEFAULT_TABLE.exists():
        return ArchTable(DEFAULT_TABLE)
    if required:
        raise LatpredError(f"an index needs NAS-Bench-201's index order: pass --arch-table "
                           f"PATH (a CSV with nb201_index and arch_str; default {DEFAULT_TABLE} "
                           "does not exist)")
    return None


def resolve(token: str, table: ArchTable | None = None,
            table_path: str | os.PathLike | None = None) -> tuple[str, str]:
    """ARCH argument (index or arch string) -> (model name, arch string)."""
    token = str(token).strip()
    if token.isdigit():
        table = table or load_table(table_path, required=True)
        index = int(token)
        return f"nb201_{index}", arch_str(parse_arch(table.arch(index)))
    arch = canonical_arch(token)
    index = table.by_arch.get(arch) if table is not None else None
    return (f"nb201_{index}" if index is not None else f"nb201_h{arch_hash(arch)}"), arch


def check_input(input_shape: Sequence[int], classes: int) -> tuple[int, int, int]:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise LatpredError(f"input shape must be H,W,C with positive sizes, got {input_shape}")
    h, w, _ = shape
    # Both reductions need even maps: the 3x3/2 (pad 1) branch and the 2x2/2 pool must agree.
    if h % 4 or w % 4:
        raise LatpredError(f"input height and width must be multiples of 4 (two stride-2 "
                           f"reductions), got {h}x{w}")
    if int(classes) < 1:
        raise LatpredError(f"classes must be >= 1, got {classes}")
    return shape


# -- the network as units of layers ---------------------------------------------------------------
# A unit is the stem, a cell, a reduction block or the head: a small plan of layers whose node 0 is
# the unit's input. Every conv of a unit outputs the unit's channels. Kinds: input, conv, bn, relu,
# pad, pool, zero (x * 0), add, gap, dense.
class _Unit:
    __slots__ = ("kind", "inputs", "param")

    def __init__(self):
        self.kind: list[str] = ["input"]
        self.inputs: list[tuple[int, ...]] = [()]
        self.param: list[tuple] = [()]

    def add(self, kind: str, inputs: tuple[int, ...], param: tuple = ()) -> int:
        self.kind.append(kind)
        self.inputs.append(inputs)
        self.param.append(param)
        return len(self.kind) - 1

    def conv(self, x: int, k: int, stride: int = 1, padding: str | None = None) -> int:
        # NAS-Bench-201 pads 3x3 convs by 1 and 1x1 by 0: SAME / VALID at stride 1
        return self.add("conv", (x,), (k, stride, padding or ("SAME" if k == 3 else "VALID")))

    def relu_conv_bn(self, x: int, k: int) -> int:
        return self.add("bn", (self.conv(self.add("relu", (x,)), k),))


def _stem_unit() -> _Unit:
    u = _Unit()
    u.add("bn", (u.conv(0, 3),))
    return u


def _cell_unit(cell: Cell, live: Sequence[bool] | None = None) -> _Unit:
    """The cell's layers; with ``live`` (per edge, :func:`live_edges`) only those edges, and a
    node without one is not computed (no live edge reads it)."""
    u = _Unit()
    nodes: list[int | None] = [0]
    keep = iter(live) if live is not None else itertools.repeat(True)
    for node in cell:
        terms = []
        for op, j in node:
            if not next(keep):
                continue
            x = nodes[j]
            if op == "none":
                terms.append(u.add("zero", (x,)))
            elif op == "skip_connect":
                terms.append(x)
            elif op == "avg_pool_3x3":
                terms.append(u.add("pool", (x,), (3, 1, "SAME")))
            else:
                terms.append(u.relu_conv_bn(x, 3 if op == "nor_conv_3x3" else 1))
        if not terms:
            nodes.append(None)
            continue
        y = terms[0]
        for t in terms[1:]:
            y = u.add("add", (y, t))
        nodes.append(y)
    return u


def _reduction_unit() -> _Unit:
    # ResNetBasicblock(stride 2) in NAS-Bench-201's order: conv_a, conv_b, shortcut, sum
    u = _Unit()
    a = u.add("bn", (u.conv(u.add("pad", (u.add("relu", (0,)),), (1,)), 3, 2, "VALID"),))
    b = u.relu_conv_bn(a, 3)
    r = u.conv(u.add("pool", (0,), (2, 2, "VALID")), 1)     # the shortcut's conv has no BN
    u.add("add", (r, b))
    return u


def _head_unit() -> _Unit:
    u = _Unit()
    u.add("dense", (u.add("gap", (u.add("relu", (u.add("bn", (0,)),)),)),))
    return u


_STEM, _REDUCTION, _HEAD = _stem_unit(), _reduction_unit(), _head_unit()


EDGES = ("all", "live")


def check_edges(edges: str) -> str:
    if edges not in EDGES:
        raise LatpredError(f"edges must be one of {', '.join(EDGES)}, got {edges!r}")
    return edges


def _network(cell: Cell, edges: str = "all") -> list[tuple[str, _Unit, int]]:
    """(name, unit, channels) in order: stem, 3 stages of cells joined by reductions, head.
    ``edges="live"``: cells of their live edges only (a dead cell's network is not built)."""
    units = [("stem", _STEM, STEM_CHANNELS)]
    cu = _cell_unit(cell, live_edges(cell) if check_edges(edges) == "live" else None)
    for stage, c in enumerate(STAGE_CHANNELS):
        if stage:
            units.append((f"reduction{stage}", _REDUCTION, c))
        units += [(f"cell{stage}.{k}", cu, c) for k in range(CELLS_PER_STAGE)]
    units.append(("head", _HEAD, STAGE_CHANNELS[-1]))
    return units


def layer_name(k: int) -> str:
    return f"n{k:04d}"


def _shape(kind: str, param: tuple, x: tuple, channels: int, classes: int) -> tuple:
    """Output shape of a layer from its input's (NHWC)."""
    if kind in ("conv", "pool"):
        k, stride, padding = param
        _, h, w, c = x
        if padding == "VALID":
            h, w = (h - k) // stride + 1, (w - k) // stride + 1
        else:
            h, w = -(-h // stride), -(-w // stride)
        return (1, h, w, channels if kind == "conv" else c)
    if kind == "pad":
        return (1, x[1] + 2 * param[0], x[2] + 2 * param[0], x[3])
    if kind == "gap":
        return (1, x[3])
    if kind == "dense":
        return (1, classes)
    return x


# -- what the converter makes of a unit ----------------------------------------------------------
def _import_order(u: _Unit) -> list[int]:
    """The op order of TensorFlow's GraphDef import (``TopologicalOrdering`` in
    tensorflow/compiler/mlir/tensorflow/translate/node_order.cc, 2024): each node's position is
    its post-order index in a DFS whose children are pushed in name order (layer names follow the
    unit's order here); then ready nodes are taken from a stack, an emitted node's consumers
    pushed by position. A unit's ops come in one block: all of them lead to its output, and all
    of the next unit's depend on it, so the DFS and the stack can be run per unit."""
    n = len(u.kind)
    children: list[list[int]] = [[] for _ in range(n)]
    remaining = [len(ins) for ins in u.inputs]         # in-edges, repeats counted
    for i, ins in enumerate(u.inputs):
        for j in ins:
            children[j].append(i)          # appended in index order: already sorted
    pos = [0] * n
    visited = [False] * n
    stack = [(0, False)]
    k = 0
    while stack:
        node, leave = stack.pop()
        if leave:
            pos[node] = k
            k += 1
            continue
        if visited[node]:
            continue
        visited[node] = True
        stack.append((node, True))
        stack.extend((c, False) for c in children[node] if not visited[c])
    order: list[int] = []
    ready = [0]
    while ready:
        node = ready.pop()
        order.append(node)
        for c in sorted(children[node], key=pos.__getitem__):
            remaining[c] -= 1
            if not remaining[c]:
                ready.append(c)
    return order


X = -1                       # reference to the unit's input in a program
_FUSES_RELU = ("CONV_2D", "ADD", "MUL", "AVERAGE_POOL_2D")


class _Program:
    """A unit as converted ops, without shapes: ``ops`` are [type, input refs, attrs, layer kind,
    layer param, plan node]; refs are op positions or X. ``x_fused``: the op (RELU or MUL) that
    the converter folds into the op producing the unit's input."""
    __slots__ = ("ops", "out", "x_fused")

    def __init__(self, ops, out, x_fused):
        self.ops, self.out, self.x_fused = ops, out, x_fused


def _program(u: _Unit, x_producer: str | None) -> _Program:
    """Replays the TFLite converter on one unit whose input comes from an op of type
    ``x_producer`` (None: the graph input): import order, conv+BN folding, CSE, a BN after an
    ADD lowered to MUL + ADD, ReLU and x*0 fusion into the op before."""
    kinds, pins, params = u.kind, u.inputs, u.param
    consumers = [0] * len(kinds)
    for ins in pins:
        for j in ins:
            consumers[j] += 1
    ops: list[list] = []
    value = {0: X}
    cse: dict[tuple, int] = {}

    def emit(op_type, ins, attrs, node):
        ops.append([op_type, ins, attrs, kinds[node], params[node], node])
        return len(ops) - 1

    conv_attrs = ("kernel_h", "kernel_w", "stride_h", "stride_w", "padding")
    for node in _import_order(u)[1:]:
        kind = kinds[node]
        ins = [value[j] for j in pins[node]]
        if kind == "bn":
            src = pins[node][0]
            # the conv may be the previous unit's last op (the head after a live cell that ends
            # in a conv; in the full network a cell ends in an ADD)
            conv = kinds[src] == "conv" or (src == 0 and x_producer == "CONV_2D")
            if conv and consumers[src] == 1:
                value[node] = ins[0]           # folded into the conv's weights and bias
            else:                              # scale and shift
                m = emit("MUL", ins, {"activation": "NONE"}, node)
                value[node] = emit("ADD", [m], {"activation": "NONE"}, node)
            continue
        # an identical op on the same tensors is merged (ADD is commutative: a+b is b+a); convs
        # and the classifier have weights of their own
        key = (kind, params[node], *(sorted(ins) if kind == "add" else ins))
        if key in cse and kind not in ("conv", "dense"):
            value[node] = cse[key]
            continue
        if kind == "conv":
            k, stride, padding = params[node]
            out = emit("CONV_2D", ins, {"activation": "NONE", **dict(zip(conv_attrs, (
                k, k, stride, stride, padding))), "dilation_h": 1, "dilation_w": 1,
                "groups": 1}, node)
        elif kind == "relu":
            out = emit("RELU", ins, {}, node)
        elif kind == "zero":
            out = emit("MUL", ins, {"activation": "NONE"}, node)
        elif kind == "add":
            out = emit("ADD", ins, {"activation": "NONE"}, node)
        elif kind == "pool":
            k, stride, padding = params[node]
            out = emit("AVERAGE_POOL_2D", ins, {"activation": "NONE", **dict(zip(conv_attrs, (
                k, k, stride, stride, padding))), "pool": "avg"}, node)
        elif kind == "pad":
            q = params[node][0]
            out = emit("PAD", ins, {"pads": [[0, 0], [q, q], [q, q], [0, 0]]}, node)
        elif kind == "gap":
            out = emit("MEAN", ins, {"axes": [1, 2], "keepdims": False}, node)
        elif kind == "dense":
            out = emit("FULLY_CONNECTED", ins, {"activation": "NONE"}, node)
        else:
            raise AssertionError(kind)
        cse[key] = out
        value[node] = out

    # Fusions into the op before when its output feeds nothing else: a ReLU becomes its fused
    # activation (CONV_2D, ADD, MUL, AVERAGE_POOL_2D); a MUL by 0 after a CONV_2D is folded into
    # the conv's weights and bias (the conv then computes zeros). The op before may be the one
    # making the unit's input (``x_producer``, whose activation is NONE).
    uses: dict[int, int] = {}
    for op in ops:
        for r in op[1]:
            uses[r] = uses.get(r, 0) + 1
    remap: dict[int, int] = {}
    keep: dict[int, list] = {}
    x_fused = None
    x_type = x_producer
    for pos, op in enumerate(ops):
        op[1] = [remap.get(r, r) for r in op[1]]
        src = op[1][0]
        if src == X:
            prev_type, prev_act = x_type, "NONE"
        else:
            prev_type, prev_act = ops[src][0], ops[src][2].get("activation")
        if prev_type is not None and uses.get(src) == 1 and prev_act == "NONE":
            fuse = op[0] == "RELU" and prev_type in _FUSES_RELU
            if not fuse:
                fuse = (op[0] == "MUL" and op[3] == "zero" and prev_type == "CONV_2D")
            if fuse:                           # the fused op's consumers now read ``src``
                if src == X:
                    x_fused = op[0]
                    x_type = None if op[0] == "RELU" else x_type   # one activation
                elif op[0] == "RELU":
                    ops[src][2]["activation"] = "RELU"
                remap[pos] = src
                uses[src] = uses.get(pos, 0)
                continue
        keep[pos] = op
    new_pos = {old: i for i, old in enumerate(keep)}
    new_pos[X] = X
    out = [[t, [new_pos[r] for r in ins], attrs, kind, param, node]
           for t, ins, attrs, kind, param, node in keep.values()]
    last = value[len(kinds) - 1]
    return _Program(out, new_pos[remap.get(last, last)], x_fused)


_FIXED_PROGRAMS: dict[tuple, _Program] = {}


@lru_cache(maxsize=2 * NUM_ARCHS)
def _programs(cell: Cell, edges: str = "all") -> tuple[tuple[str, _Program, int], ...]:
    """Every unit of the network as converted ops, in order: (unit name, program, channels)."""
    progs, x_type, cell_progs = [], None, {}
    for name, u, c in _network(cell, edges):
        if name.startswith("cell"):           # the same cell, after a conv or after an ADD
            if x_type not in cell_progs:
                if "ADD" not in cell_progs:
                    cell_progs["ADD"] = _program(u, "ADD")
                base = cell_progs["ADD"]
                # they differ only where the input's one use is an x*0, which folds into a conv
                x_refs = [op for op in base.ops for r in op[1] if r == X]
                same = len(x_refs) != 1 or x_refs[0][3] != "zero"
                cell_progs[x_type] = base if same else _program(u, x_type)
            prog = cell_progs[x_type]
        else:
            key = (name.rstrip("0123456789"), x_type)
            if key not in _FIXED_PROGRAMS:
                _FIXED_PROGRAMS[key] = _program(u, x_type)
            prog = _FIXED_PROGRAMS[key]
        progs.append((name, prog, c))
        if prog.out != X:                      # a live cell may be the identity: no ops
            x_type = prog.ops[prog.out][0]
    return tuple(progs)


def _live_programs(cell: Cell, edges: str) -> tuple[tuple[str, _Program, int], ...]:
    """``_programs``, but none for a dead cell's live network (it has no ops)."""
    if edges == "live" and dead_cell(cell):
        return ()
    return _programs(cell, edges)


# -- the graph IR without TensorFlow ------------------------------------------------------------
def _instantiate(prog: _Program, tensors: dict, ops: list, x: int, channels: int, classes: int,
                 shared: dict) -> int:
    """Append one unit's ops and tensors (shapes from the input ``x``); returns its output."""
    from ..ir import Op, Tensor

    def tensor(shape, constant=True, dtype="float32"):
        t = len(tensors)
        tensors[t] = Tensor(t, f"t{t}", shape, dtype, constant)
        return t

    def const(key, shape, dtype):              # one tensor per distinct small constant
        if key not in shared:
            shared[key] = tensor(shape, True, dtype)
        return shared[key]

    if prog.x_fused == "RELU" and ops:         # into the previous unit's output op (its last)
        ops[-1].attrs["activation"] = "RELU"
    outs: list[int] = []
    for op_type, refs, attrs, kind, param, _ in prog.ops:
        ins = [x if r == X else outs[r] for r in refs]
        xs = tensors[ins[0]].shape
        attrs = dict(attrs)
        if op_type == "CONV_2D":
            attrs["filters"] = channels
            ins += [tensor((channels, param[0], param[0], xs[3])),
                    tensor((channels,))]       # the folded BN's shift, or a zero bias
        elif op_type == "MUL":
            ins.append(const("zero", (), "float32") if kind == "zero" else tensor((xs[3],)))
        elif op_type == "ADD" and kind == "bn":
            ins.append(tensor((xs[3],)))
        elif op_type == "PAD":
            ins.append(const("pads", (4, 2), "int32"))
        elif op_type == "MEAN":
            ins.append(const("axes", (2,), "int32"))
            attrs["kernel_h"], attrs["kernel_w"] = xs[1], xs[2]
        elif op_type == "FULLY_CONNECTED":
            ins += [tensor((classes, xs[1])), tensor((classes,))]
            attrs.update(in_features=xs[1], out_features=classes, macs=xs[1] * classes)
        out = tensor(_shape(kind, param, xs, channels, classes), False)
        outs.append(out)
        ops.append(Op(len(ops), op_type, categories.tflite_category(op_type), ins, [out], attrs))
    return x if prog.out == X else outs[prog.out]


def nb201_graph(arch: str, input_shape: Sequence[int] = DEFAULT_INPUT,
                classes: int = DEFAULT_CLASSES, name: str | None = None, edges: str = "all"):
    """The graph IR (``latpred.ir.ModelGraph``) that ``latpred.read_model`` gives for the converted
    fp32 .tflite of ``arch`` (op types and order, tensor shapes, attributes, constants), built from
    the string alone.

    ``edges="live"``: the network of the cell's live edges only (:func:`live_edges`), as the
    converter makes it (``model_bytes(..., edges="live")``): what a runtime that prunes zero and
    dead computation executes. A dead cell's network then computes a constant: no ops, the
    output one constant tensor."""
    from ..ir import ModelGraph, Tensor        # here: the CLI imports this module to register
    cell = parse_arch(arch)
    shape3 = check_input(input_shape, classes)
    tensors = {0: Tensor(0, INPUT_NAME, (1, *shape3), "float32")}
    ops: list = []
    shared: dict = {}
    x = 0
    if check_edges(edges) == "live" and dead_cell(cell):
        x = 1
        tensors[x] = Tensor(x, "t1", (1, int(classes)), "float32", True)
    for _, prog, channels in _live_programs(cell, edges):
        x = _instantiate(prog, tensors, ops, x, channels, int(classes), shared)
    return ModelGraph(fmt="tflite", layout="NHWC", tensors=tensors, ops=ops, inputs=[0],
                      outputs=[x], path=None, file_size=0,
                      name=name or f"nb201_h{arch_hash(arch)}")


# -- features, fast: per unit, from ops already seen ----------------------------------------------
_UNIT_FEATURES: dict[tuple, tuple] = {}    # (unit program, input shape, channels, classes)
_CELL_OP_FEATURES: dict[tuple, dict] = {}  # (op type, layer kind, param, input shape, channels)


def _unit_features(prog: _Program, x_shape: tuple, channels: int, classes: int) -> list:
    """``latpred.features.graph_features`` of one unit's ops, in a graph of their own."""
    from ..features import graph_features
    from ..ir import ModelGraph, Tensor
    tensors = {0: Tensor(0, INPUT_NAME, x_shape, "float32")}
    ops: list = []
    out = _instantiate(prog, tensors, ops, 0, channels, classes, {})
    return graph_features(ModelGraph(fmt="tflite", layout="NHWC", tensors=tensors, ops=ops,
                                     inputs=[0], outputs=[out]))


def _unit_rows(cell: Cell, edges: str, shape3: tuple, classes: int) -> list[tuple]:
    """Per unit of the network: (program, row keys, feature dicts), the dicts the caches hold
    (not copies). A row key names one distinct feature row; the 5 cells of a stage share their
    key and feature lists."""
    x_shape = (1, *shape3)
    out: list[tuple] = []
    last = None
    for name, prog, channels in _live_programs(cell, edges):
        if name.startswith("cell"):
            if last is None or last[0] is not prog or last[1] != x_shape:
                keys = [(t, kind, param, x_shape, channels) for t, _, _, kind, param, _ in prog.ops]
                if any(k not in _CELL_OP_FEATURES for k in keys):
                    for k, f in zip(keys, _unit_features(prog, x_shape, channels, classes)):
                        _CELL_OP_FEATURES.setdefault(k, f)
                last = (prog, x_shape, keys, [_CELL_OP_FEATURES[k] for k in keys])
            out.append((prog, last[2], last[3]))
        else:
            key = (id(prog), x_shape, channels, classes)
            if key not in _UNIT_FEATURES:
                feats = _unit_features(prog, x_shape, channels, classes)
                _UNIT_FEATURES[key] = ([(key, i) for i in range(len(feats))], feats)
            out.append((prog, *_UNIT_FEATURES[key]))
        x_shape = _out_shape(name, x_shape, channels, classes)
    return out


def nb201_features(arch: str, input_shape: Sequence[int] = DEFAULT_INPUT,
                   classes: int = DEFAULT_CLASSES, edges: str = "all") -> list[dict[str, float]]:
    """``graph_features(nb201_graph(arch, input_shape, classes, edges=edges))``, computed per
    unit: the stem, reductions and head are the same in every arch, and a cell's ops (all on the
    stage's map shape) are features already computed for an op of the same type, kernel and
    stage. A unit's features do not depend on other units: no feature reads an op's fused
    activation, and the only context flag (``folded``, a PAD before a VALID conv) lies inside
    the reduction."""
    cell = parse_arch(arch)
    shape3 = check_input(input_shape, classes)
    check_edges(edges)
    feats: list[dict[str, float]] = []
    for _, _, unit_feats in _unit_rows(cell, edges, shape3, int(classes)):
        feats += map(dict.copy, unit_feats)        # fresh dicts, as graph_features gives
    return feats


def nb201_rows(arch: str, input_shape: Sequence[int] = DEFAULT_INPUT,
               classes: int = DEFAULT_CLASSES, edges: str = "all") -> list:
    """The rows a CPU bundle predicts for ``arch`` (``latpred.predictors.OpRow``: op index, op
    type, category, features), as ``op_rows(nb201_graph(arch, ...))`` gives them, without the
    IR (see :func:`nb201_features`); ready for ``Predictor.predict_rows_many``."""
    from ..predictors.predict import OpRow
    cell = parse_arch(arch)
    shape3 = check_input(input_shape, classes)
    check_edges(edges)
    rows: list = []
    for prog, _, unit_feats in _unit_rows(cell, edges, shape3, int(classes)):
        for op, f in zip(prog.ops, unit_feats):
            rows.append(OpRow(len(rows), op[0], categories.tflite_category(op[0]), dict(f)))
    return rows


def predict_archs(predictor, archs: Iterable[str], input_shape: Sequence[int] = DEFAULT_INPUT,
                  classes: int = DEFAULT_CLASSES, edges: str = "all",
                  names: Sequence[str] | None = None) -> list:
    """``predictor.predict_many`` of the graphs ``nb201_graph(arch, ..., edges=edges)``
    (``latpred.predictors.Prediction`` per arch, named ``names`` or as ``nb201_graph`` names
    them), fast on a CPU bundle: every distinct op row (an op of a fixed unit, a cell op of one
    type, kernel and stage) is predicted once and its latency shared by the archs that have it.
    GPU bundles, whose kernels follow from fusion on the whole graph, predict the graphs."""
    import numpy as np

    from ..predictors.predict import OpRow, Prediction, Predictor
    from ..scenario import Scenario
    archs = list(archs)
    names = list(names) if names is not None else [f"nb201_h{arch_hash(a)}" for a in archs]
    if len(names) != len(archs):
        raise ValueError("names and archs differ in length")
    shape3 = check_input(input_shape, classes)
    classes = int(classes)
    check_edges(edges)
    # the shortcut assumes one row per op (op_rows); a GPU bundle, or a predictor that makes
    # rows its own way, gets the graphs
    if Scenario.parse(predictor.bundle.scenario).is_gpu \
            or type(predictor).rows_of is not Predictor.rows_of:
        return predictor.predict_many(nb201_graph(a, shape3, classes, name=n, edges=edges)
                                      for a, n in zip(archs, names))
    if not archs:
        return []
    # every arch is an fp32 .tflite of the same ops: one check speaks for all
    predictor.check_scenario(nb201_graph(archs[0], shape3, classes, edges=edges), names[0])
    row_id: dict = {}                  # row key -> position in rows
    rows: list = []                    # the distinct rows
    per_arch: list[list[int]] = []
    for a in archs:
        ids: list[int] = []
        last_keys, last_ids = None, None
        for prog, keys, feats in _unit_rows(parse_arch(a), edges, shape3, classes):
            if keys is not last_keys:          # the 5 cells of a stage share one key list
                last_keys, last_ids = keys, []
                for k, op, f in zip(keys, prog.ops, feats):
                    i = row_id.get(k)
                    if i is None:
                        i = row_id[k] = len(rows)
                        rows.append(OpRow(i, op[0], categories.tflite_category(op[0]), f))
                    last_ids.append(i)
            ids += last_ids
        per_arch.append(ids)
    # one call as predict_many makes (fallback, folded ops, adaptation), on the distinct rows
    ref = predictor.predict_rows_many([rows], ["distinct rows"])[0] if rows else None
    types = [r.type for r in rows]
    cats = [r.category for r in rows]
    out = []
    for name, ids in zip(names, per_arch):
        idx = np.array(ids, dtype=np.intp)
        if ref is None:
            lat, fb, fu = np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
        else:
            lat, fb, fu = ref.op_latency_ms[idx], ref.op_fallback[idx], ref.op_fused[idx]
        ops_ms = float(lat.sum())
        overhead = float(predictor.bundle.overhead_for(ops_ms))
        out.append(Prediction(
            model=name, latency_ms=overhead + ops_ms, overhead_ms=overhead,
            op_index=np.arange(len(ids), dtype=np.int64), op_type=[types[i] for i in ids],
            op_category=[cats[i] for i in ids], op_latency_ms=lat, op_fallback=fb,
            op_fused=fu))
    return out


def _out_shape(unit: str, x: tuple, channels: int, classes: int) -> tuple:
    if unit == "head":
        return (1, classes)
    if unit.startswith("reduction"):
        return (1, x[1] // 2, x[2] // 2, channels)
    return (1, x[1], x[2], channels)             # stem and cells keep the map


# -- building the files (TensorFlow inside) ------------------------------------------------------
def _seed(arch: str) -> int:
    return int(arch_hash(arch)[:8], 16) % (2 ** 31)


def _check_buildable(cell: Cell, edges: str) -> None:
    if check_edges(edges) == "live" and dead_cell(cell):
        raise LatpredError(f"{arch_str(cell)} has a dead cell: its live network computes a "
                           "constant and has no file")


def build_keras(arch: str, input_shape: Sequence[int] = DEFAULT_INPUT,
                classes: int = DEFAULT_CLASSES, edges: str = "all"):
    """tf_keras model of ``arch`` at batch 1 with seeded random weights. Layers are named
    ``n<k>`` in the order they are made (the converter orders ops by name; see
    ``_import_order``). BN statistics, BN shifts and the classifier bias are random, not Keras'
    0/1 defaults, so the converter cannot drop an x*1 or x+0 that a trained network would not
    have. ``edges="live"``: the cells of their live edges only (not for a dead cell)."""
    import numpy as np
    from .keras_build import import_tf
    tf, keras = import_tf()
    L = keras.layers
    cell = parse_arch(arch)
    shape3 = check_input(input_shape, classes)
    _check_buildable(cell, edges)
    seed = _seed(arch)
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = inp = keras.Input(shape=shape3, batch_size=1, name=INPUT_NAME)
    bns, dense, count = [], None, 0
    for _, u, channels in _network(cell, edges):
        out: list[Any] = [x]
        for kind, ins, prm in zip(u.kind[1:], u.inputs[1:], u.param[1:]):
            count += 1
            name = layer_name(count)
            args = [out[j] for j in ins]
            if kind == "conv":
                k, stride, padding = prm
                layer = L.Conv2D(channels, k, strides=stride, padding=padding.lower(),
                                 use_bias=False, name=name)
            elif kind == "bn":
                layer = L.BatchNormalization(epsilon=BN_EPSILON, name=name)
                bns.append(layer)
            elif kind == "relu":
                layer = L.ReLU(name=name)
            elif kind == "pad":
                layer = L.ZeroPadding2D(prm[0], name=name)
            elif kind == "pool":
                k, stride, padding = prm
                layer = L.AveragePooling2D(k, strides=stride, padding=padding.lower(), name=name)
            elif kind == "zero":
                layer = _zero_layer()(name=name)
            elif kind == "add":
                layer = L.Add(name=name)
            elif kind == "gap":
                layer = L.GlobalAveragePooling2D(name=name)
            else:
                layer = dense = L.Dense(int(classes), name=name)
            out.append(layer(args if kind == "add" else args[0]))
        x = out[-1]
    model = keras.Model(inp, x, name=MODEL_NAME)
    for layer in bns:
        n = int(layer.gamma.shape[0])
        layer.set_weights([rng.uniform(0.5, 1.5, n), rng.uniform(-0.5, 0.5, n),
                           rng.uniform(-0.5, 0.5, n), rng.uniform(0.5, 1.5, n)])
    w, b = dense.get_weights()
    dense.set_weights([w, rng.uniform(-0.1, 0.1, b.shape).astype(b.dtype)])
    return model


@lru_cache(maxsize=None)
def _zero_layer():
    """NAS-Bench-201's ``Zero`` on a stride-1 edge: x * 0 (``x.mul(0.0)``), a layer of its own so
    that it serialises without a Python lambda."""
    from .keras_build import import_tf
    tf, keras = import_tf()

    class Zero(keras.layers.Layer):
        @tf.autograph.experimental.do_not_convert      # one plain op: nothing to convert
        def call(self, x, training=None):
            return x * 0.0

    return Zero


def model_bytes(arch: str, input_shape: Sequence[int] = DEFAULT_INPUT,
                classes: int = DEFAULT_CLASSES, fmt: str = "tflite", edges: str = "all") -> bytes:
    """The fp32 .tflite (TFLite converter) or ONNX (tf2onnx) file of ``arch`` (``edges="live"``:
    of its live network, see :func:`nb201_graph`)."""
    from .export import check_target, inference_function, to_onnx, to_tflite
    from .keras_build import import_tf
    check_target("fp32", fmt)
    _, keras = import_tf()
    keras.backend.clear_session()
    shape3 = check_input(input_shape, classes)
    _check_buildable(parse_arch(arch), edges)
    model = build_keras(arch, shape3, classes, edges)
    fn, concrete = inference_function(model, shape3)
    if fmt == "onnx":
        return to_onnx(fn)
    return to_tflite(concrete, shape3, "fp32", trackable=model)


def spec(name: str, arch: str, input_shape=DEFAULT_INPUT, classes: int = DEFAULT_CLASSES) -> dict:
    """What a built file is, written beside it as ``<name>.json``."""
    index = name[len("nb201_"):]
    return {"name": name, "arch": arch_str(parse_arch(arch)),
            "index": int(index) if index.isdigit() else None,
            "input_shape": list(check_input(input_shape, classes)), "classes": int(classes),
            "source": "NAS-Bench-201 (latpred.sources.nb201)"}


def build_files(items: Iterable[tuple[str, str]], out_dir, input_shape=DEFAULT_INPUT,
                classes: int = DEFAULT_CLASSES, fmt: str = "tflite",
                progress: bool = False) -> list[Path]:
    """Write ``<name>.<fmt>`` and ``<name>.json`` for each (name, arch) into ``out_dir``. A file
    whose JSON says it is this very arch, input and classes is kept, so a killed run resumes."""
    import json

    from .export import atomic_write_bytes, atomic_write_text, check_target
    check_target("fp32", fmt)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LatpredError(f"--out {out} is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    items = list(items)
    paths = []
    for k, (name, arch) in enumerate(items):
        want = spec(name, arch, input_shape, classes)
        path, meta = out / f"{name}.{fmt}", out / f"{name}.json"
        try:
            current = path.exists() and json.loads(meta.read_text(encoding="utf-8")) == want
        except (OSError, ValueError):
            current = False
        if not current:
            path.unlink(missing_ok=True)
            atomic_write_text(meta, json.dumps(want, indent=1, sort_keys=True) + "\n")
            atomic_write_bytes(path, model_bytes(arch, input_shape, classes, fmt))
        if progress:
            print(f"[{k + 1}/{len(items)}] {path}", flush=True)
        paths.append(path)
    return paths
