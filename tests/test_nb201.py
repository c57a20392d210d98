"""NAS-Bench-201 source: arch strings and the index table; networks built by `latpred nb201 build`
(tf_keras + the real TFLite converter); the graph IR built from the string alone against the IR
read from those files (ops, order, shapes, attributes, constants, features); dead cells in the
converted file; ONNX export; `latpred nb201 predict` against `latpred predict` on the files; the
live network (``edges="live"``) against its converted file and the live edges; fast predictions
(`predict_archs`, `nb201_rows`) against predictions of the full IR."""
from __future__ import annotations

import itertools
import json
import random
from collections import Counter

import numpy as np
import pytest

from conftest import run_cli
from latpred.errors import LatpredError
from latpred.features import graph_features
from latpred.readers import read_model
from latpred.sources import nb201

MIXED = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
# none edges, a pool whose only consumers are ReLUs (fused), 1x1 convs
NONE_POOL = "|avg_pool_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
# node 3 sums pool(x)+x, node 2 x+pool(x): one ADD after the converter's CSE
SKIPS = "|skip_connect~0|+|skip_connect~0|avg_pool_3x3~1|+|avg_pool_3x3~0|skip_connect~1|none~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"          # dead, no conv at all
DEAD = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|none~0|none~1|none~2|"
# the importer takes ready ops by DFS position, not by name: node 3's x*0 of node 1 comes before
# node 2's sum, which is named before it
ORDER = "|nor_conv_1x1~0|+|skip_connect~0|skip_connect~1|+|avg_pool_3x3~0|none~1|avg_pool_3x3~2|"
# Any table in the CARD's format; index 1 is MIXED in nb201_help.csv, 7 is made up here.
TABLE = {1: MIXED, 7: NONE_POOL}


def _all_archs():
    return ["|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*o)
            for o in itertools.product(nb201.OPS, repeat=6)]


def _signature(g):
    """Everything of an IR the predictors read, with tensors named by structure: an activation
    input by the op that makes it, a constant by its first use (so sharing shows)."""
    first_use: dict[int, int] = {}
    rows = []
    for op in g.ops:
        ins = []
        for t in op.inputs:
            x = g.tensors[t]
            where = (("const", first_use.setdefault(t, len(first_use))) if x.is_constant
                     else ("input",) if t in g.inputs else ("op", g.producer(t)))
            ins.append((x.shape, x.dtype, where))
        rows.append((op.type, op.category, sorted(op.attrs.items()), ins,
                     [(g.tensors[t].shape, g.tensors[t].dtype) for t in op.outputs]))
    return rows, [g.tensors[t].shape for t in g.outputs]


def _assert_same_ir(real, mine):
    a, b = _signature(real), _signature(mine)
    assert len(a[0]) == len(b[0])
    for i, (x, y) in enumerate(zip(a[0], b[0])):
        assert x == y, f"op {i}"
    assert a[1] == b[1]
    assert graph_features(mine) == graph_features(real)
    assert (mine.params, mine.peak_activation_bytes()) == (real.params,
                                                           real.peak_activation_bytes())


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("nb201_table") / "archs.csv"
    path.write_text("nb201_index,arch_str,pixel3\n"
                    + "".join(f"{i},{a},1.0\n" for i, a in TABLE.items()))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory, table):
    """One `latpred nb201 build` run: an index and three arch strings, CIFAR-10 input."""
    out = tmp_path_factory.mktemp("nb201_models")
    r = run_cli("nb201", "build", "1", NONE_POOL, SKIPS, ALL_NONE, "--out", out,
                "--arch-table", table)
    assert r.returncode == 0, r.stderr
    return out


