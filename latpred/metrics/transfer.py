"""Latency monotonicity between scenarios and proxy-scenario selection (MonoNAS, seed 004 §4-5;
FRM rank transfer, seed 001 §4.3).

Input is a *latency table*: one row per model, one column per scenario (measured or predicted),
NaN where a model was not measured there. Monotonicity is measured by Spearman's rank correlation
(SRCC) over the models both scenarios have (seed 004 §4.1).

Proxy selection (seed 004 Algorithm 1): for a target scenario with ``k`` measured sample models,
estimate the SRCC between the target and every candidate source over those samples and pick the
source with the highest SRCC, if it reaches the threshold (default 0.85, the value §6.3.1 finds
"reasonable"); otherwise no proxy (the target must be measured itself).

Pareto transfer (Theorem 5.1): if two scenarios are monotonic, their (latency lower, accuracy
higher) Pareto sets are the same. :func:`pareto_transfer` compares the front computed from the
proxy's latencies with the target's own front, and the accuracy lost when the best model under a
target latency limit is searched only among the proxy's front.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import LatpredError
from .frm import pareto_front, spearman

DEFAULT_THRESHOLD = 0.85
DEFAULT_SAMPLES = 10
MIN_COMMON = 3


def srcc_matrix(table: pd.DataFrame, min_common: int = MIN_COMMON) -> pd.DataFrame:
    """SRCC between every pair of columns over the rows both have (NaN if fewer than
    ``min_common`` or a constant column); symmetric, ones on the diagonal."""
    cols = list(table.columns)
    m = pd.DataFrame(np.nan, index=cols, columns=cols, dtype=float)
    for i, a in enumerate(cols):
        m.loc[a, a] = 1.0
        for b in cols[i + 1:]:
            both = table[[a, b]].dropna()
            rho = spearman(both[a], both[b]) if len(both) >= min_common else None
            m.loc[a, b] = m.loc[b, a] = np.nan if rho is None else rho
    return m


def common_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Models measured in both scenarios, per pair (what each SRCC is computed over)."""
    ok = table.notna().astype(int)
    return ok.T @ ok


@dataclass
class ProxyChoice:
    target: str
    proxy: str | None                      # None: no source reaches the threshold
    srcc: dict[str, float | None]          # source -> SRCC over the samples
    samples: list[str]                     # model ids measured on the target and used
    threshold: float
    n_common: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"target": self.target, "proxy": self.proxy, "threshold": self.threshold,
                "k": len(self.samples), "samples": list(self.samples),
                "srcc": {k: (None if v is None else float(v)) for k, v in self.srcc.items()},
                "n_common": dict(self.n_common)}


def select_proxy(table: pd.DataFrame, target: str, sources: list[str] | None = None,
                 k: int = DEFAULT_SAMPLES, threshold: float = DEFAULT_THRESHOLD, seed: int = 0,
                 samples: list | None = None) -> ProxyChoice:
    """Pick the source column most monotonic with ``target`` over ``k`` sample models.

    Samples are ``samples`` if given, else ``k`` models drawn at random (``seed``) from those
    measured on the target; a source is scored over the samples it also has (>= 3). The source with
    the highest SRCC wins if SRCC >= ``threshold``; ties keep the first source in column order."""
    if target not in table.columns:
        raise LatpredError(f"target scenario {target!r} not in {list(table.columns)}")
    sources = [c for c in (sources or table.columns) if c != target]
    missing = [s for s in sources if s not in table.columns]
    if missing:
        raise LatpredError(f"source scenario {missing[0]!r} not in {list(table.columns)}")
    on_target = table.index[table[target].notna()]
    if samples is None:
        if k < MIN_COMMON:
            raise LatpredError(f"-k must be at least {MIN_COMMON} sample models")
        rng = np.random.default_rng(seed)
        n = min(k, len(on_target))
        samples = list(on_target[np.sort(rng.choice(len(on_target), size=n, replace=False))])
    else:
        absent = [s for s in samples if s not in set(on_target)]
        if absent:
            raise LatpredError(f"sample model {absent[0]!r} is not measured on {target}")
    best, best_rho = None, -np.inf
    srcc: dict[str, float | None] = {}
    n_common: dict[str, int] = {}
    for src in sources:
        sub = table.loc[samples, [target, src]].dropna()
        n_common[src] = len(sub)
        rho = spearman(sub[target], sub[src]) if len(sub) >= MIN_COMMON else None
        srcc[src] = rho
        if rho is not None and rho > best_rho and rho >= threshold:
            best, best_rho = src, rho
    return ProxyChoice(target, best, srcc, list(samples), threshold, n_common)


