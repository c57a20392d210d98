"""Regression trees as plain arrays, evaluated with numpy: the random forest's form in a bundle.

A fitted scikit-learn ``DecisionTreeRegressor`` is reduced to its node arrays (``children_left``,
``children_right``, ``feature``, ``threshold``, ``value``); :class:`ArrayForest` walks them the way
scikit-learn does (inputs cast to float32, ``x <= threshold`` goes left, leaves have no children)
and averages the trees. So a forest predicts the same after training and after loading, and a
bundle holds no estimator objects. Inputs are finite (standardised feature rows); a NaN would go
right.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

LEAF = -1   # scikit-learn's _TREE_LEAF


@dataclass
class ArrayTree:
    left: np.ndarray       # int64, child index or LEAF
    right: np.ndarray      # int64
    feature: np.ndarray    # int64, input column of a split (ignored at leaves)
    threshold: np.ndarray  # float64
    value: np.ndarray      # float64, the prediction of each node

    @classmethod
    def from_sklearn(cls, tree) -> "ArrayTree":
        t = tree.tree_
        if t.n_outputs != 1:
            raise ValueError("only single-output regression trees are supported")
        return cls(left=np.asarray(t.children_left, dtype=np.int64).copy(),
                   right=np.asarray(t.children_right, dtype=np.int64).copy(),
                   feature=np.asarray(t.feature, dtype=np.int64).copy(),
                   threshold=np.asarray(t.threshold, dtype=np.float64).copy(),
                   value=np.asarray(t.value, dtype=np.float64).reshape(t.node_count).copy())

    def check(self, n_inputs: int) -> str | None:
        """What is wrong with these arrays as a tree over ``n_inputs`` columns (None: nothing).
        Children must come after their parent, so a walk always ends at a leaf."""
        n = len(self.value)
        if n == 0:
            return "a tree has no nodes"
        for name in ("left", "right", "feature", "threshold"):
            if getattr(self, name).shape != (n,):
                return f"tree {name} array does not match its {n} nodes"
        if not np.all(np.isfinite(self.value)):
            return "a tree has a non-finite leaf value"
        leaf = self.left == LEAF
        if not np.array_equal(leaf, self.right == LEAF):
            return "a tree node has only one child"
        inner = ~leaf
        idx = np.arange(n)
        for child in (self.left[inner], self.right[inner]):
            if np.any(child <= idx[inner]) or np.any(child >= n):
                return "a tree child index is out of order or out of range"
        if np.any(self.feature[inner] < 0) or np.any(self.feature[inner] >= n_inputs):
            return f"a tree splits on a column outside its {n_inputs} inputs"
        if not np.all(np.isfinite(self.threshold[inner])):
            return "a tree has a non-finite threshold"
        return None

    def predict(self, X32: np.ndarray) -> np.ndarray:
        node = np.zeros(len(X32), dtype=np.int64)
        rows = np.arange(len(X32))
        active = rows[self.left[node] != LEAF]
        while len(active):
            at = node[active]
            go_left = X32[active, self.feature[at]] <= self.threshold[at]
            node[active] = np.where(go_left, self.left[at], self.right[at])
            active = active[self.left[node[active]] != LEAF]
        return self.value[node]


class ArrayForest:
    """The mean of :class:`ArrayTree` predictions (a fitted ``BootstrapForest``)."""

    def __init__(self, trees: Sequence[ArrayTree]):
        self.trees = list(trees)

    @classmethod
    def from_sklearn(cls, trees) -> "ArrayForest":
        return cls([ArrayTree.from_sklearn(t) for t in trees])

    def predict(self, Z: np.ndarray) -> np.ndarray:
        # scikit-learn compares float32 inputs with float64 thresholds; so do we
        X32 = np.asarray(Z, dtype=np.float32)
        return np.mean([t.predict(X32) for t in self.trees], axis=0)

    # -- bundle form: the trees' arrays concatenated, with the node count of each tree ---------
    def to_arrays(self) -> dict[str, np.ndarray]:
        cat = (lambda name: np.concatenate([getattr(t, name) for t in self.trees])) \
            if self.trees else (lambda name: np.zeros(0))
        return {"nodes": np.array([len(t.value) for t in self.trees], dtype=np.int64),
                "left": cat("left").astype(np.int64), "right": cat("right").astype(np.int64),
                "feature": cat("feature").astype(np.int64),
                "threshold": cat("threshold").astype(np.float64),
                "value": cat("value").astype(np.float64)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_inputs: int) -> "ArrayForest":
        """Rebuild from :meth:`to_arrays`; ValueError says what is inconsistent."""
        nodes = arrays["nodes"]
        if nodes.ndim != 1 or len(nodes) == 0 or nodes.dtype.kind not in "iu" \
                or np.any(nodes <= 0):
            raise ValueError("forest node counts are invalid")
        total = int(nodes.sum())
        for name in ("left", "right", "feature", "threshold", "value"):
            a = arrays[name]
            if a.shape != (total,):
                raise ValueError(f"forest {name} array does not match its {total} nodes")
            if (a.dtype.kind not in "iu") if name in ("left", "right", "feature") \
                    else (a.dtype.kind != "f"):
                raise ValueError(f"forest {name} array has dtype {a.dtype}")
        trees, start = [], 0
        for n in nodes.tolist():
            part = slice(start, start + n)
            tree = ArrayTree(*(arrays[k][part].astype(np.float64 if k in ("threshold", "value")
                                                      else np.int64)
                               for k in ("left", "right", "feature", "threshold", "value")))
            problem = tree.check(n_inputs)
            if problem:
                raise ValueError(problem)
            trees.append(tree)
            start += n
        return cls(trees)
