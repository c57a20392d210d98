"""ONNX reader: ``onnx`` checker and shape inference, then the same IR as .tflite (layout NCHW)."""
from __future__ import annotations

import logging
import math
import os
import select
import signal
import threading
import time
from contextlib import contextmanager

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from .. import categories
from ..errors import LatpredError
from ..ir import ModelGraph, Op, Tensor
from .validate import check_arity, check_shape, validate_graph

log = logging.getLogger(__name__)

# Expected in exporter output and left in category Other without a warning.
_KNOWN_OTHER = {"Reshape", "Flatten", "Transpose", "Softmax", "Shape", "Gather", "Unsqueeze",
                "Squeeze", "Cast", "Identity", "Slice", "Resize", "QuantizeLinear",
                "DequantizeLinear", "ConstantOfShape", "Expand", "Dropout", "LogSoftmax",
                "ReduceSum", "ReduceMax", "Range", "Tile", "ConvTranspose", "Where"}


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _dims(type_proto) -> tuple | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                 for d in type_proto.tensor_type.shape.dim)


def _fmt(dims) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def _dtype(elem_type: int) -> str:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except Exception:
        return "float32"


def read_onnx(path: str | os.PathLike, data: bytes | None = None,
              input_shape: tuple[int, ...] | None = None) -> ModelGraph:
    path = os.fspath(path)
    if data is None:
        with open(path, "rb") as fh:
            data = fh.read()
    try:
        model = onnx.load_model_from_string(data)
    except Exception:
        raise LatpredError(f"{path}: not a model latpred can read (neither .tflite nor a valid ONNX protobuf)") from None
    if not model.graph.node:
        raise LatpredError(f"{path}: not a model latpred can read (no ONNX graph nodes; neither .tflite nor ONNX)")
    try:
        _isolated(path, "the ONNX checker", lambda: onnx.checker.check_model(model) or b"")
    except _ChildError as exc:
        raise LatpredError(f"{path}: ONNX model does not validate: {exc}") from None
    try:
        return _build(path, model, len(data), input_shape)
    except LatpredError:
        raise
    except Exception as exc:  # anything the checks above let through must still be one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise LatpredError(f"{path}: cannot read ONNX model ({type(exc).__name__}: {first})") from None


def _check_window_attrs(path: str, node, weights: dict) -> None:
    """Kernel, stride, dilation and pads of a Conv/pool node, before any inference uses them."""
    from .validate import MAX_WINDOW
    at = _attrs(node)
    where = f"{path}: node '{node.name or node.output[0]}' ({node.op_type})"
    for key, lo in (("kernel_shape", 1), ("strides", 1), ("dilations", 1), ("pads", 0)):
        vals = [int(v) for v in at.get(key, [])]
        if any(not lo <= v <= MAX_WINDOW for v in vals):
            raise LatpredError(f"{where}: {key} {vals} are not in {lo}..{MAX_WINDOW}")
    w = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
    ks = [int(v) for v in at.get("kernel_shape", [])]
    if w is not None and ks and tuple(ks) != w[2:]:
        raise LatpredError(f"{where}: kernel_shape {ks} differs from the weights' {list(w[2:])}")


def _check_declared_shapes(path: str, model) -> None:
    """Bounds on every shape the file states, before folding or inference compute with them."""
    g = model.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        dims = _dims(vi.type)
        if dims is not None:
            check_shape(path, f"tensor '{vi.name}'", dims)
    for init in g.initializer:
        check_shape(path, f"initializer '{init.name}'", tuple(init.dims))
    weights = {i.name: tuple(i.dims) for i in g.initializer}
    for node in g.node:
        if node.op_type in ("Conv", "MaxPool", "AveragePool"):
            _check_window_attrs(path, node, weights)
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                check_shape(path, f"attribute '{a.name}' of node '{node.name}'", tuple(a.t.dims))
            elif a.type == onnx.AttributeProto.SPARSE_TENSOR:
                check_shape(path, f"attribute '{a.name}' of node '{node.name}'",
                            tuple(a.sparse_tensor.dims))