# -- arch strings and the table -------------------------------------------------------------------
def test_arch_strings_parse_round_trip_and_bad_ones_are_one_clear_error():
    archs = _all_archs()
    assert len(archs) == nb201.NUM_ARCHS == len({nb201.arch_hash(a) for a in archs})
    for a in random.Random(0).sample(archs, 200):
        assert nb201.arch_str(nb201.parse_arch(a)) == a
    assert nb201.dead_cell(nb201.parse_arch(DEAD)) and nb201.dead_cell(nb201.parse_arch(ALL_NONE))
    assert not nb201.dead_cell(nb201.parse_arch(NONE_POOL))      # x -> skip -> node 3 lives
    for bad in ("", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                "|none~0|+|none~0|none~0|+|none~0|none~1|none~2|",   # node 2 lacks an edge from 1
                "|none~0|+|none~0|none~1|", "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|"):
        with pytest.raises(LatpredError, match="bad NAS-Bench-201 arch"):
            nb201.parse_arch(bad)
    with pytest.raises(LatpredError, match="multiples of 4"):
        nb201.nb201_graph(MIXED, (30, 30, 3))


def test_index_needs_the_table_and_names_follow_it(table, tmp_path, monkeypatch):
    t = nb201.load_table(table)
    assert nb201.resolve("1", t) == ("nb201_1", MIXED)
    assert nb201.resolve(NONE_POOL, t) == ("nb201_7", NONE_POOL)
    name, arch = nb201.resolve(SKIPS, t)                       # not in the table: a stable hash
    assert name == f"nb201_h{nb201.arch_hash(SKIPS)}" == nb201.resolve(SKIPS, None)[0]
    with pytest.raises(LatpredError, match="index 3 not in"):
        nb201.resolve("3", t)
    monkeypatch.setattr(nb201, "DEFAULT_TABLE", tmp_path / "absent.csv")
    with pytest.raises(LatpredError, match="--arch-table"):
        nb201.resolve("1")
    r = run_cli("nb201", "build", "1", "--out", tmp_path / "m", "--arch-table", tmp_path / "no.csv")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "arch table" in r.stderr


def test_cards_table_gives_nas_bench_201_order():
    # shared/ lies beside every checkout here and in CI; its absence is a failure, not a skip
    assert nb201.DEFAULT_TABLE.exists(), f"{nb201.DEFAULT_TABLE} (shared/ beside the checkout)"
    t = nb201.load_table()
    assert len(t.by_index) == nb201.NUM_ARCHS == len(t.by_arch)
    assert t.arch(1) == MIXED
    assert t.arch(0) == ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|"
                         "skip_connect~1|skip_connect~2|")


# -- the IR from the string is the IR of the converted file ---------------------------------------
@pytest.mark.parametrize("name,arch", [("nb201_1", MIXED), ("nb201_7", NONE_POOL),
                                       (None, SKIPS), (None, ALL_NONE)])
def test_ir_from_the_string_is_the_ir_of_the_converted_tflite(built, name, arch):
    name = name or f"nb201_h{nb201.arch_hash(arch)}"
    real = read_model(built / f"{name}.tflite")
    meta = json.loads((built / f"{name}.json").read_text())
    assert meta["arch"] == arch and meta["input_shape"] == [32, 32, 3] and meta["classes"] == 10
    _assert_same_ir(real, nb201.nb201_graph(arch))
    assert nb201.nb201_features(arch) == graph_features(real)


@pytest.fixture(scope="module")
def task_models():
    """The HW-NAS-Bench-360 inputs, converted in this process: ninapro (a dead cell), darcy."""
    from latpred.readers.tflite import read_tflite
    return {(task, arch): read_tflite("", nb201.model_bytes(arch, *nb201.TASKS[task]))
            for task, arch in (("ninapro", DEAD), ("darcy", ORDER))}


@pytest.mark.parametrize("task,arch", [("ninapro", DEAD), ("darcy", ORDER)])
def test_ir_matches_on_hw_nas_bench_360_inputs(task_models, task, arch):
    real = task_models[(task, arch)]
    shape, classes = nb201.TASKS[task]
    assert real.tensors[real.inputs[0]].shape == (1, *shape)
    assert real.tensors[real.outputs[0]].shape == (1, classes)
    _assert_same_ir(real, nb201.nb201_graph(arch, shape, classes))
    assert nb201.nb201_features(arch, shape, classes) == graph_features(real)


