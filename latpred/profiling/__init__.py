"""Profiling: measure op-wise and end-to-end latency on real hardware into a :class:`ProfileStore`.

``profile_models`` walks model files, reads each one (graph IR + features), measures it with a
backend for one scenario and commits the result per model. Re-running the same command skips what
is stored (by file hash and scenario), so an interrupted collection resumes where it stopped.

Backends: ``litert`` (host, default), ``onnxruntime`` (host), and the Android ``adb`` backend when
``device`` is a phone from the catalog.
"""
from __future__ import annotations

import hashlib
import logging
import numbers
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..errors import LatpredError
from ..devices import HOST, CoreConfig, core_config, get_device, this_cpu
from .litert import (DEFAULT_BUDGET_S, DEFAULT_RUNS, DEFAULT_TIMEOUT_S, DEFAULT_WARMUP, HostWorker,
                     WorkerError, litert_version)
from ..scenario import Scenario, model_precision, parse_scenario
from ..store import ProfileStore, iter_model_files

log = logging.getLogger(__name__)
BACKENDS = ("litert", "onnxruntime")
_EXTS = {"litert": (".tflite",), "litert_opprof": (".tflite",), "onnxruntime": (".onnx",),
         "onnxruntime_opprof": (".onnx",), "adb": (".tflite",)}
OP_TIMINGS = ("auto", "opprof", "isolated", "unfused")


@dataclass
class ProfileSummary:
    store: str
    measured: int = 0
    skipped: int = 0
    failed: int = 0
    scenarios: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    median_op_cv: float | None = None
    median_e2e_cv: float | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    stored_failed: int = 0     # of ``skipped``: stored failures (not measurements)

    @property
    def nothing_measured(self) -> bool:
        """No model of the run was measured now or has a measurement stored."""
        return self.measured == 0 and self.skipped == self.stored_failed

    def __str__(self) -> str:
        cv = "" if self.median_op_cv is None else \
            f"; median CV op {self.median_op_cv:.3f}, e2e {self.median_e2e_cv:.3f}"
        return (f"{self.measured} measured, {self.skipped} already stored, {self.failed} failed "
                f"in {self.elapsed_s:.1f} s -> {self.store} ({', '.join(self.scenarios) or '-'}){cv}")


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def machine_facts(device: str, backend: str, config: CoreConfig | None, runtime_version: str,
                  extra: dict | None = None) -> dict[str, Any]:
    facts: dict[str, Any] = {"device": device, "backend": backend,
                             "core_config": config.label if config else "gpu",
                             "threads": config.threads if config else None,
                             "runtime_version": runtime_version}
    if device == HOST:
        facts.update(**this_cpu().facts(), logical_cpus=os.cpu_count(),
                     pinned_cpus=",".join(str(c) for c in (config.cpu_ids or ())),
                     os=platform.platform(), python=platform.python_version())
    facts.update(extra or {})
    return facts


