"""Hostile and corrupt models: one clear error line (`latpred: <file>: <what>`, exit 2), never a
traceback, a hang, a memory blow-up or a silently changed answer.

Every model is made by the real TFLite converter or is valid ONNX built with onnx.helper, then
mutated through its schema: flatbuffer fields located with the schema bindings shipped in
ai-edge-litert (one bit flipped in place, or the object API for structural edits), ONNX through
protobuf."""
from __future__ import annotations

import json
import logging
import os
import random

import numpy as np
import pytest

from conftest import conv_stem, dw_residual, main_cli, run_cli, run_python, tiny_keras, write_tflite
from latpred.errors import LatpredError
from latpred.features import op_features, op_macs
from latpred.readers import read_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
CLI_TIMEOUT = 300  # seconds; a hang fails the test instead of blocking the suite


def _cnn(L, x):
    x = conv_stem(L, x, 8)               # CONV_2D 3x3 stride 2, SAME
    x = dw_residual(L, x, 8)             # DEPTHWISE_CONV_2D stride 1, CONV_2D 1x1 VALID, ADD
    x = L.MaxPool2D(2)(x)                # MAX_POOL_2D 2x2 stride 2
    x = L.GlobalAveragePooling2D()(x)    # MEAN
    return L.Dense(4)(x)                 # FULLY_CONNECTED


@pytest.fixture(scope="module")
def tfl(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    m = tiny_keras(_cnn, (16, 16, 3))
    return {"fp32": str(write_tflite(m, d / "cnn.tflite")),
            "int8": str(write_tflite(m, d / "cnn_int8.tflite", int8=True, int8_io=True)),
            "dir": d}


def _one_error(r, path, *needles):
    """Exit 2 and exactly one stderr line, ``latpred: <path>: ...`` containing ``needles``."""
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"latpred: {path}: "), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _both_clis(path, *needles, kernels_launched: bool = False):
    """`inspect` and `kernels` both stop at the reader with the same one-line error. `inspect` is
    a real launch (a hang fails after CLI_TIMEOUT); `kernels`, which reads the same file through
    the same reader after it, runs through the same entry point in this process unless
    ``kernels_launched`` (a real launch too)."""
    a = _one_error(run_cli("inspect", path, timeout=CLI_TIMEOUT), path, *needles)
    kernels = ("kernels", path, "--gpu", "adreno640")
    b = _one_error(run_cli(*kernels, timeout=CLI_TIMEOUT) if kernels_launched
                   else main_cli(*kernels), path, *needles)
    assert a == b


# -- .tflite: fields through the schema bindings --------------------------------------------------

def _schema():
    from ai_edge_litert import schema_py_generated as schema
    return schema


def _op(data: bytes, op_type: str, nth: int = 0):
    """(operator table, its index) of the nth op of ``op_type`` in subgraph 0."""
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(data, 0)
    sg = model.Subgraphs(0)
    seen = 0
    for i in range(sg.OperatorsLength()):
        o = sg.Operators(i)
        oc = model.OperatorCodes(o.OpcodeIndex())
        if names[max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())] == op_type:
            if seen == nth:
                return o, i
            seen += 1
    raise AssertionError(f"no {op_type} #{nth}")


def _options(op, cls):
    table = op.BuiltinOptions()
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _flip(data: bytes, table, slot: int, bit: int, width: int = 4) -> bytes:
    """Flip one bit of the scalar field at vtable ``slot`` of ``table`` (which must be stored)."""
    rel = table._tab.Offset(slot)
    assert rel, "field not stored (default value)"
    pos = table._tab.Pos + rel
    buf = bytearray(data)
    v = int.from_bytes(buf[pos:pos + width], "little") ^ (1 << bit)
    buf[pos:pos + width] = v.to_bytes(width, "little")
    return bytes(buf)


def _repack(data: bytes, edit) -> bytes:
    """Structural edit through the object API, serialised again as a .tflite."""
    import flatbuffers
    m = _schema().ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(m)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _write(tfl, name: str, data: bytes) -> str:
    p = tfl["dir"] / name
    p.write_bytes(data)
    return str(p)


