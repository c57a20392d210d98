"""Shared pieces of the evaluation: loading recorded profiles, the train/test split, our
predictor as the paper defines it, metrics, caching and output files.

Split (documented in experiments/README.md):
- *synthetic* models are named ``nas_*``; *real-world* models are the names in
  ``datasets/zoo/manifest.csv`` (without a manifest: every other model).
- The synthetic test set is fixed once over the union of synthetic names of all scenarios: names are
  sorted, permuted with seed ``SPLIT_SEED``, and the first ``min(100, max(2, round(10 %)))`` are test
  models (100 of 1000, as the paper's §5.1); the rest, at most 900, are the training pool. A model is
  thus a test model in every scenario.
- Real-world models are never trained on: they are the test set of the dataset-shift experiments.
- Every fitted choice — hyper-parameters (cross-validation inside the training models), feature
  scaling, the overhead term, fall-backs for categories without data, look-up tables, the GCN's
  early stopping — uses training models only.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import pickle
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from latpred import categories  # noqa: E402
from latpred.fileio import atomic_path, atomic_write, atomic_write_text  # noqa: E402

DEFAULT_DATA = ROOT / "datasets" / "host"
DEFAULT_MANIFEST = ROOT / "datasets" / "zoo" / "manifest.csv"
DEFAULT_RESULTS = ROOT / "experiments" / "results"
SPLIT_SEED = 0
TEST_FRACTION = 0.1
MAX_TEST, MAX_TRAIN = 100, 900
METHODS = ("lasso", "rf", "gbdt", "mlp")
NO_DATA = "no data yet"

# Reduced hyper-parameter grids of QUICK mode (the full run uses latpred's default search).
QUICK_GRIDS = {
    "lasso": {"alpha": list(np.logspace(-5, 2, 6))},
    "rf": {"n_estimators": [5, 10], "min_samples_split": [2, 10]},
    "gbdt": {"n_estimators": list(range(1, 61)), "min_child_samples": [2, 7]},
    "mlp": {"layers": [2], "width": [64], "lr": [5e-3], "weight_decay": [1e-4],
            "max_epochs": [60]},
}


# -- data ------------------------------------------------------------------------------------------
@dataclass
class Data:
    ops: pd.DataFrame        # one row per measured op, all scenarios, plus ``kind``
    # one row per (scenario, model): e2e_ms, e2e_cv, sum_ops_ms, n_ops, kind, pass_e2e_ms (the
    # e2e of each measurement pass when the store was combined from several, else None)
    models: pd.DataFrame
    stores: list[str]
    manifest_names: set[str]

    def scenarios(self) -> list[str]:
        return sorted(self.models["scenario"].unique())

    def ops_of(self, scenario: str, names=None) -> pd.DataFrame:
        df = self.ops[self.ops["scenario"] == scenario]
        if names is not None:
            df = df[df["model"].isin(set(names))]
        return df

    def models_of(self, scenario: str, kind: str | None = None) -> pd.DataFrame:
        df = self.models[self.models["scenario"] == scenario]
        return df if kind is None else df[df["kind"] == kind]


def manifest_names(path) -> set[str]:
    import csv
    if not path or not os.path.isfile(path):
        return set()
    with open(path, newline="", encoding="utf-8") as f:
        return {r["name"] for r in csv.DictReader(f) if r.get("name")}


def model_kind(name: str, manifest: set[str]) -> str:
    if name.startswith("nas_"):
        return "synthetic"
    if not manifest or name in manifest:
        return "real"
    return "other"


def _combined_store(path: str) -> str | None:
    """The store that combines the pass ``path`` (``X.pass2.sqlite`` -> ``X.sqlite``), else None."""
    combined = re.sub(r"\.pass\d+\.sqlite$", ".sqlite", path)
    return combined if combined != path else None


def load_data(data_dir=DEFAULT_DATA, manifest=DEFAULT_MANIFEST) -> Data:
    """All ``*.sqlite`` profile stores under ``data_dir`` (one measurement per scenario and model:
    the latest when stored twice)."""
    from latpred.store import ProfileStore
    stores = sorted(glob.glob(os.path.join(str(data_dir), "**", "*.sqlite"), recursive=True))
    # X.passK.sqlite are the passes that X.sqlite combines: read the median, not the passes too
    present = set(stores)
    stores = [p for p in stores if _combined_store(p) not in present]
    frames, paths = [], []
    for p in stores:
        with ProfileStore(p, readonly=True) as st:
            f = st.frame()
            m = st.models()
        if len(f) == 0:
            continue
        # stores combined from repeated passes (`latpred store combine`) keep each pass's e2e
        if "pass_e2e_ms" not in m:
            m["pass_e2e_ms"] = None
        ok = m[m["status"] == "ok"][["model", "scenario", "model_path", "measured_at",
                                     "pass_e2e_ms"]]
        frames.append(f.merge(ok.drop_duplicates(["model", "scenario"], keep="last"),
                              on=["model", "scenario"], how="left"))
        paths.append(p)
    names = manifest_names(manifest)
    if not frames:
        return Data(pd.DataFrame(columns=["model", "scenario", "kind"]),
                    pd.DataFrame(columns=["model", "scenario", "kind", "e2e_ms"]), stores, names)
    ops = pd.concat(frames, ignore_index=True)
    # one name per architecture across precisions: export writes int8 files as <name>.int8.tflite
    ops["model"] = ops["model"].str.replace(r"\.int8$", "", regex=True)
    # the latest measurement of a (scenario, model) wins
    latest = ops.groupby(["scenario", "model"])["measured_at"].transform("max")
    ops = ops[ops["measured_at"] == latest]
    ops = ops[ops["model_hash"] == ops.groupby(["scenario", "model"])["model_hash"].transform("last")]
    ops = ops.drop_duplicates(["scenario", "model", "op_index"], keep="last")
    ops = ops[ops["e2e_ms"].notna() & (ops["e2e_ms"] > 0)].copy()
    ops["kind"] = [model_kind(n, names) for n in ops["model"]]
    ops = ops[ops["kind"] != "other"].reset_index(drop=True)
    g = ops.groupby(["scenario", "model"], sort=False)
    models = g.agg(e2e_ms=("e2e_ms", "first"), e2e_cv=("e2e_cv", "first"),
                   sum_ops_ms=("latency_ms", "sum"), n_ops=("op_index", "size"),
                   kind=("kind", "first"), model_path=("model_path", "first"),
                   pass_e2e_ms=("pass_e2e_ms", "first")).reset_index()
    return Data(ops, models, paths, names)


def split_synthetic(data: Data, seed: int = SPLIT_SEED) -> tuple[list[str], list[str]]:
    """(training pool, test models) over all synthetic names; see the module docstring."""
    return split_names(data.models.loc[data.models["kind"] == "synthetic", "model"].unique(),
                       seed)


def split_names(synthetic_names, seed: int = SPLIT_SEED) -> tuple[list[str], list[str]]:
    """:func:`split_synthetic` of a list of synthetic model names."""
    names = sorted(synthetic_names)
    if not names:
        return [], []
    perm = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    n_test = min(MAX_TEST, max(2, int(round(TEST_FRACTION * len(names)))))
    n_test = min(n_test, len(names) - 1)
    return sorted(perm[n_test:][:MAX_TRAIN]), sorted(perm[:n_test])


def primary_scenario(data: Data) -> str | None:
    """The default scenario (paper §5.1 'default setting'): fp32 on one CPU core if measured
    (in-graph op timings preferred), else the scenario with most synthetic models."""
    counts = data.models[data.models["kind"] == "synthetic"].groupby("scenario").size()
    if counts.empty:
        return None
    # in-graph op timings (LiteRT's profiler, "+opprof") first: the paper's decomposition
    # e2e = T + Σ op holds for them; isolated single-op timings are kept for comparison
    ranked = sorted(counts.index, key=lambda s: (not s.endswith("/cpu1/fp32"),
                                                 "+opprof" not in s, -counts[s], s))
    return ranked[0]


def real_world(data: Data, scenario: str) -> list[str]:
    return sorted(data.models_of(scenario, "real")["model"])


def e2e(ops: pd.DataFrame) -> pd.Series:
    return ops.groupby("model", sort=False)["e2e_ms"].first()


# -- our predictor (paper §4): the library's own estimator ---------------------------------------
def ours(method: str, *, quick: bool = False, **settings):
    """The paper's predictor, T_overhead + Σ f_category(x̂) (§4.2), exactly as users get it:
    :class:`latpred.predictors.LatencyPredictor` (same features, fallback and overhead as
    ``latpred predict``/``evaluate``); ``quick`` searches the reduced ``QUICK_GRIDS``; the other
    settings are the estimator's (``overhead``, ``objective``, ``kernel_features``,
    ``work_target``, ``linear_base``)."""
    from latpred.predictors import LatencyPredictor
    # quick: the reduced grid of the method, and of the Lasso estimate that RF / GBDT may refine
    # (the full run searches latpred's default grid for both)
    grids = {method: QUICK_GRIDS[method], "lasso": QUICK_GRIDS["lasso"]} if quick else None
    return LatencyPredictor(method, grids=grids, **settings)


# -- metrics -----------------------------------------------------------------------------------------
def scores(y_true, y_pred) -> dict[str, float]:
    """MAPE and ±1/5/10 % accuracy (share of models within that relative error), in %."""
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    ok = np.isfinite(yt) & np.isfinite(yp) & (yt > 0)
    if not ok.any():
        return {"n": 0, "mape": np.nan, "acc1": np.nan, "acc5": np.nan, "acc10": np.nan}
    err = np.abs(yp[ok] - yt[ok]) / yt[ok]
    return {"n": int(ok.sum()), "mape": 100 * float(err.mean()),
            "acc1": 100 * float(np.mean(err <= 0.01)), "acc5": 100 * float(np.mean(err <= 0.05)),
            "acc10": 100 * float(np.mean(err <= 0.10))}


def e2e_scores(predictor, ops: pd.DataFrame) -> dict[str, float]:
    pred = predictor.predict_models(ops)
    true = e2e(ops).reindex(pred.index)
    return scores(true.to_numpy(), pred.to_numpy())


CATEGORY_GROUPS = {"conv": (categories.CONV2D, categories.GROUPED_CONV2D),
                   "depthwise": (categories.DEPTHWISE_CONV2D,)}


OP_LEVEL_NOTE = ("\n\nOp-level columns score the ops measured at or above the op timer's resolution "
                 "(1 µs for the in-graph `+opprof` timings, whose events are whole microseconds; "
                 "training leaves faster rows out too).")


def category_scores(op_pred: np.ndarray, ops: pd.DataFrame, min_ms: float = 0.0) -> dict[str, float]:
    """Op-level MAPE (%) for convolutions, depthwise convolutions and all other ops, over ops
    measured at ``min_ms`` or more (the op timer's resolution: below it a percentage error
    compares against quantisation noise, and training leaves those rows out too)."""
    out = {}
    keep = ops["latency_ms"].to_numpy(np.float64) >= min_ms
    ops, op_pred = ops[keep], np.asarray(op_pred)[keep]
    y = ops["latency_ms"].to_numpy(np.float64)
    cat = ops["category"].to_numpy()
    conv_like = np.zeros(len(ops), bool)
    for name, cats in CATEGORY_GROUPS.items():
        rows = np.isin(cat, cats)
        conv_like |= rows
        out[f"{name}_mape"] = scores(y[rows], op_pred[rows])["mape"]
    out["rest_mape"] = scores(y[~conv_like], op_pred[~conv_like])["mape"]
    return out


# -- fitting with a cache (a full run reuses fits across experiments and resumes) --------------------
def _fingerprint(ops: pd.DataFrame) -> str:
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(ops[["model", "op_index", "latency_ms", "e2e_ms"]],
                                        index=False).values.tobytes())
    return h.hexdigest()[:20]


def fit_cached(out_dir, label: str, make, train_ops: pd.DataFrame):
    """``make()`` -> an unfitted predictor; fitted on ``train_ops``, cached under ``out_dir/.cache``
    by label + data fingerprint, written atomically."""
    cache = Path(out_dir) / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"{label}|{_fingerprint(train_ops)}".encode()).hexdigest()[:24]
    path = cache / f"{key}.pkl"
    if path.exists():
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except Exception:
            path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    model = make().fit(train_ops)
    model.fit_seconds_total = time.perf_counter() - t0
    try:
        with atomic_write(path, "wb") as f:
            pickle.dump(model, f)
    except Exception:
        pass                # the cache is an optimisation: a failed write only costs a refit
    return model


def _predictor_code_hash() -> str:
    """Hash of the code that fits and applies our predictor: a change there invalidates cached fits."""
    h = hashlib.sha256()
    for p in (sorted((ROOT / "latpred" / "predictors").glob("*.py"))
              + sorted((ROOT / "latpred" / "cpu").glob("*.py"))
              + [ROOT / "latpred" / "features.py", ROOT / "latpred" / "scenario.py"]):
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


# taken once at import: a run keeps labelling its fits with the code it actually runs
_CODE_HASH = _predictor_code_hash()


def fit_ours(out_dir, scenario: str, method: str, train_ops, quick: bool, **kw):
    """A fitted :func:`ours` (``kw``: its settings), cached under the library's code hash."""
    label = f"ours-bundle|{_CODE_HASH}|{scenario}|{method}|{quick}|{sorted(kw.items())}"
    if quick and method != "lasso":
        label += "|quick-lasso-base"    # fits of the time its base searched the full grid differ
    return fit_cached(out_dir, label, lambda: ours(method, quick=quick, **kw), train_ops)