def pareto_transfer(latency_source: pd.Series, latency_target: pd.Series,
                    accuracy: pd.Series) -> dict:
    """How the (latency lower, accuracy higher) Pareto set moves from a source to a target.

    Uses models with all three values. Returns both fronts, their overlap (Jaccard), the target
    front's members the source front misses and vice versa, and ``max_accuracy_lost``: over every
    target latency limit (each model's target latency), the best accuracy fitting the limit among
    all models minus the best among the source front only (0 when the fronts agree where it
    matters; the MonoNAS search restricted to the proxy's Pareto set loses nothing)."""
    df = pd.DataFrame({"src": latency_source, "tgt": latency_target, "acc": accuracy}).dropna()
    if df.empty:
        raise LatpredError("no model has source latency, target latency and accuracy")
    src_front = df.index[pareto_front(df["src"], df["acc"])]
    tgt_front = df.index[pareto_front(df["tgt"], df["acc"])]
    s, t = set(src_front), set(tgt_front)
    lost = []
    for limit in np.sort(df["tgt"].unique()):
        fits = df["tgt"] <= limit
        best_all = df.loc[fits, "acc"].max()
        in_front = fits & df.index.isin(src_front)
        best_front = df.loc[in_front, "acc"].max() if in_front.any() else np.nan
        lost.append({"limit_ms": float(limit), "best_accuracy": float(best_all),
                     "best_accuracy_source_front": None if np.isnan(best_front)
                     else float(best_front)})
    gaps = [r["best_accuracy"] - r["best_accuracy_source_front"] for r in lost
            if r["best_accuracy_source_front"] is not None]
    uncovered = sum(r["best_accuracy_source_front"] is None for r in lost)
    return {"models": int(len(df)),
            "source_front": sorted(map(str, src_front)), "target_front": sorted(map(str, tgt_front)),
            "common": sorted(map(str, s & t)), "missed": sorted(map(str, t - s)),
            "extra": sorted(map(str, s - t)),
            "jaccard": len(s & t) / len(s | t) if s | t else 1.0,
            "max_accuracy_lost": float(max(gaps)) if gaps else None,
            "limits_without_source_front_model": int(uncovered),
            "per_limit": lost}


def frm_table_by_scenario(latency: pd.DataFrame, flops: pd.Series,
                          memory: pd.Series) -> pd.DataFrame:
    """FRM of each model in each scenario (column), over models with FLOPs and memory known.

    Each column uses its own first model with a latency as baseline: FRM ranks within a scenario
    do not depend on the baseline, so neither does the SRCC of FRM between scenarios."""
    from .frm import frm_scores
    idx = latency.index.intersection(flops.dropna().index).intersection(memory.dropna().index)
    out = pd.DataFrame(index=idx, columns=latency.columns, dtype=float)
    for col in latency.columns:
        lat = latency.loc[idx, col].dropna()
        lat = lat[lat > 0]
        if len(lat) == 0:
            continue
        sc = frm_scores(flops[lat.index].to_numpy(), lat.to_numpy(),
                        memory[lat.index].to_numpy(), 0)
        out.loc[lat.index, col] = sc["frm"].to_numpy()
    return out


__all__ = ["srcc_matrix", "common_counts", "select_proxy", "ProxyChoice", "pareto_transfer",
           "frm_table_by_scenario", "DEFAULT_THRESHOLD", "DEFAULT_SAMPLES"]