# Vtable slots of the fields below (schema.fbs order: slot = 4 + 2 * field index); each test
# reads the flipped value back through the accessor, which checks the slot.
CONV_STRIDE_W, CONV_STRIDE_H, CONV_PADDING = 6, 8, 4
DW_STRIDE_W = 6
POOL_FILTER_W = 10
OPCODE_BUILTIN = 10
TENSOR_SHAPE = 4


def test_stride_bit_flip_and_armless_conv_are_one_error(tfl):
    """Item 1: the issue's two crashes. A flipped sign bit in the depthwise conv's stride
    (1 -> -2147483647) ended in `math domain error`; a CONV_2D with no inputs and outputs ended in
    IndexError in the GPU fusion pass."""
    schema = _schema()
    data = open(tfl["fp32"], "rb").read()
    op, i = _op(data, "DEPTHWISE_CONV_2D")
    flipped = _flip(data, _options(op, schema.DepthwiseConv2DOptions), DW_STRIDE_W, 31)
    assert _options(_op(flipped, "DEPTHWISE_CONV_2D")[0], schema.DepthwiseConv2DOptions).StrideW() == -2147483647
    p = _write(tfl, "stride_flip.tflite", flipped)
    _both_clis(p, f"op {i} (DEPTHWISE_CONV_2D)", "stride_w -2147483647", kernels_launched=True)

    conv_i = _op(data, "CONV_2D")[1]

    def strip(m):
        m.subgraphs[0].operators[conv_i].inputs = []
        m.subgraphs[0].operators[conv_i].outputs = []
    p = _write(tfl, "armless.tflite", _repack(data, strip))
    _both_clis(p, f"op {conv_i} (CONV_2D)", "needs 2 to 3 inputs, has 0")


def _field_mutations(data: bytes):
    """(name, mutated bytes, expected message part): bit flips the old reader accepted with a
    changed answer (strides of 0 or 5e8, kernels of 6.7e7, unknown opcodes, shapes)."""
    schema = _schema()
    conv, _ = _op(data, "CONV_2D")
    pointwise, _ = _op(data, "CONV_2D", 1)
    pool, _ = _op(data, "MAX_POOL_2D")
    copts = _options(conv, schema.Conv2DOptions)
    model = schema.Model.GetRootAs(data, 0)
    sg = model.Subgraphs(0)
    mean, _ = _op(data, "MEAN")
    weights = sg.Tensors(conv.Inputs(1))
    out = sg.Tensors(conv.Outputs(0))

    def vector_elem(table, slot, k):  # position of element k of an int vector field
        rel = table._tab.Offset(slot)
        assert rel
        return table._tab.Vector(rel) + 4 * k

    def flip_at(pos, bit):
        buf = bytearray(data)
        v = int.from_bytes(buf[pos:pos + 4], "little") ^ (1 << bit)
        buf[pos:pos + 4] = v.to_bytes(4, "little")
        return bytes(buf)

    return [
        ("stride 0", _flip(data, copts, CONV_STRIDE_H, 1), "stride_h 0 is not in 1..65536"),
        ("stride 5e8", _flip(data, copts, CONV_STRIDE_W, 29), "stride_w 536870914"),
        ("pool kernel 6.7e7", _flip(data, _options(pool, schema.Pool2DOptions), POOL_FILTER_W, 26),
         "kernel_w 67108866"),
        ("unknown opcode", _flip(data, model.OperatorCodes(mean.OpcodeIndex()), OPCODE_BUILTIN, 24),
         "unknown builtin opcode 16777256"),
        ("unknown padding", _flip(data, _options(pointwise, schema.Conv2DOptions), CONV_PADDING, 3,
                                  width=1), "unknown padding 9"),
        ("conv weight dims", flip_at(vector_elem(weights, TENSOR_SHAPE, 1), 26),
         "its buffer holds 864 bytes"),
        ("conv output height", flip_at(vector_elem(out, TENSOR_SHAPE, 1), 0),
         "height should be 8"),
    ]


