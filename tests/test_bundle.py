"""Bundle files are plain data: a zip of a strict-JSON manifest, an npz read without pickle and
LightGBM text. Round trips of every method on the op rows of real converter-made .tflite models,
and hostile or tampered files refused with one line, without running what they carry."""
from __future__ import annotations

import copy
import io
import json
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest

from latpred.errors import LatpredError
from latpred.features import graph_features
from latpred.predictors import Predictor, load, load_bundle, save_bundle
from latpred.predictors.bundle import (ARRAYS, BUNDLE_SUFFIX, BUNDLE_VERSION, MANIFEST,
                                       MAX_MEMBERS)
from latpred.predictors.estimator import LatencyPredictor
from latpred.predictors.methods import BootstrapForest
from latpred.predictors.trees import ArrayForest
from latpred.readers import read_model

SCENARIO = "host/litert-2.3.0/cpu1/fp32"
GRIDS = {"lasso": {"alpha": [1e-4, 1e-2]},
         "rf": {"n_estimators": [3], "min_samples_split": [2, 5]},
         "gbdt": {"n_estimators": [10, 30], "min_child_samples": [2]},
         "mlp": {"layers": [1], "width": [16], "lr": [5e-3], "weight_decay": [1e-5],
                 "max_epochs": [40]}}
METHODS = ("lasso", "rf", "gbdt", "mlp")