def _fix_inputs(path: str, model, input_shape) -> None:
    init_names = {i.name for i in model.graph.initializer}
    real_inputs = [i for i in model.graph.input if i.name not in init_names]
    for inp in real_inputs:
        dims = inp.type.tensor_type.shape.dim
        symbolic = [d for d in dims if not (d.HasField("dim_value") and d.dim_value > 0)]
        if not symbolic:
            continue
        if input_shape is None or len(real_inputs) != 1:
            shown = ",".join(str(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0
                             else (d.dim_param or "?") for d in dims)
            raise LatpredError(f"{path}: input '{inp.name}' has symbolic shape [{shown}]; "
                               f"give a fixed one with --input-shape, e.g. 1,3,224,224")
        if len(input_shape) != len(dims):
            raise LatpredError(f"{path}: --input-shape has {len(input_shape)} dims but input "
                               f"'{inp.name}' has {len(dims)}")
        for d, v in zip(dims, input_shape):
            if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != v:
                raise LatpredError(f"{path}: --input-shape {input_shape} disagrees with the fixed "
                                   f"shape of input '{inp.name}'")
            d.ClearField("dim_param")
            d.dim_value = int(v)


# Never folded even when their inputs are constant: real work on weights (or, for the heavy ones,
# work that grows faster than their inputs and outputs), rare in exporters' shape arithmetic.
_NO_FOLD = {"Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "QLinearConv",
            "MatMulInteger", "QLinearMatMul", "Einsum", "DFT", "STFT", "LSTM", "GRU", "RNN",
            "MaxRoiPool", "RoiAlign", "NonMaxSuppression", "Col2Im", "DeformConv",
            "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
            "Multinomial", "Bernoulli"}
# Bounds on what folding may run and allocate: a hostile model can ask a constant-input node for
# any amount of work (ConstantOfShape of 4 TB, a Loop of 1e12 iterations).
FOLD_MAX_ELEMENTS = 1 << 20          # per folded output
FOLD_MAX_BYTES = 32 << 20            # all folded outputs together
FOLD_SECONDS = 5.0                   # all folding together
_INPUT_MAX_ELEMENTS = 4096           # initializers taken as folding inputs
# Output size depends on the data; a bound from the input size.
_DATA_DEPENDENT = {"NonZero": lambda a: a.ndim * a.size, "Unique": lambda a: a.size,
                   "Compress": lambda a: a.size}


class _FoldTimeout(BaseException):
    """Raised by the alarm; BaseException so that the evaluator's own handlers do not swallow it."""


@contextmanager
def _time_limit(seconds: float):
    """Interrupt the block after ``seconds`` where a signal can (main thread, no timer of the
    caller running); elsewhere only the checks between nodes apply."""
    usable = (threading.current_thread() is threading.main_thread()
              and hasattr(signal, "setitimer") and signal.getitimer(signal.ITIMER_REAL)[0] == 0)
    if not usable:
        yield
        return

    def alarm(signum, frame):
        raise _FoldTimeout()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _elem_bytes(elem_type: int) -> int:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).itemsize
    except Exception:
        return 8