def check_settings(runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP,
                   budget_s: float = DEFAULT_BUDGET_S,
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """One LatpredError for a count or duration that makes no sense (before anything runs)."""
    if not isinstance(runs, numbers.Integral) or runs < 1:
        raise LatpredError(f"--runs must be >= 1, got {runs}")
    if not isinstance(warmup, numbers.Integral) or warmup < 0:
        raise LatpredError(f"--warmup must be >= 0, got {warmup}")
    for flag, value in (("--budget", budget_s), ("--timeout", timeout_s)):
        # NaN fails every comparison; inf would never stop a hung model
        if not (isinstance(value, numbers.Real) and 0 < value < float("inf")):
            raise LatpredError(f"{flag} must be a positive number of seconds, got {value}")


def _runtime_version(backend: str) -> str:
    if backend == "onnxruntime":
        from .onnxrt import ort_version
        return ort_version()
    return litert_version()


def profile_models(paths: Iterable[str | os.PathLike] | str | os.PathLike,
                   store: ProfileStore | str | os.PathLike, device: str = HOST,
                   backend: str = "litert", cores: int | str = 1, runs: int = DEFAULT_RUNS,
                   warmup: int = DEFAULT_WARMUP, progress: bool = True, *,
                   budget_s: float = DEFAULT_BUDGET_S, op_wise: bool = True,
                   retry_failed: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S,
                   input_shape: tuple[int, ...] | str | None = None,
                   benchmark_binary: str | None = None, adb: str = "adb",
                   serial: str | None = None, op_timing: str = "auto",
                   reference: str | os.PathLike | None = None) -> ProfileSummary:
    """Measure every model under ``paths`` (files or folders) into ``store``; see module doc.

    ``cores``: host: a number of cores (1, 2); phone: ``1L``, ``3M``, ``1L1M``, ... or ``gpu``.
    ``runs`` caps the timed runs per measurement; ``budget_s`` cuts them for slow models (see
    :mod:`latpred.profiling.litert`). Failures are stored with their reason and the run goes on.

    ``op_timing`` (host LiteRT): ``opprof`` — op latencies from LiteRT's profiler inside the
    full-graph runs (:mod:`.litert_opprof`, any core count); ``isolated`` — every op timed as its own
    single-op model (:mod:`.litert`); ``auto`` — opprof on one core, else isolated (the existing multicore stores' kind).
    Host ONNX Runtime: ``opprof`` (and ``auto``) — its profiler inside runs of the optimized graph,
    mapped onto the file's nodes (:func:`.onnxrt.measure_onnx_opprof`); ``unfused`` — its profiler
    with graph optimizations off (:func:`.onnxrt.measure_onnx`). The op-timing
    method is part of the scenario id (runtime version ``2.3.0+opprof``): the two kinds of data
    are never mixed in one predictor.

    ``reference`` (host LiteRT or ONNX Runtime, opprof): a fixed model of the measured format
    timed beside every model, after each block of its timed runs (:mod:`.litert_opprof`,
    :mod:`.onnxrt`); its median time is stored with the
    model (``reference_ms``), so that :func:`latpred.store.normalize_store` can take the
    machine's drift out. All models of a scenario in a store share one reference."""
    from ..features import graph_features
    from ..readers import read_model

    check_settings(runs, warmup, budget_s, timeout_s)
    dev = get_device(device)
    if dev.key == HOST:
        if backend not in BACKENDS:
            raise LatpredError(f"unknown backend {backend!r} for the host; use one of {BACKENDS}")
        if str(cores).lower() == "gpu":
            raise LatpredError("the host has no GPU backend; use --cores N")
        kind = backend
    else:
        kind = "adb"
    config = None if str(cores).lower() == "gpu" else core_config(dev, cores)
    if op_timing not in OP_TIMINGS:
        raise LatpredError(f"unknown --op-timing {op_timing!r}; use {', '.join(OP_TIMINGS)}")
    if kind == "litert" and op_timing == "unfused":
        raise LatpredError("--op-timing unfused is for --backend onnxruntime; LiteRT takes "
                           "auto, opprof or isolated")
    if kind == "onnxruntime" and op_timing == "isolated":
        raise LatpredError("--backend onnxruntime times ops with its profiler: use --op-timing "
                           "opprof (the optimized graph, default) or unfused (optimizations off)")
    if kind == "litert" and op_timing != "isolated":
        # auto on several cores stays isolated, so that existing cpuN stores are not mixed
        if config.threads == 1 or op_timing == "opprof":
            kind = "litert_opprof"
    elif kind == "onnxruntime" and op_timing != "unfused":
        kind = "onnxruntime_opprof"
    ref_bytes, ref_facts = _reference(reference, kind)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = iter_model_files(paths, _EXTS[kind])
    if not files:
        raise LatpredError(f"no {'/'.join(_EXTS[kind])} model files found in the given paths")
    own_store = not isinstance(store, ProfileStore)
    # the store's write lock first: a second writer refuses before a runtime starts
    st = ProfileStore(store, lock=True) if own_store else store
    adb_backend = worker = None
    try:
        if kind == "adb":
            from .adb import AdbBackend
            adb_backend = AdbBackend(dev, benchmark_binary or "", adb=adb, serial=serial,
                                     timeout_s=timeout_s)
            adb_backend.connect()
            runtime, version = "tflite", adb_backend.runtime_version()
        else:
            worker = HostWorker(config.cpu_ids if config else None)
            runtime, version = backend, _runtime_version(backend)
            if kind in ("litert_opprof", "onnxruntime_opprof"):
                version += "+opprof"
    except BaseException:
        if own_store:
            st.close()
        raise
    hardware = config.label if config else "gpu"
    setup = {"warmup": warmup, "runs_max": runs, "budget_s": budget_s}
    if kind == "onnxruntime_opprof":
        from .onnxrt import OPTIMIZATION_LEVEL
        setup["graph_optimization_level"] = OPTIMIZATION_LEVEL
    facts = machine_facts(dev.key, kind, config, version, {**setup, **ref_facts})

    summary = ProfileSummary(store=st.path)
    if dev.key == HOST:   # refuse before measuring anything: this store's scenarios of this setup
        prefix = Scenario(dev.key, hardware, "fp32", runtime, version).id.rsplit("/", 1)[0] + "/"
        try:
            for known in st.scenarios():
                if known.startswith(prefix):
                    st.check_cpu(known, this_cpu())
                    st.check_reference(known, ref_facts.get("reference_hash"))
        except LatpredError:
            if worker is not None:
                worker.close()
            if own_store:
                st.close()
            raise
    op_cvs: list[float] = []
    e2e_cvs: list[float] = []
    scen_seen: set[str] = set()
    cpu_checked: set[str] = set()     # scenarios whose stored CPU matches this machine's
    t_start = time.monotonic()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(files), unit="model", desc=f"profile {dev.key}/{hardware}",
                   dynamic_ncols=True)
    try:
        for path in files:
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                raise LatpredError(f"{path}: cannot read ({exc.strerror})") from None
            digest = file_hash(data)
            try:
                graph = read_model(path, input_shape=input_shape)
                precision = model_precision(graph)
            except LatpredError as exc:
                graph, precision, reason = None, "unknown", f"unreadable model: {exc}"
            scen = Scenario(dev.key, hardware, precision, runtime, version).id
            if st.has(digest, scen, include_failed=not retry_failed):
                summary.skipped += 1
                summary.stored_failed += not st.has(digest, scen, include_failed=False)
                scen_seen.add(scen)
                _tick(bar, summary)
                continue
            if dev.key == HOST and scen not in cpu_checked:
                st.check_cpu(scen, this_cpu())
                cpu_checked.add(scen)
            if graph is None:
                st.add_failure(path, digest, scen, reason, facts)
                summary.failed += 1
                summary.failures.append((path, reason))
                _tick(bar, summary)
                continue
            try:
                if adb_backend is not None:
                    result = adb_backend.measure(path, config, runs, warmup)
                else:
                    extra = {"input_shape": input_shape} if kind.startswith("onnxruntime") else {}
                    if ref_bytes is not None:
                        extra["reference"] = ref_bytes
                    result = worker.call(kind, timeout=timeout_s, content=data,
                                         threads=config.threads, runs=runs, warmup=warmup,
                                         budget_s=budget_s, op_wise=op_wise, **extra)
                rows = _op_rows(graph, result["ops"], graph_features(graph),
                                strict=kind == "adb" and config is not None)
            except (WorkerError, LatpredError) as exc:
                st.add_failure(path, digest, scen, str(exc), facts)
                summary.failed += 1
                summary.failures.append((path, str(exc)))
                _tick(bar, summary)
                continue
            e2e = result["e2e"]
            model_facts = {**facts, "n_graph_ops": len(graph.ops)}
            gauge = result.get("reference")
            if gauge is not None:
                model_facts.update(reference_ms=gauge.median_ms, reference_cv=gauge.cv,
                                   reference_runs=gauge.runs)
            st.add_measurement(path, digest, scen, e2e.median_ms, e2e.cv, rows, model_facts,
                               e2e_runs=e2e.runs)
            summary.measured += 1
            scen_seen.add(scen)
            op_cvs += [r["latency_cv"] for r in rows if r.get("latency_cv") is not None]
            e2e_cvs.append(e2e.cv)
            _tick(bar, summary, e2e.median_ms)
    finally:
        if bar is not None:
            bar.close()
        if worker is not None:
            worker.close()
        if own_store:
            st.close()
    import numpy as np
    summary.scenarios = sorted(scen_seen)
    summary.elapsed_s = time.monotonic() - t_start
    summary.median_op_cv = float(np.median(op_cvs)) if op_cvs else None
    summary.median_e2e_cv = float(np.median(e2e_cvs)) if e2e_cvs else None
    return summary


