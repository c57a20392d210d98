"""Look-up table of measured op latencies: reuse a measurement where the same op was seen.

Key: (op type, category, the category's Table 3 feature values). The op type is part of the key
because ops of one category with identical shapes can differ in work (ADD vs RELU, max vs average
pooling). Value: median measured latency of the training ops with that key. An op never seen has
no entry: the table has a *coverage* (share of ops found), and an end-to-end prediction exists
only for models whose every op is found (Σ of the looked-up latencies, no overhead term).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..features import FEATURES


def _keys(ops: pd.DataFrame) -> list[tuple]:
    keys = []
    feats = {c: FEATURES.get(c, FEATURES["Other"]) for c in ops["category"].unique()}
    cols = {f: ops[f].to_numpy() if f in ops else np.zeros(len(ops))
            for fs in feats.values() for f in fs}
    for i, (t, c) in enumerate(zip(ops["op_type"], ops["category"])):
        keys.append((t, c, *(None if v != v else round(float(v), 6)
                             for v in (cols[f][i] for f in feats[c]))))
    return keys


class LookupTable:
    name = "lut"

    def __init__(self):
        self.table: dict[tuple, float] = {}

    def fit(self, train_ops: pd.DataFrame) -> "LookupTable":
        lat = pd.Series(train_ops["latency_ms"].to_numpy(np.float64), index=_keys(train_ops))
        self.table = lat.groupby(level=0).median().to_dict()
        return self

    def predict_ops(self, ops: pd.DataFrame) -> np.ndarray:
        """Looked-up latency per op row; NaN where the configuration was never measured."""
        return np.array([self.table.get(k, np.nan) for k in _keys(ops)], dtype=np.float64)

    def coverage(self, ops: pd.DataFrame) -> float:
        """Share of the op rows whose configuration is in the table."""
        if len(ops) == 0:
            return float("nan")
        return float(np.mean(~np.isnan(self.predict_ops(ops))))

    def predict_models(self, ops: pd.DataFrame) -> pd.Series:
        """Σ of looked-up latencies per model; NaN for a model with any op not in the table."""
        pred = pd.Series(self.predict_ops(ops), index=ops.index)
        return pred.groupby(ops["model"], sort=False).sum(min_count=1).where(
            pred.notna().groupby(ops["model"], sort=False).all())