def _output_bound(node, values: dict, opset: int) -> tuple[int, int] | str:
    """(largest output's elements, all outputs' bytes) of ``node`` on constant inputs, from ONNX
    shape inference on the values, without running it; a reason string when unknown."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
        ins = {n: values[n] for n in node.input if n}
        types = {n: onnx.helper.make_tensor_type_proto(
            onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in ins.items()}
        data = {n: numpy_helper.from_array(a, n) for n, a in ins.items()}
        outs = shape_inference.infer_node_outputs(schema, node, types, data)
    except Exception:
        return "its output shape cannot be inferred"
    largest = total = 0
    for name in node.output:
        tp = outs.get(name)
        if not name:
            continue
        dims = _dims(tp) if tp is not None else None
        if dims is None or any(d is None for d in dims):
            bound = _DATA_DEPENDENT.get(node.op_type)
            if bound is None or not ins:
                return "its output shape depends on values shape inference cannot see"
            n = bound(next(iter(ins.values())))
            elem = 8
        else:
            n = math.prod(dims)
            elem = _elem_bytes(tp.tensor_type.elem_type)
        largest, total = max(largest, n), total + n * elem
    return largest, total


def _constant_elements(node) -> int:
    for a in node.attribute:
        if a.type == onnx.AttributeProto.SPARSE_TENSOR:
            return math.prod(a.sparse_tensor.dims)
    return 0  # dense values are in the file already: decoding them costs what the file holds


class _Budget:
    """What folding may still spend, over all passes on one model."""
    def __init__(self):
        self.bytes = 0
        self.deadline = time.monotonic() + FOLD_SECONDS


def _fold_constants(model, shapes: dict | None = None, budget: _Budget | None = None) -> list[str]:
    """Evaluate nodes whose inputs are all constant (exporters' shape arithmetic, e.g. PyTorch's Pad
    lowering) with onnx's reference evaluator and replace them by initializers, so shape inference
    sees concrete values and the IR holds only the ops the runtime really executes on activations.

    Folding is bounded (control flow is never executed; output sizes, total bytes and time are
    limited): a node it does not fold stays an op of the graph. Returns why nodes were left.

    ``shapes``: static shapes from a previous shape inference; Shape and Size of such tensors are
    constants too (PyTorch lowers torch.chunk through them)."""
    from onnx.reference import ReferenceEvaluator

    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    values = {i.name: numpy_helper.to_array(i) for i in g.initializer
              if i.data_location != onnx.TensorProto.EXTERNAL
              and math.prod(i.dims) <= _INPUT_MAX_ELEMENTS}
    kept, folded, notes = [], {}, []
    budget = budget or _Budget()
    for node in g.node:
        if (shapes and node.op_type in ("Shape", "Size") and node.input
                and node.input[0] in shapes and node.input[0] not in values):
            dims = shapes[node.input[0]]
            if node.op_type == "Size":
                arr = np.array(math.prod(dims), dtype=np.int64)
            else:
                at = _attrs(node)
                arr = np.array(dims[at.get("start", 0):at.get("end", len(dims))], dtype=np.int64)
            values[node.output[0]] = folded[node.output[0]] = arr
            continue
        inputs_constant = node.op_type == "Constant" or (
            node.input and all(n == "" or n in values for n in node.input))
        if not inputs_constant or node.op_type in _NO_FOLD:
            kept.append(node)
            continue
        label = f"{node.op_type} node '{node.name or (node.output[0] if node.output else '?')}'"
        if node.domain not in ("", "ai.onnx") or any(
                a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            notes.append(f"{label} not executed (control flow and custom ops are never folded)")
            kept.append(node)
            continue
        if time.monotonic() > budget.deadline:
            notes.append(f"{label} and later nodes not folded (time limit {FOLD_SECONDS:g} s)")
            kept.append(node)
            continue
        if node.op_type == "Constant":
            n = _constant_elements(node)
            if n > FOLD_MAX_ELEMENTS:
                notes.append(f"{label}: sparse value of {n} elements not expanded "
                             f"(limit {FOLD_MAX_ELEMENTS})")
                kept.append(node)
                continue
            size = 0
        else:
            bound = _output_bound(node, values, opset)
            if isinstance(bound, str):
                notes.append(f"{label} not folded: {bound}")
                kept.append(node)
                continue
            n, size = bound
            if n > FOLD_MAX_ELEMENTS or budget.bytes + size > FOLD_MAX_BYTES:
                notes.append(f"{label} not folded: its output of {n} elements is over the folding "
                             f"limit ({FOLD_MAX_ELEMENTS} per tensor, {FOLD_MAX_BYTES >> 20} MiB in all)")
                kept.append(node)
                continue
        try:
            with _time_limit(budget.deadline - time.monotonic()):
                outs = ReferenceEvaluator(node, opsets={"": opset}).run(
                    None, {n: values[n] for n in node.input if n})
        except _FoldTimeout:
            notes.append(f"{label} and later nodes not folded (time limit {FOLD_SECONDS:g} s)")
            kept.append(node)
            budget.deadline = 0.0
            continue
        except Exception:
            kept.append(node)
            continue
        outs = [np.asarray(arr) for arr in outs]
        if node.op_type != "Constant" and any(arr.size > FOLD_MAX_ELEMENTS for arr in outs):
            kept.append(node)  # inference under-estimated: keep the op, drop the values
            continue
        budget.bytes += sum(arr.nbytes for arr in outs) if node.op_type != "Constant" else 0
        for name, arr in zip(node.output, outs):
            values[name] = arr
            folded[name] = arr
    if not folded:
        return notes
    used = {n for node in kept for n in node.input} | {o.name for o in g.output}
    del g.node[:]
    g.node.extend(kept)
    g.initializer.extend(numpy_helper.from_array(arr, name) for name, arr in folded.items() if name in used)
    stale = [vi for vi in g.value_info if vi.name in folded]
    for vi in stale:
        g.value_info.remove(vi)
    return notes


# Rank-0/1 tensors up to this size may take part in ONNX's data propagation, which materialises a
# value per element (an Add over a 3e8-element vector asks it for gigabytes).
_DATA_PROP_MAX = 1 << 16


class _ChildError(Exception):
    """An exception raised in the isolated child; its message is the child's first line."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ONNX's C++ checker and shape inference abort the process on some corrupt graphs (assertions such
# as std::clamp's on negative dims) and can allocate without bound: they run in a forked child.
ISOLATED_SECONDS = 120.0
_CHILD_EXTRA_MEMORY = 4 << 30


def _isolated(path: str, what: str, fn) -> bytes:
    """``fn()`` (-> bytes) in a forked child under a memory and time limit; its exception comes
    back as _ChildError, a crash or overrun as LatpredError. In-process where fork is missing."""
    if not hasattr(os, "fork"):
        try:
            return fn()
        except Exception as exc:
            raise _ChildError(_first_line(exc)) from None
    import resource
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into the caller's code
        try:
            os.close(r)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)  # the C++ assertion text would be a second stderr line
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            with open("/proc/self/statm") as fh:
                vm = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            want = vm + _CHILD_EXTRA_MEMORY
            if soft == resource.RLIM_INFINITY or soft > want:
                resource.setrlimit(resource.RLIMIT_AS, (want, hard))
            try:
                payload = b"ok" + fn()
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                payload = b"er" + _first_line(exc).encode(errors="replace")
            payload = len(payload).to_bytes(8, "little") + payload  # a cut-off result is no result
            view = memoryview(payload)
            while view:
                view = view[os.write(w, view):]
        finally:
            os._exit(0)
    os.close(w)
    chunks, deadline, done = [], time.monotonic() + ISOLATED_SECONDS, False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                raise LatpredError(f"{path}: {what} did not finish within {ISOLATED_SECONDS:g} s")
            chunk = os.read(r, 1 << 20)
            if not chunk:
                done = True
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        if not done:  # timed out or interrupted: the child must not outlive the call
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if len(data) >= 8 and int.from_bytes(data[:8], "little") == len(data) - 8:
        data = data[8:]
    else:
        data = b""
    if not data.startswith((b"ok", b"er")):
        why = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else "no result"
        raise LatpredError(f"{path}: {what} crashed on this model ({why}); the file is corrupt "
                           f"or hostile")
    if data.startswith(b"er"):
        raise _ChildError(data[2:].decode(errors="replace"))
    return data[2:]


