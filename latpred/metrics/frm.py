"""FRM: a compound efficiency metric of FLOPs, latency and memory against a baseline model.

Definitions from seed 001 (FRM, §3.1-3.2), for model M on device D against baseline B measured on the
*same* device::

    ratio_flops   = FLOPs(M) / FLOPs(B)
    ratio_latency = Latency(M, D) / Latency(B, D)
    ratio_memory  = Memory(M, D) / Memory(B, D)
    FRM           = (ratio_flops * ratio_latency * ratio_memory) ** (1/3)     (eq. 1)
    FRM_E         = (ratio_flops * ratio_latency * ratio_memory * ratio_energy) ** (1/4)   (eq. 5)
    FRM_Q         = FRM / (1 - accuracy)                                        (eq. 6)

Every ratio is "model over baseline", so the baseline scores 1 and *lower FRM is more efficient*;
rank 1 is the most efficient model. A FLOPs/FRM *disagreement* is a model whose FLOPs rank and FRM
rank differ by >= 2 positions (seed 001 §3.4, §4.5).

Conventions of latpred: FLOPs = MACs (multiply-accumulates of convolutions and fully-connected ops,
:func:`latpred.features.op_macs`); memory = weight bytes + peak live activation bytes, both read
from the graph (:attr:`ModelGraph.weight_bytes`, :meth:`ModelGraph.peak_activation_bytes`).

Since the baseline divides every model's FRM by the same constant, FRM *ranks* (and any Spearman rho
between two FRM columns) do not depend on which baseline is chosen.

FRM_Q caveat: eq. 6 grows as accuracy grows, so under "lower FRM is better" it favours *less*
accurate models, the opposite of the seed's stated intent ("penalizes low-accuracy models"). We
report FRM_Q exactly as defined but do not rank by it; the direction-free way to combine efficiency
and accuracy is the Pareto front of (FRM lower, accuracy higher), reported as ``pareto``.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import LatpredError

DISAGREEMENT_POSITIONS = 2
FLOPS_CONVENTION = "FLOPs = MACs (multiply-accumulates of convolution and fully-connected ops)"
MEMORY_CONVENTION = "memory = weight bytes + peak live activation bytes, from the model graph"


# -- pure math -------------------------------------------------------------------------------------
def ratios(values: Sequence[float], baseline: int) -> np.ndarray:
    """``values / values[baseline]``; the baseline's own ratio is exactly 1."""
    v = np.asarray(values, dtype=float)
    base = v[baseline]
    if not np.isfinite(base) or base <= 0:
        raise LatpredError(f"baseline value must be a positive number, got {base}")
    out = v / base
    out[baseline] = 1.0
    return out


def geometric_mean(*columns: np.ndarray) -> np.ndarray:
    """Element-wise geometric mean of positive columns (NaN where any value is missing)."""
    stacked = np.vstack([np.asarray(c, dtype=float) for c in columns])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.exp(np.log(stacked).mean(axis=0))


