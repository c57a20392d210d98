"""Another CPU and another runtime from K end-to-end timings (issues 19 and 21).

The committed source bundle (`datasets/host/bundles/litert_cpu1_fp32_opprof_gbdt.latpred`: GBDT on
the 1000 synthetic models of the primary store, measured on an AMD EPYC) is adapted with
`latpred adapt`'s fit to each scenario of another store folder (default `datasets/host_xeon`: an
Intel Xeon, LiteRT on 1 and 2 cores, fp32 and int8, and ONNX Runtime), from the end-to-end times
of K synthetic models, and predicts that store's 104 real-world CNNs and its 100 synthetic test
models. Beside it: the unadapted bundle, one global scale, and a bundle trained op-wise on the
target store's own 900 synthetic training models (reduced grid; what full profiling of the target gives; the
reference, not a baseline of equal cost). The K models are drawn from the synthetic training pool
(experiments/common.py split); nothing is fitted on test models.

  python experiments/exp_cross_cpu.py [--data datasets/host_xeon] [--ks 5,10,20,50,100] [--draws 5]

Writes experiments/results/cross_cpu.csv, cross_cpu.md and cross_cpu.png.
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
import real_devices as R  # noqa: E402

RESULTS = c.DEFAULT_RESULTS
CSV = RESULTS / "cross_cpu.csv"
SUMMARY = RESULTS / "cross_cpu.md"
PLOT = RESULTS / "cross_cpu.png"
DEFAULT_TARGETS = c.ROOT / "datasets" / "host_xeon"
KS = (5, 10, 20, 50, 100)


def _seed(scenario: str, k: int, draw: int) -> int:
    import hashlib
    return int(hashlib.sha256(f"{scenario}|{k}|{draw}".encode()).hexdigest()[:8], 16)


def run_scenario(source, data: c.Data, scenario: str, ks, draws: int,
                 source_label: str = "committed AMD bundle") -> list[dict]:
    from latpred.predictors.predict import frame_rows
    ops = data.ops_of(scenario)
    groups = list(ops.groupby("model", sort=True))
    names = [str(n) for n, _ in groups]
    s = R.A.summarize(source, [frame_rows(g, source) for _, g in groups], names)
    y = np.array([float(g["e2e_ms"].iloc[0]) for _, g in groups])
    train_pool, test_syn = c.split_synthetic(data)
    is_real = np.array([not n.startswith("nas_") for n in names])
    idx = {n: i for i, n in enumerate(names)}
    pool = np.array(sorted(idx[n] for n in train_pool if n in idx))
    tests = {"real": np.flatnonzero(is_real),
             "synthetic_test": np.array(sorted(idx[n] for n in test_syn if n in idx))}
    out = []
    tag = {"source": source_label}
    # the reference: op-wise GBDT on the target's own synthetic training models
    # reduced grid (experiments/common.QUICK_GRIDS): minutes instead of ~6 per scenario
    ref = c.ours("gbdt", quick=True).fit(ops[ops["model"].isin(set(names[i] for i in pool))])
    p = ref.predict_models(ops).reindex(names).to_numpy(dtype=float)
    if np.isfinite(p).all():
        for tname, t in tests.items():
            out.append({**tag, "scenario": scenario, "test": tname, "k": len(pool), "draw": 0,
                        "method": "op-wise on target", "n_test": len(t), **R.metrics(p[t], y[t]),
                        "chosen": ""})
    for tname, t in tests.items():
        out.append({**tag, "scenario": scenario, "test": tname, "k": 0, "draw": 0,
                    "method": "unadapted", "n_test": len(t), **R.metrics(s.prior_e2e[t], y[t]),
                    "chosen": ""})
    for k in ks:
        for d in range(draws):
            rng = np.random.default_rng(_seed(scenario, k, d))
            train = np.sort(rng.choice(pool, k, replace=False))
            coef, _ = R.A.fit_coefficients(s.subset(train), y[train], seed=d)
            preds = {"latpred adapt": coef.predict(s), "scale": R.fit_scale(s, train, y)}
            for method, p in preds.items():
                for tname, t in tests.items():
                    out.append({**tag, "scenario": scenario, "test": tname, "k": k, "draw": d,
                                "method": method, "n_test": len(t), **R.metrics(p[t], y[t]),
                                "chosen": coef.candidate.label if method == "latpred adapt"
                                else ""})
    return out


def _runtime_pairs(data: c.Data) -> list[tuple[str, str]]:
    """(LiteRT scenario, ONNX Runtime scenario) on the same cores and precision."""
    from latpred.scenario import parse_scenario
    scens = {s: parse_scenario(s) for s in data.scenarios()}
    pairs = []
    for a, sa in scens.items():
        for b, sb in scens.items():
            if (sa.runtime == "litert" and sb.runtime == "onnxruntime"
                    and (sa.hardware, sa.precision) == (sb.hardware, sb.precision)
                    and "+opprof" in sa.runtime_version and "+opprof" in sb.runtime_version):
                pairs.append((a, b))
    return pairs


def runtime_comparison(data: c.Data, a: str, b: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per category and end to end, over the models measured under both: the median ratio of
    Σ latency (b / a), and the Spearman ρ of model latencies."""
    from scipy.stats import spearmanr
    per = {}
    for scen in (a, b):
        ops = data.ops_of(scen)
        cat = ops.groupby(["model", "category"])["latency_ms"].sum().unstack(fill_value=0.0)
        cat["end-to-end"] = c.e2e(ops)
        per[scen] = cat
    common = sorted(set(per[a].index) & set(per[b].index))
    kinds = {n: ("synthetic" if n.startswith("nas_") else "real") for n in common}
    rows = []
    for col in sorted(set(per[a].columns) | set(per[b].columns)):
        x = per[a].reindex(common)[col] if col in per[a] else pd.Series(0.0, index=common)
        y = per[b].reindex(common)[col] if col in per[b] else pd.Series(0.0, index=common)
        for kind in ("synthetic", "real"):
            m = [n for n in common if kinds[n] == kind and x[n] > 0 and y[n] > 0]
            if len(m) < 5:
                continue
            r = (y[m] / x[m]).to_numpy()
            rows.append({"pair": f"{a} -> {b}", "category": col, "kind": kind, "models": len(m),
                         "median_ratio": float(np.median(r)),
                         "iqr": f"{np.percentile(r, 25):.2f}–{np.percentile(r, 75):.2f}",
                         "share_of_b": float(y[m].sum() / per[b].reindex(m)["end-to-end"].sum()),
                         "spearman": float(spearmanr(x[m], y[m])[0])})
    return pd.DataFrame(rows), pd.DataFrame({"model": common})


