"""Train a predictor bundle from profiled op rows (paper §4.2).

Input: a DataFrame shaped like ``ProfileStore.frame()``: one row per measured op (or GPU kernel) with
``model``, ``scenario``, ``category``, ``latency_ms``, ``e2e_ms`` (``model_hash`` optional) and one
column per feature name. One model is trained per value of ``category`` (op categories on CPUs,
kernel types such as ``Winograd`` on GPUs) on the features ``FEATURES[category]``; a missing feature
value counts as 0, as in :func:`latpred.features.op_features`.

- Rows with a latency that is missing, <= 0 (an op the runtime fused away) or below
  ``min_latency_ms`` cannot enter a percentage loss. The default is the op timer's resolution
  (:func:`op_timer_resolution_ms`): 1 µs for op profilers, which report whole microseconds (LiteRT's
  in-graph profiler, the phones' benchmark tool), where a value under it is mostly quantisation
  noise whose 1/y^2 weight would dominate its category; 0 for isolated single-op timings. They
  are left out of the category fit (counted in the bundle's training facts) but still count in
  the overhead.
- A category with fewer than ``min_samples`` usable rows gets no model; its ops are predicted by the
  bundle's :class:`~latpred.predictors.bundle.Fallback`, with a warning at training and prediction.
- ``T_overhead``: the gap (measured e2e - sum of the measured op latencies) of the training models.
  ``overhead='mean'`` is the paper's definition, its mean over training models; ``'median'`` takes
  the median (robust to a few noisy models) and ``'none'`` leaves it out (ablation). The default,
  ``'linear'``, is a fixed part plus a share of the ops' sum, a + b x Σ ops, fitted on the same
  MSPE as the category models (weights 1/e2e^2), with b >= 0: the gap grows with the model (on
  the host, the op profiler's events miss about 0.7 % of the run), so a constant over-predicts
  small models. The choice is kept in the training facts.
- ``objective='mse'`` fits plain squared error instead of the paper's MSPE (ablation only; see
  :mod:`latpred.predictors.methods`).
"""
from __future__ import annotations

import logging
import os
import platform
import time
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..categories import CONV_CATEGORIES, FULLY_CONNECTED
from ..cpu.fusion import runtime_folds
from ..cpu.kernels import kernel_candidates, uses_cpu_kernels
from ..errors import LatpredError
from .bundle import DEFAULT_ROW_BUILDER, Bundle, Fallback, category_features, library_versions
from .methods import (DEFAULT_OVERHEAD, METHODS, OBJECTIVES, OVERHEAD_STATISTICS,
                      fit_category)

log = logging.getLogger("latpred")
MIN_SAMPLES = 5
REQUIRED_COLUMNS = ("model", "category", "latency_ms", "e2e_ms")
# Compute-bound categories are left out of the fallback's latency-per-element ratio.
COMPUTE_BOUND = set(CONV_CATEGORIES) | {FULLY_CONNECTED, "Winograd"}
# Tree methods predict a constant beyond their data; they may refine a Lasso estimate instead.
REFINING_METHODS = ("rf", "gbdt")
PROFILER_RESOLUTION_MS = 1e-3


def op_timer_resolution_ms(scenario: str) -> float:
    """Resolution of the op timings of a scenario: whole microseconds from op profilers
    (host ``+opprof``, the benchmark tool on phones); isolated host timings average many runs of a
    nanosecond clock, so they have none to speak of (0)."""
    from ..scenario import parse_scenario
    try:
        sc = parse_scenario(scenario)
    except LatpredError:
        return PROFILER_RESOLUTION_MS
    isolated = sc.device == "host" and "+opprof" not in sc.runtime_version
    return 0.0 if isolated else PROFILER_RESOLUTION_MS


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
    from ..devices import cpu_model
    return {"hostname": platform.node(), "platform": platform.platform(), "cpu": cpu_model(),
            "logical_cpus": os.cpu_count()}


