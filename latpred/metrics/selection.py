"""What a latency predictor's errors cost when it replaces measurement in selecting models under a
latency limit (BRP-NAS supplementary §S1.3, "oracle NAS"; seed 003).

For models S, limit l, predicted latency pred(.) and measured latency lat(.) (seed 003 §S1.3):

* false positives  P_f = {s : pred(s) <= l and lat(s) > l}   (believed to fit, do not)
* false negatives  N_f = {s : pred(s) > l and lat(s) <= l}   (believed too slow, would fit)
* true positives   P_t = {s : pred(s) <= l and lat(s) <= l}; truly fitting T = {s : lat(s) <= l}
* assumed best     s_a = argmax accuracy over P_t u P_f   (what the predictor-driven search picks)
* effective best   s_e = argmax accuracy over P_t         (after re-measuring and dropping P_f)
* ground-truth best s* = argmax accuracy over T           (what measurement alone picks)
* missed accuracy     = acc(s*) - acc(s_e)                (cost of false negatives)
* over-claimed accuracy = acc(s_a) - acc(s_e)             (cost of false positives)
* related latency errors: pred(s*) - lat(s*) if s* != s_e, pred(s_a) - lat(s_a) if s_a != s_e.

The seed writes strict inequalities on both sides; "fits" here is ``<= limit`` (equal float
latencies are measure-zero). Without accuracies only the counts are reported.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import LatpredError

DEFAULT_STEPS = 50


def selection_at_limit(names: Sequence[str], pred: Sequence[float], meas: Sequence[float],
                       limit: float, accuracy: Sequence[float] | None = None) -> dict:
    """FP/FN counts and (with accuracies) the best-model comparison at one latency limit."""
    names = [str(n) for n in names]
    p, m = np.asarray(pred, dtype=float), np.asarray(meas, dtype=float)
    if not (len(names) == len(p) == len(m)):
        raise LatpredError("names, predicted and measured latency differ in length")
    pred_fit, meas_fit = p <= limit, m <= limit
    fp, fn = pred_fit & ~meas_fit, ~pred_fit & meas_fit
    tp, tn = pred_fit & meas_fit, ~pred_fit & ~meas_fit
    out = {"limit_ms": float(limit), "truly_fit": int(meas_fit.sum()),
           "predicted_fit": int(pred_fit.sum()), "true_positives": int(tp.sum()),
           "true_negatives": int(tn.sum()), "false_positives": int(fp.sum()),
           "false_negatives": int(fn.sum()),
           "false_positive_models": [names[i] for i in np.flatnonzero(fp)],
           "false_negative_models": [names[i] for i in np.flatnonzero(fn)]}
    if accuracy is None:
        return out
    acc = np.asarray(accuracy, dtype=float)
    if len(acc) != len(names):
        raise LatpredError("accuracy has a different length from the models")
    known = np.isfinite(acc)

    def best(mask: np.ndarray) -> int | None:
        mask = mask & known
        if not mask.any():
            return None
        idx = np.flatnonzero(mask)
        return int(idx[np.argmax(acc[idx])])   # first of equal accuracies, in input order

    a, e, g = best(pred_fit), best(tp), best(meas_fit)
    name = lambda i: None if i is None else names[i]      # noqa: E731
    out.update(assumed_best=name(a), effective_best=name(e), ground_truth_best=name(g),
               assumed_best_accuracy=None if a is None else float(acc[a]),
               effective_best_accuracy=None if e is None else float(acc[e]),
               ground_truth_best_accuracy=None if g is None else float(acc[g]))
    # Where the predictor finds nothing usable, all that fits is missed (effective accuracy 0 is
    # not meaningful); report None there rather than a made-up number.
    out["missed_accuracy"] = (float(acc[g] - acc[e]) if g is not None and e is not None
                              else None)
    out["overclaimed_accuracy"] = (float(acc[a] - acc[e]) if a is not None and e is not None
                                   else None)
    out["missed_latency_error_ms"] = (float(p[g] - m[g]) if g is not None and g != e else
                                      (0.0 if g is not None else None))
    out["overclaimed_latency_error_ms"] = (float(p[a] - m[a]) if a is not None and a != e else
                                           (0.0 if a is not None else None))
    out["nothing_found"] = e is None and g is not None
    return out


def selection_curve(names: Sequence[str], pred: Sequence[float], meas: Sequence[float],
                    limits: Sequence[float], accuracy: Sequence[float] | None = None
                    ) -> pd.DataFrame:
    """:func:`selection_at_limit` for every limit: one row per limit, in the given order."""
    rows = [selection_at_limit(names, pred, meas, float(l), accuracy) for l in limits]
    return pd.DataFrame(rows)


def default_limits(meas: Sequence[float], pred: Sequence[float] | None = None,
                   steps: int = DEFAULT_STEPS) -> np.ndarray:
    """``steps`` evenly spaced limits spanning the measured (and predicted) latencies."""
    vals = np.asarray(meas, dtype=float)
    if pred is not None:
        vals = np.concatenate([vals, np.asarray(pred, dtype=float)])
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        raise LatpredError("no latencies to set limits from")
    return np.linspace(vals.min(), vals.max(), steps)


def parse_limits(text: str) -> np.ndarray:
    """'1,2,5' -> those limits; 'START:STOP:STEP' -> inclusive range (ms)."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [float(x) for x in text.split(":")]
            if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                raise ValueError
            start, stop, step = parts
            n = int(np.floor((stop - start) / step + 1e-9)) + 1
            return start + step * np.arange(n)
        vals = np.array([float(x) for x in text.split(",") if x.strip()])
        if not len(vals):
            raise ValueError
        return vals
    except ValueError:
        raise LatpredError(f"--limits {text!r}: expected ms values like 1,2,5 or START:STOP:STEP "
                           f"with STEP > 0") from None


def curve_summary(curve: pd.DataFrame) -> dict:
    """Totals over a selection curve (the limits where the predictor changes a decision)."""
    out = {"limits": int(len(curve)),
           "limits_with_false_positives": int((curve["false_positives"] > 0).sum()),
           "limits_with_false_negatives": int((curve["false_negatives"] > 0).sum()),
           "max_false_positives": int(curve["false_positives"].max()) if len(curve) else 0,
           "max_false_negatives": int(curve["false_negatives"].max()) if len(curve) else 0}
    if "missed_accuracy" in curve:
        miss = pd.to_numeric(curve["missed_accuracy"], errors="coerce")
        over = pd.to_numeric(curve["overclaimed_accuracy"], errors="coerce")
        out.update(limits_with_missed_accuracy=int((miss > 0).sum()),
                   max_missed_accuracy=float(miss.max()) if miss.notna().any() else None,
                   limits_with_overclaimed_accuracy=int((over > 0).sum()),
                   max_overclaimed_accuracy=float(over.max()) if over.notna().any() else None,
                   limits_where_predictor_finds_nothing=int(curve["nothing_found"].sum()))
    return out


__all__ = ["selection_at_limit", "selection_curve", "default_limits", "parse_limits",
           "curve_summary"]
