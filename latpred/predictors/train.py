"""Training data for :class:`~latpred.predictors.estimator.LatencyPredictor` (paper §4.2): which
rows of profiled ops enter the fits, the overhead term and the fallback.

Input: a DataFrame shaped like ``ProfileStore.frame()``: one row per measured op (or GPU kernel) with
``model``, ``scenario``, ``category``, ``latency_ms``, ``e2e_ms`` (``model_hash`` optional) and one
column per feature name. One model is trained per value of ``category`` (op categories on CPUs,
kernel types such as ``Winograd`` on GPUs) on the features ``FEATURES[category]``; a missing feature
value counts as 0, as in :func:`latpred.features.op_features`.

- Rows with a latency that is missing, <= 0 (an op the runtime fused away) or below
  ``min_latency_ms`` cannot enter a percentage loss. The default is the op timer's resolution
  (:attr:`latpred.scenario.Scenario.op_timer_resolution_ms`): 1 µs for op profilers, which report whole microseconds (LiteRT's
  in-graph profiler, the phones' benchmark tool), where a value under it is mostly quantisation
  noise whose 1/y^2 weight would dominate its category; 0 for isolated single-op timings. They
  are left out of the category fit (counted in the bundle's training facts) but still count in
  the overhead.
- Models with op timings that cannot be their ops' have all their op rows left out of the
  category fits (still counted in the overhead, whose e2e and op sum stay right), listed in the
  training facts (``untrusted_models``). An op row is implausible (:func:`implausible_ops`) when
  its latency per unit of work (MACs, or elements for memory-bound categories,
  :func:`~latpred.predictors.methods.work_column`) is below ``1/implausible_factor`` of the
  category's ``IMPLAUSIBLE_QUANTILE`` quantile: the fastest ops of a category run at its peak
  throughput, so an op timed several times faster than that got another op's time (the op
  profiler shifts times between ops in some real-world graphs, e.g. hrnet_w18_small_v2 in the
  committed host store: a 231 M-MAC conv at 4 µs, a 7x7 ADD at 0.23 ms). Under the MSPE one such
  row is catastrophic: its true time would be an error of 1000x at weight 1/y^2, so a linear
  model flattens its MAC slope for the whole category (whole-store Lasso: resnet10, a training
  model, at 0.9 ms instead of 18). The whole model goes, as its plausible-looking rows carry
  shifted times too. The test is one-sided: a slow row costs at most 100 % of its error.
- A category with fewer than ``min_samples`` usable rows gets no model; its ops are predicted by the
  bundle's :class:`~latpred.predictors.bundle.Fallback`, with a warning at training and prediction.
- ``T_overhead``: the gap (measured e2e - sum of the measured op latencies) of the training models.
  ``overhead='mean'`` is the paper's definition, its mean over training models; ``'median'`` takes
  the median (robust to a few noisy models) and ``'none'`` leaves it out (ablation). The default,
  ``'linear'``, is a fixed part plus a share of the ops' sum, a + b x Σ ops, fitted on the same
  MSPE as the category models (weights 1/e2e^2), with a, b >= 0: the gap grows with the model (on
  the host, the op profiler's events miss about 0.7 % of the run), so a constant over-predicts
  small models. The choice is kept in the training facts.
- ``objective='mse'`` fits plain squared error instead of the paper's MSPE (ablation only; see
  :mod:`latpred.predictors.methods`).
"""
from __future__ import annotations

import logging
import os
import platform
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..categories import CONV_CATEGORIES, FULLY_CONNECTED, OTHER
from ..errors import LatpredError
from .bundle import Fallback, category_features
from .methods import DEFAULT_OVERHEAD, OVERHEAD_STATISTICS, work_column

log = logging.getLogger("latpred")
MIN_SAMPLES = 5
REQUIRED_COLUMNS = ("model", "category", "latency_ms", "e2e_ms")
# Compute-bound categories are left out of the fallback's latency-per-element ratio.
COMPUTE_BOUND = set(CONV_CATEGORIES) | {FULLY_CONNECTED, "Winograd"}
# Tree methods predict a constant beyond their data; they may refine a Lasso estimate instead.
REFINING_METHODS = ("rf", "gbdt")
# An op row faster per unit of work than 1/IMPLAUSIBLE_FACTOR of its category's
# IMPLAUSIBLE_QUANTILE quantile marks its model's op timings as misattributed (see the module
# doc). On the committed host store the synthetic models' spread below the 5 % quantile is at most
# 0.35 decades (2.2x) in every category; the misattributed rows lie 0.6 to 3 decades below it.
IMPLAUSIBLE_QUANTILE = 0.05
IMPLAUSIBLE_FACTOR = 4.0
IMPLAUSIBLE_MIN_ROWS = 20


