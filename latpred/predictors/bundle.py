"""Predictor bundles: everything needed to predict one scenario with one method, in one file.

A bundle holds every category model (:class:`~latpred.predictors.methods.CategoryModel`), the
feature schema they were trained with (``FEATURES`` of :mod:`latpred.features`), the overhead
``T_overhead`` (paper §4.2: a fixed ``overhead_ms``, plus ``overhead_share`` x the sum of the op
predictions when trained with ``overhead='linear'``), the fallback for categories without a model,
facts about the training set and the library versions.

File format (``BUNDLE_SUFFIX``, format version ``BUNDLE_VERSION``): plain data, so loading a bundle
never unpickles and never runs code. One zip archive, written atomically, holding

- ``manifest.json``: strict JSON (no NaN): magic, format version, scenario, method, feature schema
  per category, overhead, fallback, training facts, library versions, and per category model its
  description (method, features, hyper-parameters, CV scores, target unit, CPU kernel features as
  ``{category, tile}``, the linear base as a nested model description) with the ``key`` that
  names its arrays;
- ``arrays.npz``: every numeric array, ``<key>.<name>`` (scaler mean/std, Lasso coef/intercept,
  MLP layer weights/biases and y_scale, random-forest node arrays), read with
  ``allow_pickle=False``;
- ``gbdt/<key>.txt``: LightGBM's own text model of each GBDT category.

Loading checks, each refused with one :class:`LatpredError` line: the archive's member count and
declared sizes (before anything is read), magic and format version, every number (finite, shapes
consistent with the feature schema, tree indices in range), and the feature schema against the
current ``FEATURES`` (features would be fed in the wrong order or meaning). Bundles of versions 1-4
were joblib pickles; they are recognised by their first bytes, without unpickling, and must be
retrained.
"""
from __future__ import annotations

import io
import json
import math
import os
import platform
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..categories import OTHER
from ..errors import LatpredError
from ..features import FEATURES
from ..fileio import atomic_write
from .adaptation import check_adaptation
from .methods import METHODS, OBJECTIVES, CategoryModel, Standardizer

