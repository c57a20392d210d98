"""`latpred profile MODEL|DIR... --device host --out STORE`: measure op-wise and end-to-end latency
into a profile store; re-running resumes (models already stored for the scenario are skipped).
``--passes K`` measures every model K times, one pass over all models after another, into
``STORE.passN.sqlite`` files, and writes STORE as their median (`latpred store combine`).

Exit status: 0 when at least one model is measured or already stored; 1 when every model failed
(nothing measured, nothing stored before: the failures are stored and listed); 2 for bad input
(arguments, paths, no device), one ``latpred: ...`` line."""
from __future__ import annotations

import sys

from ..errors import LatpredError
from ..devices import device_keys
from ..profiling.litert import DEFAULT_BUDGET_S, DEFAULT_RUNS, DEFAULT_TIMEOUT_S, DEFAULT_WARMUP


def register(sub) -> None:
    p = sub.add_parser(
        "profile", help="measure op-wise and end-to-end latency into a profile store",
        description="Measure models on a real runtime: end-to-end latency and every operation's "
                    "latency (on the host: LiteRT's op profiler inside the full runs; by default on "
                    "one core only, each op as its own single-op model otherwise, see --op-timing; "
                    "on a phone: "
                    "the benchmark tool's op profiler). Results are committed per model; running the same "
                    "command again skips what is stored. Exit status: 0 when some model is "
                    "measured or already stored, 1 when every model failed, 2 for bad input.")
    p.add_argument("models", nargs="+", metavar="MODEL|DIR", help="model files or folders")
    p.add_argument("--out", required=True, metavar="STORE", help="profile store (SQLite) to add to")
    p.add_argument("--device", default="host", help=f"one of: {', '.join(device_keys())}")
    p.add_argument("--backend", default="litert", choices=("litert", "onnxruntime"),
                   help="host runtime (default litert); phones always use the benchmark tool")
    p.add_argument("--cores", default="1",
                   help="host: number of cores (1, 2); phone: 1L, 3M, 1L1M, 4S, ... or gpu")
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                   help=f"most timed runs per measurement (default {DEFAULT_RUNS})")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                   help=f"untimed warm-up runs (default {DEFAULT_WARMUP})")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, metavar="SECONDS",
                   help="timed-run budget per model; fewer runs for slow models "
                        f"(default {DEFAULT_BUDGET_S})")
    p.add_argument("--no-op-wise", action="store_true", help="end-to-end latency only")
    p.add_argument("--op-timing", default="auto",
                   choices=("auto", "opprof", "isolated", "unfused"),
                   help="host LiteRT op latencies: opprof = LiteRT's profiler inside the full "
                        "runs (any --cores: XNNPACK's thread pool through the C API's opaque "
                        "options), isolated = each op as its own model; auto = opprof on one "
                        "core, isolated on more (default). ONNX Runtime: opprof (= auto) = its "
                        "profiler inside runs of the optimized graph (ORT_ENABLE_ALL), mapped "
                        "onto the file's nodes; unfused = its profiler with optimizations off")
    p.add_argument("--retry-failed", action="store_true", help="measure stored failures again")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help="give up on a model after this long (stored as a failure)")
    p.add_argument("--input-shape", help="fix symbolic ONNX input dims, e.g. 1,3,224,224")
    p.add_argument("--benchmark-binary", metavar="PATH",
                   help="phone: the TFLite benchmark_model binary built for it")
    p.add_argument("--adb", default="adb", help="phone: adb executable (default: adb on PATH)")
    p.add_argument("--serial", help="phone: adb serial when several are connected")
    p.add_argument("--passes", type=int, default=1, metavar="K",
                   help="measure every model K times, one whole pass after another, into "
                        "STORE.pass1.sqlite ... and write STORE as their median (default 1: "
                        "measure into STORE directly). On a shared machine one pass is a noisy "
                        "label; passes at different times average the drift out")
    p.add_argument("--reference", metavar="MODEL",
                   help="host LiteRT or ONNX Runtime, opprof: a fixed model of the measured format "
                        "(.tflite / .onnx) timed beside every model (a gauge of the machine's "
                        "drift; `latpred store normalize` uses it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


class _NothingMeasured(Exception):
    """A pass in which every model failed: the other passes would fail the same way."""


def run(args) -> int:
    from ..profiling import check_settings
    if args.passes < 1:
        raise LatpredError(f"--passes must be >= 1, got {args.passes}")
    check_settings(args.runs, args.warmup, args.budget, args.timeout)
    if args.passes == 1:
        return _one_pass(args, args.out)
    from ..profiling import profile_passes

    def one(store):
        if _one_pass(args, store):
            raise _NothingMeasured
    try:
        counts = profile_passes(args.out, args.passes, one, announce=print)
    except _NothingMeasured:
        return 1
    print(f"combined {args.passes} passes: {counts['models']} models -> {args.out}")
    return 0


def _one_pass(args, out: str) -> int:
    from ..profiling import profile_models

    summary = profile_models(
        args.models, out, device=args.device, backend=args.backend, cores=args.cores,
        runs=args.runs, warmup=args.warmup, progress=not args.quiet, budget_s=args.budget,
        op_wise=not args.no_op_wise, retry_failed=args.retry_failed, timeout_s=args.timeout,
        input_shape=args.input_shape, benchmark_binary=args.benchmark_binary, adb=args.adb,
        serial=args.serial, op_timing=args.op_timing, reference=args.reference)
    print(f"profiled: {summary}")
    for path, reason in summary.failures[:10]:
        print(f"  failed: {path}: {reason}", file=sys.stderr)
    if summary.nothing_measured:
        hint = "; --retry-failed measures stored failures again" if summary.stored_failed else ""
        print(f"latpred: no model measured into {out}: all "
              f"{summary.failed + summary.stored_failed} failed{hint}", file=sys.stderr)
        return 1
    return 0
