"""Figs. 4/5/6 and 14 (paper §3.1, §5.2): hardware heterogeneity on this host — core configurations
and int8 vs fp32.

Latency effects: for each pair of scenarios that differ in one thing (core count, or precision), the
speed-up of each op category = Σ latency of that category in a model under the first scenario / the
same under the second, over the models measured in both; median and mean over models, and whether
the category gets *slower* (median < 1; the paper's Insight 2 for int8). End-to-end speed-up likewise.
Prediction errors: GBDT (the paper's §5.2 choice) and Lasso, trained per scenario on the synthetic
training pool and tested on the synthetic test models, beside the scenario's median CV."""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd

import common as c

EXPERIMENT = "hardware"
SPEEDUP_CSV = "hardware_speedup.csv"
ERRORS_CSV = "hardware_errors.csv"
PNG = "hardware_speedup.png"
# Paper §3.1.2 (Fig. 6, phones): int8 makes element-wise ops 2.55x / 2.60x slower (Snapdragon 855 /
# Exynos 9820), padding also slower; other ops faster. §3.1.1 (Fig. 4): more homogeneous cores give
# sublinear speed-ups for conv, depthwise conv and FC, negligible ones for the rest.
PAPER_INT8 = {"ElementWise": "slower: ×1/2.55–1/2.60", "Padding": "slower", "Conv2D": "faster",
              "DepthwiseConv2D": "faster", "FullyConnected": "faster"}
PAPER_CORES = {"Conv2D": "sublinear speed-up", "DepthwiseConv2D": "sublinear speed-up",
               "FullyConnected": "sublinear speed-up", "end-to-end": "sublinear speed-up"}
# Paper §5.2 (Fig. 14, phones): GBDT e2e MAPE 3.2–10.5 % over homogeneous core configurations.
PAPER_GBDT = "3.2–10.5 (phones, per core config)"


def _parse(scen: str):
    from latpred.scenario import parse_scenario
    try:
        return parse_scenario(scen)
    except Exception:
        return None


def scenario_pairs(scenarios: list[str]) -> list[tuple[str, str, str]]:
    """(kind, first, second): 'cores' pairs (one core vs more, same precision) and 'precision'
    pairs (fp32 vs int8, same hardware)."""
    parsed = {s: _parse(s) for s in scenarios}
    pairs = []
    for a, pa in parsed.items():
        for b, pb in parsed.items():
            if pa is None or pb is None or a == b or pa.device != pb.device or pa.runtime != pb.runtime:
                continue
            if pa.precision == pb.precision and pa.hardware == "1" and pb.hardware not in ("1", "gpu"):
                pairs.append(("cores", a, b))
            if pa.hardware == pb.hardware and pa.precision == "fp32" and pb.precision == "int8":
                pairs.append(("precision", a, b))
    return pairs


def speedups(data: c.Data, a: str, b: str) -> pd.DataFrame:
    """Per category (and end-to-end): Σ latency under ``a`` / under ``b`` per common model."""
    ops_a, ops_b = data.ops_of(a), data.ops_of(b)
    common = sorted(set(ops_a["model"]) & set(ops_b["model"]))
    if not common:
        return pd.DataFrame()
    sa = ops_a[ops_a["model"].isin(common)].groupby(["model", "category"])["latency_ms"].sum()
    sb = ops_b[ops_b["model"].isin(common)].groupby(["model", "category"])["latency_ms"].sum()
    ratio = (sa / sb).dropna()
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)].reset_index(name="speedup")
    ea = data.models_of(a).set_index("model")["e2e_ms"].reindex(common)
    eb = data.models_of(b).set_index("model")["e2e_ms"].reindex(common)
    e = pd.DataFrame({"model": common, "category": "end-to-end", "speedup": (ea / eb).to_numpy()})
    ratio = pd.concat([ratio, e], ignore_index=True)
    return (ratio.groupby("category")["speedup"]
            .agg(n_models="size", speedup_median="median", speedup_mean="mean").reset_index())