def _strip_shapes(g) -> None:
    del g.value_info[:]
    for o in g.output:
        if o.type.HasField("tensor_type"):
            o.type.tensor_type.ClearField("shape")


def _skeleton(model):
    """The model without its large initializers' data (graph inputs of the same type and shape
    instead): what shape inference reads, without serialising the weights for it."""
    g = model.graph
    light = onnx.ModelProto(ir_version=model.ir_version)
    light.opset_import.extend(model.opset_import)
    light.functions.extend(model.functions)
    lg = light.graph
    lg.name = g.name
    lg.node.extend(g.node)
    lg.input.extend(g.input)
    lg.output.extend(g.output)
    lg.value_info.extend(g.value_info)
    lg.sparse_initializer.extend(g.sparse_initializer)
    listed = {i.name for i in g.input}
    for init in g.initializer:
        if math.prod(init.dims) <= _INPUT_MAX_ELEMENTS:
            lg.initializer.append(init)
        elif init.name not in listed:
            lg.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, init.dims))
    return light


def _infer(path: str, model, data_prop: bool = True):
    """ONNX shape inference; the inferred value_info and output types replace the model's."""
    light = _skeleton(model)

    def run() -> bytes:
        res = shape_inference.infer_shapes(light, strict_mode=False, data_prop=data_prop)
        out = onnx.GraphProto()
        out.value_info.extend(res.graph.value_info)
        out.output.extend(res.graph.output)
        return out.SerializeToString()
    try:
        inferred = onnx.GraphProto.FromString(_isolated(path, "ONNX shape inference", run))
    except _ChildError as exc:
        raise LatpredError(f"{path}: ONNX shape inference failed: {exc}") from None
    g = model.graph
    del g.value_info[:]
    g.value_info.extend(inferred.value_info)
    for o, new in zip(g.output, inferred.output):
        o.CopyFrom(new)
    return model


