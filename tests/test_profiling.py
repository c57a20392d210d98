"""Profiling: real LiteRT / ONNX Runtime measurements of tiny converter-made models, the crash-safe
store, the CLI, and the Android backend's parser (recorded real outputs) and control flow (stand-in
adb, tests/fixtures/android/fake_adb).

A test of the command line launches it for real (``run_cli``); its further invocations go through
the same entry point in this process (``main_cli``), which gives the same exit code and output."""
from __future__ import annotations

import json
import os
import sqlite3

import flatbuffers
import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, conv_stem, dw_residual, main_cli, run_cli, tflite_bytes, tiny_keras
from latpred.errors import LatpredError
from latpred.features import ALL_FEATURES
from latpred.profiling import profile_models
from latpred.profiling.adb import AdbBackend, parse_benchmark_output
from latpred.devices import core_config, device_keys, get_device, get_gpu, gpu_keys
from latpred.profiling.isolate import isolate_ops, load_model
from latpred.profiling.litert import HostWorker, run_count
from latpred.scenario import Scenario, parse_scenario
from latpred.store import ProfileStore
from latpred.readers import read_model

ANDROID = os.path.join(ROOT, "tests", "fixtures", "android")
README_OUT = os.path.join(ANDROID, "benchmark_model_tf_readme_mobilenet_quant.txt")
PHONE_LOG = os.path.join(ANDROID, "benchmark_model_multibranch_correctness.log")
FAKE_ADB = os.path.join(ANDROID, "fake_adb")


# --------------------------------------------------------------------------------------------------
# Real models: tf.keras -> TFLiteConverter (fp32 and full-integer int8), ONNX via onnx.helper

def _tiny_cnn(L, x0):
    x = dw_residual(L, conv_stem(L, x0, 8), 8)
    x = L.Concatenate()([L.Conv2D(4, 1)(x), L.Conv2D(4, 3, padding="same")(x)])
    x = L.MaxPool2D(2)(x)
    x = L.Reshape((-1, 8))(x)
    x = L.GlobalAveragePooling1D()(x)
    return L.Dense(10, activation="softmax")(x)


def _with_custom_op(content: bytes) -> bytes:
    """A real model whose first op is turned into a custom op no runtime has (cannot run)."""
    from ai_edge_litert import schema_py_generated as schema
    m = load_model(content)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = "LatpredNoSuchOp"
    code.version = 1
    m.operatorCodes.append(code)
    op = m.subgraphs[0].operators[0]
    op.opcodeIndex = len(m.operatorCodes) - 1
    op.builtinOptionsType, op.builtinOptions = 0, None
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _onnx_model(path: str) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(8, np.float32), "b")
    fw = numpy_helper.from_array(rng.standard_normal((10, 8)).astype(np.float32), "fw")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fw"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3, 32, 32])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 10])], [w, b, fw])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("profiling_models")
    good = root / "good"
    good.mkdir()
    keras = tiny_keras(_tiny_cnn)
    fp32 = tflite_bytes(keras)
    int8 = tflite_bytes(keras, int8=True)           # float input and output tensors
    (good / "tiny_fp32.tflite").write_bytes(fp32)
    (good / "tiny_int8.tflite").write_bytes(int8)
    bad = root / "bad"
    bad.mkdir()
    (bad / "custom_op.tflite").write_bytes(_with_custom_op(fp32))
    (bad / "not_a_model.tflite").write_bytes(b"this is not a flatbuffer at all")
    _onnx_model(str(root / "tiny.onnx"))
    return {"root": root, "good": good, "bad": bad, "fp32": good / "tiny_fp32.tflite",
            "int8": good / "tiny_int8.tflite", "custom": bad / "custom_op.tflite",
            "onnx": root / "tiny.onnx"}


@pytest.fixture(scope="module")
def profiled(models, tmp_path_factory):
    """One real profiling run (host, LiteRT, 1 core) over good and bad models."""
    store_path = tmp_path_factory.mktemp("store") / "profiles.db"
    summary = profile_models([models["good"], models["bad"]], store_path, runs=10, warmup=2,
                             progress=False, op_timing="isolated")
    return summary, store_path


# --------------------------------------------------------------------------------------------------
# Isolation

