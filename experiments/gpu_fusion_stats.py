"""How much kernel fusion (Algorithm 3.1) cuts the number of GPU kernels on real-world models.

Paper (§3.2.1, Fig. 7a): over 45 % fewer OpenCL/Metal kernels on 102 real-world NAs. Here the
kernels are *deduced* with latpred's replay of the TFLite 2.10 GPU delegate (no device involved):
reduction = 1 - kernels(fusion) / kernels(no fusion), where "no fusion" keeps the delegate's own
graph (fused activations split off as separate nodes) but skips MergeNodes.

Usage:
  .venv/bin/python experiments/gpu_fusion_stats.py [MODEL.tflite | DIR ...] [--build] [--gpu mali-g76]
With --build, Keras applications (weights=None, 224x224 or 299x299 for Inception/Xception, batch 1) are converted with the real TFLite
converter into experiments/.cache/gpu_fusion/ (atomic writes; existing files are reused).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm  # noqa: E402

from latpred.fileio import atomic_write_bytes  # noqa: E402
from latpred.gpu import deduce_kernels  # noqa: E402
from latpred.readers import read_model  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache" / "gpu_fusion"
KERAS_APPS = ["MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "ResNet50", "ResNet50V2",
              "DenseNet121", "EfficientNetB0", "NASNetMobile", "InceptionV3", "Xception", "VGG16"]


def build_keras_apps(names: list[str]) -> list[Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = []
    todo = [n for n in names if not (CACHE / f"{n.lower()}_b1.tflite").exists()]
    if todo:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf
        import tf_keras as keras
        for name in tqdm(todo, desc="convert"):
            size = 299 if name in ("InceptionV3", "Xception") else 224
            # Batch fixed to 1, as on a phone: otherwise Keras' Reshape leaves SHAPE ops in the graph,
            # which the GPU delegate does not take (they split the model into CPU/GPU partitions).
            inp = keras.Input((size, size, 3), batch_size=1)
            model = getattr(keras.applications, name)(weights=None, input_tensor=inp)
            data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
            out = CACHE / f"{name.lower()}_b1.tflite"
            atomic_write_bytes(out, data)
            keras.backend.clear_session()
    for n in names:
        paths.append(CACHE / f"{n.lower()}_b1.tflite")
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", help=".tflite files or folders of them")
    ap.add_argument("--build", action="store_true", help="convert Keras applications into the cache first")
    ap.add_argument("--apps", default=",".join(KERAS_APPS), help="comma-separated Keras application names")
    ap.add_argument("--gpu", default="mali-g76")
    args = ap.parse_args(argv)
    paths: list[Path] = []
    if args.build:
        paths += build_keras_apps([a for a in args.apps.split(",") if a])
    for m in args.models:
        p = Path(m)
        paths += sorted(p.glob("*.tflite")) if p.is_dir() else [p]
    paths = list(dict.fromkeys(paths))
    if not paths:
        ap.error("no models: give .tflite files/folders or --build")
    rows = []
    for p in tqdm(paths, desc="deduce"):
        g = read_model(p)
        fused = deduce_kernels(g, args.gpu)
        unfused = deduce_kernels(g, args.gpu, fusion=False)
        rows.append((p.stem, len(g.ops), len(unfused.kernels), len(fused.kernels),
                     1 - len(fused.kernels) / len(unfused.kernels), len(fused.cpu_fallback_ops)))
    print(f"{'model':<28} {'ops':>5} {'kernels w/o fusion':>19} {'kernels':>8} {'reduction':>10} {'cpu ops':>8}")
    for name, n_ops, nk0, nk1, red, ncpu in rows:
        print(f"{name:<28} {n_ops:>5} {nk0:>19} {nk1:>8} {red:>9.1%} {ncpu:>8}")
    reds = [r[4] for r in rows]
    print(f"\n{len(rows)} models on {args.gpu} (TFLite 2.10 rules): mean kernel reduction from fusion "
          f"{statistics.mean(reds):.1%} (median {statistics.median(reds):.1%}, min {min(reds):.1%}, "
          f"max {max(reds):.1%}); paper Fig. 7a: over 45 % on 102 real-world NAs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
