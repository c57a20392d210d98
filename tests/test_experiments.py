"""The evaluation end to end on a small real store: tiny NAS and 'real-world' models built by the
real TFLite converter, profiled by the LiteRT interpreter on this CPU (1 and 2 cores, fp32 and
int8), then ``experiments/run_all.py --quick``; outputs are checked against recomputation."""
from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, conv_stem, dw_residual, run_python, tiny_keras, write_tflite
from overhead_reference import weighted_line_overhead

RUN_ALL = os.path.join(ROOT, "experiments", "run_all.py")
sys.path.insert(0, os.path.join(ROOT, "experiments"))

N_NAS, N_INT8, N_TWO_CORES = 14, 4, 5
REAL = ("tinyres_a", "tinyres_b")


def _real_world_keras(width: int):
    def body(L, x0):
        x = dw_residual(L, conv_stem(L, x0, width), width)
        x = L.Conv2D(2 * width, 3, strides=2, padding="same", groups=2, activation="relu")(x)
        x = L.GlobalAveragePooling2D()(x)
        return L.Dense(10)(x)

    return tiny_keras(body)


def make_store(root) -> tuple[str, str]:
    """Build and profile the tiny models; returns (data folder, manifest path)."""
    from latpred.profiling import profile_models
    from latpred.sources.export import build_files
    from latpred.sources.nas import sample_specs
    root = str(root)
    nas_dir, int8_dir, two_dir, real_dir, data = (os.path.join(root, d) for d in
                                                  ("nas", "nas_int8", "nas_two", "real", "host"))
    for d in (real_dir, data, two_dir):
        os.makedirs(d, exist_ok=True)
    specs = sample_specs(N_NAS, seed=7, input_size=32)
    build_files(specs, nas_dir, precision="fp32", progress=False)
    build_files(specs[:N_INT8], int8_dir, precision="int8", progress=False)
    for spec in specs[:N_TWO_CORES]:
        name = f"{spec['name']}.tflite"
        os.link(os.path.join(nas_dir, name), os.path.join(two_dir, name))
    for i, name in enumerate(REAL):
        write_tflite(_real_world_keras(8 * (i + 1)), os.path.join(real_dir, f"{name}.tflite"))
    store = os.path.join(data, "profiles.sqlite")
    kw = dict(runs=5, warmup=1, progress=False, budget_s=0.3)
    profile_models([nas_dir, real_dir, int8_dir], store, cores=1, **kw)
    if (os.cpu_count() or 1) >= 2:
        profile_models([two_dir], store, cores=2, **kw)
    manifest = os.path.join(root, "manifest.csv")
    pd.DataFrame({"name": list(REAL) + ["not_measured_net"]}).to_csv(manifest, index=False)
    return data, manifest


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiments")
    data, manifest = make_store(root)
    out, readme = root / "results", root / "README.md"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = run_python(RUN_ALL, "--quick", "--data", data, "--manifest", manifest, "--out", out,
                      "--readme", readme, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"data": data, "manifest": manifest, "out": out, "readme": readme, "log": proc.stdout}


def _load(quick_run):
    import common as c
    return c, c.load_data(quick_run["data"], quick_run["manifest"])


def test_every_experiment_writes_outputs(quick_run):
    out = quick_run["out"]
    for name in ("in_distribution.csv", "in_distribution.png", "dataset_shift.csv",
                 "training_size.csv", "training_size.png", "hardware_speedup.csv",
                 "hardware_errors.csv", "overhead_noise.csv", "overhead_per_model.csv",
                 "baselines.csv", "baselines.png", "ablation.csv"):
        assert (out / name).stat().st_size > 0, name
    text = quick_run["readme"].read_text()
    for title in ("In distribution", "Dataset shift", "Training-set size", "Hardware",
                  "Overhead and noise", "Baselines", "Ablation"):
        assert title in text
    assert "no data yet" not in text.split("## 1.")[1].split("## 4.")[0]
    assert "this machine" in text and "phones" in text


def test_split_holds_test_models_out(quick_run):
    c, data = _load(quick_run)
    train, test = c.split_synthetic(data)
    assert len(test) >= 2 and not set(train) & set(test)
    assert all(n.startswith("nas_") for n in train + test)
    assert not set(train) & set(REAL)
    # int8 files (<name>.int8.tflite) map onto their fp32 architecture's name
    assert set(data.models_of(c.primary_scenario(data).replace("fp32", "int8"))["model"]) \
        <= set(train) | set(test)
    df = pd.read_csv(quick_run["out"] / "in_distribution.csv")
    assert (df["n_test"] == len(test)).all() and (df["n_train"] == len(train)).all()


