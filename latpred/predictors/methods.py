"""The four per-category regression methods of the paper (§4.2), all fitted on the same objective.

Objective (Eq. 1 and the text around it): minimise the mean squared *percentage* error
``mean(((f(x̂) - y) / y)^2)`` with every feature standardised by the training mean and population
standard deviation (``ddof=0``). Squared loss with sample weights ``1/y^2`` is that objective, so
RF and GBDT get those weights (rescaled to mean 1, which leaves the optimum unchanged but keeps
LightGBM's minimum-hessian threshold meaningful), Lasso gets them in closed form (below), and the MLP
uses the percentage loss directly. Hyper-parameters are chosen by the validation MSPE.

``objective='mse'`` (ablation only, not the paper's) swaps in plain squared error on latency (ms)
everywhere: unit weights for Lasso/RF/GBDT, squared error for the MLP, and hyper-parameters chosen
by the validation MSE.

Search spaces. ``full_grid=True`` is the paper's; the default is the same for Lasso and GBDT (they are
cheap) and smaller for RF and MLP, so that all four methods train from ~900 architectures (~40k op
rows) in a few minutes on 2 cores:

=======  ==========================================  ==========================================
method   default search                              full_grid=True (paper)
=======  ==========================================  ==========================================
lasso    alpha: 50 log-spaced in [1e-5, 1e2], 5-fold  same
gbdt     stages 1..200 x min samples 2..7, 5-fold    same
rf       trees {5, 10} x min split {2,5,10,20,50},   trees 1..10 x min split 2..50, 5-fold
         5-fold
mlp      layers {2, 3} x width {128} x lr {5e-3,     layers 1..6 x width {64,128,256,512} x lr
         5e-4} x wd {1e-4}, <= 200 epochs            {5e-3,5e-4,5e-5} x wd {1e-3,1e-4,1e-5},
                                                     <= 2000 epochs
=======  ==========================================  ==========================================

The MLP always holds out 20 % for validation and stops after 50 epochs without improvement; the
weights of the best epoch are kept. Mini-batches hold ceil(n/10) rows, clipped to [32, 1024] (the
paper gives no batch size). GBDT evaluates every stage count 1..200 from one 200-stage fit per fold
(the validation curve), so its search covers all stage counts at the cost of one fit per fold.

LightGBM has no "minimum samples to split a node"; its closest control is ``min_child_samples``
(minimum samples in a leaf), which we search over the paper's range 2..7.

Work target (opt-in, ``work_target=True``; not in the paper): a category may also be fitted on the
latency per unit of work, ``y / w`` with ``w`` its MACs (channels padded to the kernel's tile when
the CPU kernel features are on) or, without MACs, its input elements; the prediction is multiplied
back by ``w``. A percentage error is unchanged when target and prediction are divided by the same
``w``, so both candidates are fitted on the same MSPE and the one with the lower validation loss is
kept. Why: under 1/y^2 weights a tree leaf that mixes small and large ops settles near the small
ones, and a tree predicts a constant beyond its data; per unit of work, leaves hold comparable
values and the estimate scales with the op's size.

Linear base (``base=``; on by default for RF and GBDT, see ``train_bundle``; not in the paper):
the category's Lasso is fitted first, and each tree candidate is also searched on the ratio of
latency to the Lasso estimate, with that estimate as one more input; the prediction is the ratio
times the estimate. Same MSPE (the percentage error of the ratio is the latency's), same folds, so
the lower validation loss decides, and the paper's plain trees stay a candidate. Why: Lasso
extrapolates with the op's size where a tree predicts a constant, and a tree leaf holding ratios
near 1 is not pulled towards its fastest ops by the 1/y^2 weights the way a leaf of latencies is.

Predictions are clipped at 0 ms (a linear model can go negative far outside its training range).
Lasso and MLP predict with numpy only, so loading a bundle never imports PyTorch.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

METHODS = ("lasso", "rf", "gbdt", "mlp")
OBJECTIVES = ("mspe", "mse")
# How train_bundle takes T_overhead from the training models' (e2e - Σ ops); see predictors.train.
OVERHEAD_STATISTICS = ("linear", "mean", "median", "none")
DEFAULT_OVERHEAD = "linear"
ALPHA_RANGE = (1e-5, 1e2)
CV_FOLDS = 5
MLP_PATIENCE = 50
MLP_VALIDATION = 0.2
MLP_MAX_BATCH = 1024
MLP_MIN_BATCH = 32
# Input column holding the linear base model's estimate (ms) of a refining model.
BASE_COLUMN = "linear_base"


def mspe(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean squared percentage error (as a fraction, not %)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    return float(np.mean(((np.asarray(y_pred, dtype=np.float64) - y_true) / y_true) ** 2))


def mape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute percentage error (as a fraction, not %)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    return float(np.mean(np.abs((np.asarray(y_pred, dtype=np.float64) - y_true) / y_true)))


def mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean squared error (ms^2): validation loss of the 'mse' objective."""
    y_true = np.asarray(y_true, dtype=np.float64)
    return float(np.mean((np.asarray(y_pred, dtype=np.float64) - y_true) ** 2))