def select_scenario(frame: pd.DataFrame, scenario: str | None) -> tuple[pd.DataFrame, str]:
    """Rows of one scenario; ``scenario`` may be None when the frame holds exactly one."""
    if "scenario" not in frame.columns:
        return frame, scenario or "unknown"
    present = sorted(frame["scenario"].dropna().unique())
    if scenario is None:
        if len(present) == 1:
            return frame, present[0]
        if not present:
            raise LatpredError("no measured models to train on")
        raise LatpredError(f"several scenarios present; pick one with --scenario "
                           f"({', '.join(present)})")
    if scenario not in present:
        raise LatpredError(f"scenario {scenario!r} not found (has: {', '.join(present) or 'none'})")
    return frame[frame["scenario"] == scenario], scenario


def model_key(frame: pd.DataFrame) -> pd.Series:
    """Identity of a model within one scenario: its file hash when known, else its name."""
    if "model_hash" in frame.columns and frame["model_hash"].notna().all():
        return frame["model_hash"].astype(str)
    return frame["model"].astype(str)


def select_models(frame: pd.DataFrame, names: Iterable[str]) -> pd.DataFrame:
    """Rows of the models named (by model name, file stem, or model_hash); unknown names are an error."""
    wanted = [str(n).strip() for n in names if str(n).strip()]
    if not wanted:
        raise LatpredError("the list of training models is empty")
    stems = {n: os.path.splitext(os.path.basename(n))[0] for n in wanted}
    known = set(frame["model"].astype(str))
    hashes = set(frame["model_hash"].astype(str)) if "model_hash" in frame.columns else set()
    missing = [n for n in wanted if n not in known and n not in hashes and stems[n] not in known]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise LatpredError(f"{len(missing)} training model(s) not in the store: "
                           f"{', '.join(missing[:3])}{more}")
    keep = set(wanted) | set(stems.values())
    mask = frame["model"].astype(str).isin(keep)
    if hashes:
        mask |= frame["model_hash"].astype(str).isin(keep)
    return frame[mask]


