"""Host backend: LiteRT's own op profiler inside full-graph runs (the host analogue of
``benchmark_model --enable_op_profiling``, which the paper uses on phones).

Why: timing every op as its own single-op model (:mod:`.litert`) does not add up to the full run on
this host (per-invoke cost counted once per op, caches warmed by repeating one op), so
``e2e = T_overhead + Σ op`` — the paper's decomposition — does not hold for such data. Here the op
latencies come from the same execution as the end-to-end latency.

How: ai-edge-litert's Python API does not expose the profiler, so we call the LiteRT C API in the
``libLiteRt.so`` the wheel ships (ctypes; names and signatures from ``litert/c/litert_*.h``):
environment → model → options with the runtime option ``enable_profiling = true`` → compiled model
(XNNPACK on the CPU) → tensor buffers → runs. End-to-end: ``warmup`` runs, then timed runs with the
profiler stopped (it adds ~0.3 ms per run). Op-wise: as many runs with the profiler started,
alternating with the timed ones in blocks of three; each event is one XNNPACK operator
(or interpreter node) of one run, in whole microseconds, and :mod:`.xnn_align` maps operators to
the .tflite ops. The event record layout is checked against the data (never guessed silently): an
unknown LiteRT build is one clear error.

Threads: the CPU options are one more opaque option, identifier ``xnnpack``, TOML payload
``num_threads = N``: what ``LiteRtCreateCpuOptions`` + ``LiteRtSetCpuOptionsNumThread`` build
(LiteRT v2.2.0 ``litert/c/options/litert_cpu_options.cc``; this ``libLiteRt.so`` does not export
them). The XNNPACK accelerator reads it (``runtime/accelerators/xnnpack/xnnpack_accelerator.cc``)
and starts an N-thread pool, as ``CpuOptions(num_threads=N)`` of the wheel's Python
``CompiledModel`` does. The interpreter's own thread count (ops XNNPACK does not take) is read
under another identifier, ``cpu_delegate`` (``LiteRtCpuOptionsT::Identifier`` in
``runtime/litert_cpu_options.h``, ``compiled_model.cc`` ``InitializeRuntime``), which the public
API never writes; we set it too, so that N threads means what ``Interpreter(num_threads=N)``
and ``benchmark_model --num_threads`` mean. A runtime that starts no pool is an error.

Reference gauge (``reference``, optional): a second, fixed model compiled beside the measured one
and run after each block of timed runs, as many times. The shared VMs this project measures on
drift by 5-27 % between passes (datasets/host_xeon/CARD.md), and a drift of the whole machine hits
both models alike, so the ratio of a model's time to the gauge's, measured seconds apart, is
steadier than either; :func:`latpred.store.normalize_store` uses it. The gauge's time is stored
beside the model's; no measured value is changed here.

Limits: ops under 1 us read as 0 ms.
"""
from __future__ import annotations

import ctypes
import os
import struct
import time
from typing import Any

import numpy as np

from ..errors import LatpredError
from .litert import (DEFAULT_BUDGET_S, DEFAULT_RUNS, DEFAULT_WARMUP, Timing, litert_version,
                     random_array, run_count, summarize)
from .xnn_align import align

_VP = ctypes.c_void_p
_PROFILING_TOML = b"enable_profiling = true\n"
_RUNTIME_OPTIONS_ID = b"runtime_options_string"
# XNNPACK's pool (LrtGetCpuOptionsIdentifier), the interpreter's (LiteRtCpuOptionsT::Identifier)
_THREAD_OPTION_IDS = (b"xnnpack", b"cpu_delegate")
THREAD_OPTION = "xnnpack.num_threads,cpu_delegate.num_threads"
_HW_CPU = 1
_LOCK_WRITE = 1
# LiteRtElementType follows TfLiteType's numbering.
_DTYPES = {1: np.float32, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16,
           9: np.int8, 10: np.float16, 11: np.float64}