def test_field_flips_that_changed_the_answer_are_errors(tfl):
    """Item 1: each flip names the op (or tensor) and what is wrong, in-process and on the CLI."""
    data = open(tfl["fp32"], "rb").read()
    for name, mutated, needle in _field_mutations(data):
        p = _write(tfl, name.replace(" ", "_") + ".tflite", mutated)
        with pytest.raises(LatpredError) as e:
            read_model(p)
        msg = str(e.value)
        assert msg.startswith(p + ": ") and needle in msg and "\n" not in msg, (name, msg)
    # the CLI path for one of them (the others share the reader)
    p = str(tfl["dir"] / "pool_kernel_6.7e7.tflite")
    _both_clis(p, "op 4 (MAX_POOL_2D)", "kernel_w 67108866")


def _signature(g):
    """What inspect/predict read of each op: type, category, activation shapes, features, MACs."""
    return [(op.type, op.category, [t.shape for t in g.activation_inputs(op)],
             [g.tensors[t].shape for t in op.outputs], op_features(g, op), op_macs(g, op))
            for op in g.ops]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_single_bit_flips_error_or_leave_the_answer_unchanged(tfl, precision, tmp_path):
    """Item 1: 700 single-bit flips (the issue's experiment, where 69 were accepted with a changed
    answer): each is a LatpredError naming the file, or reads exactly as the original."""
    data = open(tfl[precision], "rb").read()
    ref = _signature(read_model(tfl[precision]))
    rng = random.Random(700)
    p = str(tmp_path / "flip.tflite")
    errors = 0
    for _ in range(700):
        buf = bytearray(data)
        buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        with open(p, "wb") as fh:
            fh.write(buf)
        try:
            g = read_model(p)
        except LatpredError as exc:
            assert str(exc).startswith(p + ": ") and "\n" not in str(exc)
            errors += 1
            continue
        assert _signature(g) == ref
        g.peak_activation_bytes()
    assert errors > 100  # the flips reached the model's structure, not only its weights


# -- ONNX ----------------------------------------------------------------------------------------

def _onnx(tmp_path, name, nodes, inputs, outputs, inits=(), opset=17):
    import onnx
    from onnx import helper
    g = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(m)  # valid ONNX: only latpred's own limits reject it
    p = tmp_path / f"{name}.onnx"
    onnx.save(m, str(p))
    return str(p)


def test_rank_17_with_huge_dims_is_one_error(tmp_path):
    """Item 2: rank 17 with dims of 2^62 ended in OverflowError in the features."""
    from onnx import TensorProto as T, helper
    dims = [2**62] * 17
    p = _onnx(tmp_path, "rank17", [helper.make_node("Relu", ["x"], ["y"])],
              [helper.make_tensor_value_info("x", T.FLOAT, dims)],
              [helper.make_tensor_value_info("y", T.FLOAT, dims)])
    _both_clis(p, "tensor 'x' has rank 17 (latpred reads at most 8)")
    # rank 4: a dim over int32, and dims whose product is over the element bound
    for name, shape, needle in (("dim", [1, 2**62, 1, 1], "dimension 4611686018427387904"),
                                ("elems", [1, 2**20, 2**20, 2**10], "elements")):
        p = _onnx(tmp_path, name, [helper.make_node("Relu", ["x"], ["y"])],
                  [helper.make_tensor_value_info("x", T.FLOAT, shape)],
                  [helper.make_tensor_value_info("y", T.FLOAT, shape)])
        with pytest.raises(LatpredError, match=needle):
            read_model(p)