def _keras_cnn(tf, seed: int):
    L = tf.keras.layers
    rng = np.random.default_rng(seed)
    x0 = tf.keras.Input((24, 24, 3), batch_size=1)
    x = L.Conv2D(int(rng.choice([8, 16, 24])), 3, strides=2, padding="same", activation="relu")(x0)
    for _ in range(int(rng.integers(2, 4))):
        c = int(rng.choice([8, 16, 32]))
        y = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        y = L.Conv2D(c, int(rng.choice([1, 3])), padding="same")(y)
        x = L.Add()([x, y]) if c == x.shape[-1] else L.Concatenate()([L.Conv2D(c, 1)(x), y])
    x = L.GlobalAveragePooling2D()(x)
    return tf.keras.Model(x0, L.Dense(10)(x))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Op rows of real models with *simulated* latencies (work-proportional, 3 % noise): a
    round trip needs real features, not real timings."""
    import tensorflow as tf
    root = tmp_path_factory.mktemp("bundle_models")
    rng = np.random.default_rng(0)
    paths, rows = [], []
    for seed in range(8):
        path = root / f"cnn{seed}.tflite"
        path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(_keras_cnn(tf, seed)).convert())
        paths.append(str(path))
        graph = read_model(path)
        model_rows = []
        for op, feats in zip(graph.ops, graph_features(graph)):
            work = 2e-7 * feats.get("flops", 0.0) + 5e-7 * (feats.get("input_size", 0.0)
                                                            + feats.get("output_size", 0.0))
            model_rows.append({"model": f"cnn{seed}", "scenario": SCENARIO, "op_index": op.index,
                               "op_type": op.type, "category": op.category,
                               "latency_ms": (0.002 + work) * rng.lognormal(0, 0.03), **feats})
        e2e = 0.05 + 1.01 * sum(r["latency_ms"] for r in model_rows)
        rows += [dict(r, e2e_ms=e2e) for r in model_rows]
    frame = pd.DataFrame(rows)
    train = frame[frame["model"].isin([f"cnn{i}" for i in range(6)])]
    bundles = {m: LatencyPredictor(m, SCENARIO, grids=GRIDS).fit(train).bundle_ for m in METHODS}
    return {"paths": paths, "held_out": paths[6:], "bundles": bundles}


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _write_zip(path, members: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    return str(path)


def _edit(src, dst, manifest=None, arrays=None, text=None) -> str:
    """A copy of bundle ``src`` with its manifest / arrays / member texts changed."""
    members = _members(src)
    if manifest is not None:
        m = json.loads(members[MANIFEST])
        manifest(m)
        members[MANIFEST] = json.dumps(m).encode()   # allow_nan: a tampered NaN gets through
    if arrays is not None:
        with np.load(io.BytesIO(members[ARRAYS])) as npz:
            a = {k: npz[k].copy() for k in npz.files}
        arrays(a)
        buf = io.BytesIO()
        np.savez(buf, **a)
        members[ARRAYS] = buf.getvalue()
    if text is not None:
        text(members)
    return _write_zip(dst, members)


def _refused(path, match: str):
    with pytest.raises(LatpredError, match=match) as info:
        load_bundle(path)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path))
    return str(info.value)


class Hostile:
    """Unpickling this creates ``target``: what a pickle bundle could do to whoever loads it."""
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return open, (self.target, "w")


# --------------------------------------------------------------------------------------------------
# Round trips

@pytest.mark.parametrize("method", METHODS)
def test_bundle_round_trip_predicts_identically(data, tmp_path, method):
    bundle = data["bundles"][method]
    assert bundle.models, "no category was trained"
    path = save_bundle(bundle, tmp_path / f"{method}{BUNDLE_SUFFIX}")
    before = Predictor(bundle).predict_many(data["held_out"])
    after = load(path).predict_many(data["held_out"])
    for a, b in zip(before, after):
        assert np.array_equal(a.op_latency_ms, b.op_latency_ms)
        assert a.latency_ms == b.latency_ms
        assert a.latency_ms > a.overhead_ms > 0
    back = load_bundle(path)
    assert (back.overhead_ms, back.overhead_share) == (bundle.overhead_ms, bundle.overhead_share)
    assert back.fallback == bundle.fallback and back.features == bundle.features
    for cat, m in bundle.models.items():
        r = back.models[cat]
        assert (r.params, r.kernel, r.per_unit, r.n_train) == (m.params, m.kernel, m.per_unit,
                                                               m.n_train)
        assert np.array_equal(r.scaler.mean, m.scaler.mean)
        assert (r.base is None) == (m.base is None)
    # the file is plain data: strict JSON, arrays that load without pickle, LightGBM text
    members = _members(path)
    manifest = json.loads(members[MANIFEST], parse_constant=pytest.fail)
    assert manifest["format_version"] == BUNDLE_VERSION == 5 and manifest["method"] == method
    with np.load(io.BytesIO(members[ARRAYS]), allow_pickle=False) as npz:
        assert all(npz[k].dtype.kind == "f" or npz[k].dtype.kind == "i" for k in npz.files)
    gbdt = sorted(n for n in members if n.startswith("gbdt/"))
    assert len(gbdt) == (len(bundle.models) if method == "gbdt" else 0)
    assert set(members) == {MANIFEST, ARRAYS, *gbdt}
    if method == "rf":
        assert all(isinstance(m.estimator, ArrayForest) for m in back.models.values())
    if method in ("rf", "gbdt"):   # trees refine a nested Lasso, stored as its own description
        assert any(m["base"] and m["base"]["method"] == "lasso"
                   for m in manifest["models"].values())


def test_training_facts_become_plain_json(data, tmp_path):
    bundle = copy.deepcopy(data["bundles"]["lasso"])
    bundle.training["extra"] = {"f": np.float64(1.5), "a": np.arange(3), "i": np.int64(2),
                                "nan": float("nan"), "t": ("x", np.float32(0.5))}
    back = load_bundle(save_bundle(bundle, tmp_path / "facts.latpred"))
    assert back.training["extra"] == {"f": 1.5, "a": [0, 1, 2], "i": 2, "nan": None,
                                      "t": ["x", 0.5]}
    assert back.training["n_models"] == 6
    bundle.overhead_ms = float("nan")     # a number predictions use is never written as null
    with pytest.raises(LatpredError, match="overhead_ms"):
        save_bundle(bundle, tmp_path / "nan.latpred")
    assert not (tmp_path / "nan.latpred").exists()


def test_array_forest_predicts_what_the_sklearn_trees_predict():
    rng = np.random.default_rng(5)
    Z = rng.normal(size=(300, 4))
    y = np.exp(Z[:, 0]) + Z[:, 1] ** 2 + 0.1
    forest = BootstrapForest(6, 3, seed=1).fit(Z, y, np.ones_like(y))
    arrays = forest.to_arrays()
    Znew = rng.normal(size=(500, 4)) * 2
    assert np.array_equal(arrays.predict(Znew), forest.predict(Znew))
    assert np.array_equal(ArrayForest.from_arrays(arrays.to_arrays(), 4).predict(Znew),
                          forest.predict(Znew))
    with pytest.raises(ValueError, match="outside its 3 inputs"):
        ArrayForest.from_arrays(arrays.to_arrays(), 3)


# --------------------------------------------------------------------------------------------------
# Hostile, old and tampered files

def test_hostile_pickles_are_refused_without_running_them(data, tmp_path):
    target = tmp_path / "pwned"
    payload = pickle.dumps(Hostile(target))
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(Hostile(live)))          # the payload does act when unpickled
    assert live.exists()
    good = save_bundle(data["bundles"]["lasso"], tmp_path / f"good{BUNDLE_SUFFIX}")
    members = _members(good)
    obj = io.BytesIO()
    np.save(obj, np.array([Hostile(target)], dtype=object), allow_pickle=True)
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w") as zf:
        zf.writestr("m0.coef.npy", obj.getvalue())
    raw = tmp_path / f"raw{BUNDLE_SUFFIX}"
    raw.write_bytes(payload)
    files = {
        raw: "old pickle",
        _write_zip(tmp_path / "m.latpred", {MANIFEST: payload, ARRAYS: payload}): "JSON",
        _write_zip(tmp_path / "a.latpred", {**members, ARRAYS: payload}): "npz",
        _write_zip(tmp_path / "o.latpred", {**members, ARRAYS: npz.getvalue()}): "allow_pickle",
    }
    for path, match in files.items():
        _refused(path, match)
        assert not target.exists()


@pytest.mark.parametrize("compress", [0, 3])
def test_old_joblib_bundle_names_the_retrain_command(tmp_path, compress):
    import joblib
    path = tmp_path / "host-gbdt.joblib"
    joblib.dump({"magic": "latpred-predictor-bundle", "format_version": 4, "bundle": None},
                path, compress=compress)
    msg = _refused(path, "old pickle")
    assert "no longer loads" in msg
    assert "latpred train STORE --method M --out host-gbdt.latpred" in msg


def test_foreign_files_are_not_bundles(data, tmp_path):
    _refused(data["paths"][0], "not a latpred predictor bundle")             # a .tflite
    _refused(_write_zip(tmp_path / "x.latpred", {"readme.txt": b"hi"}), "no manifest.json")
    _refused(_write_zip(tmp_path / "y.latpred", {MANIFEST: b'{"magic": "other"}'}),
             "not a latpred predictor bundle")


def test_other_format_version_is_refused_naming_both(data, tmp_path):
    good = save_bundle(data["bundles"]["lasso"], tmp_path / "good.latpred")
    path = _edit(good, tmp_path / "v4.latpred", manifest=lambda m: m.update(format_version=4))
    msg = _refused(path, "format version 4 is not supported")
    assert f"reads version {BUNDLE_VERSION}" in msg


def _set_model_array(method, suffix, value):
    def edit(a):
        key = sorted(k for k in a if k.endswith(suffix))[0]
        a[key] = a[key].copy()
        a[key].flat[0] = value
    return edit


@pytest.mark.parametrize("method,kind,edit,match", [
    ("lasso", "manifest", lambda m: m.update(overhead_ms=float("nan")), "holds NaN"),
    ("lasso", "manifest", lambda m: m.update(overhead_share=float("inf")), "holds Infinity"),
    ("lasso", "text", lambda t: t.update({MANIFEST: t[MANIFEST].replace(
        b'"constant_ms": ', b'"constant_ms": 1e999, "x": ')}), "constant_ms' is not finite"),
    ("lasso", "manifest", lambda m: m["fallback"].update(ms_per_element="0.1"), "wrong type"),
    ("lasso", "arrays", _set_model_array("lasso", ".coef", np.nan), "NaN or inf"),
    ("lasso", "arrays", _set_model_array("lasso", ".scaler_std", 0.0), "std is not positive"),
    ("lasso", "arrays", lambda a: a.update({k: v[:-1] for k, v in a.items()
                                           if k.endswith(".scaler_mean")}), "shape"),
    ("mlp", "arrays", _set_model_array("mlp", "mlp0_weight", np.inf), "NaN or inf"),
    ("rf", "arrays", _set_model_array("rf", ".rf_threshold", np.inf), "non-finite threshold"),
    ("rf", "arrays", _set_model_array("rf", ".rf_left", 0), "out of order"),    # a cycle
    ("gbdt", "text", lambda t: [t.update({n: t[n].replace(b"leaf_value=", b"leaf_value=nan ", 1)})
                                for n in list(t) if n.startswith("gbdt/")], "NaN or inf"),
    ("lasso", "manifest", lambda m: [d.update(features=d["features"][:-1])
                                     for d in m["models"].values()], "shape"),
])
def test_tampered_numbers_are_refused(data, tmp_path, method, kind, edit, match):
    good = save_bundle(data["bundles"][method], tmp_path / "good.latpred")
    bad = _edit(good, tmp_path / "bad.latpred", **{kind: edit})
    _refused(bad, match)


def test_huge_or_crowded_archives_are_refused_before_reading(data, tmp_path, monkeypatch):
    good = save_bundle(data["bundles"]["lasso"], tmp_path / "good.latpred")
    blob = bytearray(open(good, "rb").read())
    central = blob.find(b"PK\x01\x02")                 # first central directory entry
    blob[central + 24:central + 28] = (0xF0000000).to_bytes(4, "little")  # declared size ~3.8 GB
    huge = tmp_path / "huge.latpred"
    huge.write_bytes(bytes(blob))
    crowded = _write_zip(tmp_path / "crowded.latpred",
                         {**_members(good), **{f"x{i}": b"" for i in range(MAX_MEMBERS)}})
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open",
                        lambda self, name, *a, **k: opened.append(name) or real_open(self, name,
                                                                                     *a, **k))
    _refused(huge, "declares 3840 MB uncompressed")
    _refused(crowded, f"{MAX_MEMBERS + 2} members")
    assert opened == []
    load_bundle(good)           # the patched open still reads a sound bundle
    assert MANIFEST in opened
