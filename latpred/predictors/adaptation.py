"""What an adapted bundle holds and how prediction applies it (plain data; the fit is in
:mod:`latpred.predictors.adapt`). Kept apart so that prediction and bundle loading need nothing of
the fitting side."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..categories import CONV_CATEGORIES, ELEMENTWISE

WORK_TERMS = ("flops", "bytes", "count")
_CONV_LIKE = set(CONV_CATEGORIES) | {"Winograd"}


def adaptation_group(category: str, op_type: str, features: dict[str, float]) -> str:
    """The group whose scale an op shares on the target. Convolutions split 1x1 from larger
    kernels (a DSP or a Winograd GPU kernel speeds them up unequally); element-wise ops split by
    type (an ADD of two maps and a ReLU differ in memory traffic, and runtimes fuse them
    differently)."""
    if category in _CONV_LIKE or "conv" in category.lower():
        k = features.get("kernel_hw", 0.0) or 0.0
        return f"{category}:{'1x1' if k <= 1 else 'kxk'}"
    if category == ELEMENTWISE:
        return f"{category}:{op_type}"
    return category


def op_work(features: dict[str, float]) -> tuple[float, float, float]:
    """An op's work terms (``WORK_TERMS``): FLOPs, elements moved (input + output), 1."""
    return (float(features.get("flops", 0.0) or 0.0),
            float(features.get("input_size", 0.0) or 0.0)
            + float(features.get("output_size", 0.0) or 0.0), 1.0)


def apply_adaptation(adaptation: dict, rows, latency: np.ndarray, fused: np.ndarray
                     ) -> np.ndarray:
    """Per-row adapted latency from the prior's per-row latency (``to_dict`` layout).

    A group's optional ``work_range`` bounds an op's work per prior millisecond to what the K
    adaptation models' ops had; inside it the latency is the fitted linear form unchanged."""
    groups = adaptation["coefficients"]["groups"]
    default = float(adaptation["coefficients"]["default_scale"])
    out = np.zeros(len(latency))
    for pos, r in enumerate(rows):
        if fused[pos]:
            continue
        g = groups.get(adaptation_group(r.category, r.type, r.features))
        if g is None:
            out[pos] = default * latency[pos]
            continue
        prior = float(latency[pos])
        work = op_work(r.features)
        bounds = g.get("work_range")
        if bounds is not None and prior > 0:
            work = tuple(prior * min(max(w / prior, lo), hi) for w, (lo, hi) in zip(work, bounds))
        out[pos] = g["scale"] * prior + sum(g[f"ms_per_{t}"] * w
                                            for t, w in zip(WORK_TERMS, work))
    return out


def check_adaptation(d: Any) -> dict:
    """An adaptation section read from a bundle file: every number finite and >= 0."""
    if not isinstance(d, dict) or not isinstance(d.get("coefficients"), dict):
        raise ValueError("adaptation has no coefficients")
    c = d["coefficients"]
    for key in ("overhead_ms", "default_scale"):
        v = c.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or v < 0:
            raise ValueError(f"adaptation {key} is not a finite number >= 0")
    groups = c.get("groups")
    if not isinstance(groups, dict):
        raise ValueError("adaptation groups are not a mapping")
    for g, terms in groups.items():
        if not isinstance(terms, dict):
            raise ValueError(f"adaptation group {g!r} is not a mapping")
        for key in ("scale", *(f"ms_per_{t}" for t in WORK_TERMS)):
            v = terms.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0:
                raise ValueError(f"adaptation group {g!r}: {key} is not a finite number >= 0")
        bounds = terms.get("work_range")
        if bounds is not None and not _valid_range(bounds):
            raise ValueError(f"adaptation group {g!r}: work_range is not {len(WORK_TERMS)} "
                             "pairs of finite numbers 0 <= low <= high")
    return d


def _valid_range(bounds: Any) -> bool:
    if not isinstance(bounds, list) or len(bounds) != len(WORK_TERMS):
        return False
    for pair in bounds:
        if not isinstance(pair, list) or len(pair) != 2:
            return False
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
               or v < 0 for v in pair) or pair[0] > pair[1]:
            return False
    return True
