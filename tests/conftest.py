"""Shared test helpers, imported by test modules as ``from conftest import ...``.

- ``run_cli`` / ``run_python``: the latpred command line (or a script) in a fresh interpreter,
  run from the repository root, so that each test sees real exit codes, stdout and stderr.
- ``main_cli``: the same command line in this process (no interpreter start-up), for the repeated
  invocations of a command that a test file also runs for real through ``run_cli``.
- ``tiny_keras``, ``conv_stem``, ``dw_residual``: the pieces the tests' small batch-1 CNNs are
  made of; ``tflite_bytes`` / ``write_tflite`` turn such a model into a real .tflite with the TFLite
  converter (fp32, or full-integer int8).
- fixture ``mobilenetv2_tflite``: Keras' MobileNetV2 converted once per session (the conversion
  takes half a minute), for every module that reads it.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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


# Python's warning filters in a fresh interpreter without -W / PYTHONWARNINGS (first match wins)
_DEFAULT_WARNING_FILTERS = (("default", DeprecationWarning, "__main__"),
                            ("ignore", DeprecationWarning, ""),
                            ("ignore", PendingDeprecationWarning, ""),
                            ("ignore", ImportWarning, ""),
                            ("ignore", ResourceWarning, ""))


def main_cli(*args) -> subprocess.CompletedProcess:
    """``latpred ARGS`` through the same entry point (``latpred.cli.main``) in this process, from
    the repository root, without an interpreter start-up (seconds per launch). It returns what
    :func:`run_cli` would: the exit code (argparse's SystemExit included; an uncaught exception is
    exit code 1 with its traceback on stderr, as in a fresh interpreter) and stdout/stderr as
    text, taken at file-descriptor level, so that what native code writes is there too. stderr
    also gets what the subprocess would print there: the log lines of the ``logging.basicConfig``
    that ``main`` sets up (a no-op under pytest, whose log handlers are already installed) and
    Python warnings under a fresh interpreter's default filters.

    For commands whose outcome does not depend on the process itself. Use :func:`run_cli` where
    it does (umask, rlimits, signals, another environment) and for at least one real launch of
    every command a test file checks."""
    import io
    import logging
    import tempfile
    import traceback
    import warnings
    from latpred.cli import main

    argv = [str(a) for a in args]
    verbose = bool(argv) and argv[0] in ("-v", "--verbose")
    root = logging.getLogger()
    old_level, old_cwd = root.level, os.getcwd()
    old_streams = sys.stdout, sys.stderr
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        for s in old_streams:
            s.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out_f.fileno(), 1)
        os.dup2(err_f.fileno(), 2)
        out = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                               write_through=True)
        err = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                               errors="backslashreplace", write_through=True)
        handler = logging.StreamHandler(err)
        handler.setFormatter(logging.Formatter("latpred: %(levelname)s: %(message)s"))
        handler.setLevel(logging.DEBUG if verbose else logging.WARNING)
        root.addHandler(handler)
        root.setLevel(logging.DEBUG if verbose else logging.WARNING)

        def show(message, category, filename, lineno, file=None, line=None):
            err.write(warnings.formatwarning(message, category, filename, lineno, line))
        try:
            os.chdir(ROOT)
            sys.stdout, sys.stderr = out, err
            with warnings.catch_warnings():
                warnings.resetwarnings()
                for action, category, module in _DEFAULT_WARNING_FILTERS:
                    warnings.filterwarnings(action, category=category, module=module,
                                            append=True)
                warnings.showwarning = show
                try:
                    rc = main(argv)
                except SystemExit as exc:
                    if exc.code is None or isinstance(exc.code, int):
                        rc = exc.code or 0
                    else:
                        err.write(f"{exc.code}\n")
                        rc = 1
                except Exception:
                    err.write(traceback.format_exc())
                    rc = 1
            out.flush()
            err.flush()
        finally:
            sys.stdout, sys.stderr = old_streams
            root.removeHandler(handler)
            root.setLevel(old_level)
            os.chdir(old_cwd)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        texts = []
        for f in (out_f, err_f):      # decoded as subprocess.run(text=True) does
            f.seek(0)
            texts.append(io.TextIOWrapper(f).read())
    return subprocess.CompletedProcess(["latpred", *argv], rc, texts[0], texts[1])


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


@pytest.fixture(scope="session")
def mobilenetv2_tflite(tmp_path_factory) -> str:
    """Keras' MobileNetV2 (224x224, random weights, tf_keras as in the rest of the project)
    converted by the TFLite converter (fp32), once per session; read-only for the tests."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tf_keras as keras
    path = tmp_path_factory.mktemp("mobilenetv2") / "mobilenetv2.tflite"
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    return str(write_tflite(model, path))