def run(data: c.Data, out, quick: bool) -> None:
    scenarios = data.scenarios()
    if not scenarios:
        return c.skip(out, EXPERIMENT, "no profile data")
    rows = []
    for kind, a, b in scenario_pairs(scenarios):
        sp = speedups(data, a, b)
        if sp.empty:
            continue
        sp.insert(0, "comparison", kind)
        sp.insert(1, "from", a)
        sp.insert(2, "to", b)
        sp["slower"] = sp["speedup_median"] < 1.0
        rows.append(sp)
    if rows:
        sp = pd.concat(rows, ignore_index=True)
        c.write_csv(sp, out, SPEEDUP_CSV)
        _plot(sp, out)
    else:
        print(f"[{EXPERIMENT}] no scenario pair (1 vs more cores, fp32 vs int8) measured: "
              "speed-ups skipped")
        (c.Path(out) / SPEEDUP_CSV).unlink(missing_ok=True)
    train_names, test_names = c.split_synthetic(data)
    err_rows = []
    for scen in scenarios:
        tr, te = data.ops_of(scen, train_names), data.ops_of(scen, test_names)
        if tr["model"].nunique() < 2 or te.empty:
            continue
        m = data.models_of(scen)
        op_cv = data.ops_of(scen)["latency_cv"].median()
        for method in ("gbdt", "lasso"):
            s = c.e2e_scores(c.fit_ours(out, scen, method, tr, quick), te)
            err_rows.append({"scenario": scen, "method": method, "n_train": tr["model"].nunique(),
                             "n_test": s["n"], "mape": s["mape"], "acc10": s["acc10"],
                             "median_e2e_cv": m["e2e_cv"].median(), "median_op_cv": op_cv})
    if err_rows:
        c.write_csv(pd.DataFrame(err_rows), out, ERRORS_CSV)
    else:
        (c.Path(out) / ERRORS_CSV).unlink(missing_ok=True)
    if not rows and not err_rows:
        return c.skip(out, EXPERIMENT, "neither scenario pairs nor synthetic models measured")
    c.write_status(out, EXPERIMENT, "ok", speedups=bool(rows), errors=bool(err_rows),
                   scenarios=scenarios)


def _plot(sp, out):
    plt = c.plt()
    groups = list(sp.groupby(["from", "to"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 3.5), squeeze=False)
    for ax, ((a, b), d) in zip(axes[0], groups):
        ax.bar(d["category"], d["speedup_median"], color=["tab:red" if s else "tab:blue"
                                                          for s in d["slower"]])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_ylabel("median speed-up (×)")
        ax.set_title(f"{a}\n→ {b}", fontsize=7)
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    fig.suptitle("Speed-up per op category (cf. paper Figs. 4, 6; red = slower) — this machine",
                 fontsize=9)
    c.save_png(fig, out, PNG)


def readme(out) -> str:
    st = c.read_status(out, EXPERIMENT)
    head = "## 4. Hardware heterogeneity: core configurations, int8 vs fp32 (paper Figs. 4–6, 14)\n\n"
    if st.get("status") != "ok":
        return head + f"**{c.NO_DATA}** — {st.get('reason', '')}\n"
    text = head
    path = c.Path(out) / SPEEDUP_CSV
    if path.exists():
        df = pd.read_csv(path)
        for kind, ref in (("cores", PAPER_CORES), ("precision", PAPER_INT8)):
            d = df[df["comparison"] == kind].copy()
            if d.empty:
                text += f"**{kind}**: {c.NO_DATA} (no {'1-core vs multi-core' if kind == 'cores' else 'fp32 vs int8'} pair measured)\n\n"
                continue
            d["paper (phones)"] = d["category"].map(ref).fillna("–")
            d["slower"] = d["slower"].map({True: "yes", False: "no"})
            d = d[["from", "to", "category", "n_models", "speedup_median", "speedup_mean", "slower",
                   "paper (phones)"]]
            d.columns = ["from", "to", "category", "models", "speed-up × (median)",
                         "speed-up × (mean)", "slower", "paper (phones)"]
            text += f"**{kind}**\n\n" + c.md_table(d, 2) + "\n\n"
        text += f"![speed-ups](results/{PNG})\n\n"
    else:
        text += (f"Speed-ups: **{c.NO_DATA}** — no pair of scenarios (1 vs more cores, "
                 "fp32 vs int8) measured.\n\n")
    path = c.Path(out) / ERRORS_CSV
    if path.exists():
        df = pd.read_csv(path)
        df["paper"] = np.where(df["method"] == "gbdt", PAPER_GBDT, "fig. only")
        df = df[["scenario", "method", "n_train", "n_test", "mape", "acc10", "median_e2e_cv",
                 "median_op_cv", "paper"]]
        df.columns = ["scenario", "method", "train", "test", "e2e MAPE %", "±10% acc %",
                      "median e2e CV", "median op CV", "paper e2e MAPE % (phones)"]
        text += "Prediction errors per scenario (synthetic test models):\n\n" + c.md_table(df, 3) + "\n"
    return text


def main(argv=None) -> int:
    return c.script_main(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
