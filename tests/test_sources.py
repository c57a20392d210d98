"""Model sources: NAS sampler constraints and determinism, real converter output read back by the
readers (categories, int8 dtypes, ONNX == TFLite numerically), and the tf2cv zoo build."""
from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter

import numpy as np
import pytest

from conftest import run_python
from latpred.errors import LatpredError
from latpred.sources import nas

SEEDS = range(6)
PER_SEED = 100
SMALL = 32          # input size for built test models: tiny, fast, same ops as 224


def _all_specs():
    return [nas.sample_spec(s, i) for s in SEEDS for i in range(PER_SEED)]


# -- sampler ---------------------------------------------------------------------------------------
def test_sampler_respects_the_space_over_many_seeds():
    types, kernels, groups = Counter(), Counter(), Counter()
    for spec in _all_specs():
        nas.validate_spec(spec)
        assert spec["input_shape"] == [224, 224, 3]
        assert len(spec["blocks"]) == 9
        assert 1200 <= spec["head"]["out_channels"] <= 1800
        channels = spec["stem"]["out_channels"]
        for i, b in enumerate(spec["blocks"]):
            types[b["type"]] += 1
            if b["type"] in ("conv", "dwsep", "bottleneck"):
                lo, hi = (8, 80) if i < 5 else (80, 400)
                assert lo <= b["out_channels"] <= hi
                kernels[b["kernel"]] += 1
            else:
                assert b["out_channels"] == channels      # pooling/split keep channels
            if b["type"] == "conv":
                g = b["groups"]
                groups[g] += 1
                assert g == 1 or (g % 4 == 0 and 4 <= g <= 64)
                assert channels % g == 0 and b["out_channels"] % g == 0
                assert g == 1 or channels // g >= 2          # grouped, not depthwise
            if b["type"] == "pool":
                assert b["kernel"] in (1, 3) and b["pool"] in ("avg", "max")
            if b["type"] == "split":
                assert b["stride"] == 1 and len(b["ops"]) == b["splits"] in (2, 3, 4)
            channels = b["out_channels"]
        strided = sum(b["stride"] == 2 for b in spec["blocks"])
        can_stride = sum(b["type"] != "split" for b in spec["blocks"])
        assert strided == min(4, can_stride)
    n = len(SEEDS) * PER_SEED * 9
    # Uniform block types: each near 1/5 of all blocks (binomial sd ~ 0.6 %).
    assert set(types) == set(nas.BLOCK_TYPES)
    assert all(abs(c / n - 0.2) < 0.03 for c in types.values()), types
    assert set(kernels) == {3, 5, 7}
    assert groups[1] > 0 and len([g for g in groups if g > 1]) >= 10, groups


def test_sampler_is_deterministic_and_index_stable():
    a = nas.sample_specs(6, seed=7)
    b = nas.sample_specs(6, seed=7)
    assert a == b
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    # Sample i of a seed does not depend on how many were drawn.
    assert nas.sample_specs(3, seed=7, start=3) == a[3:]
    assert nas.sample_specs(6, seed=8) != a
    assert [s["name"] for s in a[:2]] == ["nas_s7_0000", "nas_s7_0001"]


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s["blocks"].pop(), "9 blocks"),
    (lambda s: s["head"].update(out_channels=1100), "head channels"),
    (lambda s: s["blocks"][0].update(type="conv", kernel=3, groups=3, out_channels=9), "groups"),
    (lambda s: s["blocks"][0].update(type="dwsep", kernel=3, out_channels=81), "not in [8, 80]"),
    (lambda s: s["blocks"][0].update(type="pool", pool="avg", kernel=3, out_channels=40),
     "keep 32 channels"),
])
def test_validate_spec_rejects_out_of_space(mutate, message):
    spec = nas.sample_spec(0, 0)
    mutate(spec)
    with pytest.raises(LatpredError, match=re.escape(message)):
        nas.validate_spec(spec)


