#!/usr/bin/env python
"""Fuzz latpred on hostile model files: mutants of real converter-made models through
read_model -> inspect summary / graph_features -> predict -> deduce_kernels.

    experiments/fuzz.py --cases 1000 [--seed 0] [--workers 1] [--timeout 20]
    experiments/fuzz.py --replay 0-123      # write case 123 of seed 0, run it here, show the traceback
    experiments/fuzz.py --check-seeds       # the unmutated seeds must be accepted and plausible

Seeds (built once into ``--work``, default experiments/.cache/fuzz, gitignored): tiny TFLite CNNs
(fp32 and int8, via tf_keras and the TFLite converter) and ONNX CNNs (torch.onnx, onnx.helper), plus
a small Lasso bundle trained on a slice of the committed host store. Case I of seed S always makes
the same file: bit flips, truncation, overwritten byte runs, or field edits through the schemas
(flatbuffer object API for .tflite, protobuf for ONNX).

Each case runs in a persistent worker process (restarted after a crash, hang or memory blow-up)
under RLIMIT_AS, a wall-time limit and peak-RSS accounting (VmHWM, reset per case). Outcomes:
accepted (and plausible), rejected (LatpredError, one line), implausible (accepted, but the IR,
features, MACs or predictions fail a sanity check), traceback, hang, over_memory, crash (the
worker died natively). A JSON summary goes to ``--summary`` (default WORK/summary.json).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
import traceback

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
DEFAULT_WORK = os.path.join(ROOT, "experiments", ".cache", "fuzz")
STORE = os.path.join(ROOT, "datasets", "host", "litert_cpu1_fp32.sqlite")
GPU = "adreno640"
MANIFEST_VERSION = 1
MEM_LIMIT_MB = 1024      # RLIMIT_AS of a worker
RSS_LIMIT_MB = 512       # a case whose peak RSS passes this counts as over_memory
CASE_TIMEOUT_S = 20.0
OUTCOMES = ("accepted", "rejected", "implausible", "traceback", "hang", "over_memory", "crash")
FAILURES = ("implausible", "traceback", "hang", "over_memory", "crash")

# Workers run single-threaded: the machine is shared and per-case memory must be comparable.
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "MALLOC_ARENA_MAX": "2", "PYTHONHASHSEED": "0"}


# ================================================================================================
# Seeds: built once, in a child process (TensorFlow and torch stay out of the harness)

def _seed_bodies():
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from conftest import conv_stem, dw_residual

    def body_a(L, x):
        x = conv_stem(L, x, 16)                       # CONV_2D stride 2
        x = dw_residual(L, x, 16)                     # DEPTHWISE_CONV_2D, CONV_2D, ADD
        x = L.MaxPool2D(2)(x)
        x = L.Concatenate()([L.Conv2D(8, 1)(x), L.Conv2D(8, 3, padding="same")(x)])
        x = L.AveragePooling2D(2)(x)
        x = L.Flatten()(x)                            # RESHAPE
        return L.Dense(10, activation="softmax")(x)   # FULLY_CONNECTED, SOFTMAX

    def body_b(L, x):
        import tensorflow as tf
        x = L.ZeroPadding2D(1)(x)                     # PAD
        x = L.Conv2D(16, 3, strides=2, activation="relu6")(x)
        x = L.DepthwiseConv2D(5, strides=2, padding="same")(x)
        x = L.Conv2D(16, 3, padding="same", groups=4)(x)      # grouped conv
        a, b = L.Lambda(lambda t: tf.split(t, 2, axis=-1))(x)  # SPLIT
        x = L.Concatenate()([b, L.Multiply()([a, b])])
        x = L.GlobalAveragePooling2D()(x)             # MEAN
        return L.Dense(10)(x)

    return {"cnn_a": body_a, "cnn_b": body_b}


def _torch_seed(path: str) -> None:
    import torch
    from torch import nn
    import torch.nn.functional as F

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
            self.bn = nn.BatchNorm2d(16)
            self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
            self.pw = nn.Conv2d(16, 16, 1)
            self.b1 = nn.Conv2d(16, 8, 1)
            self.b2 = nn.Conv2d(16, 8, 3, padding=1, groups=2)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = F.relu(self.bn(self.stem(x)))
            x = x + self.pw(F.relu6(self.dw(x)))
            x = F.max_pool2d(x, 2)
            x = torch.cat([self.b1(x), self.b2(F.pad(x, (1, 1, 1, 1)))[:, :, 1:-1, 1:-1]], 1)
            x = F.avg_pool2d(x, 2)
            x = F.adaptive_avg_pool2d(x, 1).flatten(1)
            return self.fc(x)

    torch.manual_seed(0)
    net = Net().eval()
    torch.onnx.export(net, (torch.randn(1, 3, 32, 32),), path, dynamo=False, opset_version=13,
                      input_names=["x"], output_names=["y"])


def _helper_seed() -> bytes:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = lambda name, *shape: numpy_helper.from_array(  # noqa: E731
        rng.standard_normal(shape).astype(np.float32), name)
    i64 = lambda name, values: numpy_helper.from_array(np.array(values, np.int64), name)  # noqa: E731
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"]),
        helper.make_node("Conv", ["p", "w1", "b1"], ["c1"], strides=[2, 2], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], group=2, pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c2"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["m"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Split", ["a", "split"], ["s0", "s1"], axis=1),
        helper.make_node("Concat", ["s1", "s0"], ["cat"], axis=1),
        helper.make_node("Add", ["cat", "m"], ["add"]),
        helper.make_node("ReduceMean", ["add", "axes"], ["mean"], keepdims=1),
        helper.make_node("Flatten", ["mean"], ["flat"]),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["y"], transB=1),
    ]
    inits = [i64("pads", [0, 0, 1, 1, 0, 0, 1, 1]), w("w1", 8, 3, 3, 3), w("b1", 8),
             w("w2", 8, 4, 3, 3), i64("split", [4, 4]), i64("axes", [2, 3]), w("wf", 10, 8),
             w("bf", 10)]
    graph = helper.make_graph(nodes, "helper_cnn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _train_bundle(path: str) -> None:
    from latpred.predictors import LatencyPredictor
    from latpred.store import ProfileStore
    with ProfileStore(STORE, readonly=True) as st:
        frame = st.frame()
    models = sorted(frame["model"].astype(str).unique())
    frame = frame[frame["model"].isin(models[::20])]      # ~55 models: seconds to fit
    LatencyPredictor("lasso", seed=0).fit(frame).save(path)


def _build_seeds(work: str) -> None:
    """Child-process entry: write the seed models, the bundle and the manifest."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from conftest import tflite_bytes, tiny_keras
    import tensorflow as tf
    seeds_dir = os.path.join(work, "seeds")
    os.makedirs(seeds_dir, exist_ok=True)
    files = {}
    for name, body in _seed_bodies().items():
        for precision in ("fp32", "int8"):
            tf.keras.utils.set_random_seed(0)
            model = tiny_keras(body)
            files[f"{name}_{precision}.tflite"] = tflite_bytes(
                model, int8=precision == "int8", int8_io=name == "cnn_b" and precision == "int8")
    files["helper_cnn.onnx"] = _helper_seed()
    torch_path = os.path.join(seeds_dir, "torch_cnn.onnx.tmp")
    _torch_seed(torch_path)
    with open(torch_path, "rb") as fh:
        files["torch_cnn.onnx"] = fh.read()
    os.remove(torch_path)
    entries = []
    for name, data in sorted(files.items()):
        with open(os.path.join(seeds_dir, name), "wb") as fh:
            fh.write(data)
        entries.append({"name": name, "format": "tflite" if name.endswith(".tflite") else "onnx",
                        "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    bundle = os.path.join(work, "bundle.latpred")
    _train_bundle(bundle)
    manifest = {"version": MANIFEST_VERSION, "seeds": entries, "bundle": "bundle.latpred"}
    with open(os.path.join(seeds_dir, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)


def ensure_seeds(work: str, rebuild: bool = False) -> dict:
    """The seed manifest, building seeds and bundle first (in a child process) when missing."""
    path = os.path.join(work, "seeds", "manifest.json")
    manifest = None
    if os.path.exists(path) and not rebuild:
        with open(path) as fh:
            manifest = json.load(fh)
        ok = manifest.get("version") == MANIFEST_VERSION and os.path.exists(
            os.path.join(work, manifest["bundle"])) and all(
            os.path.exists(os.path.join(work, "seeds", s["name"])) for s in manifest["seeds"])
        manifest = manifest if ok else None
    if manifest is None:
        print(f"fuzz: building seed models and bundle in {work} (once)", file=sys.stderr)
        os.makedirs(work, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (ROOT, os.environ.get("PYTHONPATH")) if p), **WORKER_ENV)
        subprocess.run([sys.executable, os.path.abspath(__file__), "--_build-seeds", work],
                       cwd=ROOT, env=env, check=True)
        with open(path) as fh:
            manifest = json.load(fh)
    return manifest


class Seed:
    """One seed model's bytes and where its structure lies (bit flips prefer it over weights)."""

    def __init__(self, work: str, entry: dict):
        self.name, self.format = entry["name"], entry["format"]
        with open(os.path.join(work, "seeds", self.name), "rb") as fh:
            self.data = fh.read()
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        self.stale = self.sha256 != entry["sha256"]
        weights = _tflite_data_ranges(self.data) if self.format == "tflite" else \
            _onnx_data_ranges(self.data)
        self.structure = _complement(weights, len(self.data))
        self.structure_bytes = sum(b - a for a, b in self.structure)


def _tflite_data_ranges(data: bytes) -> list[tuple[int, int]]:
    from ai_edge_litert import schema_py_generated as schema
    m = schema.Model.GetRootAs(data, 0)
    out = []
    for i in range(m.BuffersLength()):
        b = m.Buffers(i)
        n = b.DataLength()
        if n > 16:
            start = b._tab.Vector(b._tab.Offset(4))
            out.append((start, start + n))
    return sorted(out)


def _onnx_data_ranges(data: bytes) -> list[tuple[int, int]]:
    import onnx
    m = onnx.load_model_from_string(data)
    out = []
    for init in m.graph.initializer:
        if len(init.raw_data) > 16:
            start = data.find(init.raw_data)
            if start >= 0:
                out.append((start, start + len(init.raw_data)))
    return sorted(out)


def _complement(ranges, n):
    out, pos = [], 0
    for a, b in ranges:
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if pos < n:
        out.append((pos, n))
    return out


# ================================================================================================
# Mutations: case I of seed S is rng = Random(f"{S}:{I}") applied to one seed

INT_KINDS = {"Int8": (-2**7, 2**7 - 1), "Uint8": (0, 2**8 - 1), "Int16": (-2**15, 2**15 - 1),
             "Uint16": (0, 2**16 - 1), "Int32": (-2**31, 2**31 - 1), "Uint32": (0, 2**32 - 1),
             "Int64": (-2**63, 2**63 - 1), "Uint64": (0, 2**64 - 1)}
_SPECIAL = (0, 1, -1, 2, 3, -2, 4, 7, 8, 16, 255, 256, 2**15 - 1, 2**16, 2**20, 2**24, 2**30,
            2**31 - 1, -2**31, 2**31, 2**32 - 1, 2**32, 2**40, 2**62, 2**63 - 1, -2**63)


def interesting_int(rng: random.Random, kind: str = "Int32", around: int | None = None) -> int:
    lo, hi = INT_KINDS[kind]
    r = rng.random()
    if r < 0.55:
        choices = [v for v in _SPECIAL if lo <= v <= hi]
        return rng.choice(choices)
    if r < 0.75 and around is not None:
        return max(lo, min(hi, rng.choice([around + 1, around - 1, around * 2, -around,
                                           around * 1000, around // 2])))
    if r < 0.9:
        return max(lo, min(hi, rng.randint(-8, 64)))
    return rng.randint(lo, hi)


def interesting_float(rng: random.Random) -> float:
    return rng.choice([0.0, -1.0, -0.0, 1e-45, 1e-30, 3.4e38, -3.4e38, float("nan"), float("inf"),
                       float("-inf"), rng.uniform(-10, 10)])


def _position(rng: random.Random, seed: Seed) -> int:
    if seed.structure_bytes and rng.random() < 0.75:
        k = rng.randrange(seed.structure_bytes)
        for a, b in seed.structure:
            if k < b - a:
                return a + k
            k -= b - a
    return rng.randrange(len(seed.data))


def mutate_bitflip(rng, seed):
    data = bytearray(seed.data)
    flips = []
    for _ in range(rng.randint(1, 8)):
        pos, bit = _position(rng, seed), rng.randrange(8)
        data[pos] ^= 1 << bit
        flips.append(f"{pos:#x}.{bit}")
    return bytes(data), "bitflip " + " ".join(flips)


def mutate_truncate(rng, seed):
    n = len(seed.data)
    r = rng.random()
    keep = rng.randint(0, 64) if r < 0.2 else (n - rng.randint(1, 64) if r < 0.5
                                               else rng.randrange(n))
    keep = max(0, min(n - 1, keep))
    return seed.data[:keep], f"truncate to {keep} of {n} bytes"


def mutate_overwrite(rng, seed):
    data = bytearray(seed.data)
    pos = _position(rng, seed)
    length = min(rng.choice([1, 2, 4, 4, 8, 16, 64, rng.randint(1, 256)]), len(data) - pos)
    how = rng.choice(["random", "zero", "ff", "int32"])
    if how == "random":
        fill = bytes(rng.randrange(256) for _ in range(length))
    elif how == "zero":
        fill = bytes(length)
    elif how == "ff":
        fill = b"\xff" * length
    else:
        v = interesting_int(rng, "Int32").to_bytes(4, "little", signed=True)
        fill = (v * (length // 4 + 1))[:length]
    data[pos:pos + length] = fill
    return bytes(data), f"overwrite {length} bytes at {pos:#x} ({how})"


# -- .tflite through the flatbuffer object API -------------------------------------------------

_TFL = {}


def _tfl():
    """Schema module, builtin operator codes and per-table field kinds (read off the Add* packers)."""
    if not _TFL:
        import inspect
        import re
        from ai_edge_litert import schema_py_generated as schema
        kinds = {}
        for name, fn in vars(schema).items():
            if callable(fn) and "Add" in name and not name.startswith("_"):
                try:
                    src = inspect.getsource(fn)
                except (OSError, TypeError):
                    continue
                m = re.search(r"Prepend(\w+?)Slot", src)
                if m:
                    kinds[name] = m.group(1)
        codes = {k: v for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        _TFL.update(schema=schema, kinds=kinds, codes=codes)
    return _TFL


def _field_kind(obj, attr: str) -> str | None:
    table = type(obj).__name__[:-1]                       # Conv2DOptionsT -> Conv2DOptions
    return _tfl()["kinds"].get(f"{table}Add{attr[0].upper()}{attr[1:]}")


def _set_scalar(rng, obj, attr, what):
    kind = _field_kind(obj, attr)
    old = getattr(obj, attr)
    if kind == "Bool":
        new = not old
    elif kind in ("Float32", "Float64"):
        new = interesting_float(rng)
    elif kind in INT_KINDS:
        new = interesting_int(rng, kind, around=int(old))
    else:
        return None
    setattr(obj, attr, new)
    return f"{what}.{attr} {old} -> {new}"


_TFL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D",
            "FULLY_CONNECTED", "BATCH_MATMUL", "CONCATENATION", "ADD", "MUL", "SUB", "SPLIT",
            "SPLIT_V", "MEAN", "PAD", "PADV2", "MIRROR_PAD", "RESHAPE", "SOFTMAX", "TRANSPOSE_CONV",
            "HARD_SWISH", "RELU", "LOGISTIC", "QUANTIZE", "DEQUANTIZE", "CUSTOM", "WHILE")


def _ops(m):
    return [(si, oi, op) for si, sg in enumerate(m.subgraphs or []) for oi, op in
            enumerate(sg.operators or [])]


def _tensors(m):
    return [(si, ti, t) for si, sg in enumerate(m.subgraphs or []) for ti, t in
            enumerate(sg.tensors or [])]


def _edit_list(rng, lst, kind, what, n_valid):
    """Replace, drop, add or clear entries of an int vector; returns (new list, description)."""
    lst = list(lst if lst is not None else [])
    r = rng.random()
    if lst and r < 0.5:
        i = rng.randrange(len(lst))
        old = lst[i]
        lst[i] = rng.randrange(-1, n_valid + 2) if rng.random() < 0.5 else interesting_int(rng, kind)
        return lst, f"{what}[{i}] {old} -> {lst[i]}"
    if lst and r < 0.7:
        i = rng.randrange(len(lst))
        return lst[:i] + lst[i + 1:], f"{what}: drop entry {i}"
    if r < 0.9:
        v = rng.randrange(-1, n_valid + 2) if rng.random() < 0.5 else interesting_int(rng, kind)
        return lst + [v], f"{what}: append {v}"
    return [], f"{what}: clear"


def _tfl_op_option(rng, m):
    cands = [(si, oi, op) for si, oi, op in _ops(m) if op.builtinOptions is not None]
    if not cands:
        return None
    si, oi, op = rng.choice(cands)
    attrs = [a for a, v in vars(op.builtinOptions).items() if isinstance(v, (int, bool, float))
             and _field_kind(op.builtinOptions, a)]
    if not attrs:
        return None
    return _set_scalar(rng, op.builtinOptions, rng.choice(attrs),
                       f"op {oi} {type(op.builtinOptions).__name__[:-1]}")


def _tfl_tensor_shape(rng, m):
    import numpy as np
    cands = _tensors(m)
    if not cands:
        return None
    si, ti, t = rng.choice(cands)
    shape = [int(d) for d in (t.shape if t.shape is not None else [])]
    r = rng.random()
    if shape and r < 0.6:
        i = rng.randrange(len(shape))
        old = shape[i]
        shape[i] = interesting_int(rng, "Int32", around=old)
        desc = f"tensor {ti} shape[{i}] {old} -> {shape[i]}"
    elif shape and r < 0.75:
        shape = shape[:-1]
        desc = f"tensor {ti}: drop last dim"
    elif r < 0.9:
        extra = rng.choice([1, 2, 0, interesting_int(rng, "Int32")])
        shape = shape + [extra] * rng.randint(1, 6)
        desc = f"tensor {ti}: append dims -> rank {len(shape)}"
    else:
        shape = []
        desc = f"tensor {ti}: empty shape"
    t.shape = np.array(shape, dtype=np.int32)
    if rng.random() < 0.5:
        t.shapeSignature = np.array(shape, dtype=np.int32) if shape else None
    return desc


def _tfl_opcode_index(rng, m):
    cands = _ops(m)
    if not cands:
        return None
    si, oi, op = rng.choice(cands)
    old = op.opcodeIndex
    op.opcodeIndex = rng.randrange(len(m.operatorCodes or []) + 2) if rng.random() < 0.6 else \
        interesting_int(rng, "Uint32")
    return f"op {oi} opcodeIndex {old} -> {op.opcodeIndex}"


def _tfl_builtin_code(rng, m):
    if not m.operatorCodes:
        return None
    codes = _tfl()["codes"]
    i = rng.randrange(len(m.operatorCodes))
    oc = m.operatorCodes[i]
    old = oc.builtinCode
    r = rng.random()
    if r < 0.7:
        name = rng.choice(_TFL_OPS)
        oc.builtinCode = codes[name]
        oc.deprecatedBuiltinCode = min(codes[name], 127)
        if name == "CUSTOM" and rng.random() < 0.5:
            oc.customCode = rng.choice([b"", b"TFLite_Detection_PostProcess", b"\xff\xfe"])
    elif r < 0.85:
        oc.builtinCode = interesting_int(rng, "Int32")
    else:
        oc.deprecatedBuiltinCode = interesting_int(rng, "Int8")
    return f"opcode {i} builtinCode {old} -> {oc.builtinCode} (deprecated {oc.deprecatedBuiltinCode})"


def _tfl_buffer_index(rng, m):
    cands = _tensors(m)
    if not cands:
        return None
    si, ti, t = rng.choice(cands)
    old = t.buffer
    t.buffer = rng.randrange(len(m.buffers or []) + 2) if rng.random() < 0.7 else \
        interesting_int(rng, "Uint32")
    return f"tensor {ti} buffer {old} -> {t.buffer}"


def _tfl_op_io(rng, m):
    cands = _ops(m)
    if not cands:
        return None
    si, oi, op = rng.choice(cands)
    n = len(m.subgraphs[si].tensors or [])
    attr = rng.choice(["inputs", "inputs", "outputs"])
    new, desc = _edit_list(rng, getattr(op, attr), "Int32", f"op {oi} {attr}", n)
    setattr(op, attr, new)
    return desc


def _tfl_graph_io(rng, m):
    if not m.subgraphs:
        return None
    sg = m.subgraphs[0]
    attr = rng.choice(["inputs", "outputs"])
    new, desc = _edit_list(rng, getattr(sg, attr), "Int32", f"subgraph {attr}", len(sg.tensors or []))
    setattr(sg, attr, new)
    return desc


def _tfl_tensor_type(rng, m):
    cands = _tensors(m)
    if not cands:
        return None
    si, ti, t = rng.choice(cands)
    old = t.type
    t.type = rng.randrange(0, 20) if rng.random() < 0.8 else interesting_int(rng, "Int8")
    return f"tensor {ti} type {old} -> {t.type}"


def _tfl_quantization(rng, m):
    import numpy as np
    cands = [(si, ti, t) for si, ti, t in _tensors(m) if t.quantization is not None
             and t.quantization.scale is not None and len(t.quantization.scale)]
    if not cands:
        return None
    si, ti, t = rng.choice(cands)
    q = t.quantization
    if rng.random() < 0.5:
        q.scale = np.array([interesting_float(rng)] * len(q.scale), dtype=np.float32)
        return f"tensor {ti} quantization scale -> {q.scale[0]}"
    n = len(q.zeroPoint) if q.zeroPoint is not None else 0
    q.zeroPoint = np.array([interesting_int(rng, "Int64")] * max(n, 1), dtype=np.int64)
    return f"tensor {ti} quantization zeroPoint -> {q.zeroPoint[0]}"


def _tfl_buffer_data(rng, m):
    import numpy as np
    cands = [i for i, b in enumerate(m.buffers or []) if b.data is not None and 0 < len(b.data) <= 64]
    if not cands:
        return None
    i = rng.choice(cands)
    data = bytearray(bytes(np.asarray(m.buffers[i].data, dtype=np.uint8)))
    r = rng.random()
    if r < 0.6 and len(data) >= 4:
        k = rng.randrange(len(data) // 4)
        v = interesting_int(rng, "Int32")
        data[4 * k:4 * k + 4] = v.to_bytes(4, "little", signed=True)
        desc = f"buffer {i} int32[{k}] -> {v}"
    elif r < 0.8:
        cut = rng.randrange(len(data))
        data = data[:cut]
        desc = f"buffer {i} data cut to {cut} bytes"
    else:
        data = data + bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 12])))
        desc = f"buffer {i} data grown to {len(data)} bytes"
    m.buffers[i].data = np.frombuffer(bytes(data), dtype=np.uint8) if data else None
    return desc


def _tfl_options_type(rng, m):
    cands = _ops(m)
    if not cands:
        return None
    si, oi, op = rng.choice(cands)
    schema = _tfl()["schema"]
    old = op.builtinOptionsType
    if rng.random() < 0.5 or op.builtinOptions is None:
        op.builtinOptionsType = interesting_int(rng, "Uint8") if rng.random() < 0.3 else \
            rng.randrange(0, 130)
        return f"op {oi} builtinOptionsType {old} -> {op.builtinOptionsType} (table kept)"
    # another op's options table under the original type tag
    other = rng.choice([schema.Pool2DOptionsT, schema.Conv2DOptionsT,
                        schema.FullyConnectedOptionsT, schema.ConcatenationOptionsT,
                        schema.ReducerOptionsT])()
    for a, v in vars(other).items():
        if isinstance(v, int) and _field_kind(other, a) in INT_KINDS:
            setattr(other, a, interesting_int(rng, _field_kind(other, a)))
    op.builtinOptions = other
    return f"op {oi} options table -> {type(other).__name__[:-1]} under type {old}"


def _tfl_op_list(rng, m):
    if not m.subgraphs or not m.subgraphs[0].operators:
        return None
    ops = m.subgraphs[0].operators
    r = rng.random()
    i = rng.randrange(len(ops))
    if r < 0.4:
        del ops[i]
        return f"delete op {i}"
    if r < 0.7:
        import copy
        ops.insert(rng.randrange(len(ops) + 1), copy.deepcopy(ops[i]))
        return f"duplicate op {i}"
    j = rng.randrange(len(ops))
    ops[i], ops[j] = ops[j], ops[i]
    return f"swap ops {i} and {j}"


def _tfl_subgraphs(rng, m):
    import copy
    if rng.random() < 0.3 or not m.subgraphs:
        m.subgraphs = []
        return "remove every subgraph"
    m.subgraphs.insert(0, copy.deepcopy(m.subgraphs[0]))
    m.subgraphs[0].operators = (m.subgraphs[0].operators or [])[:rng.randint(0, 2)]
    return "prepend a truncated copy of subgraph 0"


TFLITE_EDITS = ((_tfl_op_option, 6), (_tfl_tensor_shape, 5), (_tfl_opcode_index, 2),
                (_tfl_builtin_code, 3), (_tfl_buffer_index, 2), (_tfl_op_io, 3),
                (_tfl_graph_io, 1), (_tfl_tensor_type, 2), (_tfl_quantization, 1),
                (_tfl_buffer_data, 2), (_tfl_options_type, 2), (_tfl_op_list, 1),
                (_tfl_subgraphs, 0.3))


def _weighted(rng, pairs):
    total = sum(w for _, w in pairs)
    x = rng.random() * total
    for item, w in pairs:
        x -= w
        if x < 0:
            return item
    return pairs[-1][0]


def mutate_tflite_fields(rng, seed):
    import flatbuffers
    schema = _tfl()["schema"]
    m = schema.ModelT.InitFromPackedBuf(seed.data, 0)
    descs = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        for _attempt in range(8):
            d = _weighted(rng, TFLITE_EDITS)(rng, m)
            if d:
                descs.append(d)
                break
    b = flatbuffers.Builder(len(seed.data) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output()), "tflite-field " + "; ".join(descs)


# -- ONNX through the protobuf ------------------------------------------------------------------

_ONNX_OPS = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool",
             "GlobalMaxPool", "Gemm", "MatMul", "Concat", "Split", "Pad", "ReduceMean", "Add",
             "Mul", "Relu", "Clip", "Flatten", "Reshape", "Identity", "Loop", "If",
             "ConstantOfShape", "Expand", "Tile", "Range", "Constant", "Resize", "FooBar")
_CONV_ATTRS = ("strides", "kernel_shape", "pads", "dilations", "group", "axis", "auto_pad",
               "transB", "keepdims", "axes")


def _onnx_value_infos(g):
    return list(g.input) + list(g.output) + list(g.value_info)


def _onnx_dims(rng, m):
    vis = [v for v in _onnx_value_infos(m.graph) if v.type.HasField("tensor_type")]
    if not vis:
        return None
    v = rng.choice(vis)
    dims = v.type.tensor_type.shape.dim
    r = rng.random()
    if len(dims) and r < 0.55:
        i = rng.randrange(len(dims))
        old = dims[i].dim_value
        dims[i].dim_value = interesting_int(rng, "Int64", around=old)
        return f"{v.name} dim[{i}] {old} -> {dims[i].dim_value}"
    if len(dims) and r < 0.7:
        i = rng.randrange(len(dims))
        dims[i].dim_param = rng.choice(["N", "batch", ""])
        return f"{v.name} dim[{i}] -> symbolic {dims[i].dim_param!r}"
    if len(dims) and r < 0.8:
        del dims[rng.randrange(len(dims))]
        return f"{v.name}: drop a dim"
    if r < 0.92:
        for _ in range(rng.randint(1, 6)):
            dims.add().dim_value = rng.choice([1, 2, interesting_int(rng, "Int64")])
        return f"{v.name}: add dims -> rank {len(dims)}"
    v.type.tensor_type.ClearField("shape")
    return f"{v.name}: clear shape"


def _onnx_attribute(rng, m):
    from onnx import AttributeProto, helper
    nodes = list(m.graph.node)
    if not nodes:
        return None
    node = rng.choice(nodes)
    attrs = list(node.attribute)
    if not attrs or rng.random() < 0.25:
        name = rng.choice(_CONV_ATTRS)
        if name == "auto_pad":
            value = rng.choice(["SAME_UPPER", "SAME_LOWER", "VALID", "NOTSET", "bogus"])
        elif name in ("group", "axis", "transB", "keepdims"):
            value = interesting_int(rng, "Int64")
        else:
            value = [interesting_int(rng, "Int64") for _ in range(rng.choice([1, 2, 2, 4, 5]))]
        for a in list(node.attribute):
            if a.name == name:
                node.attribute.remove(a)
        node.attribute.append(helper.make_attribute(name, value))
        return f"node {node.name or node.op_type} add {name}={value!r}"
    a = rng.choice(attrs)
    r = rng.random()
    if a.type == AttributeProto.INTS:
        ints = list(a.ints)
        if ints and r < 0.6:
            i = rng.randrange(len(ints))
            ints[i] = interesting_int(rng, "Int64", around=ints[i])
        elif ints and r < 0.75:
            ints = ints[:-1]
        elif r < 0.9:
            ints = ints + [interesting_int(rng, "Int64")]
        else:
            ints = []
        del a.ints[:]
        a.ints.extend(ints)
        return f"node {node.name or node.op_type} {a.name} -> {ints}"
    if a.type == AttributeProto.INT:
        old = a.i
        a.i = interesting_int(rng, "Int64", around=old)
        return f"node {node.name or node.op_type} {a.name} {old} -> {a.i}"
    if a.type == AttributeProto.FLOAT:
        a.f = interesting_float(rng)
        return f"node {node.name or node.op_type} {a.name} -> {a.f}"
    if a.type == AttributeProto.STRING:
        a.s = rng.choice([b"SAME_UPPER", b"VALID", b"NOTSET", b"", b"\xff"])
        return f"node {node.name or node.op_type} {a.name} -> {a.s!r}"
    if r < 0.5:  # change an attribute's type under its name
        node.attribute.remove(a)
        node.attribute.append(helper.make_attribute(a.name, interesting_int(rng, "Int64")))
        return f"node {node.name or node.op_type} {a.name} -> INT"
    return None


def _onnx_op_type(rng, m):
    nodes = list(m.graph.node)
    if not nodes:
        return None
    node = rng.choice(nodes)
    old = node.op_type
    if rng.random() < 0.9:
        node.op_type = rng.choice(_ONNX_OPS)
    else:
        node.domain = rng.choice(["com.microsoft", "ai.onnx.ml", "bogus"])
        return f"node {node.name or old} domain -> {node.domain}"
    return f"node {node.name or old} op_type {old} -> {node.op_type}"


def _onnx_initializer(rng, m):
    from onnx import TensorProto
    inits = list(m.graph.initializer)
    if not inits:
        return None
    init = rng.choice(inits)
    r = rng.random()
    if init.dims and r < 0.35:
        i = rng.randrange(len(init.dims))
        old = init.dims[i]
        init.dims[i] = interesting_int(rng, "Int64", around=old)
        return f"initializer {init.name} dims[{i}] {old} -> {init.dims[i]}"
    if r < 0.45:
        init.dims.append(rng.choice([1, 2, interesting_int(rng, "Int64")]))
        return f"initializer {init.name}: add a dim"
    if init.raw_data and r < 0.6:
        cut = rng.randrange(len(init.raw_data))
        init.raw_data = init.raw_data[:cut]
        return f"initializer {init.name} raw_data cut to {cut} bytes"
    if init.raw_data and init.data_type == TensorProto.INT64 and r < 0.8:
        import numpy as np
        vals = np.frombuffer(init.raw_data, dtype=np.int64).copy()
        if vals.size:
            k = rng.randrange(vals.size)
            vals[k] = interesting_int(rng, "Int64", around=int(vals[k]))
            init.raw_data = vals.tobytes()
            return f"initializer {init.name}[{k}] -> {vals[k]}"
    if r < 0.9:
        old = init.data_type
        init.data_type = rng.randrange(0, 24) if rng.random() < 0.8 else interesting_int(rng, "Int32")
        return f"initializer {init.name} data_type {old} -> {init.data_type}"
    init.data_location = TensorProto.EXTERNAL
    del init.external_data[:]
    e = init.external_data.add()
    e.key, e.value = "location", "fuzz_missing_weights.bin"
    return f"initializer {init.name} -> external data"


def _onnx_add_node(rng, m):
    """Prepend a node whose inputs are all constant: the reader's constant folding evaluates it."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    g = m.graph
    kind = rng.choice(["Loop", "ConstantOfShape", "ConstantOfShape", "Range", "Expand", "Tile"])
    big = lambda: rng.choice([4, 1000, 2**16, 2**20, 2**24, 2**27, 2**31, 2**40,  # noqa: E731
                              interesting_int(rng, "Int64")])
    c = lambda name, v, dt=np.int64: g.initializer.append(  # noqa: E731
        numpy_helper.from_array(np.array(v, dt), name))
    if kind == "Loop":
        trip = big()
        body = helper.make_graph(
            [helper.make_node("Identity", ["fz_cond_in"], ["fz_cond_out"]),
             helper.make_node("Constant", [], ["fz_one"], value=numpy_helper.from_array(
                 np.ones(1, np.float32), "fz_one_v")),
             helper.make_node("Add", ["fz_v_in", "fz_one"], ["fz_v_out"])],
            "fz_body",
            [helper.make_tensor_value_info("fz_i", TensorProto.INT64, []),
             helper.make_tensor_value_info("fz_cond_in", TensorProto.BOOL, []),
             helper.make_tensor_value_info("fz_v_in", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("fz_cond_out", TensorProto.BOOL, []),
             helper.make_tensor_value_info("fz_v_out", TensorProto.FLOAT, [1])])
        c("fz_M", trip)
        c("fz_cond", True, np.bool_)
        c("fz_v0", [0.0], np.float32)
        node = helper.make_node("Loop", ["fz_M", "fz_cond", "fz_v0"], ["fz_out"], body=body)
        desc = f"add Loop with trip count {trip}"
    elif kind == "ConstantOfShape":
        shape = [big() if rng.random() < 0.6 else rng.choice([1, 3, 64])
                 for _ in range(rng.randint(1, 3))]
        c("fz_shape", shape)
        node = helper.make_node("ConstantOfShape", ["fz_shape"], ["fz_out"])
        desc = f"add ConstantOfShape {shape}"
    elif kind == "Range":
        limit = big()
        c("fz_start", 0)
        c("fz_limit", limit)
        c("fz_delta", rng.choice([1, 1, 0, -1]))
        node = helper.make_node("Range", ["fz_start", "fz_limit", "fz_delta"], ["fz_out"])
        desc = f"add Range(0, {limit})"
    elif kind == "Expand":
        shape = [big(), rng.choice([1, big()])]
        c("fz_x", [1.0], np.float32)
        c("fz_shape", shape)
        node = helper.make_node("Expand", ["fz_x", "fz_shape"], ["fz_out"])
        desc = f"add Expand to {shape}"
    else:
        reps = [big(), rng.choice([1, big()])]
        c("fz_x", [[1.0]], np.float32)
        c("fz_reps", reps)
        node = helper.make_node("Tile", ["fz_x", "fz_reps"], ["fz_out"])
        desc = f"add Tile {reps}"
    g.node.insert(0, node)
    if rng.random() < 0.5:
        g.output.append(helper.make_tensor_value_info("fz_out", TensorProto.FLOAT, None))
        desc += " (a graph output)"
    return desc


def _onnx_node_io(rng, m):
    nodes = list(m.graph.node)
    if not nodes:
        return None
    node = rng.choice(nodes)
    names = [v.name for v in m.graph.input] + [o for n in nodes for o in n.output]
    field = node.input if rng.random() < 0.7 else node.output
    which = "input" if field is node.input else "output"
    r = rng.random()
    if len(field) and r < 0.5:
        i = rng.randrange(len(field))
        old = field[i]
        field[i] = rng.choice(names + ["", "fz_nowhere"])
        return f"node {node.name or node.op_type} {which}[{i}] {old} -> {field[i]!r}"
    if len(field) and r < 0.75:
        del field[rng.randrange(len(field))]
        return f"node {node.name or node.op_type}: drop an {which}"
    field.append(rng.choice(names + [""]))
    return f"node {node.name or node.op_type}: add an {which}"


def _onnx_node_list(rng, m):
    import copy
    nodes = m.graph.node
    if not len(nodes):
        return None
    i = rng.randrange(len(nodes))
    r = rng.random()
    if r < 0.4:
        del nodes[i]
        return f"delete node {i}"
    if r < 0.7:
        nodes.insert(rng.randrange(len(nodes) + 1), copy.deepcopy(nodes[i]))
        return f"duplicate node {i}"
    j = rng.randrange(len(nodes))
    a, b = copy.deepcopy(nodes[i]), copy.deepcopy(nodes[j])
    nodes[i].CopyFrom(b)
    nodes[j].CopyFrom(a)
    return f"swap nodes {i} and {j}"


def _onnx_meta(rng, m):
    if rng.random() < 0.5 and len(m.opset_import):
        old = m.opset_import[0].version
        m.opset_import[0].version = rng.choice([1, 6, 7, 9, 11, 13, 17, 18, 21, 22, 23, 99,
                                                interesting_int(rng, "Int64")])
        return f"opset {old} -> {m.opset_import[0].version}"
    old = m.ir_version
    m.ir_version = rng.choice([0, 1, 3, 4, 7, 9, 10, 11, 99, interesting_int(rng, "Int64")])
    return f"ir_version {old} -> {m.ir_version}"


def _onnx_graph_io(rng, m):
    g = m.graph
    if rng.random() < 0.5 and len(g.input):
        del g.input[rng.randrange(len(g.input))]
        return "drop a graph input"
    if len(g.output):
        del g.output[rng.randrange(len(g.output))]
        return "drop a graph output"
    return None


ONNX_EDITS = ((_onnx_dims, 4), (_onnx_attribute, 6), (_onnx_op_type, 3), (_onnx_initializer, 4),
              (_onnx_add_node, 1.5), (_onnx_node_io, 2), (_onnx_node_list, 1), (_onnx_meta, 1),
              (_onnx_graph_io, 0.5))


def mutate_onnx_fields(rng, seed):
    import onnx
    m = onnx.load_model_from_string(seed.data)
    descs = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        for _attempt in range(8):
            d = _weighted(rng, ONNX_EDITS)(rng, m)
            if d:
                descs.append(d)
                break
    return m.SerializeToString(), "onnx-field " + "; ".join(descs)


MUTATORS = {"bitflip": mutate_bitflip, "truncate": mutate_truncate, "overwrite": mutate_overwrite,
            "tflite-field": mutate_tflite_fields, "onnx-field": mutate_onnx_fields}
MUTATOR_WEIGHTS = {"tflite": (("bitflip", 3), ("truncate", 1), ("overwrite", 2), ("tflite-field", 6)),
                   "onnx": (("bitflip", 3), ("truncate", 1), ("overwrite", 2), ("onnx-field", 6))}


def make_case(seeds: list[Seed], seed: int, index: int) -> dict:
    """Case ``index`` of run ``seed``: always the same seed file, mutator and bytes."""
    rng = random.Random(f"latpred-fuzz:{seed}:{index}")
    s = seeds[rng.randrange(len(seeds))]
    mutator = _weighted(rng, MUTATOR_WEIGHTS[s.format])
    try:
        data, desc = MUTATORS[mutator](rng, s)
    except Exception as exc:  # an edit the packer cannot encode: fall back, still deterministic
        data, desc = mutate_bitflip(rng, s)
        desc = f"{desc} (after {mutator} failed: {type(exc).__name__})"
        mutator = "bitflip"
    return {"id": f"{seed}-{index}", "seed_file": s.name, "format": s.format, "mutator": mutator,
            "description": desc[:400], "data": data}


def load_seeds(work: str, manifest: dict) -> list[Seed]:
    return [Seed(work, e) for e in manifest["seeds"]]


# ================================================================================================
# The pipeline on one file (worker side) and its plausibility checks

_NO_INPUT_OPS = {"RandomNormal", "RandomUniform", "Constant", "EyeLike"}
_POSITIVE_ATTRS = ("stride_h", "stride_w", "kernel_h", "kernel_w", "dilation_h", "dilation_w",
                   "groups")


def _finite_nonneg(x) -> bool:
    try:
        return math.isfinite(float(x)) and float(x) >= 0
    except (TypeError, ValueError, OverflowError):
        return False


def check_graph(g) -> list[str]:
    """What makes an accepted IR implausible (empty list: fine)."""
    p = []
    tensors = g.tensors
    for tid, t in tensors.items():
        if any(not isinstance(d, int) or d < 0 for d in t.shape):
            p.append(f"tensor {tid} has shape {t.shape}")
        if not isinstance(t.dtype, str) or not t.dtype or t.dtype.startswith("type"):
            p.append(f"tensor {tid} has dtype {t.dtype!r}")
        q = getattr(t, "quantization", None)
        if q is not None and not (math.isfinite(q[0]) and q[0] > 0):
            p.append(f"tensor {tid} has quantization scale {q[0]}")
    for pos, op in enumerate(g.ops):
        if op.index != pos:
            p.append(f"op at position {pos} has index {op.index}")
        if not op.outputs:
            p.append(f"op {pos} {op.type} has no outputs")
        if not [t for t in op.inputs if t >= 0] and op.type not in _NO_INPUT_OPS:
            p.append(f"op {pos} {op.type} has no inputs")
        for t in op.outputs:
            if t not in tensors:
                p.append(f"op {pos} {op.type} output {t} is no tensor")
        for t in op.inputs:
            if t >= 0 and t not in tensors:
                p.append(f"op {pos} {op.type} input {t} is no tensor")
        for k in _POSITIVE_ATTRS:
            if k in op.attrs and not (isinstance(op.attrs[k], int) and op.attrs[k] >= 1):
                p.append(f"op {pos} {op.type} has {k}={op.attrs[k]!r}")
    for t in list(g.inputs) + list(g.outputs):
        if t not in tensors:
            p.append(f"graph input/output {t} is no tensor")
    const_bytes = g.weight_bytes
    if const_bytes > 2 * g.file_size + 4096:
        p.append(f"constants claim {const_bytes} bytes in a {g.file_size}-byte file")
    return p


def check_features(g, feats) -> list[str]:
    from latpred.features import op_macs
    p = []
    for op, f in zip(g.ops, feats):
        bad = {k: v for k, v in f.items() if not _finite_nonneg(v)}
        if bad:
            p.append(f"op {op.index} {op.type} features {bad}")
        macs = op_macs(g, op)
        if macs:
            out_el = sum(g.tensors[t].num_elements for t in op.outputs if t in g.tensors)
            in_el = max([g.tensors[t].num_elements for t in op.inputs if t >= 0 and t in g.tensors]
                        or [1])
            if macs < 0 or macs > max(out_el, 1) * max(in_el, 1):
                p.append(f"op {op.index} {op.type} has {macs} MACs for {out_el} output and "
                         f"at most {in_el} input elements")
    if len(feats) != len(g.ops):
        p.append(f"{len(feats)} feature rows for {len(g.ops)} ops")
    return p


class Pipeline:
    """read_model -> inspect summary and graph_features -> predict -> deduce_kernels."""

    def __init__(self, bundle_path: str):
        from latpred.predictors import load
        self.predictor = load(bundle_path)

    def run(self, path: str) -> list[str]:
        """Problems of an accepted model ([] when plausible); LatpredError when rejected."""
        from latpred.commands.inspect import summary
        from latpred.features import graph_features
        from latpred.gpu import deduce_kernels, kernel_feature_rows
        from latpred.readers import read_model
        g = read_model(path)
        problems = check_graph(g)
        info = summary(g)
        json.dumps(info)                      # what `inspect --json` prints
        if not _finite_nonneg(info["peak_activation_bytes"]) or info["params"] < 0:
            problems.append(f"totals peak={info['peak_activation_bytes']} params={info['params']}")
        problems += check_features(g, graph_features(g))
        pred = self.predictor.predict(g)
        if not _finite_nonneg(pred.latency_ms):
            problems.append(f"predicted latency {pred.latency_ms} ms")
        bad = [(int(i), float(v)) for i, v in zip(pred.op_index, pred.op_latency_ms)
               if not _finite_nonneg(v)]
        if bad:
            problems.append(f"op latencies {bad[:4]}")
        if g.format == "tflite":
            kg = deduce_kernels(g, GPU)
            for k, (cat, f) in zip(kg.kernels, kernel_feature_rows(g, kg)):
                if not 0 <= k.main_op < len(g.ops):
                    problems.append(f"GPU kernel {k.kernel} on op {k.main_op}")
                badf = {n: v for n, v in f.items() if not _finite_nonneg(v)}
                if badf:
                    problems.append(f"GPU kernel {k.kernel} (op {k.main_op}) features {badf}")
        return problems[:20]


def describe_exception(exc: BaseException) -> dict:
    frames = traceback.extract_tb(exc.__traceback__)
    pkg = os.path.join(ROOT, "latpred") + os.sep
    rel = lambda f: os.path.relpath(f.filename, ROOT) if f.filename.startswith(ROOT) else \
        f.filename.split("site-packages" + os.sep)[-1]  # noqa: E731
    ours = [f"{rel(f)}:{f.lineno} {f.name}" for f in frames if f.filename.startswith(pkg)]
    msg = str(exc).strip().splitlines()
    return {"exception": type(exc).__name__, "message": (msg[0] if msg else "")[:300],
            "where": ours[-1] if ours else (f"{rel(frames[-1])}:{frames[-1].lineno} "
                                            f"{frames[-1].name}" if frames else "?"),
            "innermost": f"{rel(frames[-1])}:{frames[-1].lineno} {frames[-1].name}" if frames else "?",
            "latpred_frames": ours[-6:],
            "traceback": "".join(traceback.format_exception(exc))[-4000:]}


def _memory_cause(exc: BaseException) -> BaseException | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, MemoryError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


_NUMPY_REFUSED: list[int] = []     # bytes of numpy allocations refused since the case began


def _watch_numpy_allocations() -> None:
    """Note every array numpy could not allocate, even where the caller swallows the MemoryError."""
    try:
        from numpy._core import _exceptions as npe
    except ImportError:
        from numpy.core import _exceptions as npe
    cls = npe._ArrayMemoryError
    orig = cls.__init__

    def init(self, shape, dtype):
        orig(self, shape, dtype)
        try:
            _NUMPY_REFUSED.append(int(self._total_size))
        except Exception:
            _NUMPY_REFUSED.append(-1)

    cls.__init__ = init


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _status_mb(pid="self", key="VmHWM") -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return -1.0


def classify(pipeline: Pipeline, path: str) -> dict:
    """Run one file; the outcome as a JSON-able dict (exceptions never escape)."""
    from latpred.errors import LatpredError
    _NUMPY_REFUSED.clear()
    _reset_peak()
    t0 = time.perf_counter()
    try:
        problems = pipeline.run(path)
        res = {"outcome": "implausible", "problems": problems} if problems else {"outcome": "accepted"}
    except LatpredError as exc:
        msg = str(exc)
        res = {"outcome": "rejected", "message": msg[:300]}
        if len(msg.splitlines()) != 1 or not msg.strip():
            res = {"outcome": "implausible", "message": msg[:300],
                   "problems": [f"LatpredError message has {len(msg.splitlines())} lines"]}
        mem = _memory_cause(exc)
        if mem is not None:
            res = {**describe_exception(mem), "outcome": "over_memory", "then": "rejected",
                   "message": f"MemoryError wrapped as LatpredError: {msg[:200]}"}
    except MemoryError as exc:
        res = {**describe_exception(exc), "outcome": "over_memory", "restart": True}
    except KeyboardInterrupt:
        raise
    except BaseException as exc:            # SystemExit from library code is a crash site too
        res = {**describe_exception(exc), "outcome": "traceback"}
    res["seconds"] = round(time.perf_counter() - t0, 4)
    res["peak_rss_mb"] = round(_status_mb(), 1)
    refused = [b for b in _NUMPY_REFUSED if b != 0]
    if res["outcome"] != "over_memory":
        if res["peak_rss_mb"] > RSS_LIMIT_MB:
            res.update(then=res["outcome"], outcome="over_memory",
                       message=f"peak RSS {res['peak_rss_mb']} MB > {RSS_LIMIT_MB} MB")
        elif refused:
            res.update(then=res["outcome"], outcome="over_memory",
                       message=f"numpy was refused {max(refused) / 2**20:.0f} MiB "
                               f"(MemoryError swallowed)")
    return res


class _Fault:
    """Self-test stand-ins for a pipeline that hangs, crashes natively or blows up memory."""

    def __init__(self, kind: str):
        self.kind = kind

    def run(self, path: str) -> list[str]:
        import numpy as np
        if self.kind == "hang":
            time.sleep(3600)
        elif self.kind == "segfault":
            import ctypes
            ctypes.string_at(0)
        elif self.kind == "alloc":
            np.ones(2**31)
        elif self.kind == "swallowed":
            try:
                np.empty(2**40)
            except MemoryError:
                pass
        elif self.kind == "rss":
            np.ones(int(RSS_LIMIT_MB * 2**20 * 0.75) // 8)   # touched: on top of the baseline
        elif self.kind == "error":
            {}["missing"]
        return []


SELF_TEST = {"hang": "hang", "segfault": "crash", "alloc": "over_memory",
             "swallowed": "over_memory", "rss": "over_memory", "error": "traceback"}


def _set_memory_limit(mb: int) -> None:
    import resource
    limit = int(mb) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def worker_main(work: str, mem_limit_mb: int, case_timeout: float) -> None:
    """Persistent worker: one JSON request per stdin line, one JSON result per line on fd 1."""
    import faulthandler
    import logging
    import warnings
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)                      # library prints must not corrupt the protocol
    faulthandler.enable()                    # native crashes: the stack goes to the worker log
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    manifest = ensure_seeds(work)
    pipeline = Pipeline(os.path.join(work, manifest["bundle"]))
    seeds = {}                               # warm up lazy imports and rule files before the limit
    for s in manifest["seeds"]:
        res = classify(pipeline, os.path.join(work, "seeds", s["name"]))
        seeds[s["name"]] = res["outcome"] if res["outcome"] != "implausible" else \
            "implausible: " + "; ".join(res.get("problems", []))[:200]
    _watch_numpy_allocations()
    _set_memory_limit(mem_limit_mb)
    proto.write(json.dumps({"ready": True, "rss_mb": _status_mb(key="VmRSS"),
                            "vm_mb": _status_mb(key="VmSize"), "seeds": seeds}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        faulthandler.dump_traceback_later(case_timeout * 0.8, exit=False)
        res = classify(_Fault(req["inject"]) if req.get("inject") else pipeline, req["path"])
        faulthandler.cancel_dump_traceback_later()
        res["id"] = req["id"]
        proto.write(json.dumps(res) + "\n")
        if res.get("restart"):
            break


# ================================================================================================
# The parent: workers, hangs, crashes, summary

class WorkerDied(Exception):
    pass


def _stack_site(text: str) -> tuple[str, list[str]]:
    """Innermost latpred frame of a faulthandler dump ("File ..., line N in f", most recent first)."""
    import re
    frames = re.findall(r'File "([^"]+)", line (\d+) in (\S+)', text)
    pkg = os.path.join(ROOT, "latpred") + os.sep
    ours = [f"{os.path.relpath(f, ROOT)}:{ln} {fn}" for f, ln, fn in frames if f.startswith(pkg)]
    return (ours[0] if ours else "?"), ours[:6]


class Worker:
    def __init__(self, slot: int, args, run_dir: str):
        self.slot, self.args, self.run_dir = slot, args, run_dir
        self.log_path = os.path.join(run_dir, f"worker{slot}.log")
        self.proc = None
        self.starts = 0
        self.start()

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (ROOT, os.environ.get("PYTHONPATH")) if p), **WORKER_ENV)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", os.path.abspath(__file__), "--_worker", "--work", self.args.work,
             "--mem-limit-mb", str(self.args.mem_limit_mb), "--timeout", str(self.args.timeout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, cwd=ROOT, env=env)
        self.log.close()
        self.buf = b""
        self.starts += 1
        try:
            msg = self._read(300)
        except WorkerDied:
            msg = None
        self.ready = msg or {}
        if not msg or not msg.get("ready"):
            self.kill()
            raise RuntimeError(f"fuzz worker did not start; see {self.log_path}:\n"
                               + self._log_since(0)[-2000:])

    def _read(self, timeout: float):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise WorkerDied()
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return fh.read(200_000).decode(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except Exception:
                    pass

    def run(self, case_id: str, path: str, inject: str | None = None) -> dict:
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        req = {"id": case_id, "path": path, **({"inject": inject} if inject else {})}
        try:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
            msg = self._read(self.args.timeout)
        except (WorkerDied, BrokenPipeError, OSError):
            rc = self.proc.wait()
            text = self._log_since(offset)
            where, frames = _stack_site(text)
            sig = -rc if rc < 0 else None
            outcome = "over_memory" if sig == signal.SIGKILL else "crash"
            fatal = [ln for ln in text.splitlines() if "Fatal Python error" in ln or "terminate" in ln]
            msg = fatal[0] if fatal else (text.strip().splitlines() or [""])[-1]
            try:
                what = signal.Signals(sig).name if sig else f"exit {rc}"
            except ValueError:
                what = f"signal {sig}"
            res = {"outcome": outcome, "exception": what,
                   "message": msg[:300], "where": where, "latpred_frames": frames,
                   "traceback": text[-4000:]}
            self.kill()
            self.start()
            return res
        if msg is None:
            peak = _status_mb(self.proc.pid)
            self.proc.send_signal(signal.SIGKILL)
            self.kill()
            text = self._log_since(offset)
            where, frames = _stack_site(text)
            self.start()
            return {"outcome": "over_memory" if peak > RSS_LIMIT_MB else "hang",
                    "exception": "Timeout", "message": f"no answer within {self.args.timeout:g} s"
                    + (f", peak RSS {peak:.0f} MB" if peak > RSS_LIMIT_MB else ""),
                    "where": where, "latpred_frames": frames, "peak_rss_mb": round(peak, 1),
                    "traceback": text[-4000:]}
        if msg.get("restart"):
            self.kill()
            self.start()
        return msg


def _ext(fmt: str) -> str:
    return ".tflite" if fmt == "tflite" else ".onnx"


def repro_command(case_id: str, work: str) -> str:
    cmd = f".venv/bin/python experiments/fuzz.py --replay {case_id}"
    if os.path.abspath(work) != DEFAULT_WORK:
        cmd += f" --work {work}"
    return cmd


def site_of(r: dict) -> str:
    if r["outcome"] == "implausible":
        first = (r.get("problems") or ["?"])[0]
        import re
        # numbers vary between cases of one site; op type names (CONV_2D) do not
        return "implausible: " + re.sub(r"(?<![A-Za-z_])-?\d+(\.\d+)?(e[+-]?\d+)?", "N",
                                        first)[:120]
    return f"{r['outcome']}: {r.get('exception', '?')} at {r.get('where', '?')}"


def run_fuzz(args) -> dict:
    manifest = ensure_seeds(args.work, args.rebuild_seeds)
    seeds = load_seeds(args.work, manifest)
    stale = [s.name for s in seeds if s.stale]
    if stale:
        print(f"fuzz: warning: seed files changed since the manifest: {stale}", file=sys.stderr)
    run_dir = os.path.join(args.work, f"run-{os.getpid()}")
    os.makedirs(run_dir, exist_ok=True)
    indices = list(range(args.start, args.start + args.cases))
    results: dict[int, dict] = {}
    lock = threading.Lock()
    it = iter(indices)
    t0 = time.perf_counter()
    errors: list[BaseException] = []
    progress = {"done": 0, "last": t0}
    baseline: dict = {}

    def slot_main(slot: int) -> None:
        try:
            w = Worker(slot, args, run_dir)
        except BaseException as exc:
            errors.append(exc)
            return
        with lock:
            baseline.setdefault("ready", w.ready)
        try:
            while True:
                with lock:
                    index = next(it, None)
                if index is None:
                    return
                case = make_case(seeds, args.seed, index)
                path = os.path.join(run_dir, case["id"] + _ext(case["format"]))
                with open(path, "wb") as fh:
                    fh.write(case.pop("data"))
                res = w.run(case["id"], path)
                os.remove(path)
                res.update({k: v for k, v in case.items()})
                with lock:
                    results[index] = res
                    progress["done"] += 1
                    now = time.perf_counter()
                    if args.progress and now - progress["last"] > 10:
                        progress["last"] = now
                        print(f"fuzz: {progress['done']}/{len(indices)} cases, "
                              f"{progress['done'] / (now - t0):.1f}/s", file=sys.stderr)
        except BaseException as exc:
            errors.append(exc)
        finally:
            w.kill()

    threads = [threading.Thread(target=slot_main, args=(k,), daemon=True)
               for k in range(max(1, args.workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    elapsed = time.perf_counter() - t0
    ordered = [results[i] for i in indices if i in results]
    for r in ordered:
        r["mutation"] = r["description"]
    summary = summarize(ordered, args, seeds, elapsed)
    ready = baseline.get("ready", {})
    summary["seed_outcomes"] = ready.get("seeds", {})
    summary["worker_baseline"] = {"rss_mb": ready.get("rss_mb"), "vm_mb": ready.get("vm_mb")}
    # worker logs hold the stacks of hangs and native crashes: keep them only then
    keep = any(r["outcome"] in ("hang", "crash") for r in ordered)
    _remove_run_dir(run_dir, keep_logs=keep)
    if keep:
        summary["worker_logs"] = run_dir
    return summary, ordered


def _remove_run_dir(run_dir: str, keep_logs: bool) -> None:
    try:
        for name in os.listdir(run_dir):
            if not (keep_logs and name.endswith(".log")):
                os.remove(os.path.join(run_dir, name))
        os.rmdir(run_dir)
    except OSError:
        pass


def summarize(results: list[dict], args, seeds, elapsed: float) -> dict:
    counts = {o: 0 for o in OUTCOMES}
    by_mutator: dict[str, dict[str, int]] = {}
    by_seed: dict[str, dict[str, int]] = {}
    sites: dict[str, dict] = {}
    for r in results:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
        by_mutator.setdefault(r["mutator"], {}).setdefault(r["outcome"], 0)
        by_mutator[r["mutator"]][r["outcome"]] += 1
        by_seed.setdefault(r["seed_file"], {}).setdefault(r["outcome"], 0)
        by_seed[r["seed_file"]][r["outcome"]] += 1
        if r["outcome"] in FAILURES:
            key = site_of(r)
            s = sites.setdefault(key, {"site": key, "outcome": r["outcome"],
                                       "exception": r.get("exception"),
                                       "message": r.get("message") or "; ".join(r.get("problems", [])),
                                       "where": r.get("where"), "count": 0, "cases": [],
                                       "example": r["id"], "example_mutation": r["description"],
                                       "repro": repro_command(r["id"], args.work),
                                       "latpred_frames": r.get("latpred_frames", []),
                                       "traceback": r.get("traceback", "")})
            s["count"] += 1
            if len(s["cases"]) < 20:
                s["cases"].append(r["id"])
    failing = [{"id": r["id"], "outcome": r["outcome"], "seed_file": r["seed_file"],
                "mutator": r["mutator"], "mutation": r["description"], "site": site_of(r),
                "exception": r.get("exception"), "message": r.get("message"),
                "problems": r.get("problems"), "where": r.get("where"),
                "repro": repro_command(r["id"], args.work)}
               for r in results if r["outcome"] in FAILURES]
    peaks = [r.get("peak_rss_mb", -1) for r in results if r.get("peak_rss_mb") is not None]
    slowest = max(results, key=lambda r: r.get("seconds", 0), default=None)
    return {
        "seed": args.seed, "start": args.start, "cases": len(results), "workers": args.workers,
        "timeout_s": args.timeout, "mem_limit_mb": args.mem_limit_mb, "rss_limit_mb": RSS_LIMIT_MB,
        "seconds": round(elapsed, 2), "cases_per_s": round(len(results) / elapsed, 2) if elapsed else 0,
        "counts": counts, "failures_total": sum(counts[o] for o in FAILURES),
        "over_rss_limit": sum(1 for p in peaks if p > RSS_LIMIT_MB),
        "peak_rss_mb_max": max(peaks, default=-1),
        "slowest_case": {"id": slowest["id"], "seconds": slowest.get("seconds")} if slowest else None,
        "by_mutator": by_mutator, "by_seed": by_seed,
        "seeds": [{"name": s.name, "sha256": s.sha256} for s in seeds],
        "sites": sorted(sites.values(), key=lambda s: -s["count"]),
        "failing_cases": failing[:500], "failing_cases_left_off": max(0, len(failing) - 500),
    }


def print_table(summary: dict, out=sys.stdout) -> None:
    out.write(f"latpred fuzz: {summary['cases']} cases (seed {summary['seed']}), "
              f"{summary['workers']} worker(s), {summary['seconds']:.1f} s, "
              f"{summary['cases_per_s']:.1f} cases/s\n")
    for o in OUTCOMES:
        out.write(f"  {o:<12} {summary['counts'].get(o, 0):>7}\n")
    out.write(f"  peak RSS max {summary['peak_rss_mb_max']:.0f} MB (worker baseline "
              f"{summary.get('worker_baseline', {}).get('rss_mb') or 0:.0f} MB); cases over "
              f"{summary['rss_limit_mb']} MB: {summary['over_rss_limit']}\n")
    bad_seeds = {k: v for k, v in summary.get("seed_outcomes", {}).items() if v != "accepted"}
    if bad_seeds:
        out.write(f"  unmutated seeds not accepted: {bad_seeds}\n")
    if summary["sites"]:
        out.write(f"distinct failure sites: {len(summary['sites'])}\n")
        for s in summary["sites"]:
            out.write(f"  {s['count']:>5}  {s['site']}\n         {(s['message'] or '')[:110]}\n"
                      f"         e.g. {s['example']}: {s['repro']}\n")


def append_findings(summary: dict, path: str) -> int:
    """One line per failure site not yet in the findings file."""
    try:
        with open(path) as fh:
            known = fh.read()
    except OSError:
        known = ""
    lines = []
    for s in summary["sites"]:
        if s["site"] in known:
            continue
        lines.append(f"- `{s['example']}` {s['site']} — {(s['message'] or '').strip()[:160]} "
                     f"({s['count']} of {summary['cases']} cases, seed {summary['seed']}; "
                     f"mutation: {s['example_mutation'][:120]}) — repro: `{s['repro']}`\n")
    if lines:
        with open(path, "a") as fh:
            if not known:
                fh.write("# latpred fuzz findings (experiments/fuzz.py)\n\n")
            fh.writelines(lines)
    return len(lines)


# ================================================================================================
# Replay and seed check (in this process)

def parse_case_id(text: str, default_seed: int) -> tuple[int, int]:
    if "-" in text.lstrip("-"):
        s, i = text.rsplit("-", 1)
        return int(s), int(i)
    return default_seed, int(text)


class _ReplayTimeout(BaseException):
    """Not an Exception: the readers' broad ``except Exception`` must not turn it into a rejection."""


def replay(args) -> int:
    import logging
    manifest = ensure_seeds(args.work)
    seeds = load_seeds(args.work, manifest)
    seed, index = parse_case_id(args.replay, args.seed)
    case = make_case(seeds, seed, index)
    out = args.out or os.path.join(args.work, "replay", case["id"] + _ext(case["format"]))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "wb") as fh:
        fh.write(case["data"])
    print(f"case {case['id']}: {case['seed_file']} {case['description']}")
    print(f"mutant written to {out} ({len(case['data'])} bytes)")
    logging.basicConfig(level=logging.WARNING, format="latpred: %(levelname)s: %(message)s")
    pipeline = Pipeline(os.path.join(args.work, manifest["bundle"]))
    from latpred.errors import LatpredError

    def on_alarm(signum, frame):
        raise _ReplayTimeout(f"case ran past {args.timeout:g} s")

    signal.signal(signal.SIGALRM, on_alarm)
    if not args.no_limits:
        _watch_numpy_allocations()
        _set_memory_limit(args.mem_limit_mb)
        signal.setitimer(signal.ITIMER_REAL, args.timeout)
    _NUMPY_REFUSED.clear()
    _reset_peak()
    try:
        problems = pipeline.run(out)
        signal.setitimer(signal.ITIMER_REAL, 0)
        outcome = "implausible" if problems else "accepted"
        for p in problems:
            print(f"  implausible: {p}")
    except LatpredError as exc:
        signal.setitimer(signal.ITIMER_REAL, 0)
        outcome = "rejected"
        print(f"latpred: {exc}")
        if _memory_cause(exc) is not None:
            outcome = "over_memory"
            traceback.print_exception(_memory_cause(exc))
    except _ReplayTimeout:
        outcome = "hang"
        traceback.print_exc()
    except MemoryError:
        signal.setitimer(signal.ITIMER_REAL, 0)
        outcome = "over_memory"
        traceback.print_exc()
    except Exception:
        signal.setitimer(signal.ITIMER_REAL, 0)
        outcome = "traceback"
        traceback.print_exc()
    peak = _status_mb()
    refused = [b for b in _NUMPY_REFUSED if b]
    if outcome != "over_memory" and (peak > RSS_LIMIT_MB or refused):
        outcome = "over_memory"
    print(f"outcome: {outcome} (peak RSS {peak:.0f} MB"
          + (f", numpy refused {max(refused) / 2**20:.0f} MiB" if refused else "") + ")")
    return 0 if outcome in ("accepted", "rejected") else 1


def self_test(args) -> int:
    """The harness itself: injected hang, native crash and memory faults must be classified so,
    and the worker must come back after each."""
    manifest = ensure_seeds(args.work)
    run_dir = os.path.join(args.work, f"selftest-{os.getpid()}")
    os.makedirs(run_dir, exist_ok=True)
    seed_path = os.path.join(args.work, "seeds", manifest["seeds"][0]["name"])
    w = Worker(0, args, run_dir)
    bad = 0
    try:
        for kind, expected in list(SELF_TEST.items()) + [(None, "accepted")]:
            res = w.run(f"selftest-{kind}", seed_path, inject=kind)
            ok = res["outcome"] == expected
            bad += not ok
            print(f"{kind or 'seed':<10} {res['outcome']:<12} {'ok' if ok else 'EXPECTED ' + expected}"
                  f"  {res.get('exception') or ''} {(res.get('message') or '')[:80]}")
    finally:
        w.kill()
        _remove_run_dir(run_dir, keep_logs=bool(bad))
    return 1 if bad else 0


def check_seeds(args) -> int:
    manifest = ensure_seeds(args.work, args.rebuild_seeds)
    pipeline = Pipeline(os.path.join(args.work, manifest["bundle"]))
    bad = 0
    for s in manifest["seeds"]:
        res = classify(pipeline, os.path.join(args.work, "seeds", s["name"]))
        ok = res["outcome"] == "accepted"
        bad += not ok
        print(f"{s['name']:<22} {res['outcome']:<12} {res['seconds']:.3f} s "
              f"{res.get('problems') or res.get('message') or ''}")
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first case index")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=CASE_TIMEOUT_S, help="seconds per case")
    ap.add_argument("--mem-limit-mb", type=int, default=MEM_LIMIT_MB, help="RLIMIT_AS of a worker")
    ap.add_argument("--work", default=DEFAULT_WORK, help="seeds, bundle and run files")
    ap.add_argument("--summary", help="JSON summary path (default WORK/summary.json)")
    ap.add_argument("--findings", help="append new failure sites to this markdown file")
    ap.add_argument("--replay", metavar="ID", help="case S-I (or I with --seed): write it, run it here")
    ap.add_argument("--out", help="with --replay: where to write the mutant")
    ap.add_argument("--no-limits", action="store_true", help="with --replay: no memory/time limit")
    ap.add_argument("--check-seeds", action="store_true")
    ap.add_argument("--self-test", action="store_true",
                    help="inject a hang, a native crash and memory faults; check their outcomes")
    ap.add_argument("--rebuild-seeds", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_build-seeds", dest="build_seeds", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.work = os.path.abspath(args.work)
    args.progress = not args.quiet
    if args.build_seeds:
        _build_seeds(os.path.abspath(args.build_seeds))
        return 0
    if args._worker:
        worker_main(args.work, args.mem_limit_mb, args.timeout)
        return 0
    if args.replay:
        return replay(args)
    if args.check_seeds:
        return check_seeds(args)
    if args.self_test:
        return self_test(args)
    summary, results = run_fuzz(args)
    path = args.summary or os.path.join(args.work, "summary.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(summary, fh, indent=1)
    with open(os.path.splitext(path)[0] + ".cases.jsonl", "w") as fh:
        for r in results:
            fh.write(json.dumps({k: r.get(k) for k in ("id", "outcome", "seed_file", "mutation",
                                                        "message", "problems", "where",
                                                        "seconds", "peak_rss_mb")
                                 if r.get(k) is not None}) + "\n")
    if not args.quiet:
        print_table(summary)
        print(f"summary: {path}")
    if args.findings:
        n = append_findings(summary, args.findings)
        if not args.quiet:
            print(f"{n} new failure site(s) appended to {args.findings}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
