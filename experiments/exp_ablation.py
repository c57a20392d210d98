"""Ablation of what is new in the method (issue 7 item 7), Lasso and GBDT on the primary scenario:
- features: Table 3 plus the CPU kernel features (latpred's default on CPUs) vs the paper's Table 3
  alone vs nn-Meter's kernel features (same method, MSPE);
- objective: MSPE (Eq. 1) vs plain squared error (Table 3 features);
- overhead term: a fixed part plus a share of Σ ops (default) vs the paper's constant (mean) vs off;
- target: latency vs latency per unit of work (``--work-target``, chosen per category by CV);
- trees: refining a per-category Lasso estimate where CV prefers it (default) vs the paper's trees
  alone (``--no-linear-base``; Lasso is the same either way).
Train: synthetic training pool; test: synthetic test models and real-world models.

Every variant but the nn-Meter-feature one is a latpred bundle (``train_bundle`` options). Bundles
hold Table 3 (+ kernel) features only, so that variant is assembled here from the library's pieces: the same
``fit_category`` (MSPE), overhead term and fallback, on nn-Meter's kernel types and features."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import common as c

EXPERIMENT = "ablation"
CSV = "ablation.csv"
_THIS_FILE_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
VARIANTS = {
    "full (Table 3 + CPU kernel features, MSPE, overhead)": {},
    "Table 3 features only (the paper's)": {"kernel_features": False},
    "nn-Meter features": {"feature_set": "nnmeter"},
    "plain squared error": {"objective": "mse"},
    "constant overhead term (the paper's mean)": {"overhead": "mean"},
    "no overhead term": {"overhead": "none"},
    "latency per unit of work, chosen by CV (opt-in)": {"work_target": True},
    "trees without the linear base (the paper's)": {"linear_base": False},
}


class NnMeterFeatures:
    """Ablation only: our method on nn-Meter's kernel types and feature vectors instead of Table 3
    (see the module docstring); same interface as ``common.Ours``."""

    def __init__(self, method: str, *, quick: bool = False, seed: int = 0):
        self.method, self.quick, self.seed = method, quick, seed
        self.models: dict = {}

    @staticmethod
    def _kernels(ops: pd.DataFrame) -> np.ndarray:
        from latpred.baselines.nnmeter import kernel_type
        return np.array([kernel_type(k, t) for k, t in zip(ops["category"], ops["op_type"])],
                        dtype=object)

    def fit(self, train_ops: pd.DataFrame) -> "NnMeterFeatures":
        from latpred.baselines.nnmeter import nnmeter_features
        from latpred.predictors.methods import fit_category
        from latpred.predictors.train import MIN_SAMPLES, fit_fallback, fit_overhead
        self.overhead_ms, self.overhead_share, _ = fit_overhead(train_ops)
        self.fallback = fit_fallback(train_ops)
        lat = train_ops["latency_ms"].to_numpy(np.float64)
        usable = train_ops[np.isfinite(lat) & (lat > 0)]
        kernels = self._kernels(usable)
        y_all = usable["latency_ms"].to_numpy(np.float64)
        grid = c.QUICK_GRIDS[self.method] if self.quick else None
        for k in sorted(set(kernels)):
            rows = kernels == k
            if rows.sum() >= max(MIN_SAMPLES, 2):
                self.models[k] = fit_category(self.method, k, (), nnmeter_features(usable[rows], k),
                                              y_all[rows], grid=grid, seed=self.seed)
        return self

    def predict_ops(self, ops: pd.DataFrame) -> np.ndarray:
        from latpred.baselines.nnmeter import nnmeter_features
        from latpred.predictors.train import element_count
        # the library's fallback (latency per element moved) for kernels without a model
        size = element_count(ops)
        fb = self.fallback
        out = np.where(np.isfinite(size) & (fb.ms_per_element > 0), fb.ms_per_element * size,
                       fb.constant_ms)
        kernels = self._kernels(ops)
        for k in set(kernels) & set(self.models):
            rows = kernels == k
            out[rows] = self.models[k].predict(nnmeter_features(ops[rows], k))
        return out

    def predict_models(self, ops: pd.DataFrame) -> pd.Series:
        from latpred.baselines import sum_by_model
        ops_ms = sum_by_model(ops, self.predict_ops(ops))
        return ops_ms + self.overhead_ms + self.overhead_share * ops_ms


def fit_variant(out, scen: str, method: str, tr: pd.DataFrame, quick: bool, kw: dict):
    if kw.get("feature_set") == "nnmeter":
        # keyed by the library's code and this file's, like ``fit_ours``: a stale fit is not reused
        return c.fit_cached(out, f"ablation-nnmeter-features|{c._CODE_HASH}|{_THIS_FILE_HASH}|"
                                 f"{scen}|{method}|{quick}",
                            lambda: NnMeterFeatures(method, quick=quick), tr)
    return c.fit_ours(out, scen, method, tr, quick, **kw)


def run(data: c.Data, out, quick: bool) -> None:
    train_names, test_names = c.split_synthetic(data)
    scen = c.primary_scenario(data)
    if scen is None or not train_names:
        return c.skip(out, EXPERIMENT, "no synthetic (nas_*) models measured")
    tr = data.ops_of(scen, train_names)
    tests = {"synthetic": data.ops_of(scen, test_names),
             "real": data.ops_of(scen, c.real_world(data, scen))}
    rows = []
    for method in ("lasso", "gbdt"):
        for variant, kw in VARIANTS.items():
            model = fit_variant(out, scen, method, tr, quick, kw)
            for test, te in tests.items():
                if te.empty:
                    continue
                s = c.e2e_scores(model, te)
                rows.append({"scenario": scen, "method": method, "variant": variant, "test": test,
                             **s, "overhead_ms": model.overhead_ms,
                             "overhead_share": model.overhead_share})
                print(f"[{EXPERIMENT}] {method} {variant} {test}: MAPE {s['mape']:.2f} %")
    c.write_csv(pd.DataFrame(rows), out, CSV)
    c.write_status(out, EXPERIMENT, "ok", scenario=scen)


def readme(out) -> str:
    def render(df):
        t = df[["method", "variant", "test", "n", "mape", "acc5", "acc10", "overhead_ms"]].copy()
        t["overhead share %"] = 100 * df["overhead_share"]
        t.columns = ["method", "variant", "test", "models", "e2e MAPE %", "±5% acc %",
                     "±10% acc %", "overhead fixed ms", "overhead share of Σ ops %"]
        return (f"Scenario `{df['scenario'].iloc[0]}`. The paper has no such ablation; its §5.6.1 "
                "attributes its lead over nn-Meter to the broader feature set.\n\n"
                + c.md_table(t, 2) + "\n")
    return c.section_or_nodata(out, EXPERIMENT, "7. Ablation: features, objective, overhead", CSV,
                               render)


def main(argv=None) -> int:
    return c.script_main(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