def _loop_model(tmp_path, trip_count):
    """A Loop with a constant trip count whose result is the shape a Reshape needs."""
    import onnx
    from onnx import TensorProto as T, helper, numpy_helper as nh
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["s_in"], ["s_out"])], "body",
        [helper.make_tensor_value_info("i", T.INT64, []),
         helper.make_tensor_value_info("cond_in", T.BOOL, []),
         helper.make_tensor_value_info("s_in", T.INT64, [4])],
        [helper.make_tensor_value_info("cond_out", T.BOOL, []),
         helper.make_tensor_value_info("s_out", T.INT64, [4])])
    w = nh.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Loop", ["n", "cond", "s0"], ["s"], body=body),
             helper.make_node("Reshape", ["x", "s"], ["r"]),
             helper.make_node("Conv", ["r", "w"], ["y"])]
    return _onnx(tmp_path, "loop", nodes,
                 [helper.make_tensor_value_info("x", T.FLOAT, [1, 768])],
                 [helper.make_tensor_value_info("y", T.FLOAT, [1, 4, 14, 14])],
                 [nh.from_array(np.array(trip_count, np.int64), "n"),
                  nh.from_array(np.array(True), "cond"),
                  nh.from_array(np.array([1, 3, 16, 16], np.int64), "s0"), w])


def _constant_of_shape(tmp_path, name, shape):
    """200-byte model: ConstantOfShape of ``shape`` added to the input."""
    from onnx import TensorProto as T, helper, numpy_helper as nh
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["c"], value=nh.from_array(np.ones(1, np.float32))),
             helper.make_node("Add", ["x", "c"], ["y"])]
    return _onnx(tmp_path, name, nodes, [helper.make_tensor_value_info("x", T.FLOAT, [1])],
                 [helper.make_tensor_value_info("y", T.FLOAT, [None] * len(shape))],
                 [nh.from_array(np.array(shape, np.int64), "s")])


# Runs the CLI with the address space limited (RLIMIT_AS) and reports its peak RSS in a file
# (VmHWM: ru_maxrss would carry over the forking test process's own RSS across exec).
_LIMITED = """
import json, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from latpred.cli import main
try:
    rc = main(sys.argv[3:])
finally:
    status = open("/proc/self/status").read()
    hwm = int(status.split("VmHWM:")[1].split()[0])
    with open(sys.argv[2], "w") as fh:
        json.dump({"maxrss_kb": hwm}, fh)
sys.exit(rc)
"""


def _limited_cli(tmp_path, *args, limit=1 << 30):
    report = tmp_path / "rss.json"
    r = run_python("-c", _LIMITED, limit, report, *args, timeout=CLI_TIMEOUT)
    return r, json.loads(report.read_text())["maxrss_kb"] * 1024


def test_folding_is_bounded_and_says_so(tmp_path):
    """Item 3: a Loop of 1e12 iterations hung `inspect` (folding ran it); a 200-byte
    ConstantOfShape made it allocate 1.2 GB, and 4 TB ended in a swallowed MemoryError, exit 0."""
    # control flow is never executed: the Reshape's shape stays unknown, which is then an error
    p = _loop_model(tmp_path, 10**12)
    _both_clis(p, "Loop node", "not executed")

    # 3e8 floats are not folded: the model reads (the op stays, at run time) with a warning, in
    # a process whose address space is 1 GiB and whose peak RSS stays far below the 1.2 GB
    p = _constant_of_shape(tmp_path, "cos", [300_000_000])
    assert os.path.getsize(p) < 300
    r, rss = _limited_cli(tmp_path, "inspect", "--json", p)
    assert r.returncode == 0, r.stderr
    warning, = r.stderr.strip().splitlines()
    assert "ConstantOfShape" in warning and "folding limit" in warning
    ops = json.loads(r.stdout)["ops"]
    assert [o["type"] for o in ops] == ["ConstantOfShape", "Add"]
    assert ops[1]["outputs"] == [[300_000_000]]
    assert rss < 700 << 20, rss

    # 2^40 elements cannot be read at all: one error, not a swallowed MemoryError
    p = _constant_of_shape(tmp_path, "cos4t", [2**20, 2**20])
    r, rss = _limited_cli(tmp_path, "inspect", p)
    _one_error(r, p, "1099511627776 elements", "ConstantOfShape node 'c' not folded")
    assert rss < 700 << 20, rss