def test_in_distribution_mape_matches_recomputation(quick_run):
    """Refit GBDT the same way and recompute the end-to-end MAPE from the store by hand."""
    c, data = _load(quick_run)
    scen = c.primary_scenario(data)
    train, test = c.split_synthetic(data)
    model = c.ours("gbdt", quick=True).fit(data.ops_of(scen, train))
    te = data.ops_of(scen, test)
    ops_ms = te.assign(p=model.predict_ops(te)).groupby("model")["p"].sum()
    pred = ops_ms + model.overhead_ms + model.overhead_share * ops_ms
    true = te.groupby("model")["e2e_ms"].first()
    mape = 100 * float(np.mean(np.abs(pred - true) / true))
    df = pd.read_csv(quick_run["out"] / "in_distribution.csv")
    got = df[(df["scenario"] == scen) & (df["method"] == "gbdt")]["mape"].iloc[0]
    assert got == pytest.approx(mape, rel=1e-4)
    # Ours is the library's bundle: `latpred evaluate`'s scoring gives the same MAPE
    from latpred.predictors.evaluate import evaluate
    assert 100 * evaluate(model, te, exclude_training=False).e2e_mape == \
        pytest.approx(mape, rel=1e-9)
    assert model.bundle.training["overhead"] == "linear"
    # the overhead term, a + b·Σ ops fitted on the MSPE, recomputed from the store with numpy
    m = data.ops_of(scen, train).groupby("model").agg(e=("e2e_ms", "first"), s=("latency_ms", "sum"))
    fixed, share = weighted_line_overhead(m["e"], m["s"])
    assert (model.overhead_ms, model.overhead_share) == (pytest.approx(fixed, rel=1e-6),
                                                         pytest.approx(share, rel=1e-6))


def test_overhead_table_matches_store(quick_run):
    from latpred.store import ProfileStore
    per_model = pd.read_csv(quick_run["out"] / "overhead_per_model.csv")
    with ProfileStore(os.path.join(quick_run["data"], "profiles.sqlite"), readonly=True) as st:
        frame = st.frame()
    scen = per_model["scenario"].iloc[0]
    f = frame[frame["scenario"] == scen]
    name = per_model[per_model["scenario"] == scen]["model"].iloc[0]
    ops = f[f["model"] == name]
    row = per_model[(per_model["scenario"] == scen) & (per_model["model"] == name)].iloc[0]
    assert row["sum_ops_ms"] == pytest.approx(ops["latency_ms"].sum(), rel=1e-5)
    assert row["overhead_ms"] == pytest.approx(ops["e2e_ms"].iloc[0] - ops["latency_ms"].sum(),
                                               rel=1e-4, abs=1e-6)
    agg = pd.read_csv(quick_run["out"] / "overhead_noise.csv")
    for (s, k), d in per_model.groupby(["scenario", "kind"]):
        r = agg[(agg["scenario"] == s) & (agg["kind"] == k)].iloc[0]
        assert r["models"] == len(d)
        assert r["overhead_ms_mean"] == pytest.approx(d["overhead_ms"].mean(), rel=1e-4, abs=1e-6)


def test_hardware_compares_cores_and_precision(quick_run):
    c, data = _load(quick_run)
    sp = pd.read_csv(quick_run["out"] / "hardware_speedup.csv")
    kinds = set(sp["comparison"])
    assert "precision" in kinds
    if (os.cpu_count() or 1) >= 2:
        assert "cores" in kinds
    # recompute one end-to-end speed-up: fp32 vs int8 on one core
    row = sp[(sp["comparison"] == "precision") & (sp["category"] == "end-to-end")].iloc[0]
    a = data.models_of(row["from"]).set_index("model")["e2e_ms"]
    b = data.models_of(row["to"]).set_index("model")["e2e_ms"]
    common = a.index.intersection(b.index)
    assert row["n_models"] == len(common) == N_INT8
    assert row["speedup_median"] == pytest.approx(float(np.median(a[common] / b[common])), rel=1e-4)
    assert row["slower"] == (row["speedup_median"] < 1)


def test_baselines_report_all_methods_and_lut_coverage(quick_run):
    df = pd.read_csv(quick_run["out"] / "baselines.csv")
    assert set(df["method"]) == {"ours-lasso", "ours-gbdt", "flops", "nnmeter", "gcn", "lut"}
    assert set(df["test"]) == {"synthetic", "real"}
    for _, r in df[df["n"] > 0].iterrows():
        assert r["acc1"] <= r["acc5"] <= r["acc10"] <= 100
    lut = df[df["method"] == "lut"].set_index("test")
    assert 0 <= lut.loc["real", "op_coverage"] < 100   # unseen real-world ops are not in the table
    assert lut.loc["real", "n"] <= lut.loc["real", "n_test"]
    ok = df[df["method"] != "lut"]
    assert (ok["n"] == ok["n_test"]).all() and ok["mape"].notna().all()