def _reference(reference: str | os.PathLike | None, kind: str) -> tuple[bytes | None, dict]:
    """The gauge model's bytes and the facts that name it; one clear error for a bad one."""
    if reference is None:
        return None, {}
    ext = {"litert_opprof": ".tflite", "onnxruntime_opprof": ".onnx"}.get(kind)
    if ext is None:
        raise LatpredError("--reference needs host LiteRT or ONNX Runtime with in-graph op "
                           "timing (--op-timing opprof)")
    path = os.fspath(reference)
    if not path.endswith(ext):
        raise LatpredError(f"{path}: the reference must be a {ext} model, as the measured ones")
    from ..readers import read_model
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise LatpredError(f"{path}: cannot read the reference ({exc.strerror})") from None
    read_model(path)   # a file that is no model is one error here, not one per measured model
    return data, {"reference_model": os.path.basename(path), "reference_hash": file_hash(data)}


def pass_stores(out: str | os.PathLike, passes: int) -> list[str]:
    """The files the passes of ``profile_passes(out, passes, ...)`` are measured into."""
    out = os.fspath(out)
    stem = out[:-len(".sqlite")] if out.endswith(".sqlite") else out
    return [f"{stem}.pass{k}.sqlite" for k in range(1, passes + 1)]


def profile_passes(out: str | os.PathLike, passes: int, measure_into, announce=None) -> dict:
    """Measure every model ``passes`` times, one whole pass after another, and write ``out`` as
    their median (:func:`~latpred.store.combine_stores`).

    ``measure_into(store_path)`` runs one pass (e.g. ``profile_models`` with fixed arguments);
    pass k goes to ``pass_stores(out, passes)[k-1]``, so an interrupted run resumes inside its
    pass. ``out`` is derived data: it is replaced, unless it holds single-pass measurements."""
    from ..store import combine_stores, write_lock
    out = os.fspath(out)
    if passes < 2:
        raise LatpredError("profile_passes needs at least 2 passes")
    with write_lock(out):   # the whole run: a second writer of ``out`` refuses at once
        if os.path.exists(out):
            with ProfileStore(out, readonly=True) as st:
                models = st.models()
            ok = models[models["status"] == "ok"]
            if len(ok) and ("passes" not in ok or ok["passes"].isna().any()):
                raise LatpredError(f"{out}: holds single-pass measurements; give --passes a new "
                                   "--out (the passes go next to it)")
        stores = pass_stores(out, passes)
        for k, store in enumerate(stores, 1):
            if announce:
                announce(f"pass {k}/{passes} -> {store}")
            measure_into(store)
        return combine_stores(stores, out, replace=True)


