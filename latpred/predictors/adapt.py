"""Adapt a bundle to a device from K end-to-end measurements (``latpred adapt``).

On most real targets (NNAPI, DSPs, Edge TPU, iOS, a board without a profiler) users can time a few
whole models but no op. The source bundle is the prior: it says how the ops of a model share its
latency on the machine it was trained on. The K measured latencies fit what differs on the target,
and the result is an ordinary bundle whose per-op breakdown sums to its end-to-end prediction.

The adapted latency of an op (or GPU kernel) of adaptation group ``g`` (:func:`adaptation_group`:
its category, convolutions split by kernel size, element-wise ops by type) is

    t_op = s_g * prior_op + w_g * flops_op + v_g * bytes_op + c_g          (all >= 0)

and the model's latency is ``a + sum(t_op)`` (``a`` >= 0: the target's fixed overhead). Every term
is linear in per-model sums, so the coefficients are a bounded least-squares fit on the MSPE (the
paper's Eq. 1: errors relative to the measured latency) of the K models:

- ``scale``: one scale for every op plus ``a`` (2 numbers: also what a user does by hand);
- ``group-scales``: a scale per group, shrunk towards their common (prior-weighted) mean with
  strength ``lambda``, so that with few models the groups move together;
- ``group-linear``: group scales plus per-group work terms (``w``, ``v``, ``c``, ridge ``mu``):
  op-wise models learned from end-to-end latencies alone, for large K or a prior that fits badly.
  A work term is fitted on the K models' ops only: prediction keeps an op's work per prior
  millisecond inside the range those ops had (``work_range``), so a 50-GFLOP conv of a real CNN
  is not charged a per-FLOP term learned on small NAS cells beyond what the prior already says.

``method='auto'`` chooses the candidate (and its shrinkage) by cross-validated MSPE inside the K
models (leave-one-out up to 30 models, else 10 folds), with the one-standard-error rule (the
simplest candidate within one standard error of the best); nothing else is looked at.
Groups that none of the K models has fall back to the common scale.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import LatpredError
from .adaptation import WORK_TERMS, adaptation_group, op_work

log = logging.getLogger("latpred")

ADAPT_METHODS = ("auto", "scale", "group-scales", "group-linear")
MIN_MODELS = 3               # 2 numbers (scale, overhead) and one model to validate them
MIN_MODELS_GROUPS = 5        # below: only the global scale is fitted
MIN_MODELS_LINEAR = 10       # below: no per-group work terms
LOO_MAX = 30                 # leave-one-out up to this K, else CV_FOLDS folds
CV_FOLDS = 10
SE_RULE = 0.25               # one-SE rule, scaled: chosen on the development columns (README)
SHRINK_GRID = (1e-4, 1e-3, 1e-2, 0.1, 1.0)
LINEAR_GRID = ((1e-3, 1.0), (1e-3, 0.1), (1e-3, 0.01), (0.1, 1.0), (0.1, 0.1), (0.1, 0.01))
MIN_GROUP_SHARE = 0.01       # smaller groups share one pooled scale (see _solve)
SUMMARIES_LAYOUT = 2         # bumped when Summaries changes: caches of it carry this number


@dataclass
class Summaries:
    """Per-model sums of what the adapted latency is linear in: for each group the prior's
    latency, the FLOPs, the bytes moved (input + output elements) and the op count; and the ops
    themselves (model, group, prior ms, work), which bound the work terms (``work_range``)."""
    names: list[str]
    groups: list[str]
    prior: np.ndarray          # (n models, n groups) ms
    work: np.ndarray           # (n models, n groups, 3): flops, bytes, count
    prior_e2e: np.ndarray      # (n models,) the source bundle's own end-to-end prediction
    op_model: np.ndarray | None = None    # (n ops,) model index of each op with a prior > 0
    op_group: np.ndarray | None = None    # (n ops,) its group index
    op_prior: np.ndarray | None = None    # (n ops,) its prior latency, ms
    op_work: np.ndarray | None = None     # (n ops, 3) its work terms

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, idx) -> "Summaries":
        idx = np.asarray(idx, dtype=int)
        ops = {}
        if self.op_model is not None:
            new = np.full(len(self.names), -1)
            new[idx] = np.arange(len(idx))
            keep = new[self.op_model] >= 0
            ops = dict(op_model=new[self.op_model[keep]], op_group=self.op_group[keep],
                       op_prior=self.op_prior[keep], op_work=self.op_work[keep])
        return Summaries([self.names[i] for i in idx], self.groups, self.prior[idx],
                         self.work[idx], self.prior_e2e[idx], **ops)

    def aligned(self, groups: Sequence[str]) -> "Summaries":
        """The same sums over ``groups`` (groups not here are zero, extra groups dropped)."""
        if list(groups) == list(self.groups):
            return self
        pos = {g: i for i, g in enumerate(self.groups)}
        n = len(self.names)
        prior = np.zeros((n, len(groups)))
        work = np.zeros((n, len(groups), len(WORK_TERMS)))
        to_new = np.full(len(self.groups), -1)
        for j, g in enumerate(groups):
            if g in pos:
                prior[:, j] = self.prior[:, pos[g]]
                work[:, j] = self.work[:, pos[g]]
                to_new[pos[g]] = j
        ops = {}
        if self.op_model is not None:
            group = to_new[self.op_group]
            keep = group >= 0
            ops = dict(op_model=self.op_model[keep], op_group=group[keep],
                       op_prior=self.op_prior[keep], op_work=self.op_work[keep])
        return Summaries(self.names, list(groups), prior, work, self.prior_e2e, **ops)

    def work_ranges(self) -> np.ndarray | None:
        """(G, 3, 2): per group and work term, [lowest, highest] work per prior ms over the
        ops (NaN for a group without ops); None without op arrays."""
        if self.op_model is None:
            return None
        per_ms = self.op_work / self.op_prior[:, None]
        out = np.full((len(self.groups), len(WORK_TERMS), 2), np.nan)
        for g in np.unique(self.op_group):
            rows = per_ms[self.op_group == g]
            out[g, :, 0], out[g, :, 1] = rows.min(axis=0), rows.max(axis=0)
        return out


def summarize(predictor, row_lists: Sequence[Sequence[Any]], names: Sequence[str]) -> Summaries:
    """:class:`Summaries` of models given as rows (``Predictor.rows_of`` of each model), the prior
    being the source bundle ``predictor`` without any adaptation it may carry."""
    from .predict import _as_row
    rows = [[_as_row(r, i) for i, r in enumerate(rl)] for rl in row_lists]
    flat = [r for rl in rows for r in rl]
    latency, _, fused = predictor.row_latencies(flat, adapted=False)
    groups: dict[str, int] = {}
    keys = []
    for r in flat:
        keys.append(groups.setdefault(adaptation_group(r.category, r.type, r.features),
                                      len(groups)))
    n, G = len(rows), len(groups)
    prior = np.zeros((n, G))
    work = np.zeros((n, G, len(WORK_TERMS)))
    e2e = np.zeros(n)
    op_model, op_group, op_prior, op_work_rows = [], [], [], []
    start = 0
    for m, rl in enumerate(rows):
        end = start + len(rl)
        for pos in range(start, end):
            if fused[pos]:
                continue
            g, w = keys[pos], op_work(flat[pos].features)
            prior[m, g] += latency[pos]
            work[m, g] += w
            if latency[pos] > 0:
                op_model.append(m)
                op_group.append(g)
                op_prior.append(latency[pos])
                op_work_rows.append(w)
        ops_ms = prior[m].sum()
        e2e[m] = float(predictor.bundle.overhead_for(ops_ms)) + ops_ms
        start = end
    return Summaries(list(names), list(groups), prior, work, e2e,
                     np.asarray(op_model, dtype=int), np.asarray(op_group, dtype=int),
                     np.asarray(op_prior, dtype=float),
                     np.asarray(op_work_rows, dtype=float).reshape(-1, len(WORK_TERMS)))


# -- the fit ---------------------------------------------------------------------------------
@dataclass
class Candidate:
    method: str                # scale | group-scales | group-linear
    shrink: float = math.inf   # lambda (group scales towards their mean); inf: one scale
    ridge: float = math.inf    # mu (work terms); inf: none

    @property
    def label(self) -> str:
        if self.method == "scale":
            return "scale"
        if self.method == "group-scales":
            return f"group-scales(lambda={self.shrink:g})"
        return f"group-linear(lambda={self.shrink:g}, mu={self.ridge:g})"


@dataclass
class AdaptedCoefficients:
    """What the fit learned: ``a + Σ_g (s_g P_g + w_g·work_g)``."""
    groups: list[str]
    overhead_ms: float
    scales: np.ndarray                 # (G,)
    work: np.ndarray                   # (G, 3) ms per flop, per element moved, per op
    default_scale: float               # groups the fit has not seen
    candidate: Candidate = field(default_factory=lambda: Candidate("scale"))
    # (G, 3, 2) work per prior ms seen on the fitted ops (Summaries.work_ranges); prediction
    # keeps each op inside it, so a work term is not extrapolated to ops unlike the K models'
    work_range: np.ndarray | None = None

    def predict(self, s: Summaries) -> np.ndarray:
        s = s.aligned(self.groups)
        out = self.overhead_ms + s.prior @ self.scales + np.einsum("ngk,gk->n", s.work, self.work)
        if self.work_range is None or s.op_model is None or not self.work.any():
            return out
        # the same sum with each op's work per prior ms clipped to the range: a correction
        w = s.op_work
        lo = self.work_range[s.op_group, :, 0] * s.op_prior[:, None]
        hi = self.work_range[s.op_group, :, 1] * s.op_prior[:, None]
        bounded = np.where(np.isnan(lo), w, np.clip(w, lo, hi))
        delta = ((bounded - w) * self.work[s.op_group]).sum(axis=1)
        return out + np.bincount(s.op_model, weights=delta, minlength=len(s))

    def to_dict(self) -> dict:
        groups = {}
        for i, g in enumerate(self.groups):
            terms = {"scale": float(self.scales[i]),
                     **{f"ms_per_{t}": float(self.work[i, k]) for k, t in enumerate(WORK_TERMS)}}
            if self.work_range is not None and self.work[i].any() \
                    and np.isfinite(self.work_range[i]).all():
                terms["work_range"] = [[float(lo), float(hi)] for lo, hi in self.work_range[i]]
            groups[g] = terms
        return {"method": self.candidate.method, "label": self.candidate.label,
                "shrink": None if math.isinf(self.candidate.shrink) else self.candidate.shrink,
                "ridge": None if math.isinf(self.candidate.ridge) else self.candidate.ridge,
                "overhead_ms": float(self.overhead_ms), "default_scale": float(self.default_scale),
                "groups": groups}


def _solve(s: Summaries, y: np.ndarray, cand: Candidate) -> AdaptedCoefficients:
    """:func:`_solve_pooled`, with the range of work per prior ms of the fitted ops."""
    coef = _solve_pooled(s, y, cand)
    if coef.work.any():
        coef.work_range = s.work_ranges()
    return coef


def _solve_pooled(s: Summaries, y: np.ndarray, cand: Candidate) -> AdaptedCoefficients:
    """Bounded least squares on the relative errors (MSPE) with the candidate's penalties.

    Groups under MIN_GROUP_SHARE of the K models' prior latency share one pooled scale and get
    no work terms: a group of a few tiny ops cannot be fitted from end-to-end times, only
    overfitted."""
    n, G = s.prior.shape
    if cand.method != "scale" and G > 1:
        share = s.prior.sum(axis=0) / max(float(s.prior.sum()), 1e-300)
        small = share < MIN_GROUP_SHARE
        if small.sum() > 1 and not small.all():
            big = np.flatnonzero(~small)
            pooled = Summaries(s.names, [s.groups[i] for i in big] + ["(pooled)"],
                               np.column_stack([s.prior[:, big], s.prior[:, small].sum(axis=1)]),
                               np.concatenate([s.work[:, big], np.zeros((n, 1, len(WORK_TERMS)))],
                                              axis=1), s.prior_e2e)
            c = _solve_groups(pooled, y, cand, no_work_last=True)
            scales = np.full(G, c.scales[-1])
            scales[big] = c.scales[:-1]
            work = np.zeros((G, len(WORK_TERMS)))
            work[big] = c.work[:-1]
            return AdaptedCoefficients(s.groups, c.overhead_ms, scales, work, c.default_scale,
                                       cand)
    return _solve_groups(s, y, cand)


def _solve_groups(s: Summaries, y: np.ndarray, cand: Candidate,
                  no_work_last: bool = False) -> AdaptedCoefficients:
    from scipy.optimize import nnls
    n, G = s.prior.shape
    total = s.prior.sum(axis=1)
    inv = 1.0 / y
    if cand.method == "scale" or G == 0:
        A = np.column_stack([inv, total * inv])
        norm = np.maximum(A.mean(axis=0), 1e-300)
        sol = nnls(A / norm, np.ones(n))[0] / norm
        scale = float(sol[1])
        return AdaptedCoefficients(s.groups, float(sol[0]), np.full(G, scale),
                                   np.zeros((G, len(WORK_TERMS))), scale, cand)
    # group scales relative to the global one, so that the shrinkage is unit-free
    base = _solve_groups(s, y, Candidate("scale"))
    s0 = base.default_scale if base.default_scale > 0 else 1.0
    share = s.prior.sum(axis=0)
    share = share / share.sum() if share.sum() > 0 else np.full(G, 1.0 / G)
    cols = [inv[:, None], s.prior * s0 * inv[:, None]]
    use_work = cand.method == "group-linear"
    if use_work:
        work_cols = s.work.copy()
        if no_work_last:
            work_cols[:, -1] = 0.0            # the pooled group: its ridge keeps these at 0
        cols.append(work_cols.reshape(n, -1) * inv[:, None])
    A = np.column_stack(cols)
    norm = A.mean(axis=0)
    norm = np.where(norm > 0, norm, 1.0)      # a group no model has: penalties decide it
    A = A / norm                              # coefficients in "share of the latency" units
    blocks, targets = [A], [np.ones(n)]
    # shrink the relative scales r_g towards their share-weighted mean: (I - 1 share^T) r
    D = np.eye(G) - np.outer(np.ones(G), share)
    P = np.zeros((G, A.shape[1]))
    P[:, 1:1 + G] = D / norm[1:1 + G]         # penalise in natural (relative-scale) units
    blocks.append(math.sqrt(cand.shrink) * P)
    targets.append(np.zeros(G))
    if use_work:
        W = np.zeros((G * len(WORK_TERMS), A.shape[1]))
        W[:, 1 + G:] = np.eye(G * len(WORK_TERMS))
        blocks.append(math.sqrt(cand.ridge) * W)
        targets.append(np.zeros(G * len(WORK_TERMS)))
    sol = nnls(np.vstack(blocks), np.concatenate(targets), maxiter=50 * A.shape[1])[0] / norm
    rel = sol[1:1 + G]
    scales = rel * s0
    work = sol[1 + G:].reshape(G, len(WORK_TERMS)) if use_work \
        else np.zeros((G, len(WORK_TERMS)))
    default = float(share @ scales)
    return AdaptedCoefficients(s.groups, float(sol[0]), scales, work, default, cand)


def candidates(k: int, method: str = "auto") -> list[Candidate]:
    """The candidates cross-validation chooses from for K models (``method`` restricts them)."""
    if method not in ADAPT_METHODS:
        raise LatpredError(f"unknown adaptation method {method!r}; choose from "
                           f"{', '.join(ADAPT_METHODS)}")
    # simplest first: the one-standard-error rule of fit_coefficients walks this order
    out = [Candidate("scale")]
    if k >= MIN_MODELS_GROUPS:
        out += [Candidate("group-scales", lam) for lam in sorted(SHRINK_GRID, reverse=True)]
    if k >= MIN_MODELS_LINEAR:
        out += [Candidate("group-linear", lam, mu)
                for lam, mu in sorted(LINEAR_GRID, key=lambda p: (-p[1], -p[0]))]
    if method != "auto":
        out = [c for c in out if c.method == method]
        if not out:
            need = MIN_MODELS_GROUPS if method == "group-scales" else MIN_MODELS_LINEAR
            raise LatpredError(f"method {method} needs at least {need} measured models, got {k}")
    return out


def _folds(n: int, seed: int) -> list[np.ndarray]:
    if n <= LOO_MAX:
        return [np.array([i]) for i in range(n)]
    order = np.random.default_rng(seed).permutation(n)
    return [order[i::CV_FOLDS] for i in range(CV_FOLDS)]


def cross_validate(s: Summaries, y: np.ndarray, cand: Candidate, seed: int = 0,
                   per_model: bool = False):
    """Held-out MSPE (%²) of a candidate over the folds of the K models (``per_model``: the
    squared relative error of each model instead)."""
    err = np.empty(len(y))
    for test in _folds(len(y), seed):
        train = np.setdiff1d(np.arange(len(y)), test)
        coef = _solve(s.subset(train), y[train], cand)
        err[test] = (coef.predict(s.subset(test)) - y[test]) / y[test]
    sq = 100.0 ** 2 * err ** 2
    return sq if per_model else float(sq.mean())


def fit_coefficients(s: Summaries, y, method: str = "auto", seed: int = 0
                     ) -> tuple[AdaptedCoefficients, dict[str, float]]:
    """The chosen candidate fitted on all K models, and every candidate's CV MSPE.

    The choice follows the one-standard-error rule: the simplest candidate (in the order of
    :func:`candidates`) whose CV MSPE is within one standard error of the lowest. With few models
    the CV scores of a dozen candidates are noisy, and the lowest is often a lucky complex one."""
    y = np.asarray(y, dtype=np.float64)
    check_latencies(y, s.names)
    if len(y) < MIN_MODELS:
        raise LatpredError(f"adaptation needs at least {MIN_MODELS} measured models, got "
                           f"{len(y)}")
    cands = candidates(len(y), method)
    errors = {c.label: cross_validate(s, y, c, seed, per_model=True) for c in cands}
    scores = {label: float(e.mean()) for label, e in errors.items()}
    best = min(cands, key=lambda c: scores[c.label])
    se = float(errors[best.label].std(ddof=1) / math.sqrt(len(y))) if len(y) > 1 else 0.0
    chosen = next(c for c in cands if scores[c.label] <= scores[best.label] + SE_RULE * se)
    return _solve(s, y, chosen), scores


def check_latencies(y: np.ndarray, names: Sequence[str]) -> None:
    bad = [(n, v) for n, v in zip(names, y) if not (math.isfinite(v) and v > 0)]
    if bad:
        n, v = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise LatpredError(f"measured latency of {n} is {v!r}: latencies must be positive, "
                           f"finite milliseconds{more}")


# -- the whole step ----------------------------------------------------------------------------
def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def adapt(source, models: Sequence[Any], latencies_ms: Sequence[float], *, device: str = "target",
          gpu: str | None = None, method: str = "auto", seed: int = 0,
          names: Sequence[str] | None = None, hashes: Sequence[str] | None = None):
    """A new fitted :class:`~latpred.predictors.LatencyPredictor` for the target, from the
    source predictor and K models (files, ModelGraphs or row lists) with their measured latency.

    ``gpu``: replay that GPU's delegate fusion and kernel selection on every model (the groups
    are then kernel types). The adapted bundle records the device, K, the models (names, sha256
    of files) and their latencies, the candidates' CV scores and the source bundle."""
    from ..ir import ModelGraph
    from ..scenario import Scenario, model_precision
    from .bundle import Bundle
    from .estimator import LatencyPredictor
    from .predict import Predictor
    if not models:
        raise LatpredError("no measured models to adapt on")
    y = np.asarray(latencies_ms, dtype=np.float64)
    if len(y) != len(models):
        raise LatpredError(f"{len(models)} models but {len(y)} latencies")
    src = source.bundle
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", str(device)):
        raise LatpredError(f"device name {device!r}: use 1-64 letters, digits, '_', '.' or '-'")
    if src.training.get("adaptation"):
        log.warning("the source bundle is itself adapted (to %s); that adaptation is replaced: "
                    "the new one starts from its source bundle",
                    src.training["adaptation"].get("device"))
    scenario = Scenario.parse(src.scenario)
    if gpu is not None:
        from ..devices import get_gpu
        spec = get_gpu(gpu)
        hardware = f"gpu-{spec.name}"
    else:
        hardware = scenario.hardware
    prior = Predictor(_unadapted(src))
    if gpu is not None:
        prior.gpu = spec.name
    # rows as the target executes them: GPU kernels when adapting to a GPU
    view = Predictor(_unadapted(src, scenario=_with(scenario, device, hardware)))
    view.gpu = prior.gpu
    row_lists, labels, precisions = [], [], []
    for i, m in enumerate(models):
        if isinstance(m, ModelGraph) or isinstance(m, (str, os.PathLike)):
            name, graph = view._graph(m)
            precisions.append(model_precision(graph))
            row_lists.append(view.rows_of(graph))
        else:
            name = f"model{i}"
            row_lists.append(list(m))
        labels.append(str(names[i]) if names is not None else name)
    if len(set(labels)) != len(labels):
        dup = next(n for n in labels if labels.count(n) > 1)
        raise LatpredError(f"model {dup} is listed twice: give each measured model once")
    s = summarize(prior, row_lists, labels)
    t0 = time.perf_counter()
    coef, scores = fit_coefficients(s, y, method, seed)
    fitted = coef.predict(s)
    precision = max(set(precisions), key=precisions.count) if precisions else scenario.precision
    if len(set(precisions)) > 1:
        log.warning("the measured models mix precisions (%s); the adapted scenario says %s",
                    ", ".join(sorted(set(precisions))), precision)
    target = _with(scenario, device, hardware, precision)
    adaptation = {
        "device": device, "k": int(len(y)), "gpu": None if gpu is None else spec.name,
        "models": labels, "model_sha256": list(hashes) if hashes is not None else [],
        "latency_ms": [float(v) for v in y], "chosen": coef.candidate.label,
        "cv_mspe": scores, "fit_mape": float(100 * np.mean(np.abs(fitted - y) / y)),
        "coefficients": coef.to_dict(),
        "source": {"scenario": src.scenario, "method": src.method,
                   "n_models": src.training.get("n_models"),
                   "overhead_ms": float(src.overhead_ms),
                   "overhead_share": float(src.overhead_share),
                   "measured_on": src.training.get("measured_on") or {}},
        "adapted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "adapt_seconds": round(time.perf_counter() - t0, 3),
    }
    # the source's host CPU is not the target's: predict must not compare it with this machine
    training = {**src.training, "adaptation": adaptation, "measured_on": {}}
    bundle = Bundle(scenario=target.id, method=src.method, models=src.models,
                    features=src.features, overhead_ms=coef.overhead_ms, overhead_share=0.0,
                    fallback=src.fallback, training=training, versions=src.versions)
    est = LatencyPredictor.from_bundle(bundle)
    if gpu is not None:
        est.gpu = spec.name
    return est


def _with(scenario, device: str, hardware: str, precision: str | None = None):
    from dataclasses import replace
    from ..scenario import Scenario
    version = scenario.runtime_version.replace("+opprof", "")
    try:
        return Scenario(device=device, hardware=hardware,
                        precision=precision or scenario.precision, runtime=scenario.runtime,
                        runtime_version=version)
    except LatpredError:
        raise
    except Exception:     # a device name the id cannot hold
        return replace(scenario, device=device)


def _unadapted(bundle, scenario=None):
    """The bundle as its prior: no adaptation, the source overhead."""
    from dataclasses import replace
    training = {k: v for k, v in bundle.training.items() if k != "adaptation"}
    ad = bundle.training.get("adaptation") or {}
    src = ad.get("source") or {}
    return replace(bundle, training=training,
                   scenario=bundle.scenario if scenario is None else scenario.id,
                   overhead_ms=float(src.get("overhead_ms", bundle.overhead_ms)),
                   overhead_share=float(src.get("overhead_share", bundle.overhead_share)))
