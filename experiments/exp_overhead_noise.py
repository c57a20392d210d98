"""Figs. 10 and 15 (paper §4.2, §5.2): framework overhead = measured end-to-end latency − Σ measured
op latencies, per model; and measurement noise as the coefficient of variation (CV) of repeated
runs, end-to-end and per op, per scenario. Where a store was combined from several measurement
passes taken at different times (`latpred store combine`), also the between-pass spread: how far
one pass's end-to-end time is from another's, the noise a single-pass label carries."""
from __future__ import annotations

import sys

import pandas as pd

import common as c

EXPERIMENT = "overhead_noise"
PER_MODEL_CSV = "overhead_per_model.csv"
CSV = "overhead_noise.csv"
PNG = "overhead_noise.png"
# Paper Fig. 10: e2e is consistently above Σ op-wise on phones, especially on GPUs (the difference
# is near-constant per device); Fig. 15: CV grows with more cores. Values only in the figures.
PAPER = "e2e > Σ ops on every phone (fig. only)"


def run(data: c.Data, out, quick: bool) -> None:
    if data.models.empty:
        return c.skip(out, EXPERIMENT, "no profile data")
    m = data.models.copy()
    m["overhead_ms"] = m["e2e_ms"] - m["sum_ops_ms"]
    m["overhead_pct"] = 100 * m["overhead_ms"] / m["e2e_ms"]
    c.write_csv(m[["scenario", "model", "kind", "n_ops", "e2e_ms", "sum_ops_ms", "overhead_ms",
                   "overhead_pct", "e2e_cv"]], out, PER_MODEL_CSV)
    op_cv = data.ops.groupby(["scenario", "kind"])["latency_cv"].median().rename("median_op_cv")
    agg = (m.groupby(["scenario", "kind"])
           .agg(models=("model", "size"), overhead_ms_mean=("overhead_ms", "mean"),
                overhead_ms_std=("overhead_ms", "std"), overhead_pct_median=("overhead_pct", "median"),
                share_e2e_above_sum=("overhead_ms", lambda s: 100 * float((s > 0).mean())),
                median_e2e_cv=("e2e_cv", "median"))
           .join(op_cv).join(_between_passes(m)).reset_index())
    c.write_csv(agg, out, CSV)
    plt = c.plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for (scen, kind), d in m.groupby(["scenario", "kind"]):
        ax1.scatter(d["sum_ops_ms"], d["overhead_ms"], s=8, label=f"{scen} ({kind})")
    ax1.axhline(0, color="k", lw=0.8)
    ax1.set_xscale("log")
    ax1.set_xlabel("Σ op-wise latency (ms)")
    ax1.set_ylabel("e2e − Σ op-wise (ms)")
    ax1.legend(fontsize=5)
    ax1.set_title("Overhead (cf. paper Fig. 10)", fontsize=9)
    scen = sorted(m["scenario"].unique())
    ax2.boxplot([m.loc[m["scenario"] == s, "e2e_cv"].dropna() for s in scen])
    ax2.set_xticks(range(1, len(scen) + 1), [s.split("/", 2)[-1] for s in scen], rotation=30,
                   fontsize=7)
    ax2.set_ylabel("CV of e2e latency")
    ax2.set_title("Noise (cf. paper Fig. 15)", fontsize=9)
    fig.suptitle("Measured on this machine", fontsize=9)
    c.save_png(fig, out, PNG)
    c.write_status(out, EXPERIMENT, "ok")


def _between_passes(models: pd.DataFrame) -> pd.DataFrame:
    """Per (scenario, kind): passes per model and the mean |a − b| / mean(a, b) over every pair of
    passes of a model (%), i.e. how well one pass reproduces another."""
    import itertools
    rows = []
    for (scen, kind), d in models.groupby(["scenario", "kind"]):
        lists = [p for p in d["pass_e2e_ms"] if isinstance(p, list) and len(p) >= 2]
        gaps = [abs(a - b) / ((a + b) / 2) for p in lists for a, b in itertools.combinations(p, 2)
                if a and b]
        rows.append({"scenario": scen, "kind": kind,
                     "passes": float(pd.Series([len(p) for p in lists]).median()) if lists else 1.0,
                     "pass_to_pass_pct": 100 * float(pd.Series(gaps).mean()) if gaps else None})
    return pd.DataFrame(rows).set_index(["scenario", "kind"])


def readme(out) -> str:
    def render(df):
        df = df.copy()
        df["paper"] = PAPER
        df.columns = ["scenario", "models of", "models", "overhead ms (mean)", "± std",
                      "overhead % of e2e (median)", "% models e2e > Σ ops", "median e2e CV",
                      "median op CV", "passes", "pass-to-pass e2e gap %", "paper (phones)"]
        note = ("\n\n'passes': measurement passes per model, taken at different times and "
                "combined by their median (`latpred store combine`). 'pass-to-pass e2e gap': "
                "mean |a − b| / mean(a, b) of the end-to-end times of two passes of the same "
                "model, i.e. how far apart two measurements of one model are.")
        return c.md_table(df, 3) + note + f"\n\n![overhead and noise](results/{PNG})\n"
    return c.section_or_nodata(out, EXPERIMENT, "5. Overhead and noise (paper Figs. 10, 15)", CSV,
                               render)


def main(argv=None) -> int:
    return c.script_main(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
