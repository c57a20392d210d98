""".tflite reader through the flatbuffer schema bindings shipped with ai-edge-litert (no TensorFlow).

Uses the lazy accessor API rather than the object API: it reads only what the IR needs and never
copies weight buffers, which keeps parsing a 200-op model in milliseconds.
"""
from __future__ import annotations

import logging
import math
import mmap
import os

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from .. import categories
from ..errors import LatpredError
from ..ir import ModelGraph, Op, Tensor
from .validate import check_arity, check_shape, validate_graph

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
    "BATCH_MATMUL": (BO.BatchMatMulOptions, schema.BatchMatMulOptions),
    "STRIDED_SLICE": (BO.StridedSliceOptions, schema.StridedSliceOptions),
}
# Their geometry lives only in the options: without them the op is not defined.
_NEEDS_OPTIONS = {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"}
_OPTION_TYPE_NAMES = {v: k for k, v in vars(BO).items() if not k.startswith("_")}
# Bits per element of constant data, to check a buffer against its tensor's shape; sub-byte types
# may be stored packed or one per byte.
_BITS = {"float32": (32,), "float16": (16,), "int32": (32,), "uint8": (8,), "int64": (64,),
         "bool": (8,), "int16": (16,), "complex64": (64,), "int8": (8,), "float64": (64,),
         "complex128": (128,), "uint64": (64,), "uint32": (32,), "uint16": (16,), "bfloat16": (16,),
         "int4": (4, 8), "uint4": (4, 8), "int2": (2, 8), "float8_e4m3fn": (8,), "float8_e5m2": (8,)}


def _table_ok(obj, what: str):
    """A table's vtable must place every field inside the table: a flipped vtable entry would
    make an accessor read a neighbouring field's bytes (a pool kernel read from its padding)."""
    tab = obj._tab
    buf = tab.Bytes
    vt = tab.Pos - int.from_bytes(buf[tab.Pos:tab.Pos + 4], "little", signed=True)
    if not 0 <= vt <= len(buf) - 4:
        raise ValueError(f"{what}: vtable outside the file")
    vt_size = int.from_bytes(buf[vt:vt + 2], "little")
    table_size = int.from_bytes(buf[vt + 2:vt + 4], "little")
    if vt_size < 4 or vt_size % 2 or vt + vt_size > len(buf) or tab.Pos + table_size > len(buf):
        raise ValueError(f"{what}: vtable of size {vt_size} is corrupt")
    for k in range(vt + 4, vt + vt_size, 2):
        off = int.from_bytes(buf[k:k + 2], "little")
        if off and not 4 <= off < table_size:
            raise ValueError(f"{what}: field at offset {off} lies outside its {table_size}-byte table")
    return obj


def _options(op, op_type: str):
    spec = _OPTIONS.get(op_type)
    if spec is None:
        return None
    kind = op.BuiltinOptionsType()
    if kind != spec[0]:
        if kind != BO.NONE:  # a flipped opcode or options type: the table belongs to another op
            name = _OPTION_TYPE_NAMES.get(kind, f"type {kind}")
            raise ValueError(f"has {name} options, expected {_OPTION_TYPE_NAMES[spec[0]]}")
        if op_type in _NEEDS_OPTIONS:
            raise ValueError(f"has no {_OPTION_TYPE_NAMES[spec[0]]} (stride, padding)")
        return None
    table = op.BuiltinOptions()
    if table is None:
        return None
    opts = spec[1]()
    opts.Init(table.Bytes, table.Pos)
    return _table_ok(opts, "options")


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


def _axis(value: int, rank: int, what: str) -> int:
    # The runtime accepts -rank..rank-1; anything else is corruption, not an axis to wrap.
    if not -max(rank, 1) <= value < max(rank, 1):
        raise ValueError(f"{what} {value} is out of range for rank {rank}")
    return value % max(rank, 1)


def _check_buffer(i: int, tensor, t: Tensor, buf) -> None:
    """A constant's data must be exactly as long as its shape and type say."""
    bits = _BITS.get(t.dtype)
    if bits is None or tensor.Sparsity() is not None:
        return  # strings, resources, sparse weights: variable size
    size = buf.DataLength() if buf.DataLength() > 0 else buf.Size()
    n = t.num_elements
    if size not in {(n * b + 7) // 8 for b in bits}:
        raise LatpredError(f"tensor {i} ('{t.name}') has shape {list(t.shape)} of {t.dtype} but "
                           f"its buffer holds {size} bytes")


_QUANTIZED_TYPES = {schema.TensorType.INT8, schema.TensorType.UINT8, schema.TensorType.INT16, schema.TensorType.INT32,
                    schema.TensorType.INT4}


_ZERO_POINT_RANGE = {schema.TensorType.INT8: (-128, 127), schema.TensorType.UINT8: (0, 255),
                     schema.TensorType.INT16: (-32768, 32767), schema.TensorType.INT4: (-8, 7)}


def _quantization(path: str, i: int, q, ttype: int, n_scales: int, n_zps: int) -> tuple[float, int]:
    """(scale, zero point) of channel 0, after checking every scale is finite and positive and
    every zero point is representable in the tensor's type."""
    lo, hi = _ZERO_POINT_RANGE.get(ttype, (-2**63, 2**63 - 1))
    if n_scales == 1:  # per-tensor (most tensors) without numpy: parsing is hot
        scale = q.Scale(0)
        ok = math.isfinite(scale) and scale > 0
    else:
        scales = q.ScaleAsNumpy()
        scale = float(scales[0])
        ok = bool(np.isfinite(scales).all() and (scales > 0).all())
        if not ok:
            scale = float(scales[~(np.isfinite(scales) & (scales > 0))][0])
    if not ok:
        raise LatpredError(f"{path}: corrupt .tflite model (tensor {i} has quantization scale "
                           f"{scale}; scales must be finite and > 0)")
    if n_zps == 1:
        zp = zmin = zmax = q.ZeroPoint(0)
    else:
        zps = q.ZeroPointAsNumpy()
        zp, zmin, zmax = int(zps[0]), int(zps.min()), int(zps.max())
    if zmin < lo or zmax > hi:
        raise LatpredError(f"{path}: corrupt .tflite model (tensor {i} has zero point "
                           f"{zmin if zmin < lo else zmax}, outside {lo}..{hi})")
    return float(scale), int(zp)


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
    model = _table_ok(schema.Model.GetRootAs(data, 0), "model")
    if model.SubgraphsLength() < 1:
        raise LatpredError(f"{path}: .tflite model has no subgraph")
    n_buffers = model.BuffersLength()
    codes: list[str | None] = []
    code_errors: dict[int, str] = {}
    placeholder = schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES
    for i in range(model.OperatorCodesLength()):
        oc = _table_ok(model.OperatorCodes(i), f"operator code {i}")
        builtin, deprecated = oc.BuiltinCode(), oc.DeprecatedBuiltinCode()
        code = max(builtin, deprecated)
        if code == schema.BuiltinOperator.CUSTOM:
            custom = oc.CustomCode()
            codes.append("CUSTOM:" + (custom.decode(errors="replace") if custom else "?"))
        elif code in OPCODE_NAMES and code != placeholder:
            codes.append(OPCODE_NAMES[code])
        else:
            codes.append(None)
            code_errors[i] = f"unknown builtin opcode {code}"
        # The schema keeps both fields in step: deprecated = builtin below 127, else 127; files
        # older than the builtin field have 0 there.
        if builtin != 0 and deprecated != min(builtin, placeholder) and i not in code_errors:
            code_errors[i] = f"operator code {i} is inconsistent (builtin {builtin}, deprecated {deprecated})"
    sg = _table_ok(model.Subgraphs(0), "subgraph 0")
    n_tensors = sg.TensorsLength()
    # Every vector entry takes at least 4 bytes of the file.
    for what, n in (("tensor", n_tensors), ("operator", sg.OperatorsLength()), ("buffer", n_buffers)):
        if 4 * n > len(data):
            raise LatpredError(f"{path}: corrupt .tflite model ({what} count {n} exceeds file size)")
    tensors: dict[int, Tensor] = {}
    raw_tensors = []
    buffer_has_data: dict[int, bool] = {}
    buffers: dict[int, object] = {}
    variables: set[int] = set()
    for i in range(n_tensors):
        t = _table_ok(sg.Tensors(i), f"tensor {i}")
        raw_tensors.append(t)
        shape = tuple(t.ShapeAsNumpy().tolist()) if t.ShapeLength() else ()
        if len(shape) > 8 or any(d < 0 for d in shape):
            sig = tuple(int(d) for d in t.ShapeSignatureAsNumpy()) if t.ShapeSignatureLength() else shape
            raise LatpredError(f"{path}: tensor {i} has unsupported shape {sig}")
        check_shape(path, f"tensor {i}", shape)
        if t.IsVariable():
            variables.add(i)
        ttype = t.Type()
        if ttype not in DTYPE_NAMES:
            raise LatpredError(f"{path}: corrupt .tflite model (tensor {i} has unknown type {ttype})")
        dtype = DTYPE_NAMES[ttype]
        quant = None
        if ttype in _QUANTIZED_TYPES:  # float tensors carry no quantization worth reading
            q = t.Quantization()
            if q is not None:
                n_scales, n_zps = q.ScaleLength(), q.ZeroPointLength()
                if n_scales > 0 and n_zps > 0:
                    quant = _quantization(path, i, q, ttype, n_scales, n_zps)
        b = t.Buffer()
        if not 0 <= b < max(n_buffers, 1):
            raise LatpredError(f"{path}: corrupt .tflite model (tensor {i} refers to buffer {b} of {n_buffers})")
        if b not in buffer_has_data:
            buffers[b] = model.Buffers(b) if 0 < b < n_buffers else None
            buffer_has_data[b] = buffers[b] is not None and _buffer_has_data(buffers[b])
        name = t.Name()
        tensors[i] = Tensor(id=i, name=name.decode(errors="replace") if name else f"t{i}",
                            shape=shape, dtype=dtype, is_constant=buffer_has_data[b],
                            quantization=quant)
        if buffer_has_data[b] and not t.ExternalBuffer():
            try:
                _check_buffer(i, t, tensors[i], buffers[b])
            except LatpredError as exc:
                raise LatpredError(f"{path}: corrupt .tflite model ({exc})") from None

    def check_ids(ids, what):
        for t in ids:
            if t < -1 or t >= n_tensors:
                raise LatpredError(f"{path}: corrupt .tflite model ({what} refers to tensor {t})")
        return ids

    ops: list[Op] = []
    warnings: list[tuple] = []  # logged once the model has passed validation
    for i in range(sg.OperatorsLength()):
        o = _table_ok(sg.Operators(i), f"operator {i}")
        idx = o.OpcodeIndex()
        if idx >= len(codes):
            raise LatpredError(f"{path}: corrupt .tflite model (operator {i} has opcode {idx})")
        op_type = codes[idx]
        if op_type is None:
            raise LatpredError(f"{path}: corrupt .tflite model (operator {i}: {code_errors[idx]})")
        if idx in code_errors:
            raise LatpredError(f"{path}: corrupt .tflite model (operator {i} ({op_type}): {code_errors[idx]})")
        ins = check_ids([int(x) for x in o.InputsAsNumpy()] if o.InputsLength() else [], "an op input")
        outs = check_ids([int(x) for x in o.OutputsAsNumpy()] if o.OutputsLength() else [], "an op output")
        op = Op(index=i, type=op_type, category=categories.tflite_category(op_type), inputs=ins, outputs=outs)
        check_arity(path, op)
        try:
            _fill_attrs(model, raw_tensors, tensors, op, o)
        except ValueError as exc:  # a field the schema allows but the op cannot have
            raise LatpredError(f"{path}: op {i} ({op_type}): {exc}") from None
        if op.category == categories.OTHER and op_type not in _KNOWN_OTHER:
            warnings.append(("%s: op %d has type %s, which latpred does not model; category Other",
                             os.path.basename(path), i, op_type))
        ops.append(op)
    inputs = check_ids([int(x) for x in sg.InputsAsNumpy()] if sg.InputsLength() else [], "graph input")
    outputs = check_ids([int(x) for x in sg.OutputsAsNumpy()] if sg.OutputsLength() else [], "graph output")
    name = os.path.splitext(os.path.basename(path))[0] if path else None
    graph = validate_graph(ModelGraph(fmt="tflite", layout="NHWC", tensors=tensors, ops=ops,
                                      inputs=inputs, outputs=outputs, path=path,
                                      file_size=len(data), name=name), variables,
                           converted=True)
    for w in warnings:
        log.warning(*w)
    return graph


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
        act = opts.FusedActivationFunction()
        if act not in ACTIVATION_NAMES:
            raise ValueError(f"unknown fused activation {act}")
        a["activation"] = ACTIVATION_NAMES[act]
    t = op.type
    if t in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(op.inputs) >= 2 and op.inputs[1] >= 0:
        w = tensors[op.inputs[1]].shape  # CONV_2D: [O, KH, KW, I]; DEPTHWISE: [1, KH, KW, O]
        x = tensors[op.inputs[0]].shape
        cin = x[-1] if x else 1
        a["kernel_h"], a["kernel_w"] = (w[1], w[2]) if len(w) == 4 else (1, 1)
        if opts is not None:
            a["stride_h"], a["stride_w"] = opts.StrideH(), opts.StrideW()
            a["dilation_h"], a["dilation_w"] = opts.DilationHFactor(), opts.DilationWFactor()
            a["padding"] = _padding(opts)
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
                 padding=_padding(opts),
                 pool="max" if t == "MAX_POOL_2D" else "avg")
    elif t in ("FULLY_CONNECTED", "BATCH_MATMUL") and len(op.inputs) >= 2:
        w = tensors[op.inputs[1]].shape
        x = tensors[op.inputs[0]].shape
        y = tensors[op.outputs[0]].shape if op.outputs else ()
        if t == "FULLY_CONNECTED" and len(w) == 2:
            out_f, in_f = w
        else:
            in_f, out_f = (x[-1] if x else 1), (y[-1] if y else 1)
        if t == "BATCH_MATMUL" and opts is not None:
            if opts.AdjX():
                a["adj_x"] = True
                in_f = x[-2] if len(x) >= 2 else in_f  # x is [..., K, M]
            if opts.AdjY():
                a["adj_y"] = True
        rows = (math.prod(y) // out_f) if y and out_f else 1
        a.update(in_features=int(in_f), out_features=int(out_f), macs=int(rows * in_f * out_f))
    elif t == "CONCATENATION" and opts is not None:
        rank = len(tensors[op.outputs[0]].shape) if op.outputs else 4
        a["axis"] = _axis(opts.Axis(), rank, "axis")
    elif t in ("SPLIT", "SPLIT_V"):
        if opts is not None:
            a["num_splits"] = opts.NumSplits()
        axis_input = op.inputs[0] if t == "SPLIT" else (op.inputs[2] if len(op.inputs) > 2 else -1)
        if axis_input >= 0:
            v = _const_array(model, raw_tensors[axis_input])
            data_input = op.inputs[1] if t == "SPLIT" else op.inputs[0]
            rank = len(tensors[data_input].shape) if len(op.inputs) > 1 else 4
            if v is not None and v.size:
                a["axis"] = _axis(int(v.reshape(-1)[0]), rank, "axis")
    elif t == "MEAN" and len(op.inputs) >= 2:
        v = _const_array(model, raw_tensors[op.inputs[1]])
        x = tensors[op.inputs[0]].shape
        if v is not None:
            axes = sorted({_axis(int(ax), len(x), "axis") for ax in v.reshape(-1)})
            a["axes"] = axes
            if len(x) == 4:
                a["kernel_h"] = x[1] if 1 in axes else 1
                a["kernel_w"] = x[2] if 2 in axes else 1
        if opts is not None:
            a["keepdims"] = bool(opts.KeepDims())
    elif t == "STRIDED_SLICE":
        want = _strided_slice_shape(model, raw_tensors, tensors, op, opts)
        got = tensors[op.outputs[0]].shape
        if want is not None and tuple(want) != tuple(got):
            raise ValueError(f"output shape {list(got)} does not follow from the slice (expected {want})")
    elif t in ("PAD", "PADV2", "MIRROR_PAD") and len(op.inputs) >= 2:
        v = _const_array(model, raw_tensors[op.inputs[1]])
        if v is not None:
            if v.size % 2:
                raise ValueError(f"paddings of shape {list(v.shape)} are not [rank, 2]")
            a["pads"] = v.reshape(-1, 2).tolist()
        if t == "PADV2" and len(op.inputs) >= 3 and op.inputs[2] >= 0:
            c = _const_array(model, raw_tensors[op.inputs[2]])
            if c is not None and c.size:
                a["pad_value"] = float(c.reshape(-1)[0])
                q = tensors[op.outputs[0]].quantization if op.outputs else None
                a["pad_zero_point"] = float(q[1]) if q else 0.0


def _padding(opts) -> str:
    p = opts.Padding()
    if p not in PADDING_NAMES:
        raise ValueError(f"unknown padding {p}")
    return PADDING_NAMES[p]


def _strided_slice_shape(model, raw_tensors, tensors, op, opts) -> list[int] | None:
    """Output shape of a STRIDED_SLICE with constant begin/end/strides and no ellipsis or new
    axes (what the converter emits for Python slicing); None when it cannot be computed here."""
    if opts is None or opts.EllipsisMask() or opts.NewAxisMask():
        return None
    x = tensors[op.inputs[0]].shape
    vals = [_const_array(model, raw_tensors[op.inputs[k]]) for k in (1, 2, 3)]
    if any(v is None or v.size != len(x) for v in vals):
        return None
    begin, end, strides = (v.reshape(-1).tolist() for v in vals)
    out = []
    for i, dim in enumerate(x):
        b = None if opts.BeginMask() >> i & 1 else begin[i]
        e = None if opts.EndMask() >> i & 1 else end[i]
        if opts.Offset() and b is not None and e is not None:
            e = b + e
        if strides[i] == 0:
            raise ValueError(f"stride 0 on axis {i}")
        if opts.ShrinkAxisMask() >> i & 1:
            continue  # one element, axis dropped
        out.append(len(range(*slice(b, e, strides[i]).indices(dim))))
    return out
