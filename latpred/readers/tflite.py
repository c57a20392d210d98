""".tflite reader through the flatbuffer schema bindings shipped with ai-edge-litert (no TensorFlow).

Uses the lazy accessor API rather than the object API: it reads only what the IR needs and never
copies weight buffers, which keeps parsing a 200-op model in milliseconds.
"""
from __future__ import annotations

import logging
import mmap
import os

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from .. import categories
from ..errors import LatpredError
from ..ir import ModelGraph, Op, Tensor

log = logging.getLogger(__name__)

OPCODE_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
DTYPE_NAMES = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
ACTIVATION_NAMES = {v: k for k, v in vars(schema.ActivationFunctionType).items() if not k.startswith("_")}
PADDING_NAMES = {v: k for k, v in vars(schema.Padding).items() if not k.startswith("_")}
BO = schema.BuiltinOptions

# Fused activation lives in these options tables; (option type, options class).
_OPTIONS = {
    "CONV_2D": (BO.Conv2DOptions, schema.Conv2DOptions),
    "DEPTHWISE_CONV_2D": (BO.DepthwiseConv2DOptions, schema.DepthwiseConv2DOptions),
    "AVERAGE_POOL_2D": (BO.Pool2DOptions, schema.Pool2DOptions),
    "MAX_POOL_2D": (BO.Pool2DOptions, schema.Pool2DOptions),
    "L2_POOL_2D": (BO.Pool2DOptions, schema.Pool2DOptions),
    "FULLY_CONNECTED": (BO.FullyConnectedOptions, schema.FullyConnectedOptions),
    "CONCATENATION": (BO.ConcatenationOptions, schema.ConcatenationOptions),
    "ADD": (BO.AddOptions, schema.AddOptions),
    "SUB": (BO.SubOptions, schema.SubOptions),
    "MUL": (BO.MulOptions, schema.MulOptions),
    "DIV": (BO.DivOptions, schema.DivOptions),
    "SPLIT": (BO.SplitOptions, schema.SplitOptions),
    "SPLIT_V": (BO.SplitVOptions, schema.SplitVOptions),
    "MEAN": (BO.ReducerOptions, schema.ReducerOptions),
}


