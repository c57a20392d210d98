"""The public real-device measurements of NAS-Bench-201 networks (../shared/data/real-devices, see
its CARD.md), as device columns, and what the real-device experiments fit on them.

Nobody on this project measured these numbers; they are read from the shared folder (never
copied into the repository; ``--data`` points at another copy). A *column* is one device as one
source measured it: a HELP or LatBench column, or one (device, runtime, task) of HW-NAS-Bench-360.

Predictors fitted on K archs of a column (all choices made by cross-validation inside the K):
- ``latpred``: the source bundle adapted with :mod:`latpred.predictors.adapt`, on the IR built
  from the arch string (``all`` edges as the converter keeps them, or only ``live`` edges as a
  runtime that prunes dead and zero computation runs them, whichever CV prefers);
- ``count``: the naive baseline of the issue, 5 numbers: intercept + per-cell counts of 3x3
  convs, 1x1 convs, pools and skips (live or all edges, by CV), least squares on the MSPE;
- ``flops``: latency = a + b * FLOPs (live or all, by CV), on the MSPE;
- ``scale``: the unadapted source bundle's end-to-end prediction times one global scale;
- ``gcn``: the BRP-NAS GCN of :mod:`latpred.baselines.gcn` on the op graph of the IR.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latpred.predictors import adapt as A  # noqa: E402
from latpred.sources import nb201  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "real-devices"
BUNDLE = ROOT / "datasets" / "host" / "bundles" / "litert_cpu1_fp32_opprof_gbdt.latpred"
CACHE = ROOT / "experiments" / ".cache" / "real_devices"
EDGES = ("all", "live")
CELL_OPS = ("nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3", "skip_connect")
# input/classes of each source (CARD): HELP and LatBench measured CIFAR-10 networks
HELP_COLUMNS = ("pixel3", "raspi4", "gold_6226", "gold_6240", "silver_4114", "silver_4210r",
                "1080ti_1", "2080ti_1", "titan_rtx_1", "titanx_1", "titanxp_1")
LATBENCH_COLUMNS = ("latbench_sd855_cpu", "latbench_sd855_gpu", "latbench_sd855_dsp",
                    "latbench_jetson_nano_fp32", "latbench_jetson_nano_fp16", "latbench_edgetpu",
                    "latbench_i7_7820x", "latbench_gtx1080ti", "hwnasbench_jetson_tx2",
                    "hwnasbench_edgetpu")
# published anchors on these networks (CARD): BRP-NAS GCN (seed 003 Table S2), share within
# +-10 % with 900 / 100 training points; HELP's Spearman rho with 10 measurements
GCN_ANCHORS = {"latbench_i7_7820x": (96.4, 51.5), "latbench_gtx1080ti": (96.4, 52.9),
               "latbench_jetson_nano_fp32": (96.3, 71.8), "latbench_edgetpu": (87.4, 54.6),
               "latbench_sd855_gpu": (90.5, 46.3), "latbench_sd855_dsp": (94.2, 78.4)}
HELP_ANCHORS = {"pixel3": ("Pixel 2", 0.802, 0.765), "raspi4": ("Raspberry Pi 4", 0.890, 0.846)}
# what kind of processor a column is (the targets name CPUs and GPUs)
KIND = {"pixel3": "cpu", "raspi4": "cpu", "gold_6226": "cpu", "gold_6240": "cpu",
        "silver_4114": "cpu", "silver_4210r": "cpu", "1080ti_1": "gpu", "2080ti_1": "gpu",
        "titan_rtx_1": "gpu", "titanx_1": "gpu", "titanxp_1": "gpu",
        "latbench_sd855_cpu": "cpu", "latbench_sd855_gpu": "gpu", "latbench_sd855_dsp": "dsp",
        "latbench_jetson_nano_fp32": "gpu", "latbench_jetson_nano_fp16": "gpu",
        "latbench_edgetpu": "tpu", "latbench_i7_7820x": "cpu", "latbench_gtx1080ti": "gpu",
        "hwnasbench_jetson_tx2": "gpu", "hwnasbench_edgetpu": "tpu"}


@dataclass
class Column:
    name: str           # e.g. latbench_sd855_gpu or pi5_litert_cifar100
    source: str         # help | latbench | hwnasbench360
    kind: str           # cpu | gpu | dsp | tpu
    task: str           # cifar10 | cifar100 | ninapro | darcy
    index: np.ndarray   # NAS-Bench-201 indices
    latency_ms: np.ndarray
    arch: list[str]
    energy_mj: np.ndarray | None = None
    accuracy: np.ndarray | None = None


TASK_NETWORK = {"cifar10": ((32, 32, 3), 10)}


def task_network(task: str) -> tuple[tuple[int, int, int], int]:
    if task in TASK_NETWORK:
        return TASK_NETWORK[task]
    shape, classes = nb201.TASKS[task]
    return tuple(shape), int(classes)


def load_columns(data: Path = DATA) -> list[Column]:
    """Every device column of the CARD's three files."""
    data = Path(data)
    if not (data / "CARD.md").is_file():
        raise SystemExit(f"no real-device data in {data} (its CARD.md is missing)")
    cols: list[Column] = []
    help_ = pd.read_csv(data / "nb201_help.csv")
    for c in HELP_COLUMNS:
        m = help_[c].notna() & (help_[c] > 0)
        cols.append(Column(c, "help", KIND[c], "cifar10", help_.nb201_index[m].to_numpy(),
                           help_[c][m].to_numpy(float), help_.arch_str[m].tolist()))
    lb = pd.read_csv(data / "nb201_latbench.csv")
    for c in LATBENCH_COLUMNS:
        m = lb[c].notna() & (lb[c] > 0)
        cols.append(Column(c, "latbench", KIND[c], "cifar10", lb.nb201_index[m].to_numpy(),
                           lb[c][m].to_numpy(float), lb.arch_str[m].tolist()))
    hw = pd.read_csv(data / "nb201_hwnasbench360.csv")
    for (dev, rt, task), g in hw.groupby(["device", "runtime", "task"], sort=True):
        g = g[g.latency_ms > 0].sort_values("nb201_index")
        energy = g.energy_mj.to_numpy(float) if g.energy_mj.notna().all() else None
        cols.append(Column(f"{dev}_{rt}_{task}", "hwnasbench360", "cpu", task,
                           g.nb201_index.to_numpy(), g.latency_ms.to_numpy(float),
                           g.arch_str.tolist(), energy, g.accuracy.to_numpy(float)))
    return cols