# Profiler event types (tflite::Profiler::EventType).
_EV_OPERATOR, _EV_DELEGATE_OP, _EV_DELEGATE_PROFILED_OP = 2, 4, 8
_KNOWN_TYPES = {1, 2, 4, 8, 16, 32, 64, 128, 256}
_EVENT_SIZES = (104, 88, 96, 112, 120)
INTERLEAVE_BLOCK = 3   # timed and profiled runs alternate in blocks of this many   # 104 on ai-edge-litert 2.3.0 (checked against the data)


class _Layout(ctypes.Structure):
    _fields_ = [("packed", ctypes.c_uint32), ("dims", ctypes.c_int32 * 8), ("strides", ctypes.c_uint32 * 8)]


class _RankedType(ctypes.Structure):
    _fields_ = [("element_type", ctypes.c_int32), ("layout", _Layout)]


_LIB = None


def _lib():
    global _LIB
    if _LIB is None:
        import ai_edge_litert
        path = os.path.join(os.path.dirname(ai_edge_litert.__file__), "libLiteRt.so")
        if not os.path.isfile(path):
            raise LatpredError(f"this ai-edge-litert build has no libLiteRt.so ({path}); in-graph "
                               "op profiling needs it (use --op-timing isolated)")
        _LIB = ctypes.CDLL(path)
    return _LIB


def _check(status: int, what: str) -> None:
    if status != 0:
        raise LatpredError(f"LiteRT {what} failed (status {status})")