def _tick(bar, summary: ProfileSummary, e2e_ms: float | None = None) -> None:
    if bar is None:
        return
    post = {"ok": summary.measured, "skip": summary.skipped, "fail": summary.failed}
    if e2e_ms is not None:
        post["e2e_ms"] = f"{e2e_ms:.2f}"
    bar.set_postfix(post, refresh=False)
    bar.update(1)


def _op_rows(graph, measured: list[dict], features: list[dict], strict: bool) -> list[dict]:
    """Attach the graph's category and features (``graph_features``, one dict per op) to each
    measured op.

    A .tflite op is matched by position (when the op type agrees), an ONNX node by its first
    output tensor name (the reader skips Constant nodes, so positions differ). Runtime nodes that are no op of
    the IR (folded by the reader) are left out. ``strict`` (phone profiles): any row that does not
    match is an error, since the profile is then of another model or of a delegate."""
    by_output = {}
    for op in graph.ops:
        if op.outputs:
            by_output.setdefault(graph.tensors[op.outputs[0]].name, op)
    rows = []
    for m in measured:
        by_name = by_output.get(m.get("output_name")) if m.get("output_name") else None
        i = m["op_index"]
        by_pos = graph.ops[i] if 0 <= i < len(graph.ops) and graph.ops[i].type == m["op_type"] \
            else None
        # .tflite: positions are the execution order on both sides; ONNX: names are reliable.
        op = (by_pos or by_name) if graph.format == "tflite" else (by_name or by_pos)
        if op is None and strict:
            raise LatpredError(
                f"op profile row {m['op_index']} ({m['op_type']}) does not match the model "
                f"({len(graph.ops)} ops); was another model or a delegate profiled?")
        if op is None:   # executed by the runtime but not an op of the IR (folded by the reader)
            continue
        row = {k: m[k] for k in ("op_index", "op_type", "latency_ms", "latency_cv", "runs")}
        row.update(op_index=op.index, category=op.category, features=features[op.index])
        rows.append(row)
    if strict and len(rows) != len(graph.ops):
        raise LatpredError(f"op profile has {len(rows)} ops, the model has {len(graph.ops)}")
    return rows


__all__ = ["profile_models", "ProfileSummary", "ProfileStore", "Scenario", "parse_scenario",
           "get_device", "core_config", "machine_facts", "file_hash"]