def test_fast_features_equal_the_full_ir_on_many_archs():
    # from empty caches, first an arch whose cell input feeds only ReLUs (fused into the op before)
    nb201._CELL_OP_FEATURES.clear(), nb201._UNIT_FEATURES.clear(), nb201._programs.cache_clear()
    first = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|nor_conv_1x1~0|avg_pool_3x3~1|none~2|"
    archs = [first] + random.Random(1).sample(_all_archs(), 300) + [DEAD, ALL_NONE, SKIPS, ORDER]
    for shape, classes in [nb201.TASKS["cifar10"], nb201.TASKS["ninapro"], ((40, 24, 5), 7)]:
        for a in archs:
            assert nb201.nb201_features(a, shape, classes) == \
                graph_features(nb201.nb201_graph(a, shape, classes)), a


# -- what dead cells become -------------------------------------------------------------------------
def _outputs(path_or_bytes, inputs):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(path_or_bytes))
    it.allocate_tensors()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    outs = []
    for x in inputs:
        it.set_tensor(i, x)
        it.invoke()
        outs.append(it.get_tensor(o).copy())
    return outs


def test_dead_cells_are_kept_whole_and_compute_a_constant(built):
    x = [np.random.default_rng(s).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
         for s in range(2)]
    dead = built / f"nb201_h{nb201.arch_hash(ALL_NONE)}.tflite"
    a, b = _outputs(dead, x)
    np.testing.assert_array_equal(a, b)               # x * 0 everywhere: input-independent
    a, b = _outputs(built / "nb201_1.tflite", x)
    assert not np.allclose(a, b)
    g = read_model(dead)
    types = Counter(op.type for op in g.ops)
    # nothing pruned: per cell one x*0 MUL per source node (CSE) and 2 ADDs (node 3 reuses node
    # 2's sum); the first cell's x*0 of the stem output is folded into the stem conv (zero weights)
    zero = [op for op in g.ops if op.type == "MUL" and g.tensors[op.inputs[1]].shape == ()]
    assert len(zero) == 15 * 3 - 1 and types["MUL"] == len(zero) + 1   # + the last BN's scale
    assert types["ADD"] == 15 * 2 + 2 + 1 and types["CONV_2D"] == 1 + 2 * 3
    assert len(g.ops) == len(nb201.nb201_graph(ALL_NONE).ops) == 93


# -- ONNX -------------------------------------------------------------------------------------------
def test_onnx_export_reads_back(tmp_path):
    path = tmp_path / "skips.onnx"
    path.write_bytes(nb201.model_bytes(SKIPS, fmt="onnx"))
    g = read_model(path)
    types = Counter(op.type for op in g.ops)
    assert g.layout == "NCHW" and g.tensors[g.inputs[0]].shape == (1, 3, 32, 32)
    assert types["Conv"] == 1 + 2 * 3 and types["AveragePool"] == 15 + 2   # one pool per cell
    assert types["Mul"] == 15                                              # x * 0 kept