def cross_runtime(data: c.Data, ks, draws: int) -> tuple[list[dict], pd.DataFrame]:
    """Each runtime's own op-wise bundle (GBDT, its 900 synthetic training models) adapted to the
    other runtime from K end-to-end timings."""
    rows, comps = [], []
    train_pool, _ = c.split_synthetic(data)
    for a, b in _runtime_pairs(data):
        comps.append(runtime_comparison(data, a, b)[0])
        for src, dst in ((a, b), (b, a)):
            ops = data.ops_of(src, train_pool)
            source = c.ours("gbdt", quick=True).fit(ops)
            rows += run_scenario(source, data, dst, ks, draws,
                                 source_label=f"op-wise bundle of {src}")
    return rows, (pd.concat(comps, ignore_index=True) if comps else pd.DataFrame())


def summary(df: pd.DataFrame, k: int = 10) -> str:
    lines = [f"| source | target scenario | test | unadapted | scale (K={k}) | latpred adapt (K={k}) | "
             "op-wise on target (900) |", "|---|---|---|---|---|---|---|"]
    for (src, scen, test), g in df.groupby(["source", "scenario", "test"], sort=True):
        def cell(method, kk=None):
            h = g[(g.method == method) & ((g.k == kk) if kk is not None else True)]
            if h.empty:
                return "–"
            return f"{h.mape.mean():.1f} % / ρ {h.spearman.mean():.3f}"
        lines.append(f"| {src} | `{scen}` | {test} | {cell('unadapted')} | {cell('scale', k)} | "
                     f"{cell('latpred adapt', k)} | {cell('op-wise on target')} |")
    return "\n".join(lines)


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    real = df[(df.test == "real") & (df.source == "committed AMD bundle")]
    scens = sorted(real.scenario.unique())
    fig, axes = plt.subplots(1, len(scens), figsize=(3.6 * len(scens), 3.2), squeeze=False)
    for ax, scen in zip(axes[0], scens):
        g = real[real.scenario == scen]
        for method, style in (("latpred adapt", "o-"), ("scale", "s--")):
            h = g[g.method == method].groupby("k").mape.mean()
            ax.plot(h.index, h.values, style, label=method)
        for method, ls in (("unadapted", ":"), ("op-wise on target", "-.")):
            h = g[g.method == method]
            if not h.empty:
                ax.axhline(h.mape.mean(), ls=ls, color="grey", label=method)
        ax.set_xscale("log")
        ax.set_title(scen.replace("host/", ""), fontsize=8)
        ax.set_xlabel("K end-to-end timings")
        ax.set_ylabel("MAPE % (104 real-world CNNs)")
        ax.set_ylim(0, min(60, max(5, 1.2 * g[g.method != "unadapted"].mape.max())))
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(c.ROOT))
    except ValueError:
        return str(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_TARGETS))
    ap.add_argument("--ks", default=",".join(map(str, KS)))
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--scenarios", nargs="*")
    ap.add_argument("--no-cross-runtime", dest="cross_runtime", action="store_false",
                    help="skip LiteRT <-> ONNX Runtime (their own op-wise bundles adapted)")
    args = ap.parse_args(argv)
    from latpred.predictors import LatencyPredictor
    source = LatencyPredictor.load(R.BUNDLE)
    data = c.load_data(Path(args.data))
    scenarios = args.scenarios or data.scenarios()
    if not scenarios:
        print(f"no profile stores under {args.data}", file=sys.stderr)
        return 2
    ks = [int(v) for v in args.ks.split(",") if v]
    from tqdm import tqdm
    rows = []
    for scen in tqdm(scenarios, desc="scenarios", unit="scenario"):
        rows += run_scenario(source, data, scen, ks, args.draws)
    xr_rows, comparison = cross_runtime(data, ks, args.draws) if args.cross_runtime else ([], None)
    df = pd.DataFrame(rows + xr_rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = CSV.with_suffix(".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, CSV)
    text = ["# Another CPU and another runtime from K end-to-end timings", "",
            f"Source: `{R.BUNDLE.relative_to(c.ROOT)}` (AMD EPYC, LiteRT, 1 core, fp32). "
            f"Targets: the stores under `{_shown(Path(args.data))}`. "
            f"Each cell: MAPE / Spearman ρ, mean of {args.draws} draws of the K models.", "",
            summary(df, 10), ""]
    if comparison is not None and not comparison.empty:
        comparison.to_csv(RESULTS / "cross_runtime_categories.csv", index=False)
        text += ["## LiteRT vs ONNX Runtime on the same models and cores", "",
                 "Median over models of Σ latency of a category under ONNX Runtime ÷ the same "
                 "under LiteRT (models where both are > 0), its IQR, the category's share of "
                 "ONNX Runtime's end-to-end time, and the Spearman ρ of the per-model sums.", "",
                 c.md_table(comparison, 3), ""]
    c.atomic_write_text(SUMMARY, "\n".join(text))
    plot(df, PLOT)
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())


# -- run_all's interface ---------------------------------------------------------------------------
EXPERIMENT = "cross_cpu"
FULL_ONLY = True       # run_all --quick skips it (it reads the other store folder)


def run(data, out, quick: bool) -> None:
    """``data`` (the primary folder) unused: the targets are the stores of DEFAULT_TARGETS."""
    argv = ["--ks", "10", "--draws", "2"] if quick else []
    if main(argv) != 0:
        raise RuntimeError("exp_cross_cpu found no target stores")


def readme(out) -> str:
    if not SUMMARY.exists():
        return ("## Another CPU and another runtime\n\nNot run yet: "
                "`experiments/exp_cross_cpu.py`.\n")
    body = SUMMARY.read_text().split("\n", 1)[1].replace("\n## ", "\n### ")
    return ("## Another CPU and another runtime from K end-to-end timings\n" + body
            + "\n![cross cpu](results/cross_cpu.png)\n")
