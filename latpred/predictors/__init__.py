"""Per-category latency predictors (paper §4.2): one estimator, its bundle, prediction, evaluation.

    >>> import latpred
    >>> p = latpred.load("host-gbdt.latpred")        # a fitted LatencyPredictor
    >>> pred = p.predict_many(["mobilenet.tflite"])[0]  # or ModelGraphs
    >>> pred.latency_ms, pred.overhead_ms, pred.ops   # ops: index, type, category, latency_ms, fallback

Training: ``LatencyPredictor(method=...).fit(store.frame(scenario))``, then ``.save(path)``.
Methods and their search spaces: :mod:`latpred.predictors.methods`.
"""
from .bundle import BUNDLE_VERSION, Bundle, Fallback, load_bundle, save_bundle
from .estimator import LatencyPredictor, load
from .evaluate import Evaluation, evaluate
from .methods import METHODS, CategoryModel, fit_category, mape, mspe
from .predict import OpRow, Prediction, Predictor, frame_rows, op_rows
from .train import MIN_SAMPLES, fit_overhead, read_model_list, select_models

__all__ = ["LatencyPredictor", "load", "Predictor", "Prediction", "OpRow", "op_rows", "frame_rows",
           "save_bundle", "load_bundle", "Bundle", "Fallback", "evaluate", "Evaluation",
           "METHODS", "CategoryModel", "fit_category", "mape", "mspe", "MIN_SAMPLES",
           "fit_overhead", "read_model_list", "select_models", "BUNDLE_VERSION"]