def test_ablation_variants_differ_only_in_what_they_ablate(quick_run):
    c, data = _load(quick_run)
    df = pd.read_csv(quick_run["out"] / "ablation.csv")
    scen = c.primary_scenario(data)
    train, _ = c.split_synthetic(data)
    m = data.ops_of(scen, train).groupby("model").agg(e=("e2e_ms", "first"),
                                                      s=("latency_ms", "sum"))
    mean_gap = float((m["e"] - m["s"]).mean())
    fixed, share = weighted_line_overhead(m["e"], m["s"])
    for variant, d in df.groupby("variant"):
        expected = {"no overhead term": (0.0, 0.0),
                    "constant overhead term (the paper's mean)": (mean_gap, 0.0)
                    }.get(variant, (fixed, share))
        # the CSV keeps 6 significant digits (relative rounding up to 5e-6)
        np.testing.assert_allclose(d["overhead_ms"], expected[0], rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(d["overhead_share"], expected[1], rtol=1e-5, atol=1e-12)
    import exp_ablation
    assert set(df["variant"]) == set(exp_ablation.VARIANTS)
    assert set(df["method"]) == {"lasso", "gbdt"}


def test_readme_numbers_come_from_csv(quick_run):
    df = pd.read_csv(quick_run["out"] / "ablation.csv")
    text = quick_run["readme"].read_text()
    for v in df["mape"].head(4):
        assert f"{v:.2f}" in text
    assert "no data yet" not in text.split("## 7.")[1]


def test_missing_data_is_reported_not_invented(tmp_path):
    empty = tmp_path / "none"
    empty.mkdir()
    readme = tmp_path / "README.md"
    proc = run_python(RUN_ALL, "--quick", "--data", empty, "--out", tmp_path / "r",
                      "--readme", readme, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = readme.read_text()
    assert text.count("no data yet") >= 7
    assert not list((tmp_path / "r").glob("*.csv"))


def test_pass_to_pass_gap_is_over_every_pair_of_passes():
    """The noise figure of combined stores: mean |a - b| / mean(a, b) over all pairs of passes of
    each model; single-pass models do not count."""
    import exp_overhead_noise as e
    models = pd.DataFrame({"scenario": "s", "kind": "synthetic",
                           "pass_e2e_ms": [[1.0, 1.1], [2.0, 2.0, 2.2], None]})
    got = e._between_passes(models).loc[("s", "synthetic")]
    gaps = [0.1 / 1.05, 0.0, 0.2 / 2.1, 0.2 / 2.1]
    assert got["passes"] == 2.5
    assert got["pass_to_pass_pct"] == pytest.approx(100 * np.mean(gaps))


def test_combined_store_is_read_instead_of_its_passes(quick_run, tmp_path):
    """A folder with X.pass1/X.pass2.sqlite and their median X.sqlite counts each model once, with
    the median's e2e; the passes alone (no X.sqlite) still load."""
    import shutil
    import sqlite3

    import common as c
    from latpred.store import combine_stores
    src = os.path.join(quick_run["data"], "profiles.sqlite")
    passes = [tmp_path / f"X.pass{k}.sqlite" for k in (1, 2)]
    for k, p in enumerate(passes):
        shutil.copy(src, p)
        with sqlite3.connect(p) as db:     # the second pass reads 50 % slower end to end
            db.execute("UPDATE models SET e2e_ms = e2e_ms * ?", (1.0 + 0.5 * k,))
    only_passes = c.load_data(tmp_path, quick_run["manifest"])
    assert len(only_passes.stores) == 2
    combine_stores([str(p) for p in passes], tmp_path / "X.sqlite")
    combined = c.load_data(tmp_path, quick_run["manifest"])
    one = c.load_data(quick_run["data"], quick_run["manifest"])
    assert [os.path.basename(s) for s in combined.stores] == ["X.sqlite"]
    assert len(combined.models) == len(one.models)
    key = ["scenario", "model"]
    m = combined.models.merge(one.models, on=key, suffixes=("", "_one"))
    np.testing.assert_allclose(m["e2e_ms"], 1.25 * m["e2e_ms_one"], rtol=1e-9)


def test_readme_of_another_folder_holds_only_its_sections_and_is_linked(tmp_path):
    """run_all --only X --sections-run-only writes a README of those sections alone (no
    real-device sections read from experiments/results), and a README beside it links it."""
    import common as c
    import run_all
    empty = tmp_path / "none"
    empty.mkdir()
    data = c.load_data(empty)
    other = tmp_path / "README_other.md"
    run_all.write_readme(tmp_path / "r", data, False, other, 1.0, ["baselines", "hardware"],
                         sections_run_only=True)
    titles = [line for line in other.read_text().splitlines() if line.startswith("## ")]
    assert [t.split(".")[0] for t in titles if t[3].isdigit()] == ["## 4", "## 6"]
    assert not any("Real devices" in t or "Another CPU" in t for t in titles)
    main = tmp_path / "README.md"
    run_all.write_readme(tmp_path / "r", data, False, main, 1.0, ["baselines"])
    assert "[README_other.md](README_other.md)" in main.read_text()
    assert "README_other" not in other.read_text()
