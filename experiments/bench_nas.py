"""Synthetic NAS generation speed: architectures per second for fp32 .tflite at 224x224.

Builds N fresh architectures (seed 12345) into a temporary folder through the same path as
`latpred nas sample` (build_files), after one warm-up build so TensorFlow's import and first trace
are not counted. Prints per-model times (median, CV) and overall arch/s.

    .venv/bin/python experiments/bench_nas.py [--count 20] [--workers 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latpred.sources.export import build_files, build_one  # noqa: E402
from latpred.sources.nas import sample_specs  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--input-size", type=int, default=224)
    args = parser.parse_args()
    specs = sample_specs(args.count + 1, seed=12345, input_size=args.input_size)
    with tempfile.TemporaryDirectory() as tmp:
        build_one(specs[0], tmp, "fp32", "tflite")          # warm-up: TF import + first trace
        per_model = []
        if args.workers == 1:
            for spec in specs[1:]:
                t = time.perf_counter()
                build_files([spec], tmp, progress=False)
                per_model.append(time.perf_counter() - t)
            total = sum(per_model)
        else:   # worker processes: wall time includes each worker's TF import
            t = time.perf_counter()
            build_files(specs[1:], tmp, workers=args.workers, progress=False)
            total = time.perf_counter() - t
        sizes = [p.stat().st_size for p in Path(tmp).glob("*.tflite")]
    print(f"built {args.count} fp32 .tflite architectures ({args.input_size}x{args.input_size}), "
          f"workers={args.workers}")
    if per_model:
        med = statistics.median(per_model)
        cv = statistics.pstdev(per_model) / statistics.mean(per_model)
        print(f"per model: median {med:.3f} s, CV {cv:.2f}, min {min(per_model):.3f} s, "
              f"max {max(per_model):.3f} s")
    print(f"mean file size {statistics.mean(sizes) / 1e6:.1f} MB")
    print(f"throughput: {args.count / total:.2f} arch/s ({total:.1f} s total)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
