"""GPU kernel deduction (paper §3.2, Algorithms 3.1/3.2, §4.1) on real converter-made .tflite models.

Models are built with tf.keras and converted with tf.lite.TFLiteConverter once per module."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from latpred.errors import LatpredError
from latpred.gpu import (deduce_kernels, gpu_training_rows, kernel_feature_rows, load_rules, predict_gpu,
                         resolve_gpu)
from latpred.gpu.selection import winograd_check
from latpred.ir import spatial
from latpred.readers import read_model

REPO = Path(__file__).resolve().parents[1]


def _convert(model, path: Path) -> Path:
    import tensorflow as tf
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def _resnet18(keras):
    """ResNet-18 topology (basic blocks, no batch norm: the converter would fold it into the convs)."""
    L = keras.layers
    x = inp = keras.Input((224, 224, 3), batch_size=1)
    x = L.Conv2D(64, 7, strides=2, padding="same", activation="relu")(x)
    x = L.MaxPooling2D(3, strides=2, padding="same")(x)
    for filters, stride in [(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)]:
        y = L.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(x)
        y = L.Conv2D(filters, 3, padding="same")(y)
        shortcut = x if stride == 1 else L.Conv2D(filters, 1, strides=stride)(x)
        x = L.Activation("relu")(L.Add()([shortcut, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(1000, activation="softmax")(x))


@pytest.fixture(scope="module")
def models(tmp_path_factory, mobilenetv2_tflite):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tf_keras as keras
    L = keras.layers
    d = tmp_path_factory.mktemp("gpu_models")
    out = {}
    # Algorithm 3.1 case 1: conv with fused ReLU, then an ADD that is the conv's only consumer.
    x = keras.Input((16, 16, 8), batch_size=1)
    out["conv_act_add"] = _convert(keras.Model(x, L.Add()([L.Conv2D(8, 3, padding="same", activation="relu")(x), x])),
                                   d / "conv_act_add.tflite")
    # Case 2: an op whose output has two consumers.
    x = keras.Input((16, 16, 8), batch_size=1)
    y = L.Conv2D(8, 3, padding="same")(x)
    out["two_consumers"] = _convert(
        keras.Model(x, L.Concatenate()([L.Activation("sigmoid")(y), L.Activation("tanh")(y)])), d / "two.tflite")
    # Case 3: an op whose output is a consumer's second input (SUB: not reordered by the delegate).
    x = keras.Input((16, 16, 8), batch_size=1)
    c = L.Conv2D(8, 1)(x)
    out["second_input"] = _convert(keras.Model(x, L.Subtract()([c, L.Conv2D(8, 3, padding="same")(c)])),
                                   d / "second.tflite")
    # Same shape with ADD: the delegate moves the latest-written input first, so it does link.
    x = keras.Input((16, 16, 8), batch_size=1)
    c = L.Conv2D(8, 1)(x)
    out["second_input_add"] = _convert(keras.Model(x, L.Add()([c, L.Conv2D(8, 3, padding="same")(c)])),
                                       d / "second_add.tflite")
    # Grouped convolutions: per-group channels 4/8 and 4/4 run on the GPU, 16/15 do not.
    x = keras.Input((16, 16, 16), batch_size=1)
    y = L.Conv2D(32, 3, padding="same", groups=4, activation="relu")(x)
    y = L.Conv2D(32, 3, padding="same", groups=8)(y)
    out["grouped"] = _convert(keras.Model(x, L.Conv2D(30, 3, padding="same", groups=2)(y)), d / "grouped.tflite")
    out["resnet18"] = _convert(_resnet18(keras), d / "resnet18.tflite")
    out["mobilenetv2"] = Path(mobilenetv2_tflite)      # converted once per session (conftest)
    return out


@pytest.fixture(scope="module")
def graphs(models):
    return {k: read_model(p) for k, p in models.items()}


# ---- rules and catalog ---------------------------------------------------------------------------
def test_catalog_resolves_table1_gpus_and_aliases():
    fam = {g: resolve_gpu(g).family for g in
           ["adreno640", "adreno616", "adreno630", "adreno612", "mali-g76", "powervr-ge8320",
            "apple-a12", "apple-a10"]}
    assert fam == {"adreno640": "adreno6xx", "adreno616": "adreno6xx", "adreno630": "adreno6xx",
                   "adreno612": "adreno6xx", "mali-g76": "mali", "powervr-ge8320": "powervr",
                   "apple-a12": "apple", "apple-a10": "apple"}
    assert resolve_gpu("apple-a10").api == "metal" and resolve_gpu("Mali G76").name == "mali-g76"
    # Phones resolve through the device catalog, by key, name or SoC.
    assert resolve_gpu("pixel4").name == "adreno640"
    assert resolve_gpu("Galaxy_S10").name == "mali-g76"
    assert resolve_gpu("Xiaomi Mi 8 SE").name == resolve_gpu("snapdragon710").name == "adreno616"
    assert (resolve_gpu("adreno6xx").name, resolve_gpu("generic").family) == ("adreno6xx", "generic")
    with pytest.raises(LatpredError, match="unknown GPU 'geforce'; known GPUs: adreno612, .*"
                                           "phones: pixel4, .*families: adreno, "):
        resolve_gpu("geforce")
    with pytest.raises(LatpredError, match="no kernel rules for TFLite version '1.0'"):
        load_rules("1.0")


def test_every_rule_file_cites_tflite_source():
    rules = load_rules()
    assert rules.version == "2.10"
    for section in ("merge_nodes", "linkable", "fused_activation", "tflite_to_delegate", "graph_transforms"):
        assert "tensorflow/lite/delegates/gpu" in json.dumps(rules.fusion[section]), section
    assert "winograd_util.cc" in json.dumps(rules.selection["winograd"])
    assert "gpu_compatibility.cc" in rules.support["source"]


# ---- Algorithm 3.1 worked cases ------------------------------------------------------------------
def test_conv_activation_add_fuse_into_one_kernel(graphs):
    g = graphs["conv_act_add"]
    assert [op.type for op in g.ops] == ["CONV_2D", "ADD"] and g.ops[0].attrs["activation"] == "RELU"
    kg = deduce_kernels(g, "mali-g76")
    assert [(k.kernel, k.ops) for k in kg.kernels] == [("Conv2D", [0, 1])]
    assert kg.kernels[0].merged == ["RELU", "ADD"]
    # Without fusion the delegate runs conv, its split-off ReLU and the add: three kernels.
    nofuse = deduce_kernels(g, "mali-g76", fusion=False)
    assert [k.kernel for k in nofuse.kernels] == ["Conv2D", "RELU", "ADD"]


def test_output_with_two_consumers_is_not_fused(graphs):
    g = graphs["two_consumers"]
    kg = deduce_kernels(g, "adreno640")
    assert [k.kernel for k in kg.kernels] == ["Conv2D", "LOGISTIC", "TANH", "CONCATENATION"]
    assert all(len(k.ops) == 1 for k in kg.kernels)


def test_output_as_second_input_is_not_fused(graphs):
    g = graphs["second_input"]
    sub = next(op for op in g.ops if op.type == "SUB")
    conv3 = g.producer(sub.inputs[1])
    assert g.ops[conv3].attrs["kernel_h"] == 3          # the 3x3 conv feeds SUB's second input
    kg = deduce_kernels(g, "mali-g76")
    assert len(kg.kernels) == 3 and kg.kernel_of(sub.index).ops == [sub.index]


def test_associative_add_is_reordered_then_fused(graphs):
    # Paper line 14 would refuse (tensor index 1); the delegate swaps ADD inputs first.
    g = graphs["second_input_add"]
    add = next(op for op in g.ops if op.type == "ADD")
    conv3 = g.producer(add.inputs[1])
    assert g.ops[conv3].attrs["kernel_h"] == 3
    kg = deduce_kernels(g, "mali-g76")
    assert len(kg.kernels) == 2 and kg.kernel_of(add.index).ops == sorted([conv3, add.index])


# ---- Algorithm 3.2 --------------------------------------------------------------------------------
def test_table2_winograd_on_resnet_convs(graphs):
    g = graphs["resnet18"]
    want = {(64, 56): (16, 16, 196), (128, 28): (32, 32, 49), (256, 14): (64, 64, 16)}
    seen = {}
    for op in g.ops:
        if op.type != "CONV_2D" or op.attrs["kernel_h"] != 3 or op.attrs["stride_h"] != 1:
            continue
        cin = g.activation_inputs(op)[0].shape[-1]
        oh, _, cout = spatial(g.tensors[op.outputs[0]].shape, g.layout)
        if cin == cout and (cin, oh) in want:
            verdict = {gpu: winograd_check(g, op, resolve_gpu(gpu), load_rules())
                       for gpu in ("mali-g76", "adreno640", "adreno616", "powervr-ge8320")}
            c = verdict["mali-g76"]
            assert (c["src_depth"], c["dst_depth"], c["total_tiles"]) == want[(cin, oh)]
            seen[(cin, oh)] = tuple(verdict[k]["winograd"] for k in verdict)
    assert seen == {(64, 56): (True, False, False, True),       # Table 2 (1): Mali yes, Adreno no
                    (128, 28): (True, False, False, True),      # (2): Mali yes, Adreno 6xx no (tiles)
                    (256, 14): (False, False, False, False)}    # (3): too few tiles everywhere


def test_resnet18_kernel_counts(graphs):
    """32 ops: 20 convs (17 3x3/7x7 + 3 1x1 shortcuts) + max-pool + 8 ADD + MEAN + FC + SOFTMAX.
    Every ADD links into the block's second conv (ReLU fused in the converter and merged by the
    delegate): 32 - 8 = 24 kernels. Unfused, the 17 ReLUs become kernels of their own: 32 + 17 = 49.
    Winograd: the 4 convs 64->64 @56x56 and the 3 stride-1 128->128 @28x28 convs on Mali/PowerVR;
    none on Adreno (channels < 128 or too few tiles) and none at 14x14 or 7x7."""
    g = graphs["resnet18"]
    assert len(g.ops) == 32
    mali = deduce_kernels(g, "mali-g76")
    assert len(mali.kernels) == 24 and mali.count("Winograd") == 7 and mali.count("ADD") == 0
    assert sum(k.dispatches for k in mali.kernels) == 24 + 2 * 7
    assert len(deduce_kernels(g, "mali-g76", fusion=False).kernels) == 49
    assert deduce_kernels(g, "pixel4").count("Winograd") == 0
    assert deduce_kernels(g, "powervr-ge8320").count("Winograd") == 7
    assert deduce_kernels(g, "mali-g76", selection=False).count("Winograd") == 0
    assert mali.cpu_fallback_ops == []


def test_mobilenetv2_kernel_counts(graphs):
    """65 ops: 52 convs (35 carry a fused ReLU6) + 10 residual ADDs + MEAN + FC + SOFTMAX. The
    delegate splits the 35 activations off (100 nodes) and merges them back plus each ADD into its
    projection conv: 65 - 10 = 55 kernels, a 45 % reduction. No 3x3 stride-1 full conv: no Winograd."""
    g = graphs["mobilenetv2"]
    types = Counter(op.type for op in g.ops)
    assert len(g.ops) == 65 and types["ADD"] == 10
    n_act = sum(1 for op in g.ops if op.attrs.get("activation", "NONE") != "NONE")
    assert n_act == 35
    kg = deduce_kernels(g, "mali-g76")
    assert len(kg.kernels) == 55 and kg.count("ADD") == 0 and kg.count("Winograd") == 0
    assert kg.count("DepthwiseConv2D") == 17
    assert len(deduce_kernels(g, "mali-g76", fusion=False).kernels) == 65 + n_act


def test_grouped_conv_selection_and_cpu_fallback(graphs):
    g = graphs["grouped"]
    assert [op.attrs["groups"] for op in g.ops] == [4, 8, 2]
    kg = deduce_kernels(g, "mali-g76")
    assert [k.kernel for k in kg.kernels] == ["GroupedConv2D", "GroupedConv2D"]
    assert kg.cpu_fallback_ops == [2]      # 32->30 in 2 groups: 15 output channels per group


def test_onnx_graph_is_refused(graphs):
    g = graphs["conv_act_add"]
    g2 = type(g)(fmt="onnx", layout="NCHW", tensors=g.tensors, ops=g.ops, inputs=g.inputs, outputs=g.outputs)
    with pytest.raises(LatpredError, match="needs a .tflite model"):
        deduce_kernels(g2, "mali-g76")


# ---- CLI ------------------------------------------------------------------------------------------
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "latpred", *args], cwd=REPO, capture_output=True, text=True)


def test_cli_json_and_errors(models):
    from conftest import main_cli      # the same entry point in this process, after a real launch
    r = _cli("kernels", str(models["conv_act_add"]), "--gpu", "pixel4", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["gpu"] == "adreno640" and d["kernels"] == [{"kernel": "Conv2D", "ops": [0, 1]}]
    assert d["cpu_fallback_ops"] == []
    r = main_cli("kernels", str(models["grouped"]), "--gpu", "mali-g76", "--no-fusion")
    assert r.returncode == 0 and "CPU fallback: 2 CONV_2D" in r.stdout
    for bad in (["--gpu", "nope"], ["--gpu", "mali-g76", "--tflite-version", "9.9"]):
        r = main_cli("kernels", str(models["grouped"]), *bad)
        assert r.returncode == 2 and r.stderr.startswith("latpred: ") and "Traceback" not in r.stderr
    r = main_cli("kernels", str(models["grouped"]), "--gpu", "nope")
    assert r.stderr.count("\n") == 1 and "adreno640" in r.stderr and "galaxys10" in r.stderr
    # A chip outside Table 1, of the same family as pixel4's, gets the same kernels.
    a630 = json.loads(main_cli("kernels", str(models["conv_act_add"]), "--gpu", "adreno630",
                               "--json").stdout)
    assert a630["family"] == "adreno6xx" and a630["kernels"] == d["kernels"]


# ---- GPU predictors: SYNTHETIC data only (tests the training path; never an accuracy figure) ------
def test_gpu_training_rows_and_prediction_on_synthetic_data(graphs, models):
    import pandas as pd
    g = graphs["resnet18"]
    rng = np.random.default_rng(0)
    rows = []
    for gpu in ("mali-g76",):
        kg = deduce_kernels(g, gpu)
        feats = kernel_feature_rows(g, kg)
        # SYNTHETIC latencies: Winograd kernels cost 40% of a direct conv of the same MACs.
        for rep in range(3):
            lat = [(0.4 if cat == "Winograd" else 1.0) * (f.get("flops", 0.0) * 1e-8 + f.get("input_size", 0.0) * 1e-6)
                   * (1 + 0.01 * rng.standard_normal()) + 0.01 for cat, f in feats]
            rows += gpu_training_rows(g, kg, lat, model=f"SYNTHETIC-resnet18-{rep}", scenario="SYNTHETIC/tflite-2.10/gpu-mali-g76/fp16",
                                      e2e_ms=sum(lat) + 1.0)
    df = pd.DataFrame(rows)
    assert {"Conv2D", "Winograd"} <= set(df["category"])          # separate predictor keys
    assert df.groupby("category").size()["Winograd"] == 3 * 7
    from latpred.predictors import LatencyPredictor
    pred = LatencyPredictor("lasso").fit(df)
    assert {"Conv2D", "Winograd"} <= set(pred.categories)
    assert pred.overhead_ms == pytest.approx(1.0)
    mali = predict_gpu(pred, g, "mali-g76")
    adreno = predict_gpu(pred, g, "adreno640")
    assert len(mali.kernels_ms) == 24 and mali.e2e_ms == pytest.approx(sum(mali.kernels_ms) + pred.overhead_ms)
    assert mali.by_category["Winograd"] > 0 and "Winograd" not in adreno.by_category
    # Same convs as direct kernels on Adreno: predicted slower under the synthetic Winograd discount.
    assert adreno.e2e_ms > mali.e2e_ms
    with pytest.raises(LatpredError, match="kernel latencies"):
        gpu_training_rows(g, deduce_kernels(g, "mali-g76"), [1.0], "m", "s", 1.0)
    # Through `latpred predict`, a GPU bundle takes the kernel route (fusion + selection of the
    # scenario's GPU), not one row per op; a GPU the scenario does not name comes from --gpu.
    import json
    from conftest import main_cli, run_cli
    bundle = models["resnet18"].parent / "mali.latpred"
    pred.save(bundle)
    out = run_cli("predict", bundle, models["resnet18"], "--json")
    assert out.returncode == 0, out.stderr
    (res,) = json.loads(out.stdout)
    assert [op["type"] for op in res["ops"]] == [k.kernel for k in deduce_kernels(g, "mali-g76").kernels]
    assert len(res["ops"]) < len(g.ops) and res["latency_ms"] == pytest.approx(mali.e2e_ms, rel=1e-9)
    generic = df.assign(scenario="SYNTHETIC/tflite-2.10/gpu/fp16")
    LatencyPredictor("lasso").fit(generic).save(bundle)
    out = main_cli("predict", bundle, models["resnet18"])
    assert out.returncode == 2 and "--gpu" in out.stderr and out.stderr.count("\n") == 1
    out = main_cli("predict", bundle, models["resnet18"], "--gpu", "adreno640", "--json")
    assert json.loads(out.stdout)[0]["latency_ms"] == pytest.approx(adreno.e2e_ms, rel=1e-9)