def test_folding_time_limit(tmp_path, monkeypatch, caplog):
    """Item 3: past the time limit nothing more is folded, and the reader says so."""
    import latpred.readers.onnx as onnx_reader
    from onnx import TensorProto as T, helper, numpy_helper as nh
    # Concat of two constants gives the Reshape its shape: folding it is not needed for reading
    nodes = [helper.make_node("Concat", ["a", "b"], ["s"], axis=0),
             helper.make_node("Reshape", ["x", "s"], ["y"])]
    p = _onnx(tmp_path, "timed", nodes, [helper.make_tensor_value_info("x", T.FLOAT, [1, 12])],
              [helper.make_tensor_value_info("y", T.FLOAT, [1, 3, 4])],
              [nh.from_array(np.array([1], np.int64), "a"), nh.from_array(np.array([3, 4], np.int64), "b")])
    assert [op.type for op in read_model(p).ops] == ["Reshape"]
    monkeypatch.setattr(onnx_reader, "FOLD_SECONDS", -1.0)
    with caplog.at_level(logging.WARNING):
        g = read_model(p)
    assert [op.type for op in g.ops] == ["Concat", "Reshape"]
    assert "time limit" in caplog.text
    assert g.tensors[g.ops[1].outputs[0]].shape == (1, 3, 4)  # shape inference still sees it


def test_onnx_abort_in_shape_inference_is_one_error(tmp_path):
    """ONNX's C++ shape inference aborts the process (an assertion on negative dims) on a
    consistent-looking graph whose kernel is larger than its input; latpred survives it."""
    from onnx import TensorProto as T, helper, numpy_helper as nh
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("Slice", ["c", "st", "en", "ax"], ["y"])]
    p = _onnx(tmp_path, "abort", nodes, [helper.make_tensor_value_info("x", T.FLOAT, [1, 1, 4, 4])],
              [helper.make_tensor_value_info("y", T.FLOAT, [None] * 4)],
              [nh.from_array(np.ones((1, 1, 7, 7), np.float32), "w")]
              + [nh.from_array(np.array([v], np.int64), n) for v, n in ((0, "st"), (1, "en"), (2, "ax"))])
    _one_error(run_cli("inspect", p, timeout=CLI_TIMEOUT), p, "shape inference crashed")


def _conv_model(tmp_path, name, x_shape, y_shape, batch_gemm=False):
    from onnx import TensorProto as T, helper, numpy_helper as nh
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"])]
    inits = [nh.from_array(np.ones((2, 3, 3, 3), np.float32), "w")]
    outputs = [helper.make_tensor_value_info("y", T.FLOAT, y_shape)]
    if batch_gemm:  # flatten and a Gemm, batch kept
        nodes += [helper.make_node("Flatten", ["y"], ["f"]),
                  helper.make_node("Gemm", ["f", "g"], ["z"], transB=1)]
        n = int(np.prod(y_shape[1:]))
        inits.append(nh.from_array(np.ones((5, n), np.float32), "g"))
        outputs = [helper.make_tensor_value_info("z", T.FLOAT, [x_shape[0], 5])]
    return _onnx(tmp_path, name, nodes, [helper.make_tensor_value_info("x", T.FLOAT, x_shape)],
                 outputs, inits)


def test_declared_shape_contradicting_the_op_is_an_error(tmp_path, tfl):
    """Item 4: a declared output shape won over shape inference (a conv over 1e9 x 1e9 reported
    36 MACs). The op's arithmetic decides; a contradiction is an error."""
    p = _conv_model(tmp_path, "decl", [1, 3, 64, 64], [1, 2, 2, 2])
    _both_clis(p, "tensor 'y' is declared [1,2,2,2]", "(Conv) computes [1,2,62,62]")
    p = _conv_model(tmp_path, "huge", [1, 3, 10**9, 10**9], [1, 2, 2, 2])
    _both_clis(p, "tensor 'x' has shape [1, 3, 1000000000, 1000000000]")
    # the same contradiction in a .tflite: the conv's output tensor edited to 4x4
    data = open(tfl["fp32"], "rb").read()
    conv, i = _op(data, "CONV_2D")

    def shrink(m):
        out = m.subgraphs[0].tensors[m.subgraphs[0].operators[i].outputs[0]]
        out.shape = np.array([1, 4, 4, 8], dtype=np.int32)
    p = _write(tfl, "declared.tflite", _repack(data, shrink))
    _both_clis(p, f"op {i} (CONV_2D)", "does not follow from input [1, 16, 16, 3]")


