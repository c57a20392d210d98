"""Gathering the inputs of the metrics: model files -> FLOPs and memory, a profile store -> measured
latency, a predictor bundle -> predicted latency. The metrics themselves stay pure functions."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from ..errors import LatpredError
from .frm import model_costs


@dataclass
class ModelInfo:
    path: str
    name: str                 # file stem, as the profile store names models
    sha256: str
    graph: object
    flops: int
    weight_bytes: int
    peak_activation_bytes: int
    memory_bytes: int


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise LatpredError(f"{path}: cannot read ({exc.strerror})") from None
    return h.hexdigest()


def load_models(paths: Sequence[str], input_shape=None) -> list[ModelInfo]:
    """Read every model file; names are file stems and must be unique."""
    from ..readers import read_model
    out, seen = [], {}
    for p in paths:
        p = os.fspath(p)
        g = read_model(p, input_shape=input_shape)
        name = os.path.splitext(os.path.basename(p))[0]
        if name in seen:
            raise LatpredError(f"two models are named {name!r} ({seen[name]} and {p}); "
                               f"models are identified by file stem")
        seen[name] = p
        out.append(ModelInfo(p, name, file_sha256(p), g, **model_costs(g)))
    return out


def resolve_baseline(models: list[ModelInfo], baseline: str) -> str:
    """The baseline given as a path or a name -> the model's name; it must be among the models."""
    stem = os.path.splitext(os.path.basename(baseline))[0]
    names = [m.name for m in models]
    if stem not in names:
        raise LatpredError(f"baseline {baseline!r} is not among the models given "
                           f"({', '.join(names)})")
    return stem


def open_store(path: str):
    from ..store import ProfileStore
    if not os.path.isfile(path):
        raise LatpredError(f"{path}: no such profile store")
    return ProfileStore(path, readonly=True)


def ok_rows(store, scenario: str | None = None) -> pd.DataFrame:
    df = store.models(scenario)
    return df[(df["status"] == "ok") & df["e2e_ms"].notna()].reset_index(drop=True)


def measured_latency(store_path: str, models: list[ModelInfo], scenario: str | None = None,
                     prefer: str | None = None) -> tuple[list[float], str, list[str]]:
    """Measured end-to-end latency (ms) of each model from a profile store.

    Models are matched by file hash, else by name (noted in the returned notes). Without
    ``scenario``, the one scenario that has all models is used; ``prefer`` breaks a tie."""
    store = open_store(store_path)
    try:
        rows = ok_rows(store)
    finally:
        store.close()
    if scenario is not None and scenario not in set(rows["scenario"]):
        raise LatpredError(f"{store_path}: no measurements for scenario {scenario!r} "
                           f"(has: {', '.join(sorted(set(rows['scenario']))) or 'none'})")
    candidates = [scenario] if scenario else sorted(set(rows["scenario"]))
    complete = []
    for scen in candidates:
        sub = rows[rows["scenario"] == scen]
        if all(_match(sub, m) is not None for m in models):
            complete.append(scen)
    if not complete:
        scen_txt = scenario or "any one scenario"
        missing = [m.name for m in models
                   if all(_match(rows[rows["scenario"] == s], m) is None for s in candidates)]
        raise LatpredError(f"{store_path}: not every model is measured in {scen_txt}"
                           + (f"; missing: {', '.join(missing)}" if missing else
                              "; measure them all under one scenario or pass --scenario"))
    if len(complete) > 1:
        if prefer in complete:
            complete = [prefer]
        else:
            raise LatpredError(f"{store_path}: the models are measured in {len(complete)} "
                               f"scenarios ({', '.join(complete)}); pick one with --scenario")
    scen = complete[0]
    sub = rows[rows["scenario"] == scen]
    lat, notes = [], []
    for m in models:
        row, how = _match(sub, m)
        lat.append(float(row["e2e_ms"]))
        if how == "name":
            notes.append(f"{m.name}: matched to the store by name (file hash differs)")
    return lat, scen, notes


def _match(sub: pd.DataFrame, m: ModelInfo):
    hit = sub[sub["model_hash"] == m.sha256]
    if len(hit):
        return hit.iloc[-1], "hash"
    hit = sub[sub["model"] == m.name]
    if len(hit) == 1:
        return hit.iloc[0], "name"
    return None


def load_predictor(bundle: str):
    if not os.path.exists(bundle):
        raise LatpredError(f"{bundle}: no such predictor bundle")
    try:
        from .. import predictors
        load = predictors.load
    except (ImportError, AttributeError):
        raise LatpredError("predictor bundles cannot be loaded: latpred.predictors.load is "
                           "not available in this installation") from None
    return load(bundle)


def predictor_scenario(predictor) -> str | None:
    scen = getattr(predictor, "scenario", None)
    if scen is None:  # a wrapper around a bundle
        scen = getattr(getattr(predictor, "bundle", None), "scenario", None)
    return None if scen is None else str(getattr(scen, "id", scen))


def predicted_latency(predictor, models: list[ModelInfo]) -> list[float]:
    out = []
    for m in models:
        res = predictor.predict(m.graph)
        out.append(float(getattr(res, "latency_ms", res)))
    return out


def is_profile_store(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def facts_for(models_or_names: Sequence, facts: pd.DataFrame | None, column: str):
    """Values of ``column`` from a model-facts frame for each model (NaN where absent)."""
    if facts is None or column not in facts:
        return None
    names = [getattr(m, "name", m) for m in models_or_names]
    return [float(facts[column].get(n, float("nan"))) for n in names]
