"""nn-Meter-style kernel latency predictors, trained on our measurements as the paper did (§5.6.1).

Reference (read, not copied): microsoft/nn-Meter
- features per kernel: ``nn_meter/predictor/prediction/extract_feature.py`` (get_predict_features)
  and ``nn_meter/builder/kernel_predictor_builder/utils.py`` (config_for_kernel);
- random-forest settings per kernel and backend: ``nn_meter/builder/kernel_predictor_builder/
  predictor_builder/predictor_lib.py`` (__PREDICTOR_ZOO__ ``tflite_cpu`` / ``tflite_gpu``, and the
  default forest of ``init_predictor`` for kernel types not in the zoo).

What is kept from nn-Meter: one random forest per kernel type on its own small feature vector, plain
squared error on latency (ms), end-to-end = Σ kernel predictions — no overhead term, no GPU kernel
selection. Notably its convolution features ignore groups: FLOPs and parameters are those of a dense
convolution, so a grouped conv looks like a plain one (the paper's §5.6.1 criticism).

Mapping our stored op rows (Table 3 features) onto nn-Meter kernels:
  Conv2D, GroupedConv2D -> conv      [HW, CIN, COUT, KS, S, FLOPs/2e6, PARAMs/1e6]
  DepthwiseConv2D       -> dwconv    [HW, CIN, COUT, KS, S, FLOPs/2e6, PARAMs/1e6]
  FullyConnected        -> fc        [CIN, COUT, FLOPs/2e6, FLOPs/1e6]
  Pooling               -> maxpool / avgpool (by op type) [HW, CIN, COUT, KS, S]
  Mean                  -> global-avgpool [HW, CIN]
  Split                 -> split     [HW, CIN]
  Concat                -> concat    [HW, N, C1..C4] (0-padded; >4 inputs: first 4 and N=6, as
                                      nn-Meter). The store keeps the total input channels only, so
                                      each Ci = total / N (equal parts; an approximation).
  ElementWise binary    -> add       [HW, CIN, CIN]
  ElementWise HARD_SWISH-> hswish    [HW, CIN];  other element-wise -> relu [HW, CIN]
  Padding, Other        -> no nn-Meter kernel: nn-Meter's default forest on [HW, CIN] (Padding) or
                                      [input size, output size] (Other), rather than predicting 0.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .. import categories

# nn-Meter predictor_lib.py, tflite_cpu / tflite_gpu (max_depth, n_estimators, max_features);
# all use min_samples_leaf=1, min_samples_split=2, random_state=10.
RF_SETTINGS = {
    "tflite_cpu": {
        "conv": (70, 320, 6), "dwconv": (50, 240, 6), "fc": (50, 370, 2),
        "maxpool": (50, 210, 5), "avgpool": (50, 370, 5), "global-avgpool": (70, 370, 2),
        "split": (50, 190, 2), "concat": (100, 690, 5), "add": (50, 570, 3),
        "relu": (50, 370, 2), "hswish": (50, 190, 2),
    },
    "tflite_gpu": {
        "conv": (80, 550, 5), "dwconv": (40, 240, 7), "fc": (70, 330, 4),
        "maxpool": (50, 370, 5), "avgpool": (50, 370, 5), "add": (50, 570, 3),
        "relu": (50, 190, 2), "hswish": (50, 190, 2), "concat": (100, 690, 5),
    },
}
# init_predictor's fallback forest (max_features "auto" == all features for a regressor).
DEFAULT_RF = (50, 370, None)
RANDOM_STATE = 10


def _col(ops: pd.DataFrame, name: str) -> np.ndarray:
    if name not in ops:
        return np.zeros(len(ops))
    return ops[name].fillna(0.0).to_numpy(np.float64)


def kernel_type(category: str, op_type: str) -> str:
    """The nn-Meter kernel type an op of ``category``/``op_type`` is predicted with."""
    if category in (categories.CONV2D, categories.GROUPED_CONV2D):
        return "conv"
    if category == categories.DEPTHWISE_CONV2D:
        return "dwconv"
    if category == categories.FULLY_CONNECTED:
        return "fc"
    if category == categories.POOLING:
        return "maxpool" if "max" in str(op_type).lower() else "avgpool"
    if category == categories.MEAN:
        return "global-avgpool"
    if category == categories.SPLIT:
        return "split"
    if category == categories.CONCAT:
        return "concat"
    if category == categories.ELEMENTWISE:
        if op_type in categories.BINARY_ELEMENTWISE_TYPES:
            return "add"
        return "hswish" if str(op_type).upper() in ("HARD_SWISH", "HARDSWISH") else "relu"
    if category == categories.PADDING:
        return "pad"
    return "other"


def nnmeter_features(ops: pd.DataFrame, kernel: str) -> np.ndarray:
    """nn-Meter's feature vectors for op rows of one kernel type (see the module docstring)."""
    hw, cin = _col(ops, "input_hw"), _col(ops, "input_c")
    cout, ks, s = _col(ops, "filters"), _col(ops, "kernel_hw"), np.maximum(_col(ops, "stride"), 1)
    if kernel in ("conv", "dwconv"):
        # nn_meter.utils get_conv_flop_params / get_dwconv_flop_params: dense, bias included
        params = cout * (ks * ks * (cin if kernel == "conv" else 1) + 1)
        flops = 2 * (hw / s) * (hw / s) * params
        return np.column_stack([hw, cin, cout, ks, s, flops / 2e6, params / 1e6])
    if kernel == "fc":
        flop = (2 * cin + 1) * cout
        return np.column_stack([cin, cout, flop / 2e6, flop / 1e6])
    if kernel in ("maxpool", "avgpool"):
        return np.column_stack([hw, cin, cin, ks, s])
    if kernel == "concat":
        n = np.maximum(_col(ops, "num_parts"), 1)
        per = cin / n
        cols = [np.where(n > i, per, 0.0) for i in range(4)]
        return np.column_stack([hw, np.where(n > 4, 6.0, n), *cols])
    if kernel == "add":
        return np.column_stack([hw, cin, cin])
    if kernel == "other":
        return np.column_stack([_col(ops, "input_size"), _col(ops, "output_size")])
    return np.column_stack([hw, cin])   # global-avgpool, split, relu, hswish, pad


