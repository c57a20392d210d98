"""Predict end-to-end latency: T_overhead + Σ per-op predictions (paper §4.2); T_overhead is the
bundle's fixed term plus, for ``overhead='linear'`` bundles, a share of that sum
(``Bundle.overhead_for``).

Many models at once are predicted in one pass per category: every op row of every model is grouped
by category, each category model predicts its whole matrix once, and the results are scattered
back. Rows come from a ModelGraph through :meth:`Predictor.rows_of` (one row per op with
``op_features`` on a CPU; on a GPU scenario one row per kernel after the delegate's fusion and
kernel selection, keyed by kernel type), or are given directly to :meth:`Predictor.predict_rows`
(per-row ms) or :meth:`Predictor.predict_rows_many` (whole-model Predictions).

Folded ops: where the bundle's runtime folds an op into the next one (``cpu_fusion`` in its training
facts: TFLite/LiteRT on a CPU, see :mod:`latpred.cpu.fusion`), a row flagged ``folded`` costs 0 ms
and is marked ``fused=True`` in the breakdown.

Fallback: an op whose category has no model in the bundle (never seen in training, or too few
samples) is predicted as ``ms_per_element x (input_size + output_size)`` (``param_size`` when the
row has neither), with a median-latency constant when the row has no size at all (see
:class:`~latpred.predictors.bundle.Fallback`). A warning names the categories, and the per-op
breakdown marks those ops with ``fallback=True``.
"""
from __future__ import annotations

import logging
import operator
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np
import pandas as pd

from ..errors import LatpredError
from ..features import FOLDED
from ..ir import ModelGraph
from ..scenario import Scenario, model_precision
from .adaptation import apply_adaptation
from .bundle import Bundle

log = logging.getLogger("latpred")
# the model file format each runtime of a scenario executes
RUNTIME_FORMATS = {"litert": "tflite", "tflite": "tflite", "onnxruntime": "onnx"}


class OpRow(NamedTuple):
    """One unit of execution to predict: an op (CPU) or a kernel (GPU)."""
    index: int
    type: str
    category: str
    features: dict[str, float]


def op_rows(graph: ModelGraph) -> list[OpRow]:
    """Default row builder: one row per op of the graph with its Table 3 features (and the
    ``folded`` flag of :func:`latpred.features.graph_features`)."""
    from ..features import graph_features
    return [OpRow(op.index, op.type, op.category, f)
            for op, f in zip(graph.ops, graph_features(graph))]


@dataclass
class Prediction:
    """Predicted latency of one model; ``ops`` is the per-op breakdown as a DataFrame."""
    model: str
    latency_ms: float
    overhead_ms: float
    op_index: np.ndarray = field(repr=False)
    op_type: list[str] = field(repr=False)
    op_category: list[str] = field(repr=False)
    op_latency_ms: np.ndarray = field(repr=False)
    op_fallback: np.ndarray = field(repr=False)
    op_fused: np.ndarray = field(repr=False)     # folded into the next op by the runtime: 0 ms
    _ops: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def ops(self) -> pd.DataFrame:
        """Columns: index, type, category, latency_ms, fallback, fused (built on first access)."""
        if self._ops is None:
            self._ops = pd.DataFrame({"index": self.op_index, "type": self.op_type,
                                      "category": self.op_category,
                                      "latency_ms": self.op_latency_ms,
                                      "fallback": self.op_fallback, "fused": self.op_fused})
        return self._ops

    @property
    def fallback_ops(self) -> list[int]:
        """Indices of the ops predicted by the fallback (no model for their category)."""
        return [int(i) for i in self.op_index[self.op_fallback]]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "latency_ms": float(self.latency_ms),
                "overhead_ms": float(self.overhead_ms),
                "ops": [{"index": int(i), "type": t, "category": c, "latency_ms": float(v),
                         "fallback": bool(f), "fused": bool(u)}
                        for i, t, c, v, f, u in zip(self.op_index, self.op_type, self.op_category,
                                                    self.op_latency_ms, self.op_fallback,
                                                    self.op_fused)]}


def _matrix(feats: list[dict[str, float]], names: tuple[str, ...]) -> np.ndarray:
    """Rows of ``names`` from feature dicts (missing or NaN -> 0)."""
    get = operator.itemgetter(*names) if len(names) > 1 else (lambda f: (f[names[0]],))
    try:  # fast path: op_features gives exactly these keys
        X = np.array([get(f) for f in feats], dtype=np.float64)
    except KeyError:
        X = np.array([[f.get(n, 0.0) for n in names] for f in feats], dtype=np.float64)
    return np.nan_to_num(X.reshape(len(feats), len(names)), nan=0.0, posinf=0.0, neginf=0.0)


def _as_row(item: Any, position: int) -> OpRow:
    if isinstance(item, OpRow):
        return item
    if isinstance(item, dict):
        return OpRow(int(item.get("index", position)), str(item.get("type", item["category"])),
                     str(item["category"]), item["features"])
    if isinstance(item, (tuple, list)) and len(item) == 2:
        category, feats = item
        return OpRow(position, str(category), str(category), feats)
    if isinstance(item, (tuple, list)) and len(item) == 4:
        return OpRow(int(item[0]), str(item[1]), str(item[2]), item[3])
    raise TypeError("a row is OpRow, (category, features), (index, type, category, features) or "
                    "a dict with category and features")


