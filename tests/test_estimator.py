"""LatencyPredictor follows scikit-learn's estimator contract, on real measurements (the committed
primary host store): settings in __init__, learned state in attributes ending in `_`, clone and
get_params work, and a bundle written and read back predicts the same."""
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from latpred.errors import LatpredError
from latpred.predictors import LatencyPredictor, load, select_models
from latpred.scenario import Scenario
from latpred.store import ProfileStore

STORE = Path(__file__).resolve().parents[1] / "datasets" / "host" / "litert_cpu1_fp32_opprof.sqlite"
GRIDS = {"lasso": {"alpha": [1e-5, 1e-3, 1e-1]},
         "gbdt": {"n_estimators": list(range(1, 31)), "min_child_samples": [2, 5]}}


@pytest.fixture(scope="module")
def frames():
    with ProfileStore(STORE, readonly=True) as st:
        scenario = st.scenario(st.scenarios()[0])
        frame = st.frame(scenario.id)
    names = sorted(m for m in frame["model"].unique() if m.startswith("nas_"))
    return scenario, select_models(frame, names[:40]), select_models(frame, names[40:50])


def test_settings_learned_state_and_clone(frames):
    scenario, train, test = frames
    est = LatencyPredictor("gbdt", scenario, overhead="mean", grids=GRIDS, seed=3)
    assert est.get_params()["overhead"] == "mean" and est.get_params()["seed"] == 3
    with pytest.raises(LatpredError, match="not fitted"):
        est.predict(test)
    assert est.fit(train) is est
    learned = [a for a in vars(est) if a.endswith("_") and not a.startswith("_")]
    assert {"bundle_", "scenario_", "models_", "overhead_ms_", "fallback_"} <= set(learned)
    assert est.scenario_ == Scenario.parse(scenario.id) and est.training_["overhead"] == "mean"
    fresh = clone(est)
    assert fresh.get_params() == est.get_params() and not hasattr(fresh, "bundle_")
    fresh.set_params(method="lasso", overhead="linear")
    pred = fresh.fit(train).predict(test)
    assert fresh.bundle_.method == "lasso" and est.bundle_.method == "gbdt"
    # predict(frame): one value per model; predict_ops: per row, summing to it with the overhead
    ops = fresh.predict_ops(test)
    by_model = test.assign(p=ops).groupby("model")["p"].sum()
    share, fixed = fresh.overhead_share_, fresh.overhead_ms_
    np.testing.assert_allclose(pred[by_model.index], fixed + (1 + share) * by_model, rtol=1e-12)
    measured = test.groupby("model")["e2e_ms"].first()[pred.index]
    assert float(np.mean(np.abs(pred / measured - 1))) < 0.3


def test_saved_bundle_is_a_fitted_estimator(frames, tmp_path):
    scenario, train, test = frames
    est = LatencyPredictor("lasso", scenario, grids=GRIDS).fit(train)
    back = load(est.save(tmp_path / "l.latpred"))
    assert isinstance(back, LatencyPredictor) and back.get_params()["method"] == "lasso"
    np.testing.assert_array_equal(back.predict(test).to_numpy(), est.predict(test).to_numpy())
    with pytest.raises(LatpredError, match="unknown method"):
        LatencyPredictor("svm").fit(train)
    with pytest.raises(LatpredError, match="not like"):
        LatencyPredictor("lasso", "SYNTHETIC-gpu").fit(train)


def test_linear_overhead_never_has_a_negative_fixed_part():
    import pandas as pd
    from latpred.predictors import fit_overhead
    from overhead_reference import weighted_line_overhead
    # gaps that fall below 0 for small models (-0.02 ms + 5 % of the ops): a line with a negative
    # fixed part would predict a model whose ops sum to 0.01 ms below 0 ms
    ops = np.array([0.2, 1.0, 3.0, 10.0])
    e2e = ops + (-0.02 + 0.05 * ops)
    frame = pd.DataFrame({"model": list("abcd"), "latency_ms": ops, "e2e_ms": e2e})
    fixed, share, n = fit_overhead(frame, "linear")
    assert n == 4 and fixed == 0.0 and share > 0
    assert (fixed, share) == pytest.approx(weighted_line_overhead(e2e, ops), rel=1e-9)