def train_bundle(frame: pd.DataFrame, method: str, scenario: str | None = None, *,
                 train_models: Iterable[str] | None = None, full_grid: bool = False,
                 min_samples: int = MIN_SAMPLES, seed: int = 0, n_jobs: int = 1,
                 progress: bool = False, measured_on: dict | None = None,
                 row_builder: str = DEFAULT_ROW_BUILDER,
                 grids: dict[str, dict[str, list]] | None = None,
                 objective: str = "mspe", overhead: str = DEFAULT_OVERHEAD,
                 min_latency_ms: float | None = None,
                 kernel_features: bool | None = None, work_target: bool = False,
                 linear_base: bool | None = None,
                 out: str | os.PathLike | None = None) -> Bundle:
    """Fit one model per category of ``scenario`` with ``method`` and package them in a Bundle.

    ``train_models``: names/hashes of the models to train on (default: all of the scenario).
    ``grids``: per-method search override, e.g. ``{"mlp": {...}}`` (tests, experiments).
    ``objective``: 'mspe' (paper, Eq. 1) or 'mse' (plain squared error; ablation only).
    ``overhead``: how T_overhead is taken from (e2e - Σ op latencies) over training models:
    'linear' (default: a + b x Σ ops, see the module doc), 'mean' (the paper's), 'median', or
    'none' (no overhead term).
    ``min_latency_ms``: op rows faster than this are left out of the category fits (default: the
    scenario's op timer resolution, see the module doc).
    ``kernel_features``: add the CPU kernel features of :mod:`latpred.cpu.kernels` to Table 3's,
    their channel tile chosen per category by cross-validation (default: on for CPU scenarios;
    False gives the paper's Table 3 features alone).
    ``work_target``: let cross-validation choose, per category, between predicting the latency
    and predicting the latency per unit of work (MACs, or elements for memory-bound ops); see
    :mod:`latpred.predictors.methods`. Off by default (see the experiments' ablation).
    ``linear_base``: for the tree methods (RF, GBDT), fit a Lasso per category first and let
    cross-validation choose between the plain trees and trees that refine the Lasso estimate
    (see :mod:`latpred.predictors.methods`). Default: on for RF and GBDT with the MSPE objective;
    False gives the paper's trees alone.
    ``out``: also save the bundle there (atomically)."""
    if method not in METHODS:
        raise LatpredError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if objective not in OBJECTIVES:
        raise LatpredError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")
    if overhead not in OVERHEAD_STATISTICS:
        raise LatpredError(f"unknown overhead statistic {overhead!r}; choose from "
                           f"{', '.join(OVERHEAD_STATISTICS)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise LatpredError(f"training data lacks column(s) {', '.join(missing)}")
    frame, scenario = select_scenario(frame, scenario)
    if train_models is not None:
        frame = select_models(frame, train_models)
    if frame.empty:
        raise LatpredError(f"no measured ops to train on for scenario {scenario}")
    overhead_value, overhead_share, n_overhead = fit_overhead(frame, overhead)
    if min_latency_ms is None:
        min_latency_ms = op_timer_resolution_ms(scenario)
    if kernel_features is None:
        kernel_features = uses_cpu_kernels(scenario)
    can_refine = method in REFINING_METHODS and objective == "mspe"
    if linear_base is None:
        linear_base = can_refine
    linear_base = bool(linear_base) and can_refine
    t0 = time.perf_counter()
    models, features, skipped, n_ops, n_used = {}, {}, {}, {}, {}
    groups = list(frame.groupby("category", sort=True))
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(groups), unit="category", desc=f"train {method}", dynamic_ncols=True)
    try:
        for cat, rows in groups:
            cat = str(cat)
            names = category_features(cat)
            features[cat] = names
            lat = rows["latency_ms"].to_numpy(dtype=np.float64)
            usable = np.isfinite(lat) & (lat >= min_latency_ms) & (lat > 0)
            n_ops[cat], n_used[cat] = int(len(rows)), int(usable.sum())
            if bar is not None:
                bar.set_postfix_str(f"{cat} ({n_used[cat]} ops)", refresh=True)
            if n_used[cat] < max(min_samples, 2):
                skipped[cat] = n_used[cat]
                log.warning("category %s has %d usable training ops (< %d): its ops will be "
                            "predicted by the fallback", cat, n_used[cat], max(min_samples, 2))
            else:
                used = rows[usable]
                X, y, types = feature_matrix(used, names), lat[usable], op_types(used)
                kernels = kernel_candidates(cat) if kernel_features else (None,)
                base = fit_category(
                    "lasso", cat, names, X, y, seed=seed, n_jobs=n_jobs,
                    grid=(grids or {}).get("lasso"), kernels=kernels, op_types=types,
                    work_target=work_target) if linear_base else None
                models[cat] = fit_category(
                    method, cat, names, X, y, full_grid=full_grid, seed=seed, n_jobs=n_jobs,
                    grid=(grids or {}).get(method), objective=objective, kernels=kernels,
                    op_types=types, work_target=work_target, base=base)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    key = model_key(frame)
    training = {
        "n_models": int(key.nunique()),
        "models": sorted(frame["model"].astype(str).unique()),
        "model_hashes": sorted(frame["model_hash"].astype(str).unique())
        if "model_hash" in frame.columns else [],
        "n_ops": n_ops, "n_ops_used": n_used, "fallback_categories": skipped,
        "overhead": overhead, "overhead_models": n_overhead, "objective": objective,
        "cpu_fusion": runtime_folds(scenario), "kernel_features": bool(kernel_features),
        "work_target": bool(work_target), "linear_base": linear_base,
        "kernels": {c: m.kernel.describe() for c, m in models.items() if m.kernel is not None},
        "min_samples": min_samples, "min_latency_ms": min_latency_ms, "full_grid": full_grid,
        "seed": seed, "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "train_seconds": round(time.perf_counter() - t0, 3),
        "cv_mspe": {c: m.cv_mspe for c, m in models.items()},
        "cv_loss": {c: m.cv_loss for c, m in models.items()},
        "params": {c: m.params for c, m in models.items()},
        "trained_on": trainer_machine(), "measured_on": measured_on or {},
    }
    bundle = Bundle(scenario=scenario, method=method, models=models, features=features,
                    overhead_ms=overhead_value, overhead_share=overhead_share,
                    fallback=fit_fallback(frame), training=training,
                    versions=library_versions(), row_builder=row_builder)
    if out is not None:
        from .bundle import save_bundle
        save_bundle(bundle, out)
    return bundle