BUNDLE_MAGIC = "latpred-predictor-bundle"
# 2: category models may predict latency per unit of work (``CategoryModel.per_unit``)
# 3: tree models may refine a Lasso estimate (``CategoryModel.base``)
# 4: the overhead may grow with the ops' latency (``Bundle.overhead_share``)
# 5: a zip of JSON, npz and LightGBM text instead of a joblib pickle
BUNDLE_VERSION = 5
BUNDLE_SUFFIX = ".latpred"
MANIFEST = "manifest.json"
ARRAYS = "arrays.npz"
# Memory guards, checked on the declared sizes before any member is read (a bundle of 100
# categories of 200-tree GBDTs is a few MB).
MAX_MEMBERS = 1024
MAX_ARRAYS = 16384
MAX_TOTAL_BYTES = 512 * 2 ** 20
MAX_MANIFEST_BYTES = 64 * 2 ** 20
MAX_BASE_DEPTH = 4
RETRAIN = "latpred train STORE --method M --out {out}"
_KEY = re.compile(r"^[A-Za-z0-9_]{1,64}$")


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
    for dist in ("latpred", "numpy", "pandas", "scikit-learn", "lightgbm", "torch"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            if dist == "latpred":
                from ..version import __version__
                out[dist] = __version__
    return out


# -- writing ------------------------------------------------------------------------------------
def plain(value: Any) -> Any:
    """``value`` as strict-JSON data: numpy scalars and arrays become Python numbers and lists,
    tuples and sets lists, and NaN/inf None (training facts are informational; the numbers a
    prediction uses are written by :func:`_number`, which refuses them instead)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return [plain(v) for v in sorted(value, key=str)]
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def _number(value: Any, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise LatpredError(f"cannot save the bundle: {what} is {value}")
    return value


def _score(value: Any) -> float | None:
    """CV scores: NaN (no MSPE for the 'mse' objective) is written as null."""
    value = float(value)
    return value if math.isfinite(value) else None


def _describe(m: CategoryModel, key: str, arrays: dict[str, np.ndarray],
              texts: dict[str, str]) -> dict[str, Any]:
    """The manifest entry of ``m``; its arrays and LightGBM text go into ``arrays``/``texts``."""
    from .trees import ArrayForest
    where = f"{m.category} {m.method} model"
    arrays[f"{key}.scaler_mean"] = np.asarray(m.scaler.mean, dtype=np.float64)
    arrays[f"{key}.scaler_std"] = np.asarray(m.scaler.std, dtype=np.float64)
    d: dict[str, Any] = {
        "key": key, "method": m.method, "category": m.category, "features": list(m.features),
        "params": plain(m.params), "cv_mspe": _score(m.cv_mspe), "cv_loss": _score(m.cv_loss),
        "n_train": int(m.n_train), "fit_seconds": _score(m.fit_seconds) or 0.0,
        "objective": m.objective, "per_unit": m.per_unit,
        "kernel": None if m.kernel is None else {"category": str(m.kernel.category),
                                                 "tile": int(m.kernel.tile)},
        "base": None if m.base is None else _describe(m.base, f"{key}_base", arrays, texts),
        "base_floor_ms": _number(m.base_floor_ms, f"{where} base_floor_ms"),
    }
    est = m.estimator
    if m.method == "lasso":
        arrays[f"{key}.coef"] = np.asarray(est["coef"], dtype=np.float64)
        arrays[f"{key}.intercept"] = np.asarray(_number(est["intercept"], f"{where} intercept"))
    elif m.method == "mlp":
        d["layers"] = len(est["layers"])
        for i, (W, b) in enumerate(est["layers"]):
            arrays[f"{key}.mlp{i}_weight"] = np.asarray(W, dtype=np.float32)
            arrays[f"{key}.mlp{i}_bias"] = np.asarray(b, dtype=np.float32)
        arrays[f"{key}.y_scale"] = np.asarray(_number(est["y_scale"], f"{where} y_scale"))
    elif m.method == "rf":
        forest = est if isinstance(est, ArrayForest) else ArrayForest.from_sklearn(est.trees)
        for name, a in forest.to_arrays().items():
            arrays[f"{key}.rf_{name}"] = a
    elif m.method == "gbdt":
        d["model"] = f"gbdt/{key}.txt"
        texts[d["model"]] = est.model_to_string()
    else:
        raise LatpredError(f"cannot save the bundle: unknown method {m.method!r}")
    return d


def save_bundle(bundle: Bundle, path: str | os.PathLike) -> str:
    """Write ``bundle`` to ``path`` atomically (see the module doc for the format); returns the
    path."""
    path = os.fspath(path)
    arrays: dict[str, np.ndarray] = {}
    texts: dict[str, str] = {}
    models = {cat: _describe(m, f"m{i}", arrays, texts)
              for i, (cat, m) in enumerate(sorted(bundle.models.items()))}
    fb = bundle.fallback
    manifest = {
        "magic": BUNDLE_MAGIC, "format_version": int(bundle.format_version),
        "scenario": str(bundle.scenario), "method": str(bundle.method),
        "features": {str(c): [str(n) for n in names] for c, names in bundle.features.items()},
        "overhead_ms": _number(bundle.overhead_ms, "overhead_ms"),
        "overhead_share": _number(bundle.overhead_share, "overhead_share"),
        "fallback": {"ms_per_element": _number(fb.ms_per_element, "fallback ms_per_element"),
                     "constant_ms": _number(fb.constant_ms, "fallback constant_ms"),
                     "source": str(fb.source)},
        "training": plain(bundle.training), "versions": plain(bundle.versions),
        "models": models,
    }
    for name, a in arrays.items():
        if not np.all(np.isfinite(a)):
            raise LatpredError(f"cannot save the bundle: array {name} holds NaN or inf")
    text = json.dumps(manifest, allow_nan=False, indent=1, sort_keys=True)
    npz = io.BytesIO()
    np.savez(npz, **arrays)
    with atomic_write(path, "wb") as fh:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            zf.writestr(MANIFEST, text)
            zf.writestr(ARRAYS, npz.getvalue())
            for name, model_str in texts.items():
                zf.writestr(name, model_str)
    return path


# -- reading ------------------------------------------------------------------------------------
class _Invalid(ValueError):
    """A bundle that is a latpred bundle but whose content is wrong (becomes one LatpredError)."""


def _old_pickle(head: bytes) -> bool:
    """Bundles of versions 1-4: a pickle (protocol 2-5 opens with 0x80 and the protocol) or a
    joblib file compressed with zlib (``compress=3`` wrote 0x78 0x5e; the other zlib levels'
    headers too) or joblib's old ``ZF`` container. Recognised without unpickling."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    return head[:2] in (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda", b"ZF")


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Read a bundle written by :func:`save_bundle`; any problem is one clear LatpredError."""
    path = os.fspath(path)
    if os.path.isdir(path):
        found = sorted(f for f in os.listdir(path) if f.endswith(BUNDLE_SUFFIX))
        hint = f" (it holds {', '.join(found)}; pass one of them)" if found else ""
        raise LatpredError(f"{path}: is a directory, not a predictor bundle{hint}")
    if not os.path.isfile(path):
        raise LatpredError(f"{path}: no such predictor bundle")
    retrain = RETRAIN.format(out=os.path.splitext(os.path.basename(path))[0] + BUNDLE_SUFFIX)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
        if _old_pickle(head):
            raise LatpredError(f"{path}: an old pickle (joblib) predictor bundle, which this "
                               f"latpred no longer loads; retrain it: `{retrain}`")
        if not zipfile.is_zipfile(path):
            raise LatpredError(f"{path}: not a latpred predictor bundle")
        with zipfile.ZipFile(path) as zf:
            return _read(zf, path, retrain)
    except _Invalid as exc:
        raise LatpredError(f"{path}: invalid predictor bundle: {exc}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, struct.error, EOFError,
            UnicodeDecodeError, NotImplementedError) as exc:  # damaged archive, odd compression
        raise LatpredError(f"{path}: damaged predictor bundle ({exc.__class__.__name__}: "
                           f"{exc})") from None
    except OSError as exc:
        raise LatpredError(f"{path}: cannot read predictor bundle "
                           f"({exc.strerror or exc.__class__.__name__})") from None


def _check_members(infos: list[zipfile.ZipInfo], what: str, max_members: int) -> None:
    if len(infos) > max_members:
        raise _Invalid(f"{what} has {len(infos)} members (at most {max_members})")
    if len({i.filename for i in infos}) != len(infos):
        raise _Invalid(f"{what} has duplicate members")
    total = sum(i.file_size for i in infos)
    if total > MAX_TOTAL_BYTES:
        raise _Invalid(f"{what} declares {total / 2 ** 20:.0f} MB uncompressed "
                       f"(at most {MAX_TOTAL_BYTES // 2 ** 20} MB)")


def _read(zf: zipfile.ZipFile, path: str, retrain: str) -> Bundle:
    infos = zf.infolist()
    names = {i.filename for i in infos}
    if MANIFEST not in names:
        raise LatpredError(f"{path}: not a latpred predictor bundle (no {MANIFEST})")
    _check_members(infos, "the archive", MAX_MEMBERS)
    if zf.getinfo(MANIFEST).file_size > MAX_MANIFEST_BYTES:
        raise _Invalid(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES // 2 ** 20} MB")
    manifest = _parse_manifest(zf.read(MANIFEST))
    if not isinstance(manifest, dict) or manifest.get("magic") != BUNDLE_MAGIC:
        raise LatpredError(f"{path}: not a latpred predictor bundle")
    version = manifest.get("format_version")
    if version != BUNDLE_VERSION or isinstance(version, bool):
        raise LatpredError(f"{path}: bundle format version {version} is not supported (this "
                           f"latpred reads version {BUNDLE_VERSION}); retrain it: `{retrain}`")
    if ARRAYS not in names:
        raise _Invalid(f"no {ARRAYS}")
    arrays = _read_arrays(zf.read(ARRAYS))
    bundle = _bundle(manifest, arrays, zf)
    check_schema(bundle, path)
    return bundle


def _parse_manifest(data: bytes) -> Any:
    def refuse(constant):   # the writer never writes NaN or Infinity
        raise _Invalid(f"{MANIFEST} holds {constant}, which is not a number")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=refuse)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, _Invalid):
            raise
        raise _Invalid(f"{MANIFEST} is not valid JSON ({exc.__class__.__name__})") from None


def _read_arrays(data: bytes) -> dict[str, np.ndarray]:
    buf = io.BytesIO(data)
    if not zipfile.is_zipfile(buf):
        raise _Invalid(f"{ARRAYS} is not an npz archive")
    with zipfile.ZipFile(buf) as inner:
        _check_members(inner.infolist(), ARRAYS, MAX_ARRAYS)
    buf.seek(0)
    try:
        with np.load(buf, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, EOFError) as exc:   # pickled object arrays are refused by allow_pickle
        raise _Invalid(f"{ARRAYS}: {exc}") from None
    for k, a in arrays.items():
        if a.dtype.kind not in "fiu":
            raise _Invalid(f"array {k} has dtype {a.dtype}, not numbers")
    return arrays


# -- validation: every value the bundle carries, before it is used ------------------------------
def _get(d: dict, key: str, kind, what: str, *, optional: bool = False):
    if not isinstance(d, dict) or (key not in d and not optional):
        raise _Invalid(f"{what} lacks {key!r}")
    value = d.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _Invalid(f"{what} {key!r} has the wrong type ({type(value).__name__})")
    return value


def _finite(d: dict, key: str, what: str, *, low: float | None = None,
            optional: bool = False) -> float:
    value = _get(d, key, (int, float), what, optional=optional)
    if value is None:
        return float("nan")
    value = float(value)
    if not math.isfinite(value):
        raise _Invalid(f"{what} {key!r} is not finite ({value})")
    if low is not None and value < low:
        raise _Invalid(f"{what} {key!r} is {value}, below {low}")
    return value


def _names(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Invalid(f"{what} is not a list of names")
    return tuple(value)


def _array(arrays: dict[str, np.ndarray], name: str, shape: tuple, what: str,
           dtype: type = np.float64) -> np.ndarray:
    a = arrays.get(name)
    if a is None:
        raise _Invalid(f"{what}: array {name} is missing")
    if a.shape != shape:
        raise _Invalid(f"{what}: array {name} has shape {a.shape}, expected {shape}")
    if a.dtype != dtype:
        raise _Invalid(f"{what}: array {name} has dtype {a.dtype}, expected {np.dtype(dtype)}")
    if not np.all(np.isfinite(a)):
        raise _Invalid(f"{what}: array {name} holds NaN or inf")
    return a


def _bundle(m: dict, arrays: dict[str, np.ndarray], zf: zipfile.ZipFile) -> Bundle:
    method = _get(m, "method", str, "bundle")
    if method not in METHODS:
        raise _Invalid(f"unknown method {method!r}")
    features = _get(m, "features", dict, "bundle")
    features = {c: _names(v, f"features of {c}") for c, v in features.items()}
    fb = _get(m, "fallback", dict, "bundle")
    fallback = Fallback(ms_per_element=_finite(fb, "ms_per_element", "fallback", low=0.0),
                        constant_ms=_finite(fb, "constant_ms", "fallback", low=0.0),
                        source=_get(fb, "source", str, "fallback"))
    versions = _get(m, "versions", dict, "bundle")
    if not all(isinstance(v, str) for v in versions.values()):
        raise _Invalid("library versions are not strings")
    models = {}
    for cat, d in _get(m, "models", dict, "bundle").items():
        model = _model(d, arrays, zf, f"category {cat}", 0)
        if model.category != cat:
            raise _Invalid(f"category {cat} holds a model of {model.category}")
        models[cat] = model
    training = _get(m, "training", dict, "bundle")
    if training.get("adaptation") is not None:
        try:
            check_adaptation(training["adaptation"])
        except ValueError as exc:
            raise _Invalid(str(exc)) from None
    return Bundle(scenario=_get(m, "scenario", str, "bundle"), method=method, models=models,
                  features=features, overhead_ms=_finite(m, "overhead_ms", "bundle"),
                  overhead_share=_finite(m, "overhead_share", "bundle", low=0.0),
                  fallback=fallback, training=training,
                  versions=versions, format_version=BUNDLE_VERSION)


def _model(d: dict, arrays: dict[str, np.ndarray], zf: zipfile.ZipFile, where: str,
           depth: int) -> CategoryModel:
    from ..cpu.kernels import KernelFeatures
    from .methods import BASE_COLUMN
    if not isinstance(d, dict):
        raise _Invalid(f"{where}: model description is not an object")
    key = _get(d, "key", str, where)
    if not _KEY.match(key):
        raise _Invalid(f"{where}: bad array key {key!r}")
    method = _get(d, "method", str, where)
    if method not in METHODS:
        raise _Invalid(f"{where}: unknown method {method!r}")
    objective = _get(d, "objective", str, where)
    if objective not in OBJECTIVES:
        raise _Invalid(f"{where}: unknown objective {objective!r}")
    features = _names(d.get("features"), f"{where} features")
    kd = _get(d, "kernel", dict, where, optional=True)
    kernel = None
    if kd is not None:
        tile = _get(kd, "tile", int, f"{where} kernel")
        if tile < 0:
            raise _Invalid(f"{where}: kernel tile {tile} is negative")
        kernel = KernelFeatures(_get(kd, "category", str, f"{where} kernel"), tile)
    base = None
    bd = _get(d, "base", dict, where, optional=True)
    if bd is not None:
        if depth >= MAX_BASE_DEPTH:
            raise _Invalid(f"{where}: base models nested too deep")
        base = _model(bd, arrays, zf, f"{where} base", depth + 1)
        if base.method != "lasso" or base.features != features:
            raise _Invalid(f"{where}: its base is not a Lasso on the same features")
    model = CategoryModel(
        method=method, category=_get(d, "category", str, where), features=features,
        scaler=Standardizer(np.zeros(0), np.zeros(0)), estimator=None,
        params=_get(d, "params", dict, where),
        cv_mspe=_finite(d, "cv_mspe", where, optional=True),
        n_train=_get(d, "n_train", int, where),
        fit_seconds=_finite(d, "fit_seconds", where, optional=True),
        objective=objective, cv_loss=_finite(d, "cv_loss", where, optional=True),
        kernel=kernel, per_unit=_get(d, "per_unit", str, where, optional=True), base=base,
        base_floor_ms=_finite(d, "base_floor_ms", where, low=0.0))
    if model.n_train < 0:
        raise _Invalid(f"{where}: n_train is negative")
    names = model.input_names
    n = len(names)
    if model.per_unit is not None and model.per_unit not in names:
        raise _Invalid(f"{where}: target unit {model.per_unit!r} is not one of its inputs")
    if model.per_unit == BASE_COLUMN and base is None:
        raise _Invalid(f"{where}: target unit is a base estimate but there is no base")
    std = _array(arrays, f"{key}.scaler_std", (n,), where)
    if np.any(std <= 0):
        raise _Invalid(f"{where}: scaler std is not positive")
    model.scaler = Standardizer(mean=_array(arrays, f"{key}.scaler_mean", (n,), where), std=std)
    model.estimator = _estimator(method, d, key, n, arrays, zf, where)
    return model


def _estimator(method: str, d: dict, key: str, n: int, arrays: dict[str, np.ndarray],
               zf: zipfile.ZipFile, where: str) -> Any:
    if method == "lasso":
        return {"coef": _array(arrays, f"{key}.coef", (n,), where),
                "intercept": float(_array(arrays, f"{key}.intercept", (), where))}
    if method == "mlp":
        count = _get(d, "layers", int, where)
        if not 1 <= count <= 64:
            raise _Invalid(f"{where}: {count} MLP layers")
        layers, width = [], n
        for i in range(count):
            W = arrays.get(f"{key}.mlp{i}_weight")
            if W is None or W.ndim != 2 or W.shape[1] != width:
                raise _Invalid(f"{where}: MLP layer {i} does not take {width} inputs")
            out = 1 if i == count - 1 else W.shape[0]
            W = _array(arrays, f"{key}.mlp{i}_weight", (out, width), where, np.float32)
            b = _array(arrays, f"{key}.mlp{i}_bias", (out,), where, np.float32)
            layers.append((W, b))
            width = out
        y_scale = float(_array(arrays, f"{key}.y_scale", (), where))
        if y_scale <= 0:
            raise _Invalid(f"{where}: MLP y_scale is not positive")
        return {"layers": layers, "y_scale": y_scale}
    if method == "rf":
        from .trees import ArrayForest
        parts = {}
        for name in ("nodes", "left", "right", "feature", "threshold", "value"):
            a = arrays.get(f"{key}.rf_{name}")
            if a is None:
                raise _Invalid(f"{where}: array {key}.rf_{name} is missing")
            parts[name] = a
        try:
            return ArrayForest.from_arrays(parts, n)
        except ValueError as exc:
            raise _Invalid(f"{where}: {exc}") from None
    return _booster(_get(d, "model", str, where), n, zf, where)


def _booster(member: str, n: int, zf: zipfile.ZipFile, where: str) -> Any:
    """A GBDT from LightGBM's text format, its numbers checked before LightGBM parses it."""
    import lightgbm as lgb
    try:
        text = zf.read(member).decode("utf-8")
    except KeyError:
        raise _Invalid(f"{where}: member {member} is missing") from None
    for line in text.splitlines():
        name, _, values = line.partition("=")
        if name in ("threshold", "leaf_value", "split_feature"):
            try:
                v = np.array(values.split(), dtype=np.float64)
            except ValueError:
                raise _Invalid(f"{where}: LightGBM {name} is not numeric") from None
            if not np.all(np.isfinite(v)):
                raise _Invalid(f"{where}: LightGBM {name} holds NaN or inf")
            if name == "split_feature" and (np.any(v < 0) or np.any(v >= n)):
                raise _Invalid(f"{where}: LightGBM splits on a column outside its {n} inputs")
    try:
        booster = lgb.Booster(model_str=text)
    except Exception as exc:   # LightGBMError (and ValueError) for a malformed model text
        raise _Invalid(f"{where}: LightGBM model does not load "
                       f"({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__})"
                       ) from None
    if booster.num_feature() != n:
        raise _Invalid(f"{where}: LightGBM model takes {booster.num_feature()} inputs, not {n}")
    return booster


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