# -- output ---------------------------------------------------------------------------------------
def write_csv(df: pd.DataFrame, out_dir, name: str) -> Path:
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".csv.tmp") as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    return path


def with_earlier_rows(df: pd.DataFrame, out_dir, name: str, scenarios) -> pd.DataFrame:
    """``df`` (rows of a re-run of ``scenarios`` only) with the earlier run's rows of every other
    scenario, in the earlier order, so that re-running one scenario keeps the rest of a table."""
    path = Path(out_dir) / name
    if not scenarios or not path.is_file():
        return df
    earlier = pd.read_csv(path)
    keep = earlier[~earlier["scenario"].isin(list(scenarios))]
    order = list(dict.fromkeys(list(earlier["scenario"]) + list(df["scenario"])))
    merged = pd.concat([keep, df], ignore_index=True)
    rank = {s: i for i, s in enumerate(order)}
    return merged.sort_values("scenario", key=lambda col: col.map(rank), kind="stable") \
        .reset_index(drop=True)


def save_png(fig, out_dir, name: str) -> Path:
    from latpred.metrics.plots import save_figure
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(save_figure(fig, path))


def write_status(out_dir, experiment: str, status: str, reason: str = "", **extra) -> None:
    """``<experiment>.status.json``: ok / skipped (with why), read by the README generator."""
    path = Path(out_dir) / f"{experiment}.status.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"experiment": experiment, "status": status,
                                        "reason": reason, **extra}, indent=1))