def test_conv_macs_count_the_batch(tmp_path):
    """Item 4: conv MACs dropped the batch while Gemm counted it; batch 4 is now 4x batch 1 for
    both, and batch 1 keeps its MACs (H_out * W_out * C_out * KH * KW * C_in / groups)."""
    g1 = read_model(_conv_model(tmp_path, "b1", [1, 3, 16, 16], [1, 2, 14, 14], batch_gemm=True))
    g4 = read_model(_conv_model(tmp_path, "b4", [4, 3, 16, 16], [4, 2, 14, 14], batch_gemm=True))
    conv1, gemm1 = g1.ops[0], g1.ops[2]
    conv4, gemm4 = g4.ops[0], g4.ops[2]
    assert op_macs(g1, conv1) == 14 * 14 * 2 * 3 * 3 * 3
    assert op_macs(g4, conv4) == 4 * op_macs(g1, conv1)
    assert op_macs(g4, gemm4) == 4 * op_macs(g1, gemm1) == 4 * 2 * 14 * 14 * 5
    assert op_features(g4, conv4)["flops"] == op_macs(g4, conv4)


def _interpreter(path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_path=path,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in it.get_tensor_details()}
    return it._get_ops_details(), shapes


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_converter_models_read_unchanged(tfl, precision):
    """The validation accepts what the converter makes: ops and shapes as the LiteRT interpreter
    sees them, and Table 3 features / MACs by hand (batch 1: what the stored data were made of)."""
    g = read_model(tfl[precision])
    ops, shapes = _interpreter(tfl[precision])
    assert [op.type for op in g.ops] == [o["op_name"] for o in ops]
    for op, ref in zip(g.ops, ops):
        assert op.inputs == [int(t) for t in ref["inputs"]]
        assert [g.tensors[t].shape for t in op.outputs] == [shapes[int(t)] for t in ref["outputs"]]
    by_type = {}
    for op in g.ops:
        by_type.setdefault(op.type, []).append(op)
    stem, pointwise = by_type["CONV_2D"]
    f = op_features(g, stem)
    assert f == {"input_hw": 16.0, "input_c": 3.0, "output_hw": 8.0, "stride": 2.0, "kernel_hw": 3.0,
                 "filters": 8.0, "input_size": 768.0, "output_size": 512.0, "kernel_size": 216.0,
                 "flops": 8 * 8 * 8 * 3 * 3 * 3}
    assert op_macs(g, pointwise) == 8 * 8 * 8 * 8
    dw, = by_type["DEPTHWISE_CONV_2D"]
    assert op_macs(g, dw) == 8 * 8 * 8 * 3 * 3
    pool, = by_type["MAX_POOL_2D"]
    assert op_features(g, pool)["flops"] == 4 * 4 * 8 * 2 * 2
    fc, = by_type["FULLY_CONNECTED"]
    assert op_macs(g, fc) == 8 * 4
    r = run_cli("inspect", "--json", tfl[precision], timeout=CLI_TIMEOUT)
    assert r.returncode == 0 and r.stderr == ""
    assert json.loads(r.stdout)["macs"] == 8 * 8 * 8 * 27 + 8 * 8 * 8 * 8 + 8 * 8 * 8 * 9 + 32


