"""Per-category latency predictors (paper §4.2): train, bundle, predict, evaluate.

    >>> import latpred
    >>> p = latpred.load("host-gbdt.joblib")
    >>> pred = p.predict("mobilenet.tflite")        # or a ModelGraph
    >>> pred.latency_ms, pred.overhead_ms, pred.ops  # ops: index, type, category, latency_ms, fallback

Training: :func:`train_bundle` on a ``ProfileStore.frame()``-shaped DataFrame, then
:func:`save_bundle`. Methods and their search spaces: :mod:`latpred.predictors.methods`.
"""
from .bundle import BUNDLE_VERSION, Bundle, Fallback, load_bundle, save_bundle
from .evaluate import Evaluation, evaluate
from .methods import METHODS, CategoryModel, fit_category, mape, mspe
from .predict import OpRow, Prediction, Predictor, load, op_rows
from .train import MIN_SAMPLES, fit_overhead, read_model_list, train_bundle

__all__ = ["load", "Predictor", "Prediction", "OpRow", "op_rows", "train_bundle", "save_bundle",
           "load_bundle", "Bundle", "Fallback", "evaluate", "Evaluation", "METHODS",
           "CategoryModel", "fit_category", "mape", "mspe", "MIN_SAMPLES", "fit_overhead",
           "read_model_list", "BUNDLE_VERSION"]
