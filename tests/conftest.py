"""Shared test helpers, imported by test modules as ``from conftest import ...``.

- ``run_cli`` / ``run_python``: the latpred command line (or a script) in a fresh interpreter,
  run from the repository root, so that each test sees real exit codes, stdout and stderr.
- ``tiny_keras``, ``conv_stem``, ``dw_residual``: the pieces the tests' small batch-1 CNNs are
  made of; ``tflite_bytes`` / ``write_tflite`` turn such a model into a real .tflite with the TFLite
  converter (fp32, or full-integer int8).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(*argv, env: dict | None = None, timeout: float = 600,
               check: bool = False) -> subprocess.CompletedProcess:
    """``python ARGV`` from the repository root, output captured as text; this checkout's latpred
    comes first on the path whatever is installed."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, *map(str, argv)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=check)


def run_cli(*args, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``latpred ARGS`` (arguments may be paths or numbers)."""
    return run_python("-m", "latpred", *args, env=env, timeout=timeout)


def tiny_keras(body, input_shape=(32, 32, 3)):
    """The Keras model ``body(layers, x)`` on a batch-1 input: a fixed batch, as on a phone, keeps
    shape ops out of the converted graph."""
    import tensorflow as tf
    x0 = tf.keras.Input(input_shape, batch_size=1)
    return tf.keras.Model(x0, body(tf.keras.layers, x0))


def conv_stem(L, x, width: int):
    """3x3 stride-2 convolution with ReLU."""
    return L.Conv2D(width, 3, strides=2, padding="same", activation="relu")(x)


def dw_residual(L, x, width: int, activation: str = "relu6"):
    """Depthwise 3x3 then pointwise conv, added to the input (``width`` = the input's channels)."""
    y = L.DepthwiseConv2D(3, padding="same", activation=activation)(x)
    return L.Add()([x, L.Conv2D(width, 1)(y)])


def tflite_bytes(model, int8: bool = False, int8_io: bool = False,
                 calibration: int = 8) -> bytes:
    """The TFLite converter's output for ``model``. ``int8``: full-integer quantization calibrated
    on ``calibration`` uniform random inputs (seed 0); ``int8_io``: int8 input and output tensors
    too (otherwise they stay float)."""
    import tensorflow as tf
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        shape = tuple(model.inputs[0].shape)

        def representative():
            rng = np.random.default_rng(0)
            for _ in range(calibration):
                yield [rng.random(shape, dtype=np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    return conv.convert()


def write_tflite(model, path, **kw) -> Path:
    """Convert ``model`` (see :func:`tflite_bytes`) into ``path``; returns the path."""
    path = Path(path)
    path.write_bytes(tflite_bytes(model, **kw))
    return path
