"""CPU kernel features: what the CPU micro-kernels really compute, derived from Table 3's features.

The CPU analogue of the GPU path's kernel selection (Algorithm 3.2 and Table 2's src/dst depth):
Table 3 describes an op by its shape, but on a CPU its latency follows the micro-kernel that runs it.
What XNNPACK (the CPU runtime of TFLite/LiteRT) does (depthwise tiles read in XNNPACK's
``src/configs/dwconv-config.c`` at commit 03bfa72; the rest measured on this project's host):

- Output channels are computed in register tiles: ``nr`` channels for GEMM/IGEMM convolutions (per
  group for grouped convolutions, whose groups run as separate GEMMs), ``channel_tile`` channels for
  depthwise ones. A conv with 65 filters costs about what one with 80 costs at tile 16. Features:
  ``tile_count`` (tiles the op computes) and ``padded_flops`` (MACs with channels rounded up to the
  tile). The tile differs per ISA (8, 16 or 32 on x86, 4-16 on ARM); it is not read from the machine
  but chosen per category by the method's cross-validation on the training ops, from
  ``TILE_CANDIDATES``.
- A 1x1, stride-1 conv is a plain GEMM; every other conv goes through an indirection buffer (IGEMM):
  ``gemm_flops``.
- Depthwise kernels exist for up to ``UNIPASS_MAX_TAPS`` taps (3x3, 5x5); larger kernels (7x7) run
  a multi-pass kernel or outside XNNPACK. Measured on this project's host: a 7x7 depthwise conv costs
  about 6x more per MAC than a 3x3 or 5x5 one. Feature: ``multipass_flops``.
- Element-wise ops differ in work per element: binary ops read two tensors, transcendental ones
  (sigmoid, tanh, exp) evaluate a polynomial. Features: ``binary_size``, ``transcendental_size``.

The derived features are appended to the category's Table 3 features inside its model
(:class:`KernelFeatures` travels in the bundle), so stored op rows need nothing new and no
re-profiling. They are used for CPU scenarios only; GPU kernels have their own features.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..categories import (BINARY_ELEMENTWISE_TYPES, CONV2D, DEPTHWISE_CONV2D, ELEMENTWISE,
                          FULLY_CONNECTED, GROUPED_CONV2D)
from ..scenario import Scenario

TILE_CANDIDATES = (8, 16, 32)
UNIPASS_MAX_TAPS = 25
BINARY_TYPES = BINARY_ELEMENTWISE_TYPES
TRANSCENDENTAL_TYPES = frozenset({"LOGISTIC", "TANH", "EXP", "LOG", "GELU", "ELU", "SQRT", "RSQRT",
                                  "Sigmoid", "Tanh", "Exp", "Log", "Gelu", "Elu", "Sqrt", "Erf"})
TILED = (CONV2D, GROUPED_CONV2D, DEPTHWISE_CONV2D, FULLY_CONNECTED)


@dataclass(frozen=True)
class KernelFeatures:
    """Derived columns of one category; ``tile`` is the channel tile (0: category has no tile)."""
    category: str
    tile: int = 0

    @property
    def names(self) -> tuple[str, ...]:
        out: tuple[str, ...] = ()
        if self.tile:
            out += ("tile_count", "padded_flops")
        if self.category == CONV2D:
            out += ("gemm_flops",)
        elif self.category == DEPTHWISE_CONV2D:
            out += ("multipass_flops",)
        elif self.category == ELEMENTWISE:
            out += ("binary_size", "transcendental_size")
        return out

    def columns(self, X: np.ndarray, feature_names: Sequence[str],
                op_types: Sequence[str] | None) -> np.ndarray:
        """The derived columns (n x len(names)) for raw Table 3 rows ``X`` in ``feature_names``."""
        X = np.asarray(X, dtype=np.float64)
        n = len(X)
        index = {name: i for i, name in enumerate(feature_names)}

        def col(name: str, default: float = 0.0) -> np.ndarray:
            return X[:, index[name]] if name in index else np.full(n, default)

        out = []
        if self.tile:
            flops = col("flops")
            groups = np.maximum(col("groups", 1.0), 1.0)
            # depthwise: every channel is its own group, but channels are what the kernel tiles
            lanes = col("filters") / (1.0 if self.category == DEPTHWISE_CONV2D else groups)
            lanes = np.maximum(lanes, 1.0)
            tiles = np.ceil(lanes / self.tile)
            out.append(tiles * (1.0 if self.category == DEPTHWISE_CONV2D else groups))
            out.append(flops * tiles * self.tile / lanes)
        if self.category == CONV2D:
            one_by_one = (col("kernel_hw", 1.0) == 1) & (col("stride", 1.0) == 1)
            out.append(np.where(one_by_one, col("flops"), 0.0))
        elif self.category == DEPTHWISE_CONV2D:
            taps = col("kernel_hw", 1.0) ** 2
            out.append(np.where(taps > UNIPASS_MAX_TAPS, col("flops"), 0.0))
        elif self.category == ELEMENTWISE:
            types = np.asarray(op_types if op_types is not None else [""] * n, dtype=object)
            size = col("input_size")
            out.append(np.where([t in BINARY_TYPES for t in types], size, 0.0))
            out.append(np.where([t in TRANSCENDENTAL_TYPES for t in types], size, 0.0))
        return np.column_stack(out) if out else np.zeros((n, 0))

    def expand(self, X: np.ndarray, feature_names: Sequence[str],
               op_types: Sequence[str] | None) -> np.ndarray:
        """``X`` with the derived columns appended."""
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        return np.hstack([X, self.columns(X, feature_names, op_types)])

    def describe(self) -> str:
        return f"tile {self.tile}" if self.tile else "no tile"


def kernel_candidates(category: str) -> list[KernelFeatures | None]:
    """What cross-validation chooses among for a category (None: Table 3 features only)."""
    if category in TILED:
        return [KernelFeatures(category, t) for t in TILE_CANDIDATES]
    if KernelFeatures(category).names:
        return [KernelFeatures(category)]
    return [None]


def uses_cpu_kernels(scenario: Scenario) -> bool:
    """CPU scenarios get kernel features; GPU ones predict kernels with their own features."""
    return not scenario.is_gpu
