"""Real devices, decisions: do K-shot adapted latpred predictions of NAS-Bench-201 networks support
the decisions the seeds make with measured latency?

With K (default 10) random archs per device column (the draws of exp_real_devices.py: same seeds),
latpred is adapted and every other arch of the column is predicted; then

1. rank correlation (Spearman) between every pair of device columns, measured vs measured and
   predicted vs predicted, on the archs the two columns share minus both columns' K training
   archs; within platform (same source and kind, same input) vs across; MonoNAS's (seed 004)
   claim that within-platform SRCC > 0.9;
2. FRM, FRM_E, FRM_Q (seed 001 eqs. 1, 5, 6) of the networks on the Raspberry Pi 5
   (HW-NAS-Bench-360, cifar100, with its energy and accuracy), from measured and from predicted
   latency: Spearman of the scores, top-10 / top-1 % overlap, FRM-accuracy Pareto front F1;
3. the oracle NAS of seed 003 §S1.3 on the Pi 5 columns with the real cifar100 accuracies: at
   quantiles of measured latency, the predictor-driven pick vs the measured-latency pick.

Contrast baselines fitted on the same K archs: ``count`` (5-number least squares on per-cell op
counts) and ``flops`` (a + b * FLOPs), as in exp_real_devices.py.

    .venv/bin/python experiments/exp_real_decisions.py [--k 10] [--draws 5] [--data PATH]
        [--tasks cifar10,cifar100,ninapro,darcy]

Writes experiments/results/real_decisions.md, real_decisions.csv (headline numbers) and
real_decisions_{pairs,frm,oracle}.csv, real_decisions_{rho,frm,oracle}.png.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_devices as R  # noqa: E402
from exp_real_devices import designs_of, draw_seed  # noqa: E402  (same draws as that experiment)

from latpred.metrics.frm import frm_scores, model_costs, pareto_front, spearman  # noqa: E402
from latpred.metrics.selection import selection_at_limit  # noqa: E402
from latpred.sources import nb201  # noqa: E402

RESULTS = R.ROOT / "experiments" / "results"
PREFIX = "real_decisions"
METHODS = ("latpred", "count", "flops")
TASKS = ("cifar10", "cifar100", "ninapro", "darcy")
PI5 = ("pi5_litert_cifar100", "pi5_onnx_cifar100", "pi5_torchmobile_cifar100")
# input the network sees: cifar10 and cifar100 differ only in the classifier
INPUT = {"cifar10": "32x32x3", "cifar100": "32x32x3", "ninapro": "52x16x1", "darcy": "88x88x1"}
# device class in MonoNAS's sense (mobile / desktop CPU / desktop GPU / ...), from the CARD
PLATFORM = {"pixel3": "mobile cpu", "raspi4": "board cpu", "gold_6226": "desktop cpu",
            "gold_6240": "desktop cpu", "silver_4114": "desktop cpu",
            "silver_4210r": "desktop cpu", "1080ti_1": "desktop gpu", "2080ti_1": "desktop gpu",
            "titan_rtx_1": "desktop gpu", "titanx_1": "desktop gpu", "titanxp_1": "desktop gpu",
            "latbench_sd855_cpu": "mobile cpu", "latbench_sd855_gpu": "mobile gpu",
            "latbench_sd855_dsp": "mobile dsp", "latbench_jetson_nano_fp32": "board gpu",
            "latbench_jetson_nano_fp16": "board gpu", "latbench_edgetpu": "edge tpu",
            "latbench_i7_7820x": "desktop cpu", "latbench_gtx1080ti": "desktop gpu",
            "hwnasbench_jetson_tx2": "board gpu", "hwnasbench_edgetpu": "edge tpu"}
ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|" \
          "nor_conv_3x3~2|"
MIN_SHARED = 50          # fewer shared archs: no correlation reported
TOP = 10
QUANTILES = np.round(np.linspace(0.05, 0.95, 19), 2)


# -- small helpers ----------------------------------------------------------------------------
def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    write(tmp)
    os.replace(tmp, path)


def save_csv(df: pd.DataFrame, path: Path) -> None:
    _atomic(path, lambda p: df.to_csv(p, index=False))


def save_fig(fig, path: Path) -> None:
    _atomic(path, lambda p: fig.savefig(p, dpi=120))


def md_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A pipe table (no tabulate in the venv)."""
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "" if not np.isfinite(v) else f"{v:.{digits}f}"
        return str(v)
    lines = ["| " + " | ".join(map(str, df.columns)) + " |",
             "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def device_of(col: R.Column) -> str:
    """The physical device (a HW-NAS-Bench-360 column names device_runtime_task)."""
    return col.name.split("_")[0] if col.source == "hwnasbench360" else col.name


def platform_of(col: R.Column) -> str:
    if col.source == "hwnasbench360":
        return "board cpu" if device_of(col) == "pi5" else "mobile cpu"
    return PLATFORM[col.name]


def rho(a: np.ndarray, b: np.ndarray) -> float:
    r = spearman(a, b)
    return np.nan if r is None else r


def provenance() -> str:
    import hashlib
    files = {"bundle": R.BUNDLE, "adapt.py": R.ROOT / "latpred" / "predictors" / "adapt.py",
             "real_devices.py": R.ROOT / "experiments" / "real_devices.py"}
    return ", ".join(f"{k} sha256 {hashlib.sha256(v.read_bytes()).hexdigest()[:12]}"
                     for k, v in files.items())


# -- predictions ------------------------------------------------------------------------------
def predict_all(columns, sums_by_task, k: int, draws: int) -> dict:
    """{column: {"train": [idx per draw], method: [pred per draw], "chosen": [...]}}."""
    from tqdm import tqdm
    out = {}
    for col in tqdm(columns, desc="fit K=%d" % k, unit="column"):
        sums = {e: s.subset(col.index) for e, s in sums_by_task[col.task].items()}
        counts, flops = designs_of(col, sums)
        y = col.latency_ms
        rec = {"train": [], "chosen": [], **{m: [] for m in METHODS}}
        for d in range(draws):
            rng = np.random.default_rng(draw_seed(col.name, k, d))
            train = np.sort(rng.choice(len(y), k, replace=False))
            lat, chosen = R.fit_latpred(sums, train, y)
            rec["train"].append(train)
            rec["chosen"].append(chosen)
            rec["latpred"].append(lat)
            rec["count"].append(R.fit_linear(counts, train, y)[0])
            rec["flops"].append(R.fit_linear(flops, train, y)[0])
        out[col.name] = rec
    return out


# -- 1. pairwise rank correlation -------------------------------------------------------------
def pair_relation(a: R.Column, b: R.Column) -> str:
    if a.source == b.source == "hwnasbench360" and a.name.rsplit("_", 1)[0] == \
            b.name.rsplit("_", 1)[0]:
        return "same device+runtime, other task"
    if INPUT[a.task] != INPUT[b.task]:
        return "other input"
    if a.source == b.source and a.kind == b.kind:
        return "within platform"
    return "across platform"


def pairs_table(columns, preds, draws: int) -> pd.DataFrame:
    from tqdm import tqdm
    rows = []
    todo = [(i, j) for i in range(len(columns)) for j in range(i + 1, len(columns))]
    for i, j in tqdm(todo, desc="column pairs", unit="pair", mininterval=5):
        a, b = columns[i], columns[j]
        _, ia, ib = np.intersect1d(a.index, b.index, return_indices=True)
        row = {"a": a.name, "b": b.name, "source_a": a.source, "source_b": b.source,
               "kind_a": a.kind, "kind_b": b.kind, "task_a": a.task, "task_b": b.task,
               "relation": pair_relation(a, b),
               "same_platform_class": platform_of(a) == platform_of(b),
               "platform": f"{a.source}/{a.kind}" if pair_relation(a, b) == "within platform"
               else "", "n_shared": len(ia)}
        if len(ia) < MIN_SHARED:
            rows.append(row)
            continue
        row["rho_measured_all"] = rho(a.latency_ms[ia], b.latency_ms[ib])
        for d in range(draws):
            # score on archs neither column was fitted on
            keep = ~np.isin(ia, preds[a.name]["train"][d]) & ~np.isin(ib, preds[b.name]["train"][d])
            ka, kb = ia[keep], ib[keep]
            row[f"rho_measured_d{d}"] = rho(a.latency_ms[ka], b.latency_ms[kb])
            for m in ("latpred", "count"):
                row[f"rho_{m}_d{d}"] = rho(preds[a.name][m][d][ka], preds[b.name][m][d][kb])
        for m in ("latpred", "count"):
            err = [row[f"rho_{m}_d{d}"] - row[f"rho_measured_d{d}"] for d in range(draws)]
            row[f"rho_{m}"] = row[f"rho_{m}_d0"]
            row[f"dev_{m}"] = err[0]                      # predicted - measured, draw 0
            row[f"absdev_{m}_mean"] = float(np.mean(np.abs(err)))
        row["rho_measured"] = row["rho_measured_d0"]
        rows.append(row)
    return pd.DataFrame(rows)


def pairs_summary(pairs: pd.DataFrame) -> pd.DataFrame:
    p = pairs.dropna(subset=["rho_measured"])
    groups = [("within platform (same source+kind, same input)", p.relation == "within platform"),
              ("across platform (same input)", p.relation == "across platform"),
              ("same device+runtime, other task", p.relation == "same device+runtime, other task"),
              ("other input", p.relation == "other input"),
              ("same device class, any source (same input)",
               p.same_platform_class & p.relation.isin(["within platform", "across platform"]))]
    for plat in sorted(set(p.platform) - {""}):
        for task_pair in sorted(set(zip(p.task_a[p.platform == plat], p.task_b[p.platform == plat]))):
            m = (p.platform == plat) & (p.task_a == task_pair[0]) & (p.task_b == task_pair[1])
            groups.append((f"  within {plat} ({task_pair[0]})" if task_pair[0] == task_pair[1]
                           else f"  within {plat} ({task_pair[0]}/{task_pair[1]})", m))
    rows = []
    for label, m in groups:
        g = p[m]
        if not len(g):
            continue
        rows.append({"pairs": label, "n": len(g),
                     "no pred ρ": int(g.rho_latpred.isna().sum()),
                     "meas ρ median": g.rho_measured.median(),
                     "meas share>0.9": (g.rho_measured > 0.9).mean(),
                     "latpred ρ median": g.rho_latpred.median(),
                     "latpred share>0.9": (g.rho_latpred > 0.9).mean(),
                     "|Δρ| latpred": g.dev_latpred.abs().mean(),
                     "|Δρ| latpred, 5 draws": g.absdev_latpred_mean.mean(),
                     "|Δρ| count": g.dev_count.abs().mean()})
    return pd.DataFrame(rows)


def plot_rho(columns, pairs: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [c.name for c in columns]
    pos = {n: i for i, n in enumerate(names)}
    n = len(names)
    both = np.full((n, n), np.nan)
    dev = np.full((n, n), np.nan)
    for r in pairs.itertuples():
        if not np.isfinite(getattr(r, "rho_measured", np.nan)):
            continue
        i, j = sorted((pos[r.a], pos[r.b]))
        both[j, i] = r.rho_measured          # lower: measured
        both[i, j] = r.rho_latpred           # upper: predicted
        dev[j, i] = r.rho_latpred - r.rho_measured
    fig, axes = plt.subplots(1, 2, figsize=(20, 9.5))
    im0 = axes[0].imshow(both, vmin=0, vmax=1, cmap="viridis")
    axes[0].set_title("Spearman ρ: lower = measured vs measured, upper = latpred K=10 (draw 0)")
    im1 = axes[1].imshow(dev, vmin=-0.5, vmax=0.5, cmap="RdBu_r")
    axes[1].set_title("predicted ρ − measured ρ (latpred K=10, draw 0)")
    cuts = [i for i in range(1, n) if (columns[i].source, columns[i].task)
            != (columns[i - 1].source, columns[i - 1].task)]
    for ax in axes:
        ax.set_xticks(range(n), names, rotation=90, fontsize=6)
        ax.set_yticks(range(n), names, fontsize=6)
        for c in cuts:
            ax.axhline(c - 0.5, color="w", lw=0.8)
            ax.axvline(c - 0.5, color="w", lw=0.8)
    fig.colorbar(im0, ax=axes[0], fraction=0.046)
    fig.colorbar(im1, ax=axes[1], fraction=0.046)
    fig.tight_layout()
    save_fig(fig, path)
    plt.close(fig)


# -- 2. FRM on the Pi 5 -----------------------------------------------------------------------
def arch_costs(col: R.Column) -> tuple[np.ndarray, np.ndarray]:
    """FLOPs (MACs) and memory of every arch of the column, on the "all" graph (the network as
    NB201 defines it; identical on both sides of every comparison)."""
    shape, classes = R.task_network(col.task)
    c = [model_costs(nb201.nb201_graph(a, shape, classes)) for a in col.arch]
    return (np.array([x["flops"] for x in c], float), np.array([x["memory_bytes"] for x in c],
                                                               float))


def _front_f1(pred_front: np.ndarray, meas_front: np.ndarray) -> tuple[float, float, float]:
    tp = float((pred_front & meas_front).sum())
    prec = tp / max(pred_front.sum(), 1)
    rec = tp / max(meas_front.sum(), 1)
    return prec, rec, (2 * prec * rec / (prec + rec) if prec + rec else 0.0)


def baseline_of(archs) -> int:
    """The all-3x3 network (the largest) where present; ranks and rho do not depend on it."""
    archs = list(archs)
    return archs.index(ALL_3X3) if ALL_3X3 in archs else 0


def frm_agreement(lat_pred, lat_meas, flops, mem, energy, acc_frac, b: int = 0) -> dict:
    """How well FRM / FRM_E / FRM_Q from predicted latency agree with those from measured."""
    sp = frm_scores(flops, lat_pred, mem, b, energy)
    sm = frm_scores(flops, lat_meas, mem, b, energy)
    sp["frm_q"] = sp["frm"] / (1 - acc_frac)
    sm["frm_q"] = sm["frm"] / (1 - acc_frac)
    out = {"n": len(lat_meas), "rho_latency": rho(lat_pred, lat_meas),
           "rho_frm_flops_measured": rho(sm["frm"], flops)}
    top_pct = max(1, len(lat_meas) // 100)
    for m in ("frm", "frm_e", "frm_q"):
        p, q = sp[m].to_numpy(), sm[m].to_numpy()
        out[f"rho_{m}"] = rho(p, q)
        for t, lab in ((TOP, "top10"), (top_pct, "top1pct")):
            out[f"{lab}_{m}"] = len(set(np.argsort(p, kind="stable")[:t])
                                    & set(np.argsort(q, kind="stable")[:t])) / t
        if m != "frm_q":        # FRM_Q folds accuracy in already
            pf, mf = pareto_front(p, acc_frac), pareto_front(q, acc_frac)
            out[f"front_size_{m}"] = int(mf.sum())
            (out[f"front_prec_{m}"], out[f"front_rec_{m}"],
             out[f"front_f1_{m}"]) = _front_f1(pf, mf)
    return out


def frm_experiment(columns, preds, draws: int) -> pd.DataFrame:
    from tqdm import tqdm
    by_name = {c.name: c for c in columns}
    rows = []
    for name in tqdm([n for n in PI5 if n in by_name], desc="FRM", unit="column"):
        col = by_name[name]
        flops, mem = arch_costs(col)
        live = np.array([not nb201.dead_cell(nb201.parse_arch(a)) for a in col.arch])
        acc = col.accuracy / 100.0
        others = [by_name[o] for o in PI5 if o != name and o in by_name
                  and np.array_equal(by_name[o].index, col.index)]
        for d in range(draws):
            test = np.setdiff1d(np.arange(len(col.index)), preds[name]["train"][d])
            lats = {m: np.maximum(preds[name][m][d], 1e-6) for m in METHODS}  # count may be <= 0
            if d == 0:   # seed 001 §4.2 framework invariance: another runtime's measurement
                lats.update({f"measured on {o.name.split('_')[1]}": o.latency_ms for o in others})
            for subset, mask in (("all", np.ones(len(col.index), bool)), ("live cells", live)):
                t = test[mask[test]]
                for m, lat in lats.items():
                    rows.append({"column": name, "draw": d, "subset": subset, "method": m,
                                 **frm_agreement(lat[t], col.latency_ms[t], flops[t], mem[t],
                                                 col.energy_mj[t], acc[t],
                                                 baseline_of(np.asarray(col.arch)[t]))})
    return pd.DataFrame(rows)


def plot_frm(columns, preds, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    col = next(c for c in columns if c.name == PI5[0])
    flops, mem = arch_costs(col)
    test = np.setdiff1d(np.arange(len(col.index)), preds[col.name]["train"][0])
    b = baseline_of(np.asarray(col.arch)[test])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, m in zip(axes, ("latpred", "count")):
        sp = frm_scores(flops[test], np.maximum(preds[col.name][m][0][test], 1e-6), mem[test], b)
        sm = frm_scores(flops[test], col.latency_ms[test], mem[test], b)
        sc = ax.scatter(sm["frm"], sp["frm"], s=3, alpha=0.4, c=col.accuracy[test], cmap="viridis")
        lim = [min(sm["frm"].min(), sp["frm"].min()), max(sm["frm"].max(), sp["frm"].max())]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("FRM from measured latency")
        ax.set_ylabel(f"FRM from {m} K=10 latency")
        ax.set_title(f"{col.name}, draw 0: ρ = {rho(sp['frm'], sm['frm']):.3f}", fontsize=9)
        ax.grid(alpha=0.3)
        fig.colorbar(sc, ax=ax, label="cifar100 accuracy (%)")
    fig.tight_layout()
    save_fig(fig, path)
    plt.close(fig)


# -- 3. oracle NAS under a latency limit ------------------------------------------------------
def oracle_experiment(columns, preds, draws: int) -> pd.DataFrame:
    from tqdm import tqdm
    by_name = {c.name: c for c in columns}
    rows = []
    todo = [(n, m, d) for n in PI5 if n in by_name for m in METHODS for d in range(draws)]
    for name, m, d in tqdm(todo, desc="oracle NAS", unit="fit"):
        col = by_name[name]
        test = np.setdiff1d(np.arange(len(col.index)), preds[name]["train"][d])
        p, y, acc = preds[name][m][d][test], col.latency_ms[test], col.accuracy[test]
        names = [str(i) for i in col.index[test]]
        rel = (p - y) / y
        for q in QUANTILES:
            limit = float(np.quantile(y, q))
            s = selection_at_limit(names, p, y, limit, acc)
            a = None if s["assumed_best"] is None else names.index(s["assumed_best"])
            e_acc = s["effective_best_accuracy"]
            # seed 003: re-measure in accuracy order until one truly fits
            fp = (p <= limit) & (y > limit)
            tries = (int((fp & (acc > e_acc)).sum()) + 1) if e_acc is not None else np.nan
            rows.append({"column": name, "method": m, "draw": d, "quantile": q,
                         "limit_ms": limit, "truly_fit": s["truly_fit"],
                         "predicted_fit": s["predicted_fit"],
                         "false_positives": s["false_positives"],
                         "false_negatives": s["false_negatives"],
                         "ground_truth_acc": s["ground_truth_best_accuracy"],
                         "assumed_acc": s["assumed_best_accuracy"],
                         "effective_acc": e_acc,
                         "violates": bool(a is not None and y[a] > limit),
                         "assumed_latency_over_limit_pct":
                             (100 * (y[a] / limit - 1) if a is not None and y[a] > limit
                              else 0.0),
                         "missed_acc": s["missed_accuracy"],
                         "overclaimed_acc": s["overclaimed_accuracy"],
                         "remeasured": tries, "nothing_found": s["nothing_found"],
                         "median_rel_err_pct": 100 * float(np.median(rel)),
                         "mape_pct": 100 * float(np.mean(np.abs(rel)))})
    return pd.DataFrame(rows)


def oracle_summary(o: pd.DataFrame) -> pd.DataFrame:
    g = o.groupby(["column", "method"], sort=False)
    out = g.agg(limits=("quantile", "size"), violates=("violates", "mean"),
                missed_acc=("missed_acc", "mean"), missed_acc_max=("missed_acc", "max"),
                overclaimed_acc=("overclaimed_acc", "mean"), remeasured=("remeasured", "mean"),
                fp=("false_positives", "mean"), fn=("false_negatives", "mean"),
                nothing=("nothing_found", "sum"), bias=("median_rel_err_pct", "mean"),
                mape=("mape_pct", "mean")).reset_index()
    out["violates"] *= 100
    return out


def plot_oracle(o: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = list(dict.fromkeys(o.column))
    fig, axes = plt.subplots(2, len(cols), figsize=(4.2 * len(cols), 6.5), squeeze=False)
    for j, c in enumerate(cols):
        for m, color in zip(METHODS, ("C0", "C1", "C2")):
            d = o[(o.column == c) & (o.method == m)].groupby("quantile")
            axes[0, j].plot(d.missed_acc.mean().index, d.missed_acc.mean(), marker="o", ms=3,
                            color=color, label=m)
            axes[1, j].plot(d.violates.mean().index, 100 * d.violates.mean(), marker="o", ms=3,
                            color=color, label=m)
        axes[0, j].set_title(c, fontsize=9)
        axes[0, j].set_ylabel("missed accuracy (pp, mean of draws)")
        axes[1, j].set_ylabel("assumed best over the limit (% of draws)")
        axes[1, j].set_xlabel("latency limit (quantile of measured latency)")
        for ax in axes[:, j]:
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    save_fig(fig, path)
    plt.close(fig)


# -- report -----------------------------------------------------------------------------------
def report(args, columns, preds, pairs, psum, frm, osum, seconds: float) -> tuple[str, pd.DataFrame]:
    k = args.k
    headline = []
    within = pairs[pairs.relation == "within platform"].dropna(subset=["rho_measured"])
    across = pairs[pairs.relation == "across platform"].dropna(subset=["rho_measured"])
    for lab, g in (("within platform", within), ("across platform", across)):
        headline += [
            {"section": "rho", "what": f"{lab}: median measured ρ", "method": "measured",
             "value": g.rho_measured.median()},
            {"section": "rho", "what": f"{lab}: share of pairs with ρ > 0.9",
             "method": "measured", "value": (g.rho_measured > 0.9).mean()},
            {"section": "rho", "what": f"{lab}: share of pairs with ρ > 0.9",
             "method": "latpred", "value": (g.rho_latpred > 0.9).mean()},
            {"section": "rho", "what": f"{lab}: mean |pred ρ − meas ρ|", "method": "latpred",
             "value": g.dev_latpred.abs().mean()},
            {"section": "rho", "what": f"{lab}: mean |pred ρ − meas ρ|", "method": "count",
             "value": g.dev_count.abs().mean()}]
    fs = frm.groupby(["column", "subset", "method"], sort=False).mean(numeric_only=True)
    for (c, sub, m), r in fs.iterrows():
        for key in ("rho_frm", "rho_frm_e", "rho_frm_q", "top10_frm", "top1pct_frm",
                    "front_f1_frm"):
            headline.append({"section": "frm", "what": f"{c} [{sub}] {key}", "method": m,
                             "value": r[key]})
    for r in osum.itertuples():
        for key in ("missed_acc", "violates", "overclaimed_acc", "remeasured"):
            headline.append({"section": "oracle", "what": f"{r.column} {key}",
                             "method": r.method, "value": getattr(r, key)})
    head = pd.DataFrame(headline)

    const = sorted({n for n in preds for d, v in enumerate(preds[n]["latpred"])
                    if np.ptp(v) == 0})
    chosen = pd.Series([c for n in preds for c in preds[n]["chosen"]]).value_counts()
    text = [f"# Real devices: decisions from K = {k} adapted predictions", "",
            f"Command: `.venv/bin/python experiments/exp_real_decisions.py --k {k} "
            f"--draws {args.draws}"
            + ("" if args.tasks == ",".join(TASKS) else f" --tasks {args.tasks}")
            + f"` ({seconds / 60:.1f} min on 2 shared cores). {len(columns)} device columns of "
            f"../shared/data/real-devices (tasks {', '.join(sorted({c.task for c in columns}))})."
            f" Per column and draw, K = {k} random archs (the seeds of exp_real_devices.py) fit "
            "latpred (the host bundle adapted, `fit_latpred`), `count` (intercept + per-cell op "
            "counts) and `flops` (a + b·FLOPs); everything below is scored on archs not used "
            "for fitting. latpred candidates chosen by CV: "
            + ", ".join(f"{i} ×{v}" for i, v in chosen.items()) + ". "
            + (f"Constant latpred prediction (the fit kept only the overhead) in some draw: "
               f"{', '.join(const)}; ρ with it is undefined (*no pred ρ*). " if const else "")
            + f"Code: {provenance()}.", "",
            "## 1. Rank correlation between device columns", "",
            "Spearman ρ between two columns on the archs both measured, minus both columns' K "
            "training archs (draw 0). *meas*: measured vs measured; *latpred*: each column's "
            "K = 10 adapted prediction vs the other's; |Δρ|: mean |predicted ρ − measured ρ| "
            "(draw 0; also the mean over the 5 draws; `count` for the naive baseline). *Within "
            "platform*: same source and processor kind and same network input (the HELP desktop "
            "GPUs, HELP CPUs, LatBench GPUs/TPUs, the Pi 5/Pixel runtimes); *other task*: the "
            "same HW-NAS-Bench-360 device+runtime on a different task; *same device class*: "
            "MonoNAS's sense (desktop CPU, desktop GPU, mobile CPU, board GPU, ...) over "
            "sources.", "", md_table(psum), ""]
    w9 = (within.rho_measured > 0.9).mean()
    text += [f"MonoNAS (seed 004) claims SRCC > 0.9 within a platform: {100 * w9:.0f} % of the "
             f"{len(within)} within-platform pairs (same source and kind) have measured ρ > 0.9 "
             f"(median {within.rho_measured.median():.3f}); across platforms "
             f"{100 * (across.rho_measured > 0.9).mean():.0f} % of {len(across)} "
             f"(median {across.rho_measured.median():.3f}). Heatmap: `{PREFIX}_rho.png`; every "
             f"pair in `{PREFIX}_pairs.csv`.", "",
             f"Predicted ρ (latpred) has median {within.rho_latpred.median():.3f} within and "
             f"{across.rho_latpred.median():.3f} across platforms, against measured "
             f"{within.rho_measured.median():.3f} / {across.rho_measured.median():.3f}"
             + (": predicted columns look more alike than the devices are (every adapted "
                "prediction keeps part of the host prior's ranking)"
                if across.rho_latpred.median() > across.rho_measured.median() + 0.02 else "")
             + f". Mean |Δρ| within {within.dev_latpred.abs().mean():.3f} latpred vs "
             f"{within.dev_count.abs().mean():.3f} count, across "
             f"{across.dev_latpred.abs().mean():.3f} vs {across.dev_count.abs().mean():.3f}.", ""]
    worst = within.assign(ad=within.dev_latpred.abs()).nlargest(8, "ad")
    text += ["Within-platform pairs where the predicted ρ is furthest from the measured one:", "",
             md_table(worst[["a", "b", "rho_measured", "rho_latpred", "rho_count"]]), ""]
    text += ["## 2. FRM on the Raspberry Pi 5 (HW-NAS-Bench-360, cifar100)", "",
             "FRM = (r_flops·r_latency·r_memory)^(1/3), FRM_E = (r_flops·r_latency·r_memory·"
             "r_energy)^(1/4), FRM_Q = FRM / (1 − accuracy) (seed 001 eqs. 1, 5, 6; "
             "`latpred.metrics.frm.frm_scores`). FLOPs = MACs and memory = weights + peak "
             "activations of the NB201 network (all edges), energy = the measured energy_mj, "
             "accuracy = the cifar100 accuracy of the data; only the latency differs between the "
             "two sides (predicted latency clipped at 1e-6 ms, a count fit can go negative). "
             "Baseline: the all-3×3 network (ranks and ρ do not depend on it). Columns: Spearman ρ of the two "
             "scores; top-10 / top-1 % = share of the 10 (1 %) lowest-score archs by measured "
             "latency that are also lowest by predicted; front F1 = F1 of the (FRM lower, "
             "accuracy higher) Pareto front from predicted latency vs from measured (seed 000 "
             "Table 6's usage); ρ(FRM, FLOPs) shows how far FRM is from a FLOPs ranking. Mean "
             "of the draws; *live cells* drops archs whose cell has no input→output path "
             "(constant networks the converter prunes to ~0 ms). *measured on X*: FRM from "
             "another runtime's measured latency on the same Pi 5 (seed 001 §4.2 framework "
             "invariance), not a predictor.", ""]
    ft = fs.reset_index()[["column", "subset", "method", "n", "rho_latency", "rho_frm",
                           "rho_frm_e", "rho_frm_q", "top10_frm", "top1pct_frm", "top10_frm_e",
                           "front_size_frm", "front_f1_frm", "front_f1_frm_e",
                           "rho_frm_flops_measured"]]
    ft = ft.rename(columns={"rho_latency": "ρ lat", "rho_frm": "ρ FRM", "rho_frm_e": "ρ FRM_E",
                            "rho_frm_q": "ρ FRM_Q", "top10_frm": "top-10 FRM",
                            "top1pct_frm": "top-1% FRM", "top10_frm_e": "top-10 FRM_E",
                            "front_size_frm": "front (meas)", "front_f1_frm": "front F1 FRM",
                            "front_f1_frm_e": "front F1 FRM_E",
                            "rho_frm_flops_measured": "ρ(FRM meas, FLOPs)"})
    ft["n"] = ft["n"].round().astype(int)
    ft["front (meas)"] = ft["front (meas)"].round(1)
    main = ft[ft.subset == "all"].drop(columns="subset")
    live = ft[(ft.subset != "all") & ft.method.isin(["latpred", "count"])]
    lp = fs.xs(("all", "latpred"), level=(1, 2)) if ("all" in fs.index.get_level_values(1)) \
        else None
    text += [md_table(main), ""]
    if lp is not None and len(lp):
        text += [f"Latency barely moves the FRM ranking on this space: FRM from measured latency "
                 f"already has ρ {lp.rho_frm_flops_measured.min():.3f}–"
                 f"{lp.rho_frm_flops_measured.max():.3f} with FLOPs alone, so ρ FRM is ~1 for "
                 f"any latency that tracks FLOPs (count and flops too). The decision-relevant "
                 f"numbers are the top-10 / top-1 % overlap and the front F1: latpred "
                 f"{lp.top10_frm.min():.2f}–{lp.top10_frm.max():.2f} top-10, front F1 "
                 f"{lp.front_f1_frm.min():.2f}–{lp.front_f1_frm.max():.2f} (FRM), "
                 f"{lp.front_f1_frm_e.min():.2f}–{lp.front_f1_frm_e.max():.2f} (FRM_E, the "
                 f"measured energy damps the latency term). FRM_Q grows with accuracy (see "
                 f"`latpred.metrics.frm`), so only its ρ is given.", ""]
    text += ["Same, live cells only (latpred and count):", "", md_table(live), "",
             f"Per draw: `{PREFIX}_frm.csv`; scatter `{PREFIX}_frm.png`.", ""]
    text += ["## 3. Oracle NAS under a latency limit (seed 003 §S1.3)", "",
             "Pi 5 columns, cifar100 accuracy of the data (%), the archs not used for fitting. "
             f"Limits: the {len(QUANTILES)} quantiles {QUANTILES[0]:.2f}..{QUANTILES[-1]:.2f} of "
             "the measured latency. `selection_at_limit`: the assumed best = most accurate arch "
             "whose *predicted* latency fits; effective best = most accurate that fits by both "
             "(after re-measuring the assumed ones); ground truth = most accurate that fits by "
             "*measured* latency. *violates* = % of (limit, draw) where the assumed best's "
             "measured latency is over the limit; *missed* = acc(ground truth) − acc(effective "
             "best) in accuracy points (what false negatives cost; max over limits and draws "
             "beside it); *overclaimed* = acc(assumed) − acc(effective) (what false positives "
             "promise); *re-measured* = archs measured until one truly fits (1 = the first pick "
             "fits); FP / FN = mean counts of false positives / negatives; *nothing* = limits "
             "where the predictor leaves no truly fitting arch; *bias* / *MAPE*: median signed / "
             "mean absolute relative error of the predicted latency over the searched archs. "
             "Means over limits and draws (missed / overclaimed over the limits where the "
             "predictor found a fitting arch).", "",
             md_table(osum.rename(columns={"missed_acc": "missed", "missed_acc_max": "missed max",
                                           "overclaimed_acc": "overclaimed",
                                           "remeasured": "re-measured", "fp": "FP", "fn": "FN",
                                           "bias": "bias %", "mape": "MAPE %"}),
                      digits=2), "", f"Per limit: `{PREFIX}_oracle.csv`; curves "
             f"`{PREFIX}_oracle.png`.", "",
             "Why violations are frequent: the assumed best is the most accurate arch believed "
             "to fit, usually one just under the limit, and the search picks it precisely when "
             "its latency is underestimated (winner's curse); a predictor biased upward "
             "(positive *bias*) violates rarely and misses accuracy instead. Re-measuring the "
             "pick (seed 003's re-validation) turns a violation into *re-measured* − 1 extra "
             "measurements.", ""]
    return "\n".join(text) + "\n", head


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=10, help="adaptation archs per column")
    ap.add_argument("--draws", type=int, default=5, help="random draws of the K archs")
    ap.add_argument("--data", default=str(R.DATA), help="the real-device data folder")
    ap.add_argument("--tasks", default=",".join(TASKS), help="tasks whose columns are used")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    from latpred.predictors import LatencyPredictor
    tasks = [t for t in args.tasks.split(",") if t]
    columns = [c for c in R.load_columns(Path(args.data)) if c.task in tasks]
    # order: source, then task, so that blocks of the heatmap are platforms
    order = {"help": 0, "latbench": 1, "hwnasbench360": 2}
    columns.sort(key=lambda c: (order[c.source], TASKS.index(c.task), c.name.split("_")[0]
                                if c.source == "hwnasbench360" else "", c.kind))
    source = LatencyPredictor.load(R.BUNDLE)
    archs = R.all_archs(Path(args.data))
    sums = {t: {e: R.summaries(source, t, e, archs) for e in R.EDGES}
            for t in dict.fromkeys(c.task for c in columns)}
    preds = predict_all(columns, sums, args.k, args.draws)
    pairs = pairs_table(columns, preds, args.draws)
    save_csv(pairs, RESULTS / f"{PREFIX}_pairs.csv")
    psum = pairs_summary(pairs)
    plot_rho(columns, pairs, RESULTS / f"{PREFIX}_rho.png")
    frm = frm_experiment(columns, preds, args.draws)
    save_csv(frm, RESULTS / f"{PREFIX}_frm.csv")
    plot_frm(columns, preds, RESULTS / f"{PREFIX}_frm.png")
    oracle = oracle_experiment(columns, preds, args.draws)
    save_csv(oracle, RESULTS / f"{PREFIX}_oracle.csv")
    osum = oracle_summary(oracle)
    plot_oracle(oracle, RESULTS / f"{PREFIX}_oracle.png")
    text, head = report(args, columns, preds, pairs, psum, frm, osum, time.perf_counter() - t0)
    save_csv(head, RESULTS / f"{PREFIX}.csv")
    _atomic(RESULTS / f"{PREFIX}.md", lambda p: p.write_text(text))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())


# -- as a section of `make experiments` (run_all.py) ------------------------------------------
EXPERIMENT = "real_decisions"
FULL_ONLY = True       # run_all --quick skips it


def run(data, out, quick: bool) -> None:
    """run_all's interface: the shared real-device data, not the host stores (``data`` unused)."""
    if main(["--draws", "2"] if quick else []) != 0:
        raise RuntimeError("exp_real_decisions failed")


def readme(out) -> str:
    path = RESULTS / f"{PREFIX}.md"
    if not path.exists():
        return "## Decisions on real devices\n\nNot run yet: `experiments/exp_real_decisions.py`.\n"
    body = path.read_text().split("\n", 1)[1].replace("\n## ", "\n### ")
    return ("## Decisions on real devices: rank correlation, FRM, oracle search\n" + body
            + f"\n![rank correlations](results/{PREFIX}_rho.png)\n"
            f"![FRM](results/{PREFIX}_frm.png)\n![oracle search](results/{PREFIX}_oracle.png)\n")
