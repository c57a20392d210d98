"""Benchmark: parse + Table 3 features of a ~200-op .tflite (we use a larger one) (target: <= 20 ms median on this machine).

The model is built once with the real TFLite converter (EfficientNet-B0, random weights, ~250 ops) and cached
in experiments/.cache/. Usage: python experiments/bench_parse.py [--repeats 50]"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from latpred.features import op_features  # noqa: E402
from latpred.fileio import atomic_write_bytes  # noqa: E402
from latpred.readers import read_model  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"


def build_model() -> Path:
    path = CACHE / "efficientnetb0_224.tflite"
    if not path.exists():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf
        m = tf.keras.applications.EfficientNetB0(weights=None, input_shape=(224, 224, 3))
        CACHE.mkdir(exist_ok=True)
        atomic_write_bytes(path, tf.lite.TFLiteConverter.from_keras_model(m).convert())
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--model", help="time this .tflite instead of the built one")
    args = ap.parse_args()
    path = Path(args.model) if args.model else build_model()
    times, cpu = [], []
    for _ in range(args.repeats + 3):
        t0, c0 = time.perf_counter(), time.process_time()
        g = read_model(path)
        for op in g.ops:
            op_features(g, op)
        g.peak_activation_bytes()
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    times, cpu = times[3:], cpu[3:]
    med = statistics.median(times)
    cv = statistics.pstdev(times) / statistics.mean(times)
    per200 = statistics.median(cpu) * 200 / len(g.ops)
    print(f"parse+features: {path.name}, {len(g.ops)} ops: wall median {med:.2f} ms "
          f"(min {min(times):.2f}, CV {cv:.1%}), CPU median {statistics.median(cpu):.2f} ms, "
          f"{args.repeats} repeats; scaled to 200 ops: {per200:.1f} ms CPU (target <= 20 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