def _options(op, op_type: str):
    spec = _OPTIONS.get(op_type)
    if spec is None or op.BuiltinOptionsType() != spec[0]:
        return None
    table = op.BuiltinOptions()
    if table is None:
        return None
    opts = spec[1]()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _const_array(model, tensor) -> np.ndarray | None:
    """Small constant tensor values (axes, paddings); None when the data is not inline."""
    buf = model.Buffers(tensor.Buffer())
    if buf is None or buf.DataLength() == 0:
        return None
    raw = buf.DataAsNumpy()
    dtype = {2: np.int32, 4: np.int64}.get(tensor.Type())
    if dtype is None:
        return None
    return np.frombuffer(raw.tobytes(), dtype=dtype).reshape(
        [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else [-1])


_QUANTIZED_TYPES = {schema.TensorType.INT8, schema.TensorType.UINT8, schema.TensorType.INT16, schema.TensorType.INT32,
                    schema.TensorType.INT4}


def _buffer_has_data(buf) -> bool:
    # Models over 2 GB keep data outside the flatbuffer, addressed by offset.
    return buf.DataLength() > 0 or buf.Offset() > 1


def read_tflite(path: str | os.PathLike, data: bytes | None = None) -> ModelGraph:
    """Parse a .tflite file (or its bytes). The file is memory-mapped: weights are never read."""
    path = os.fspath(path)
    if data is None:
        try:
            with open(path, "rb") as fh:
                data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise LatpredError(f"{path}: cannot read ({exc})") from None
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise LatpredError(f"{path}: not a .tflite model (no TFL3 flatbuffer identifier)")
    try:
        return _parse(path, data)
    except LatpredError:
        raise
    except Exception as exc:  # the flatbuffer accessors fail in many ways on corrupt bytes
        raise LatpredError(f"{path}: corrupt .tflite model ({type(exc).__name__}: {exc})") from None


def _parse(path: str, data: bytes) -> ModelGraph:
    model = schema.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() < 1:
        raise LatpredError(f"{path}: .tflite model has no subgraph")
    n_buffers = model.BuffersLength()
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        if code == schema.BuiltinOperator.CUSTOM:
            custom = oc.CustomCode()
            codes.append("CUSTOM:" + (custom.decode(errors="replace") if custom else "?"))
        else:
            codes.append(OPCODE_NAMES.get(code, f"UNKNOWN_{code}"))
    sg = model.Subgraphs(0)
    n_tensors = sg.TensorsLength()
    if n_tensors > len(data):
        raise LatpredError(f"{path}: corrupt .tflite model (tensor count {n_tensors} exceeds file size)")
    tensors: dict[int, Tensor] = {}
    raw_tensors = []
    buffer_has_data: dict[int, bool] = {}
    for i in range(n_tensors):
        t = sg.Tensors(i)
        raw_tensors.append(t)
        shape = tuple(t.ShapeAsNumpy().tolist()) if t.ShapeLength() else ()
        if len(shape) > 8 or any(d < 0 for d in shape):
            sig = tuple(int(d) for d in t.ShapeSignatureAsNumpy()) if t.ShapeSignatureLength() else shape
            raise LatpredError(f"{path}: tensor {i} has unsupported shape {sig}")
        ttype = t.Type()
        dtype = DTYPE_NAMES.get(ttype, f"type{ttype}")
        quant = None
        if ttype in _QUANTIZED_TYPES:  # float tensors carry no quantization worth reading
            q = t.Quantization()
            if q is not None and q.ScaleLength() > 0 and q.ZeroPointLength() > 0:
                quant = (float(q.Scale(0)), int(q.ZeroPoint(0)))
        b = t.Buffer()
        if b not in buffer_has_data:
            buffer_has_data[b] = 0 < b < n_buffers and _buffer_has_data(model.Buffers(b))
        name = t.Name()
        tensors[i] = Tensor(id=i, name=name.decode(errors="replace") if name else f"t{i}",
                            shape=shape, dtype=dtype, is_constant=buffer_has_data[b],
                            quantization=quant)

    def check_ids(ids, what):
        for t in ids:
            if t < -1 or t >= n_tensors:
                raise LatpredError(f"{path}: corrupt .tflite model ({what} refers to tensor {t})")
        return ids

    ops: list[Op] = []
    for i in range(sg.OperatorsLength()):
        o = sg.Operators(i)
        idx = o.OpcodeIndex()
        if idx >= len(codes):
            raise LatpredError(f"{path}: corrupt .tflite model (operator {i} has opcode {idx})")
        op_type = codes[idx]
        ins = check_ids([int(x) for x in o.InputsAsNumpy()] if o.InputsLength() else [], "an op input")
        outs = check_ids([int(x) for x in o.OutputsAsNumpy()] if o.OutputsLength() else [], "an op output")
        op = Op(index=i, type=op_type, category=categories.tflite_category(op_type), inputs=ins, outputs=outs)
        _fill_attrs(model, raw_tensors, tensors, op, o)
        if op.category == categories.OTHER and op_type not in _KNOWN_OTHER:
            log.warning("%s: op %d has type %s, which latpred does not model; category Other",
                        os.path.basename(path), i, op_type)
        ops.append(op)
    inputs = check_ids([int(x) for x in sg.InputsAsNumpy()] if sg.InputsLength() else [], "graph input")
    outputs = check_ids([int(x) for x in sg.OutputsAsNumpy()] if sg.OutputsLength() else [], "graph output")
    name = os.path.splitext(os.path.basename(path))[0] if path else None
    return ModelGraph(fmt="tflite", layout="NHWC", tensors=tensors, ops=ops, inputs=inputs,
                      outputs=outputs, path=path, file_size=len(data), name=name)


# Ops that are expected in converter output and deliberately left in category Other (no warning).
_KNOWN_OTHER = {"RESHAPE", "TRANSPOSE", "SOFTMAX", "QUANTIZE", "DEQUANTIZE", "SQUEEZE",
                "STRIDED_SLICE", "SLICE", "GATHER", "SHAPE", "PACK", "UNPACK", "EXPAND_DIMS",
                "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "CAST", "LOG_SOFTMAX", "SUM",
                "REDUCE_MAX", "TRANSPOSE_CONV", "BROADCAST_TO", "TILE", "ARG_MAX", "DEPTH_TO_SPACE",
                "SPACE_TO_DEPTH", "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "L2_NORMALIZATION"}


def _fill_attrs(model, raw_tensors, tensors, op: Op, o) -> None:
    a = op.attrs
    opts = _options(o, op.type)
    if opts is not None and hasattr(opts, "FusedActivationFunction"):
        a["activation"] = ACTIVATION_NAMES.get(opts.FusedActivationFunction(), "NONE")
    t = op.type
    if t in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(op.inputs) >= 2 and op.inputs[1] >= 0:
        w = tensors[op.inputs[1]].shape  # CONV_2D: [O, KH, KW, I]; DEPTHWISE: [1, KH, KW, O]
        x = tensors[op.inputs[0]].shape
        cin = x[-1] if x else 1
        a["kernel_h"], a["kernel_w"] = (w[1], w[2]) if len(w) == 4 else (1, 1)
        if opts is not None:
            a["stride_h"], a["stride_w"] = opts.StrideH(), opts.StrideW()
            a["dilation_h"], a["dilation_w"] = opts.DilationHFactor(), opts.DilationWFactor()
            a["padding"] = PADDING_NAMES.get(opts.Padding(), "SAME")
        if t == "CONV_2D":
            filter_in = w[3] if len(w) == 4 else cin
            a["groups"] = max(cin // filter_in, 1) if filter_in else 1
            a["filters"] = w[0] if w else 0
        else:
            a["groups"] = cin
            a["filters"] = w[3] if len(w) == 4 else cin
            if opts is not None:
                a["depth_multiplier"] = opts.DepthMultiplier()
        op.category = categories.conv_category(a["groups"], cin, a["filters"])
        if t == "DEPTHWISE_CONV_2D":
            op.category = categories.DEPTHWISE_CONV2D
    elif t in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D") and opts is not None:
        a.update(kernel_h=opts.FilterHeight(), kernel_w=opts.FilterWidth(),
                 stride_h=opts.StrideH(), stride_w=opts.StrideW(),
                 padding=PADDING_NAMES.get(opts.Padding(), "SAME"),
                 pool="max" if t == "MAX_POOL_2D" else "avg")
    elif t in ("FULLY_CONNECTED", "BATCH_MATMUL") and len(op.inputs) >= 2:
        w = tensors[op.inputs[1]].shape
        x = tensors[op.inputs[0]].shape
        y = tensors[op.outputs[0]].shape if op.outputs else ()
        if t == "FULLY_CONNECTED" and len(w) == 2:
            out_f, in_f = w
        else:
            in_f, out_f = (x[-1] if x else 1), (y[-1] if y else 1)
        rows = (int(np.prod(y)) // out_f) if y and out_f else 1
        a.update(in_features=int(in_f), out_features=int(out_f), macs=int(rows * in_f * out_f))
    elif t == "CONCATENATION" and opts is not None:
        rank = len(tensors[op.outputs[0]].shape) if op.outputs else 4
        a["axis"] = opts.Axis() % max(rank, 1)
    elif t in ("SPLIT", "SPLIT_V"):
        if opts is not None:
            a["num_splits"] = opts.NumSplits()
        axis_input = op.inputs[0] if t == "SPLIT" else (op.inputs[2] if len(op.inputs) > 2 else -1)
        if axis_input >= 0:
            v = _const_array(model, raw_tensors[axis_input])
            data_input = op.inputs[1] if t == "SPLIT" else op.inputs[0]
            rank = len(tensors[data_input].shape) if len(op.inputs) > 1 else 4
            if v is not None and v.size:
                a["axis"] = int(v.reshape(-1)[0]) % max(rank, 1)
    elif t == "MEAN" and len(op.inputs) >= 2:
        v = _const_array(model, raw_tensors[op.inputs[1]])
        x = tensors[op.inputs[0]].shape
        if v is not None:
            axes = sorted(int(ax) % max(len(x), 1) for ax in v.reshape(-1))
            a["axes"] = axes
            if len(x) == 4:
                a["kernel_h"] = x[1] if 1 in axes else 1
                a["kernel_w"] = x[2] if 2 in axes else 1
        if opts is not None:
            a["keepdims"] = bool(opts.KeepDims())
    elif t in ("PAD", "PADV2", "MIRROR_PAD") and len(op.inputs) >= 2:
        v = _const_array(model, raw_tensors[op.inputs[1]])
        if v is not None:
            a["pads"] = v.reshape(-1, 2).tolist()
        if t == "PADV2" and len(op.inputs) >= 3 and op.inputs[2] >= 0:
            c = _const_array(model, raw_tensors[op.inputs[2]])
            if c is not None and c.size:
                a["pad_value"] = float(c.reshape(-1)[0])
                q = tensors[op.outputs[0]].quantization if op.outputs else None
                a["pad_zero_point"] = float(q[1]) if q else 0.0