def read_model_list(path: str | os.PathLike) -> list[str]:
    """One model per line (name, file path or hash); blank lines and ``#`` comments ignored."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise LatpredError(f"{path}: cannot read training model list ({exc.strerror})") from None
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


def fit_overhead(frame: pd.DataFrame, statistic: str = DEFAULT_OVERHEAD
                 ) -> tuple[float, float, int]:
    """(fixed ms, share of Σ ops, models it is fitted on) of T_overhead (see the module doc)."""
    if statistic not in OVERHEAD_STATISTICS:
        raise LatpredError(f"unknown overhead statistic {statistic!r}; choose from "
                           f"{', '.join(OVERHEAD_STATISTICS)}")
    key = model_key(frame)
    per_model = frame.assign(_key=key).groupby("_key", sort=False).agg(
        e2e=("e2e_ms", "first"), ops=("latency_ms", lambda s: float(np.nansum(s))))
    per_model = per_model[np.isfinite(per_model["e2e"]) & (per_model["e2e"] > 0)]
    if per_model.empty:
        return 0.0, 0.0, 0
    if statistic == "none":
        return 0.0, 0.0, len(per_model)
    e2e, ops = per_model["e2e"].to_numpy(), per_model["ops"].to_numpy()
    gap = e2e - ops
    if statistic == "mean":
        return float(gap.mean()), 0.0, len(per_model)
    if statistic == "median":
        return float(np.median(gap)), 0.0, len(per_model)
    # weighted least squares of the gap on Σ ops: the MSPE of e2e when the ops are exact
    w = 1.0 / e2e ** 2
    share = 0.0
    if len(per_model) >= 3 and np.ptp(ops) > 0:
        sw = np.sqrt(w)
        A = np.column_stack([np.ones_like(ops), ops]) * sw[:, None]
        fixed, share = np.linalg.lstsq(A, gap * sw, rcond=None)[0]
    if share <= 0:   # a gap that shrinks with the model is noise: keep the constant
        return float(np.sum(w * gap) / np.sum(w)), 0.0, len(per_model)
    if fixed < 0:
        # a negative fixed part would predict tiny models below their ops' sum, even below 0 ms:
        # the best line through the origin instead (same weights)
        return 0.0, float(max(np.sum(w * gap * ops) / np.sum(w * ops ** 2), 0.0)), len(per_model)
    return float(fixed), float(share), len(per_model)


def feature_matrix(rows: pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    cols = [rows[n].to_numpy(dtype=np.float64) if n in rows.columns else np.zeros(len(rows))
            for n in names]
    X = np.column_stack(cols) if cols else np.zeros((len(rows), 0))
    return np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0)


def op_types(rows: pd.DataFrame) -> np.ndarray:
    """The runtime op type of each row (its category where the frame has no ``op_type``)."""
    column = "op_type" if "op_type" in rows.columns else "category"
    return rows[column].astype(str).to_numpy()


def element_count(rows: pd.DataFrame) -> np.ndarray:
    """input_size + output_size per row (param_size when both are absent); NaN when none known."""
    def col(name):
        return rows[name].to_numpy(dtype=np.float64) if name in rows.columns \
            else np.full(len(rows), np.nan)
    io = np.nansum(np.column_stack([col("input_size"), col("output_size")]), axis=1)
    has_io = ~(np.isnan(col("input_size")) & np.isnan(col("output_size")))
    size = np.where(has_io, io, col("param_size"))
    return np.where(size > 0, size, np.nan)


def implausible_ops(X: np.ndarray, y: np.ndarray, names: tuple[str, ...],
                    factor: float | None = IMPLAUSIBLE_FACTOR,
                    quantile: float = IMPLAUSIBLE_QUANTILE) -> np.ndarray:
    """Mask of rows whose latency per unit of work (``work_column(names)``) is below
    ``1/factor`` of the ``quantile`` quantile over the rows with work > 0: timings that belong to
    another op (see the module doc). Nothing is flagged without a work column, with fewer than
    ``IMPLAUSIBLE_MIN_ROWS`` rows with work, or with ``factor`` None or <= 1."""
    bad = np.zeros(len(y), dtype=bool)
    column = work_column(names)
    if column is None or factor is None or factor <= 1:
        return bad
    work = np.asarray(X, dtype=np.float64)[:, list(names).index(column)]
    has = np.isfinite(work) & (work > 0)
    if has.sum() < IMPLAUSIBLE_MIN_ROWS:
        return bad
    rate = np.asarray(y, dtype=np.float64)[has] / work[has]
    bad[has] = rate < np.quantile(rate, quantile) / factor
    return bad


def implausible_timings(frame: pd.DataFrame, min_latency_ms: float, factor: float | None
                        ) -> tuple[dict[str, int], set[str]]:
    """(implausible rows per category, keys of the models holding any): a model with one op
    timing that cannot be its op's has its op profile misattributed, and its other op rows,
    however plausible they look, carry other ops' times too. ``Other`` is never checked: its op
    types are unrelated, so one's throughput says nothing of another's."""
    counts: dict[str, int] = {}
    models: set[str] = set()
    key = model_key(frame).to_numpy()
    for cat, rows in frame.assign(_pos=np.arange(len(frame))).groupby("category", sort=True):
        cat = str(cat)
        if cat == OTHER:
            continue
        names = category_features(cat)
        lat = rows["latency_ms"].to_numpy(dtype=np.float64)
        usable = np.isfinite(lat) & (lat >= min_latency_ms) & (lat > 0)
        if not usable.any():
            continue
        bad = implausible_ops(feature_matrix(rows[usable], names), lat[usable], names, factor)
        if bad.any():
            counts[cat] = int(bad.sum())
            models |= set(key[rows["_pos"].to_numpy()[usable][bad]])
    return counts, models


def fit_fallback(frame: pd.DataFrame) -> Fallback:
    lat = frame["latency_ms"].to_numpy(dtype=np.float64)
    ok = np.isfinite(lat) & (lat > 0)
    size = element_count(frame)
    memory_bound = ~frame["category"].isin(COMPUTE_BOUND).to_numpy()
    for mask, source in ((ok & memory_bound & np.isfinite(size), "memory-bound ops"),
                         (ok & np.isfinite(size), "all ops")):
        if mask.any():
            ratio = float(np.median(lat[mask] / size[mask]))
            break
    else:
        ratio, source = 0.0, "no sized ops"
    constant = float(np.median(lat[ok])) if ok.any() else 0.0
    return Fallback(ms_per_element=ratio, constant_ms=constant,
                    source=f"median latency/(input+output elements) over {source}")


def trainer_machine() -> dict[str, Any]:
    from ..devices import this_cpu
    return {"hostname": platform.node(), "platform": platform.platform(), "cpu": str(this_cpu()),
            "logical_cpus": os.cpu_count()}
