"""The drift gauge: a fixed reference model timed beside every measured model (`latpred profile
--reference`), and the drift-normalized copy of a store made from it (`latpred store
normalize`). Real converter models, real LiteRT runs."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import main_cli, tiny_keras, write_tflite
from latpred.errors import LatpredError
from latpred.profiling import profile_models
from latpred.store import ProfileStore, combine_stores, normalize_store

KW = dict(runs=12, warmup=2, progress=False, op_timing="opprof")


def _cnn(width: int, size: int):
    def body(L, inp):
        x = L.Conv2D(width, 3, strides=2, padding="same", activation="relu")(inp)
        x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        x = L.Conv2D(2 * width, 1)(x)
        x = L.GlobalAveragePooling2D()(x)
        return L.Dense(10)(x)
    return tiny_keras(body, (size, size, 3))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("gauge")
    (d / "models").mkdir()
    small = write_tflite(_cnn(8, 32), d / "models" / "small.tflite")
    big = write_tflite(_cnn(32, 96), d / "models" / "big.tflite")
    gauge = d / "gauge.tflite"
    shutil.copy(small, gauge)
    return {"dir": d / "models", "small": small, "big": big, "gauge": gauge}


@pytest.fixture(scope="module")
def gauged_store(models, tmp_path_factory):
    store = tmp_path_factory.mktemp("gauged") / "p.sqlite"
    summary = profile_models([models["dir"]], store, reference=models["gauge"], **KW)
    assert (summary.measured, summary.failed) == (2, 0)
    return store


def _models(store):
    with ProfileStore(store, readonly=True) as st:
        return st.models().set_index("model"), st.frame()


def test_the_gauge_is_timed_beside_every_model_under_the_same_settings(gauged_store):
    m, _ = _models(gauged_store)
    assert (m.reference_ms > 0).all() and m.reference_hash.nunique() == 1
    assert (m.reference_runs == m.e2e_runs).all()       # one gauge run per timed run
    # the gauge is a copy of `small`: timed in the same process and conditions, the two agree,
    # and the far bigger model is not mistaken for the gauge
    assert 0.6 < m.loc["small", "e2e_ms"] / m.loc["small", "reference_ms"] < 1.6
    assert m.loc["big", "e2e_ms"] > 2 * m.loc["big", "reference_ms"]


def test_a_scenario_never_mixes_gauges_or_gauged_and_ungauged_rows(models, gauged_store, tmp_path):
    copy = tmp_path / "p.sqlite"
    shutil.copy(gauged_store, copy)
    with pytest.raises(LatpredError, match="measured with reference .*this run has no reference"):
        profile_models([models["small"]], copy, retry_failed=True, **KW)
    other = write_tflite(_cnn(4, 32), tmp_path / "other.tflite")
    with pytest.raises(LatpredError, match="this run has reference"):
        profile_models([models["small"]], copy, reference=other, **KW)
    r = main_cli("profile", models["small"], "--out", copy, "--reference", tmp_path / "x.onnx")
    assert r.returncode == 2 and "must be a .tflite" in r.stderr


def test_normalize_scales_each_model_by_the_median_gauge_over_its_own(gauged_store, models,
                                                                        tmp_path):
    out = tmp_path / "n.sqlite"
    r = main_cli("store", "normalize", gauged_store, "--out", out)
    assert r.returncode == 0 and "derived, not measured" in r.stdout
    raw, raw_ops = _models(gauged_store)
    norm, norm_ops = _models(out)
    factor = raw.reference_ms.median() / raw.reference_ms
    assert np.allclose(norm.drift_factor, factor.loc[norm.index])
    assert np.allclose(norm.e2e_ms, (raw.e2e_ms * factor).loc[norm.index])
    assert np.allclose(norm.raw_e2e_ms, raw.e2e_ms.loc[norm.index])
    ops = raw_ops.merge(norm_ops, on=["model", "op_index"], suffixes=("", "_n"))
    assert np.allclose(ops.latency_ms_n, ops.latency_ms * ops.model.map(factor))
    # derived values: never extended with raw measurements, never normalized twice
    r = main_cli("profile", models["small"], "--out", out, "--reference", models["gauge"],
                 "--op-timing", "opprof", "--retry-failed")
    assert r.returncode == 2 and "drift-normalized" in r.stderr
    with pytest.raises(LatpredError, match="already drift-normalized"):
        normalize_store(out, tmp_path / "again.sqlite")


def test_passes_normalized_to_one_target_combine(gauged_store, tmp_path):
    # a second pass of the same models; both normalized to one gauge time, then the median
    second = tmp_path / "p2.sqlite"
    shutil.copy(gauged_store, second)
    combined = tmp_path / "c.sqlite"
    assert combine_stores([gauged_store, second], combined)["models"] == 2
    c, _ = _models(combined)
    assert all(len(v) == 2 for v in c.pass_reference_ms)
    target = float(c.reference_ms.median())
    n1, n2 = tmp_path / "n1.sqlite", tmp_path / "n2.sqlite"
    normalize_store(gauged_store, n1, target_ms=target)
    normalize_store(second, n2, target_ms=target)
    both = tmp_path / "nc.sqlite"
    combine_stores([n1, n2], both)
    b, _ = _models(both)
    raw, _ = _models(gauged_store)
    assert np.allclose(b.e2e_ms, (raw.e2e_ms * target / raw.reference_ms).loc[b.index])


def test_a_store_without_gauge_times_is_not_normalized(models, tmp_path):
    store = tmp_path / "p.sqlite"
    profile_models([models["small"]], store, **KW)
    r = main_cli("store", "normalize", store, "--out", tmp_path / "n.sqlite")
    assert r.returncode == 2 and "no reference time" in r.stderr
    assert not (tmp_path / "n.sqlite").exists()
    with pytest.raises(LatpredError, match="needs host LiteRT or ONNX Runtime with in-graph op"):
        profile_models([models["small"]], tmp_path / "q.sqlite", runs=3, warmup=1,
                       progress=False, op_timing="isolated", reference=models["gauge"])


def _onnx_cnn(path, width: int, size: int):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(width)
    init = [numpy_helper.from_array(rng.standard_normal((width, 3, 3, 3)).astype(np.float32), "w"),
            numpy_helper.from_array(
                rng.standard_normal((2 * width, width, 3, 3)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c2"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2 * width, 1, 1])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_onnxruntime_times_its_gauge_beside_every_model(tmp_path):
    (tmp_path / "m").mkdir()
    small = _onnx_cnn(tmp_path / "m" / "small.onnx", 8, 32)
    _onnx_cnn(tmp_path / "m" / "big.onnx", 32, 128)
    gauge = tmp_path / "gauge.onnx"
    shutil.copy(small, gauge)
    store = tmp_path / "o.sqlite"
    s = profile_models([tmp_path / "m"], store, backend="onnxruntime", runs=12, warmup=2,
                       progress=False, reference=gauge)
    assert (s.measured, s.failed) == (2, 0)
    m, _ = _models(store)
    assert (m.reference_ms > 0).all() and (m.reference_runs == m.e2e_runs).all()
    assert 0.6 < m.loc["small", "e2e_ms"] / m.loc["small", "reference_ms"] < 1.6
    assert m.loc["big", "e2e_ms"] > 2 * m.loc["big", "reference_ms"]
    out = tmp_path / "n.sqlite"
    assert main_cli("store", "normalize", store, "--out", out).returncode == 0
    # a gauge of another format than the measured models is refused before anything runs
    r = main_cli("profile", tmp_path / "m", "--backend", "onnxruntime", "--out",
                 tmp_path / "x.sqlite", "--reference", _fake_tflite(tmp_path))
    assert r.returncode == 2 and "must be a .onnx model" in r.stderr
    assert not (tmp_path / "x.sqlite").exists()


def _fake_tflite(tmp_path):
    path = tmp_path / "gauge.tflite"
    path.write_bytes(b"not read: the extension is refused first")
    return path
