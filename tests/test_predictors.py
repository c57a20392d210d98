"""Predictors: the MSPE objective of each method, bundles, prediction with fallback, evaluation and
the train/predict/evaluate CLI, on tiny converter-made .tflite models profiled for real (host LiteRT,
1 core). Method-level checks use small numpy data built so the expected behaviour is provable.
The CLI test's trainings are real launches started as soon as the store exists (beside the
in-process work of the module); its error cases go through the same entry point in this process
(``main_cli``) after the real launches of train and predict."""
from __future__ import annotations

import json
import logging
import os

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, conv_stem, main_cli, run_cli, tiny_keras, write_tflite

from latpred.errors import LatpredError
from overhead_reference import weighted_line_overhead
from latpred.features import FEATURES, graph_features, op_features
from latpred.predictors import (BUNDLE_VERSION, LatencyPredictor, Predictor, load, load_bundle,
                                mspe, save_bundle, select_models)
from latpred.predictors.evaluate import evaluate
from latpred.predictors.methods import BASE_COLUMN, fit_category, work_units
from latpred.predictors.train import feature_matrix, op_types
from latpred.profiling import profile_models
from latpred.store import ProfileStore
from latpred.readers import read_model



def _train(frame, method, scenario=None, *, train_models=None, **settings):
    """The bundle of a LatencyPredictor fitted on ``frame`` (restricted to ``train_models``)."""
    if train_models is not None:
        frame = select_models(frame, train_models)
    return LatencyPredictor(method, scenario, **settings).fit(frame).bundle_
TINY_MLP = {"layers": [1], "width": [16], "lr": [5e-3], "weight_decay": [1e-5],
            "max_epochs": [60]}


# --------------------------------------------------------------------------------------------------
# Real artefacts: varied tiny CNNs (tf.keras -> TFLiteConverter), profiled on the host