def _infer_shapes(path: str, model):
    """Shape inference where the ops' own shape arithmetic wins: infer without the shapes the file
    declares for computed tensors, and reject a declared shape that contradicts the result. Declared
    shapes are kept only for tensors inference cannot compute (outputs of custom ops)."""
    g = model.graph
    declared = {vi.name: _dims(vi.type) for vi in list(g.value_info) + list(g.output)}
    declared = {k: v for k, v in declared.items() if v is not None and any(d is not None for d in v)}
    saved_vi = [onnx.ValueInfoProto.FromString(vi.SerializeToString()) for vi in g.value_info]
    saved_out = [onnx.TypeProto.FromString(o.type.SerializeToString()) for o in g.output]
    _strip_shapes(g)
    _infer(path, model, data_prop=False)
    prop = _data_prop_safe(model)
    if prop:
        _strip_shapes(g)
        _infer(path, model)
    if not declared:
        return model, prop
    inferred = {vi.name: _dims(vi.type) for vi in list(g.value_info) + list(g.output)}
    producer = {o: n.op_type for n in g.node for o in n.output}
    unresolved = False
    for name, want in declared.items():
        got = inferred.get(name)
        if got is None or any(d is None for d in got):
            unresolved = True
            continue
        if len(got) != len(want) or any(w is not None and w != d for w, d in zip(want, got)):
            raise LatpredError(f"{path}: tensor '{name}' is declared {_fmt(want)} but its producer "
                               f"({producer.get(name, 'graph input')}) computes {_fmt(got)}")
    if not unresolved:
        return model, prop
    _strip_shapes(g)
    g.value_info.extend(saved_vi)
    for o, t in zip(g.output, saved_out):
        o.type.CopyFrom(t)
    return _infer(path, model, prop), prop


def _data_prop_safe(inferred) -> bool:
    """Whether every rank-0/1 tensor (the ones data propagation computes values of) is small."""
    g = inferred.graph
    shapes = [_dims(vi.type) for vi in list(g.input) + list(g.value_info) + list(g.output)]
    shapes += [tuple(i.dims) for i in g.initializer]
    for dims in shapes:
        if dims is not None and len(dims) <= 1:
            if any(d is None for d in dims) or math.prod(dims) > _DATA_PROP_MAX:
                return False
    return True


