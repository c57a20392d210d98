"""Baselines the paper's method is compared with (paper §5.6): what a user would pick instead.

Every baseline learns from the same op-level frame as our predictors
(:meth:`latpred.store.ProfileStore.frame`, one row per measured op, one scenario) and
predicts end-to-end latency per model; op-level baselines also predict each op.

- :class:`FlopsBaseline` — latency proportional to a model's total multiply-accumulates;
- :class:`NnMeterBaseline` — nn-Meter-style random-forest kernel predictors (its features and
  settings), trained on our measurements, no overhead term, no kernel selection;
- :class:`GcnBaseline` — BRP-NAS-style graph convolutional network trained on end-to-end latency;
- :class:`LookupTable` — measured op latencies reused where the same op configuration was seen.

Common interface: ``fit(train_ops) -> self``; ``predict_models(ops) -> pd.Series`` (ms, indexed by
model name); op-level baselines add ``predict_ops(ops) -> np.ndarray`` aligned with the rows.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .flops import FlopsBaseline, model_macs
from .gcn import GcnBaseline
from .lut import LookupTable
from .nnmeter import NnMeterBaseline, nnmeter_features

BASELINES = ("flops", "nnmeter", "gcn", "lut")


def model_e2e(ops: pd.DataFrame) -> pd.Series:
    """Measured end-to-end latency (ms) per model of an op frame (stored once per op row)."""
    return ops.groupby("model", sort=False)["e2e_ms"].first()


def make(name: str, **kwargs):
    """A fresh, unfitted baseline by name (see ``BASELINES``)."""
    cls = {"flops": FlopsBaseline, "nnmeter": NnMeterBaseline, "gcn": GcnBaseline,
           "lut": LookupTable}.get(name)
    if cls is None:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    return cls(**kwargs)


def sum_by_model(ops: pd.DataFrame, op_pred: np.ndarray) -> pd.Series:
    """Σ of per-op predictions per model, in order of first appearance."""
    return pd.Series(np.asarray(op_pred, dtype=np.float64), index=ops.index).groupby(
        ops["model"], sort=False).sum()


__all__ = ["BASELINES", "FlopsBaseline", "NnMeterBaseline", "GcnBaseline", "LookupTable", "make",
           "model_e2e", "model_macs", "nnmeter_features", "sum_by_model"]