def test_torch_export_reads_as_onnx_runtime_runs_it(tmp_path):
    """A real exporter's model (chunk, ceil-mode pooling, dilation, depth multiplier, batch 2)
    passes the checks with the shapes ONNX Runtime computes."""
    import onnxruntime as ort
    import torch
    from torch import nn
    import torch.nn.functional as F

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 16, 3, 2, 1)
            self.c2 = nn.Conv2d(16, 16, 3, 1, 2, dilation=2)
            self.dw = nn.Conv2d(16, 32, 5, 2, 2, groups=16)
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.c2(self.c1(x))), 3, 2, ceil_mode=True)
            a, b = torch.chunk(self.dw(x), 2, dim=1)
            x = torch.cat([a * torch.sigmoid(a), F.leaky_relu(b)], 1)
            return self.fc(F.avg_pool2d(x, 2, 1, ceil_mode=True).mean((2, 3)))

    p = str(tmp_path / "torch.onnx")
    torch.onnx.export(Net().eval(), (torch.randn(2, 3, 33, 47),), p, dynamo=False, opset_version=17)
    g = read_model(p)
    sess = ort.InferenceSession(p, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {sess.get_inputs()[0].name: np.zeros((2, 3, 33, 47), np.float32)})
    assert g.tensors[g.outputs[0]].shape == y.shape == (2, 10)
    assert all(g.tensors[t].shape_known for op in g.ops for t in op.outputs)
    mp = next(op for op in g.ops if op.type == "MaxPool")
    assert g.tensors[mp.outputs[0]].shape == (2, 16, 8, 12)   # ceil((17 - 3) / 2) + 1, 24 -> 12
    cat = next(op for op in g.ops if op.type == "Concat" and op.attrs["axis"] == 1)
    assert [g.tensors[t].shape for t in cat.inputs] == [(2, 16, 4, 6)] * 2


def test_fuzz_findings_reproduced(tmp_path):
    """Reader crashes found by fuzzing, each rebuilt from valid parts."""
    # a PyTorch export whose conv kernel_shape was flipped from 3 to 19 (the weights stay 3x3)
    # made ONNX shape inference abort the process
    from onnx import TensorProto as T, helper, numpy_helper as nh
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 19], pads=[1, 1, 1, 1]),
             helper.make_node("Slice", ["c", "st", "en", "ax"], ["y"])]
    p = _onnx(tmp_path, "ks", nodes, [helper.make_tensor_value_info("x", T.FLOAT, [1, 2, 8, 8])],
              [helper.make_tensor_value_info("y", T.FLOAT, [None] * 4)],
              [nh.from_array(np.ones((2, 2, 3, 3), np.float32), "w")]
              + [nh.from_array(np.array([v], np.int64), n) for v, n in ((0, "st"), (1, "en"), (2, "ax"))])
    with pytest.raises(LatpredError, match=r"kernel_shape \[3, 19\] differs from the weights' \[3, 3\]"):
        read_model(p)


@pytest.mark.parametrize("scale,zero_point,needle", [
    (float("nan"), None, "quantization scale nan"), (-5.7e10, None, "quantization scale -57"),
    (0.0, None, "quantization scale 0.0"), (None, 300, "zero point 300, outside -128..127")])
def test_corrupt_quantization_is_an_error(tfl, scale, zero_point, needle):
    """Fuzz findings (experiments/fuzz.py 0-714, 0-770, 1-279): an int8 model with a scale of
    -5.7e10, 0 or nan was accepted with that scale in its IR."""
    data = open(tfl["int8"], "rb").read()
    conv, i = _op(data, "CONV_2D")

    def corrupt(m):
        q = m.subgraphs[0].tensors[m.subgraphs[0].operators[i].outputs[0]].quantization
        if scale is not None:
            q.scale = [scale]
        if zero_point is not None:
            q.zeroPoint = [zero_point]
    p = _write(tfl, f"quant_{needle.split()[-1]}.tflite", _repack(data, corrupt))
    with pytest.raises(LatpredError, match=needle.replace(".", r"\.")):
        read_model(p)
    assert read_model(tfl["int8"]).tensors[conv.Outputs(0)].quantization[0] > 0