class _CompiledModel:
    """A model compiled for the CPU with profiling enabled, and its tensor buffers."""

    def __init__(self, content: bytes, threads: int = 1):
        lib = _lib()
        self.lib = lib
        self.env, self.model, self.options, self.cm = _VP(), _VP(), _VP(), _VP()
        self.buffers: list[_VP] = []
        self._bytes = ctypes.create_string_buffer(content, len(content))  # the model points into it
        _check(lib.LiteRtCreateEnvironment(0, None, ctypes.byref(self.env)), "environment")
        _check(lib.LiteRtCreateModelFromBuffer(self.env, self._bytes, ctypes.c_size_t(len(content)),
                                               ctypes.byref(self.model)), "model load")
        _check(lib.LiteRtCreateOptions(ctypes.byref(self.options)), "options")
        _check(lib.LiteRtSetOptionsHardwareAccelerators(self.options, _HW_CPU), "cpu accelerator")
        self._add_toml(_RUNTIME_OPTIONS_ID, _PROFILING_TOML, "runtime options")
        for ident in _THREAD_OPTION_IDS:
            self._add_toml(ident, b"num_threads = %d\n" % threads, "cpu options")
        _check(lib.LiteRtCreateCompiledModel(self.env, self.model, self.options,
                                             ctypes.byref(self.cm)), "compilation")
        sig = _VP()
        _check(lib.LiteRtGetModelSignature(self.model, ctypes.c_size_t(0), ctypes.byref(sig)), "signature")
        n_in, n_out = ctypes.c_size_t(), ctypes.c_size_t()
        _check(lib.LiteRtGetNumSignatureInputs(sig, ctypes.byref(n_in)), "signature inputs")
        _check(lib.LiteRtGetNumSignatureOutputs(sig, ctypes.byref(n_out)), "signature outputs")
        self.inputs = [self._buffer(sig, i, True) for i in range(n_in.value)]
        self.outputs = [self._buffer(sig, i, False) for i in range(n_out.value)]
        self._in = (_VP * len(self.inputs))(*[b for b, _ in self.inputs])
        self._out = (_VP * len(self.outputs))(*[b for b, _ in self.outputs])
        self.profiler = _VP()
        _check(lib.LiteRtCompiledModelGetProfiler(self.cm, ctypes.byref(self.profiler)), "profiler")
        if not self.profiler.value:
            raise LatpredError("this LiteRT build ignored enable_profiling; in-graph op profiling "
                               "is not available (use --op-timing isolated)")

    def _add_toml(self, identifier: bytes, toml: bytes, what: str) -> None:
        lib = self.lib
        libc = ctypes.CDLL(None)
        libc.strdup.restype, libc.strdup.argtypes = _VP, [ctypes.c_char_p]
        payload = libc.strdup(toml)                     # owned (and freed) by the options
        opaque = _VP()
        _check(lib.LiteRtCreateOpaqueOptions(identifier, _VP(payload),
                                             ctypes.cast(libc.free, _VP), ctypes.byref(opaque)),
               what)
        _check(lib.LiteRtAddOpaqueOptions(self.options, opaque), what)

    def _buffer(self, sig, index: int, is_input: bool):
        lib = self.lib
        tensor, rtt, req, buf = _VP(), _RankedType(), _VP(), _VP()
        get_t = (lib.LiteRtGetSignatureInputTensorByIndex if is_input
                 else lib.LiteRtGetSignatureOutputTensorByIndex)
        _check(get_t(sig, ctypes.c_size_t(index), ctypes.byref(tensor)), "signature tensor")
        _check(lib.LiteRtGetRankedTensorType(tensor, ctypes.byref(rtt)), "tensor type")
        get_r = (lib.LiteRtGetCompiledModelInputBufferRequirements if is_input
                 else lib.LiteRtGetCompiledModelOutputBufferRequirements)
        _check(get_r(self.cm, ctypes.c_size_t(0), ctypes.c_size_t(index), ctypes.byref(req)), "buffer needs")
        _check(lib.LiteRtCreateManagedTensorBufferFromRequirements(self.env, ctypes.byref(rtt), req,
                                                                   ctypes.byref(buf)), "tensor buffer")
        self.buffers.append(buf)
        rank = rtt.layout.packed & 0x7F
        return buf, (tuple(int(d) for d in rtt.layout.dims[:rank]), rtt.element_type)

    def fill_inputs(self, rng: np.random.Generator) -> None:
        for buf, (shape, etype) in self.inputs:
            dtype = np.dtype(_DTYPES.get(etype, np.float32))
            data = random_array(shape, dtype, rng).tobytes()
            size, addr = ctypes.c_size_t(), _VP()
            _check(self.lib.LiteRtGetTensorBufferSize(buf, ctypes.byref(size)), "buffer size")
            _check(self.lib.LiteRtLockTensorBuffer(buf, ctypes.byref(addr), _LOCK_WRITE), "buffer lock")
            ctypes.memmove(addr, data, min(len(data), size.value))
            _check(self.lib.LiteRtUnlockTensorBuffer(buf), "buffer unlock")

    def run(self) -> None:
        _check(self.lib.LiteRtRunCompiledModel(self.cm, ctypes.c_size_t(0),
                                               ctypes.c_size_t(len(self.inputs)), self._in,
                                               ctypes.c_size_t(len(self.outputs)), self._out), "run")

    def start(self) -> None:
        _check(self.lib.LiteRtResetProfiler(self.profiler), "profiler reset")
        _check(self.lib.LiteRtStartProfiler(self.profiler), "profiler start")

    def stop_and_read(self) -> list[tuple[str, int, int, int]]:
        """(tag, event type, elapsed us, metadata) of every event since :meth:`start`."""
        lib = self.lib
        _check(lib.LiteRtStopProfiler(self.profiler), "profiler stop")
        n = ctypes.c_int()
        _check(lib.LiteRtGetNumProfilerEvents(self.profiler, ctypes.byref(n)), "profiler events")
        if n.value == 0:
            return []
        raw = (ctypes.c_char * (256 * n.value))()     # room for any record size we accept
        _check(lib.LiteRtGetProfilerEvents(self.profiler, n, raw), "profiler events")
        data = bytes(raw)
        size = _event_size(data, n.value)
        events = []
        for k in range(n.value):
            base = k * size
            tag_ptr, = struct.unpack_from("<Q", data, base)
            etype, = struct.unpack_from("<I", data, base + 8)
            elapsed, = struct.unpack_from("<Q", data, base + 24)
            meta, = struct.unpack_from("<Q", data, base + size - 24)
            events.append((ctypes.string_at(tag_ptr).decode("utf-8", "replace"), etype, elapsed, meta))
        return events

    def close(self) -> None:
        lib = self.lib
        for buf in self.buffers:
            lib.LiteRtDestroyTensorBuffer(buf)
        self.buffers = []
        for fn, h in (("LiteRtDestroyCompiledModel", self.cm), ("LiteRtDestroyOptions", self.options),
                      ("LiteRtDestroyModel", self.model), ("LiteRtDestroyEnvironment", self.env)):
            if h.value:
                getattr(lib, fn)(h)
                h.value = None


