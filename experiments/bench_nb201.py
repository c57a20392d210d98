"""NAS-Bench-201 IR speed: arch strings per second, from the string to per-op features and to
predicted latencies.

No TensorFlow and no files: `nb201_features` (per-unit features, what `latpred nb201 predict`
needs to score many archs) and the full IR, `graph_features(nb201_graph(arch))`, which gives the
same features (tests/test_nb201.py checks both against the converted .tflite). Each pass runs on
archs it has not seen (the per-arch program cache is cleared first); the per-op feature cache is
warmed by one arch beforehand, as after the first call of a session.

Prediction (``--predict N`` archs, 0 skips it) with a CPU bundle: ``--bundle PATH``, else a
committed ``*.latpred`` under datasets/ or experiments/, else a small GBDT (one hyper-parameter
setting, ~30 s) trained on the host store and kept in experiments/.cache/bench_nb201/:
`predict_archs` in this process (edges all and live), the old path
`predict_many(nb201_graph(...))` on ``--full`` archs, and the command `latpred nb201 predict`
end to end on ``--cli N`` archs in a fresh process (imports, arch table, bundle, output: table
and --json; the start-up alone is timed with one arch).

    .venv/bin/python experiments/bench_nb201.py [--count 15625] [--full 2000] [--input 32,32,3]
        [--predict 3000] [--cli 15625] [--bundle PATH]
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latpred.features import graph_features  # noqa: E402
from latpred.sources import nb201  # noqa: E402

STORE = ROOT / "datasets" / "host" / "litert_cpu1_fp32_opprof.sqlite"
CACHE = ROOT / "experiments" / ".cache" / "bench_nb201"
# one setting instead of the 200 x 6 search: the bench needs a GBDT's cost, not its accuracy
QUICK_GRIDS = {"gbdt": {"n_estimators": [60], "min_child_samples": [5]},
               "lasso": {"alpha": [1e-3]}}


def all_archs() -> list[str]:
    """Every NAS-Bench-201 cell (enumeration order, not the benchmark's index order)."""
    return ["|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)
            for ops in itertools.product(nb201.OPS, repeat=6)]


def rate(fn, archs) -> float:
    nb201._programs.cache_clear()
    nb201.parse_arch.cache_clear()
    t = time.perf_counter()
    for a in archs:
        fn(a)
    return len(archs) / (time.perf_counter() - t)


def batch_rate(fn, archs) -> float:
    nb201._programs.cache_clear()
    nb201.parse_arch.cache_clear()
    t = time.perf_counter()
    fn(archs)
    return len(archs) / (time.perf_counter() - t)


def find_bundle(store: Path) -> Path:
    """A committed bundle, else the cached quick GBDT of ``store`` (trained when missing)."""
    listed = subprocess.run(["git", "ls-files", "*.latpred"], cwd=ROOT, capture_output=True,
                            text=True).stdout.split()
    committed = [p for p in listed if p.startswith(("datasets/", "experiments/"))]
    if committed:
        return ROOT / sorted(committed)[0]
    key = hashlib.sha1(store.read_bytes()).hexdigest()      # the store's content, not its mtime
    path = CACHE / f"gbdt-{key[:12]}.latpred"
    if not path.exists():
        from latpred.predictors import LatencyPredictor
        from latpred.store import ProfileStore
        print(f"training a quick GBDT bundle on {store} -> {path}", flush=True)
        with ProfileStore(store, readonly=True) as s:
            frame = s.frame(s.scenarios()[0])
        CACHE.mkdir(parents=True, exist_ok=True)
        LatencyPredictor("gbdt", grids=QUICK_GRIDS).fit(frame).save(path)
    return path


def cli_seconds(bundle: Path, archs: list[str], *extra: str) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run: on a shared machine the CPU time says
    what the command costs, the wall time what others left of the machine."""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "latpred", "nb201", "predict", str(bundle),
                        *archs, *extra], cwd=ROOT, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode:
        raise SystemExit(f"latpred nb201 predict failed: {r.stderr.strip()}")
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)


def bench_predict(args, shape, archs, full) -> None:
    from latpred.predictors import load
    bundle = Path(args.bundle) if args.bundle else find_bundle(Path(args.store))
    predictor = load(bundle)
    many = archs[::max(1, len(archs) // args.predict)][:args.predict]
    nb201.predict_archs(predictor, archs[-2:], shape, args.classes)     # warm imports, caches
    print(f"prediction with {bundle.relative_to(ROOT) if bundle.is_relative_to(ROOT) else bundle}"
          f" ({predictor.bundle.method}, {predictor.bundle.scenario}):")
    for edges in nb201.EDGES:
        r = batch_rate(lambda a: nb201.predict_archs(predictor, a, shape, args.classes,
                                                     edges=edges), many)
        print(f"  predict_archs, edges={edges}:                  {r:8.0f} arch/s "
              f"({len(many)} archs)")
    r = batch_rate(lambda a: predictor.predict_many(
        [nb201.nb201_graph(x, shape, args.classes) for x in a]), full)
    print(f"  predict_many(nb201_graph(...)) (the old path): {r:8.0f} arch/s ({len(full)} archs)")
    if args.cli <= 0:
        return
    # a fresh process per run: what a user waits for
    net = ("--input", args.input, "--classes", str(args.classes))
    cli = archs[::max(1, len(archs) // args.cli)][:args.cli]
    n = len(cli)
    one = cli_seconds(bundle, cli[:1], *net)
    print("  `latpred nb201 predict` end to end, a fresh process (wall / CPU seconds):")
    print(f"    1 arch (start-up):  {one[0]:6.2f} / {one[1]:6.2f} s")
    for label, extra in (("table", ()), ("--json", ("--json",)),
                         ("--edges live", ("--edges", "live"))):
        wall, cpu = cli_seconds(bundle, cli, *net, *extra)
        print(f"    {n} archs, {label + ':':<13} {wall:6.2f} / {cpu:6.2f} s = {n / wall:5.0f} / "
              f"{n / cpu:5.0f} arch/s ({n / max(cpu - one[1], 1e-9):.0f} arch/s of CPU after "
              "start-up)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=nb201.NUM_ARCHS,
                        help="archs for nb201_features (default: all 15625)")
    parser.add_argument("--full", type=int, default=2000,
                        help="archs for graph_features(nb201_graph(...)) (default 2000)")
    parser.add_argument("--input", default="32,32,3", help="input H,W,C")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--predict", type=int, default=3000,
                        help="archs to predict with a bundle (default 3000; 0: no prediction)")
    parser.add_argument("--cli", type=int, default=nb201.NUM_ARCHS,
                        help="archs for the command end to end (default: all 15625; 0: not run)")
    parser.add_argument("--bundle", help="CPU bundle to predict with (default: see above)")
    parser.add_argument("--store", default=str(STORE),
                        help="profile store for the quick bundle (default: the host store)")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.input.split(","))
    archs = all_archs()
    fast = archs[:args.count]
    full = archs[::max(1, len(archs) // max(args.full, 1))][:args.full]
    nb201.nb201_features(archs[-1], shape, args.classes)          # warm the per-op cache
    r_fast = rate(lambda a: nb201.nb201_features(a, shape, args.classes), fast)
    r_live = rate(lambda a: nb201.nb201_features(a, shape, args.classes, edges="live"), fast)
    r_graph = rate(lambda a: nb201.nb201_graph(a, shape, args.classes), full)
    r_full = rate(lambda a: graph_features(nb201.nb201_graph(a, shape, args.classes)), full)
    ops = sum(len(nb201.nb201_graph(a, shape, args.classes).ops) for a in full) / len(full)
    print(f"NAS-Bench-201 at {args.input}, {args.classes} classes; {ops:.0f} ops per arch on "
          "average")
    print(f"nb201_features (arch string -> per-op features): {r_fast:8.0f} arch/s "
          f"({len(fast)} archs)")
    print(f"nb201_features(..., edges='live'):               {r_live:8.0f} arch/s "
          f"({len(fast)} archs)")
    print(f"nb201_graph (arch string -> graph IR):             {r_graph:8.0f} arch/s "
          f"({len(full)} archs)")
    print(f"graph_features(nb201_graph(...)):                  {r_full:8.0f} arch/s "
          f"({len(full)} archs)")
    if args.predict > 0:
        bench_predict(args, shape, archs, full)
    return 0


if __name__ == "__main__":
    sys.exit(main())