def _fold(path: str, model, shapes, budget) -> list[str]:
    try:
        return _fold_constants(model, shapes, budget)
    except Exception as exc:
        raise LatpredError(f"{path}: ONNX constant folding failed: {str(exc).splitlines()[0]}") from None


def _static_shapes(model) -> dict[str, tuple[int, ...]]:
    g = model.graph
    out = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        dims = _dims(vi.type)
        if dims is not None and all(d is not None for d in dims):
            out[vi.name] = dims
    return out


def _modelled_shapes_missing(model, shapes: dict) -> bool:
    """Whether an op latpred models reads or writes a tensor of unknown shape."""
    init = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        if categories.onnx_category(node.op_type) == categories.OTHER and node.op_type != "Conv":
            continue
        names = [n for n in node.input if n] + list(node.output[:1])
        if any(n not in shapes and n not in init for n in names):
            return True
    return False


def _build(path: str, model, file_size: int, input_shape) -> ModelGraph:
    _check_declared_shapes(path, model)
    _fix_inputs(path, model, input_shape)
    for inp in model.graph.input:
        if _dims(inp.type) is not None:
            check_shape(path, f"input '{inp.name}'", _dims(inp.type))
    budget = _Budget()
    notes = dict.fromkeys(_fold(path, model, None, budget))
    model, data_prop = _infer_shapes(path, model)
    # Shapes inference could not compute (shape arithmetic through ops its data propagation does
    # not cover, e.g. Div) come from folding again with the shapes it did compute.
    for _ in range(8):
        shapes = _static_shapes(model)
        if not _modelled_shapes_missing(model, shapes):
            break
        before = len(model.graph.node)
        notes.update(dict.fromkeys(_fold(path, model, shapes, budget)))
        if len(model.graph.node) == before:
            break
        model = _infer(path, model, data_prop)
    notes = list(notes)
    # Warnings wait for the verdict: a model that fails is one error line, with the note in it.
    warnings: list[tuple] = []
    if notes:
        more = f" (and {len(notes) - 2} more)" if len(notes) > 2 else ""
        warnings.append(("%s: constant folding left %d node(s) to run time: %s%s",
                         os.path.basename(path), len(notes), "; ".join(notes[:2]), more))
    try:
        graph = validate_graph(_graph(path, model, file_size, warnings))
    except LatpredError as exc:
        if notes:  # the model may be unreadable only because folding gave up
            raise LatpredError(f"{exc} (constant folding left nodes to run time: {notes[0]})") from None
        raise
    for w in warnings:
        log.warning(*w)
    return graph