def all_archs(data: Path = DATA) -> list[str]:
    """Arch strings in NAS-Bench-201's index order (the HELP file holds all 15,625)."""
    t = pd.read_csv(Path(data) / "nb201_help.csv", usecols=["nb201_index", "arch_str"])
    return t.sort_values("nb201_index").arch_str.tolist()


# -- per-arch facts, computed once for every arch and cached ------------------------------------
def cell_counts(arch: str, edges: str) -> list[int]:
    """Per-cell counts of 3x3 convs, 1x1 convs, pools and skips (``live``: only edges on a path
    from the cell's input to its output that crosses no ``none``)."""
    cell = nb201.parse_arch(arch)
    ops = [op for node in cell for op, _ in node]
    keep = nb201.live_edges(arch) if edges == "live" else [True] * len(ops)
    return [sum(1 for op, k in zip(ops, keep) if k and op == name) for name in CELL_OPS]


def summaries(source, task: str, edges: str, archs: list[str], refresh: bool = False
              ) -> A.Summaries:
    """:class:`latpred.predictors.adapt.Summaries` of every arch for the source bundle (cached
    under experiments/.cache, keyed by the bundle's content)."""
    import hashlib
    import pickle
    key = hashlib.sha256(BUNDLE.read_bytes()).hexdigest()[:12]
    path = CACHE / f"summaries{A.SUMMARIES_LAYOUT}_{key}_{task}_{edges}.pkl"
    if path.exists() and not refresh:
        with open(path, "rb") as fh:       # our own cache file, written below
            return pickle.load(fh)
    from tqdm import tqdm
    shape, classes = task_network(task)
    rows = [nb201.nb201_rows(a, shape, classes, edges=edges)
            for a in tqdm(archs, desc=f"IR {task}/{edges}", unit="arch", mininterval=5)]
    s = A.summarize(source, rows, [f"nb201_{i}" for i in range(len(archs))])
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(s, fh)
    os.replace(tmp, path)
    return s


def flops(s: A.Summaries) -> np.ndarray:
    return s.work[:, :, 0].sum(axis=1)