class Predictor:
    """A loaded bundle, ready to predict models (see module doc)."""

    def __init__(self, bundle: Bundle, path: str | None = None):
        self.bundle = bundle
        self.path = path
        self.gpu: str | None = None       # GPU chip for GPU bundles whose scenario names none
        self.strict = False               # a model of another scenario is an error, not a warning
        self._warned: set[str] = set()

    scenario = property(lambda self: self.bundle.scenario)
    method = property(lambda self: self.bundle.method)
    overhead_ms = property(lambda self: self.bundle.overhead_ms)        # the fixed part
    overhead_share = property(lambda self: self.bundle.overhead_share)  # x Σ op latencies
    categories = property(lambda self: sorted(self.bundle.models))

    def __repr__(self) -> str:
        return f"Predictor({self.bundle.describe()})"

    # -- inputs -----------------------------------------------------------------------------------
    def _bundle_scenario(self) -> Scenario:
        """The bundle's scenario, parsed once per predictor (it is asked for every model)."""
        cached = self.__dict__.get("_scenario_cache")
        if cached is None or cached.id != self.bundle.scenario:
            cached = self.__dict__["_scenario_cache"] = Scenario.parse(self.bundle.scenario)
        return cached

    def rows_of(self, graph: ModelGraph) -> list[OpRow]:
        """What the bundle's runtime executes, as rows to predict: on a GPU scenario the kernels
        after the delegate's fusion and kernel selection (:mod:`latpred.gpu`), else one row per
        op (:func:`op_rows`)."""
        scenario = self._bundle_scenario()
        if not scenario.is_gpu:
            return op_rows(graph)
        from ..gpu import deduce_kernels, kernel_feature_rows, resolve_gpu
        gpu = getattr(self, "gpu", None) or scenario.gpu_chip or scenario.device
        try:
            spec = resolve_gpu(gpu)
        except LatpredError as exc:
            raise LatpredError(f"{self.bundle.scenario} is a GPU scenario whose GPU is not known "
                               f"({exc}); name the GPU with --gpu") from None
        kernels = deduce_kernels(graph, spec)
        return [OpRow(k.main_op, k.kernel, category, feats)
                for k, (category, feats) in zip(kernels.kernels,
                                                kernel_feature_rows(graph, kernels))]

    def scenario_mismatch(self, graph: ModelGraph, name: str | None = None) -> str | None:
        """What makes ``graph`` a model of another scenario than the bundle's (its file format is
        not the bundle runtime's, or its precision differs), as one sentence; None if nothing."""
        scenario = self._bundle_scenario()
        want_format = RUNTIME_FORMATS.get(scenario.runtime)
        precision = model_precision(graph)
        other_format = want_format is not None and graph.format != want_format
        # "unknown": a scenario of unreadable models says nothing about precision
        other_precision = scenario.precision != "unknown" and precision != scenario.precision
        if scenario.is_gpu and scenario.precision == "fp16" and precision == "fp32":
            other_precision = False   # the GPU delegate runs float models at fp16 by default
        if not (other_format or other_precision):
            return None
        name = name or str(graph.name or graph.path or "model")
        return (f"{name}: {precision} {graph.format} model, but the bundle was trained for "
                f"{scenario.id} ({scenario.precision} {want_format or '?'} models on "
                f"{scenario.runtime}): its latency is predicted for another scenario")

    def check_scenario(self, graph: ModelGraph, name: str | None = None,
                       strict: bool | None = None) -> None:
        """Warn when ``graph`` is a model of another scenario (:meth:`scenario_mismatch`);
        ``strict`` (default: the ``strict`` attribute) makes it a LatpredError."""
        problem = self.scenario_mismatch(graph, name)
        if problem is None:
            return
        if getattr(self, "strict", False) if strict is None else strict:
            raise LatpredError(f"{problem} (refused: --strict)")
        log.warning("%s", problem)

    def _graph(self, model: str | os.PathLike | ModelGraph) -> tuple[str, ModelGraph]:
        if isinstance(model, ModelGraph):
            return str(model.name or model.path or "model"), model
        from ..readers import read_model
        return os.fspath(model), read_model(model)

    # -- predicting -------------------------------------------------------------------------------
    def predict(self, model: str | os.PathLike | ModelGraph) -> Prediction:
        """Predict one model given as a file path or an already-read ModelGraph."""
        return self.predict_many([model])[0]

    def predict_many(self, models: Iterable[str | os.PathLike | ModelGraph],
                     progress: bool = False) -> list[Prediction]:
        """Predict many models; all their ops go through each category model in one call."""
        models = list(models)
        it = models
        if progress:
            from tqdm import tqdm
            it = tqdm(models, unit="model", desc="read", dynamic_ncols=True)
        names, row_lists = [], []
        for m in it:
            name, graph = self._graph(m)
            self.check_scenario(graph, name)
            names.append(name)
            row_lists.append(self.rows_of(graph))
        return self.predict_rows_many(row_lists, names)

    def predict_rows(self, rows: Sequence[Any]) -> np.ndarray:
        """Per-row latency (ms, no overhead) for rows given directly, e.g. GPU kernels.

        A row is an ``OpRow``, a ``(category, features)`` pair, ``(index, type, category,
        features)`` or a dict with ``category`` and ``features``; ``features`` holds at least the
        bundle's feature names for that category (missing names count as 0)."""
        return self.predict_rows_many([rows])[0].op_latency_ms

    def predict_rows_many(self, row_lists: Sequence[Sequence[Any]],
                          names: Sequence[str] | None = None) -> list[Prediction]:
        names = list(names) if names is not None else [f"model{i}" for i in range(len(row_lists))]
        if len(names) != len(row_lists):
            raise ValueError("names and row_lists differ in length")
        rows = [[_as_row(r, i) for i, r in enumerate(rl)] for rl in row_lists]
        flat = [r for rl in rows for r in rl]
        latency, fallback, fused = self.row_latencies(flat)
        out, start = [], 0
        for name, rl in zip(names, rows):
            end = start + len(rl)
            lat = latency[start:end]
            ops_ms = float(lat.sum())
            overhead = float(self.bundle.overhead_for(ops_ms))
            out.append(Prediction(
                model=name, latency_ms=overhead + ops_ms, overhead_ms=overhead,
                op_index=np.array([r.index for r in rl], dtype=np.int64),
                op_type=[r.type for r in rl], op_category=[r.category for r in rl],
                op_latency_ms=lat.copy(), op_fallback=fallback[start:end].copy(),
                op_fused=fused[start:end].copy()))
            start = end
        return out

    def row_latencies(self, flat: Sequence[OpRow], adapted: bool = True
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-row (latency ms, fallback, fused) of OpRows; ``adapted=False`` gives the source
        bundle's latency of an adapted bundle (its prior, :mod:`latpred.predictors.adapt`)."""
        latency = np.zeros(len(flat))
        fallback = np.zeros(len(flat), dtype=bool)
        # ops the runtime folds into the next op cost nothing and need no model
        fused = np.zeros(len(flat), dtype=bool)
        if self.bundle.training.get("cpu_fusion"):
            fused = np.array([bool(r.features.get(FOLDED, 0.0)) for r in flat], dtype=bool)
        by_cat: dict[str, list[int]] = {}
        for pos, r in enumerate(flat):
            if not fused[pos]:
                by_cat.setdefault(r.category, []).append(pos)
        fell_back: dict[str, int] = {}
        for cat, positions in by_cat.items():
            model = self.bundle.models.get(cat)
            if model is not None:
                X = _matrix([flat[p].features for p in positions], model.features)
                latency[positions] = model.predict(X, [flat[p].type for p in positions])
            else:
                latency[positions] = self._fallback([flat[p].features for p in positions])
                fallback[positions] = True
                fell_back[cat] = len(positions)
        self._warn_fallback(fell_back)
        adaptation = self.bundle.training.get("adaptation")
        if adapted and adaptation:
            latency = apply_adaptation(adaptation, flat, latency, fused)
        return latency, fallback, fused

    def _fallback(self, feats: list[dict[str, float]]) -> np.ndarray:
        fb = self.bundle.fallback
        out = np.empty(len(feats))
        for i, f in enumerate(feats):
            if "input_size" in f or "output_size" in f:
                size = float(f.get("input_size", 0.0) or 0.0) \
                    + float(f.get("output_size", 0.0) or 0.0)
            else:
                size = float(f.get("param_size", 0.0) or 0.0)
            out[i] = fb.ms_per_element * size if size > 0 and fb.ms_per_element > 0 \
                else fb.constant_ms
        return out

    def _warn_fallback(self, fell_back: dict[str, int]) -> None:
        warned = self.__dict__.setdefault("_warned", set())
        new = {c: n for c, n in fell_back.items() if c not in warned}
        if new:
            warned.update(new)
            cats = ", ".join(f"{c} ({n} ops)" for c, n in sorted(new.items()))
            log.warning("no trained %s model for %s in this bundle; predicted with the "
                        "latency-per-element fallback", self.bundle.method, cats)


def frame_rows(rows: pd.DataFrame, predictor: Predictor) -> list[OpRow]:
    """OpRows from stored op rows, with the features each category model expects."""
    out = []
    cats = rows["category"].astype(str).to_numpy()
    idx = rows["op_index"].to_numpy() if "op_index" in rows.columns else np.arange(len(rows))
    types = rows["op_type"].astype(str).to_numpy() if "op_type" in rows.columns else cats
    cols = {c: rows[c].to_numpy(dtype=np.float64) for c in rows.columns
            if c in {n for names in predictor.bundle.features.values() for n in names}
            or c in ("input_size", "output_size", "param_size", FOLDED)}
    for i in range(len(rows)):
        feats = {n: v[i] for n, v in cols.items() if v[i] == v[i]}   # NaN: feature n/a
        out.append(OpRow(int(idx[i]), types[i], cats[i], feats))
    return out
