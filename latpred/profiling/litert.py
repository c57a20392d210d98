"""Host backend: the LiteRT (TFLite) interpreter with its default CPU delegate (XNNPACK).

End-to-end: ``warmup`` untimed ``invoke()``s, then timed ones; we keep the median and the coefficient
of variation (std/mean). Op-wise: every op is cut into a single-op model (:mod:`.isolate`) and timed
the same way, fed with random data of the right type and shape, or, when the model computes
integer tensors (shapes, indices) that random values could make invalid, with the real activations
it sees inside the model (captured once with the builtin kernels).

Run count: ``runs`` is a ceiling. After the warm-up the end-to-end latency is known, and the run
count for the model (end-to-end and every op) is cut so that the timed runs of one model take about
``budget_s`` seconds, but never below ``MIN_RUNS``. With the defaults (warm-up 5, runs 30, budget
1.5 s) a model up to 25 ms gets all 30 runs, a 50 ms model 15, a 150 ms model 5.

Cores: N cores = N interpreter threads in a child process pinned to N CPUs with
``os.sched_setaffinity`` (:class:`HostWorker`), so pinning never leaks into the caller. The child is a
plain ``python -m latpred.profiling.litert --worker`` process talking pickles over its stdin/stdout:
no multiprocessing re-import of the caller's ``__main__``, and a crash or hang of the runtime on a
bad model only costs that child, which is restarted.
"""
from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_WARMUP = 5
DEFAULT_RUNS = 30
MIN_RUNS = 5
DEFAULT_BUDGET_S = 1.5
DEFAULT_TIMEOUT_S = 600.0


@dataclass
class Timing:
    median_ms: float
    cv: float
    runs: int


def summarize(samples_ns: list[int] | np.ndarray) -> Timing:
    a = np.asarray(samples_ns, dtype=np.float64) / 1e6
    mean = float(a.mean())
    cv = float(a.std() / mean) if mean > 0 and len(a) > 1 else 0.0
    return Timing(median_ms=float(np.median(a)), cv=cv, runs=int(len(a)))


def run_count(probe_ms: float, runs: int, budget_s: float) -> int:
    """Timed runs per measurement for a model whose end-to-end latency is ``probe_ms``.

    Budget is split between end-to-end and op-wise timing (about as long again)."""
    if probe_ms <= 0:
        return runs
    fit = int(budget_s * 1000.0 / (2.0 * probe_ms))
    return max(min(runs, fit), min(MIN_RUNS, runs))


def litert_version() -> str:
    try:
        from importlib.metadata import version
        return version("ai-edge-litert")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "unknown"


# --------------------------------------------------------------------------------------------------
# Measurement (runs inside the pinned worker)

def _fill_inputs(interp, rng: np.random.Generator, values: dict[str, np.ndarray] | None = None):
    for d in interp.get_input_details():
        shape, dtype = tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"])
        x = None if values is None else values.get(d["name"])
        if x is None or tuple(x.shape) != shape or x.dtype != dtype:
            x = random_array(shape, dtype, rng)
        interp.set_tensor(d["index"], x)


def random_array(shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        return rng.random(shape, dtype=np.float32).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -100), min(info.max, 100), size=shape,
                        endpoint=True).astype(dtype)


def _time_invokes(interp, warmup: int, runs: int) -> tuple[list[int], list[int]]:
    clock = time.perf_counter_ns
    warm = []
    for _ in range(warmup):
        t = clock(); interp.invoke(); warm.append(clock() - t)
    timed = []
    for _ in range(runs):
        t = clock(); interp.invoke(); timed.append(clock() - t)
    return warm, timed


