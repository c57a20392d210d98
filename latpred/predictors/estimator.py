"""The whole predictor as one scikit-learn estimator (paper §4.2): T_overhead + Σ f_category(x̂).

    >>> from latpred.predictors import LatencyPredictor
    >>> est = LatencyPredictor(method="gbdt").fit(store.frame(scenario))
    >>> est.predict(["mobilenet.tflite"])        # end-to-end ms, one per model
    >>> est.predict(op_frame)                    # per model of a frame of stored op rows (Series)
    >>> est.predict_ops(op_frame)                # per op row (ms, no overhead)
    >>> est.predict_many(["mobilenet.tflite"])   # Predictions with their per-op breakdown
    >>> est.save("gbdt.latpred"); LatencyPredictor.load("gbdt.latpred")

It follows scikit-learn's estimator contract: every setting is an ``__init__`` argument kept as
given (``get_params``/``set_params``/``sklearn.base.clone`` work), ``fit`` returns the estimator,
and what it learns lives in attributes ending in ``_`` (``bundle_``, ``scenario_``, ``models_``,
``overhead_ms_``, ``overhead_share_``, ``fallback_``, ``training_``). ``bundle_`` is the plain-data
state a bundle file holds; :func:`latpred.load` gives back a fitted estimator.

``fit`` takes a DataFrame shaped like ``ProfileStore.frame()`` (one row per measured op or GPU
kernel with ``model``, ``category``, ``latency_ms``, ``e2e_ms`` and feature columns); choose the
training models by filtering it first (:func:`latpred.predictors.train.select_models`). What it
does with the rows (usable latencies, fallback categories, overhead statistics) is described in
:mod:`latpred.predictors.train`; the per-category methods and searches in
:mod:`latpred.predictors.methods`.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from ..cpu.fusion import runtime_folds
from ..cpu.kernels import kernel_candidates, uses_cpu_kernels
from ..errors import LatpredError
from ..ir import ModelGraph
from ..scenario import Scenario
from .bundle import Bundle, category_features, library_versions, load_bundle, save_bundle
from .methods import DEFAULT_OVERHEAD, METHODS, OBJECTIVES, OVERHEAD_STATISTICS, fit_category
from .predict import Predictor, frame_rows
from .train import (IMPLAUSIBLE_FACTOR, MIN_SAMPLES, REFINING_METHODS, REQUIRED_COLUMNS,
                    feature_matrix, fit_fallback, fit_overhead, implausible_timings, model_key,
                    op_types, select_scenario, trainer_machine)

log = logging.getLogger("latpred")


class LatencyPredictor(Predictor, BaseEstimator):
    """Per-category latency models of one scenario, the overhead term and the fallback.

    ``method``: lasso | rf | gbdt | mlp. ``scenario``: a :class:`~latpred.scenario.Scenario` or
    its id; None takes the frame's only scenario. ``overhead``: 'linear' (default: a + b x Σ ops
    on the MSPE), 'mean' (the paper's), 'median' or 'none'. ``objective``: 'mspe' (paper, Eq. 1)
    or 'mse' (ablation). ``kernel_features``: the CPU kernel features of
    :mod:`latpred.cpu.kernels` (None: on for CPU scenarios). ``linear_base``: trees may refine a
    per-category Lasso estimate (None: on for RF and GBDT with the MSPE). ``work_target``: let
    CV choose latency or latency per unit of work. ``min_samples``: fewer usable ops send a
    category to the fallback. ``min_latency_ms``: faster rows stay out of the fits (None: the
    scenario's op timer resolution). ``full_grid``: the paper's full searches; ``grids``:
    per-method search override ``{"gbdt": {...}}``. ``implausible_factor``: models with an op
    timed faster per unit of work than 1/factor of its category's fast end are left out of the
    category fits (misattributed op timings, see :mod:`latpred.predictors.train`); None keeps
    them. ``measured_on``: facts about the measuring machine to record in the bundle
    (``latpred train`` passes the store's)."""

    def __init__(self, method: str = "gbdt", scenario: Scenario | str | None = None, *,
                 overhead: str = DEFAULT_OVERHEAD, objective: str = "mspe",
                 kernel_features: bool | None = None, linear_base: bool | None = None,
                 work_target: bool = False, min_samples: int = MIN_SAMPLES,
                 min_latency_ms: float | None = None, full_grid: bool = False,
                 grids: dict[str, dict[str, list]] | None = None,
                 implausible_factor: float | None = IMPLAUSIBLE_FACTOR, seed: int = 0,
                 n_jobs: int = 1, progress: bool = False, measured_on: dict | None = None):
        self.method = method
        self.scenario = scenario
        self.overhead = overhead
        self.objective = objective
        self.kernel_features = kernel_features
        self.linear_base = linear_base
        self.work_target = work_target
        self.min_samples = min_samples
        self.min_latency_ms = min_latency_ms
        self.full_grid = full_grid
        self.grids = grids
        self.implausible_factor = implausible_factor
        self.seed = seed
        self.n_jobs = n_jobs
        self.progress = progress
        self.measured_on = measured_on

    # -- the fitted state, as the inference side (Predictor) reads it ----------------------------
    @property
    def bundle(self) -> Bundle:
        try:
            return self.bundle_
        except AttributeError:
            raise LatpredError("this LatencyPredictor is not fitted yet; call fit() or "
                               "LatencyPredictor.load()") from None

    # settings shadow the inference side's read-only views of the bundle
    method = scenario = None
    path = None

    def __repr__(self) -> str:
        return BaseEstimator.__repr__(self)

    def _set_state(self, bundle: Bundle) -> "LatencyPredictor":
        self.bundle_ = bundle
        self.scenario_ = Scenario.parse(bundle.scenario)
        self.models_ = bundle.models
        self.overhead_ms_ = bundle.overhead_ms
        self.overhead_share_ = bundle.overhead_share
        self.fallback_ = bundle.fallback
        self.training_ = bundle.training
        self._warned = set()
        return self

    @classmethod
    def from_bundle(cls, bundle: Bundle, path: str | None = None) -> "LatencyPredictor":
        """A fitted estimator of a bundle, its settings taken from the bundle's training facts."""
        t = bundle.training
        est = cls(method=bundle.method, scenario=bundle.scenario,
                  overhead=t.get("overhead", DEFAULT_OVERHEAD),
                  objective=t.get("objective", "mspe"),
                  kernel_features=t.get("kernel_features"), linear_base=t.get("linear_base"),
                  work_target=bool(t.get("work_target", False)),
                  min_samples=int(t.get("min_samples", MIN_SAMPLES)),
                  min_latency_ms=t.get("min_latency_ms"), full_grid=bool(t.get("full_grid")),
                  implausible_factor=t.get("implausible_factor", IMPLAUSIBLE_FACTOR),
                  seed=int(t.get("seed", 0)), measured_on=t.get("measured_on") or None)
        est._set_state(bundle)
        est.path = path
        return est

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatencyPredictor":
        """A fitted estimator from a bundle file (plain data: loading runs no code)."""
        return cls.from_bundle(load_bundle(path), os.fspath(path))

    def save(self, path: str | os.PathLike) -> str:
        """Write the fitted state as a bundle file (atomically)."""
        return save_bundle(self.bundle, path)

    # -- what a row is ---------------------------------------------------------------------------
    def encode(self, ops: pd.DataFrame) -> pd.DataFrame:
        """The op rows as the category models see them: the key in ``category``, the features in
        columns (:func:`category_features`). The identity here; an ablation can key rows by other
        kernel types and describe them by other features by overriding this and
        :meth:`feature_names` (both fit and frame predictions go through them)."""
        return ops

    def feature_names(self, category: str) -> tuple[str, ...]:
        return category_features(category)

    # -- fitting -----------------------------------------------------------------------------
    def _check_settings(self) -> None:
        for value, allowed, what in ((self.method, METHODS, "method"),
                                     (self.objective, OBJECTIVES, "objective"),
                                     (self.overhead, OVERHEAD_STATISTICS, "overhead statistic")):
            if value not in allowed:
                raise LatpredError(f"unknown {what} {value!r}; choose from {', '.join(allowed)}")
        if int(self.min_samples) < 1:
            raise LatpredError(f"min_samples must be >= 1, got {self.min_samples}")

    def _scenario_of(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, Scenario]:
        wanted = None if self.scenario is None else Scenario.parse(self.scenario)
        if "scenario" not in frame.columns:
            if wanted is None:
                raise LatpredError("the training rows have no scenario column; pass scenario=")
            return frame, wanted
        frame, scenario_id = select_scenario(frame, None if wanted is None else wanted.id)
        return frame, wanted if wanted is not None else Scenario.parse(scenario_id)

    def fit(self, X: pd.DataFrame, y=None) -> "LatencyPredictor":
        """Fit every category model, the overhead and the fallback on the op rows ``X``
        (``y`` is unused: the targets are ``X['latency_ms']`` and ``X['e2e_ms']``)."""
        self._check_settings()
        if not isinstance(X, pd.DataFrame):
            raise LatpredError("fit() takes a DataFrame of op rows (ProfileStore.frame())")
        missing = [c for c in REQUIRED_COLUMNS if c not in X.columns]
        if missing:
            raise LatpredError(f"training data lacks column(s) {', '.join(missing)}")
        frame, scenario = self._scenario_of(X)
        if frame.empty:
            raise LatpredError(f"no measured ops to train on for scenario {scenario}")
        method, objective = self.method, self.objective
        overhead_value, overhead_share, n_overhead = fit_overhead(frame, self.overhead)
        min_latency_ms = scenario.op_timer_resolution_ms if self.min_latency_ms is None \
            else float(self.min_latency_ms)
        kernel_features = uses_cpu_kernels(scenario) if self.kernel_features is None \
            else bool(self.kernel_features)
        can_refine = method in REFINING_METHODS and objective == "mspe"
        linear_base = can_refine if self.linear_base is None else \
            bool(self.linear_base) and can_refine
        min_rows = max(int(self.min_samples), 2)
        grids = self.grids or {}
        t0 = time.perf_counter()
        models, features, skipped, n_ops, n_used = {}, {}, {}, {}, {}
        key = model_key(frame)
        n_implausible, untrusted = implausible_timings(frame, min_latency_ms,
                                                       self.implausible_factor)
        untrusted_names = sorted(frame.loc[key.isin(untrusted), "model"].astype(str).unique())
        if untrusted:
            log.warning("%d model(s) have op timings implausibly fast for the ops' work (%s): "
                        "their op rows are left out of the category fits", len(untrusted),
                        ", ".join(untrusted_names))
        trusted = ~key.isin(untrusted).to_numpy()
        groups = list(self.encode(frame).assign(_trusted=trusted).groupby("category", sort=True))
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=len(groups), unit="category", desc=f"train {method}",
                       dynamic_ncols=True)
        try:
            for cat, rows in groups:
                cat = str(cat)
                names = self.feature_names(cat)
                features[cat] = names
                lat = rows["latency_ms"].to_numpy(dtype=np.float64)
                usable = np.isfinite(lat) & (lat >= min_latency_ms) & (lat > 0) \
                    & rows["_trusted"].to_numpy()
                n_ops[cat], n_used[cat] = int(len(rows)), int(usable.sum())
                if bar is not None:
                    bar.set_postfix_str(f"{cat} ({n_used[cat]} ops)", refresh=True)
                if n_used[cat] < min_rows:
                    skipped[cat] = n_used[cat]
                    log.warning("category %s has %d usable training ops (< %d): its ops will be "
                                "predicted by the fallback", cat, n_used[cat], min_rows)
                else:
                    used = rows[usable]
                    Xc, yc, types = feature_matrix(used, names), lat[usable], op_types(used)
                    kernels = kernel_candidates(cat) if kernel_features else (None,)
                    common = dict(seed=self.seed, n_jobs=self.n_jobs, kernels=kernels,
                                  op_types=types, work_target=self.work_target)
                    base = fit_category("lasso", cat, names, Xc, yc, grid=grids.get("lasso"),
                                        **common) if linear_base else None
                    models[cat] = fit_category(method, cat, names, Xc, yc,
                                               full_grid=self.full_grid, grid=grids.get(method),
                                               objective=objective, base=base, **common)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        training = {
            "n_models": int(key.nunique()),
            "models": sorted(frame["model"].astype(str).unique()),
            "model_hashes": sorted(frame["model_hash"].astype(str).unique())
            if "model_hash" in frame.columns else [],
            "n_ops": n_ops, "n_ops_used": n_used, "fallback_categories": skipped,
            "n_ops_implausible": n_implausible, "untrusted_models": untrusted_names,
            "implausible_factor": self.implausible_factor, "overhead": self.overhead,
            "overhead_models": n_overhead, "objective": objective,
            "cpu_fusion": runtime_folds(scenario), "kernel_features": kernel_features,
            "work_target": bool(self.work_target), "linear_base": linear_base,
            "kernels": {c: m.kernel.describe() for c, m in models.items()
                        if m.kernel is not None},
            "min_samples": int(self.min_samples), "min_latency_ms": min_latency_ms,
            "full_grid": bool(self.full_grid), "seed": int(self.seed),
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "train_seconds": round(time.perf_counter() - t0, 3),
            "cv_mspe": {c: m.cv_mspe for c, m in models.items()},
            "cv_loss": {c: m.cv_loss for c, m in models.items()},
            "params": {c: m.params for c, m in models.items()},
            "trained_on": trainer_machine(),
            "measured_on": dict(self.measured_on or {}),
        }
        if scenario.cpu is not None and hasattr(scenario.cpu, "facts"):
            training["measured_on"].update(scenario.cpu.facts())
        bundle = Bundle(scenario=scenario.id, method=method, models=models, features=features,
                        overhead_ms=overhead_value, overhead_share=overhead_share,
                        fallback=fit_fallback(frame), training=training,
                        versions=library_versions())
        return self._set_state(bundle)

    # -- predicting ------------------------------------------------------------------------------
    def predict(self, X):
        """End-to-end latency (ms, overhead included).

        - a frame of op rows: a Series indexed by model;
        - a list of model files / ModelGraphs: an array, one per model;
        - one model file or ModelGraph: its :class:`~latpred.predictors.predict.Prediction`
          (``latency_ms`` and the per-op breakdown ``ops``), as ``latpred.load(p).predict(m)``."""
        if isinstance(X, pd.DataFrame):
            _, preds = self._frame_predictions(X)
            return pd.Series({p.model: p.latency_ms for p in preds}, dtype=np.float64)
        if isinstance(X, (str, os.PathLike, ModelGraph)):
            return self.predict_many([X])[0]
        return np.array([p.latency_ms for p in self.predict_many(X)], dtype=np.float64)

    def predict_models(self, X: pd.DataFrame) -> pd.Series:
        """End-to-end latency per model of an op frame: the interface the baselines share
        (:mod:`latpred.baselines`)."""
        return self.predict(X)

    def predict_ops(self, X: pd.DataFrame) -> np.ndarray:
        """Per-op latency (ms, no overhead), aligned with the rows of the op frame ``X``."""
        out = np.full(len(X), np.nan)
        for pos, p in zip(*self._frame_predictions(X)):
            out[pos] = p.op_latency_ms
        return out

    def _frame_predictions(self, ops: pd.DataFrame):
        """(row positions per model, Predictions) for the models of the op frame ``ops``."""
        ops = self.encode(ops)
        groups = [(name, g) for name, g in
                  ops.assign(_pos=np.arange(len(ops))).groupby("model", sort=False)]
        preds = self.predict_rows_many([frame_rows(g, self) for _, g in groups],
                                       [str(n) for n, _ in groups])
        return [g["_pos"].to_numpy() for _, g in groups], preds


def load(path: str | os.PathLike) -> LatencyPredictor:
    """Load a bundle file written by ``latpred train`` as a fitted :class:`LatencyPredictor`."""
    return LatencyPredictor.load(path)
