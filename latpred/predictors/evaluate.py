"""Evaluate a bundle on profiled models it was not trained on (paper §4.2: MAPE on held-out models).

Predictions use the features stored with each measured op (the same ``op_features`` the model files
would give), so held-out model files need not be at hand. Reported: end-to-end MAPE, the share of
models predicted within ±1 %, ±5 % and ±10 %, and per category the op-level MAPE.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..errors import LatpredError
from .predict import Predictor, frame_rows
from .train import model_key, select_scenario

ACCURACY_BANDS = (0.01, 0.05, 0.10)


@dataclass
class Evaluation:
    scenario: str
    method: str
    n_models: int
    e2e_mape: float                          # fraction (0.05 == 5 %)
    within: dict[float, float]               # band -> share of models with |error| <= band
    category_mape: dict[str, float]          # op-level MAPE per category
    category_ops: dict[str, int]
    per_model: pd.DataFrame = field(repr=False)   # model, measured_ms, predicted_ms, error
    # model, op_index, category, measured_ms, predicted_ms, fallback
    per_op: pd.DataFrame = field(repr=False)

    @property
    def fallback_ops(self) -> int:
        """Ops predicted by the fallback (their category has no model in the bundle)."""
        return int(self.per_op["fallback"].sum())

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "method": self.method, "n_models": self.n_models,
                "e2e_mape": self.e2e_mape, "fallback_ops": self.fallback_ops,
                "within": {f"{int(round(b * 100))}%": v for b, v in self.within.items()},
                "category_mape": self.category_mape, "category_ops": self.category_ops}

    def text(self) -> str:
        lines = [f"{self.method} on {self.scenario}: {self.n_models} held-out models",
                 f"  end-to-end MAPE {self.e2e_mape * 100:.2f} %   within "
                 + ", ".join(f"±{int(round(b * 100))}%: {v * 100:.0f} %"
                             for b, v in self.within.items())]
        if self.fallback_ops:
            lines.append(f"  {self.fallback_ops} ops predicted by the fallback (no model for "
                         f"their category)")
        lines.append(f"  {'category':<16}{'ops':>8}{'MAPE %':>10}")
        for cat in sorted(self.category_mape):
            lines.append(f"  {cat:<16}{self.category_ops[cat]:>8}"
                         f"{self.category_mape[cat] * 100:>10.2f}")
        return "\n".join(lines)


def held_out(frame: pd.DataFrame, predictor: Predictor) -> pd.DataFrame:
    """Rows of the models the bundle was not trained on (by file hash, else by name)."""
    t = predictor.bundle.training
    hashes, names = set(t.get("model_hashes", [])), set(t.get("models", []))
    if hashes and "model_hash" in frame.columns:
        return frame[~frame["model_hash"].astype(str).isin(hashes)]
    return frame[~frame["model"].astype(str).isin(names)]


def evaluate(predictor: Predictor, frame: pd.DataFrame, *, models: Iterable[str] | None = None,
             exclude_training: bool = True) -> Evaluation:
    """Predict the models of ``frame`` (bundle's scenario, not in its training set) and score them."""
    frame, scenario = select_scenario(frame, predictor.bundle.scenario)
    if exclude_training:
        frame = held_out(frame, predictor)
    if models is not None:
        from .train import select_models
        frame = select_models(frame, models)
    if frame.empty:
        raise LatpredError(f"no held-out models of scenario {scenario} to evaluate (all were used "
                           f"for training)")
    key = model_key(frame)
    groups = list(frame.assign(_key=key).groupby("_key", sort=False))
    names = [str(g["model"].iloc[0]) for _, g in groups]
    preds = predictor.predict_rows_many([frame_rows(g, predictor) for _, g in groups], names)

    per_model = pd.DataFrame({
        "model": names,
        "measured_ms": [float(g["e2e_ms"].iloc[0]) for _, g in groups],
        "predicted_ms": [p.latency_ms for p in preds]})
    per_model["error"] = (per_model["predicted_ms"] - per_model["measured_ms"]) \
        / per_model["measured_ms"]
    valid = per_model[np.isfinite(per_model["error"])]
    if valid.empty:
        raise LatpredError(f"no held-out model of scenario {scenario} has an end-to-end latency")
    abs_err = valid["error"].abs().to_numpy()

    per_op = pd.concat([pd.DataFrame({
        "model": name, "op_index": p.op_index, "category": p.op_category,
        "measured_ms": g["latency_ms"].to_numpy(dtype=np.float64),
        "predicted_ms": p.op_latency_ms, "fallback": p.op_fallback, "fused": p.op_fused})
        for name, p, (_, g) in zip(names, preds, groups)], ignore_index=True)
    ok = per_op[np.isfinite(per_op["measured_ms"]) & (per_op["measured_ms"] > 0)]
    ape = ((ok["predicted_ms"] - ok["measured_ms"]) / ok["measured_ms"]).abs()
    by_cat = ape.groupby(ok["category"])
    return Evaluation(
        scenario=scenario, method=predictor.bundle.method, n_models=len(valid),
        e2e_mape=float(abs_err.mean()),
        within={b: float((abs_err <= b).mean()) for b in ACCURACY_BANDS},
        category_mape={str(c): float(v) for c, v in by_cat.mean().items()},
        category_ops={str(c): int(v) for c, v in by_cat.size().items()},
        per_model=per_model, per_op=per_op)
