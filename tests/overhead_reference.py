"""Independent reference for the default ('linear') overhead, shared by the tests."""
import numpy as np


def weighted_line_overhead(e2e, ops) -> tuple[float, float]:
    """(fixed ms, share) from numpy's weighted polyfit of the gap on Σ ops (polyfit's ``w`` scales
    residuals, so w = 1/e2e gives the MSPE weights 1/e2e^2), or the weighted mean gap and 0 when
    the fitted share is not positive; a negative fixed part gives the weighted line through the
    origin (numpy's lstsq on the weighted share alone)."""
    e2e, ops = np.asarray(e2e, dtype=np.float64), np.asarray(ops, dtype=np.float64)
    gap = e2e - ops
    share, fixed = np.polyfit(ops, gap, 1, w=1 / e2e)
    if share <= 0:
        return float(np.sum(gap / e2e ** 2) / np.sum(1 / e2e ** 2)), 0.0
    if fixed < 0:
        w = 1 / e2e
        (share,), *_ = np.linalg.lstsq((ops * w)[:, None], gap * w, rcond=None)
        return 0.0, float(max(share, 0.0))
    return float(fixed), float(share)