def _graph(path: str, model, file_size: int, warnings: list) -> ModelGraph:
    g = model.graph
    ids: dict[str, int] = {}
    tensors: dict[int, Tensor] = {}
    consts: dict[str, np.ndarray] = {}

    def tid(name: str) -> int:
        if name == "":
            return -1
        if name not in ids:
            ids[name] = len(ids)
        return ids[name]

    def add(name: str, shape, dtype: str, constant: bool):
        i = tid(name)
        known = True
        if shape is None or any(d is None for d in shape):
            prev = tensors.get(i)
            shape, known = (prev.shape, prev.shape_known) if prev is not None else ((), False)
        shape = tuple(int(d) for d in shape)
        check_shape(path, f"tensor '{name}'", shape)
        tensors[i] = Tensor(id=i, name=name, shape=shape, dtype=dtype, is_constant=constant,
                            shape_known=known)

    for init in g.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL and math.prod(init.dims) <= 64:
            consts[init.name] = numpy_helper.to_array(init)
        add(init.name, tuple(init.dims), _dtype(init.data_type), True)
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.name in consts or (vi.name in ids and tensors[ids[vi.name]].is_constant):
            continue
        add(vi.name, _dims(vi.type), _dtype(vi.type.tensor_type.elem_type), False)

    ops: list[Op] = []
    for node in g.node:
        if node.op_type == "Constant":
            # Constants are data, not executed work: their outputs become constant tensors.
            shape, dtype = _constant_shape(node)
            attrs = _attrs(node)
            if math.prod(shape) <= 64 and "sparse_value" not in attrs:
                value = attrs.get("value")
                consts[node.output[0]] = numpy_helper.to_array(value) if isinstance(
                    value, onnx.TensorProto) else np.asarray(next(iter(attrs.values()), 0))
            add(node.output[0], shape, dtype, True)
            continue
        # Trailing omitted outputs are dropped; one in the middle gets a placeholder tensor, so
        # that every op output is a tensor of the IR.
        outputs = list(node.output)
        while outputs and not outputs[-1]:
            outputs.pop()
        outputs = [n or f"{node.name or node.op_type}:omitted:{k}:{len(ops)}" for k, n in enumerate(outputs)]
        for name in list(node.input) + outputs:
            if name and name not in ids:
                add(name, None, "float32", False)
        op = Op(index=len(ops), type=node.op_type, category=categories.onnx_category(node.op_type),
                inputs=[tid(n) for n in node.input], outputs=[tid(n) for n in outputs])
        check_arity(path, op)
        try:
            _fill_attrs(op, _attrs(node), node, tensors, ids, consts)
        except ValueError as exc:
            raise LatpredError(f"{path}: op {op.index} ({op.type}): {exc}") from None
        if op.category == categories.OTHER and node.op_type not in _KNOWN_OTHER:
            warnings.append(("%s: node %s has type %s, which latpred does not model; category Other",
                             os.path.basename(path), node.name or op.index, node.op_type))
        ops.append(op)
    init_names = {i.name for i in g.initializer}
    inputs = [ids[i.name] for i in g.input if i.name not in init_names and i.name in ids]
    outputs = [ids[o.name] for o in g.output if o.name in ids]
    name = os.path.splitext(os.path.basename(path))[0]
    return ModelGraph(fmt="onnx", layout="NCHW", tensors=tensors, ops=ops, inputs=inputs,
                      outputs=outputs, path=path, file_size=file_size, name=name)


def _constant_shape(node) -> tuple[tuple[int, ...], str]:
    """Shape and dtype of a Constant node's value, without expanding it."""
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            return tuple(a.t.dims), _dtype(a.t.data_type)
        if a.type == onnx.AttributeProto.SPARSE_TENSOR:
            return tuple(a.sparse_tensor.dims), _dtype(a.sparse_tensor.values.data_type)
        if a.type in (onnx.AttributeProto.FLOATS, onnx.AttributeProto.INTS, onnx.AttributeProto.STRINGS):
            n = len(a.floats) if a.type == onnx.AttributeProto.FLOATS else (
                len(a.ints) if a.type == onnx.AttributeProto.INTS else len(a.strings))
            return (n,), {onnx.AttributeProto.FLOATS: "float32", onnx.AttributeProto.INTS: "int64"}.get(a.type, "object")
        if a.type in (onnx.AttributeProto.FLOAT, onnx.AttributeProto.INT, onnx.AttributeProto.STRING):
            return (), {onnx.AttributeProto.FLOAT: "float32", onnx.AttributeProto.INT: "int64"}.get(a.type, "object")
    return (), "float32"


def _axis(value: int, rank: int | None, what: str = "axis") -> int:
    # ONNX allows -rank..rank-1; anything else is an error, not an axis to wrap around. An unknown
    # rank (shape inference gave up) is reported by the validator instead.
    if rank is None:
        return int(value)
    if not -max(rank, 1) <= int(value) < max(rank, 1):
        raise ValueError(f"{what} {value} is out of range for rank {rank}")
    return int(value) % max(rank, 1)


