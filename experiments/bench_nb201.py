"""NAS-Bench-201 IR speed: arch strings per second, from the string to per-op features.

No TensorFlow and no files: `nb201_features` (per-unit features, what `latpred nb201 predict`
needs to score many archs) and the full IR, `graph_features(nb201_graph(arch))`, which gives the
same features (tests/test_nb201.py checks both against the converted .tflite). Each pass runs on
archs it has not seen (the per-arch program cache is cleared first); the per-op feature cache is
warmed by one arch beforehand, as after the first call of a session.

    .venv/bin/python experiments/bench_nb201.py [--count 15625] [--full 2000] [--input 32,32,3]
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latpred.features import graph_features  # noqa: E402
from latpred.sources import nb201  # noqa: E402


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=nb201.NUM_ARCHS,
                        help="archs for nb201_features (default: all 15625)")
    parser.add_argument("--full", type=int, default=2000,
                        help="archs for graph_features(nb201_graph(...)) (default 2000)")
    parser.add_argument("--input", default="32,32,3", help="input H,W,C")
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.input.split(","))
    archs = all_archs()
    fast = archs[:args.count]
    full = archs[::max(1, len(archs) // max(args.full, 1))][:args.full]
    nb201.nb201_features(archs[-1], shape, args.classes)          # warm the per-op cache
    r_fast = rate(lambda a: nb201.nb201_features(a, shape, args.classes), fast)
    r_graph = rate(lambda a: nb201.nb201_graph(a, shape, args.classes), full)
    r_full = rate(lambda a: graph_features(nb201.nb201_graph(a, shape, args.classes)), full)
    ops = sum(len(nb201.nb201_graph(a, shape, args.classes).ops) for a in full) / len(full)
    print(f"NAS-Bench-201 at {args.input}, {args.classes} classes; {ops:.0f} ops per arch on "
          "average")
    print(f"nb201_features (arch string -> per-op features): {r_fast:8.0f} arch/s "
          f"({len(fast)} archs)")
    print(f"nb201_graph (arch string -> graph IR):             {r_graph:8.0f} arch/s "
          f"({len(full)} archs)")
    print(f"graph_features(nb201_graph(...)):                  {r_full:8.0f} arch/s "
          f"({len(full)} archs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