def _event_size(data: bytes, n: int) -> int:
    """The event record size: the one under which every record has a known event type, a
    non-null tag pointer and, for op events, a plausible duration (< 1 hour; telemetry events use
    that field otherwise)."""
    for size in _EVENT_SIZES:
        if size * n > len(data):
            continue
        ok = True
        for k in range(n):
            base = k * size
            tag_ptr, = struct.unpack_from("<Q", data, base)
            etype, = struct.unpack_from("<I", data, base + 8)
            elapsed, = struct.unpack_from("<Q", data, base + 24)
            timed_op = etype in (_EV_OPERATOR, _EV_DELEGATE_OP, _EV_DELEGATE_PROFILED_OP)
            if tag_ptr == 0 or tag_ptr >= 1 << 48 or etype not in _KNOWN_TYPES or \
                    (timed_op and elapsed > 3.6e9):
                ok = False
                break
        if ok:
            return size
    raise LatpredError("unknown LiteRT profiler event layout; in-graph op profiling is not "
                       f"available with ai-edge-litert {litert_version()} (use --op-timing isolated)")


def op_latencies(events: list[tuple[str, int, int, int]], op_types: list[str],
                 runs: int) -> tuple[list[list[float]], float]:
    """Per op, its latency in ms in each profiled run; and the alignment cost.

    Interpreter-run nodes carry their node index; delegate operators are aligned by order."""
    n_ops = len(op_types)
    per_run = [[0.0] * n_ops for _ in range(runs)]
    node_events = [(t, e, m) for (t, k, e, m) in events
                   if k == _EV_OPERATOR and m < n_ops and "delegate" not in t.lower()]
    xnn_events = [(t, e) for (t, k, e, m) in events
                  if k in (_EV_DELEGATE_OP, _EV_DELEGATE_PROFILED_OP)]
    if len(node_events) % runs or len(xnn_events) % runs:
        raise LatpredError("profiler events do not split into equal runs")
    per_node = len(node_events) // runs
    per_xnn = len(xnn_events) // runs
    node_ops = {m for (_, _, m) in node_events[:per_node]}
    delegated = [i for i in range(n_ops) if i not in node_ops]
    names = [t for (t, _) in xnn_events[:per_xnn]]
    assign, cost = align([op_types[i] for i in delegated], names)
    for r in range(runs):
        for (t, e, m) in node_events[r * per_node:(r + 1) * per_node]:
            per_run[r][m] += e / 1000.0
        run_xnn = xnn_events[r * per_xnn:(r + 1) * per_xnn]
        if [t for (t, _) in run_xnn] != names:
            raise LatpredError("profiled runs executed different operator sequences")
        for k, op in enumerate(delegated):
            per_run[r][op] = sum(run_xnn[j][1] for j in assign[k]) / 1000.0
    return per_run, cost


def _n_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _trimmed_mean(values: np.ndarray, cut: float = 0.2) -> float:
    """Mean of the middle 60 %: robust to a stray slow run like the median, but keeps sub-us
    resolution from whole-microsecond events (the median of 0s and 1s is 0 or 1)."""
    v = np.sort(np.asarray(values, dtype=float))
    k = int(len(v) * cut)
    return float(v[k:len(v) - k].mean()) if len(v) > 2 * k else float(v.mean())