@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_isolated_single_op_models_keep_constants_and_quantization(models, which):
    from ai_edge_litert.interpreter import Interpreter
    content = models[which].read_bytes()
    graph = read_model(models[which])
    singles = isolate_ops(content)
    assert [s.type for s in singles] == [op.type for op in graph.ops]
    full = load_model(content).subgraphs[0]
    for single, op in zip(singles, graph.ops):
        sub = load_model(single.content).subgraphs[0]
        assert len(sub.operators) == 1
        acts = {t.name for t in graph.activation_inputs(op)}
        assert {sub.tensors[i].name.decode() for i in sub.inputs} == acts
        # Constants travel with their data: the single op runs without any input for them.
        it = Interpreter(model_content=single.content)
        it.allocate_tensors()
        assert len(it.get_input_details()) == len(acts)
        out_old = full.tensors[full.operators[op.index].outputs[0]]
        out_new = sub.tensors[sub.outputs[0]]
        if which == "int8" and out_old.quantization is not None and out_old.quantization.scale is not None:
            assert np.allclose(out_new.quantization.scale, out_old.quantization.scale)
            assert np.array_equal(out_new.quantization.zeroPoint, out_old.quantization.zeroPoint)
    if which == "int8":
        assert {"QUANTIZE", "DEQUANTIZE"} & {s.type for s in singles}


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_isolated_ops_compute_what_they_compute_inside_the_model(models, which):
    """Fed the activations the full model produced, each single-op model reproduces the op's
    output: weights, options and quantization were carried over intact."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from latpred.profiling.litert import _capture_activations, _fill_inputs
    content = models[which].read_bytes()
    values = _capture_activations(content, np.random.default_rng(1))
    assert values
    for single in isolate_ops(content):
        it = Interpreter(model_content=single.content, experimental_op_resolver_type=
                         OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
        _fill_inputs(it, np.random.default_rng(2), values)
        for d in it.get_input_details():      # really the captured tensors, not random stand-ins
            assert np.array_equal(it.get_tensor(d["index"]), values[d["name"]])
        it.invoke()
        out = it.get_output_details()[0]
        expected = values[out["name"]]
        got = it.get_tensor(out["index"])
        assert got.shape == expected.shape
        assert np.allclose(got.astype(np.float64), expected.astype(np.float64), rtol=1e-4,
                           atol=1e-5 if which == "fp32" else 1), single.type


def test_isolating_garbage_is_a_clear_error():
    with pytest.raises(LatpredError):
        isolate_ops(b"\x00" * 64)


# --------------------------------------------------------------------------------------------------
# Real host measurements into the store

def test_profile_stores_every_op_with_sane_latencies(models, profiled):
    summary, store_path = profiled
    assert (summary.measured, summary.failed) == (2, 2)
    with ProfileStore(store_path) as st:
        frame = st.frame()
        scen = st.scenarios()
        assert {parse_scenario(s).precision for s in scen} == {"fp32", "int8"}
        for name in ("fp32", "int8"):
            graph = read_model(models[name])
            rows = frame[frame.model == models[name].stem]
            assert len(rows) == len(graph.ops)                    # one row per op of the model
            assert list(rows.op_index) == list(range(len(graph.ops)))
            assert list(rows.category) == [op.category for op in graph.ops]
            assert (rows.latency_ms > 0).all() and (rows.runs >= 1).all()
            e2e = rows.e2e_ms.iloc[0]
            assert e2e > 0
            # Sum of isolated ops vs. the whole model: same work, within a loose factor
            # (per-invoke overheads, delegate partitioning and other jobs on this machine differ);
            # a unit slip (us vs ms) or ops timed empty would be off by far more.
            ratio = rows.latency_ms.sum() / e2e
            assert 0.1 < ratio < 10, f"{name}: sum of ops / e2e = {ratio:.2f}"
            conv = rows[rows.category == "Conv2D"].iloc[0]
            op = graph.ops[int(conv.op_index)]
            assert conv.flops > 0 and conv.input_c == graph.activation_inputs(op)[0].shape[-1]
        assert set(ALL_FEATURES) <= set(frame.columns)
        models_df = st.models()
        ok = models_df[models_df.status == "ok"]
        assert ok.cpu_model.notna().all() and (ok.threads == 1).all()
        assert (ok.n_ops == [len(read_model(models[n]).ops) for n in ("fp32", "int8")]).all()


def test_failures_are_stored_with_reasons(profiled):
    _, store_path = profiled
    with ProfileStore(store_path) as st:
        fails = st.failures().set_index("model")
    assert set(fails.index) == {"custom_op", "not_a_model"}
    assert "LatpredNoSuchOp" in fails.loc["custom_op", "reason"]        # the runtime's complaint
    assert "unreadable" in fails.loc["not_a_model", "reason"]


def test_rerun_skips_everything_stored(models, profiled):
    _, store_path = profiled
    again = profile_models([models["good"], models["bad"]], store_path, runs=10, warmup=2, op_timing="isolated",
                           progress=False)
    assert (again.measured, again.skipped, again.failed) == (0, 4, 0)


class _DyingConnection:
    """Proxy that dies between a model's row and its op rows, like a kill mid-commit."""

    def __init__(self, conn):
        self._conn = conn

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def __enter__(self):
        return self._conn.__enter__()

    def __exit__(self, *exc):
        return self._conn.__exit__(*exc)

    def executemany(self, *args):
        raise KeyboardInterrupt


