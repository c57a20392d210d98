"""ONNX reader: ``onnx`` checker and shape inference, then the same IR as .tflite (layout NCHW)."""
from __future__ import annotations

import logging
import os

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from .. import categories
from ..errors import LatpredError
from ..ir import ModelGraph, Op, Tensor

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
        onnx.checker.check_model(model)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LatpredError(f"{path}: ONNX model does not validate: {first}") from None
    return _build(path, model, len(data), input_shape)


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


# Never folded even when their inputs are constant: they are real work on weights, rare in practice.
_NO_FOLD = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def _fold_constants(model) -> None:
    """Evaluate nodes whose inputs are all constant (exporters' shape arithmetic, e.g. PyTorch's Pad
    lowering) with onnx's reference evaluator and replace them by initializers, so shape inference
    sees concrete values and the IR holds only the ops the runtime really executes on activations."""
    from onnx.reference import ReferenceEvaluator

    g = model.graph
    values = {i.name: numpy_helper.to_array(i) for i in g.initializer
              if i.data_location != onnx.TensorProto.EXTERNAL and int(np.prod(i.dims)) <= 4096}
    kept, folded = [], {}
    for node in g.node:
        foldable = node.op_type == "Constant" or (
            node.op_type not in _NO_FOLD and node.input
            and all(n == "" or n in values for n in node.input))
        if foldable:
            try:
                outs = ReferenceEvaluator(node).run(None, {n: values[n] for n in node.input if n})
            except Exception:
                kept.append(node)
                continue
            for name, arr in zip(node.output, outs):
                arr = np.asarray(arr)
                values[name] = arr
                folded[name] = arr
            continue
        kept.append(node)
    if not folded:
        return
    used = {n for node in kept for n in node.input} | {o.name for o in g.output}
    del g.node[:]
    g.node.extend(kept)
    g.initializer.extend(numpy_helper.from_array(arr, name) for name, arr in folded.items() if name in used)
    stale = [vi for vi in g.value_info if vi.name in folded]
    for vi in stale:
        g.value_info.remove(vi)


def _build(path: str, model, file_size: int, input_shape) -> ModelGraph:
    _fix_inputs(path, model, input_shape)
    try:
        _fold_constants(model)
    except Exception as exc:
        raise LatpredError(f"{path}: ONNX constant folding failed: {str(exc).splitlines()[0]}") from None
    try:
        model = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise LatpredError(f"{path}: ONNX shape inference failed: {str(exc).splitlines()[0]}") from None
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
        if shape is None or any(d is None for d in shape):
            prev = tensors.get(i)
            shape = prev.shape if prev is not None else ()
        tensors[i] = Tensor(id=i, name=name, shape=tuple(int(d) for d in shape), dtype=dtype,
                            is_constant=constant)

    for init in g.initializer:
        arr = numpy_helper.to_array(init) if init.data_location != onnx.TensorProto.EXTERNAL else None
        if arr is not None and arr.size <= 64:
            consts[init.name] = arr
        add(init.name, tuple(init.dims), _dtype(init.data_type), True)
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.name in consts or (vi.name in ids and tensors[ids[vi.name]].is_constant):
            continue
        add(vi.name, _dims(vi.type), _dtype(vi.type.tensor_type.elem_type), False)

    ops: list[Op] = []
    for node in g.node:
        if node.op_type == "Constant":
            # Constants are data, not executed work: their outputs become constant tensors.
            attrs = _attrs(node)
            value = attrs.get("value")
            arr = numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(
                next(iter(attrs.values()), 0))
            if arr.size <= 64:
                consts[node.output[0]] = arr
            add(node.output[0], arr.shape, arr.dtype.name, True)
            continue
        for name in list(node.input) + list(node.output):
            if name and name not in ids:
                add(name, None, "float32", False)
        op = Op(index=len(ops), type=node.op_type, category=categories.onnx_category(node.op_type),
                inputs=[tid(n) for n in node.input], outputs=[tid(n) for n in node.output])
        _fill_attrs(op, _attrs(node), node, tensors, ids, consts)
        if op.category == categories.OTHER and node.op_type not in _KNOWN_OTHER:
            log.warning("%s: node %s has type %s, which latpred does not model; category Other",
                        os.path.basename(path), node.name or op.index, node.op_type)
        ops.append(op)
    init_names = {i.name for i in g.initializer}
    inputs = [ids[i.name] for i in g.input if i.name not in init_names and i.name in ids]
    outputs = [ids[o.name] for o in g.output if o.name in ids]
    name = os.path.splitext(os.path.basename(path))[0]
    return ModelGraph(fmt="onnx", layout="NCHW", tensors=tensors, ops=ops, inputs=inputs,
                      outputs=outputs, path=path, file_size=file_size, name=name)


def _fill_attrs(op: Op, attrs: dict, node, tensors, ids, consts) -> None:
    a = op.attrs
    shape = lambda name: tensors[ids[name]].shape if name in ids else ()  # noqa: E731
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
            list(attrs["pads"]) if "pads" in attrs else "VALID")
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
            axes = sorted(int(ax) % len(x) for ax in axes)
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
        rows = int(np.prod(y)) // out_f if y and out_f else 1
        a.update(in_features=int(in_f), out_features=int(out_f), macs=int(rows * in_f * out_f))
    elif t == "Concat":
        a["axis"] = int(attrs.get("axis", 1)) % max(len(shape(node.output[0])), 1)
    elif t == "Split":
        a["axis"] = int(attrs.get("axis", 0)) % max(len(shape(node.input[0])), 1)
        a["num_splits"] = len(node.output)
    elif t == "Pad":
        pads = attrs.get("pads")
        if pads is None and len(node.input) > 1 and node.input[1] in consts:
            pads = consts[node.input[1]].reshape(-1).tolist()
        if pads is not None:
            n = len(pads) // 2
            a["pads"] = [[int(pads[i]), int(pads[i + n])] for i in range(n)]
    if t in ("Relu", "Clip", "Sigmoid", "HardSwish", "LeakyRelu"):
        a["activation"] = t.upper()
