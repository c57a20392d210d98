"""In-graph op profiling through LiteRT's profiler (latpred.profiling.litert_opprof) and the
alignment of runtime operators to .tflite ops (latpred.profiling.xnn_align)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import tiny_keras, write_tflite
from latpred.errors import LatpredError
from latpred.cpu import folded_ops
from latpred.profiling import profile_models
from latpred.profiling.litert_opprof import _event_size, op_latencies
from latpred.scenario import parse_scenario
from latpred.store import ProfileStore
from latpred.profiling.xnn_align import align, compatible
from latpred.readers import read_model


# -- alignment (pure) ------------------------------------------------------------------------------

def test_fused_pad_gets_no_operator_and_pointwise_conv_matches_fully_connected():
    ops = ["PAD", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "ADD"]
    xnn = ["Convolution (NHWC, F32) IGEMM", "Convolution (NHWC, F32) DWConv",
           "Fully Connected (NC, F32) GEMM", "Add (ND)"]
    assign, cost = align(ops, xnn)
    assert assign == [[], [0], [1], [2], [3]]
    assert cost == 1.0                       # only the fused PAD was skipped


def test_an_extra_operator_belongs_to_the_op_before_it():
    ops = ["MEAN", "FULLY_CONNECTED", "SOFTMAX"]
    xnn = ["Mean (ND) Reduce2", "Static Reshape (NC)", "Fully Connected (NC, F32) GEMM",
           "Softmax (NC, F32)"]
    assign, _ = align(ops, xnn)
    assert assign == [[0, 1], [2], [3]]


def test_a_split_off_activation_stays_with_its_op_and_a_fused_pad_after_it_gets_nothing():
    # seresnet: ADD (fused ReLU) -> PAD -> CONV_2D; XNNPACK runs Add, Clamp, then the conv with
    # the PAD folded in. The Clamp is the ADD's activation, not the PAD's work.
    ops = ["ADD", "PAD", "CONV_2D", "RELU"]
    xnn = ["Add (ND)", "Clamp (NC)", "Convolution (NHWC, F32) IGEMM", "Clamp (NC)"]
    assign, _ = align(ops, xnn)
    assert assign == [[0, 1], [], [2], [3]]


def test_an_unfusable_op_is_not_skipped_when_its_operator_is_there():
    ops = ["CONV_2D", "MUL", "CONV_2D"]
    xnn = ["Convolution (NHWC, F32) IGEMM", "Multiply (ND)", "Convolution (NHWC, F32) IGEMM"]
    assert align(ops, xnn)[0] == [[0], [1], [2]]
    assert compatible("MUL", "Multiply (ND)") and not compatible("MUL", "Add (ND)")


def test_interpreter_nodes_map_by_index_and_delegate_operators_by_order():
    # two runs; op 1 ran in the interpreter (node event, metadata = node index), ops 0 and 2 in
    # the delegate; the delegate kernel's own node event is not an op of the model
    run = [("Convolution (NHWC, F32) IGEMM", 8, 300, 0), ("AVERAGE_POOL_2D", 2, 50, 1),
           ("TfLiteXNNPackDelegate", 2, 400, 3), ("Fully Connected (NC, F32) GEMM", 8, 20, 0),
           ("Invoke", 1, 900, 0)]
    per_run, cost = op_latencies(run + run, ["CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED"], 2)
    assert per_run == [[0.3, 0.05, 0.02]] * 2 and cost == 0.0
    with pytest.raises(LatpredError):
        op_latencies(run + run[:2], ["CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED"], 2)


def _int8_graph(spec):
    """A hand-made int8 IR: ``spec`` is [(op type, [input names], output name)]; names starting
    with 'c' are 1-element constants, 'f' float tensors, the rest int8 activations."""
    from latpred.ir import ModelGraph, Op, Tensor
    tensors, ids = {}, {}

    def tid(name):
        if name not in ids:
            ids[name] = len(ids)
            const, fp = name.startswith("c"), name.startswith("f")
            tensors[ids[name]] = Tensor(ids[name], name, (1,) if const else (1, 8, 8, 4),
                                        "float32" if fp else "int8", is_constant=const,
                                        quantization=None if fp else (0.01, 0))
        return ids[name]

    ops = [Op(i, t, "ElementWise", [tid(n) for n in ins], [tid(out)])
           for i, (t, ins, out) in enumerate(spec)]
    return ModelGraph(fmt="tflite", layout="NHWC", tensors=tensors, ops=ops, inputs=[tid("x")],
                      outputs=[tid(spec[-1][2])])


def test_lookup_table_chains_follow_single_consumers_and_end_on_an_8bit_output():
    from latpred.cpu.fusion import lut_chains
    silu = _int8_graph([("CONV_2D", ["x"], "a"), ("LOGISTIC", ["a"], "b"),
                        ("MUL", ["a", "b"], "d"), ("MUL", ["d", "c1"], "e"),
                        ("CONV_2D", ["e"], "y")])
    assert lut_chains(silu) == [[1, 2, 3]]          # x*sigmoid(x), then times a constant scalar
    assert folded_ops(silu) == {1: 3, 2: 3}         # the last op that is no QUANTIZE keeps the time
    branched = _int8_graph([("TANH", ["x"], "a"), ("QUANTIZE", ["a"], "b"),
                            ("ADD", ["a", "b"], "y")])   # TANH's output has two consumers
    assert lut_chains(branched) == [[1, 2]]
    float_tail = _int8_graph([("LOGISTIC", ["x"], "a"), ("DEQUANTIZE", ["a"], "fb"),
                              ("CONV_2D", ["fb"], "y")])
    assert lut_chains(float_tail) == []             # the chain must end on an 8-bit tensor
    long = _int8_graph([("NEG", [f"t{i}"], f"t{i + 1}") for i in range(12)])
    assert [len(c) for c in lut_chains(long)] == [10, 2]
    far_scales = _int8_graph([("LOGISTIC", ["x"], "a"), ("QUANTIZE", ["a"], "b"),
                              ("CONV_2D", ["b"], "y")])
    far_scales.tensors[far_scales.ops[1].outputs[0]].quantization = (1e-6, 0)
    assert lut_chains(far_scales) == []             # XNNPACK leaves this QUANTIZE to TFLite


def test_unknown_event_layout_is_a_clear_error():
    with pytest.raises(LatpredError, match="event layout"):
        _event_size(bytes(range(256)) * 8, 4)


# -- real runs -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """A converter-made CNN with two explicit PADs (one before a conv, one before a pooling op),
    an identity (1x1, stride 1) pooling op, convs, a depthwise conv, SE-like mean + FC."""
    def body(L, inp):
        x = L.ZeroPadding2D(1)(inp)
        x = L.Conv2D(16, 3, strides=2, activation="relu")(x)
        x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        x = L.AveragePooling2D(1, strides=1)(x)
        x = L.ZeroPadding2D(1)(x)
        x = L.MaxPool2D(3, strides=1)(x)
        x = L.Conv2D(32, 1)(x)
        y = L.Conv2D(32, 3, padding="same")(x)
        x = L.Add()([x, y])
        x = L.GlobalAveragePooling2D()(x)
        return L.Dense(10)(x)

    path = tmp_path_factory.mktemp("opprof") / "cnn.tflite"
    return write_tflite(tiny_keras(body, (48, 48, 3)), path)


def test_in_graph_op_latencies_add_up_to_the_end_to_end_run(cnn, tmp_path):
    store = tmp_path / "p.sqlite"
    summary = profile_models([cnn], store, runs=30, warmup=3, progress=False)
    assert (summary.measured, summary.failed) == (1, 0)
    (scen,) = summary.scenarios
    assert parse_scenario(scen).runtime_version.endswith("+opprof")   # never mixed with isolated
    graph = read_model(cnn)
    with ProfileStore(store) as st:
        rows = st.frame(scen)
    assert list(rows.op_index) == list(range(len(graph.ops)))
    convs = rows[rows.category.isin(["Conv2D", "DepthwiseConv2D"])]
    assert len(convs) == 4 and (convs.latency_ms > 0).all()
    # same execution: Σ op ≈ e2e minus the runtime's own per-run cost, unlike isolated timings
    ratio = rows.latency_ms.sum() / rows.e2e_ms.iloc[0]
    assert 0.5 < ratio < 1.1, ratio
    # the biggest op by FLOPs is also among the slowest: the times belong to the right ops
    top = rows.loc[rows.flops.idxmax()]
    assert top.latency_ms >= np.sort(rows.latency_ms.to_numpy())[-2]


def test_the_folding_rules_agree_with_the_real_runtime(cnn, tmp_path):
    # latpred.cpu.fusion says which PADs XNNPACK folds into their conv and which pools are
    # identities; the in-graph profile of the real runtime must show exactly those at 0 ms, and
    # the PAD before pooling and the 3x3 pooling itself as real work
    graph = read_model(cnn)
    folded = folded_ops(graph)
    pads = [op.index for op in graph.ops if op.type == "PAD"]
    pools = [op.index for op in graph.ops if op.type in ("AVERAGE_POOL_2D", "MAX_POOL_2D")]
    assert len(pads) == 2 and len(pools) == 2
    identity, real_pool = pools
    assert sorted(folded) == sorted([pads[0], identity])
    assert graph.ops[folded[pads[0]]].type == "CONV_2D"
    assert graph.ops[folded[identity]].type == "DEPTHWISE_CONV_2D"
    store = tmp_path / "p.sqlite"
    profile_models([cnn], store, runs=20, warmup=3, progress=False)
    with ProfileStore(store) as st:
        rows = st.frame().set_index("op_index")
    for op in (pads[0], identity):
        assert rows.loc[op, "latency_ms"] == 0 and rows.loc[op, "folded"] == 1
    for op in (pads[1], real_pool):
        assert rows.loc[op, "latency_ms"] > 0 and not rows.loc[op, "folded"] == 1


@pytest.fixture(scope="module")
def int8_lut_cnn(tmp_path_factory):
    """An int8 CNN by the real converter where TANH and LOGISTIC feed a CONCATENATION: their
    fixed output scales differ from the concat's, so the converter puts a requantizing QUANTIZE
    after each, which XNNPACK runs in one lookup table with the op before it. The RELU branch
    (one op) and the conv are no chains."""
    def body(L, inp):
        x = L.Conv2D(24, 3, strides=2, padding="same")(inp)
        x = L.Concatenate()([L.Activation("tanh")(x), L.ReLU()(x), L.Activation("sigmoid")(x)])
        x = L.Conv2D(16, 1)(x)
        x = L.GlobalAveragePooling2D()(x)
        return L.Dense(10)(x)

    path = tmp_path_factory.mktemp("opprof_lut") / "lut.int8.tflite"
    return write_tflite(tiny_keras(body, (64, 64, 3)), path, int8=True)


def test_int8_lookup_table_chains_agree_with_the_real_runtime(int8_lut_cnn, tmp_path):
    graph = read_model(int8_lut_cnn)
    folded = folded_ops(graph)
    quantize = [op.index for op in graph.ops if op.type == "QUANTIZE"
                and str(graph.tensors[op.inputs[0]].dtype) == "int8"]
    assert len(quantize) == 2, [op.type for op in graph.ops]
    assert sorted(folded) == sorted(quantize)
    assert sorted(graph.ops[folded[q]].type for q in quantize) == ["LOGISTIC", "TANH"]
    store = tmp_path / "p.sqlite"
    profile_models([int8_lut_cnn], store, runs=20, warmup=3, progress=False)
    with ProfileStore(store) as st:
        rows = st.frame().set_index("op_index")
    for q in quantize:    # the table's time is its chain's first op's, none is the QUANTIZE's
        assert rows.loc[q, "latency_ms"] == 0 and rows.loc[q, "folded"] == 1
        assert rows.loc[folded[q], "latency_ms"] > 0
    relu = next(op.index for op in graph.ops if op.type == "RELU")
    assert relu not in folded


def test_store_refeature_restores_features_and_keeps_every_measurement(cnn, tmp_path):
    # feature rules can change after profiling: `latpred store refeature` recomputes the stored
    # features from the model file (matched by hash) without touching the latencies
    import json
    from latpred.cli import main
    store = tmp_path / "p.sqlite"
    profile_models([cnn], store, runs=10, warmup=2, progress=False)
    with ProfileStore(store) as st:
        before = st.frame()
        with st.conn:
            st.conn.execute("UPDATE ops SET features = ?", (json.dumps({"input_hw": 1.0}),))
        assert "folded" not in st.frame().columns
    assert main(["store", "refeature", str(store), str(cnn)]) == 0
    with ProfileStore(store) as st:
        after = st.frame()
    assert after["folded"].fillna(0).tolist() == before["folded"].fillna(0).tolist()
    assert after["folded"].sum() == 2
    for col in ("latency_ms", "flops", "input_hw", "e2e_ms"):
        np.testing.assert_array_equal(after[col].to_numpy(), before[col].to_numpy())
    assert main(["store", "refeature", str(store), str(tmp_path / "none")]) != 0


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_auto_op_timing_on_two_cores_stays_isolated(cnn, tmp_path):
    # opprof on N threads must be asked for (tests/test_opprof_threads.py): auto keeps the
    # existing cpu2 scenario's isolated timings, so the two kinds are not mixed under one id
    summary = profile_models([cnn], tmp_path / "p.sqlite", cores=2, runs=3, warmup=1,
                             op_wise=False, progress=False)
    assert summary.measured == 1
    assert not parse_scenario(summary.scenarios[0]).runtime_version.endswith("+opprof")


def test_opprof_with_no_model_files_is_a_clear_error(tmp_path):
    with pytest.raises(LatpredError, match="no .tflite model files"):
        profile_models([tmp_path], tmp_path / "p.sqlite", op_timing="opprof", progress=False)