class NnMeterBaseline:
    name = "nnmeter"

    def __init__(self, gpu: bool = False, n_jobs: int = 1, n_estimators_cap: int | None = None):
        """``n_estimators_cap`` (quick runs only) caps the forest sizes; None keeps nn-Meter's."""
        self.backend = "tflite_gpu" if gpu else "tflite_cpu"
        self.n_jobs = n_jobs
        self.n_estimators_cap = n_estimators_cap
        self.forests: dict[str, object] = {}
        self.fallback_ms: dict[str, float] = {}
        self.global_fallback_ms = float("nan")

    def _forest(self, kernel: str, n_features: int):
        from sklearn.ensemble import RandomForestRegressor
        depth, n_est, max_feat = RF_SETTINGS[self.backend].get(kernel, DEFAULT_RF)
        if self.n_estimators_cap:
            n_est = min(n_est, self.n_estimators_cap)
        max_feat = 1.0 if max_feat is None else min(max_feat, n_features)
        return RandomForestRegressor(max_depth=depth, n_estimators=n_est, min_samples_leaf=1,
                                     min_samples_split=2, max_features=max_feat,
                                     random_state=RANDOM_STATE, n_jobs=self.n_jobs)

    @staticmethod
    def _kernels(ops: pd.DataFrame) -> np.ndarray:
        return np.array([kernel_type(c, t) for c, t in zip(ops["category"], ops["op_type"])],
                        dtype=object)

    def fit(self, train_ops: pd.DataFrame) -> "NnMeterBaseline":
        train_ops = train_ops[train_ops["latency_ms"] > 0]
        kernels = self._kernels(train_ops)
        y_all = train_ops["latency_ms"].to_numpy(np.float64)
        self.global_fallback_ms = float(np.median(y_all))
        for k in sorted(set(kernels)):
            rows = kernels == k
            y = y_all[rows]
            self.fallback_ms[k] = float(np.median(y))
            if rows.sum() < 2:
                continue
            X = nnmeter_features(train_ops[rows], k)
            rf = self._forest(k, X.shape[1])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rf.fit(X, y)
            self.forests[k] = rf
        return self

    def predict_ops(self, ops: pd.DataFrame) -> np.ndarray:
        kernels = self._kernels(ops)
        out = np.full(len(ops), self.global_fallback_ms)
        for k in set(kernels):
            rows = kernels == k
            if k in self.forests:
                out[rows] = self.forests[k].predict(nnmeter_features(ops[rows], k))
            elif k in self.fallback_ms:
                out[rows] = self.fallback_ms[k]
        return out

    def predict_models(self, ops: pd.DataFrame) -> pd.Series:
        from . import sum_by_model
        return sum_by_model(ops, self.predict_ops(ops))
