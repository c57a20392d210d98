"""More data must never make a predictor worse. Op timings that cannot be their op's (given another
op's time by the op profiler) must not wreck a fit: on the committed host store
hrnet_w18_small_v{1,2} hold conv rows timed hundreds of times faster than any conv runs (a 231
M-MAC conv at 4 µs), and under the MSPE their 1/y^2 weights flattened the whole Conv2D Lasso
(resnet10, one of its own training models, predicted at 0.9 ms instead of 18)."""
from pathlib import Path

import numpy as np

from latpred.predictors import LatencyPredictor, select_models
from latpred.predictors.evaluate import evaluate
from latpred.predictors.train import implausible_ops
from latpred.store import ProfileStore

STORE = Path(__file__).resolve().parents[1] / "datasets" / "host" / "litert_cpu1_fp32_opprof.sqlite"
REAL = ["resnet10", "squeezenet_v1_1", "hrnet_w18_small_v1", "hrnet_w18_small_v2",
        "mobilenetv3_small_w7d20", "seresnet18"]
GRID = {"lasso": {"alpha": list(np.logspace(-5, 2, 8))}}


def test_implausible_ops_flags_only_the_impossibly_fast():
    rng = np.random.default_rng(0)
    flops = rng.uniform(1e6, 2e8, 200)
    lat = flops * 2e-8 * rng.uniform(0.9, 3.0, 200)     # ~20 ps/MAC, slower small ops
    lat[7], flops[7] = 0.004, 2.3e8                     # a 230 M-MAC conv "in 4 µs"
    X = np.column_stack([np.ones(200), flops])
    bad = implausible_ops(X, lat, ("stride", "flops"))
    assert bad.tolist() == [i == 7 for i in range(200)]
    assert not implausible_ops(X, lat, ("stride", "flops"), factor=None).any()
    assert not implausible_ops(X, lat, ("stride", "input_c")).any()   # no work column


def _errors(est, frame, models):
    ev = evaluate(est, frame, models=models, exclude_training=False)
    return ev.per_model.set_index("model")["error"].abs(), ev


def test_superset_never_multiplies_errors_and_in_sample_error_is_bounded():
    with ProfileStore(STORE, readonly=True) as st:
        frame = st.frame()
    synthetic = sorted(m for m in frame["model"].unique() if m.startswith("nas_"))[:80]
    small = LatencyPredictor("lasso", grids=GRID).fit(select_models(frame, synthetic))
    big = LatencyPredictor("lasso", grids=GRID).fit(select_models(frame, synthetic + REAL))
    assert big.training_["untrusted_models"] == ["hrnet_w18_small_v1", "hrnet_w18_small_v2"]
    assert small.training_["untrusted_models"] == []
    err_small, _ = _errors(small, frame, synthetic)
    err_big, ev = _errors(big, frame, synthetic + REAL)
    # In sample, end to end (this Lasso: mean 12 %, worst 29 %; with the bug 46 % and 97 %).
    trusted = [m for m in synthetic + REAL if m not in big.training_["untrusted_models"]]
    assert err_big[trusted].max() < 0.4, err_big[trusted].sort_values().tail(3)
    assert err_big[trusted].mean() < 0.15
    assert err_big[["resnet10", "squeezenet_v1_1"]].max() < 0.15
    # In sample, per category, over ops of 0.1 ms or more: the compute-bound categories that carry
    # the time within 20 % op MAPE, no category at 100 % or more.
    per_op = ev.per_op[ev.per_op["model"].isin(trusted) & (ev.per_op["measured_ms"] >= 0.1)]
    ape = ((per_op["predicted_ms"] - per_op["measured_ms"]) / per_op["measured_ms"]).abs()
    by_cat = ape.groupby(per_op["category"]).mean()
    compute = ["Conv2D", "DepthwiseConv2D", "GroupedConv2D", "FullyConnected"]
    assert by_cat[compute].max() < 0.2 and by_cat.max() < 1.0, by_cat
    # a superset may shift a synthetic model's error, not multiply it
    worse = err_big[synthetic] - err_small[synthetic]
    assert worse.max() < 0.06, worse.sort_values().tail(3)
    assert err_big[synthetic].mean() < 1.5 * err_small.mean()
    # without the guard the same superset breaks the fit: the test can fail
    blind = LatencyPredictor("lasso", grids=GRID, implausible_factor=None).fit(
        select_models(frame, synthetic + REAL))
    err_blind, _ = _errors(blind, frame, synthetic + REAL)
    assert err_blind["resnet10"] > 0.5