# -- predict ---------------------------------------------------------------------------------------
def test_predict_from_strings_equals_predict_on_the_files(built, table, tmp_path):
    from latpred.predictors import LatencyPredictor
    from latpred.profiling import profile_models
    from latpred.store import ProfileStore
    files = sorted(built.glob("*.tflite"))
    store = tmp_path / "nb201.db"
    profile_models(files, store, runs=5, warmup=1, progress=False, op_timing="opprof")
    with ProfileStore(store) as st:
        frame = st.frame()
    bundle = tmp_path / "nb201.latpred"
    LatencyPredictor("lasso").fit(frame).save(bundle)
    r = run_cli("nb201", "predict", bundle, "1", NONE_POOL, SKIPS, ALL_NONE, "--json",
                "--arch-table", table)
    assert r.returncode == 0, r.stderr
    mine = {p["model"]: p for p in json.loads(r.stdout)}
    r = run_cli("predict", bundle, *files, "--json")
    assert r.returncode == 0, r.stderr
    real = {p["model"].rsplit("/", 1)[-1][:-len(".tflite")]: p for p in json.loads(r.stdout)}
    assert sorted(mine) == sorted(real)
    assert mine["nb201_1"]["index"] == 1 and mine["nb201_1"]["arch"] == MIXED
    for name, p in mine.items():
        assert p["latency_ms"] == pytest.approx(real[name]["latency_ms"], rel=1e-12)
        assert [o["type"] for o in p["ops"]] == [o["type"] for o in real[name]["ops"]]
    assert len({round(p["latency_ms"], 9) for p in mine.values()}) == 4
    r = run_cli("nb201", "predict", bundle, MIXED)                       # the table view
    assert r.returncode == 0 and MIXED in r.stdout


# -- the live network: only edges on a none-free path from the cell input to its output ---------
# node 3 is one 3x3 conv of the input: the head's BN folds into that conv (another unit's op)
CONV_END = "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"
IDENTITY = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"   # live: x itself
# node 1's conv and pool lead nowhere live; nodes 2 and 3 have one live input each (no ADD)
CHAIN = "|nor_conv_1x1~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|nor_conv_3x3~2|"
PATHS = ((0, 3), (0, 1, 3), (0, 2, 3), (0, 1, 2, 3))


def _edges(cell):
    return [(op, j, i) for i, node in enumerate(cell, start=1) for op, j in node]


def test_live_edges_are_the_edges_of_none_free_paths():
    reached_not_live = 0
    for a in _all_archs():
        cell = nb201.parse_arch(a)
        op = {(j, i): o for o, j, i in _edges(cell)}
        want = set()
        for path in PATHS:                     # by definition: every path, every edge on it
            steps = list(zip(path, path[1:]))
            if all(op[s] != "none" for s in steps):
                want.update(steps)
        live = nb201.live_edges(a)
        assert live == [(j, i) in want for _, j, i in _edges(cell)], a
        assert nb201.dead_cell(cell) == (not any(live)), a
        reached_not_live += sum(o != "none" and not x for (o, _, _), x in zip(_edges(cell), live))
    assert reached_not_live > 0                # non-none edges off every live path exist
    # flags follow the order the string lists the edges in
    swapped = "|nor_conv_1x1~0|+|avg_pool_3x3~1|none~0|+|none~0|none~1|nor_conv_3x3~2|"
    assert nb201.live_edges(swapped) == [True, True, False, False, False, True]
    assert nb201.live_edges(nb201.parse_arch(CHAIN)) == nb201.live_edges(CHAIN)


@pytest.fixture(scope="module")
def live_models():
    """The live networks (``edges="live"``) built and converted by the real TFLite converter."""
    from latpred.readers.tflite import read_tflite
    cases = [(CONV_END, "cifar10"), (IDENTITY, "cifar10"), (CHAIN, "cifar10"),
             (NONE_POOL, "ninapro")]
    return {(a, t): read_tflite("", nb201.model_bytes(a, *nb201.TASKS[t], edges="live"))
            for a, t in cases}


@pytest.mark.parametrize("arch,task", [(CONV_END, "cifar10"), (IDENTITY, "cifar10"),
                                       (CHAIN, "cifar10"), (NONE_POOL, "ninapro")])
def test_live_ir_is_the_ir_of_the_converted_live_network(live_models, arch, task):
    real = live_models[(arch, task)]
    shape, classes = nb201.TASKS[task]
    _assert_same_ir(real, nb201.nb201_graph(arch, shape, classes, edges="live"))
    assert nb201.nb201_features(arch, shape, classes, edges="live") == graph_features(real)
    assert len(real.ops) < len(nb201.nb201_graph(arch, shape, classes).ops)