def rank_ascending(values: Sequence[float]) -> np.ndarray:
    """Rank 1 = smallest value; ties share the best rank ('min'); NaN stays NaN."""
    s = pd.Series(np.asarray(values, dtype=float))
    return s.rank(method="min", ascending=True).to_numpy()


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman rank correlation over pairs where both are finite; None for < 3 pairs or a constant."""
    from scipy.stats import spearmanr
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return None
    return float(spearmanr(x[ok], y[ok]).statistic)


def pareto_front(cost: Sequence[float], benefit: Sequence[float]) -> np.ndarray:
    """True for points no other point dominates (cost <= and benefit >=, one strictly)."""
    c, b = np.asarray(cost, dtype=float), np.asarray(benefit, dtype=float)
    ok = np.isfinite(c) & np.isfinite(b)
    front = np.zeros(len(c), dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (c <= c[i]) & (b >= b[i]) & ((c < c[i]) | (b > b[i]))
        front[i] = not dominated.any()
    return front


def frm_scores(flops: Sequence[float], latency: Sequence[float], memory: Sequence[float],
               baseline: int, energy: Sequence[float] | None = None) -> pd.DataFrame:
    """Ratios and FRM (and FRM_E when ``energy`` is given) of every model against ``baseline``."""
    out = pd.DataFrame({"ratio_flops": ratios(flops, baseline),
                        "ratio_latency": ratios(latency, baseline),
                        "ratio_memory": ratios(memory, baseline)})
    out["frm"] = geometric_mean(out["ratio_flops"], out["ratio_latency"], out["ratio_memory"])
    if energy is not None:
        out["ratio_energy"] = ratios(energy, baseline)
        out["frm_e"] = geometric_mean(out["ratio_flops"], out["ratio_latency"],
                                      out["ratio_memory"], out["ratio_energy"])
    return out


def frm_table(names: Sequence[str], flops: Sequence[float], memory: Sequence[float],
              latency_pred: Sequence[float] | None = None,
              latency_meas: Sequence[float] | None = None, baseline: str | None = None, *,
              accuracy: Sequence[float] | None = None, energy: Sequence[float] | None = None,
              disagreement: int = DISAGREEMENT_POSITIONS) -> tuple[pd.DataFrame, float | None]:
    """The ranked FRM table and, when both latencies are given, Spearman rho between the two FRMs.

    The main columns (``latency_ms``, ``ratio_latency``, ``frm``, ``frm_rank``, ...) use predicted
    latency when given, measured latency otherwise (``df.attrs['latency_source']``). With both, the
    measured side is added as ``latency_measured_ms``, ``ratio_latency_measured``,
    ``frm_measured``, ``frm_rank_measured``, ``rank_shift_measured``, ``flops_frm_disagree_measured``,
    and ``frm_rank_change`` = measured rank - predicted rank. ``rank_shift`` = FLOPs rank - FRM rank
    (positive: FRM ranks the model better than FLOPs does). ``accuracy`` (fractions in [0, 1)) adds
    ``frm_q`` and ``pareto`` (not dominated in FRM-lower/accuracy-higher); ``energy`` adds FRM_E.
    Rows are sorted by FRM rank."""
    names = [str(n) for n in names]
    n = len(names)
    if len(set(names)) != n:
        raise LatpredError("model names must be unique")
    if latency_pred is None and latency_meas is None:
        raise LatpredError("need predicted or measured latency")
    if baseline is None:
        baseline = names[0]
    if baseline not in names:
        raise LatpredError(f"baseline {baseline!r} is not among the models")
    b = names.index(baseline)
    for label, col in (("FLOPs", flops), ("memory", memory), ("predicted latency", latency_pred),
                       ("measured latency", latency_meas), ("accuracy", accuracy),
                       ("energy", energy)):
        if col is not None and len(col) != n:
            raise LatpredError(f"{label}: {len(col)} values for {n} models")
    for label, col in (("FLOPs", flops), ("memory", memory), ("predicted latency", latency_pred),
                       ("measured latency", latency_meas)):
        if col is None:
            continue
        v = np.asarray(col, dtype=float)
        bad = ~np.isfinite(v) | (v < 0)
        if bad.any():
            raise LatpredError(f"{label} of {names[int(np.flatnonzero(bad)[0])]!r} is missing "
                               f"or negative")
    main_lat = latency_pred if latency_pred is not None else latency_meas
    df = pd.DataFrame({"name": names, "baseline": [i == b for i in range(n)],
                       "flops": np.asarray(flops, dtype=float),
                       "memory_bytes": np.asarray(memory, dtype=float),
                       "latency_ms": np.asarray(main_lat, dtype=float)})
    scores = frm_scores(flops, main_lat, memory, b, energy)
    df = pd.concat([df, scores], axis=1)
    df["frm_rank"] = rank_ascending(df["frm"]).astype(int)
    df["flops_rank"] = rank_ascending(df["flops"]).astype(int)
    df["rank_shift"] = df["flops_rank"] - df["frm_rank"]
    df["flops_frm_disagree"] = df["rank_shift"].abs() >= disagreement
    if energy is not None:
        df["energy"] = np.asarray(energy, dtype=float)
    rho = None
    if latency_pred is not None and latency_meas is not None:
        meas = frm_scores(flops, latency_meas, memory, b)
        df["latency_measured_ms"] = np.asarray(latency_meas, dtype=float)
        df["ratio_latency_measured"] = meas["ratio_latency"]
        df["frm_measured"] = meas["frm"]
        df["frm_rank_measured"] = rank_ascending(df["frm_measured"]).astype(int)
        df["rank_shift_measured"] = df["flops_rank"] - df["frm_rank_measured"]
        df["flops_frm_disagree_measured"] = df["rank_shift_measured"].abs() >= disagreement
        df["frm_rank_change"] = df["frm_rank_measured"] - df["frm_rank"]
        df["latency_error_pct"] = 100.0 * (df["latency_ms"] - df["latency_measured_ms"]) \
            / df["latency_measured_ms"]
        rho = spearman(df["frm"], df["frm_measured"])
    if accuracy is not None:
        acc = np.asarray(accuracy, dtype=float)
        df["accuracy"] = acc
        with np.errstate(divide="ignore", invalid="ignore"):
            df["frm_q"] = df["frm"] / (1.0 - acc)
        df["pareto"] = pareto_front(df["frm"], acc)
        if "frm_measured" in df:
            with np.errstate(divide="ignore", invalid="ignore"):
                df["frm_q_measured"] = df["frm_measured"] / (1.0 - acc)
            df["pareto_measured"] = pareto_front(df["frm_measured"], acc)
    df = df.sort_values(["frm_rank", "name"], kind="stable").reset_index(drop=True)
    df.attrs.update(latency_source="predicted" if latency_pred is not None else "measured",
                    spearman_rho=rho,
                    baseline=baseline, disagreement_positions=disagreement,
                    flops_convention=FLOPS_CONVENTION, memory_convention=MEMORY_CONVENTION)
    return df, rho


def summary(df: pd.DataFrame, rho: float | None) -> dict:
    """The headline numbers of an FRM table (for text and JSON output)."""
    src = df.attrs.get("latency_source", "predicted")
    out = {"baseline": df.attrs.get("baseline"), "latency_source": src,
           "models": int(len(df)),
           "disagreement_positions": int(df.attrs.get("disagreement_positions",
                                                      DISAGREEMENT_POSITIONS)),
           "flops_frm_disagreements": df.loc[df["flops_frm_disagree"], "name"].tolist()}
    if "frm_measured" in df:
        out["flops_frm_disagreements_measured"] = \
            df.loc[df["flops_frm_disagree_measured"], "name"].tolist()
        moved = df[df["frm_rank_change"] != 0]
        out["rank_changes"] = [{"name": r.name, "frm_rank_predicted": int(r.frm_rank),
                                "frm_rank_measured": int(r.frm_rank_measured)}
                               for r in moved.itertuples()]
        out["rank_changes_ge_disagreement"] = int(
            (df["frm_rank_change"].abs() >= out["disagreement_positions"]).sum())
        out["spearman_rho"] = rho if rho is not None else df.attrs.get("spearman_rho")
        err = df["latency_error_pct"].abs()
        out["latency_mape_pct"] = float(err.mean()) if len(err) else None
    return out


def format_frm_table(df: pd.DataFrame, rho: float | None = None) -> str:
    """Human-readable table of :func:`frm_table` output, with the notes on units and flags."""
    both = "frm_measured" in df
    src = df.attrs.get("latency_source", "predicted")
    if rho is None:
        rho = df.attrs.get("spearman_rho")
    cols = [("#", 3), ("model", max(5, min(28, max((len(n) for n in df["name"]), default=5)))),
            ("MMACs", 9), ("mem MB", 8), (f"{'pred' if src == 'predicted' else 'meas'} ms", 9),
            ("r_flops", 7), ("r_lat", 7), ("r_mem", 7), ("FRM", 7), ("FLOPs#", 6), ("shift", 5)]
    if both:
        cols += [("meas ms", 9), ("FRM meas", 8), ("meas#", 5)]
    if "accuracy" in df:
        cols += [("acc", 6), ("FRM_Q", 7), ("pareto", 6)]
    if "frm_e" in df:
        cols += [("FRM_E", 7)]
    head = " ".join(f"{c:>{w}}" if i != 1 else f"{c:<{w}}" for i, (c, w) in enumerate(cols))
    lines = [head, "-" * len(head)]
    for r in df.itertuples():
        name = r.name if len(r.name) <= cols[1][1] else r.name[:cols[1][1] - 1] + "~"
        mark = "*" if r.baseline else ""
        vals = [f"{r.frm_rank:>3}", f"{name + mark:<{cols[1][1]}}", f"{r.flops / 1e6:>9.2f}",
                f"{r.memory_bytes / 1e6:>8.3f}", f"{r.latency_ms:>9.4g}", f"{r.ratio_flops:>7.3f}",
                f"{r.ratio_latency:>7.3f}", f"{r.ratio_memory:>7.3f}", f"{r.frm:>7.3f}",
                f"{r.flops_rank:>6}", f"{r.rank_shift:>+5d}" + ("!" if r.flops_frm_disagree else "")]
        if both:
            vals += [f"{r.latency_measured_ms:>9.4g}", f"{r.frm_measured:>8.3f}",
                     f"{r.frm_rank_measured:>5}"]
        if "accuracy" in df:
            vals += [_num(r.accuracy, 6, 3), _num(r.frm_q, 7, 3),
                     f"{'yes' if r.pareto else '':>6}"]
        if "frm_e" in df:
            vals += [_num(r.frm_e, 7, 3)]
        lines.append(" ".join(vals))
    s = summary(df, rho)
    k = s["disagreement_positions"]
    lines += ["",
              f"* baseline {s['baseline']} (FRM 1); lower FRM = more efficient; rank 1 = best. "
              f"Latency {src}.",
              f"{FLOPS_CONVENTION}; {MEMORY_CONVENTION}.",
              f"shift = FLOPs rank - FRM rank; '!' = FLOPs/FRM disagreement of >= {k} positions: "
              + (", ".join(s["flops_frm_disagreements"]) or "none")]
    if "accuracy" in df:
        lines.append("FRM_Q = FRM / (1 - accuracy) (seed 001 eq. 6; grows with accuracy, so it is "
                     "not ranked); pareto = not dominated in (FRM lower, accuracy higher).")
    if both:
        lines.append(f"FLOPs/FRM disagreements with measured latency: "
                     + (", ".join(s["flops_frm_disagreements_measured"]) or "none"))
        rho_txt = "n/a (fewer than 3 models or constant FRM)" if rho is None else f"{rho:.4f}"
        lines.append(f"Spearman rho, FRM from predicted vs measured latency: {rho_txt} over "
                     f"{len(df)} models; latency MAPE {s['latency_mape_pct']:.1f}%")
        if s["rank_changes"]:
            lines.append("models whose FRM rank changes (predicted -> measured): " + ", ".join(
                f"{c['name']} {c['frm_rank_predicted']}->{c['frm_rank_measured']}"
                for c in s["rank_changes"]))
        else:
            lines.append("no model changes FRM rank between predicted and measured latency")
    return "\n".join(lines)


def _num(v: float, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if v is None or not np.isfinite(v) else f"{v:>{width}.{digits}f}"


def table_records(df: pd.DataFrame) -> list[dict]:
    """JSON-ready rows: numpy scalars to Python, NaN to None."""
    rows = []
    for rec in df.to_dict(orient="records"):
        row = {}
        for k, v in rec.items():
            if isinstance(v, (np.integer,)):
                v = int(v)
            elif isinstance(v, (np.floating, float)):
                v = None if not math.isfinite(v) else float(v)
            elif isinstance(v, np.bool_):
                v = bool(v)
            row[k] = v
        rows.append(row)
    return rows


# -- model facts -----------------------------------------------------------------------------------
def model_costs(graph) -> dict:
    """FLOPs (= MACs) and memory (= weights + peak activations) of a :class:`ModelGraph`."""
    from ..features import op_macs
    weights = int(graph.weight_bytes)
    peak = int(graph.peak_activation_bytes())
    return {"flops": int(sum(op_macs(graph, op) for op in graph.ops)),
            "weight_bytes": weights, "peak_activation_bytes": peak,
            "memory_bytes": weights + peak}


def read_model_facts(path: str | os.PathLike) -> pd.DataFrame:
    """Per-model facts from a CSV: a ``model`` (or ``name``) column matching model file stems, and
    ``accuracy`` and/or ``energy`` columns. Accuracy is a fraction in [0, 1); a column whose values
    all lie in (1, 100) is read as percent. Returns a frame indexed by model with those columns."""
    path = os.fspath(path)
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise LatpredError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise LatpredError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    key = "model" if "model" in df else "name" if "name" in df else None
    if key is None:
        raise LatpredError(f"{path}: needs a 'model' column (model file stems)")
    if "accuracy" not in df and "energy" not in df:
        raise LatpredError(f"{path}: needs an 'accuracy' and/or an 'energy' column")
    df[key] = df[key].astype(str).str.strip().map(
        lambda s: os.path.splitext(os.path.basename(s))[0])
    if df[key].duplicated().any():
        dup = df.loc[df[key].duplicated(), key].iloc[0]
        raise LatpredError(f"{path}: model {dup!r} is listed twice")
    out = df.set_index(key)[[c for c in ("accuracy", "energy") if c in df]]
    for col in out:
        vals = pd.to_numeric(out[col], errors="coerce")
        bad = out.index[vals.isna() & out[col].notna()]
        if len(bad):
            raise LatpredError(f"{path}: {col} of {bad[0]!r} is not a number")
        out[col] = vals
    if "accuracy" in out:
        acc = out["accuracy"].dropna()
        if len(acc) and acc.max() > 1 and acc.max() < 100 and acc.min() >= 0:
            out["accuracy"] = out["accuracy"] / 100.0
            out.attrs["accuracy_percent"] = True
        acc = out["accuracy"].dropna()
        if len(acc) and (acc.min() < 0 or acc.max() >= 1):
            raise LatpredError(f"{path}: accuracy must be a fraction in [0, 1) or a percent "
                               f"in [0, 100)")
    if "energy" in out:
        en = out["energy"].dropna()
        if len(en) and en.min() <= 0:
            raise LatpredError(f"{path}: energy must be positive")
    return out


__all__ = ["ratios", "geometric_mean", "rank_ascending", "spearman", "pareto_front", "frm_scores",
           "frm_table", "format_frm_table", "summary", "table_records", "model_costs",
           "read_model_facts", "FLOPS_CONVENTION", "MEMORY_CONVENTION"]
