"""Does a drift gauge take a shared VM's drift out of the labels? (issue 21)

Every model of a store measured with ``latpred profile --reference MODEL`` was timed beside one
fixed reference model. Here every pass of such a store is normalized to one gauge time (the
median over all passes: ``latpred store normalize --to``), the normalized passes are combined
by the median like the raw ones, and the two stores are compared:
- noise: the pass-to-pass gap, the floor of the decomposition, the same op's CV across models
  (experiments/store_stats.py);
- accuracy: GBDT (and Lasso) trained on the synthetic training pool, e2e MAPE on the 100
  synthetic test models (in distribution) and on the real-world CNNs (dataset shift).
Normalized values are derived, not measured: every table names which store a row is from.

  python experiments/exp_drift_gauge.py --data datasets/host_milan --out experiments/results_milan
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import common as c
import store_stats

EXPERIMENT = "drift_gauge"
CSV = "drift_gauge.csv"
PNG = "drift_gauge.png"
METHODS = ("lasso", "gbdt")


def normalized_copy(store: str, into: Path) -> str:
    """The normalized counterpart of ``store`` under ``into`` (remade from the passes each run:
    seconds)."""
    from latpred.store import ProfileStore, combine_stores, normalize_store
    stem = store[:-len(".sqlite")]
    passes = sorted(glob.glob(f"{stem}.pass*.sqlite"))
    into.mkdir(parents=True, exist_ok=True)
    out = into / os.path.basename(store)
    if not passes:
        normalize_store(store, out, replace=True)
        return str(out)
    gauge = []
    for p in passes:
        with ProfileStore(p, readonly=True) as st:
            m = st.models()
        gauge += list(m.loc[m["status"] == "ok", "reference_ms"])
    target = float(np.median(gauge))
    normalized = []
    for k, p in enumerate(passes, 1):
        dst = into / f"{Path(store).stem}.pass{k}.sqlite"
        normalize_store(p, dst, replace=True, target_ms=target)
        normalized.append(str(dst))
    combine_stores(normalized, out, replace=True)
    return str(out)


def accuracy(data_dir: str, label: str, out: Path, manifest: str) -> list[dict]:
    data = c.load_data(data_dir, manifest)
    train, test = c.split_synthetic(data)
    rows = []
    for scen in data.scenarios():
        tr = data.ops_of(scen, train)
        for kind, te in (("synthetic test (in distribution)", data.ops_of(scen, test)),
                         ("real-world (dataset shift)", data.ops_of(scen, c.real_world(data, scen)))):
            if te.empty:
                continue
            for method in METHODS:
                model = c.fit_ours(out, f"{scen}|{label}", method, tr, quick=False)
                r = c.e2e_scores(model, te)
                rows.append({"scenario": scen, "labels": label, "test": kind, "method": method,
                             "n_train": tr["model"].nunique(), **r})
                print(f"[{EXPERIMENT}] {label} {scen} {kind} {method}: MAPE {r['mape']:.2f} %")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder of stores measured with --reference")
    ap.add_argument("--out", required=True)
    ap.add_argument("--manifest", default=str(c.DEFAULT_MANIFEST))
    args = ap.parse_args(argv)
    out = Path(args.out)
    stores = sorted(p for p in glob.glob(os.path.join(args.data, "*.sqlite"))
                    if ".pass" not in os.path.basename(p))
    if not stores:
        print(f"no store in {args.data}", file=sys.stderr)
        return 2
    norm_dir = out / ".cache" / "normalized"
    pairs = [(s, normalized_copy(s, norm_dir)) for s in stores]
    names = c.manifest_names(args.manifest)
    stats = {}
    for raw, norm in pairs:
        stats[f"{os.path.basename(raw)} (measured)"] = store_stats.store_column(raw, names)
        stats[f"{os.path.basename(raw)} (gauge-normalized, derived)"] = \
            store_stats.store_column(norm, names)
    stats_md = c.md_table(pd.DataFrame(stats).reset_index().rename(columns={"index": ""}))
    rows = accuracy(args.data, "measured", out, args.manifest)
    rows += accuracy(str(norm_dir), "gauge-normalized (derived)", out, args.manifest)
    df = pd.DataFrame(rows)
    c.write_csv(df, out, CSV)
    plt = c.plt()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    piv = df[df.method == "gbdt"].pivot_table(index="test", columns="labels", values="mape")
    piv.plot.bar(ax=ax, rot=0)
    ax.set_ylabel("GBDT e2e MAPE (%)")
    ax.set_title("Measured labels vs gauge-normalized (derived) labels", fontsize=9)
    c.save_png(fig, out, PNG)
    table = c.md_table(df[["scenario", "labels", "test", "method", "n_train", "n", "mape",
                           "acc5", "acc10"]], 2)
    (out / "drift_gauge.md").write_text(
        "# Drift gauge: measured vs gauge-normalized labels\n\n"
        f"`python experiments/exp_drift_gauge.py --data {args.data} --out {args.out}`\n\n"
        "## Noise of the labels\n\n" + stats_md + "\n\n## Accuracy\n\n" + table + "\n")
    print(stats_md)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
