"""PNG plots of the decision metrics (matplotlib, Agg backend: no display needed).

Each function writes ``path`` atomically (``latpred.fileio``) and returns it."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..fileio import atomic_path
from .frm import pareto_front


def _figure(width: float = 6.4, height: float = 4.8):
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt, plt.subplots(figsize=(width, height))


def save_figure(fig, path: str | os.PathLike) -> str:
    """Write a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt
    path = os.fspath(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def plot_frm(df: pd.DataFrame, path: str | os.PathLike, x: str | None = None) -> str:
    """FRM vs accuracy (when the table has accuracies) or vs latency, with the Pareto front
    (FRM lower and accuracy higher / latency lower). Measured FRM is drawn too when present."""
    if x is None:
        x = "accuracy" if "accuracy" in df and df["accuracy"].notna().any() else "latency"
    plt, (fig, ax) = _figure()
    series = [("frm", "latency_ms", "predicted" if df.attrs.get("latency_source") == "predicted"
               else "measured", "o")]
    if "frm_measured" in df:
        series.append(("frm_measured", "latency_measured_ms", "measured", "s"))
    for frm_col, lat_col, label, marker in series:
        xs = df["accuracy"] if x == "accuracy" else df[lat_col]
        ys = df[frm_col]
        ok = np.isfinite(xs.astype(float)) & np.isfinite(ys.astype(float))
        pts = ax.scatter(xs[ok], ys[ok], marker=marker, label=f"FRM ({label} latency)", alpha=0.8)
        # The front: for accuracy, maximise it; for latency, minimise both.
        benefit = xs if x == "accuracy" else -xs
        front = pareto_front(ys.to_numpy(), benefit.to_numpy()) & ok.to_numpy()
        order = np.argsort(xs[front].to_numpy())
        ax.plot(xs[front].to_numpy()[order], ys[front].to_numpy()[order], "--",
                color=pts.get_facecolor()[0], label=f"Pareto front ({label})")
        if frm_col == "frm":
            for r in df[ok].itertuples():
                ax.annotate(r.name, (getattr(r, "accuracy") if x == "accuracy" else
                                     getattr(r, lat_col), r.frm), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("accuracy" if x == "accuracy" else "latency (ms)")
    ax.set_ylabel(f"FRM vs {df.attrs.get('baseline', 'baseline')} (lower = more efficient)")
    ax.set_title("FRM = (FLOPs x latency x memory ratios)^(1/3)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_srcc(matrix: pd.DataFrame, path: str | os.PathLike, title: str = "SRCC") -> str:
    """Heat map of an SRCC matrix with the values written in the cells."""
    n = len(matrix)
    plt, (fig, ax) = _figure(max(4.8, 1.1 * n + 2.5), max(4.0, 0.9 * n + 2))
    vals = matrix.to_numpy(dtype=float)
    im = ax.imshow(vals, vmin=-1, vmax=1, cmap="RdYlGn")
    labels = [str(c) for c in matrix.columns]
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(n), [str(c) for c in matrix.index], fontsize=7)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, "-" if not np.isfinite(vals[i, j]) else f"{vals[i, j]:.2f}",
                    ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title)
    return save_figure(fig, path)


def plot_selection(curve: pd.DataFrame, path: str | os.PathLike) -> str:
    """False positives / negatives vs latency limit; with accuracies, missed and over-claimed
    accuracy on a second panel."""
    with_acc = "missed_accuracy" in curve
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2 if with_acc else 1, 1, figsize=(6.4, 6.4 if with_acc else 4),
                             sharex=True, squeeze=False)
    ax = axes[0, 0]
    ax.step(curve["limit_ms"], curve["false_positives"], where="post", label="false positives")
    ax.step(curve["limit_ms"], curve["false_negatives"], where="post", label="false negatives")
    ax.set_ylabel("models")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("Predicted instead of measured latency: selection errors vs limit")
    if with_acc:
        ax2 = axes[1, 0]
        ax2.step(curve["limit_ms"], pd.to_numeric(curve["missed_accuracy"], errors="coerce"),
                 where="post", label="missed accuracy")
        ax2.step(curve["limit_ms"], pd.to_numeric(curve["overclaimed_accuracy"], errors="coerce"),
                 where="post", label="over-claimed accuracy")
        ax2.set_ylabel("accuracy")
        ax2.legend(fontsize=8)
        ax2.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("latency limit (ms)")
    return save_figure(fig, path)


__all__ = ["plot_frm", "plot_srcc", "plot_selection"]