def test_load_spec_reports_bad_json_in_one_line(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(LatpredError) as err:
        nas.load_spec(bad)
    assert "\n" not in str(err.value)


def test_cli_rejects_bad_arguments_without_traceback(capsys, tmp_path):
    from latpred.cli import main
    assert main(["nas", "sample", "--count", "0", "--out", str(tmp_path)]) == 2
    assert main(["nas", "sample", "--count", "1", "--out", str(tmp_path),
                 "--precision", "int8", "--format", "onnx"]) == 2
    assert main(["zoo", "build", "--out", str(tmp_path), "--names", "resnet10,nosuchnet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("latpred: ") for line in err)
    assert "nosuchnet" in err[2]


def test_zoo_list_has_the_papers_real_world_models(capsys):
    from latpred.cli import main
    from latpred.sources.zoo import MANIFEST_PATH, REAL_WORLD_NAMES
    # The authors' comparison scripts name 104 models; the paper reports 102.
    assert len(REAL_WORLD_NAMES) == len(set(REAL_WORLD_NAMES)) == 104
    with open(MANIFEST_PATH, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == list(REAL_WORLD_NAMES)
    assert all(r["family"] and r["source"].startswith("imgclsmob tf2cv") for r in rows)
    assert all(r["status"] in ("built", "failed", "pending") for r in rows)
    assert all(r["reason"] for r in rows if r["status"] == "failed")
    assert main(["zoo", "list"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 105


# -- built NAS models ----------------------------------------------------------------------------
def _features(spec):
    blocks = spec["blocks"]
    return {
        "grouped": [b["groups"] for b in blocks if b["type"] == "conv" and b["groups"] > 1],
        "splits": sum(b["type"] == "split" for b in blocks),
        "se": sum(b["type"] == "bottleneck" and b["se"] for b in blocks),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One small architecture with a grouped conv, a split block and an SE block, built as fp32 and
    int8 .tflite and ONNX, plus a second fp32 build of the same spec elsewhere."""
    from latpred.sources.export import build_files
    spec = next(s for s in (nas.sample_spec(0, i, SMALL) for i in range(500))
                if all(_features(s).values()))
    out = tmp_path_factory.mktemp("nas")
    again = tmp_path_factory.mktemp("nas_again")
    files = {
        "fp32": build_files([spec], out, "fp32", "tflite", progress=False)[0],
        "int8": build_files([spec], out, "int8", "tflite", progress=False)[0],
        "onnx": build_files([spec], out, "fp32", "onnx", progress=False)[0],
        "again": build_files([spec], again, "fp32", "tflite", progress=False)[0],
    }
    return spec, out, files


def _categories(graph):
    return Counter(op.category for op in graph.ops)


@pytest.mark.parametrize("kind", ["fp32", "int8", "onnx"])
def test_built_model_has_the_specs_operations(built, kind):
    from latpred.readers import read_model
    spec, _, files = built
    want = _features(spec)
    graph = read_model(files[kind])
    cats = _categories(graph)
    grouped = [op.attrs["groups"] for op in graph.ops if op.category == "GroupedConv2D"]
    assert sorted(grouped) == sorted(want["grouped"])
    assert cats["Split"] == want["splits"]
    assert cats["Concat"] == want["splits"]
    # SE = Mean (global pool) + two FullyConnected (Dense); the head adds one Mean and one FC.
    assert cats["Mean"] == want["se"] + 1
    assert cats["FullyConnected"] == 2 * want["se"] + 1
    n_dw = sum({"dwsep": 1, "bottleneck": 1}.get(b["type"], 0) for b in spec["blocks"])
    assert cats["DepthwiseConv2D"] == n_dw
    n_pool = sum(b["type"] == "pool" for b in spec["blocks"])
    assert cats["Pooling"] == n_pool


def test_json_beside_model_rebuilds_the_same_file(built):
    spec, out, files = built
    saved = json.loads((out / f"{spec['name']}.json").read_text())
    assert saved == spec
    nas.validate_spec(saved)
    # The same spec built into another folder gives a byte-identical .tflite.
    assert files["fp32"].read_bytes() == files["again"].read_bytes()


def test_existing_files_are_not_rebuilt(built):
    from latpred.sources.export import build_files
    spec, out, files = built
    before = {k: files[k].stat().st_mtime_ns for k in ("fp32", "int8", "onnx")}
    build_files([spec], out, "fp32", "tflite", progress=False)
    build_files([spec], out, "int8", "tflite", progress=False)
    build_files([spec], out, "fp32", "onnx", progress=False)
    assert {k: files[k].stat().st_mtime_ns for k in before} == before
    assert not list(out.glob("*.tmp"))


def test_int8_file_is_full_integer(built):
    from ai_edge_litert.interpreter import Interpreter
    _, _, files = built
    itp = Interpreter(model_path=str(files["int8"]))
    itp.allocate_tensors()
    assert itp.get_input_details()[0]["dtype"] == np.int8
    assert itp.get_output_details()[0]["dtype"] == np.int8
    dtypes = Counter(np.dtype(t["dtype"]).name for t in itp.get_tensor_details())
    assert "float32" not in dtypes
    assert dtypes["int8"] > dtypes.get("int32", 0)          # int32 only for biases / shapes
    inp = itp.get_input_details()[0]
    itp.set_tensor(inp["index"], np.zeros(inp["shape"], np.int8))
    itp.invoke()
    assert itp.get_tensor(itp.get_output_details()[0]["index"]).shape == (1, 1000)


def test_onnx_and_tflite_compute_the_same_function(built):
    """Same architecture and weights: ONNX Runtime and LiteRT agree on a random input."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter
    _, _, files = built
    x = np.random.default_rng(0).uniform(-1, 1, (1, SMALL, SMALL, 3)).astype(np.float32)
    itp = Interpreter(model_path=str(files["fp32"]))
    itp.allocate_tensors()
    itp.set_tensor(itp.get_input_details()[0]["index"], x)
    itp.invoke()
    ref = itp.get_tensor(itp.get_output_details()[0]["index"])
    sess = ort.InferenceSession(str(files["onnx"]), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.transpose(0, 3, 1, 2)})[0]
    assert got.shape == ref.shape == (1, 1000)
    assert np.allclose(got, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())))


# -- real-world zoo ------------------------------------------------------------------------------
def test_zoo_build_grouped_model_and_record_failures(tmp_path, monkeypatch):
    """regnetx002 needs the NumPy-2 shim and has grouped convs (one CONV_2D each after the patch);
    a model whose build raises is recorded as failed with its reason, not dropped."""
    from latpred.readers import read_model
    from latpred.sources import zoo
    real = zoo.build_zoo_one

    def flaky(name, *rest):
        if name == "resnet10":
            raise RuntimeError("converter exploded")
        return real(name, *rest)

    monkeypatch.setattr(zoo, "build_zoo_one", flaky)
    results = zoo.build_zoo(tmp_path, ["regnetx002", "resnet10"], progress=False)
    (name, path, reason), (bad, bad_path, bad_reason) = results
    assert name == "regnetx002" and path is not None and reason == ""
    assert bad == "resnet10" and bad_path is None and "converter exploded" in bad_reason
    rows = {r["name"]: r for r in csv.DictReader(open(tmp_path / "manifest.csv"))}
    assert len(rows) == 104
    assert rows["regnetx002"]["status"] == "built" and rows["regnetx002"]["fp32_tflite"] == "built"
    assert rows["resnet10"]["status"] == "failed" and "converter exploded" in rows["resnet10"]["reason"]
    # A new folder's manifest starts pending: the reference run's statuses are not copied.
    assert rows["bagnet9"]["status"] == "pending" and rows["bagnet9"]["fp32_tflite"] == ""
    mtime = path.stat().st_mtime_ns
    again = zoo.build_zoo(tmp_path, ["regnetx002"], progress=False)
    assert again == [("regnetx002", path, "")] and path.stat().st_mtime_ns == mtime
    graph = read_model(path)
    grouped = [op for op in graph.ops if op.category == "GroupedConv2D"]
    # RegNetX-200MF: 13 blocks, one 3x3 grouped conv each (group width 8).
    assert len(grouped) == 13
    assert all(op.attrs["kernel_h"] == 3 for op in grouped)
    assert not [op for op in graph.ops if op.category == "Split"]
    assert graph.outputs and math.prod(graph.tensors[graph.outputs[0]].shape) == 1000


def test_importing_sources_and_commands_does_not_import_tensorflow():
    code = ("import sys, latpred.sources.nas, latpred.sources.export, latpred.sources.zoo, "
            "latpred.sources.keras_build, latpred.sources.compat, latpred.commands.nas, "
            "latpred.commands.zoo, argparse; sub = argparse.ArgumentParser().add_subparsers(); "
            "latpred.commands.nas.register(sub); latpred.commands.zoo.register(sub); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'tf_keras', 'tf2onnx', 'tf2cv')))")
    out = run_python("-c", code, check=True)
    assert out.stdout.strip() == "[]"
