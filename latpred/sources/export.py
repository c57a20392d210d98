"""Keras model -> real model files: fp32 .tflite, full-integer int8 .tflite (TFLite converter) and
ONNX (tf2onnx). TensorFlow and tf2onnx are imported inside functions only.

File names in an output folder: ``<name>.tflite`` (fp32), ``<name>.int8.tflite``, ``<name>.onnx``
(fp32), and ``<name>.json`` (the NAS spec). Files are written atomically (``latpred.fileio``), and
existing ones are not rebuilt, so a killed build resumes where it stopped.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Iterable

from ..errors import LatpredError
from ..fileio import atomic_write

PRECISIONS = ("fp32", "int8")
FORMATS = ("tflite", "onnx")
ONNX_OPSET = 17
_UMASK = os.umask(0)
os.umask(_UMASK)
CALIBRATION_SAMPLES = 8          # random inputs for int8 post-training calibration


def check_target(precision: str, fmt: str) -> None:
    if precision not in PRECISIONS:
        raise LatpredError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if fmt not in FORMATS:
        raise LatpredError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt == "onnx" and precision != "fp32":
        raise LatpredError("ONNX files are fp32 only; int8 is made for .tflite")


def artefact_path(out_dir, name: str, precision: str = "fp32", fmt: str = "tflite") -> Path:
    suffix = ".onnx" if fmt == "onnx" else (".int8.tflite" if precision == "int8" else ".tflite")
    return Path(out_dir) / f"{name}{suffix}"


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        f.write(data)
        os.fchmod(f.fileno(), 0o644 & ~_UMASK)   # the helper makes 0600; model files are for sharing


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def spec_json(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=1, sort_keys=True) + "\n"


# -- conversion (TensorFlow inside) ---------------------------------------------------------------
def inference_function(model, input_shape):
    """The model's inference graph as one concrete function with a fixed batch-1 NHWC input."""
    from .keras_build import import_tf
    tf, _ = import_tf()
    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec([1, *input_shape], tf.float32, name="input")])
    return fn, fn.get_concrete_function()


def to_tflite(concrete_fn, input_shape, precision: str = "fp32", calibration_seed: int = 0,
              trackable=None) -> bytes:
    """Run the TFLite converter on a concrete function.

    Converting the concrete function directly (not from_keras_model) skips the SavedModel round
    trip (``experimental_lower_to_saved_model``), which costs seconds per model. int8 is full-integer post-training quantization: weights
    and activations int8, int8 input and output, calibrated on CALIBRATION_SAMPLES uniform random
    inputs in [-1, 1] (MobileNet-style input range) from a seeded generator."""
    import numpy as np
    from .keras_build import import_tf
    tf, _ = import_tf()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete_fn], trackable)
    converter.experimental_lower_to_saved_model = False    # freeze the function directly
    if precision == "int8":
        rng = np.random.default_rng(calibration_seed)
        shape = (1, *input_shape)

        def representative():
            for _ in range(CALIBRATION_SAMPLES):
                yield [rng.uniform(-1.0, 1.0, shape).astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # int8 input without input statistics is intended (full-integer, int8 in/out).
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return converter.convert()


def to_onnx(fn) -> bytes:
    """tf2onnx on the inference function; the input is made NCHW (``inputs_as_nchw``), so the graph
    is in ONNX's native layout apart from what tf2onnx cannot push through (e.g. around Split)."""
    import logging
    import tf2onnx
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature,
                                             opset=ONNX_OPSET, inputs_as_nchw=["input"])
    unsupported = sorted({n.op_type for n in proto.graph.node if n.domain == ""
                          and n.op_type in ("PartitionedCall", "StatefulPartitionedCall")})
    if unsupported:
        raise LatpredError(f"tf2onnx left unconverted TensorFlow ops: {', '.join(unsupported)}")
    return proto.SerializeToString()


def export_model(model, input_shape, precision: str, fmt: str, seed: int = 0) -> bytes:
    """Keras model -> bytes of the requested file."""
    check_target(precision, fmt)
    fn, concrete = inference_function(model, input_shape)
    if fmt == "onnx":
        return to_onnx(fn)
    return to_tflite(concrete, input_shape, precision, calibration_seed=seed, trackable=model)


# -- synthetic NAS files ---------------------------------------------------------------------------
def _calibration_seed(spec: dict[str, Any]) -> int:
    return (int(spec.get("seed", 0)) * 7919 + int(spec.get("index", 0))) % (2 ** 31)


def build_one(spec: dict[str, Any], out_dir: str, precision: str, fmt: str) -> str:
    """Build one NAS spec into ``out_dir`` (spec JSON + model file). Runs in a worker process."""
    from .keras_build import build_keras, import_tf
    _, keras = import_tf()
    path = artefact_path(out_dir, spec["name"], precision, fmt)
    keras.backend.clear_session()          # keep graph state from growing across builds
    model = build_keras(spec)
    data = export_model(model, spec["input_shape"], precision, fmt, _calibration_seed(spec))
    atomic_write_bytes(path, data)
    return str(path)


def _is_current(spec: dict[str, Any], out_dir: Path, precision: str, fmt: str) -> bool:
    """Built already: the model file exists and the JSON beside it is this very spec."""
    spec_path = out_dir / f"{spec['name']}.json"
    if not artefact_path(out_dir, spec["name"], precision, fmt).exists() or not spec_path.exists():
        return False
    try:
        return json.loads(spec_path.read_text(encoding="utf-8")) == spec
    except ValueError:
        return False


def run_jobs(func, jobs: list[tuple], workers: int, desc: str, progress: bool = True):
    """Run ``func(*job)`` for each job, in ``workers`` spawned processes (TensorFlow is imported
    once per worker) or inline when workers <= 1; yields (job, result or exception)."""
    from tqdm import tqdm
    bar = tqdm(total=len(jobs), desc=desc, unit="model", disable=not progress or not jobs)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                try:
                    result = func(*job)
                except Exception as exc:  # reported per job by the caller
                    result = exc
                bar.update()
                yield job, result
            return
        ctx = multiprocessing.get_context("spawn")   # TensorFlow is not fork-safe
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(func, *job): job for job in jobs}
            for fut in as_completed(futures):
                try:
                    result = fut.result()
                except Exception as exc:
                    result = exc
                bar.update()
                yield futures[fut], result
    finally:
        bar.close()


def build_files(specs: Iterable[dict[str, Any]], out_dir, precision: str = "fp32",
                fmt: str = "tflite", workers: int = 1, progress: bool = True) -> list[Path]:
    """Write each spec's JSON and model file into ``out_dir``; files already built are kept.

    Returns the model paths in the order of ``specs``. A spec that fails to build raises
    LatpredError after the others have been built."""
    from .nas import validate_spec
    check_target(precision, fmt)
    specs = list(specs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    todo = []
    for spec in specs:
        validate_spec(spec)
        if not _is_current(spec, out, precision, fmt):
            artefact_path(out, spec["name"], precision, fmt).unlink(missing_ok=True)
            atomic_write_text(out / f"{spec['name']}.json", spec_json(spec))
            todo.append((spec, str(out), precision, fmt))
    failures = [f"{job[0]['name']}: {type(res).__name__}: {str(res).splitlines()[0] if str(res) else ''}"
                for job, res in run_jobs(build_one, todo, workers, f"nas {precision} {fmt}", progress)
                if isinstance(res, Exception)]
    if failures:
        raise LatpredError(f"{len(failures)} of {len(specs)} NAS models failed to build; first: "
                           f"{failures[0]}")
    return [artefact_path(out, s["name"], precision, fmt) for s in specs]