def _capture_activations(content: bytes, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every tensor's value for one random input, computed by the reference builtin kernels
    (a delegate would not write its internal tensors back)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    try:
        it = Interpreter(model_content=content, num_threads=1,
                         experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
        _fill_inputs(it, rng)
        it.invoke()
    except Exception:
        return {}
    values = {}
    for d in it.get_tensor_details():
        try:
            values[d["name"]] = np.array(it.get_tensor(d["index"]))
        except Exception:
            continue
    return values


def _needs_real_inputs(content: bytes) -> bool:
    """Whether some op reads a computed integer/bool tensor (a shape, indices): random values
    there could be invalid. Float and 8-bit activations are timed fine with random data, and
    capturing real ones costs a slow reference-kernel run."""
    from .isolate import load_model
    model = load_model(content)
    sg = model.subgraphs[0]
    produced = {int(t) for op in sg.operators or [] for t in (op.outputs if op.outputs is not None else [])}
    from ai_edge_litert import schema_py_generated as schema
    risky = {schema.TensorType.INT32, schema.TensorType.INT64, schema.TensorType.BOOL,
             schema.TensorType.INT16}
    return any(sg.tensors[t].type in risky for t in produced)


def measure_tflite(content: bytes, threads: int = 1, runs: int = DEFAULT_RUNS,
                   warmup: int = DEFAULT_WARMUP, budget_s: float = DEFAULT_BUDGET_S,
                   op_wise: bool = True, seed: int = 0) -> dict[str, Any]:
    """Time one .tflite model end-to-end and (``op_wise``) every op in isolation.

    Returns plain data: {'e2e': Timing, 'ops': [{'op_index', 'op_type', 'output_name',
    'latency_ms', 'latency_cv', 'runs'}], 'runtime', 'runtime_version', 'runs'}. Raises on models
    the runtime cannot load or run."""
    from ai_edge_litert.interpreter import Interpreter

    from .isolate import isolate_ops

    rng = np.random.default_rng(seed)
    interp = Interpreter(model_content=content, num_threads=threads)
    interp.allocate_tensors()
    _fill_inputs(interp, rng)
    warm, _ = _time_invokes(interp, max(warmup, 1), 0)
    probe = float(np.median(warm[len(warm) // 2:] or warm)) / 1e6
    n = run_count(probe, runs, budget_s)
    _, timed = _time_invokes(interp, 0, n)
    e2e = summarize(timed)
    del interp

    ops: list[dict[str, Any]] = []
    if op_wise:
        singles = isolate_ops(content)
        values = _capture_activations(content, rng) if _needs_real_inputs(content) else None
        for single in singles:
            it = Interpreter(model_content=single.content, num_threads=threads)
            it.allocate_tensors()
            _fill_inputs(it, rng, values)
            _, timed = _time_invokes(it, warmup, n)
            t = summarize(timed)
            outs = it.get_output_details()
            ops.append({"op_index": single.index, "op_type": single.type,
                        "output_name": outs[0]["name"] if outs else None,
                        "latency_ms": t.median_ms, "latency_cv": t.cv, "runs": t.runs})
    return {"e2e": e2e, "ops": ops, "runs": n, "runtime": "litert",
            "runtime_version": litert_version()}


# --------------------------------------------------------------------------------------------------
# Pinned child process

class WorkerError(RuntimeError):
    """The measuring child failed: the runtime raised, crashed or hung on a model."""


_FUNCS = {
    "litert": ("latpred.profiling.litert", "measure_tflite"),
    "litert_opprof": ("latpred.profiling.litert_opprof", "measure_tflite_opprof"),
    "onnxruntime": ("latpred.profiling.onnxrt", "measure_onnx"),
    "onnxruntime_opprof": ("latpred.profiling.onnxrt", "measure_onnx_opprof"),
    "ping": ("latpred.profiling.litert", "_ping"),
}


def _ping() -> dict[str, Any]:
    return {"affinity": sorted(os.sched_getaffinity(0)), "pid": os.getpid()}


def _send(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)))
    stream.write(data)
    stream.flush()


def _recv_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


class HostWorker:
    """A child process pinned to ``cpu_ids`` that runs measurement functions on request."""

    def __init__(self, cpu_ids: tuple[int, ...] | list[int] | None):
        self.cpu_ids = tuple(cpu_ids) if cpu_ids else None
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "latpred.profiling.litert", "--worker"]
        if self.cpu_ids:
            cmd.append(",".join(str(c) for c in self.cpu_ids))
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env)

    def call(self, backend: str, timeout: float | None = DEFAULT_TIMEOUT_S, **kwargs) -> Any:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc and self.proc.stdin and self.proc.stdout
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            _send(self.proc.stdin, (backend, kwargs))
            size = struct.unpack("<Q", _recv_exact(self.proc.stdout.fileno(), 8, deadline))[0]
            status, payload = pickle.loads(_recv_exact(self.proc.stdout.fileno(), size, deadline))
        except TimeoutError:
            self.close()
            raise WorkerError(f"runtime did not finish within {timeout:.0f} s") from None
        except (EOFError, BrokenPipeError, OSError):
            code = self.proc.poll() if self.proc else None
            self.close()
            raise WorkerError(f"runtime crashed (worker exit code {code})") from None
        if status != "ok":
            raise WorkerError(payload)
        return payload

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "HostWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _worker_main(cpu_arg: str | None) -> int:
    if cpu_arg:
        os.sched_setaffinity(0, {int(c) for c in cpu_arg.split(",")})
    # Protocol on the original stdout; anything the runtime prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    import importlib
    while True:
        head = inp.read(8)
        if len(head) < 8:
            return 0
        backend, kwargs = pickle.loads(inp.read(struct.unpack("<Q", head)[0]))
        try:
            module, name = _FUNCS[backend]
            result = getattr(importlib.import_module(module), name)(**kwargs)
            _send(out, ("ok", result))
        except Exception as exc:  # reported to the parent, which stores it as the failure reason
            msg = str(exc).strip().splitlines()
            _send(out, ("err", f"{type(exc).__name__}: {msg[-1] if msg else ''}"[:500]))


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2] if len(sys.argv) > 2 else None))