def test_a_dead_cells_live_network_is_a_constant_and_has_no_file():
    for a in (DEAD, ALL_NONE):
        g = nb201.nb201_graph(a, (52, 16, 1), 18, edges="live")
        out = g.tensors[g.outputs[0]]
        assert g.ops == [] and out.is_constant and out.shape == (1, 18)
        assert g.tensors[g.inputs[0]].shape == (1, 52, 16, 1)
        assert graph_features(g) == [] and nb201.nb201_features(a, edges="live") == []
        assert nb201.nb201_rows(a, edges="live") == []
        with pytest.raises(LatpredError, match="dead cell"):
            nb201.model_bytes(a, edges="live")
    with pytest.raises(LatpredError, match="edges must be"):
        nb201.nb201_graph(MIXED, edges="pruned")


def _cell_counts(g, maps):
    """Stride-1 CONV_2D 3x3 / 1x1 and AVERAGE_POOL_2D 3x3 ops on the stages' maps: the cells',
    plus the stem's conv and each reduction's second 3x3 conv and 1x1 shortcut."""
    c = Counter()
    for op in g.ops:
        shape = g.tensors[op.outputs[0]].shape
        if op.type in ("CONV_2D", "AVERAGE_POOL_2D") and op.attrs["stride_h"] == 1 \
                and shape[1:3] in maps:
            c[op.type, op.attrs["kernel_h"]] += 1
    return c


def test_live_graph_has_the_ops_of_the_live_edges_alone():
    archs = random.Random(2).sample(_all_archs(), 200) + [CONV_END, IDENTITY, CHAIN, NONE_POOL,
                                                          SKIPS, ORDER, MIXED]
    maps = {(32, 32), (16, 16), (8, 8)}
    swap = {"nor_conv_3x3": "avg_pool_3x3", "avg_pool_3x3": "nor_conv_1x1",
            "nor_conv_1x1": "skip_connect", "skip_connect": "nor_conv_3x3"}
    for a in archs:
        cell = nb201.parse_arch(a)
        if nb201.dead_cell(cell):
            continue
        live = nb201.live_edges(cell)
        g = nb201.nb201_graph(a, edges="live")
        live_e = [e for e, x in zip(_edges(cell), live) if x]
        kept = [(op, j) for op, j, _ in live_e]
        value = [0, 1, 2]                      # the tensor of a node: a lone skip is its source's
        for i in (1, 2):
            ins = [(op, j) for op, j, k in live_e if k == i]
            if len(ins) == 1 and ins[0][0] == "skip_connect":
                value[i] = value[ins[0][1]]
        want = Counter({("CONV_2D", 3): 1 + 2 + 15 * sum(op == "nor_conv_3x3" for op, _ in kept),
                        ("CONV_2D", 1): 2 + 15 * sum(op == "nor_conv_1x1" for op, _ in kept),
                        # one pool per source tensor (the converter merges identical pools)
                        ("AVERAGE_POOL_2D", 3):
                            15 * len({value[j] for op, j in kept if op == "avg_pool_3x3"})})
        assert _cell_counts(g, maps) == +want, a
        assert not any(g.tensors[t].shape == () for op in g.ops for t in op.inputs), a  # no x*0
        if "none" not in a:                    # every edge live: the full network
            assert _signature(g) == _signature(nb201.nb201_graph(a)), a
        # what an edge off every live path does is never built
        other = [(swap[op] if op != "none" and not x else op, j)
                 for (op, j, _), x in zip(_edges(cell), live)]
        nodes = [tuple(other[k:k + i]) for k, i in ((0, 1), (1, 2), (3, 3))]
        assert _signature(nb201.nb201_graph(nb201.arch_str(tuple(nodes)), edges="live")) \
            == _signature(g), a


