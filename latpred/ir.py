"""Graph IR: one representation for .tflite and ONNX models.

Operations are nodes in execution order; tensors are the edges between the op that produces them and
the ops that consume them. Every later stage (GPU fusion, features, memory, profiling) reads this IR
and never the model file again.

Activation shapes are kept as the framework stores them; ``ModelGraph.layout`` says whether 4-D
activations are NHWC (TFLite) or NCHW (ONNX), and :func:`spatial` turns either into (H, W, C).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import networkx as nx

DTYPE_BYTES = {
    "float32": 4, "float16": 2, "float64": 8, "int8": 1, "uint8": 1, "int16": 2, "int32": 4,
    "int64": 8, "bool": 1, "bfloat16": 2, "uint16": 2, "uint32": 4, "uint64": 8, "int4": 1,
}


@dataclass
class Tensor:
    id: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    is_constant: bool = False
    # (scale, zero_point) for quantized tensors; None for float ones.
    quantization: tuple[float, int] | None = None
    # False when the reader could not learn the shape (ONNX shape inference gave up); ``shape``
    # is then () and no feature of it means anything.
    shape_known: bool = True

    @property
    def num_elements(self) -> int:
        return int(math.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.num_elements * DTYPE_BYTES.get(self.dtype, 4)


@dataclass
class Op:
    index: int
    type: str                      # framework op type, e.g. CONV_2D (TFLite) or Conv (ONNX)
    category: str                  # one of latpred.categories.CATEGORIES
    inputs: list[int]              # tensor ids (constant weights included), -1 for an omitted input
    outputs: list[int]
    attrs: dict[str, Any] = field(default_factory=dict)


class ModelGraph:
    """Operations in execution order plus the tensors that connect them."""

    def __init__(self, *, fmt: str, layout: str, tensors: dict[int, Tensor], ops: list[Op],
                 inputs: list[int], outputs: list[int], path: str | None = None,
                 file_size: int = 0, name: str | None = None):
        self.format = fmt
        self.layout = layout
        self.tensors = tensors
        self.ops = ops
        self.inputs = inputs
        self.outputs = outputs
        self.path = path
        self.file_size = file_size
        self.name = name
        self._producer: dict[int, int] = {}
        self._consumers: dict[int, list[int]] = {}
        for op in ops:
            for t in op.outputs:
                self._producer[t] = op.index
            for t in op.inputs:
                if t >= 0:
                    self._consumers.setdefault(t, []).append(op.index)
        self._nx: nx.MultiDiGraph | None = None

    # -- structure -------------------------------------------------------------------------------
    def producer(self, tensor_id: int) -> int | None:
        return self._producer.get(tensor_id)

    def consumers(self, tensor_id: int) -> list[int]:
        return self._consumers.get(tensor_id, [])

    def activation_inputs(self, op: Op) -> list[Tensor]:
        return [self.tensors[t] for t in op.inputs if t >= 0 and not self.tensors[t].is_constant]

    def constant_inputs(self, op: Op) -> list[Tensor]:
        return [self.tensors[t] for t in op.inputs if t >= 0 and self.tensors[t].is_constant]

    def output_tensors(self, op: Op) -> list[Tensor]:
        return [self.tensors[t] for t in op.outputs]

    @property
    def nx(self) -> nx.MultiDiGraph:
        """networkx view: op indices as nodes, one edge per tensor from producer to consumer."""
        if self._nx is None:
            g = nx.MultiDiGraph()
            for op in self.ops:
                g.add_node(op.index, type=op.type, category=op.category)
            for op in self.ops:
                for t in op.inputs:
                    src = self._producer.get(t) if t >= 0 else None
                    if src is not None:
                        g.add_edge(src, op.index, key=t, tensor=t)
            self._nx = g
        return self._nx

    # -- totals ----------------------------------------------------------------------------------
    @property
    def params(self) -> int:
        """Elements of all constant tensors used by ops (weights, biases, shape constants)."""
        seen: set[int] = set()
        for op in self.ops:
            seen.update(t for t in op.inputs if t >= 0 and self.tensors[t].is_constant)
        return sum(self.tensors[t].num_elements for t in seen)

    @property
    def weight_bytes(self) -> int:
        seen: set[int] = set()
        for op in self.ops:
            seen.update(t for t in op.inputs if t >= 0 and self.tensors[t].is_constant)
        return sum(self.tensors[t].nbytes for t in seen)

    def peak_activation_bytes(self) -> int:
        """Largest sum of live activation tensors at any op, walking the execution order.

        A tensor is live from the op that produces it (or the start, for graph inputs) until its
        last consumer has run (or the end, for graph outputs)."""
        last_use: dict[int, int] = {}
        n = len(self.ops)
        for op in self.ops:
            for t in op.inputs:
                if t >= 0 and not self.tensors[t].is_constant:
                    last_use[t] = op.index
        for t in self.outputs:
            last_use[t] = n
        live = {t for t in self.inputs}
        live_bytes = sum(self.tensors[t].nbytes for t in live)
        peak = live_bytes
        for op in self.ops:
            for t in op.outputs:
                if t not in live and not self.tensors[t].is_constant:
                    live.add(t)
                    live_bytes += self.tensors[t].nbytes
            peak = max(peak, live_bytes)
            for t in list(live):
                if last_use.get(t, -1) <= op.index:
                    live.discard(t)
                    live_bytes -= self.tensors[t].nbytes
        return peak

    def __len__(self) -> int:
        return len(self.ops)

    def __repr__(self) -> str:
        return f"ModelGraph({self.name or self.path}, {self.format}, {len(self.ops)} ops)"


def spatial(shape: Iterable[int], layout: str) -> tuple[int, int, int]:
    """(H, W, C) of an activation shape; rank-2 tensors are treated as 1x1xC, rank-3 as 1xWxC."""
    s = tuple(int(d) for d in shape)
    if len(s) == 4:
        if layout == "NCHW":
            return s[2], s[3], s[1]
        return s[1], s[2], s[3]
    if len(s) == 3:
        if layout == "NCHW":
            return 1, s[2], s[1]
        return 1, s[1], s[2]
    if len(s) == 2:
        return 1, 1, s[1]
    if len(s) == 1:
        return 1, 1, s[0]
    return 1, 1, 1
