"""Time to profile typical synthetic architectures (op-wise + end-to-end, host LiteRT, 1 core).

Builds N architectures of the synthetic NAS space at 224x224 (latpred.sources: spec -> tf.keras ->
TFLite converter, fp32), then profiles them with the default settings and reports per model:
ops, end-to-end median, median op CV, and wall time. Target: <= 3 s per model.

    .venv/bin/python experiments/bench_profile.py [--n 5] [--seed 0] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def build(n: int, seed: int, folder: str) -> list[str]:
    from latpred.sources.keras_build import build_keras, import_tf
    from latpred.sources.nas import sample_spec
    tf, _ = import_tf()
    paths = []
    for i in range(n):
        spec = sample_spec(seed, i)
        model = build_keras(spec)
        content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        path = os.path.join(folder, f"{spec.get('name', f'arch{i}')}.tflite")
        with open(path, "wb") as fh:
            fh.write(content)
        paths.append(path)
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    from latpred.profiling import profile_models
    from latpred.devices import cpu_model
    from latpred.profiling.litert import DEFAULT_BUDGET_S, DEFAULT_RUNS, DEFAULT_WARMUP
    from latpred.store import ProfileStore

    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        t = time.perf_counter()
        paths = build(args.n, args.seed, tmp)
        print(f"built {len(paths)} synthetic architectures in {time.perf_counter() - t:.1f} s")
        per_model = []
        for path in paths:   # one call per model: wall time includes the pinned worker's start
            store = os.path.join(tmp, "bench.db")
            t = time.perf_counter()
            summary = profile_models([path], store, cores=1, progress=False)
            per_model.append(time.perf_counter() - t)
            assert summary.measured == 1, summary.failures
        with ProfileStore(os.path.join(tmp, "bench.db")) as st:
            models = st.models()
            frame = st.frame()
        # All again in one call (worker started once) into a fresh store.
        t = time.perf_counter()
        profile_models(paths, os.path.join(tmp, "bench_batch.db"), cores=1, progress=False)
        batch = time.perf_counter() - t

    rows = []
    for (_, m), secs in zip(models.iterrows(), per_model):
        ops = frame[frame.model == m.model]
        rows.append({"model": m.model, "ops": int(m.n_ops), "e2e_ms": round(m.e2e_ms, 3),
                     "e2e_cv": round(m.e2e_cv, 4), "sum_ops_ms": round(ops.latency_ms.sum(), 3),
                     "median_op_cv": round(float(ops.latency_cv.median()), 4),
                     "runs": int(m.e2e_runs), "wall_s": round(secs, 2)})
        print(f"{m.model}: {m.n_ops} ops, e2e {m.e2e_ms:.2f} ms (CV {m.e2e_cv:.3f}), "
              f"sum of ops {ops.latency_ms.sum():.2f} ms, median op CV "
              f"{ops.latency_cv.median():.3f}, {m.e2e_runs} runs, {secs:.2f} s")
    result = {
        "machine": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(),
                    "load_avg_1m": os.getloadavg()[0], "python": platform.python_version()},
        "settings": {"cores": 1, "warmup": DEFAULT_WARMUP, "runs_max": DEFAULT_RUNS,
                     "budget_s": DEFAULT_BUDGET_S},
        "models": rows,
        "median_wall_s_per_model_single_call": float(np.median(per_model)),
        "wall_s_per_model_batch": batch / len(paths),
        "median_op_cv": float(frame.latency_cv.median()),
        "median_e2e_cv": float(models.e2e_cv.median()),
    }
    print(f"median wall time per model: {result['median_wall_s_per_model_single_call']:.2f} s "
          f"(one call each, incl. worker start); {result['wall_s_per_model_batch']:.2f} s "
          f"(all in one call); median op CV {result['median_op_cv']:.3f}, median e2e CV "
          f"{result['median_e2e_cv']:.3f}; load average {result['machine']['load_avg_1m']:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
