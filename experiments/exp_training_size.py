"""Fig. 21 (paper §5.5.1): training-set sizes 30 / 100 / 300 / 900 synthetic architectures, drawn at
random from the training pool (≥ 5 draws per size; the size equal to the whole pool has only one
possible draw), tested on the synthetic test models and on the real-world models. Mean and standard
deviation over draws. Sizes larger than the measured pool are left out (the CSV says which ran)."""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd

import common as c

EXPERIMENT = "training_size"
CSV = "training_size.csv"
RAW = "training_size_draws.csv"
PNG = "training_size.png"
SIZES_PAPER = (30, 100, 300, 900)
SIZES = SIZES_PAPER
DRAWS = 5
# Paper §5.5.1 text: with 30 training models, Lasso's e2e MAPE on real-world CPU is 6.5 % (Fig. 21c).
PAPER = {("lasso", 30, "real"): "6.5"}


def sizes_for(pool: int, quick: bool) -> list[int]:
    sizes = [s for s in SIZES if s <= pool]
    if quick:
        sizes = sizes[:2]
    if not sizes:   # tiny stores (tests): a third of the pool and the whole pool
        sizes = sorted({max(3, pool // 3), pool})
    return sizes


def run(data: c.Data, out, quick: bool, methods=c.METHODS, scenario=None) -> None:
    train_pool, test_names = c.split_synthetic(data)
    scen = scenario or c.primary_scenario(data)
    if scen is None or not train_pool:
        return c.skip(out, EXPERIMENT, "no synthetic (nas_*) models measured")
    pool = sorted(set(train_pool) & set(data.models_of(scen)["model"]))
    tests = {"synthetic": data.ops_of(scen, test_names), "real": data.ops_of(scen,
                                                                             c.real_world(data, scen))}
    draws = 2 if quick else DRAWS
    methods = ("lasso", "gbdt") if quick else methods
    rows = []
    for size in sizes_for(len(pool), quick):
        for draw in range(draws if size < len(pool) else 1):
            rng = np.random.default_rng(1000 + draw)
            names = sorted(rng.choice(pool, size=size, replace=False))
            tr = data.ops_of(scen, names)
            for method in methods:
                model = c.fit_ours(out, scen, method, tr, quick)
                for test, te in tests.items():
                    if te.empty:
                        continue
                    s = c.e2e_scores(model, te)
                    rows.append({"scenario": scen, "method": method, "size": size, "draw": draw,
                                 "test": test, "mape": s["mape"], "acc10": s["acc10"],
                                 "n_test": s["n"]})
            print(f"[{EXPERIMENT}] size {size} draw {draw} done")
    raw = pd.DataFrame(rows)
    c.write_csv(raw, out, RAW)
    agg = (raw.groupby(["scenario", "method", "test", "size"])
           .agg(draws=("draw", "nunique"), mape_mean=("mape", "mean"), mape_std=("mape", "std"),
                acc10_mean=("acc10", "mean")).reset_index())
    agg["mape_std"] = agg["mape_std"].fillna(0.0)
    c.write_csv(agg, out, CSV)
    plt = c.plt()
    tests_run = list(agg["test"].unique())
    fig, axes = plt.subplots(1, len(tests_run), figsize=(5 * len(tests_run), 3.5), squeeze=False)
    for ax, test in zip(axes[0], tests_run):
        for method, d in agg[agg["test"] == test].groupby("method"):
            ax.errorbar(d["size"], d["mape_mean"], yerr=d["mape_std"], marker="o", capsize=3,
                        label=method)
        ax.set_xscale("log")
        ax.set_xlabel("synthetic training architectures")
        ax.set_ylabel("e2e MAPE (%)")
        ax.set_title(f"test: {test}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"Training-set size (cf. paper Fig. 21) — {scen}, this machine", fontsize=9)
    c.save_png(fig, out, PNG)
    c.write_status(out, EXPERIMENT, "ok", scenario=scen)


def readme(out) -> str:
    def render(df):
        t = df.copy()
        t["paper"] = [PAPER.get((m, int(s), te), "fig. only")
                      for m, s, te in zip(t["method"], t["size"], t["test"])]
        t = t[["method", "test", "size", "draws", "mape_mean", "mape_std", "acc10_mean", "paper"]]
        t.columns = ["method", "test", "train size", "draws", "e2e MAPE % (mean)", "± std",
                     "±10% acc % (mean)", "paper e2e MAPE % (phones CPU)"]
        run_sizes = sorted(int(v) for v in df["size"].unique())
        partial = ("" if run_sizes == list(SIZES_PAPER) else
                   f" Sizes run this time: {', '.join(map(str, run_sizes))} (the full run, "
                   f"`run_all.py` without `--training-sizes`, also has "
                   f"{', '.join(str(v) for v in SIZES_PAPER if v not in run_sizes)}).")
        return (f"Scenario: `{df['scenario'].iloc[0]}`.{partial}\n\n" + c.md_table(t)
                + f"\n\n![training size](results/{PNG})\n")
    return c.section_or_nodata(out, EXPERIMENT, "3. Training-set size (paper Fig. 21)", CSV, render)


def main(argv=None) -> int:
    return c.script_main(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
