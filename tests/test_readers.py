"""Foundation: .tflite and ONNX readers, categories, Table 3 features, totals, CLI, bad input.

Every model here is made by a real converter/exporter (TFLite converter, torch.onnx) and checked
against the real runtimes (LiteRT interpreter, ONNX Runtime)."""
from __future__ import annotations

import json
import logging
import os
import random

import numpy as np
import pytest

from conftest import main_cli, run_cli, tiny_keras, write_tflite
from latpred import categories
from latpred.errors import LatpredError
from latpred.features import FEATURES, op_features, op_macs
from latpred.readers import read_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _mixed_cnn(L, x_in):
    """A small CNN touching every category of Table 3 (on a 32x32x16 input)."""
    import tensorflow as tf
    x = L.Conv2D(32, 3, padding="same", activation="relu")(x_in)           # Conv2D + fused ReLU
    x = L.Conv2D(32, 3, groups=4, padding="same")(x)                       # GroupedConv2D
    x = L.DepthwiseConv2D(5, strides=2, padding="same")(x)                 # DepthwiseConv2D
    a, b = L.Lambda(lambda t: tf.split(t, 2, axis=-1))(x)                  # Split
    x = L.Concatenate()([L.Lambda(lambda t: t * 2.0)(a), L.ReLU(6.0)(b)])  # ElementWise, Concat
    x = L.ZeroPadding2D(1)(x)                                              # Padding
    x = L.MaxPool2D(3, 2)(x)                                               # Pooling
    y = L.AveragePooling2D(2, 2, padding="same")(x)
    x = L.Add()([L.Conv2D(32, 1)(x), L.Conv2D(32, 1)(L.UpSampling2D(2)(y))[:, :x.shape[1], :x.shape[2], :]])
    x = L.GlobalAveragePooling2D()(x)                                      # Mean
    return L.Dense(10, activation="softmax")(x)                            # FullyConnected


@pytest.fixture(scope="module")
def tflite_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("tflite")
    m = tiny_keras(_mixed_cnn, (32, 32, 16))
    paths = {}
    for name, int8 in (("mixed_fp32", False), ("mixed_int8", True)):
        # int8: input and output tensors int8 too
        p = write_tflite(m, d / f"{name}.tflite", int8=int8, int8_io=True, calibration=4)
        paths[name] = str(p)
    return paths


@pytest.fixture(scope="module")
def mobilenetv2(mobilenetv2_tflite):
    return mobilenetv2_tflite        # Keras' MobileNetV2, converted once per session (conftest)