def _keras_cnn(seed: int, padded: bool = False):
    rng = np.random.default_rng(seed)

    def body(L, x):
        x = conv_stem(L, x, int(rng.choice([8, 16, 24])))
        if padded:  # PAD ops: a category none of the training models has
            x = L.ZeroPadding2D(2)(x)                     # folded into the conv by XNNPACK
            x = L.Conv2D(16, 3, activation="relu")(x)
            x = L.ZeroPadding2D(1)(x)                     # before a pooling op: a real PAD
            x = L.MaxPool2D(3, strides=1)(x)
        for _ in range(int(rng.integers(1, 4))):
            c = int(rng.choice([8, 16, 32, 48]))
            y = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
            y = L.Conv2D(c, int(rng.choice([1, 3, 5])), padding="same")(y)
            if c == x.shape[-1]:
                x = L.Add()([x, y])
            else:
                x = L.Concatenate()([L.Conv2D(c // 2, 1)(x), L.Conv2D(c // 2, 1)(y)])
        x = L.MaxPool2D(2)(x)
        x = L.GlobalAveragePooling2D()(x)
        return L.Dense(10)(x)

    return tiny_keras(body)


CLI_TEST = "test_cli_train_all_predict_json_and_evaluate"


def _start_cli_trainings(store: str, train: list[str], root) -> tuple[dict, object]:
    """The CLI test's trainings, real ``latpred train`` launches started as soon as the store
    exists, two at a time beside the in-process fits and tests of this module (they are
    independent of each other); the CLI test takes their results."""
    from concurrent.futures import ThreadPoolExecutor
    listing = root / "train.txt"
    listing.write_text("# training models\n" + "\n".join(train) + "\n")
    out = root / "cli"
    out.mkdir()
    args = {
        "all": ("--method", "all", "--train-models", str(listing), "--out", str(out / "bundles")),
        "work": ("--method", "gbdt", "--train-models", str(listing), "--work-target",
                 "--out", str(out / "work.latpred")),
        "paper": ("--method", "gbdt", "--train-models", str(listing), "--no-linear-base",
                  "--out", str(out / "paper.latpred")),
        "median": ("--method", "lasso", "--train-models", str(listing), "--overhead", "median",
                   "--out", str(out / "median.latpred")),
    }
    pool = ThreadPoolExecutor(max_workers=2)
    jobs = {k: pool.submit(run_cli, "train", store, *a, "--quiet") for k, a in args.items()}
    return {"listing": listing, "out": out, "jobs": jobs}, pool


@pytest.fixture(scope="module")
def data(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("predictor_models")
    paths = []
    for seed in range(10):
        model = _keras_cnn(seed, padded=seed == 9)
        paths.append(str(write_tflite(model, root / f"cnn{seed}.tflite")))
    store_path = str(tmp_path_factory.mktemp("predictor_store") / "profiles.db")
    # isolated timings: every op, PADs included, gets a latency (in-graph, XNNPACK fuses them)
    profile_models(paths, store_path, runs=10, warmup=2, budget_s=0.3, progress=False,
                   op_timing="isolated")
    with ProfileStore(store_path) as st:
        frame = st.frame()
    train = [f"cnn{i}" for i in range(7)]
    held_out = paths[7:]           # cnn7, cnn8 and the padded cnn9
    cli, pool = None, None
    if any(item.name == CLI_TEST and item.module is request.module
           for item in request.session.items):
        cli, pool = _start_cli_trainings(store_path, train, root)
    try:
        bundles = {m: _train(frame, m, train_models=train, seed=0) for m in ("lasso", "gbdt")}
        yield {"root": root, "paths": paths, "store": store_path, "frame": frame, "train": train,
               "held_out": held_out, "bundles": bundles, "cli": cli}
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------------------------------
# Objective and methods (small numpy data)

def test_lasso_mspe_objective_trades_absolute_for_relative_error():
    # Two regimes no single line fits: small ops (y = x) and large ops (y = 3x - 200). Squared error
    # is dominated by the large ops, squared *percentage* error by the small ones.
    rng = np.random.default_rng(0)
    small = rng.uniform(1, 10, 60)
    large = rng.uniform(100, 110, 60)
    x = np.concatenate([small, large])
    y = np.concatenate([small, 3 * large - 200])
    X = x.reshape(-1, 1)
    ours = fit_category("lasso", "Conv2D", ("flops",), X, y, grid={"alpha": [1e-5]})
    from sklearn.linear_model import Lasso
    plain = Lasso(alpha=1e-5, positive=True, max_iter=20000, tol=1e-8)
    plain.fit(ours.scaler.transform(X), y)
    p_ours, p_plain = ours.predict(X), np.maximum(plain.predict(ours.scaler.transform(X)), 0)
    assert mspe(y, p_ours) < mspe(y, p_plain)
    assert np.mean((p_ours - y) ** 2) > np.mean((p_plain - y) ** 2)
    is_small = np.arange(len(y)) < 60
    assert np.mean(np.abs(p_ours - y)[is_small] / y[is_small]) < \
        np.mean(np.abs(p_plain - y)[is_small] / y[is_small])


@pytest.mark.parametrize("method,grid,rel_tol", [
    ("gbdt", {"n_estimators": [1, 5, 20], "min_child_samples": [2]}, 1e-6),
    ("mlp", {**TINY_MLP, "max_epochs": [300]}, 0.15),
])
def test_constant_features_give_the_mspe_optimal_constant(method, grid, rel_tol):
    # With nothing to split on, the best constant under squared percentage error is
    # sum(1/y) / sum(1/y^2) (about 1.28 here), far from the mean latency (about 28).
    y = np.tile([1.0, 2.0, 10.0, 100.0], 10)
    X = np.ones((len(y), 3))
    model = fit_category(method, "Mean", ("a", "b", "c"), X, y, grid=grid)
    best = np.sum(1 / y) / np.sum(1 / y ** 2)
    pred = model.predict(X[:1])[0]
    assert pred == pytest.approx(best, rel=rel_tol)
    assert abs(pred - best) < abs(pred - y.mean()) / 10


@pytest.mark.parametrize("method,grid", [
    ("lasso", {"alpha": [1e-4]}),
    ("rf", {"n_estimators": [3], "min_samples_split": [2]}),
    ("gbdt", {"n_estimators": [1, 5, 20], "min_child_samples": [2]}),
    ("mlp", {**TINY_MLP, "max_epochs": [300]}),
])
def test_mse_objective_gives_the_mean_where_mspe_gives_its_own_optimum(method, grid):
    # Constant features: squared error is minimised by the mean latency (28.25), squared
    # percentage error by sum(1/y)/sum(1/y^2) (about 1.28); the objective must switch between them.
    y = np.tile([1.0, 2.0, 10.0, 100.0], 10)
    X = np.ones((len(y), 3))
    best_mspe, best_mse = np.sum(1 / y) / np.sum(1 / y ** 2), y.mean()
    by_objective = {obj: fit_category(method, "Mean", ("a", "b", "c"), X, y, grid=grid,
                                      objective=obj) for obj in ("mspe", "mse")}
    p_mspe = by_objective["mspe"].predict(X[:1])[0]
    p_mse = by_objective["mse"].predict(X[:1])[0]
    assert abs(p_mse - best_mse) < abs(p_mse - best_mspe)
    assert abs(p_mspe - best_mspe) < abs(p_mspe - best_mse)
    if method in ("lasso", "gbdt"):   # deterministic, no bootstrap or validation split
        assert p_mse == pytest.approx(best_mse, rel=1e-6)
        assert p_mspe == pytest.approx(best_mspe, rel=1e-6)
    assert by_objective["mse"].objective == "mse" and np.isnan(by_objective["mse"].cv_mspe)
    assert by_objective["mspe"].cv_loss == by_objective["mspe"].cv_mspe


@pytest.mark.parametrize("method", ["rf", "gbdt"])
def test_tree_methods_fit_the_slow_ops_under_percentage_weights(method):
    # latencies spanning 5 orders of magnitude, like µs element-wise ops next to 50 ms convs:
    # the 1/y^2 weights of the slowest rows are ~1e-10 of the fastest. scikit-learn's own forest
    # bootstrap (draws in proportion to the weights) and LightGBM's default minimum hessian per
    # leaf both left the slowest rows unfitted, predicted at a fraction of their latency.
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 5, 600)
    X = np.column_stack([x, rng.uniform(0, 1, 600)])
    y = 1e-3 * 10 ** x * rng.uniform(0.97, 1.03, 600)
    grid = {"rf": {"n_estimators": [5], "min_samples_split": [2]},
            "gbdt": {"n_estimators": [100], "min_child_samples": [3]}}[method]
    model = fit_category(method, "Conv2D", ("a", "b"), X, y, grid=grid)
    slow = x > 4.5
    ratio = model.predict(X[slow]).sum() / y[slow].sum()
    assert 0.9 < ratio < 1.1, ratio


def test_lasso_weights_are_nonnegative_even_when_a_feature_lowers_latency():
    rng = np.random.default_rng(1)
    X = rng.uniform(1, 100, (200, 3))
    y = 2 * X[:, 0] - 0.5 * X[:, 1] + 60 + rng.normal(0, 0.5, 200)   # feature 1 lowers latency
    model = fit_category("lasso", "Conv2D", ("a", "b", "c"), X, y, grid={"alpha": [1e-5, 1e-3]})
    coef = model.estimator["coef"]
    assert np.all(coef >= 0)
    assert coef[1] == 0.0 and coef[0] > 0
    from sklearn.linear_model import LinearRegression
    assert LinearRegression().fit(X, y).coef_[1] < 0   # unconstrained, it would be negative


def test_standardisation_uses_training_mean_and_population_std():
    rng = np.random.default_rng(2)
    X = rng.uniform(0, 50, (40, 2))
    X[:, 1] = 7.0                        # constant feature: must not turn into NaN
    y = 0.3 * X[:, 0] + 1
    model = fit_category("lasso", "Padding", ("a", "b"), X, y, grid={"alpha": [1e-4]})
    np.testing.assert_allclose(model.scaler.mean, X.mean(axis=0))
    np.testing.assert_allclose(model.scaler.std[0], X[:, 0].std(ddof=0))
    X_new = rng.uniform(200, 300, (5, 2))   # other statistics: must still use the training ones
    expected = (X_new - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0) \
        @ model.estimator["coef"] + model.estimator["intercept"]
    np.testing.assert_allclose(model.predict(X_new), np.maximum(expected, 0))
    assert np.all(np.isfinite(model.predict(X_new)))


def test_rf_search_stays_in_the_grid_and_uses_mspe_weights():
    rng = np.random.default_rng(3)
    X = rng.uniform(1, 10, (80, 2))
    y = X[:, 0] ** 2 + X[:, 1]
    grid = {"n_estimators": [2, 4], "min_samples_split": [2, 30]}
    model = fit_category("rf", "Conv2D", ("a", "b"), X, y, grid=grid)
    assert model.params["n_estimators"] in (2, 4)
    assert model.params["min_samples_split"] in (2, 30)
    assert np.isfinite(model.cv_mspe) and model.cv_mspe >= 0


def test_work_target_scales_with_work_where_latency_does_and_is_dropped_where_it_does_not():
    # Latency proportional to MACs over three orders of magnitude: per unit of work it is one
    # constant, so the work target fits exactly and carries on beyond the training range, where a
    # tree on latency itself stays at its largest leaf.
    rng = np.random.default_rng(6)
    flops = 10 ** rng.uniform(3, 6, 300)
    X = np.column_stack([rng.uniform(1, 100, 300), flops])
    y = 2e-6 * flops * rng.uniform(0.99, 1.01, 300)
    grid = {"n_estimators": [50], "min_child_samples": [2]}
    plain = fit_category("gbdt", "Conv2D", ("input_c", "flops"), X, y, grid=grid)
    work = fit_category("gbdt", "Conv2D", ("input_c", "flops"), X, y, grid=grid, work_target=True)
    assert plain.per_unit is None and "per_unit" not in plain.params
    assert work.per_unit == "flops" and work.params["per_unit"] == "flops"
    assert work.cv_loss < plain.cv_loss
    big = np.array([[50.0, 4 * flops.max()]])
    assert work.predict(big)[0] == pytest.approx(2e-6 * big[0, 1], rel=0.03)
    assert plain.predict(big)[0] < 1.1 * y.max()
    # latency that does not follow the work: the plain target wins the cross-validation
    flat = 0.5 * rng.uniform(0.99, 1.01, 300)
    chosen = fit_category("gbdt", "Conv2D", ("input_c", "flops"), X, flat, grid=grid,
                          work_target=True)
    assert chosen.per_unit is None and chosen.params["per_unit"] == "none"
    assert chosen.predict(big)[0] == pytest.approx(0.5, rel=0.02)


def test_linear_base_is_kept_where_it_extrapolates_and_trees_refine_its_ratio():
    # Simulated latencies (not measurements): proportional to MACs over three orders of magnitude,
    # 30 % slower from 40 input channels on. A Lasso gets the size right but
    # not the step; trees get the step but stay at their largest leaf beyond the training range;
    # trees on the ratio to the Lasso estimate get both.
    rng = np.random.default_rng(8)
    n = 400
    cin = rng.integers(8, 80, n).astype(float)
    flops = 10 ** rng.uniform(3, 6, n)
    X = np.column_stack([cin, flops])
    step = np.where(cin < 40, 1.0, 1.3)
    y = 2e-6 * flops * step * rng.uniform(0.99, 1.01, n)
    names, grid = ("input_c", "flops"), {"n_estimators": [100], "min_child_samples": [2]}
    base = fit_category("lasso", "Conv2D", names, X, y)
    plain = fit_category("gbdt", "Conv2D", names, X, y, grid=grid)
    refined = fit_category("gbdt", "Conv2D", names, X, y, grid=grid, base=base)
    assert plain.base is None and "base" not in plain.params
    assert refined.base is base and refined.params["base"] == "lasso"
    assert refined.per_unit == BASE_COLUMN and refined.input_names[-1] == BASE_COLUMN
    assert refined.cv_loss < 0.5 * min(plain.cv_loss, base.cv_loss)
    big = np.array([[20.0, 4 * flops.max()], [60.0, 4 * flops.max()]])
    truth = 2e-6 * big[:, 1] * np.array([1.0, 1.3])
    np.testing.assert_allclose(refined.predict(big), truth, rtol=0.05)
    assert np.all(plain.predict(big) < 1.1 * y.max())
    assert abs(base.predict(big)[1] / base.predict(big)[0] - 1.3) > 0.2
    # the Lasso estimate is floored at the fastest training latency, so a ratio never divides by 0
    assert np.all(refined.base_estimate(np.array([[40.0, 0.0]])) >= y.min())


# --------------------------------------------------------------------------------------------------
# Bundles from real profiles

def test_default_overhead_is_a_fixed_part_plus_a_share_of_the_ops_fitted_on_mspe(data):
    frame = data["frame"]
    train = frame[frame["model"].isin(data["train"])]
    per_model = train.groupby("model").agg(e2e=("e2e_ms", "first"), ops=("latency_ms", "sum"))
    # isolated op timings here: their sum outgrows e2e, so the share is 0 (the simulated test
    # below covers a growing gap)
    fixed, share = weighted_line_overhead(per_model["e2e"], per_model["ops"])
    graph = read_model(data["held_out"][0])
    for bundle in data["bundles"].values():
        assert bundle.training["overhead"] == "linear"
        assert bundle.overhead_ms == pytest.approx(fixed, rel=1e-6, abs=1e-9)
        assert bundle.overhead_share == pytest.approx(share, rel=1e-6, abs=1e-12)
        assert bundle.training["n_models"] == len(data["train"])
        assert sorted(bundle.training["models"]) == sorted(data["train"])
        assert sum(bundle.training["n_ops"].values()) == len(train)
        pred = Predictor(bundle).predict(graph)
        ops_ms = pred.ops["latency_ms"].sum()
        assert pred.overhead_ms == pytest.approx(fixed + share * ops_ms, rel=1e-6)
        assert pred.latency_ms == pytest.approx(pred.overhead_ms + ops_ms, rel=1e-12)


def test_linear_overhead_recovers_a_growing_gap_and_keeps_a_constant_for_a_shrinking_one():
    # SIMULATED per-model rows (one op each): gap = 0.05 ms + 2 % of the ops, then a shrinking gap.
    from latpred.predictors import fit_overhead
    ops = np.array([1.0, 2.0, 5.0, 10.0, 40.0])
    grow = pd.DataFrame({"model": [f"m{i}" for i in range(5)], "latency_ms": ops,
                         "e2e_ms": ops + 0.05 + 0.02 * ops})
    fixed, share, n = fit_overhead(grow, "linear")
    assert (fixed, share, n) == (pytest.approx(0.05), pytest.approx(0.02), 5)
    assert fit_overhead(grow, "mean")[:2] == (pytest.approx(float(np.mean(0.05 + 0.02 * ops))), 0.0)
    shrink = grow.assign(e2e_ms=ops + 0.2 - 0.004 * ops)
    fixed, share, _ = fit_overhead(shrink, "linear")
    w = 1 / shrink["e2e_ms"] ** 2
    assert share == 0.0
    assert fixed == pytest.approx(float(np.sum(w * (0.2 - 0.004 * ops)) / np.sum(w)))


def test_overhead_statistic_and_objective_options_of_the_estimator(data):
    frame = data["frame"]
    train = frame[frame["model"].isin(data["train"])]
    per_model = train.groupby("model").agg(e2e=("e2e_ms", "first"), ops=("latency_ms", "sum"))
    gap = per_model["e2e"] - per_model["ops"]
    assert gap.mean() != pytest.approx(gap.median(), rel=1e-6)   # else the test proves nothing
    grid = {"lasso": {"alpha": [1e-3]}}
    bundles = {stat: _train(frame, "lasso", train_models=data["train"], grids=grid,
                                  overhead=stat) for stat in ("linear", "mean", "median", "none")}
    assert bundles["mean"].overhead_ms == pytest.approx(float(gap.mean()), rel=1e-9, abs=1e-12)
    assert bundles["median"].overhead_ms == pytest.approx(float(gap.median()), rel=1e-9,
                                                          abs=1e-12)
    assert bundles["none"].overhead_ms == 0.0
    assert all(bundles[stat].overhead_share == 0.0 for stat in ("mean", "median", "none"))
    reference = weighted_line_overhead(per_model["e2e"], per_model["ops"])
    assert (bundles["linear"].overhead_ms, bundles["linear"].overhead_share) == tuple(
        pytest.approx(v, rel=1e-6, abs=1e-12) for v in reference)
    graph = read_model(data["held_out"][0])
    sums = set()
    for stat, bundle in bundles.items():
        assert bundle.training["overhead"] == stat
        assert bundle.training["overhead_models"] == len(data["train"])
        pred = Predictor(bundle).predict(graph)
        ops_ms = pred.latency_ms - pred.overhead_ms
        assert pred.overhead_ms == pytest.approx(bundle.overhead_ms + bundle.overhead_share * ops_ms)
        sums.add(round(ops_ms, 12))
    assert len(sums) == 1          # the statistic changes the overhead term only

    mse = _train(frame, "lasso", train_models=data["train"], grids=grid, objective="mse")
    assert mse.training["objective"] == "mse" and bundles["mean"].training["objective"] == "mspe"
    assert all(m.objective == "mse" for m in mse.models.values())
    # CPU scenario: conv models carry the CPU kernel features the CV chose; off gives Table 3 only
    lasso = bundles["mean"]
    assert lasso.training["kernel_features"] and "Conv2D" in lasso.training["kernels"]
    assert lasso.models["Conv2D"].kernel is not None
    table3 = _train(frame, "lasso", train_models=data["train"], grids=grid,
                          kernel_features=False)
    assert not table3.training["kernels"]
    assert all(m.kernel is None for m in table3.models.values())
    assert len(table3.models["Conv2D"].scaler.mean) == len(FEATURES["Conv2D"])
    with pytest.raises(LatpredError, match="overhead statistic"):
        _train(frame, "lasso", overhead="max")
    with pytest.raises(LatpredError, match="unknown objective"):
        _train(frame, "lasso", objective="mae")


def test_trained_lasso_bundle_has_nonnegative_weights_and_training_stats(data):
    frame = data["frame"]
    bundle = data["bundles"]["lasso"]
    assert bundle.models, "no category was trained"
    for cat, model in bundle.models.items():
        assert np.all(model.estimator["coef"] >= 0)
        rows = frame[frame["model"].isin(data["train"]) & (frame["category"] == cat)
                     & (frame["latency_ms"] > 0)]     # ops timed 0 (fused away) are left out
        X = rows[list(FEATURES[cat])].fillna(0).to_numpy(dtype=float)
        if model.kernel is not None:   # CPU kernel features follow Table 3's
            X = model.kernel.expand(X, FEATURES[cat], rows["op_type"].tolist())
        np.testing.assert_allclose(model.scaler.mean, X.mean(axis=0))


def test_bundle_round_trip_gives_identical_predictions(data, tmp_path):
    for method, bundle in data["bundles"].items():
        path = save_bundle(bundle, tmp_path / f"{method}.latpred")
        before = [p.op_latency_ms for p in Predictor(bundle).predict_many(data["held_out"])]
        after = [p.op_latency_ms for p in load(path).predict_many(data["held_out"])]
        for a, b in zip(before, after):
            np.testing.assert_array_equal(a, b)
        assert load_bundle(path).versions["lightgbm"]


def test_incompatible_or_foreign_bundle_is_one_clear_error(data, tmp_path):
    import copy
    bundle = copy.deepcopy(data["bundles"]["lasso"])
    bundle.format_version = BUNDLE_VERSION + 1
    old = save_bundle(bundle, tmp_path / "old.latpred")
    with pytest.raises(LatpredError, match="format version"):
        load(old)
    schema = copy.deepcopy(data["bundles"]["lasso"])
    schema.features["Conv2D"] = ("input_hw", "flops")
    other = save_bundle(schema, tmp_path / "schema.latpred")
    with pytest.raises(LatpredError, match="feature schema"):
        load(other)
    with pytest.raises(LatpredError, match="not a latpred predictor bundle"):
        load(data["paths"][0])      # a .tflite file
    res = run_cli("predict", old, data["paths"][0])
    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("latpred: ") and "Traceback" not in res.stderr


def test_unseen_category_uses_reported_fallback_not_a_crash(data, caplog):
    bundle = data["bundles"]["gbdt"]
    assert "Padding" not in bundle.models
    padded = data["paths"][9]
    caplog.set_level(logging.WARNING, logger="latpred")
    pred = Predictor(bundle).predict(padded)
    ops = pred.ops
    pad_ops = ops[ops["category"] == "Padding"]
    assert len(pad_ops) == 2
    # the PAD before the conv is folded into it by the CPU runtime: 0 ms, no fallback needed;
    # the PAD before the pooling op is real work, predicted by the fallback
    folded, real = pad_ops[pad_ops["fused"]], pad_ops[~pad_ops["fused"]]
    assert len(folded) == 1 and len(real) == 1
    assert (folded["latency_ms"] == 0).all() and not folded["fallback"].any()
    assert real["fallback"].all() and (real["latency_ms"] > 0).all()
    assert not ops[ops["category"] != "Padding"]["fallback"].any()
    assert not ops[ops["category"] != "Padding"]["fused"].any()
    assert sorted(pred.fallback_ops) == sorted(real["index"].tolist())
    assert np.isfinite(pred.latency_ms)
    assert any("Padding (1 ops)" in r.getMessage() for r in caplog.records)
    # a bundle of a runtime that does not fold (ONNX Runtime) predicts both PADs
    import copy
    other = copy.deepcopy(bundle)
    other.training["cpu_fusion"] = False
    unfolded = Predictor(other).predict(padded).ops
    assert (unfolded[unfolded["category"] == "Padding"]["latency_ms"] > 0).all()
    # The fallback scales with the op's size: a bigger PAD is predicted slower.
    p = Predictor(bundle)
    small = p.predict_rows([("Padding", {"input_size": 100.0, "output_size": 144.0})])
    big = p.predict_rows([("Padding", {"input_size": 1e4, "output_size": 1.2e4})])
    assert big[0] > small[0] > 0


def test_predict_many_equals_predict_one_by_one_and_rows(data):
    p = Predictor(data["bundles"]["gbdt"])
    paths = data["held_out"] + data["paths"][:2]
    many = p.predict_many(paths)
    for path, m in zip(paths, many):
        one = p.predict(path)
        assert m.model == one.model == path
        assert m.latency_ms == pytest.approx(one.latency_ms, rel=1e-12)
        pd.testing.assert_frame_equal(m.ops, one.ops)
        assert m.latency_ms == pytest.approx(m.overhead_ms + m.ops["latency_ms"].sum(), rel=1e-12)
        graph = read_model(path)
        rows = [(op.category, f) for op, f in zip(graph.ops, graph_features(graph))]
        np.testing.assert_allclose(p.predict_rows(rows), one.op_latency_ms, rtol=1e-12)
        assert p.predict(graph).latency_ms == pytest.approx(one.latency_ms, rel=1e-12)


def test_evaluate_scores_only_held_out_models_from_stored_features(data):
    p = Predictor(data["bundles"]["lasso"])
    result = evaluate(p, data["frame"])
    assert result.n_models == len(data["held_out"])
    assert set(result.per_model["model"]) == {os.path.basename(x)[:-7] for x in data["held_out"]}
    # Stored features give the same predictions as reading the model files.
    for path in data["held_out"]:
        name = os.path.basename(path)[:-7]
        row = result.per_model[result.per_model["model"] == name].iloc[0]
        assert row["predicted_ms"] == pytest.approx(p.predict(path).latency_ms, rel=1e-9)
    err = (result.per_model["predicted_ms"] - result.per_model["measured_ms"]).abs() \
        / result.per_model["measured_ms"]
    assert result.e2e_mape == pytest.approx(err.mean())
    assert result.within[0.10] == pytest.approx((err <= 0.10).mean())
    assert result.within[0.01] <= result.within[0.05] <= result.within[0.10]
    assert "Padding" in result.category_mape
    # ops of unmodelled categories use the fallback, unless the runtime folds them away
    unmodelled = ~result.per_op["category"].isin(list(p.bundle.models)) & ~result.per_op["fused"]
    assert result.per_op["fused"].sum() == 1     # the padded model's PAD before its conv
    assert result.fallback_ops == int(unmodelled.sum()) > 0
    assert (result.per_op["fallback"] == unmodelled).all()


def test_training_input_errors_are_clear(data):
    frame = data["frame"]
    two = pd.concat([frame, frame.assign(scenario="other/litert-1/cpu1/fp32")])
    with pytest.raises(LatpredError, match="several scenarios"):
        _train(two, "lasso")
    with pytest.raises(LatpredError, match="not in the store"):
        _train(frame, "lasso", train_models=["cnn0", "no_such_model"])
    with pytest.raises(LatpredError, match="unknown method"):
        _train(frame, "svm")


# --------------------------------------------------------------------------------------------------
# CLI

def test_cli_train_all_predict_json_and_evaluate(data, tmp_path):
    jobs = data["cli"]["jobs"]             # started with the store (see _start_cli_trainings)
    out = data["cli"]["out"] / "bundles"
    res = jobs["all"].result()
    assert res.returncode == 0, res.stderr
    for method in ("lasso", "rf", "gbdt", "mlp"):
        bundle = load_bundle(out / f"{method}.latpred")
        assert bundle.method == method and bundle.training["n_models"] == len(data["train"])

    # JSON: model is the path as given (relative here), latency = overhead + sum of ops.
    rel = os.path.relpath(data["paths"][8], ROOT)
    res = run_cli("predict", str(out / "gbdt.latpred"), rel, data["paths"][9], "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [d["model"] for d in doc] == [rel, data["paths"][9]]
    for d, path in zip(doc, (data["paths"][8], data["paths"][9])):
        assert set(d) == {"model", "latency_ms", "overhead_ms", "ops"}
        assert d["latency_ms"] == pytest.approx(d["overhead_ms"] + sum(o["latency_ms"]
                                                                       for o in d["ops"]))
        graph = read_model(path)
        assert [o["index"] for o in d["ops"]] == [op.index for op in graph.ops]
        assert [o["category"] for o in d["ops"]] == [op.category for op in graph.ops]
        assert all({"index", "category", "latency_ms", "fallback", "fused"} <= set(o)
                   for o in d["ops"])
    assert any(o["fallback"] for o in doc[1]["ops"])

    res = run_cli("evaluate", str(out / "lasso.latpred"), data["store"], "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["n_models"] == len(data["held_out"])
    assert 0 <= summary["e2e_mape"] < 10 and set(summary["within"]) == {"1%", "5%", "10%"}

    res = jobs["median"].result()      # --method lasso --overhead median
    assert res.returncode == 0, res.stderr
    median = load_bundle(data["cli"]["out"] / "median.latpred")
    train = data["frame"][data["frame"]["model"].isin(data["train"])]
    gap = train.groupby("model")["e2e_ms"].first() - train.groupby("model")["latency_ms"].sum()
    assert median.training["overhead"] == "median"
    assert median.overhead_ms == pytest.approx(float(gap.median()), rel=1e-9, abs=1e-12)

    res = jobs["work"].result()        # --method gbdt --work-target
    assert res.returncode == 0, res.stderr
    work = load_bundle(data["cli"]["out"] / "work.latpred")
    assert work.training["work_target"] and not load_bundle(out / "gbdt.latpred").training[
        "work_target"]
    # every category records which target its cross-validation kept, and a per-unit model
    # multiplies its estimate back by the op's work
    assert any(model.per_unit for model in work.models.values())
    for cat, model in work.models.items():
        assert model.params["per_unit"] == (model.per_unit or "none")
        if model.per_unit:
            rows = train[train["category"] == cat]
            X, types = feature_matrix(rows, model.features), op_types(rows)
            Xk = model.estimator_inputs(X, types)
            w = work_units(Xk, model.input_names, model.per_unit)
            raw = model.estimator.predict(model.scaler.transform(Xk))
            np.testing.assert_allclose(model.predict(X, types), np.maximum(raw * w, 0))

    # trees may refine a Lasso estimate by default; --no-linear-base gives the paper's trees
    default = load_bundle(out / "gbdt.latpred")
    assert default.training["linear_base"] and not load_bundle(out / "lasso.latpred").training[
        "linear_base"]
    for model in default.models.values():
        assert model.params["base"] == ("lasso" if model.base is not None else "none")
    res = jobs["paper"].result()       # --method gbdt --no-linear-base
    assert res.returncode == 0, res.stderr
    paper = load_bundle(data["cli"]["out"] / "paper.latpred")
    assert not paper.training["linear_base"]
    assert all(m.base is None and "base" not in m.params for m in paper.models.values())

    res = main_cli("predict", str(out / "gbdt.latpred"), str(tmp_path / "missing.tflite"))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    res = main_cli("train", data["store"], "--method", "lasso",
                   "--scenario", "nope/litert-1/cpu1/fp32", "--out", str(tmp_path / "x.latpred"))
    assert res.returncode == 2 and "not in" in res.stderr
