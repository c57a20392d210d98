"""Host backend: ONNX Runtime (CPU execution provider).

End-to-end: the session as deployed (``ORT_ENABLE_ALL``, ONNX Runtime's default graph
optimizations), intra-op threads = cores, timed like the LiteRT backend (warm-up, median + CV).

Op-wise, two kinds (never mixed: the in-graph kind is runtime version ``<v>+opprof``):

- ``opprof`` (:func:`measure_onnx_opprof`, the default): ONNX Runtime's own per-node profiler
  (``SessionOptions.enable_profiling``) in a second session with the same optimizations, whose runs
  alternate with the timed ones in blocks of three (as :mod:`.litert_opprof` does); the profiled
  nodes are those of the optimized graph, mapped onto the file's nodes by :mod:`.ort_align`.
  File nodes the runtime fused into another read 0 ms.
- ``unfused`` (:func:`measure_onnx`): the profiler in a session with graph optimizations off, so
  every node of the file is timed under its own name. These op times do not add up to the
  optimized end-to-end run (nothing is fused), like isolated op timings.

Reference gauge (``reference``, opprof only): a fixed ``.onnx`` model in a third session with the
timed session's options, run after each block of timed runs, as many times; its timing is
``reference`` in the result (see :mod:`.litert_opprof` for why).

The profiler reports whole microseconds: ops under ~10 us get coarse latencies and high CVs.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

import numpy as np

from .litert import (DEFAULT_BUDGET_S, DEFAULT_RUNS, DEFAULT_WARMUP, random_array, run_count,
                     summarize)

_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16,
    "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
}


def ort_version() -> str:
    import onnxruntime
    return onnxruntime.__version__


def _named_model(content: bytes) -> tuple[bytes, list[tuple[str, str, str]]]:
    """Give every node a unique name (the profiler reports nodes by name); returns the bytes and
    (name, op_type, first output) per node in file order."""
    import onnx
    model = onnx.load_from_string(content)
    seen: set[str] = set()
    nodes = []
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"latpred_node_{i}"
        seen.add(node.name)
        nodes.append((node.name, node.op_type, node.output[0] if node.output else ""))
    return model.SerializeToString(), nodes


def _feeds(session, rng, input_shape=None) -> dict[str, np.ndarray]:
    """Random inputs; symbolic dims become 1, or come from ``input_shape`` (first input)."""
    if isinstance(input_shape, str):
        from ..readers import parse_input_shape
        input_shape = parse_input_shape(input_shape)
    feeds = {}
    for i, inp in enumerate(session.get_inputs()):
        shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in inp.shape)
        if i == 0 and input_shape and len(input_shape) == len(shape):
            shape = tuple(int(d) for d in input_shape)
        feeds[inp.name] = random_array(shape, np.dtype(_ORT_DTYPES.get(inp.type, np.float32)), rng)
    return feeds


def measure_onnx(content: bytes, threads: int = 1, runs: int = DEFAULT_RUNS,
                 warmup: int = DEFAULT_WARMUP, budget_s: float = DEFAULT_BUDGET_S,
                 op_wise: bool = True, seed: int = 0,
                 input_shape: tuple[int, ...] | str | None = None) -> dict[str, Any]:
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    content, nodes = _named_model(content)

    def options(profile_dir: str | None) -> "ort.SessionOptions":
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        if profile_dir is not None:
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(profile_dir, "ort")
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return so

    sess = ort.InferenceSession(content, options(None), providers=["CPUExecutionProvider"])
    feeds = _feeds(sess, rng, input_shape)
    clock = time.perf_counter_ns
    warm = []
    for _ in range(max(warmup, 1)):
        t = clock(); sess.run(None, feeds); warm.append(clock() - t)
    n = run_count(float(np.median(warm)) / 1e6, runs, budget_s)
    timed = []
    for _ in range(n):
        t = clock(); sess.run(None, feeds); timed.append(clock() - t)
    e2e = summarize(timed)
    del sess

    ops: list[dict[str, Any]] = []
    if op_wise:
        with tempfile.TemporaryDirectory(prefix="latpred-ort-") as tmp:
            psess = ort.InferenceSession(content, options(tmp), providers=["CPUExecutionProvider"])
            for _ in range(warmup + n):
                psess.run(None, feeds)
            with open(psess.end_profiling()) as fh:
                per_node = _node_times(json.load(fh))
        for index, (name, op_type, out) in enumerate(nodes):
            samples = per_node.get(name)
            if not samples:
                continue   # e.g. Constant nodes: folded at load, never executed
            t = summarize(samples[warmup:] or samples)
            ops.append({"op_index": index, "op_type": op_type, "output_name": out,
                        "latency_ms": t.median_ms, "latency_cv": t.cv, "runs": t.runs})
    return {"e2e": e2e, "ops": ops, "runs": n, "runtime": "onnxruntime",
            "runtime_version": ort_version()}


OPTIMIZATION_LEVEL = "ORT_ENABLE_ALL"      # ONNX Runtime's default: what a deployment runs
INTERLEAVE_BLOCK = 3


def _node_times(events: list[dict]) -> dict[str, list[int]]:
    """{node name: kernel time in ns per run, in run order} from a profile's events."""
    per_node: dict[str, list[int]] = {}
    for ev in events:
        name = ev.get("name", "")
        if ev.get("cat") == "Node" and name.endswith("_kernel_time"):
            per_node.setdefault(name[: -len("_kernel_time")], []).append(int(ev["dur"]) * 1000)
    return per_node