def test_interrupted_run_resumes_without_duplicates(models, tmp_path, monkeypatch):
    store_path = tmp_path / "resume.db"
    real_add = ProfileStore.add_measurement
    calls = {"n": 0}

    def add_then_die(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            self.conn = _DyingConnection(self.conn)
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(ProfileStore, "add_measurement", add_then_die)
    with pytest.raises(KeyboardInterrupt):
        profile_models([models["good"]], store_path, runs=5, warmup=1, progress=False)
    monkeypatch.setattr(ProfileStore, "add_measurement", real_add)
    with ProfileStore(store_path) as st:
        assert len(st.models()) == 1                       # the model in progress left nothing
        first = st.models().model.iloc[0]
    resumed = profile_models([models["good"]], store_path, runs=5, warmup=1, progress=False)
    assert (resumed.measured, resumed.skipped) == (1, 1)
    with sqlite3.connect(store_path) as conn:
        dup = conn.execute("SELECT COUNT(*) FROM models GROUP BY model_hash, scenario "
                           "HAVING COUNT(*) > 1").fetchall()
        orphans = conn.execute("SELECT COUNT(*) FROM ops WHERE model_id NOT IN "
                               "(SELECT id FROM models)").fetchone()[0]
    assert dup == [] and orphans == 0
    with ProfileStore(store_path) as st:
        frame = st.frame()
    assert set(frame.model) == {"tiny_fp32", "tiny_int8"} and first in set(frame.model)
    for stem, path in (("tiny_fp32", models["fp32"]), ("tiny_int8", models["int8"])):
        assert (frame.model == stem).sum() == len(read_model(path).ops)


def test_onnxruntime_unfused_times_every_node(models, tmp_path):
    store_path = tmp_path / "ort.db"
    summary = profile_models([models["onnx"]], store_path, backend="onnxruntime", runs=10,
                             warmup=2, progress=False, op_timing="unfused")
    assert summary.measured == 1
    with ProfileStore(store_path) as st:
        scen = parse_scenario(st.scenarios()[0])
        frame = st.frame()
    assert scen.runtime == "onnxruntime" and scen.hardware == "1" and scen.precision == "fp32"
    assert "+opprof" not in scen.runtime_version
    graph = read_model(models["onnx"])
    assert list(frame.op_type) == [op.type for op in graph.ops]
    assert (frame.latency_ms > 0).all()
    assert frame.latency_ms.sum() < 5 * frame.e2e_ms.iloc[0]


def test_onnxruntime_opprof_times_the_optimized_graph(models, tmp_path):
    """Default ONNX Runtime op timing: its profiler inside runs of the optimized graph. The Relu
    that ONNX Runtime fuses into the Conv reads 0 ms (its time is in the Conv's), every node that
    runs has time, and the op times add up to about the end-to-end time of the same session setup."""
    store_path = tmp_path / "ort_opprof.db"
    summary = profile_models([models["onnx"]], store_path, backend="onnxruntime", runs=20,
                             warmup=3, progress=False)
    assert summary.measured == 1
    with ProfileStore(store_path) as st:
        scen = parse_scenario(st.scenarios()[0])
        frame = st.frame()
        facts = st.models().iloc[0]
    assert scen.runtime == "onnxruntime" and scen.runtime_version.endswith("+opprof")
    graph = read_model(models["onnx"])
    assert list(frame.op_type) == [op.type for op in graph.ops]
    lat = dict(zip(frame.op_type, frame.latency_ms))
    assert lat["Relu"] == 0.0 and lat["Conv"] > 0 and lat["MaxPool"] > 0 and lat["Gemm"] > 0
    ratio = frame.latency_ms.sum() / frame.e2e_ms.iloc[0]
    assert 0.5 < ratio < 1.5, ratio
    assert "ORT_ENABLE_ALL" in str(facts.to_dict())


def test_onnxruntime_refuses_isolated_and_litert_refuses_unfused(models, tmp_path):
    with pytest.raises(LatpredError, match="onnxruntime times ops with its profiler"):
        profile_models([models["onnx"]], tmp_path / "a.db", backend="onnxruntime",
                       op_timing="isolated", progress=False)
    with pytest.raises(LatpredError, match="unfused is for --backend onnxruntime"):
        profile_models([models["fp32"]], tmp_path / "b.db", op_timing="unfused", progress=False)


def test_worker_pins_only_itself():
    before = os.sched_getaffinity(0)
    cpus = sorted(before)
    with HostWorker(cpus[:1]) as w:
        info = w.call("ping", timeout=60)
    assert info["affinity"] == cpus[:1] and info["pid"] != os.getpid()
    assert os.sched_getaffinity(0) == before
    cfg = core_config("host", len(cpus))
    assert cfg.threads == len(cpus) and list(cfg.cpu_ids) == cpus


def test_run_count_cuts_runs_for_slow_models():
    assert run_count(1.0, 30, 2.0) == 30
    assert run_count(100.0, 30, 2.0) == 10
    assert run_count(5000.0, 30, 2.0) == 5       # never below MIN_RUNS


# --------------------------------------------------------------------------------------------------
# Store: generic rows (GPU kernels), import, export, CLI

def test_generic_kernel_rows_and_csv_import(tmp_path):
    st = ProfileStore(tmp_path / "gpu.db")
    scen = Scenario("pixel4", "gpu", "fp16", "tflite", "2.9").id
    st.add_measurement("m1", "hash1", scen, 5.0, 0.01, [
        {"op_index": 0, "op_type": "conv", "category": "Winograd", "latency_ms": 1.5,
         "kernel_ops": [0, 1], "features": {"flops": 100.0, "input_c": 3}},
        {"op_index": 1, "op_type": "add", "category": "ElementWise", "latency_ms": 0.2,
         "kernel_ops": "2"}], machine={"gpu": "adreno640"})
    frame = st.frame(scen)
    assert list(frame.category) == ["Winograd", "ElementWise"]
    assert list(frame.kernel_ops) == ["0,1", "2"]
    assert frame.flops.iloc[0] == 100.0 and np.isnan(frame.flops.iloc[1])
    csv = tmp_path / "kernels.csv"
    pd.DataFrame({"model": ["a", "a", "b"], "op_index": [0, 1, 0], "latency_ms": [1.0, 2.0, 3.0],
                  "category": ["Conv2D", "Mean", "Conv2D"], "e2e_ms": [3.5, 3.5, 3.1],
                  "input_c": [8, 8, 16]}).to_csv(csv, index=False)
    assert st.import_csv(csv, scen) == 2
    frame = st.frame(scen)
    assert len(frame) == 5 and frame[frame.model == "b"].input_c.iloc[0] == 16
    assert st.models(scen).set_index("model").loc["a", "e2e_ms"] == 3.5
    st.close()


def test_cli_export_list_and_errors(profiled, tmp_path):
    _, store_path = profiled
    out_csv = tmp_path / "ops.csv"
    res = run_cli("store", "export", store_path, out_csv)
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(out_csv)
    for col in ("model", "scenario", "op_index", "category", "latency_ms", "e2e_ms", "flops",
                "input_c"):
        assert col in df.columns
    assert set(df.model) == {"tiny_fp32", "tiny_int8"}
    scen = df.scenario.iloc[0]
    out_pq = tmp_path / "ops.parquet"
    assert main_cli("store", "export", store_path, out_pq, "--scenario", scen).returncode == 0
    assert set(pd.read_parquet(out_pq).scenario) == {scen}
    listing = run_cli("store", "list", store_path)
    assert listing.returncode == 0 and scen in listing.stdout and "custom_op" in listing.stdout
    for bad in (("store", "export", store_path, tmp_path / "x.txt"),
                ("store", "list", tmp_path / "missing.db"),
                ("profile", tmp_path / "nothing_here", "--out", tmp_path / "s.db"),
                ("profile", store_path, "--device", "nokia3310", "--out", tmp_path / "s.db")):
        res = main_cli(*bad)
        assert res.returncode == 2 and res.stderr.startswith("latpred: ")
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_store_combine_takes_the_median_of_real_passes(models, profiled, tmp_path):
    """A second real pass of the same models, then a combined store: its latencies are the median
    over passes (two passes: their mean; three with two equal: that value, not the mean), run
    counts add up, the per-pass end-to-end times are kept, and failures survive."""
    import shutil
    _, first = profiled
    second = tmp_path / "pass2.db"
    profile_models([models["good"]], second, runs=10, warmup=2, progress=False,
                   op_timing="isolated")
    third = tmp_path / "pass3.db"
    shutil.copy(second, third)
    with ProfileStore(first) as a, ProfileStore(second) as b:
        fa, fb = a.frame(), b.frame()
        ma, mb = a.models().set_index("model"), b.models().set_index("model")
    key = ["model", "scenario", "op_index"]
    pair = fa.merge(fb, on=key, suffixes=("_1", "_2"))
    assert len(pair) == len(fb) > 0
    assert (pair.latency_ms_1 != pair.latency_ms_2).any()     # two real passes differ

    two = tmp_path / "two.db"
    res = run_cli("store", "combine", two, first, second)
    assert res.returncode == 0, res.stderr
    with ProfileStore(two) as st:
        f2 = st.frame().merge(pair, on=key)
        m2 = st.models().set_index("model")
        fails = set(st.failures().model)
    assert np.allclose(f2.latency_ms, (f2.latency_ms_1 + f2.latency_ms_2) / 2)
    assert (f2.runs == f2.runs_1 + f2.runs_2).all()
    assert list(f2.flops.fillna(-1)) == list(f2.flops_1.fillna(-1))   # features carried over
    for name in ("tiny_fp32", "tiny_int8"):
        assert m2.loc[name, "passes"] == 2
        assert m2.loc[name, "pass_e2e_ms"] == [ma.loc[name, "e2e_ms"], mb.loc[name, "e2e_ms"]]
        assert np.isclose(m2.loc[name, "e2e_ms"], (ma.loc[name, "e2e_ms"] + mb.loc[name, "e2e_ms"]) / 2)
    assert fails == {"custom_op", "not_a_model"}

    three = tmp_path / "three.db"
    assert main_cli("store", "combine", three, first, second, third).returncode == 0
    with ProfileStore(three) as st:
        f3 = st.frame().merge(pair, on=key)
    assert np.allclose(f3.latency_ms, f3.latency_ms_2)

    for bad in (("store", "combine", two, first, second),              # would overwrite
                ("store", "combine", tmp_path / "one.db", first),      # nothing to combine
                ("store", "combine", tmp_path / "x.db", first, tmp_path / "missing.db")):
        res = main_cli(*bad)
        assert res.returncode == 2 and res.stderr.startswith("latpred: ")
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_cli_profile_one_model(models, tmp_path):
    store_path = tmp_path / "cli.db"
    res = run_cli("profile", models["fp32"], "--out", store_path, "--runs", "5", "--warmup", "1",
                  "--quiet")
    assert res.returncode == 0, res.stderr
    assert "1 measured" in res.stdout
    with ProfileStore(store_path) as st:
        assert st.scenarios() == [f"host/litert-{_litert()}+opprof/cpu1/fp32"]   # the default on one core

    # the same store given to --passes: it holds single-pass data, so it is not overwritten
    res = main_cli("profile", models["fp32"], "--out", store_path, "--passes", "2", "--quiet")
    assert res.returncode == 2 and res.stderr.startswith("latpred: ") and "single-pass" in res.stderr


def test_cli_profile_passes_measures_each_model_k_times_and_combines(models, tmp_path):
    out = tmp_path / "multi.sqlite"
    args = ("profile", models["fp32"], "--out", out, "--runs", "5", "--warmup", "1", "--quiet",
            "--passes", "2")
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    passes = [tmp_path / f"multi.pass{k}.sqlite" for k in (1, 2)]
    e2e = []
    for p in passes:
        with ProfileStore(p) as st:
            e2e.append(float(st.models().e2e_ms.iloc[0]))
    with ProfileStore(out) as st:
        m = st.models()
    assert len(m) == 1 and m.passes.iloc[0] == 2 and m.pass_e2e_ms.iloc[0] == e2e
    assert np.isclose(m.e2e_ms.iloc[0], np.mean(e2e))
    again = main_cli(*args)                 # resumes: both passes stored, nothing measured again
    assert again.returncode == 0 and again.stdout.count("0 measured, 1 already stored") == 2


def _litert():
    from importlib.metadata import version
    return version("ai-edge-litert")


# --------------------------------------------------------------------------------------------------
# Devices and scenarios

def test_device_catalog_has_table1_and_core_configs():
    gpus = {get_device(k).gpu for k in device_keys() if k != "host"}
    assert gpus == {"adreno640", "adreno616", "mali-g76", "powervr-ge8320", "apple-a12",
                    "apple-a10"}
    assert gpus <= set(gpu_keys())                        # every phone's GPU is a catalogued chip
    assert get_device("galaxys10").gpu_name == get_gpu("mali-g76").title == "ARM Mali-G76 MP12"
    assert get_device("host").gpu is None
    pixel = get_device("pixel4")
    assert {c: v.cores for c, v in pixel.clusters.items()} == {"L": 1, "M": 3, "S": 4}
    assert core_config(pixel, "1L3M").cpu_mask == "f0"
    assert core_config(pixel, "4S").cpu_mask == "f"
    cfg = core_config("galaxys10", "1m1l")
    assert cfg.label == "1L1M" and cfg.threads == 2 and sorted(cfg.cpu_ids) == [4, 6]
    for bad in ("2L", "1X", "L", "0S"):
        with pytest.raises(LatpredError):
            core_config(pixel, bad)
    with pytest.raises(LatpredError):
        core_config("mi8se", "1M")                       # no medium cluster on Snapdragon 710
    assert core_config("iphonexs", "2L").cpu_ids is None
    with pytest.raises(LatpredError):
        core_config("host", 10_000)


def test_scenario_ids_round_trip():
    s = Scenario("pixel4", "1L3M", "int8", "tflite", "2.9.1")
    assert s.id == "pixel4/tflite-2.9.1/cpu1L3M/int8" and parse_scenario(s.id) == s
    g = Scenario("galaxys10", "gpu", "fp16", "tflite", "2.9.1")
    assert parse_scenario(g.id).is_gpu
    with pytest.raises(LatpredError):
        parse_scenario("pixel4 cpu fp32")


# --------------------------------------------------------------------------------------------------
# Android: parser on recorded real outputs, control flow with the stand-in adb

def test_parse_tensorflow_readme_output():
    out = parse_benchmark_output(open(README_OUT).read())
    assert len(out.ops) == 31
    types = [o.type for o in out.ops]
    assert types.count("CONV_2D") == 15 and types.count("DEPTHWISE_CONV_2D") == 13
    assert types[-3:] == ["CONV_2D", "RESHAPE", "SOFTMAX"]
    assert out.ops[0].avg_ms == 4.269 and out.ops[0].name.endswith("Conv2d_0/Relu6")
    assert not out.op_index_known                      # old format: no ":index" on names
    assert out.e2e_avg_ms == pytest.approx(79.7609)
    assert out.e2e_std_ms == pytest.approx(1.929) and out.e2e_count == 50


def test_parse_phone_log_takes_regular_runs_not_init():
    out = parse_benchmark_output(open(PHONE_LOG).read())
    assert len(out.ops) == 18
    assert "ModifyGraphWithDelegate" not in {o.type for o in out.ops}
    assert out.op_index_known
    assert [o.node_index for o in out.ops[:4]] == [0, 1, 2, 96]
    assert out.ops[3].type == "TfLiteHexagonDelegate"
    assert out.ops[-1].name == "StatefulPartitionedCall:0" and out.ops[-1].node_index == 95
    assert sum(o.avg_ms for o in out.ops) == pytest.approx(22.045, abs=0.01)
    assert (out.e2e_avg_ms, out.e2e_std_ms, out.e2e_count) == (22.509, 1.262, 2)


def test_unparseable_table_row_is_a_clear_error():
    lines = open(README_OUT).read().splitlines()
    row = next(i for i, line in enumerate(lines) if "Predictions/Reshape]" in line)
    lines[row] = "\t                 RESHAPE\t   not-a-number\t[MobilenetV1/Predictions/Reshape]"
    with pytest.raises(LatpredError, match="cannot parse op profiling row"):
        parse_benchmark_output("\n".join(lines))


@pytest.fixture
def fake_phone(tmp_path, monkeypatch):
    log = tmp_path / "adb_calls.jsonl"
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_OUTPUT", README_OUT)
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF stand-in, never executed")
    return {"log": log, "binary": str(binary)}


def _calls(log):
    return [json.loads(line) for line in open(log)]


def test_adb_control_flow_with_stand_in_adb(models, fake_phone, tmp_path):
    store_path = tmp_path / "phone.db"
    # CPU, 1 large + 3 medium cores: the recorded profile is MobileNet's, not this model's ->
    # stored as a failure (never as if it were this model's ops).
    summary = profile_models([models["fp32"]], store_path, device="pixel4", cores="1L3M",
                             runs=7, warmup=2, progress=False, adb=FAKE_ADB,
                             benchmark_binary=fake_phone["binary"])
    assert summary.failed == 1 and "does not match" in summary.failures[0][1]
    shell = [c for c in _calls(fake_phone["log"]) if "shell" in c and
             any("benchmark_model --graph" in a for a in c)]
    cmd = shell[0][-1]
    assert cmd.startswith("taskset f0 ") and "--num_threads=4" in cmd
    assert "--enable_op_profiling=true" in cmd and "--num_runs=7" in cmd
    assert "--use_xnnpack=false" in cmd and "--use_gpu" not in cmd
    pushes = [c for c in _calls(fake_phone["log"]) if "push" in c]
    assert any(str(models["fp32"]) in c for c in pushes)
    # GPU: end-to-end only, parsed from the tool's timing lines.
    gpu = profile_models([models["fp32"]], store_path, device="pixel4", cores="gpu",
                         progress=False, adb=FAKE_ADB, benchmark_binary=fake_phone["binary"])
    assert gpu.measured == 1
    with ProfileStore(store_path) as st:
        row = st.models().set_index("status").loc["ok"]
    assert row.e2e_ms == pytest.approx(79.7609) and "/gpu/fp32" in row.scenario
    assert "--use_gpu=true" in _calls(fake_phone["log"])[-1][-1]


def test_adb_missing_or_no_device_is_one_clear_error(models, fake_phone, tmp_path, monkeypatch):
    dev = get_device("pixel4")
    with pytest.raises(LatpredError, match="adb not found"):
        AdbBackend(dev, fake_phone["binary"], adb=str(tmp_path / "no_adb_here")).connect()
    monkeypatch.setenv("FAKE_ADB_NO_DEVICE", "1")
    with pytest.raises(LatpredError, match="no Android device"):
        AdbBackend(dev, fake_phone["binary"], adb=FAKE_ADB).connect()
    with pytest.raises(LatpredError, match="benchmark-binary"):
        AdbBackend(dev, "", adb=FAKE_ADB).connect()
    with pytest.raises(LatpredError, match="not an Android"):
        AdbBackend(get_device("iphonexs"), fake_phone["binary"], adb=FAKE_ADB)


def test_drop_then_reprofile_measures_only_the_dropped(models, tmp_path):
    """`store drop` removes measurements (and their op rows) so the same command re-measures them."""
    from latpred.profiling import profile_models
    from latpred.store import ProfileStore
    paths = [models["fp32"], models["int8"]]
    store = tmp_path / "drop.sqlite"
    profile_models(paths, store, runs=3, warmup=1, progress=False)
    st = ProfileStore(store)
    names = list(st.models()["model"])
    n_ops_before = len(st.frame())
    victim = names[0]
    r = run_cli("store", "drop", store, "--models", victim)
    assert r.returncode == 0, r.stderr
    st = ProfileStore(store)
    assert list(st.models()["model"]) == names[1:]
    assert victim not in set(st.frame()["model"]) and len(st.frame()) < n_ops_before
    again = profile_models(paths, store, runs=3, warmup=1, progress=False)
    assert (again.measured, again.skipped) == (1, 1)
    assert sorted(ProfileStore(store).models()["model"]) == sorted(names)
    # selecting by CV: a threshold above every stored CV drops nothing, 0 drops everything
    assert ProfileStore(store).drop(min_e2e_cv=1e9) == 0
    assert ProfileStore(store).drop(min_e2e_cv=0.0) == len(names)
    r = main_cli("store", "drop", store)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
