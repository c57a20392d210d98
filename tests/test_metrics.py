"""Metrics: FRM (seed 001 §3), SRCC/proxy selection (seed 004 §4-5), latency-limited selection
errors (seed 003 §S1.3). Pure functions on hand-checkable inputs, then the CLI end to end on tiny
converter-made .tflite models measured for real with LiteRT on this CPU."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from conftest import conv_stem, main_cli, run_cli, tiny_keras, write_tflite

from latpred.errors import LatpredError
from latpred.features import op_macs
from latpred.metrics.frm import (format_frm_table, frm_scores, frm_table, pareto_front,
                                 read_model_facts)
from latpred.metrics.selection import parse_limits, selection_at_limit, selection_curve
from latpred.metrics.transfer import (frm_table_by_scenario, pareto_transfer, select_proxy,
                                      srcc_matrix)
from latpred.store import ProfileStore
from latpred.readers import read_model


# --------------------------------------------------------------------------------------------------
# FRM

def test_ratios_are_model_over_baseline_and_frm_is_their_geometric_mean():
    # Model "big": 2x FLOPs, 4x latency, same memory as the baseline -> FRM = (2*4*1)^(1/3) = 2.
    df = frm_scores(flops=[10, 20, 5], latency=[3, 12, 3], memory=[7, 7, 14], baseline=0)
    assert df["ratio_flops"].tolist() == [1.0, 2.0, 0.5]
    assert df["ratio_latency"].tolist() == [1.0, 4.0, 1.0]
    assert df["ratio_memory"].tolist() == [1.0, 1.0, 2.0]
    assert df["frm"].iloc[0] == 1.0
    assert df["frm"].iloc[1] == pytest.approx(2.0)
    assert df["frm"].iloc[2] == pytest.approx(1.0)   # 0.5 * 1 * 2


def test_frm_e_adds_energy_as_a_fourth_ratio():
    df = frm_scores([1, 2], [1, 4], [1, 1], 0, energy=[4, 2])
    assert df["ratio_energy"].tolist() == [1.0, 0.5]
    assert df["frm_e"].iloc[1] == pytest.approx((2 * 4 * 1 * 0.5) ** 0.25)
    assert df["frm_e"].iloc[0] == 1.0


def test_frm_table_ranks_lower_frm_first_and_flags_flops_disagreements():
    # FLOPs order: tiny < cheap < base < heavy. "cheap" has few FLOPs but huge latency and memory,
    # so FRM drops it from FLOPs rank 2 to FRM rank 4: shift -2, a disagreement.
    names = ["base", "cheap", "heavy", "tiny"]
    flops = [100, 50, 400, 10]
    latency = [10, 200, 40, 1]
    memory = [100, 900, 400, 10]
    df, rho = frm_table(names, flops, memory, latency_pred=latency, baseline="base")
    assert rho is None
    by = df.set_index("name")
    assert by.loc["base", "frm"] == 1.0 and bool(by.loc["base", "baseline"])
    assert by.loc["cheap", "frm"] == pytest.approx((0.5 * 20 * 9) ** (1 / 3))
    assert df["name"].tolist() == ["tiny", "base", "heavy", "cheap"]     # ascending FRM
    assert df["frm_rank"].tolist() == [1, 2, 3, 4]
    assert by.loc["cheap", "flops_rank"] == 2 and by.loc["cheap", "rank_shift"] == -2
    assert bool(by.loc["cheap", "flops_frm_disagree"])
    assert by.loc["heavy", "rank_shift"] == 1 and not bool(by.loc["heavy", "flops_frm_disagree"])
    text = format_frm_table(df)
    assert "disagreement of >= 2 positions: cheap" in text
    assert "weight bytes + peak live activation bytes" in text and "FLOPs = MACs" in text


def test_frm_ranks_do_not_depend_on_the_baseline():
    rng = np.random.default_rng(3)
    names = [f"m{i}" for i in range(8)]
    f, l, m = (rng.uniform(1, 100, 8) for _ in range(3))
    ranks = {b: frm_table(names, f, m, l, baseline=b)[0].set_index("name")["frm_rank"]
             for b in ("m0", "m5")}
    assert ranks["m0"].sort_index().tolist() == ranks["m5"].sort_index().tolist()


def test_spearman_between_predicted_and_measured_frm_matches_scipy_and_lists_rank_changes():
    rng = np.random.default_rng(7)
    n = 12
    names = [f"m{i}" for i in range(n)]
    flops, memory = rng.uniform(1e6, 1e8, n), rng.uniform(1e5, 1e7, n)
    meas = rng.uniform(1, 50, n)
    pred = meas * rng.uniform(0.6, 1.5, n)      # a predictor with up to +-50 % errors
    df, rho = frm_table(names, flops, memory, pred, meas, "m0")
    frm_p = (flops / flops[0] * pred / pred[0] * memory / memory[0]) ** (1 / 3)
    frm_m = (flops / flops[0] * meas / meas[0] * memory / memory[0]) ** (1 / 3)
    assert rho == pytest.approx(spearmanr(frm_p, frm_m).statistic)
    assert rho < 1.0
    by = df.set_index("name")
    np.testing.assert_allclose(by.loc[names, "frm"], frm_p)
    np.testing.assert_allclose(by.loc[names, "frm_measured"], frm_m)
    expected_change = pd.Series(frm_m, index=names).rank(method="min") - \
        pd.Series(frm_p, index=names).rank(method="min")
    assert (by.loc[names, "frm_rank_change"] == expected_change.astype(int)).all()
    assert (by["frm_rank_change"] != 0).any()
    text = format_frm_table(df, rho)
    moved = by.index[by["frm_rank_change"] != 0][0]
    assert f"{moved} {by.loc[moved, 'frm_rank']}->{by.loc[moved, 'frm_rank_measured']}" in text


def test_frm_q_and_pareto_front_with_accuracy():
    names = ["a", "b", "c"]
    df, _ = frm_table(names, [1, 1, 1], [1, 1, 1], [1, 8, 27], baseline="a",
                      accuracy=[0.5, 0.75, 0.6])
    by = df.set_index("name")
    # FRM: a 1, b 2, c 3; c is dominated by b (lower FRM and higher accuracy).
    assert by.loc["b", "frm_q"] == pytest.approx(2 / 0.25)
    assert by["pareto"].to_dict() == {"a": True, "b": True, "c": False}


def test_pareto_front_by_hand():
    cost = [1, 2, 3, 4, 2]
    benefit = [0.1, 0.5, 0.4, 0.9, 0.5]
    assert pareto_front(cost, benefit).tolist() == [True, True, False, True, True]


def test_frm_table_rejects_bad_inputs():
    with pytest.raises(LatpredError, match="baseline"):
        frm_table(["a", "b"], [1, 2], [1, 2], [1, 2], baseline="zz")
    with pytest.raises(LatpredError, match="missing or negative"):
        frm_table(["a", "b"], [1, 2], [1, 2], [1, float("nan")], baseline="a")
    with pytest.raises(LatpredError, match="positive"):
        frm_table(["a", "b"], [0, 2], [1, 2], [1, 2], baseline="a")


def test_model_facts_csv_percent_and_errors(tmp_path):
    p = tmp_path / "acc.csv"
    p.write_text("model,accuracy,energy\nmodels/a.tflite,71.5,3\nb,60,2\n")
    facts = read_model_facts(p)
    assert facts.loc["a", "accuracy"] == pytest.approx(0.715)
    assert facts.attrs["accuracy_percent"]
    p.write_text("name,accuracy\na,0.7\na,0.8\n")
    with pytest.raises(LatpredError, match="listed twice"):
        read_model_facts(p)
    p.write_text("model,size\na,3\n")
    with pytest.raises(LatpredError, match="accuracy"):
        read_model_facts(p)


# --------------------------------------------------------------------------------------------------
# SRCC and proxy selection

def _scenarios(n=30, seed=0):
    rng = np.random.default_rng(seed)
    target = rng.uniform(1, 100, n)
    idx = [f"m{i}" for i in range(n)]
    return pd.DataFrame({
        "target": target,
        "monotone": 3.0 * target ** 1.2 + 5,                   # same order: SRCC 1
        "noisy": target * rng.uniform(0.3, 3.0, n),            # partly reordered
        "reversed": 1000.0 - target,                           # SRCC -1
    }, index=idx)


def test_srcc_matrix_is_symmetric_with_unit_diagonal_and_matches_scipy():
    t = _scenarios()
    t.iloc[:4, 2] = np.nan                                     # pairwise-complete rows
    m = srcc_matrix(t)
    assert np.allclose(np.diag(m), 1.0)
    assert np.allclose(m.to_numpy(), m.to_numpy().T)
    both = t[["target", "noisy"]].dropna()
    assert m.loc["target", "noisy"] == pytest.approx(spearmanr(both["target"],
                                                               both["noisy"]).statistic)
    assert m.loc["target", "monotone"] == pytest.approx(1.0)
    assert m.loc["target", "reversed"] == pytest.approx(-1.0)
    few = pd.DataFrame({"a": [1, 2, np.nan, np.nan], "b": [2, 1, 3, 4]})
    assert np.isnan(srcc_matrix(few).loc["a", "b"])


def test_proxy_selection_picks_the_most_monotonic_source_and_refuses_below_threshold():
    t = _scenarios()
    choice = select_proxy(t, "target", k=10, threshold=0.85, seed=1)
    assert choice.proxy == "monotone"
    assert len(choice.samples) == 10 and choice.srcc["monotone"] == pytest.approx(1.0)
    assert choice.srcc["reversed"] == pytest.approx(-1.0)
    sub = t.loc[choice.samples]
    assert choice.srcc["noisy"] == pytest.approx(spearmanr(sub["target"],
                                                           sub["noisy"]).statistic)
    # Without the monotone source, nothing reaches a high threshold.
    no_good = select_proxy(t, "target", sources=["noisy", "reversed"], k=10,
                           threshold=max(choice.srcc["noisy"], 0) + 0.01, seed=1)
    assert no_good.proxy is None
    # The same samples at a threshold below the noisy source's SRCC accept it.
    low = select_proxy(t, "target", sources=["noisy", "reversed"], samples=choice.samples,
                       threshold=choice.srcc["noisy"] - 0.01)
    assert low.proxy == "noisy"


def test_pareto_set_transfers_exactly_between_monotonic_scenarios_and_not_otherwise():
    t = _scenarios(n=20, seed=4)
    acc = pd.Series(np.random.default_rng(5).uniform(0.5, 0.8, 20), index=t.index)
    same = pareto_transfer(t["monotone"], t["target"], acc)
    assert same["source_front"] == same["target_front"] and same["jaccard"] == 1.0
    assert same["max_accuracy_lost"] == 0.0
    rev = pareto_transfer(t["reversed"], t["target"], acc)
    assert rev["jaccard"] < 1.0 and rev["missed"]
    # The fastest model on the target is always the top-accuracy choice at the tightest limit.
    fastest = t["target"].idxmin()
    assert fastest in same["target_front"]


def test_frm_srcc_between_scenarios_ignores_common_latency_scaling():
    t = _scenarios(n=10)
    flops = pd.Series(np.linspace(1, 10, 10), index=t.index)
    mem = pd.Series(np.linspace(5, 1, 10), index=t.index)
    frm = frm_table_by_scenario(t[["target", "monotone"]].assign(scaled=t["target"] * 7),
                                flops, mem)
    m = srcc_matrix(frm)
    assert m.loc["target", "scaled"] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------------
# Latency-constrained selection

def test_false_positives_and_negatives_by_hand():
    names = ["a", "b", "c", "d"]
    meas = [1.0, 2.0, 3.0, 4.0]
    pred = [1.5, 2.5, 2.5, 3.5]    # at limit 2.6: b (2 ms) and c (3 ms) predicted 2.5
    acc = [0.50, 0.60, 0.90, 0.95]
    r = selection_at_limit(names, pred, meas, 2.6, acc)
    assert (r["false_positives"], r["false_negatives"]) == (1, 0)
    assert r["false_positive_models"] == ["c"]
    assert r["assumed_best"] == "c" and r["effective_best"] == "b"
    assert r["ground_truth_best"] == "b"
    assert r["overclaimed_accuracy"] == pytest.approx(0.30)
    assert r["overclaimed_latency_error_ms"] == pytest.approx(-0.5)
    assert r["missed_accuracy"] == 0.0
    # At 2.2 b truly fits (2.0) but is predicted 2.5: a false negative that costs 0.10 accuracy.
    r = selection_at_limit(names, pred, meas, 2.2, acc)
    assert (r["false_positives"], r["false_negatives"]) == (0, 1)
    assert r["effective_best"] == "a" and r["ground_truth_best"] == "b"
    assert r["missed_accuracy"] == pytest.approx(0.10)
    assert r["missed_latency_error_ms"] == pytest.approx(0.5)
    curve = selection_curve(names, pred, meas, [0.5, 2.2, 2.6, 10], acc)
    assert curve["false_positives"].tolist() == [0, 0, 1, 0]
    assert curve["false_negatives"].tolist() == [0, 1, 0, 0]
    assert curve["truly_fit"].tolist() == [0, 2, 2, 4]
    counts_only = selection_at_limit(names, pred, meas, 2.6)
    assert "missed_accuracy" not in counts_only and counts_only["true_positives"] == 2


def test_parse_limits():
    assert parse_limits("1,2.5,4").tolist() == [1.0, 2.5, 4.0]
    np.testing.assert_allclose(parse_limits("1:2:0.25"), [1, 1.25, 1.5, 1.75, 2])
    with pytest.raises(LatpredError):
        parse_limits("3:1:1")


# --------------------------------------------------------------------------------------------------
# End to end on real models measured with LiteRT

def _build(kind: str):
    return tiny_keras(lambda L, x0: _kind_cnn(L, x0, kind))


def _kind_cnn(L, x0, kind: str):
    if kind == "wide_conv":
        x = L.Conv2D(48, 3, padding="same", activation="relu")(x0)
        x = L.Conv2D(48, 3, padding="same", activation="relu")(x)
        x = L.GlobalAveragePooling2D()(x)
    elif kind == "separable":
        x = conv_stem(L, x0, 16)
        x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        x = L.Conv2D(32, 1, activation="relu")(x)
        x = L.GlobalAveragePooling2D()(x)
    elif kind == "dense_head":
        x = conv_stem(L, x0, 8)
        x = L.Flatten()(x)
        x = L.Dense(256, activation="relu")(x)
    elif kind == "tiny":
        x = L.Conv2D(4, 3, strides=4, padding="same", activation="relu")(x0)
        x = L.GlobalAveragePooling2D()(x)
    elif kind == "strided":
        x = L.Conv2D(24, 5, strides=2, padding="same", activation="relu")(x0)
        x = L.MaxPool2D(2)(x)
        x = L.Conv2D(24, 3, padding="same", activation="relu")(x)
        x = L.GlobalAveragePooling2D()(x)
    return L.Dense(10)(x)


KINDS = ("wide_conv", "separable", "dense_head", "tiny", "strided")


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Five tiny models (TFLite converter), profiled for real on 1 and 2 host cores."""
    import tensorflow as tf
    from latpred.profiling import profile_models
    root = tmp_path_factory.mktemp("metrics_models")
    tf.keras.utils.set_random_seed(0)
    paths = []
    for kind in KINDS:
        paths.append(str(write_tflite(_build(kind), root / f"{kind}.tflite")))
    store = str(tmp_path_factory.mktemp("metrics_store") / "profiles.db")
    for cores in (1, 2):
        profile_models(paths, store, cores=cores, runs=15, warmup=2, op_wise=False,
                       progress=False)
    st = ProfileStore(store, readonly=True)
    scenarios = st.scenarios()
    rows = st.models()
    st.close()
    assert len(scenarios) == 2 and (rows["status"] == "ok").all()
    return {"paths": paths, "store": store, "scenarios": scenarios, "rows": rows}