def read_status(out_dir, experiment: str) -> dict:
    path = Path(out_dir) / f"{experiment}.status.json"
    if not path.exists():
        return {"status": "missing", "reason": "not run yet"}
    return json.loads(path.read_text())


def skip(out_dir, experiment: str, reason: str) -> None:
    print(f"[{experiment}] skipped: {reason}")
    write_status(out_dir, experiment, "skipped", reason)


def plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    return pyplot


def arg_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder of profile stores (*.sqlite)")
    p.add_argument("--manifest", default=str(DEFAULT_MANIFEST),
                   help="zoo manifest CSV naming the real-world models")
    p.add_argument("--out", default=str(DEFAULT_RESULTS), help="results folder")
    p.add_argument("--quick", action="store_true", help="reduced run (fewer models/draws, grids)")
    return p


def score_ours(out, experiment: str, scen: str, methods, tr: pd.DataFrame, te: pd.DataFrame,
               quick: bool) -> list[dict]:
    """Train our predictor per method on ``tr`` and score it on ``te``: e2e and per-category rows."""
    rows = []
    for method in methods:
        model = fit_ours(out, scen, method, tr, quick)
        row = {"scenario": scen, "method": method, "n_train": tr["model"].nunique(),
               "n_test": te["model"].nunique()}
        row.update(e2e_scores(model, te))
        from latpred.scenario import Scenario
        row.update(category_scores(model.predict_ops(te), te,
                                   Scenario.parse(scen).op_timer_resolution_ms))
        rows.append(row)
        print(f"[{experiment}] {scen} {method}: e2e MAPE {row['mape']:.2f} %")
    return rows


def script_main(run, description: str, argv=None) -> int:
    """Command-line entry of one experiment script: parse the common flags, load the data, run."""
    args = arg_parser(description).parse_args(argv)
    run(load_data(args.data, args.manifest), args.out, args.quick)
    return 0


def fmt(v, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{float(v):.{digits}f}"


def md_table(df: pd.DataFrame, digits: int = 1) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(fmt(r[c], digits) if not isinstance(r[c], str) else r[c]
                                       for c in cols) + " |")
    return "\n".join(lines)


def section_or_nodata(out_dir, experiment: str, title: str, csv: str, render) -> str:
    """A README section: ``render(df)`` of the experiment's CSV, or 'no data yet' and why."""
    st = read_status(out_dir, experiment)
    path = Path(out_dir) / csv
    head = f"## {title}\n\n"
    if st.get("status") != "ok" or not path.exists():
        return head + f"**{NO_DATA}** — {st.get('reason', '')}\n"
    return head + render(pd.read_csv(path))