def test_fast_rows_and_features_equal_the_full_ir_live_and_all():
    from latpred.predictors import op_rows
    nb201._CELL_OP_FEATURES.clear(), nb201._UNIT_FEATURES.clear(), nb201._programs.cache_clear()
    archs = [CONV_END, IDENTITY] + random.Random(3).sample(_all_archs(), 100) + [CHAIN, DEAD]
    for shape, classes in [nb201.TASKS["cifar10"], ((40, 24, 5), 7)]:
        for edges in nb201.EDGES:
            for a in archs:
                g = nb201.nb201_graph(a, shape, classes, edges=edges)
                assert nb201.nb201_features(a, shape, classes, edges=edges) \
                    == graph_features(g), (a, edges)
                assert nb201.nb201_rows(a, shape, classes, edges=edges) == op_rows(g), (a, edges)


# -- predicting many archs fast --------------------------------------------------------------
@pytest.fixture(scope="module")
def cpu_bundle(tmp_path_factory):
    """A lasso bundle (one alpha) of the host store's first 200 models: fast to train."""
    from conftest import ROOT
    from latpred.predictors import LatencyPredictor
    from latpred.store import ProfileStore
    with ProfileStore(f"{ROOT}/datasets/host/litert_cpu1_fp32_opprof.sqlite", readonly=True) as st:
        frame = st.frame(st.scenarios()[0])
    frame = frame[frame["model"].isin(sorted(frame["model"].unique())[:200])]
    path = tmp_path_factory.mktemp("nb201_bundle") / "lasso.latpred"
    LatencyPredictor("lasso", grids={"lasso": {"alpha": [1e-3]}}).fit(frame).save(path)
    return path


def _assert_same_predictions(mine, full):
    assert len(mine) == len(full)
    for p, q in zip(mine, full):
        assert p.model == q.model
        assert p.op_type == q.op_type and p.op_category == q.op_category
        for f in ("op_index", "op_fallback", "op_fused"):
            np.testing.assert_array_equal(getattr(p, f), getattr(q, f))
        np.testing.assert_allclose(p.op_latency_ms, q.op_latency_ms, rtol=1e-12, atol=0)
        assert p.latency_ms == pytest.approx(q.latency_ms, rel=1e-12)
        assert p.overhead_ms == pytest.approx(q.overhead_ms, rel=1e-12)


def test_fast_predictions_equal_the_full_ir_predictions(cpu_bundle, monkeypatch):
    from latpred.predictors import load
    predictor = load(cpu_bundle)
    assert predictor.bundle.training["cpu_fusion"]           # the reduction's PAD is folded
    del predictor.bundle.models["Pooling"]                   # pools take the fallback
    archs = random.Random(4).sample(_all_archs(), 40) + [DEAD, ALL_NONE, NONE_POOL, SKIPS,
                                                         CONV_END, IDENTITY, CHAIN]
    for (shape, classes), edges in itertools.product(
            [nb201.TASKS["cifar10"], nb201.TASKS["ninapro"]], nb201.EDGES):
        names = [f"a{k}" for k in range(len(archs))]
        full = predictor.predict_many(nb201.nb201_graph(a, shape, classes, name=n, edges=edges)
                                      for a, n in zip(archs, names))
        graphs = []                            # the fast path builds one IR (scenario check)
        monkeypatch.setattr(nb201, "nb201_graph",
                            lambda *a, _g=nb201.nb201_graph, **k: graphs.append(1) or _g(*a, **k))
        fast = nb201.predict_archs(predictor, archs, shape, classes, edges=edges, names=names)
        monkeypatch.undo()
        assert len(graphs) == 1
        _assert_same_predictions(fast, full)
        _assert_same_predictions(predictor.predict_rows_many(
            [nb201.nb201_rows(a, shape, classes, edges=edges) for a in archs], names), full)
        assert any(p.op_fallback.any() for p in fast) and any(p.op_fused.any() for p in fast)
        dead = fast[archs.index(DEAD)]
        if edges == "live":                    # overhead alone, nothing to run
            assert len(dead.op_index) == 0 and dead.overhead_ms > 0
            assert dead.latency_ms == dead.overhead_ms == predictor.bundle.overhead_for(0.0)
        else:                                  # the converted file runs every op
            assert len(dead.op_index) == len(nb201.nb201_graph(DEAD).ops)
            assert dead.latency_ms > dead.overhead_ms
    # one arch, a name from the arch, nothing at all
    p, = nb201.predict_archs(predictor, [MIXED])
    assert p.model == nb201.nb201_graph(MIXED).name
    assert nb201.predict_archs(predictor, []) == []


