"""NAS-Bench-201 source: arch strings and the index table; networks built by `latpred nb201 build`
(tf_keras + the real TFLite converter); the graph IR built from the string alone against the IR
read from those files (ops, order, shapes, attributes, constants, features); dead cells in the
converted file; ONNX export; `latpred nb201 predict` against `latpred predict` on the files."""
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