def _torch_model():
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 3, 2, 1)
            self.bn = nn.BatchNorm2d(16)
            self.grouped = nn.Conv2d(16, 32, 3, 1, 1, groups=4)
            self.dw = nn.Conv2d(32, 32, 5, 1, 2, groups=32)
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            x = torch.relu(self.bn(self.stem(x)))
            x = self.dw(self.grouped(x))
            a, b = torch.split(x, 16, dim=1)
            x = torch.cat([a * 2, torch.sigmoid(b)], 1)
            x = nn.functional.max_pool2d(nn.functional.pad(x, (1, 1, 1, 1)), 3, 2)
            x = nn.functional.avg_pool2d(x, 2)
            return self.fc(x.mean((2, 3)))

    return Net().train(False)


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    import torch
    d = tmp_path_factory.mktemp("onnx")
    m = _torch_model()
    x = torch.randn(1, 3, 32, 32)
    fixed, dyn = d / "small.onnx", d / "small_dyn.onnx"
    torch.onnx.export(m, (x,), str(fixed), dynamo=False, opset_version=17)
    torch.onnx.export(m, (x,), str(dyn), dynamo=False, opset_version=17, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
    return {"fixed": str(fixed), "dynamic": str(dyn)}


# -- .tflite -------------------------------------------------------------------------------------

def _interpreter_ops(path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    # Without the default XNNPACK delegate, whose delegate nodes would be listed as extra ops.
    it = Interpreter(model_path=path,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in it.get_tensor_details()}
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in it.get_tensor_details()}
    return it._get_ops_details(), shapes, dtypes


@pytest.mark.parametrize("name", ["mixed_fp32", "mixed_int8"])
def test_tflite_ops_match_interpreter(tflite_models, name):
    path = tflite_models[name]
    g = read_model(path)
    ops, shapes, dtypes = _interpreter_ops(path)
    assert len(g.ops) == len(ops) > 10
    for op, ref in zip(g.ops, ops):
        assert op.type == ref["op_name"]
        assert op.inputs == [int(i) for i in ref["inputs"]]
        assert op.outputs == [int(i) for i in ref["outputs"]]
        for t in op.outputs:
            assert g.tensors[t].shape == shapes[t]
            assert g.tensors[t].dtype == dtypes[t]
    # The networkx view has one edge per produced-and-consumed tensor.
    edges = sum(1 for op in g.ops for t in op.inputs if t >= 0 and g.producer(t) is not None)
    assert g.nx.number_of_edges() == edges
    assert g.nx.number_of_nodes() == len(g.ops)


def test_tflite_categories_and_attrs(tflite_models):
    g = read_model(tflite_models["mixed_fp32"])
    cats = [op.category for op in g.ops]
    for cat in (categories.CONV2D, categories.GROUPED_CONV2D, categories.DEPTHWISE_CONV2D,
                categories.SPLIT, categories.CONCAT, categories.PADDING, categories.POOLING,
                categories.MEAN, categories.FULLY_CONNECTED, categories.ELEMENTWISE):
        assert cat in cats, f"{cat} missing from {cats}"
    grouped = next(op for op in g.ops if op.category == categories.GROUPED_CONV2D)
    assert grouped.type == "CONV_2D" and grouped.attrs["groups"] == 4
    # filter [O, KH, KW, I/groups]: weights are constants, the activation is not
    assert [t.shape for t in g.constant_inputs(grouped)][0] == (32, 3, 3, 8)
    assert len(g.activation_inputs(grouped)) == 1
    first = g.ops[0]
    assert first.category == categories.CONV2D and first.attrs["activation"] == "RELU"
    dw = next(op for op in g.ops if op.category == categories.DEPTHWISE_CONV2D)
    assert (dw.attrs["kernel_h"], dw.attrs["stride_h"]) == (5, 2)
    pad = next(op for op in g.ops if op.category == categories.PADDING)
    assert pad.attrs["pads"] == [[0, 0], [1, 1], [1, 1], [0, 0]]
    mean = next(op for op in g.ops if op.category == categories.MEAN)
    assert mean.attrs["axes"] == [1, 2]
    split = next(op for op in g.ops if op.category == categories.SPLIT)
    assert split.attrs["num_splits"] == 2 and split.attrs["axis"] == 3


def test_tflite_int8_is_int8(tflite_models):
    g = read_model(tflite_models["mixed_int8"])
    convs = [op for op in g.ops if op.category in categories.CONV_CATEGORIES]
    assert convs and all(g.tensors[op.outputs[0]].dtype == "int8" for op in convs)
    assert all(g.tensors[op.outputs[0]].quantization is not None for op in convs)
    fp = read_model(tflite_models["mixed_fp32"])
    assert [op.category for op in convs] == [op.category for op in fp.ops
                                             if op.category in categories.CONV_CATEGORIES]


def test_features_by_hand(tflite_models):
    g = read_model(tflite_models["mixed_fp32"])
    grouped = next(op for op in g.ops if op.category == categories.GROUPED_CONV2D)
    f = op_features(g, grouped)
    assert tuple(f) == FEATURES[categories.GROUPED_CONV2D]
    # 32x32x32 -> 32x32x32, 3x3, 4 groups: MACs = 32*32*32 * 3*3 * 32/4
    assert f["flops"] == 32 * 32 * 32 * 9 * 8 == op_macs(g, grouped)
    assert (f["input_hw"], f["input_c"], f["output_hw"], f["filters"], f["groups"]) == (32, 32, 32, 32, 4)
    assert f["input_size"] == f["output_size"] == 32 * 32 * 32
    assert f["kernel_size"] == 32 * 3 * 3 * 8
    dw = next(op for op in g.ops if op.category == categories.DEPTHWISE_CONV2D)
    fd = op_features(g, dw)
    assert fd["output_hw"] == 16 and fd["flops"] == 16 * 16 * 32 * 25
    fc = next(op for op in g.ops if op.category == categories.FULLY_CONNECTED)
    ff = op_features(g, fc)
    # the converter drops an all-zero bias, so the parameters are the 32x10 weights (+ bias if kept)
    bias = sum(t.num_elements for t in g.constant_inputs(fc) if len(t.shape) == 1)
    assert (ff["input_c"], ff["filters"], ff["flops"], ff["param_size"]) == (32, 10, 320, 320 + bias)
    pad = next(op for op in g.ops if op.category == categories.PADDING)
    fp = op_features(g, pad)
    assert fp["pad_size"] == (18 * 18 - 16 * 16) * 32


def test_mobilenetv2_macs_params_memory(mobilenetv2):
    g = read_model(mobilenetv2)
    macs = sum(op_macs(g, op) for op in g.ops)
    assert abs(macs - 300e6) / 300e6 < 0.02          # MobileNetV2 at 224: ~300 M MACs
    assert abs(g.params - 3.5e6) / 3.5e6 < 0.02      # ~3.5 M parameters
    counts = {c: sum(op.category == c for op in g.ops) for c in categories.CATEGORIES}
    assert counts[categories.DEPTHWISE_CONV2D] == 17 and counts[categories.CONV2D] == 35
    # peak activations: the first stride-2 depthwise conv, 112x112x96 in and 56x56x96 out, fp32
    assert g.peak_activation_bytes() == (112 * 112 * 96 + 56 * 56 * 96) * 4


def test_peak_activation_by_hand(tmp_path):
    import tensorflow as tf
    L = tf.keras.layers
    x_in = tf.keras.Input((8, 8, 4), batch_size=1)
    a = L.Conv2D(16, 1)(x_in)           # 8x8x16
    b = L.Conv2D(8, 1)(a)               # 8x8x8 ; a still live (used by the add)
    c = L.Conv2D(16, 1)(b)
    out = L.Add()([a, c])
    p = tmp_path / "chain.tflite"
    write_tflite(tf.keras.Model(x_in, out), p)
    g = read_model(p)
    e = 4 * 64  # bytes per channel of an 8x8 fp32 map
    # at the add: a (16), c (16) and the sum (16) are live; the input and b have died
    assert g.peak_activation_bytes() == e * (16 + 16 + 16)


def test_unknown_op_is_other_with_warning(tmp_path, caplog):
    import tensorflow as tf
    x_in = tf.keras.Input((16,), batch_size=1)
    y = tf.keras.layers.Lambda(lambda t: tf.math.cumsum(t, axis=-1))(x_in)
    p = tmp_path / "cumsum.tflite"
    write_tflite(tf.keras.Model(x_in, y), p)
    with caplog.at_level(logging.WARNING):
        g = read_model(p)
    assert [op.type for op in g.ops] == ["CUMSUM"]
    assert g.ops[0].category == categories.OTHER
    assert "CUMSUM" in caplog.text


# -- ONNX ----------------------------------------------------------------------------------------

def test_onnx_reader(onnx_models):
    import onnxruntime as ort
    g = read_model(onnx_models["fixed"])
    assert g.format == "onnx" and g.layout == "NCHW"
    cats = [op.category for op in g.ops]
    assert cats[:3] == [categories.CONV2D, categories.ELEMENTWISE, categories.GROUPED_CONV2D]
    for cat in (categories.DEPTHWISE_CONV2D, categories.SPLIT, categories.CONCAT,
                categories.PADDING, categories.POOLING, categories.MEAN,
                categories.FULLY_CONNECTED):
        assert cat in cats
    # the exporter's shape arithmetic for Pad is folded away: no shape-only ops remain
    assert not {"Shape", "ConstantOfShape", "Slice", "Cast"} & {op.type for op in g.ops}
    sess = ort.InferenceSession(onnx_models["fixed"], providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, 3, 32, 32), np.float32)})
    assert g.tensors[g.outputs[0]].shape == y.shape
    grouped = next(op for op in g.ops if op.category == categories.GROUPED_CONV2D)
    assert op_macs(g, grouped) == 16 * 16 * 32 * 9 * (16 // 4)
    pool = next(op for op in g.ops if op.type == "MaxPool")
    assert g.activation_inputs(pool)[0].shape == (1, 32, 18, 18)
    fc = next(op for op in g.ops if op.category == categories.FULLY_CONNECTED)
    assert (fc.attrs["in_features"], fc.attrs["out_features"]) == (32, 10)


def test_onnx_same_features_as_tflite_layout_free(onnx_models):
    """NCHW features equal what the same op would give in NHWC: (H, W, C) come from the layout."""
    g = read_model(onnx_models["fixed"])
    dw = next(op for op in g.ops if op.category == categories.DEPTHWISE_CONV2D)
    f = op_features(g, dw)
    assert (f["input_hw"], f["input_c"], f["kernel_hw"], f["filters"]) == (16, 32, 5, 32)


def test_onnx_symbolic_input_needs_shape(onnx_models):
    with pytest.raises(LatpredError, match="--input-shape"):
        read_model(onnx_models["dynamic"])
    g = read_model(onnx_models["dynamic"], "1,3,32,32")
    assert g.tensors[g.inputs[0]].shape == (1, 3, 32, 32)
    assert len(g.ops) == len(read_model(onnx_models["fixed"]).ops)
    with pytest.raises(LatpredError, match="disagrees"):
        read_model(onnx_models["dynamic"], "1,4,32,32")


# -- CLI -----------------------------------------------------------------------------------------

def test_inspect_json(tflite_models, onnx_models):
    r = run_cli("inspect", tflite_models["mixed_fp32"], "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    g = read_model(tflite_models["mixed_fp32"])
    assert info["format"] == "tflite" and len(info["ops"]) == len(g.ops)
    assert info["macs"] == sum(op_macs(g, op) for op in g.ops) > 0
    assert info["params"] == g.params and info["peak_activation_bytes"] == g.peak_activation_bytes()
    for o, op in zip(info["ops"], g.ops):
        assert {"index", "type", "category", "inputs", "outputs", "macs", "features"} <= set(o)
        assert o["outputs"] == [list(g.tensors[t].shape) for t in op.outputs]
    r = main_cli("inspect", onnx_models["dynamic"], "--input-shape", "1,3,32,32")
    assert r.returncode == 0 and "GroupedConv2D" in r.stdout


@pytest.mark.parametrize("content", [None, b"", b"hello world, not a model", b"\x00" * 64])
def test_bad_files_one_line(tmp_path, content):
    p = tmp_path / "bad.tflite"
    if content is not None:
        p.write_bytes(content)
    # the missing file a real launch; the other contents through the same entry point in-process
    r = (run_cli if content is None else main_cli)("inspect", str(p))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("latpred: ")
    assert "Traceback" not in r.stderr


def test_onnx_that_does_not_validate(tmp_path, onnx_models):
    import onnx
    m = onnx.load(onnx_models["fixed"])
    m.graph.node[0].input[0] = "no_such_tensor"
    p = tmp_path / "broken.onnx"
    onnx.save(m, str(p))
    r = main_cli("inspect", str(p))
    assert r.returncode == 2 and "does not validate" in r.stderr and r.stderr.count("\n") == 1


def test_fuzz_truncate_and_flip(tflite_models, onnx_models):
    """Corrupted real models either parse into a consistent graph or raise LatpredError."""
    rng = random.Random(1234)
    outcomes = {"parsed": 0, "error": 0}
    for path in (tflite_models["mixed_fp32"], tflite_models["mixed_int8"], onnx_models["fixed"]):
        data = open(path, "rb").read()
        for trial in range(60):
            buf = bytearray(data)
            if trial % 3 == 0:
                buf = buf[: rng.randrange(8, len(buf))]
            else:
                for _ in range(rng.randint(1, 8)):
                    i = rng.randrange(len(buf))
                    buf[i] ^= 1 << rng.randrange(8)
            p = f"{path}.fuzz{os.path.splitext(path)[1]}"
            with open(p, "wb") as fh:
                fh.write(bytes(buf))
            try:
                g = read_model(p)
            except LatpredError as exc:
                assert str(exc).startswith(p)
                outcomes["error"] += 1
                continue
            for op in g.ops:  # a graph that parsed must be usable downstream
                op_features(g, op)
            g.peak_activation_bytes()
            outcomes["parsed"] += 1
    assert outcomes["error"] > 0