def test_gpu_bundles_predict_the_graphs_kernels(cpu_bundle):
    import dataclasses

    from latpred.predictors import Predictor, load
    bundle = dataclasses.replace(load(cpu_bundle).bundle,
                                 scenario="SYNTHETIC/tflite-2.10/gpu-adreno640/fp16")
    predictor = Predictor(bundle)
    archs = [MIXED, NONE_POOL, DEAD]
    for edges in nb201.EDGES:
        fast = nb201.predict_archs(predictor, archs, edges=edges)
        full = predictor.predict_many(nb201.nb201_graph(a, edges=edges) for a in archs)
        _assert_same_predictions(fast, full)
        # kernels after the delegate's fusion: fewer rows than ops
        assert len(fast[0].op_index) < len(nb201.nb201_graph(MIXED).ops)
    assert len(fast[2].op_index) == 0                        # the dead live network


def test_predict_json_is_json_dumps_and_live_edges_from_the_cli(cpu_bundle, table):
    import math

    from latpred.commands import nb201 as cmd
    from latpred.predictors import load
    predictor = load(cpu_bundle)
    items = [("nb201_1", MIXED), (f"nb201_h{nb201.arch_hash(DEAD)}", DEAD)]
    for edges in nb201.EDGES:
        preds = nb201.predict_archs(predictor, [a for _, a in items], edges=edges,
                                    names=[n for n, _ in items])
        preds[0].op_latency_ms[:4] = [-0.0, math.nan, math.inf, 1e-300]   # json's own spellings
        assert cmd._json_text(items, preds) == json.dumps(
            [cmd._record(n, a, p) for (n, a), p in zip(items, preds)], indent=1)
    r = run_cli("nb201", "predict", cpu_bundle, "1", DEAD, CHAIN, "--edges", "live", "--json",
                "--arch-table", table)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    want = nb201.predict_archs(predictor, [MIXED, DEAD, CHAIN], edges="live")
    assert [d["index"] for d in out] == [1, None, None]
    for d, p in zip(out, want):
        assert d["latency_ms"] == pytest.approx(p.latency_ms, rel=1e-12)
        assert [o["type"] for o in d["ops"]] == p.op_type
    assert out[1]["ops"] == [] and out[1]["latency_ms"] == out[1]["overhead_ms"]
    assert len(out[2]["ops"]) == len(nb201.nb201_graph(CHAIN, edges="live").ops) \
        < len(nb201.nb201_graph(CHAIN).ops)
    r = run_cli("nb201", "predict", cpu_bundle, MIXED, "--edges", "pruned")
    assert r.returncode == 2 and "--edges" in r.stderr


def test_arch_table_reads_canonical_forms_any_column_order_and_short_rows(tmp_path):
    spaced = f"  {MIXED} "
    permuted = ("|nor_conv_3x3~0|+|avg_pool_3x3~1|nor_conv_3x3~0|+|skip_connect~0|"
                "nor_conv_3x3~1|skip_connect~2|")
    for a in (MIXED, spaced, permuted):
        assert nb201.canonical_arch(a) == nb201.arch_str(nb201.parse_arch(a))
    path = tmp_path / "t.csv"
    path.write_text(f"arch_str,index\n{spaced},5\n{permuted},6\n")    # any column order
    t = nb201.load_table(path)
    assert t.index(MIXED) == 5 and t.index(permuted) == 6 and t.arch(5) == spaced
    path.write_text("nb201_index,arch_str\n3\n")
    with pytest.raises(LatpredError, match="bad arch table row"):
        nb201.load_table(path)