def mspe_weights(y: np.ndarray) -> np.ndarray:
    """Weights ``1/y^2`` rescaled to mean 1: weighted squared error == MSPE up to a constant."""
    w = 1.0 / np.asarray(y, dtype=np.float64) ** 2
    return w / w.mean()


@dataclass
class Standardizer:
    """x̂ = (x - mean) / std with training mean and population std; constant features map to 0."""
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> "Standardizer":
        X = np.asarray(X, dtype=np.float64)
        mean = X.mean(axis=0)
        std = X.std(axis=0, ddof=0)
        std = np.where(std > 0, std, 1.0)
        return cls(mean=mean, std=std)

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.std


@dataclass
class CategoryModel:
    """One fitted latency model of one op category (or GPU kernel type)."""
    method: str
    category: str
    features: tuple[str, ...]
    scaler: Standardizer
    # lasso: dict(coef, intercept); mlp: dict(layers, y_scale); rf: trees.ArrayForest;
    # gbdt: lightgbm.Booster
    estimator: Any
    params: dict[str, Any] = field(default_factory=dict)   # chosen hyper-parameters
    cv_mspe: float = float("nan")  # validation MSPE of the chosen hyper-parameters ('mspe' only)
    n_train: int = 0
    fit_seconds: float = 0.0
    objective: str = "mspe"        # training loss: 'mspe' (paper) or 'mse' (ablation)
    cv_loss: float = float("nan")  # validation loss of the chosen hyper-parameters, in `objective`
    # derived CPU kernel columns appended to ``features`` (latpred.cpu.kernels); None: Table 3 only
    kernel: Any = None
    # column (of the expanded features) the estimator's output is multiplied by: the model
    # predicts latency per unit of work, or per unit of the base's estimate; None: latency
    per_unit: str | None = None
    # linear model (Lasso) of the same category whose estimate this one refines: its prediction,
    # raised to ``base_floor_ms``, is the last input column (BASE_COLUMN) and the unit of the target
    base: "CategoryModel | None" = None
    base_floor_ms: float = 0.0

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the columns the estimator sees: the features, the kernel columns, then the
        base model's estimate."""
        return (self.features + (self.kernel.names if self.kernel is not None else ())
                + ((BASE_COLUMN,) if self.base is not None else ()))

    def base_estimate(self, X: np.ndarray, op_types: Sequence[str] | None = None) -> np.ndarray:
        """The base model's latency (ms) for raw rows, raised to ``base_floor_ms``."""
        return np.maximum(self.base.predict(X, op_types), self.base_floor_ms)

    def estimator_inputs(self, X: np.ndarray,
                         op_types: Sequence[str] | None = None) -> np.ndarray:
        """The unstandardised columns ``input_names`` for raw feature rows in ``features`` order."""
        raw = X
        if self.kernel is not None:
            X = self.kernel.expand(X, self.features, op_types)
        if self.base is not None:
            X = np.column_stack([X, self.base_estimate(raw, op_types)])
        return X

    def predict(self, X: np.ndarray, op_types: Sequence[str] | None = None) -> np.ndarray:
        """Latency (ms) for raw (unstandardised) feature rows in ``self.features`` order;
        ``op_types`` (the ops' runtime types) feed the kernel features that depend on them."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if len(X) == 0:
            return np.zeros(0)
        X = self.estimator_inputs(X, op_types)
        Z = self.scaler.transform(X)
        if self.method == "lasso":
            out = Z @ self.estimator["coef"] + self.estimator["intercept"]
        elif self.method == "mlp":
            out = _mlp_forward(self.estimator["layers"], Z) * self.estimator["y_scale"]
        else:
            out = self.estimator.predict(Z)
        out = np.asarray(out, dtype=np.float64)
        if self.per_unit is not None:
            out = out * work_units(X, self.input_names, self.per_unit)
        return np.maximum(out, 0.0)


def work_column(names: Sequence[str]) -> str | None:
    """The feature that best counts an op's work, for a per-unit target: MACs (with channels
    padded to the kernel's tile when known), else the elements read."""
    for name in ("padded_flops", "flops", "input_size"):
        if name in names:
            return name
    return None