def measure_tflite_opprof(content: bytes, threads: int = 1, runs: int = DEFAULT_RUNS,
                          warmup: int = DEFAULT_WARMUP, budget_s: float = DEFAULT_BUDGET_S,
                          op_wise: bool = True, seed: int = 0,
                          reference: bytes | None = None) -> dict[str, Any]:
    """Same result shape as :func:`latpred.profiling.litert.measure_tflite`; op latencies are
    trimmed means over the profiled runs of each op's in-graph time. ``threads``: XNNPACK's thread
    count (see module doc); ``threads_started`` in the result: the threads the process gained
    from compilation and warm-up (XNNPACK's pool adds ``threads - 1`` workers; the interpreter's
    pool, if an op needs it, more). ``reference``: the gauge model's bytes (module doc); its
    timing is ``reference`` in the result."""
    if not isinstance(threads, int) or threads < 1:
        raise LatpredError(f"threads must be a whole number >= 1, got {threads!r}")
    from .isolate import load_model, op_type_name

    model = load_model(content)
    op_types = [op_type_name(model, op) for op in model.subgraphs[0].operators]
    rng = np.random.default_rng(seed)
    before = _n_threads()
    cm = _CompiledModel(content, threads)
    gauge = None
    try:
        cm.fill_inputs(rng)
        clock = time.perf_counter_ns
        warm = []
        for _ in range(max(warmup, 1)):
            t = clock(); cm.run(); warm.append(clock() - t)
        started = _n_threads() - before
        if reference is not None:
            gauge = _CompiledModel(reference, threads)
            gauge.fill_inputs(rng)
            for _ in range(max(warmup, 1)):
                gauge.run()
        # without the pool, data stored as N-thread would be 1-thread data
        if threads > 1 and started < threads - 1:
            raise LatpredError(f"this LiteRT build ignored {THREAD_OPTION} = {threads} (no thread "
                               "pool started); use --cores 1 or --op-timing isolated")
        probe = float(np.median(warm[len(warm) // 2:] or warm)) / 1e6
        n = run_count(probe, runs, budget_s)
        # Timed (profiler off) and profiled runs alternate in small blocks, so that a burst of
        # load from other tenants of the host hits both alike: measured one after the other, a
        # burst during the timed phase alone inflated e2e by up to 40 % over Σ op.
        timed: list[int] = []
        gauge_timed: list[int] = []
        per_run: list[list[float]] = []
        cost = 0.0
        while len(timed) < n:
            block = min(INTERLEAVE_BLOCK, n - len(timed))
            for _ in range(block):
                t = clock(); cm.run(); timed.append(clock() - t)
            if gauge is not None:
                for _ in range(block):
                    t = clock(); gauge.run(); gauge_timed.append(clock() - t)
            if op_wise:
                # reset + start per block: restarting a stopped profiler without a reset
                # drops the next runs' events in this LiteRT build
                cm.start()
                for _ in range(block):
                    cm.run()
                block_runs, cost = op_latencies(cm.stop_and_read(), op_types, block)
                per_run.extend(block_runs)
        e2e: Timing = summarize(timed)
        ops: list[dict[str, Any]] = []
        if op_wise:
            arr = np.asarray(per_run)                       # runs x ops, ms
            for i, op_type in enumerate(op_types):
                col = arr[:, i]
                mean = float(col.mean())
                ops.append({"op_index": i, "op_type": op_type, "output_name": None,
                            "latency_ms": _trimmed_mean(col),
                            "latency_cv": float(col.std() / mean) if mean > 0 else 0.0,
                            "runs": n})
    finally:
        cm.close()
        if gauge is not None:
            gauge.close()
    return {"e2e": e2e, "ops": ops, "runs": n, "runtime": "litert",
            "runtime_version": litert_version(), "op_timing": "opprof", "align_cost": cost,
            "threads": threads, "thread_option": THREAD_OPTION, "threads_started": started,
            "reference": summarize(gauge_timed) if gauge_timed else None}
