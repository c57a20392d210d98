"""Cut single operations out of a ``.tflite`` model into single-op models.

Each single-op model keeps the op's constant inputs (weights, biases, shape tensors) with their
buffers and quantization parameters; its activation inputs become the subgraph inputs and its outputs
the subgraph outputs. Timing such a model is the kernel-level profiling used by nn-Meter and by the
paper's GPU study. Built through the flatbuffer schema's object API (``ModelT`` & co.), never by
editing bytes.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ..errors import LatpredError

_BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
# Ops that call other subgraphs cannot stand alone.
_CONTROL_FLOW = {"WHILE", "IF", "CALL_ONCE", "CALL", "STABLEHLO_WHILE", "STABLEHLO_CASE"}


@dataclass
class SingleOp:
    index: int                 # operator index in the model's main subgraph (= execution order)
    type: str                  # builtin name, e.g. CONV_2D; custom code for custom ops
    content: bytes             # the single-op .tflite flatbuffer


def load_model(content: bytes) -> schema.ModelT:
    try:
        return schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    except Exception as exc:  # corrupt flatbuffer
        raise LatpredError(f"not a readable .tflite flatbuffer ({exc.__class__.__name__})") from exc


def op_type_name(model: schema.ModelT, op: schema.OperatorT) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    # builtinCode is authoritative since schema v3a; deprecatedBuiltinCode holds codes < 127.
    builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
    if builtin == schema.BuiltinOperator.CUSTOM:
        name = code.customCode
        return name.decode() if isinstance(name, bytes) else str(name)
    return _BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}")


def _buffer_data(model: schema.ModelT, raw: bytes, idx: int) -> np.ndarray | None:
    if idx <= 0 or idx >= len(model.buffers or []):
        return None
    buf = model.buffers[idx]
    if buf.data is not None and len(buf.data):
        return np.asarray(buf.data, dtype=np.uint8)
    if (buf.offset or 0) > 1 and (buf.size or 0) > 0:   # data stored after the flatbuffer
        return np.frombuffer(raw, dtype=np.uint8, count=buf.size, offset=buf.offset)
    return None


def isolate_ops(content: bytes, subgraph: int = 0) -> list[SingleOp]:
    """All operators of the main subgraph as single-op models, in execution order."""
    model = load_model(content)
    if not model.subgraphs:
        raise LatpredError("the .tflite model has no subgraph")
    sg = model.subgraphs[subgraph]
    return [_isolate(model, content, sg, i, op) for i, op in enumerate(sg.operators or [])]


def _isolate(model: schema.ModelT, raw: bytes, sg: schema.SubGraphT, index: int,
             op: schema.OperatorT) -> SingleOp:
    type_name = op_type_name(model, op)
    if type_name in _CONTROL_FLOW:
        raise LatpredError(f"op {index} ({type_name}) calls other subgraphs and cannot be isolated")
    buffers = [schema.BufferT()]          # buffer 0 is the conventional empty sentinel
    tensors: list[schema.TensorT] = []
    remap: dict[int, int] = {}
    inputs: list[int] = []

    def add_tensor(tid: int) -> int:
        if tid < 0:
            return -1
        if tid in remap:
            return remap[tid]
        t = copy.copy(sg.tensors[tid])    # shallow: shape/quantization objects are only read
        data = _buffer_data(model, raw, t.buffer)
        if data is not None:
            b = schema.BufferT()
            b.data = data
            buffers.append(b)
            t.buffer = len(buffers) - 1
        else:
            t.buffer = 0
        remap[tid] = len(tensors)
        tensors.append(t)
        return remap[tid]

    new_op = copy.copy(op)
    new_op.opcodeIndex = 0
    new_op.inputs = [add_tensor(int(t)) for t in (op.inputs if op.inputs is not None else [])]
    for old, new in zip(op.inputs if op.inputs is not None else [], new_op.inputs):
        if new >= 0 and tensors[new].buffer == 0 and not tensors[new].isVariable \
                and new not in inputs:
            inputs.append(new)
    new_op.outputs = [add_tensor(int(t)) for t in (op.outputs if op.outputs is not None else [])]
    if op.intermediates is not None and len(op.intermediates):
        new_op.intermediates = [add_tensor(int(t)) for t in op.intermediates]

    new_sg = schema.SubGraphT()
    new_sg.tensors = tensors
    new_sg.inputs = inputs
    new_sg.outputs = [t for t in new_op.outputs if t >= 0]
    new_sg.operators = [new_op]
    new_sg.name = f"op{index}"

    m = schema.ModelT()
    m.version = model.version or 3
    m.description = f"latpred single op {index} {type_name}"
    m.operatorCodes = [model.operatorCodes[op.opcodeIndex]]
    m.subgraphs = [new_sg]
    m.buffers = buffers
    builder = flatbuffers.Builder(1024 + sum(len(b.data) for b in buffers[1:]))
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return SingleOp(index=index, type=type_name, content=bytes(builder.Output()))
