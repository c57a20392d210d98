"""Speed of the predictors against their targets, measured on this machine.

1. predict 1000 already-parsed architectures (target <= 1 s): ``Predictor.predict_many(graphs)``,
   which includes computing every op's features; also reported with features precomputed
   (``predict_rows_many``), i.e. the per-category models alone.
2. parse + predict .tflite files (target >= 50 files/s): ``Predictor.predict_many(paths)``.
3. optional (``--train-rows N``): training time of all four methods (default search) on a frame of
   about N op rows. When the store has fewer rows, its models are *resampled* (copies with 5 %
   log-normal jitter on latencies and sizes) up to N rows — such a frame is only for timing and is
   labelled so in the output; accuracy is never measured on it.

Each timing is repeated (``--repeats``) and reported as median and CV across repeats, because other
jobs share the CPU.

    .venv/bin/python experiments/bench_predict.py --models DIR --store STORE [--train-rows 40000]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from latpred.fileio import atomic_write_text  # noqa: E402
from latpred.predictors import LatencyPredictor, load, op_rows  # noqa: E402
from latpred.predictors.methods import METHODS  # noqa: E402
from latpred.store import ProfileStore, iter_model_files  # noqa: E402
from latpred.readers import read_model  # noqa: E402


def timed(fn, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    cv = statistics.pstdev(times) / statistics.mean(times) if len(times) > 1 else 0.0
    return {"median_s": med, "cv": cv, "repeats": repeats}


def resample(frame: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """Copies of the store's models with 5 % jitter, up to ``rows`` op rows (timing only)."""
    rng = np.random.default_rng(seed)
    models = frame["model"].unique()
    per_model = len(frame) / len(models)
    copies = int(np.ceil(rows / len(frame)))
    out = []
    size_cols = [c for c in ("input_size", "output_size", "kernel_size", "param_size", "flops")
                 if c in frame.columns]
    for k in range(copies):
        f = frame.copy()
        f["model"] = f["model"].astype(str) + f"_copy{k}"
        if "model_hash" in f.columns:
            f["model_hash"] = f["model_hash"].astype(str) + f"_copy{k}"
        f["latency_ms"] = f["latency_ms"] * np.exp(rng.normal(0, 0.05, len(f)))
        for c in size_cols:
            f[c] = f[c] * np.exp(rng.normal(0, 0.05, len(f)))
        out.append(f)
    big = pd.concat(out, ignore_index=True)
    keep = int(round(rows / per_model))
    names = big["model"].unique()[:keep]
    return big[big["model"].isin(names)].reset_index(drop=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", required=True, help=".tflite files or a folder of them")
    ap.add_argument("--store", required=True, help="profile store to train the timing bundles on")
    ap.add_argument("--scenario", default=None)
    ap.add_argument("--bundle", help="use this bundle instead of training lasso and gbdt")
    ap.add_argument("--n", type=int, default=1000, help="parsed architectures to predict")
    ap.add_argument("--files", type=int, default=200, help="file reads for parse+predict")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-rows", type=int, default=0,
                    help="also time training all four methods on ~N op rows")
    ap.add_argument("--out", help="write the results as JSON here (atomically)")
    args = ap.parse_args()

    files = iter_model_files([args.models], (".tflite",))
    if not files:
        print(f"no .tflite files under {args.models}", file=sys.stderr)
        return 2
    with ProfileStore(args.store, readonly=True) as st:
        frame = st.frame(args.scenario)
    results: dict = {"cpu_count": os.cpu_count(), "files": len(files), "bench": {}}

    if args.bundle:
        predictors = {Path(args.bundle).stem: load(args.bundle)}
    else:
        predictors = {}
        with tempfile.TemporaryDirectory() as tmp:
            for m in ("lasso", "gbdt"):
                path = os.path.join(tmp, f"{m}.latpred")
                predictors[m] = load(LatencyPredictor(m, args.scenario).fit(frame).save(path))

    graphs = [read_model(f) for f in files]
    many = [graphs[i % len(graphs)] for i in range(args.n)]
    n_ops = sum(len(g.ops) for g in many)
    rows = [op_rows(g) for g in many]
    results["parsed"] = {"architectures": args.n, "ops": n_ops,
                         "distinct_graphs": len(graphs)}
    paths = [files[i % len(files)] for i in range(args.files)]
    for name, p in predictors.items():
        p.predict_many(many[:5])  # warm up imports and caches
        with_features = timed(lambda: p.predict_many(many), args.repeats)
        rows_only = timed(lambda: p.predict_rows_many(rows), args.repeats)
        parse = timed(lambda: p.predict_many(paths), max(1, args.repeats // 2))
        results["bench"][name] = {
            f"predict_{args.n}_parsed_s": with_features,
            f"predict_{args.n}_precomputed_features_s": rows_only,
            "parse_and_predict_files_per_s": args.files / parse["median_s"],
            "parse_and_predict": parse}
        print(f"{name}: {args.n} parsed architectures ({n_ops} ops): "
              f"{with_features['median_s']:.3f} s (CV {with_features['cv']:.2f}) with features, "
              f"{rows_only['median_s']:.3f} s (CV {rows_only['cv']:.2f}) features precomputed; "
              f"parse+predict {args.files / parse['median_s']:.0f} files/s", flush=True)

    if args.train_rows:
        data = frame if len(frame) >= args.train_rows else resample(frame, args.train_rows)
        label = "store rows" if data is frame else \
            f"RESAMPLED from {frame['model'].nunique()} measured models (timing only)"
        timing = {"rows": len(data), "models": int(data["model"].nunique()), "data": label,
                  "seconds": {}}
        for m in METHODS:
            t0 = time.perf_counter()
            LatencyPredictor(m, args.scenario).fit(data)
            timing["seconds"][m] = time.perf_counter() - t0
            print(f"train {m}: {timing['seconds'][m]:.1f} s on {len(data)} rows ({label})",
                  flush=True)
        timing["total_s"] = sum(timing["seconds"].values())
        print(f"train all four: {timing['total_s']:.1f} s")
        results["training"] = timing

    text = json.dumps(results, indent=1)
    if args.out:
        atomic_write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
