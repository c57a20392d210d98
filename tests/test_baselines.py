"""Baselines on real measurements: tiny NAS models made by the real TFLite converter and profiled
by the LiteRT interpreter on this CPU."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pandas as pd
import pytest

from latpred import baselines
from latpred.baselines.gcn import build_graphs
from latpred.baselines.nnmeter import RF_SETTINGS, kernel_type, nnmeter_features


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    from latpred.profiling import profile_models
    from latpred.store import ProfileStore
    from latpred.sources.export import build_files
    from latpred.sources.nas import sample_specs
    root = tmp_path_factory.mktemp("baselines")
    files = build_files(sample_specs(8, seed=11, input_size=32), root / "nas", progress=False)
    store = root / "p.sqlite"
    profile_models([root / "nas"], store, runs=5, warmup=1, progress=False, budget_s=0.3)
    with ProfileStore(store, readonly=True) as st:
        ops = st.frame()
    names = sorted(ops["model"].unique())
    return {"ops": ops, "train": ops[ops["model"].isin(names[:6])],
            "test": ops[ops["model"].isin(names[6:])], "files": {p.stem: str(p) for p in files}}


def test_flops_fits_the_relative_error_optimum_and_counts_real_macs(measured):
    from latpred.features import op_macs
    from latpred.readers import read_model
    tr = measured["train"]
    b = baselines.FlopsBaseline().fit(tr)
    macs = baselines.model_macs(tr)
    y = baselines.model_e2e(tr).reindex(macs.index)
    rel = lambda a: float(np.sum(((a * macs - y) / y) ** 2))   # noqa: E731
    assert rel(b.ms_per_mac) <= min(rel(b.ms_per_mac * 1.05), rel(b.ms_per_mac * 0.95))
    name = macs.index[0]
    g = read_model(measured["files"][name])
    assert macs[name] == sum(op_macs(g, op) for op in g.ops) > 0
    pred = b.predict_models(measured["test"])
    assert np.allclose(pred, baselines.model_macs(measured["test"]) * b.ms_per_mac)


def test_nnmeter_ignores_groups_and_uses_its_forest_settings(measured):
    ops = measured["ops"]
    conv = ops[ops["category"] == "Conv2D"].head(1)
    grouped = conv.assign(category="GroupedConv2D", groups=4.0, flops=conv["flops"] / 4)
    assert kernel_type("GroupedConv2D", "CONV_2D") == "conv"
    # nn-Meter's conv features see no groups: a grouped conv looks like the dense one
    assert np.array_equal(nnmeter_features(conv, "conv"), nnmeter_features(grouped, "conv"))
    b = baselines.NnMeterBaseline().fit(measured["train"])
    depth, n_est, _ = RF_SETTINGS["tflite_cpu"]["conv"]
    assert b.forests["conv"].n_estimators == n_est and b.forests["conv"].max_depth == depth
    te = measured["test"]
    per_op = b.predict_ops(te)
    assert np.all(per_op > 0)
    # end-to-end is the plain sum of kernel predictions: no overhead term
    assert np.allclose(b.predict_models(te).to_numpy(),
                       pd.Series(per_op, index=te.index).groupby(te["model"], sort=False).sum())


def test_lut_covers_seen_ops_only(measured):
    tr, te = measured["train"], measured["test"]
    lut = baselines.LookupTable().fit(tr)
    assert lut.coverage(tr) == 1.0
    one = tr[tr["model"] == tr["model"].iloc[0]]
    # a model measured alone: its table entries are its own medians, so e2e = Σ its op latencies
    alone = baselines.LookupTable().fit(one)
    assert alone.predict_models(one).iloc[0] == pytest.approx(one["latency_ms"].sum())
    cov = lut.coverage(te)
    assert 0.0 <= cov < 1.0          # random NAS models have convolution shapes not seen before
    pred = lut.predict_models(te)
    missing = np.isnan(lut.predict_ops(te))
    has_missing = pd.Series(missing, index=te.index).groupby(te["model"], sort=False).any()
    assert pred[has_missing].isna().all() and pred[~has_missing].notna().all()


def test_gcn_graph_has_global_node_and_trains(measured, tmp_path):
    from latpred.readers import read_model
    tr, te = measured["train"], measured["test"]
    name = tr["model"].iloc[0]
    g = read_model(measured["files"][name])
    edges = {name: [(int(u), int(v)) for u, v in g.nx.edges()]}
    (m, x, a), = build_graphs(tr[tr["model"] == name], edges)
    n = (tr["model"] == name).sum()
    assert x.shape[0] == a.shape[0] == n + 1
    assert np.all(a[0] > 0) and np.all(a[:, 0] > 0)           # global node sees every op
    assert np.allclose(a.sum(axis=1), 1.0)                    # row-normalised
    chain = build_graphs(tr[tr["model"] == name])[0][2]
    assert not np.array_equal((a > 0), (chain > 0)) or len(edges[name]) == n - 1
    b = baselines.GcnBaseline(max_epochs=8, seed=0).fit(tr)
    assert 1 <= b.epochs_run <= 8
    pred = b.predict_models(te)
    assert list(pred.index) == list(te["model"].unique()) and np.all(np.isfinite(pred))
    again = pickle.loads(pickle.dumps(b))
    assert np.allclose(again.predict_models(te), pred)


def test_make_rejects_unknown_baseline():
    with pytest.raises(ValueError):
        baselines.make("oracle")