# -- fitting on K archs ---------------------------------------------------------------------------
def _mspe_lstsq(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(X / y[:, None], np.ones(len(y)), rcond=None)[0]


def _loo_mspe(X: np.ndarray, y: np.ndarray) -> float:
    err = []
    for i in range(len(y)):
        m = np.arange(len(y)) != i
        err.append((X[i] @ _mspe_lstsq(X[m], y[m]) - y[i]) / y[i])
    return float(np.mean(np.square(err)))


def _cv_choice(designs: dict[str, np.ndarray], train: np.ndarray, y: np.ndarray) -> str:
    """The design (edges variant) with the lower held-out MSPE on the K training archs."""
    scores = {k: _loo_mspe(X[train], y[train]) if len(train) <= A.LOO_MAX
              else _kfold_mspe(X[train], y[train]) for k, X in designs.items()}
    return min(scores, key=scores.get)


def _kfold_mspe(X, y, folds: int = 10, seed: int = 0) -> float:
    order = np.random.default_rng(seed).permutation(len(y))
    err = np.empty(len(y))
    for f in range(folds):
        test = order[f::folds]
        m = np.setdiff1d(order, test)
        err[test] = (X[test] @ _mspe_lstsq(X[m], y[m]) - y[test]) / y[test]
    return float(np.mean(err ** 2))


def fit_linear(designs: dict[str, np.ndarray], train: np.ndarray, y: np.ndarray
               ) -> tuple[np.ndarray, str]:
    """A least-squares MSPE model on the design CV prefers; predictions for every row."""
    choice = _cv_choice(designs, train, y)
    X = designs[choice]
    return X @ _mspe_lstsq(X[train], y[train]), choice


def fit_latpred(sums: dict[str, A.Summaries], train: np.ndarray, y: np.ndarray, seed: int = 0
                ) -> tuple[np.ndarray, str]:
    """The adapted bundle's prediction of every arch; the edges variant and the candidate are
    the ones with the lowest CV MSPE inside the K archs."""
    best = None
    for edges, s in sums.items():
        coef, scores = A.fit_coefficients(s.subset(train), y[train], seed=seed)
        score = scores[coef.candidate.label]
        if best is None or score < best[0]:
            best = (score, edges, coef)
    _, edges, coef = best
    return coef.predict(sums[edges]), f"{edges}:{coef.candidate.label}"


def fit_scale(s: A.Summaries, train: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The unadapted source bundle times one global scale (on the MSPE)."""
    r = s.prior_e2e[train] / y[train]
    return s.prior_e2e * (r.sum() / np.square(r).sum())


def metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from scipy.stats import spearmanr
    err = np.abs(pred - y) / y
    return {"mape": float(100 * err.mean()), "within5": float(100 * np.mean(err <= 0.05)),
            "within10": float(100 * np.mean(err <= 0.10)),
            "spearman": float(spearmanr(pred, y)[0])}


# -- the BRP-NAS GCN on the cell graph, as BRP-NAS encodes NAS-Bench-201 -------------------------
_CELL_NODE = {"nor_conv_3x3": ("Conv2D", 3.0), "nor_conv_1x1": ("Conv2D", 1.0),
              "avg_pool_3x3": ("Pooling", 3.0), "skip_connect": ("ElementWise", 0.0),
              "none": ("Other", 0.0)}


def cell_frame(archs, indices) -> tuple[pd.DataFrame, dict]:
    """The cell of each arch as BRP-NAS's GCN sees NAS-Bench-201 (seed 003 §S1.1): one node per
    edge op (one-hot op kind; kernel size as the only feature) plus input and output nodes, and
    op (j->i) feeding every op that leaves node i. The op-graph GCN of the whole IR (~150 nodes)
    trains for ~10 minutes per fit here; the cell graph has 8 nodes."""
    rows, edges = [], {}
    for idx, arch in zip(indices, archs):
        name = f"nb201_{idx}"
        cell = nb201.parse_arch(arch)
        ops = [(op, j, i) for i, node in enumerate(cell, start=1) for op, j in node]
        rows.append({"model": name, "op_index": 0, "category": "Other", "kernel_hw": 0.0})
        for k, (op, _, _) in enumerate(ops, start=1):
            cat, kernel = _CELL_NODE[op]
            rows.append({"model": name, "op_index": k, "category": cat, "kernel_hw": kernel})
        out = len(ops) + 1
        rows.append({"model": name, "op_index": out, "category": "Other", "kernel_hw": 0.0})
        pairs = []
        for k, (_, j, i) in enumerate(ops, start=1):
            pairs += [(0, k)] if j == 0 else \
                [(m, k) for m, (_, _, i2) in enumerate(ops, start=1) if i2 == j]
            if i == 3:
                pairs.append((k, out))
        edges[name] = pairs
    return pd.DataFrame(rows), edges


def fit_gcn(col: Column, train: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    from latpred.baselines.gcn import GcnBaseline
    frame, edges = cell_frame(col.arch, col.index)
    names = np.array([f"nb201_{i}" for i in col.index])
    ops = frame.assign(e2e_ms=frame["model"].map(pd.Series(y, index=names)))
    gcn = GcnBaseline(seed=seed, threads=1, edges=edges)
    gcn.fit(ops[ops["model"].isin(set(names[train]))])
    return gcn.predict_models(ops).reindex(names).to_numpy()
