"""Predictor bundles: everything needed to predict one scenario with one method, in one file.

A bundle holds every category model (:class:`~latpred.predictors.methods.CategoryModel`), the
feature schema they were trained with (``FEATURES`` of :mod:`latpred.features`), the overhead
``T_overhead`` (paper §4.2: a fixed ``overhead_ms``, plus ``overhead_share`` x the sum of the op
predictions when trained with ``overhead='linear'``), the fallback for categories without a model,
facts about the training set and the library versions. It is saved with joblib (a pickle: load only bundles you trust) to one file,
written atomically (temp file + ``os.replace``).

Compatibility: a bundle is refused with a one-line :class:`LatpredError` when its format version is
not ``BUNDLE_VERSION`` or when the feature names of any of its categories differ from the current
``FEATURES`` (features would be fed in the wrong order or meaning).
"""
from __future__ import annotations

import os
import platform
import tempfile
from dataclasses import dataclass, field
from typing import Any

from ..errors import LatpredError
from ..categories import OTHER
from ..features import FEATURES
from .methods import CategoryModel

BUNDLE_MAGIC = "latpred-predictor-bundle"
# 2: category models may predict latency per unit of work (``CategoryModel.per_unit``)
# 3: tree models may refine a Lasso estimate (``CategoryModel.base``)
# 4: the overhead may grow with the ops' latency (``Bundle.overhead_share``)
BUNDLE_VERSION = 4
BUNDLE_SUFFIX = ".joblib"
# Builds the rows to predict from a ModelGraph ("module:function", see predict.py); GPU scenarios
# can name a builder that applies kernel fusion and selection first.
DEFAULT_ROW_BUILDER = "latpred.predictors.predict:op_rows"


@dataclass
class Fallback:
    """Latency of an op whose category has no model: ``ms_per_element`` x (input + output size).

    ``ms_per_element`` is the median over training ops of memory-bound categories (everything but
    convolutions, fully-connected and Winograd) of latency / (input_size + output_size), i.e. a
    global latency-per-byte-moved ratio; ops without size features get ``constant_ms`` (median
    training op latency)."""
    ms_per_element: float
    constant_ms: float
    source: str = ""


@dataclass
class Bundle:
    scenario: str
    method: str
    models: dict[str, CategoryModel]
    features: dict[str, tuple[str, ...]]
    overhead_ms: float
    fallback: Fallback
    training: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    row_builder: str = DEFAULT_ROW_BUILDER
    # T_overhead = overhead_ms + overhead_share x (sum of the model's op latencies)
    overhead_share: float = 0.0
    format_version: int = BUNDLE_VERSION

    def overhead_for(self, ops_ms):
        """T_overhead (ms) of a model whose op latencies sum to ``ops_ms`` (scalar or array)."""
        return self.overhead_ms + self.overhead_share * ops_ms

    def describe_overhead(self) -> str:
        share = f" + {100 * self.overhead_share:.2f} % of the ops" if self.overhead_share else ""
        return f"overhead {self.overhead_ms:.4f} ms{share}"

    def describe(self) -> str:
        cats = ", ".join(f"{c}({m.n_train})" for c, m in sorted(self.models.items()))
        return (f"{self.method} bundle for {self.scenario}: {self.describe_overhead()}, "
                f"{self.training.get('n_models', '?')} training models, categories {cats}")


def category_features(category: str) -> tuple[str, ...]:
    """Feature names of a category; unknown categories get Other's, as ``op_features`` does."""
    return tuple(FEATURES.get(category, FEATURES[OTHER]))


def library_versions() -> dict[str, str]:
    import importlib.metadata as md
    out = {"python": platform.python_version()}
    for dist in ("latpred", "numpy", "pandas", "scikit-learn", "lightgbm", "torch", "joblib"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            if dist == "latpred":
                from .. import __version__
                out[dist] = __version__
    return out


def save_bundle(bundle: Bundle, path: str | os.PathLike) -> str:
    """Write ``bundle`` to ``path`` atomically; returns the path."""
    import joblib
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise LatpredError(f"{path}: folder {folder} does not exist")
    payload = {"magic": BUNDLE_MAGIC, "format_version": bundle.format_version, "bundle": bundle}
    fd, tmp = tempfile.mkstemp(prefix=".bundle-", suffix=BUNDLE_SUFFIX, dir=folder)
    os.close(fd)
    try:
        joblib.dump(payload, tmp, compress=3)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Read a bundle written by :func:`save_bundle`; any problem is one clear LatpredError."""
    import joblib
    path = os.fspath(path)
    if os.path.isdir(path):
        found = sorted(f for f in os.listdir(path) if f.endswith(BUNDLE_SUFFIX))
        hint = f" (it holds {', '.join(found)}; pass one of them)" if found else ""
        raise LatpredError(f"{path}: is a directory, not a predictor bundle{hint}")
    if not os.path.isfile(path):
        raise LatpredError(f"{path}: no such predictor bundle")
    try:
        payload = joblib.load(path)
    except Exception as exc:  # pickle/joblib raise many types for foreign or truncated files
        raise LatpredError(f"{path}: not a latpred predictor bundle "
                           f"({exc.__class__.__name__})") from None
    if not isinstance(payload, dict) or payload.get("magic") != BUNDLE_MAGIC:
        raise LatpredError(f"{path}: not a latpred predictor bundle")
    version = payload.get("format_version")
    if version != BUNDLE_VERSION:
        raise LatpredError(f"{path}: bundle format version {version} is not supported (this latpred "
                           f"reads version {BUNDLE_VERSION}); retrain it with `latpred train`")
    bundle = payload.get("bundle")
    if not isinstance(bundle, Bundle):
        raise LatpredError(f"{path}: not a latpred predictor bundle (no bundle inside)")
    check_schema(bundle, path)
    return bundle


def check_schema(bundle: Bundle, where: str = "bundle") -> None:
    """Refuse a bundle whose per-category feature names differ from the current FEATURES."""
    for cat, names in bundle.features.items():
        current = category_features(cat)
        if current != tuple(names):
            raise LatpredError(f"{where}: feature schema of category {cat} differs from this latpred "
                               f"({', '.join(names)} vs {', '.join(current)}); retrain with "
                               f"`latpred train`")
    for cat, model in bundle.models.items():
        if tuple(model.features) != tuple(bundle.features.get(cat, ())):
            raise LatpredError(f"{where}: category {cat} model does not match the bundle's schema")
