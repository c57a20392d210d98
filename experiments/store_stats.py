"""The noise and decomposition figures of a data card, from profile stores (one column each).

For each store: models measured and failed, end-to-end medians (synthetic / real-world), Σ op ÷
end-to-end (median and IQR), the median within-pass run CV, the gap between passes of combined
stores, the same op configuration's latency CV across models (its noise), the floor of the
paper's decomposition (measured Σ op + the training pool's mean overhead, on the synthetic test
models of experiments/common.py's split) and how often the ``folded`` flag (the runtime rules)
agrees with the ops that read 0 ms. Read-only; prints a markdown table.

  python experiments/store_stats.py datasets/host_xeon/*_opprof.sqlite
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

MIN_COPIES = 5     # op configurations seen in at least this many models
NOT_FEATURES = {"model", "model_hash", "scenario", "op_index", "op_type", "category", "latency_ms",
                "latency_cv", "runs", "e2e_ms", "e2e_cv", "kernel_ops", "folded", "kind"}


def _iqr(values: pd.Series) -> str:
    q = values.quantile([0.5, 0.25, 0.75]).to_numpy()
    return f"{q[0]:.3f} ({q[1]:.3f}–{q[2]:.3f})"


def _pair(models: pd.DataFrame, col: str, fmt: str) -> str:
    kinds = [models.loc[models["kind"] == k, col].median() for k in ("synthetic", "real")]
    return " / ".join("–" if not np.isfinite(v) else format(v, fmt) for v in kinds)


def same_config_cv(ops: pd.DataFrame) -> tuple[float, int]:
    """Median over op configurations (category, type and every feature equal) found in at least
    MIN_COPIES models of the CV of their latency."""
    feats = [col for col in ops.columns if col not in NOT_FEATURES]
    live = ops[ops["latency_ms"] > 0]
    g = live.fillna({f: -1.0 for f in feats}).groupby(["category", "op_type", *feats])["latency_ms"]
    stats = pd.DataFrame({"n": g.size(), "cv": g.std() / g.mean()})
    stats = stats[stats["n"] >= MIN_COPIES]
    return float(stats["cv"].median()), int(len(stats))


def store_column(path: str, names: set[str]) -> dict[str, str]:
    from latpred.store import ProfileStore
    with ProfileStore(path, readonly=True) as st:
        ops, models = st.frame(), st.models()
    ok = models[models["status"] == "ok"]
    ops = ops.copy()
    ops["model"] = ops["model"].str.replace(r"\.int8$", "", regex=True)
    ops["kind"] = [c.model_kind(n, names) for n in ops["model"]]
    per = ops.groupby("model").agg(e2e_ms=("e2e_ms", "first"), e2e_cv=("e2e_cv", "first"),
                                   sum_ops=("latency_ms", "sum"), kind=("kind", "first"))
    per["ratio"] = per["sum_ops"] / per["e2e_ms"]
    train, test = c.split_names(per.index[per["kind"] == "synthetic"])
    overhead = float((per.loc[train, "e2e_ms"] - per.loc[train, "sum_ops"]).mean())
    t = per.loc[test]
    floor = float(100 * np.mean(np.abs(t["sum_ops"] + overhead - t["e2e_ms"]) / t["e2e_ms"]))
    cv, n_cfg = same_config_cv(ops)
    col = {
        "models ok / failed": f"{len(ok)} / {int((models['status'] != 'ok').sum())}",
        "end-to-end median ms, synthetic / real-world": _pair(per, "e2e_ms", ".2f"),
        "Σ op ÷ end-to-end, synthetic: median (IQR)": _iqr(per.loc[per.kind == "synthetic",
                                                                   "ratio"]),
        "Σ op ÷ end-to-end, real-world: median (IQR)": _iqr(per.loc[per.kind == "real", "ratio"]),
        "median run CV within a pass, synthetic / real-world": _pair(per, "e2e_cv", ".3f"),
        "e2e MAPE of measured Σ op + mean overhead (synthetic test)": f"{floor:.2f} %",
        f"same op configuration in ≥ {MIN_COPIES} models: median CV (configs)":
            f"{cv:.3f} ({n_cfg})",
    }
    if "passes" in models:
        from exp_overhead_noise import _between_passes
        m = ok.copy()
        m["model"] = m["model"].str.replace(r"\.int8$", "", regex=True)
        m["kind"] = [c.model_kind(n, names) for n in m["model"]]
        gaps = _between_passes(m.assign(scenario="s"))
        col["passes; pass-to-pass e2e gap, synthetic / real-world"] = (
            f"{int(np.nanmax(m['passes']))}; " + " / ".join(
                f"{gaps.loc[('s', k), 'pass_to_pass_pct']:.2f} %" if ("s", k) in gaps.index
                else "–" for k in ("synthetic", "real")))
    if "folded" in ops:
        folded = ops["folded"].fillna(0) > 0
        zero = ops["latency_ms"] == 0
        col["`folded` flag vs 0 ms rows: agree; zero only; rule only"] = (
            f"{100 * float((folded == zero).mean()):.2f} %; {int((zero & ~folded).sum())}; "
            f"{int((folded & ~zero).sum())}")
    return col


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stores", nargs="+")
    ap.add_argument("--manifest", default=str(c.DEFAULT_MANIFEST))
    args = ap.parse_args(argv)
    missing = [p for p in args.stores if not os.path.exists(p)]
    if missing:
        print(f"no such store: {missing[0]}", file=sys.stderr)
        return 2
    names = c.manifest_names(args.manifest)
    cols = {os.path.relpath(p): store_column(p, names) for p in args.stores}
    table = pd.DataFrame(cols)
    print(c.md_table(table.reset_index().rename(columns={"index": ""})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