def _fill_attrs(op: Op, attrs: dict, node, tensors, ids, consts) -> None:
    a = op.attrs
    shape = lambda name: tensors[ids[name]].shape if name in ids else ()  # noqa: E731
    rank = lambda name: len(tensors[ids[name]].shape) if name in ids and tensors[ids[name]].shape_known else None  # noqa: E731
    t = node.op_type
    if t in ("Conv", "MaxPool", "AveragePool"):
        x = shape(node.input[0])
        if t == "Conv":
            w = shape(node.input[1]) if len(node.input) > 1 else ()
            ks = attrs.get("kernel_shape") or (list(w[2:]) if len(w) == 4 else [1, 1])
            groups = int(attrs.get("group", 1))
            cin = x[1] if len(x) >= 2 else 1
            cout = w[0] if w else 0
            a.update(groups=groups, filters=int(cout))
            op.category = categories.conv_category(groups, cin, cout)
        else:
            ks = attrs.get("kernel_shape", [1, 1])
            a["pool"] = "max" if t == "MaxPool" else "avg"
        ks = list(ks) + [1] * (2 - len(ks))
        st = list(attrs.get("strides", [1, 1])) + [1, 1]
        dl = list(attrs.get("dilations", [1, 1])) + [1, 1]
        a.update(kernel_h=int(ks[0]), kernel_w=int(ks[1]), stride_h=int(st[0]), stride_w=int(st[1]),
                 dilation_h=int(dl[0]), dilation_w=int(dl[1]))
        auto = attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        a["padding"] = "SAME" if auto.startswith("SAME") else (
            list(attrs["pads"]) if "pads" in attrs and auto == "NOTSET" else "VALID")
        if t != "Conv" and attrs.get("ceil_mode"):
            a["ceil_mode"] = 1
    elif t in ("GlobalAveragePool", "GlobalMaxPool"):
        x = shape(node.input[0])
        if len(x) == 4:
            a.update(kernel_h=x[2], kernel_w=x[3], stride_h=1, stride_w=1, axes=[2, 3])
        if t == "GlobalMaxPool":
            a["pool"] = "max"
    elif t == "ReduceMean":
        x = shape(node.input[0])
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1] in consts:
            axes = consts[node.input[1]].reshape(-1).tolist()
        if axes is not None and x:
            axes = sorted({_axis(ax, len(x)) for ax in axes})
            a["axes"] = axes
            if len(x) == 4:
                a["kernel_h"] = x[2] if 2 in axes else 1
                a["kernel_w"] = x[3] if 3 in axes else 1
        a["keepdims"] = bool(attrs.get("keepdims", 1))
    elif t in ("Gemm", "MatMul"):
        x, w = shape(node.input[0]), shape(node.input[1])
        y = shape(node.output[0])
        if t == "Gemm" and len(w) == 2:
            out_f, in_f = (w[0], w[1]) if attrs.get("transB", 0) else (w[1], w[0])
        else:
            in_f = x[-1] if x else 1
            out_f = y[-1] if y else 1
        if t == "Gemm":
            if attrs.get("transA", 0):
                a["trans_a"] = 1
            if attrs.get("transB", 0):
                a["trans_b"] = 1
        rows = math.prod(y) // out_f if y and out_f else 1
        a.update(in_features=int(in_f), out_features=int(out_f), macs=int(rows * in_f * out_f))
    elif t == "Concat":
        a["axis"] = _axis(attrs.get("axis", 1), rank(node.output[0]))
    elif t == "Split":
        a["axis"] = _axis(attrs.get("axis", 0), rank(node.input[0]))
        a["num_splits"] = len(node.output)
    elif t == "Pad":
        pads = attrs.get("pads")
        if pads is None and len(node.input) > 1 and node.input[1] in consts:
            pads = consts[node.input[1]].reshape(-1).tolist()
        if len(node.input) > 3 and node.input[3]:
            pads = None  # pads of the listed axes only (opset 18): not mapped to dims here
        if pads is not None:
            n = len(pads) // 2
            a["pads"] = [[int(pads[i]), int(pads[i + n])] for i in range(n)]
    if t in ("Relu", "Clip", "Sigmoid", "HardSwish", "LeakyRelu"):
        a["activation"] = t.upper()
