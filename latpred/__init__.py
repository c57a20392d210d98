"""latpred: operation-wise latency prediction of neural networks on mobile CPUs and GPUs.

Pipeline: model file -> graph IR (``readers``) -> GPU fusion and kernel selection (``gpu``) ->
per-op features (``features``) -> per-category predictors (``predictors``) -> end-to-end latency ->
metrics. Method: Li, Paolieri, Golubchik, ICPE'23.
"""
from .version import __version__  # noqa: F401  (re-exported)


def read_model(path, input_shape=None):
    """Read a .tflite or ONNX file into the graph IR (see :mod:`latpred.readers`)."""
    from .readers import read_model as _read
    return _read(path, input_shape)


def load(path):
    """Load a predictor bundle; ``load(p).predict(model)`` gives latency in ms and a per-op breakdown."""
    from .predictors import load as _load
    return _load(path)
