"""Collect the recorded host datasets: synthetic NAS architectures and real-world CNNs,
profiled op-wise and end-to-end on this machine's CPU with LiteRT, into datasets/host/*.sqlite.

Resumable at every step: model files that exist are not rebuilt, models already in the store are not
measured again, so the same command continues where a killed or timed-out run stopped. Model files
live under work/models/ (ignored by git: they rebuild from the seeds, the specs and the manifest).

  python experiments/collect_host.py --synthetic 1000 --cores 1 --precision fp32
  python experiments/collect_host.py --synthetic 300 --cores 2 --precision fp32
  python experiments/collect_host.py --synthetic 300 --cores 1 --precision int8
  python experiments/collect_host.py --synthetic 0 --zoo all --cores 1 --precision fp32
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEED = 0  # the synthetic dataset is sample i of seed 0, i = 0..N-1, for every scenario


def store_path(data_dir: Path, cores: int, precision: str) -> Path:
    return data_dir / f"litert_cpu{cores}_{precision}.sqlite"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synthetic", type=int, default=0, help="number of synthetic architectures")
    ap.add_argument("--start", type=int, default=0, help="first synthetic index")
    ap.add_argument("--zoo", default="", help="'all' or comma-separated real-world names")
    ap.add_argument("--cores", type=int, default=1)
    ap.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    ap.add_argument("--chunk", type=int, default=10, help="build this many, then profile them")
    ap.add_argument("--models", default=str(REPO / "work" / "models"))
    ap.add_argument("--data", default=str(REPO / "datasets" / "host"))
    ap.add_argument("--deadline-min", type=float, default=None, help="stop cleanly after this long")
    args = ap.parse_args()

    from latpred.errors import LatpredError
    from latpred.profiling import profile_models
    from latpred.sources.export import build_files
    from latpred.sources.nas import sample_specs
    from latpred.sources.zoo import build_zoo, default_manifest

    t0 = time.time()
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    store = store_path(data, args.cores, args.precision)

    def out_of_time() -> bool:
        return args.deadline_min is not None and time.time() - t0 > args.deadline_min * 60

    if args.zoo:
        names = [r["name"] for r in default_manifest()] if args.zoo == "all" else args.zoo.split(",")
        zoo_dir = Path(args.models) / "zoo" / args.precision
        for i in range(0, len(names), args.chunk):
            if out_of_time():
                print("deadline reached; run the same command again to continue")
                return 0
            built = [Path(p) for _, p, _ in build_zoo(zoo_dir, names[i:i + args.chunk],
                                                       precision=args.precision, fmt="tflite") if p]
            if built:
                profile_models(built, str(store), cores=args.cores)

    if args.synthetic:
        syn_dir = Path(args.models) / "synthetic" / args.precision
        specs = sample_specs(args.start + args.synthetic, SEED)[args.start:]
        for i in range(0, len(specs), args.chunk):
            if out_of_time():
                print("deadline reached; run the same command again to continue")
                return 0
            chunk = specs[i:i + args.chunk]
            try:
                paths = build_files(chunk, syn_dir, precision=args.precision, fmt="tflite")
            except LatpredError as exc:
                print(f"latpred: {exc}", file=sys.stderr)
                paths = [p for p in (syn_dir / f"{s['name']}.tflite" for s in chunk) if p.exists()]
            profile_models(paths, str(store), cores=args.cores)
    print(f"collection step done in {(time.time() - t0) / 60:.1f} min -> {store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
