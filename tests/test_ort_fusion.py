"""ONNX Runtime's folds (latpred.cpu.ort_fusion) against the real runtime on a real tf2onnx export.

The model is a small Keras CNN with each pattern the rules decide on: a zero Pad before a VALID
convolution (folded) and before a max pool (kept), Conv+ReLU, Conv+ReLU6 (Clip), Conv+sigmoid, and
a residual Add+ReLU after a 1x1 convolution (folded by the NCHWc transformer on x86). The runtime's
answer comes from its profiler on the optimized graph (``measure_onnx_opprof``)."""
from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

INPUT = (32, 32, 3)


def _keras_model():
    from latpred.sources.keras_build import import_tf
    tf, keras = import_tf()
    tf.random.set_seed(0)
    L = keras.layers
    x0 = keras.Input(INPUT, batch_size=1)
    x = L.ZeroPadding2D(1)(x0)
    x = L.Conv2D(16, 3, strides=2, padding="valid")(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    y = L.Conv2D(32, 1)(x)
    y = L.ReLU(6.0)(y)
    y = L.ZeroPadding2D(1)(y)                     # MobileNetV2's stride-2 depthwise padding
    y = L.DepthwiseConv2D(3, strides=2, padding="valid")(y)
    y = L.ReLU(6.0)(y)
    y = L.Conv2D(16, 1)(y)
    x = L.ReLU()(L.Add()([L.MaxPool2D(2)(x), y]))
    x = L.ZeroPadding2D(1)(x)
    x = L.MaxPool2D(3, strides=2)(x)
    x = L.Conv2D(32, 3, padding="same", activation="sigmoid")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(x0, L.Dense(10)(x))


@pytest.fixture(scope="module")
def model():
    return _keras_model()


@pytest.fixture(scope="module")
def onnx_file(model, tmp_path_factory):
    from latpred.sources.export import inference_function, to_onnx
    fn, _ = inference_function(model, INPUT)
    path = tmp_path_factory.mktemp("ortfus") / "tiny.onnx"
    path.write_bytes(to_onnx(fn))
    return path


def test_rules_match_runtime_folds(onnx_file):
    from latpred.cpu.fusion import folded_ops
    from latpred.profiling.onnxrt import measure_onnx_opprof
    from latpred.readers import read_model

    graph = read_model(onnx_file)
    result = measure_onnx_opprof(onnx_file.read_bytes(), runs=5, warmup=1)
    runtime_names = {o["output_name"] for o in result["ops"] if o.get("folded")}
    by_name = {graph.tensors[op.outputs[0]].name: op.index for op in graph.ops if op.outputs}
    runtime = {by_name[n] for n in runtime_names if n in by_name}
    assert len(runtime) == len(runtime_names)        # every folded file node is an IR op

    rules = folded_ops(graph)
    assert set(rules) == runtime, (
        f"rule-only: {[(i, graph.ops[i].type) for i in sorted(set(rules) - runtime)]}, "
        f"runtime-only: {[(i, graph.ops[i].type) for i in sorted(runtime - set(rules))]}")

    # the behaviour under test is there: activations after a Conv, and a Pad before a Conv, fold
    # into that Conv; the Pad before the max pool does not
    folded_types = {graph.ops[i].type for i in rules}
    assert {"Relu", "Clip", "Sigmoid"} <= folded_types
    pads = [op for op in graph.ops if op.type == "Pad"]
    assert pads
    for pad in pads:
        reader = graph.ops[graph.consumers(pad.outputs[0])[0]]
        if reader.type == "Conv":
            assert rules.get(pad.index) == reader.index
        else:
            assert pad.index not in rules
    for i, host in rules.items():
        if graph.ops[i].type in ("Relu", "Clip", "Sigmoid"):
            assert graph.ops[host].type == "Conv"


def test_runtime_folds_onnxruntime_optimized_kind_only():
    from latpred.cpu.fusion import runtime_folds
    from latpred.scenario import Scenario
    # in-graph kind: the optimized graph is timed, folded nodes read 0 ms
    assert runtime_folds(Scenario.parse("host/onnxruntime-1.32.0+opprof/cpu1/fp32"))
    # plain kind: every file node is timed with graph optimizations off
    assert not runtime_folds(Scenario.parse("host/onnxruntime-1.32.0/cpu1/fp32"))


def test_tflite_path_unchanged(model, monkeypatch):
    """A .tflite graph never reaches the ONNX rules and keeps XNNPACK's PAD folding."""
    from latpred.cpu import ort_fusion
    from latpred.cpu.fusion import folded_ops
    from latpred.readers import read_model
    from latpred.sources.export import inference_function, to_tflite
    import tempfile, os

    def boom(graph):
        raise AssertionError("ONNX rules called for a .tflite graph")

    monkeypatch.setattr(ort_fusion, "folded_ops_ort", boom)
    _, concrete = inference_function(model, INPUT)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tiny.tflite")
        with open(path, "wb") as fh:
            fh.write(to_tflite(concrete, INPUT))
        graph = read_model(path)
    folded = folded_ops(graph)
    pads = [op.index for op in graph.ops if op.type in ("PAD", "PADV2")]
    assert pads and folded
    for i, host in folded.items():
        # XNNPACK folds a PAD only into the convolution that reads it
        assert graph.ops[i].type in ("PAD", "PADV2")
        assert graph.ops[host].type in ("CONV_2D", "DEPTHWISE_CONV_2D")
        assert graph.producer(graph.ops[host].inputs[0]) == i
