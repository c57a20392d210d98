"""FLOPs proxy: a model's latency taken proportional to its total multiply-accumulates (MACs).

The one constant is fitted on the training models by least squares on the *relative* error
(the metric every experiment reports): a = argmin Σ ((a·m - y)/y)² = Σ(m/y) / Σ(m/y)².
MACs of a model = Σ of the ``flops`` feature of its convolutions and fully-connected ops, the
convention of :func:`latpred.features.op_macs` (pooling/mean "flops" are not multiply-accumulates).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import categories

MAC_CATEGORIES = (*categories.CONV_CATEGORIES, categories.FULLY_CONNECTED)


def model_macs(ops: pd.DataFrame) -> pd.Series:
    """Total MACs per model of an op frame."""
    macs = ops["flops"].where(ops["category"].isin(MAC_CATEGORIES), 0.0).fillna(0.0)
    return macs.groupby(ops["model"], sort=False).sum()


class FlopsBaseline:
    name = "flops"

    def __init__(self):
        self.ms_per_mac: float | None = None

    def fit(self, train_ops: pd.DataFrame) -> "FlopsBaseline":
        macs = model_macs(train_ops)
        y = train_ops.groupby("model", sort=False)["e2e_ms"].first().reindex(macs.index)
        ok = (macs > 0) & (y > 0)
        if not ok.any():
            raise ValueError("FLOPs baseline: no training model with MACs > 0 and latency > 0")
        r = macs[ok].to_numpy(np.float64) / y[ok].to_numpy(np.float64)
        self.ms_per_mac = float(r.sum() / (r ** 2).sum())
        return self

    def predict_models(self, ops: pd.DataFrame) -> pd.Series:
        if self.ms_per_mac is None:
            raise RuntimeError("FLOPs baseline is not fitted")
        return model_macs(ops) * self.ms_per_mac