def test_frm_cli_json_matches_store_and_graph(measured, tmp_path):
    scen = measured["scenarios"][0]
    acc = tmp_path / "acc.csv"
    acc.write_text("model,accuracy,energy\n" + "".join(
        f"{k},{0.5 + 0.05 * i},{1 + i}\n" for i, k in enumerate(KINDS)))
    png = tmp_path / "frm.png"
    res = run_cli("frm", *measured["paths"], "--baseline", measured["paths"][1], "--measured",
                  measured["store"], "--scenario", scen, "--accuracy", acc, "--plot", png, "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["baseline"] == "separable" and out["latency_source"] == "measured"
    assert "spearman_rho" not in out
    rows = measured["rows"]
    lat = rows[rows["scenario"] == scen].set_index("model")["e2e_ms"]
    facts = {}
    for p in measured["paths"]:
        g = read_model(p)
        name = os.path.splitext(os.path.basename(p))[0]
        facts[name] = (sum(op_macs(g, op) for op in g.ops),
                       g.weight_bytes + g.peak_activation_bytes())
    base = "separable"
    got = {r["name"]: r for r in out["models"]}
    assert set(got) == set(KINDS)
    for i, name in enumerate(KINDS):
        r = got[name]
        rf = facts[name][0] / facts[base][0]
        rl = lat[name] / lat[base]
        rm = facts[name][1] / facts[base][1]
        assert r["flops"] == facts[name][0] and r["memory_bytes"] == facts[name][1]
        assert r["ratio_flops"] == pytest.approx(rf)
        assert r["ratio_latency"] == pytest.approx(rl)
        assert r["ratio_memory"] == pytest.approx(rm)
        assert r["frm"] == pytest.approx((rf * rl * rm) ** (1 / 3))
        assert r["frm_q"] == pytest.approx(r["frm"] / (1 - (0.5 + 0.05 * i)))
        assert r["frm_e"] == pytest.approx((rf * rl * rm * (1 + i) / 2) ** 0.25)
    assert got[base]["frm"] == 1.0
    frms = [r["frm"] for r in out["models"]]
    assert frms == sorted(frms) and [r["frm_rank"] for r in out["models"]] == [1, 2, 3, 4, 5]
    flops_order = sorted(KINDS, key=lambda n: facts[n][0])
    for name in KINDS:
        assert got[name]["flops_rank"] == flops_order.index(name) + 1
        assert got[name]["rank_shift"] == got[name]["flops_rank"] - got[name]["frm_rank"]
        assert got[name]["flops_frm_disagree"] == (abs(got[name]["rank_shift"]) >= 2)
    assert "peak" in out["memory_convention"] and "MACs" in out["flops_convention"]
    import matplotlib.image as mpimg
    img = mpimg.imread(png)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_frm_cli_bad_input_is_one_line(measured):
    paths, store = measured["paths"], measured["store"]
    cases = [
        ("frm", *paths, "--baseline", paths[0]),                                   # no latency
        ("frm", *paths, "--baseline", "nothere", "--measured", store),            # baseline
        ("frm", *paths, "--baseline", paths[0], "--measured", store),             # 2 scenarios
        ("frm", *paths, "--baseline", paths[0], "--measured", paths[0]),          # not a store
        ("frm", *paths, "--baseline", paths[0], "--predictor", "/no/such/bundle"),
    ]
    for i, args in enumerate(cases):    # the first a real launch, the others in this process
        res = (run_cli if i == 0 else main_cli)(*args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert res.stderr.startswith("latpred: ") and res.stderr.count("\n") == 1, res.stderr
        assert "Traceback" not in res.stderr
    res = main_cli(*cases[2])
    assert "--scenario" in res.stderr


def test_rank_transfer_cli_srcc_against_store(measured, tmp_path):
    png = tmp_path / "srcc.png"
    res = run_cli("rank-transfer", measured["store"], "--models", *measured["paths"], "-k", "5",
                  "--threshold", "0.5", "--plot", png, "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    s1, s2 = measured["scenarios"]
    rows = measured["rows"]
    a = rows[rows["scenario"] == s1].set_index("model")["e2e_ms"]
    b = rows[rows["scenario"] == s2].set_index("model")["e2e_ms"].reindex(a.index)
    m = out["latency_srcc"]
    assert m[s1][s2] == pytest.approx(spearmanr(a, b).statistic)
    assert m[s1][s2] == m[s2][s1] and m[s1][s1] == 1.0
    assert "flops (virtual device)" in m                     # FLOPs joins as a virtual device
    flops = {os.path.splitext(os.path.basename(p))[0]:
             sum(op_macs(read_model(p), op) for op in read_model(p).ops)
             for p in measured["paths"]}
    fl = pd.Series(flops).reindex(a.index)
    assert m[s1]["flops (virtual device)"] == pytest.approx(spearmanr(a, fl).statistic)
    assert out["frm_models"] == 5 and out["frm_srcc"][s1][s1] == 1.0
    by_target = {p["target"]: p for p in out["proxies"]}
    assert set(by_target) == {s1, s2}
    p = by_target[s1]
    assert p["k"] == 5 and sorted(p["samples"]) == sorted(KINDS)
    best = max(v for v in p["srcc"].values() if v is not None)
    if best >= 0.5:
        assert p["srcc"][p["proxy"]] == best
    else:
        assert p["proxy"] is None
    import matplotlib.image as mpimg
    assert mpimg.imread(png).ndim == 3


class OtherScenarioAsPredictor:
    """Stand-in for a predictor bundle (no trained bundle is needed to test the wiring): it
    "predicts" a model's latency with that model's real measurement in *another* scenario (2 host
    cores), so the predicted-vs-measured comparison runs on real, differing numbers."""

    def __init__(self, rows, scenario):
        self.latency = rows[rows["scenario"] == scenario].set_index("model")["e2e_ms"]
        self.scenario = scenario

    def predict(self, graph):
        from types import SimpleNamespace
        return SimpleNamespace(latency_ms=float(
            self.latency[os.path.splitext(os.path.basename(graph.path))[0]]))


def _main(capsys, *args):
    from latpred.cli import main
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_frm_cli_predicted_beside_measured_gives_spearman_and_rank_changes(measured, monkeypatch,
                                                                           capsys):
    import latpred.metrics.inputs as inputs
    s1, s2 = measured["scenarios"]
    rows = measured["rows"]
    monkeypatch.setattr(inputs, "load_predictor",
                        lambda path: OtherScenarioAsPredictor(rows, s2))
    code, out, err = _main(capsys, "frm", *measured["paths"], "--baseline", "tiny",
                           "--predictor", "standin", "--measured", measured["store"],
                           "--scenario", s1, "--json")
    assert code == 0, err
    res = json.loads(out)
    got = {r["name"]: r for r in res["models"]}
    pred = rows[rows["scenario"] == s2].set_index("model")["e2e_ms"]
    meas = rows[rows["scenario"] == s1].set_index("model")["e2e_ms"]
    assert all(got[n]["latency_ms"] == pytest.approx(pred[n]) for n in KINDS)
    assert all(got[n]["latency_measured_ms"] == pytest.approx(meas[n]) for n in KINDS)
    frm_p = [got[n]["frm"] for n in KINDS]
    frm_m = [got[n]["frm_measured"] for n in KINDS]
    assert res["spearman_rho"] == pytest.approx(spearmanr(frm_p, frm_m).statistic)
    changed = {c["name"] for c in res["summary"]["rank_changes"]}
    assert changed == {n for n in KINDS if got[n]["frm_rank"] != got[n]["frm_rank_measured"]}
    assert res["sources"]["measured"]["scenario"] == s1
    assert any("differs from measured scenario" in n for n in res["notes"])
    code, text, _ = _main(capsys, "frm", *measured["paths"], "--baseline", "tiny", "--predictor",
                          "standin", "--measured", measured["store"], "--scenario", s1)
    assert code == 0 and "Spearman rho, FRM from predicted vs measured latency: " \
        f"{res['spearman_rho']:.4f}" in text


def test_select_cli_counts_match_the_store(measured, monkeypatch, capsys, tmp_path):
    import latpred.metrics.inputs as inputs
    s1, s2 = measured["scenarios"]
    rows = measured["rows"]
    monkeypatch.setattr(inputs, "load_predictor",
                        lambda path: OtherScenarioAsPredictor(rows, s2))
    pred = rows[rows["scenario"] == s2].set_index("model")["e2e_ms"]
    meas = rows[rows["scenario"] == s1].set_index("model")["e2e_ms"]
    # Limits halfway between neighbouring measured latencies: each splits the models differently.
    cuts = np.sort(meas.to_numpy())
    limits = (cuts[:-1] + cuts[1:]) / 2
    acc = tmp_path / "acc.csv"
    acc.write_text("model,accuracy\n" + "".join(f"{k},{0.9 - 0.1 * i}\n"
                                                for i, k in enumerate(KINDS)))
    png = tmp_path / "sel.png"
    code, out, err = _main(capsys, "select", *measured["paths"], "--predictor", "standin",
                           "--measured", measured["store"], "--scenario", s1, "--limits",
                           ",".join(f"{l:.9f}" for l in limits), "--accuracy", acc,
                           "--plot", png, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert len(res["limits"]) == len(limits)
    for row in res["limits"]:
        l = row["limit_ms"]
        assert row["truly_fit"] == int((meas <= l).sum())
        assert row["false_positives"] == int(((pred <= l) & (meas > l)).sum())
        assert row["false_negatives"] == int(((pred > l) & (meas <= l)).sum())
        assert row["missed_accuracy"] is None or row["missed_accuracy"] >= 0
        assert row["overclaimed_accuracy"] is None or row["overclaimed_accuracy"] >= 0
    import matplotlib.image as mpimg
    assert mpimg.imread(png).ndim == 3


def test_rank_transfer_takes_predictor_columns(measured, monkeypatch, capsys, tmp_path):
    import latpred.metrics.inputs as inputs
    s1, s2 = measured["scenarios"]
    monkeypatch.setattr(inputs, "load_predictor",
                        lambda path: OtherScenarioAsPredictor(measured["rows"], s2))
    bundle = tmp_path / "standin.bundle"
    bundle.write_bytes(b"stand-in")
    code, out, err = _main(capsys, "rank-transfer", measured["store"], bundle, "--models",
                           *measured["paths"], "--scenario", s1, "--no-flops-device", "--json")
    assert code == 0, err
    res = json.loads(out)
    names = [s["name"] for s in res["scenarios"]]
    assert names == [s1, f"predicted:{s2}"]
    assert [s["kind"] for s in res["scenarios"]] == ["measured", "predicted"]
    rows = measured["rows"]
    a = rows[rows["scenario"] == s1].set_index("model")["e2e_ms"]
    b = rows[rows["scenario"] == s2].set_index("model")["e2e_ms"].reindex(a.index)
    assert res["latency_srcc"][s1][f"predicted:{s2}"] == pytest.approx(spearmanr(a, b).statistic)
    code, _, err = _main(capsys, "rank-transfer", bundle, "--models", *measured["paths"])
    assert code == 2 and "only one scenario" in err