def work_units(X: np.ndarray, names: Sequence[str], column: str) -> np.ndarray:
    """Units of the target per row: work counts are raised to 1 (an empty op still gets a finite
    per-unit latency); the base estimate is already floored (see ``CategoryModel.base_floor_ms``)."""
    units = np.asarray(X, dtype=np.float64)[:, list(names).index(column)]
    return units if column == BASE_COLUMN else np.maximum(units, 1.0)


def search_space(method: str, full_grid: bool = False) -> dict[str, list]:
    """The hyper-parameter grid a method searches (see the module docstring)."""
    if method == "lasso":
        # Cheap enough that the default is the full search.
        return {"alpha": list(np.logspace(np.log10(ALPHA_RANGE[0]), np.log10(ALPHA_RANGE[1]), 50))}
    if method == "rf":
        if full_grid:
            return {"n_estimators": list(range(1, 11)), "min_samples_split": list(range(2, 51))}
        return {"n_estimators": [5, 10], "min_samples_split": [2, 5, 10, 20, 50]}
    if method == "gbdt":
        return {"n_estimators": list(range(1, 201)), "min_child_samples": list(range(2, 8))}
    if method == "mlp":
        if full_grid:
            return {"layers": list(range(1, 7)), "width": [64, 128, 256, 512],
                    "lr": [5e-3, 5e-4, 5e-5], "weight_decay": [1e-3, 1e-4, 1e-5],
                    "max_epochs": [2000]}
        return {"layers": [2, 3], "width": [128], "lr": [5e-3, 5e-4], "weight_decay": [1e-4],
                "max_epochs": [200]}
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def fit_category(method: str, category: str, features: tuple[str, ...], X: np.ndarray,
                 y: np.ndarray, *, full_grid: bool = False, seed: int = 0, n_jobs: int = 1,
                 grid: dict[str, list] | None = None, objective: str = "mspe",
                 kernels: Sequence[Any] = (None,),
                 op_types: Sequence[str] | None = None, work_target: bool = False,
                 base: CategoryModel | None = None) -> CategoryModel:
    """Standardise ``X`` and fit ``method`` on ``objective`` (the paper's MSPE by default, or plain
    squared error 'mse' for ablations); ``grid`` overrides the hyper-parameter search.

    The search runs over candidates, each fitted on the same folds, and keeps the lowest
    validation loss (:func:`search_candidates` lists them):
    ``kernels``: kernel-feature sets (:class:`latpred.cpu.kernels.KernelFeatures`, None for
    Table 3 alone; ``op_types`` are the rows' op types for those features);
    ``work_target`` (MSPE only): the latency per unit of work (:func:`work_column`) beside the
    latency itself;
    ``base`` (MSPE only): a fitted linear model of this category (see the module doc, linear
    base): every kernel set once more on the ratio of latency to the base's estimate, with that
    estimate as an extra input."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(X) != len(y) or len(y) < 2:
        raise ValueError(f"{category}: need at least 2 rows to fit, got {len(y)}")
    if np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError(f"{category}: latencies must be finite and > 0 for a percentage loss")
    kernels = list(kernels) or [None]
    base = base if objective == "mspe" else None
    floor = float(np.min(y))
    estimate = np.maximum(base.predict(X, op_types), floor) if base is not None else None
    t0 = time.perf_counter()
    best = None
    for kernel, use_base, per_unit, recorded in search_candidates(
            features, kernels, base is not None, work_target and objective == "mspe"):
        Xk = X if kernel is None else kernel.expand(X, features, op_types)
        names = tuple(features) + (() if kernel is None else kernel.names)
        if use_base:
            Xk, names = np.column_stack([Xk, estimate]), names + (BASE_COLUMN,)
        if per_unit == "work":
            per_unit = work_column(names)
        m = _fit_one(method, category, names, Xk, y, full_grid=full_grid, seed=seed,
                     n_jobs=n_jobs, grid=grid, objective=objective, per_unit=per_unit)
        m.features, m.kernel = tuple(features), kernel
        if use_base:
            m.base, m.base_floor_ms = base, floor
        if "kernel" in recorded:
            m.params["kernel"] = "none" if kernel is None else kernel.describe()
        if "per_unit" in recorded:
            m.params["per_unit"] = per_unit or "none"
        if "base" in recorded:
            m.params["base"] = base.method if use_base else "none"
        if best is None or m.cv_loss < best.cv_loss:
            best = m
    best.fit_seconds = time.perf_counter() - t0
    return best


def search_candidates(features: Sequence[str], kernels: list, with_base: bool,
                      work_target: bool) -> list[tuple[Any, bool, str | None, tuple[str, ...]]]:
    """(kernel set, on the base's ratio?, per-unit column, params to record) of every candidate
    of a category's search, in the order ties are broken: plain before base, kernel sets in the
    given order, latency before latency per unit of work. ``per_unit`` "work" stands for the
    kernel set's :func:`work_column`."""
    recorded = (("kernel",) if kernels != [None] else ()) + (("base",) if with_base else ())
    out = []
    for use_base in ((False, True) if with_base else (False,)):
        for kernel in kernels:
            names = tuple(features) + (() if kernel is None else kernel.names)
            if use_base:
                out.append((kernel, True, BASE_COLUMN, recorded + ("per_unit",)))
            elif work_target and work_column(names) is not None:
                out += [(kernel, False, p, recorded + ("per_unit",)) for p in (None, "work")]
            else:
                out.append((kernel, False, None, recorded))
    return out


def _fit_one(method: str, category: str, names: tuple[str, ...], X: np.ndarray, y: np.ndarray,
             *, full_grid: bool, seed: int, n_jobs: int, grid: dict[str, list] | None,
             objective: str, per_unit: str | None) -> CategoryModel:
    """One candidate: standardise ``X`` (columns ``names``) and search ``method``'s grid."""
    target = y / work_units(X, names, per_unit) if per_unit else y
    scaler = Standardizer.fit(X)
    Z = scaler.transform(X)
    t0 = time.perf_counter()
    fitter = {"lasso": _fit_lasso, "rf": _fit_rf, "gbdt": _fit_gbdt, "mlp": _fit_mlp}[method]
    estimator, params, score = fitter(Z, target, grid or search_space(method, full_grid),
                                      seed=seed, n_jobs=n_jobs, percentage=objective == "mspe")
    return CategoryModel(method=method, category=category, features=tuple(names), scaler=scaler,
                         estimator=estimator, params=dict(params),
                         cv_mspe=float(score) if objective == "mspe" else float("nan"),
                         n_train=len(y), fit_seconds=time.perf_counter() - t0,
                         objective=objective, cv_loss=float(score), per_unit=per_unit)


def _folds(n: int, seed: int):
    from sklearn.model_selection import KFold
    kfold = KFold(n_splits=min(CV_FOLDS, n), shuffle=True, random_state=seed)
    return list(kfold.split(np.arange(n)))


# -- Lasso --------------------------------------------------------------------------------------
def _lasso_fit_one(Z: np.ndarray, y: np.ndarray, alpha: float, percentage: bool = True):
    """Eq. (1) with an unpenalised intercept: min (1/N) Σ ((w·x̂+b-y)/y)^2 + α|w|_1, w >= 0.

    sklearn's Lasso minimises (1/(2 Σs)) Σ s (w·x̂+b-y)^2 + a|w|_1 (it rescales sample weights to
    sum N); with s = 1/y^2 that equals (N / (2 Σs)) * [Eq. 1 with α = a * 2 Σs / N]. Without
    ``percentage`` s = 1: plain squared error with the same α convention."""
    from sklearn.linear_model import Lasso
    s = 1.0 / y ** 2 if percentage else np.ones_like(y)
    sk_alpha = alpha * len(y) / (2.0 * s.sum())
    model = Lasso(alpha=sk_alpha, positive=True, fit_intercept=True, max_iter=20000, tol=1e-6,
                  selection="cyclic")
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(Z, y, sample_weight=s)
    return {"coef": np.asarray(model.coef_, dtype=np.float64), "intercept": float(model.intercept_)}


def _fit_lasso(Z, y, grid, *, seed, n_jobs, percentage=True):
    loss = mspe if percentage else mse
    folds = _folds(len(y), seed)
    best = (np.inf, None)
    for alpha in grid["alpha"]:
        errs = []
        for tr, va in folds:
            est = _lasso_fit_one(Z[tr], y[tr], alpha, percentage)
            errs.append(loss(y[va], np.maximum(Z[va] @ est["coef"] + est["intercept"], 0.0)))
        score = float(np.mean(errs))
        if score < best[0]:
            best = (score, alpha)
    score, alpha = best
    return _lasso_fit_one(Z, y, alpha, percentage), {"alpha": float(alpha)}, score


# -- Random forest ------------------------------------------------------------------------------
class BootstrapForest:
    """Random forest whose bootstrap draws rows uniformly and keeps the MSPE weights.

    scikit-learn's RandomForestRegressor (1.9 here) draws each tree's bootstrap sample in
    proportion to ``sample_weight`` and then fits the tree on the draw counts alone: under the
    1/y^2 weights the slow ops are almost never drawn, and the forest predicted the slowest
    depthwise convolutions at 0.1 ms instead of 70 ms. Here each tree sees a uniform bootstrap
    sample with weights (1/y^2) x counts, the classic random forest on the paper's objective.
    Trees consider every feature at each split (the regressor's default)."""

    def __init__(self, n_estimators: int, min_samples_split: int, seed: int):
        self.n_estimators = int(n_estimators)
        self.min_samples_split = int(min_samples_split)
        self.seed = seed
        self.trees: list = []

    def fit(self, Z: np.ndarray, y: np.ndarray, sample_weight: np.ndarray) -> "BootstrapForest":
        from sklearn.tree import DecisionTreeRegressor
        rng = np.random.default_rng(self.seed)
        n = len(y)
        self.trees = []
        for _ in range(self.n_estimators):
            counts = np.bincount(rng.integers(0, n, n), minlength=n)
            tree = DecisionTreeRegressor(min_samples_split=self.min_samples_split,
                                         random_state=int(rng.integers(2 ** 31)))
            tree.fit(Z, y, sample_weight=sample_weight * counts)
            self.trees.append(tree)
        return self

    def predict(self, Z: np.ndarray) -> np.ndarray:
        return np.mean([t.predict(Z) for t in self.trees], axis=0)

    def to_arrays(self):
        """The fitted trees as numbers (:class:`latpred.predictors.trees.ArrayForest`)."""
        from .trees import ArrayForest
        return ArrayForest.from_sklearn(self.trees)


def _fit_rf(Z, y, grid, *, seed, n_jobs, percentage=True):
    w = mspe_weights(y) if percentage else np.ones_like(y)
    loss = mspe if percentage else mse
    folds = _folds(len(y), seed)
    best = (np.inf, None)
    for n_est, mss in itertools.product(grid["n_estimators"], grid["min_samples_split"]):
        errs = []
        for tr, va in folds:
            rf = BootstrapForest(n_est, mss, seed).fit(Z[tr], y[tr], w[tr])
            errs.append(loss(y[va], rf.predict(Z[va])))
        score = float(np.mean(errs))
        if score < best[0]:
            best = (score, (n_est, mss))
    score, (n_est, mss) = best
    # plain arrays from here on: the forest predicts the same trained and reloaded from a bundle
    rf = BootstrapForest(n_est, mss, seed).fit(Z, y, w).to_arrays()
    return rf, {"n_estimators": int(n_est), "min_samples_split": int(mss)}, score


# -- GBDT (LightGBM) ----------------------------------------------------------------------------
# The 1/y^2 weights span ~10 orders of magnitude (µs element-wise ops next to 50 ms convs): with
# LightGBM's default minimum hessian per leaf (1e-3) a leaf holding only slow ops (weights ~1e-6)
# is never allowed, so the slowest convolutions were predicted at a fraction of their latency.
# A tiny positive bound lifts that limit (0 itself trips a LightGBM check).
LGBM_MIN_HESSIAN = 1e-12


def _lgbm_params(min_child_samples: int, seed: int, n_jobs: int) -> dict:
    return {"objective": "regression", "learning_rate": 0.1, "num_leaves": 31,
            "min_child_samples": int(min_child_samples),
            "min_sum_hessian_in_leaf": LGBM_MIN_HESSIAN, "seed": seed, "num_threads": n_jobs,
            "deterministic": True, "force_row_wise": True, "verbose": -1, "metric": "None"}


def _fit_gbdt(Z, y, grid, *, seed, n_jobs, percentage=True):
    import lightgbm as lgb
    w = mspe_weights(y) if percentage else np.ones_like(y)
    loss = mspe if percentage else mse
    folds = _folds(len(y), seed)
    stages = sorted(int(s) for s in grid["n_estimators"])
    max_stages = stages[-1]

    def val_loss(preds, data):
        return "loss", loss(data.get_label(), np.maximum(preds, 0.0)), False

    best = (np.inf, None)
    for mcs in grid["min_child_samples"]:
        params = _lgbm_params(mcs, seed, n_jobs)
        curve = np.zeros(max_stages)
        for tr, va in folds:
            train = lgb.Dataset(Z[tr], y[tr], weight=w[tr], params={"verbose": -1})
            valid = lgb.Dataset(Z[va], y[va], reference=train)
            record: dict = {}
            lgb.train(params, train, num_boost_round=max_stages, valid_sets=[valid],
                      valid_names=["valid"], feval=val_loss,
                      callbacks=[lgb.record_evaluation(record)])
            c = np.asarray(record["valid"]["loss"], dtype=np.float64)
            # A fit can stop early when no split is possible; the last value then holds.
            curve += np.pad(c, (0, max_stages - len(c)), mode="edge")
        curve /= len(folds)
        for s in stages:
            if curve[s - 1] < best[0]:
                best = (float(curve[s - 1]), (s, mcs))
    score, (n_est, mcs) = best
    booster = lgb.train(_lgbm_params(mcs, seed, n_jobs),
                        lgb.Dataset(Z, y, weight=w, params={"verbose": -1}), num_boost_round=n_est)
    return booster, {"n_estimators": int(n_est), "min_child_samples": int(mcs)}, score


# -- MLP (PyTorch for training, numpy for inference) -------------------------------------------
def _mlp_forward(layers: list[tuple[np.ndarray, np.ndarray]], Z: np.ndarray) -> np.ndarray:
    h = np.asarray(Z, dtype=np.float32)
    for i, (W, b) in enumerate(layers):
        h = h @ W.T + b
        if i < len(layers) - 1:
            np.maximum(h, 0.0, out=h)
    return h[:, 0].astype(np.float64)


def _train_mlp_config(Ztr, ttr, Zva, tva, layers, width, lr, wd, max_epochs, seed,
                      percentage=True):
    """Train one configuration on targets scaled to ~1; returns (best val loss, numpy layers).

    The loss is the squared percentage error, or the squared error of the scaled targets when
    ``percentage`` is off (MSE up to the constant y_scale^2)."""
    import torch
    from torch import nn
    torch.manual_seed(seed)
    dims = [Ztr.shape[1]] + [width] * layers
    mods: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        mods += [nn.Linear(a, b), nn.ReLU()]
    mods.append(nn.Linear(dims[-1], 1))
    net = nn.Sequential(*mods)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=wd)
    Xt, Yt = torch.as_tensor(Ztr, dtype=torch.float32), torch.as_tensor(ttr, dtype=torch.float32)
    Xv, Yv = torch.as_tensor(Zva, dtype=torch.float32), torch.as_tensor(tva, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    # About 10 steps per epoch or more: small categories still get enough updates, big ones
    # stay affordable on a CPU.
    batch = int(min(MLP_MAX_BATCH, max(MLP_MIN_BATCH, -(-len(Xt) // 10))))
    best_err, best_state, since_best = np.inf, None, 0
    for _ in range(max_epochs):
        net.train()
        perm = torch.randperm(len(Xt), generator=gen)
        for i in range(0, len(Xt), batch):
            idx = perm[i:i + batch]
            diff = net(Xt[idx])[:, 0] - Yt[idx]
            loss = ((diff / Yt[idx] if percentage else diff) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            pred = net(Xv)[:, 0].clamp_min(0.0)
            err = float((((pred - Yv) / Yv if percentage else pred - Yv) ** 2).mean())
        if err < best_err - 1e-12:
            best_err, since_best = err, 0
            best_state = [p.detach().clone() for p in net.parameters()]
        else:
            since_best += 1
            if since_best >= MLP_PATIENCE:
                break
    if best_state is None:  # validation error never finite (diverged): keep the last weights
        best_state = [p.detach().clone() for p in net.parameters()]
    params = [p.numpy().astype(np.float32) for p in best_state]
    return best_err, list(zip(params[0::2], params[1::2]))


def _fit_mlp(Z, y, grid, *, seed, n_jobs, percentage=True):
    import torch
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, n_jobs))
    try:
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(y))
        n_val = max(1, int(round(MLP_VALIDATION * len(y))))
        va, tr = perm[:n_val], perm[n_val:]
        # Percentage loss is scale-free; scaling targets to ~1 just keeps Adam's steps sensible.
        y_scale = float(np.median(y[tr]))
        t = y / y_scale
        best = (np.inf, None, None)
        keys = ["layers", "width", "lr", "weight_decay", "max_epochs"]
        for combo in itertools.product(*(grid[k] for k in keys)):
            cfg = dict(zip(keys, combo))
            err, layers = _train_mlp_config(Z[tr], t[tr], Z[va], t[va], int(cfg["layers"]),
                                             int(cfg["width"]), float(cfg["lr"]),
                                             float(cfg["weight_decay"]), int(cfg["max_epochs"]),
                                             seed, percentage)
            if err < best[0]:
                best = (err, cfg, layers)
        err, cfg, layers = best
        # report MSE in ms^2 like the other methods (training ran on targets / y_scale)
        score = err if percentage else err * y_scale ** 2
        return {"layers": layers, "y_scale": y_scale}, cfg, score
    finally:
        torch.set_num_threads(prev_threads)