def measure_onnx_opprof(content: bytes, threads: int = 1, runs: int = DEFAULT_RUNS,
                        warmup: int = DEFAULT_WARMUP, budget_s: float = DEFAULT_BUDGET_S,
                        op_wise: bool = True, seed: int = 0,
                        input_shape: tuple[int, ...] | str | None = None,
                        reference: bytes | None = None) -> dict[str, Any]:
    """In-graph op timings of the optimized graph (see module doc); result shape as
    :func:`measure_onnx`, plus the alignment's counts (``ort_folded``, ``ort_unmatched_ms``) and
    the gauge's timing (``reference``, None without one)."""
    import onnx
    import onnxruntime as ort

    from .litert_opprof import _trimmed_mean
    from .ort_align import align_graphs, onnx_nodes

    rng = np.random.default_rng(seed)
    content, _ = _named_model(content)
    file_nodes = onnx_nodes(onnx.load_from_string(content))

    def options(tmp: str | None) -> "ort.SessionOptions":
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVEL)
        so.log_severity_level = 3
        if tmp is not None:
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(tmp, "ort")
            so.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        return so

    clock = time.perf_counter_ns
    with tempfile.TemporaryDirectory(prefix="latpred-ort-") as tmp:
        sess = ort.InferenceSession(content, options(None), providers=["CPUExecutionProvider"])
        psess = (ort.InferenceSession(content, options(tmp), providers=["CPUExecutionProvider"])
                 if op_wise else None)
        feeds = _feeds(sess, rng, input_shape)
        gauge = gauge_feeds = None
        if reference is not None:
            gauge = ort.InferenceSession(reference, options(None),
                                         providers=["CPUExecutionProvider"])
            gauge_feeds = _feeds(gauge, rng)
        warm = []
        for _ in range(max(warmup, 1)):
            t = clock(); sess.run(None, feeds); warm.append(clock() - t)
            if psess is not None:
                psess.run(None, feeds)
            if gauge is not None:
                gauge.run(None, gauge_feeds)
        probe = float(np.median(warm[len(warm) // 2:] or warm)) / 1e6
        n = run_count(probe, runs, budget_s)
        timed: list[int] = []
        gauge_timed: list[int] = []
        while len(timed) < n:
            block = min(INTERLEAVE_BLOCK, n - len(timed))
            for _ in range(block):
                t = clock(); sess.run(None, feeds); timed.append(clock() - t)
            if gauge is not None:
                for _ in range(block):
                    t = clock(); gauge.run(None, gauge_feeds); gauge_timed.append(clock() - t)
            if psess is not None:
                for _ in range(block):
                    psess.run(None, feeds)
        e2e = summarize(timed)
        del gauge
        ops: list[dict[str, Any]] = []
        extra: dict[str, Any] = {}
        if psess is not None:
            with open(psess.end_profiling()) as fh:
                per_node = _node_times(json.load(fh))
            optimized = onnx_nodes(onnx.load(os.path.join(tmp, "optimized.onnx")))
            del psess
            alignment = align_graphs(file_nodes, optimized)
            last = {name: np.asarray(v[-n:], dtype=float) / 1e6 for name, v in per_node.items()}
            for index, node in enumerate(file_nodes):
                owned = [last[o] for o in alignment.owners.get(index, ()) if o in last]
                if index in alignment.folded:
                    col = np.zeros(n)
                elif owned and all(len(c) == n for c in owned):
                    col = np.sum(owned, axis=0)
                elif owned:     # a node that ran a different number of times: its mean per run
                    col = np.full(n, sum(float(np.mean(c)) for c in owned))
                else:
                    continue        # never executed (e.g. a Constant folded at load)
                mean = float(col.mean())
                ops.append({"op_index": index, "op_type": node.op_type,
                            "output_name": node.outputs[0] if node.outputs else "",
                            "latency_ms": _trimmed_mean(col),
                            "latency_cv": float(col.std() / mean) if mean > 0 else 0.0,
                            "runs": n, "folded": index in alignment.folded})
            unmatched = [last[o] for o in alignment.unmatched if o in last]
            extra = {"ort_folded": len(alignment.folded), "ort_optimized_nodes": len(optimized),
                     "ort_unmatched_ms": float(sum(np.mean(c) for c in unmatched))}
        del sess
    return {"e2e": e2e, "ops": ops, "runs": n, "runtime": "onnxruntime",
            "runtime_version": ort_version(), "op_timing": "opprof",
            "optimization_level": OPTIMIZATION_LEVEL,
            "reference": summarize(gauge_timed) if gauge_timed else None, **extra}
