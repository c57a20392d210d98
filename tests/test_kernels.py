"""CPU kernel features (latpred.cpu.kernels): what they compute, and that cross-validation picks the
channel tile a kernel really uses."""
from __future__ import annotations

import numpy as np

from latpred import categories
from latpred.cpu.kernels import KernelFeatures, kernel_candidates, uses_cpu_kernels
from latpred.features import FEATURES
from latpred.predictors.methods import fit_category, mape
from latpred.scenario import Scenario


def _rows(category, **cols):
    names = FEATURES[category]
    n = len(next(iter(cols.values())))
    X = np.zeros((n, len(names)))
    for k, v in cols.items():
        X[:, names.index(k)] = v
    return X, names


def test_grouped_conv_channels_are_padded_per_group():
    # 8 groups of 4 output channels: each group's GEMM pads 4 channels to a 16-wide tile
    X, names = _rows(categories.GROUPED_CONV2D, filters=[32.0], groups=[8.0], flops=[1000.0],
                     kernel_hw=[3.0], stride=[1.0])
    tiles, padded = KernelFeatures(categories.GROUPED_CONV2D, 16).columns(X, names, None)[0]
    assert tiles == 8 and padded == 4000.0
    # the same channels in one group fill two tiles exactly
    X, names = _rows(categories.CONV2D, filters=[32.0], flops=[1000.0], kernel_hw=[3.0], stride=[1.0])
    tiles, padded, gemm = KernelFeatures(categories.CONV2D, 16).columns(X, names, None)[0]
    assert (tiles, padded, gemm) == (2, 1000.0, 0.0)


def test_conv_paths_and_depthwise_multipass():
    X, names = _rows(categories.CONV2D, filters=[16.0, 16.0, 16.0], flops=[5.0, 6.0, 7.0],
                     kernel_hw=[1.0, 1.0, 3.0], stride=[1.0, 2.0, 1.0])
    gemm = KernelFeatures(categories.CONV2D, 8).columns(X, names, None)[:, -1]
    assert gemm.tolist() == [5.0, 0.0, 0.0]         # only 1x1 stride 1 is a plain GEMM
    X, names = _rows(categories.DEPTHWISE_CONV2D, filters=[24.0] * 3, flops=[1.0, 2.0, 3.0],
                     kernel_hw=[3.0, 5.0, 7.0])
    cols = KernelFeatures(categories.DEPTHWISE_CONV2D, 16).columns(X, names, None)
    assert cols[:, 0].tolist() == [2, 2, 2]                # 24 channels: two 16-channel tiles
    assert cols[:, -1].tolist() == [0.0, 0.0, 3.0]         # only 7x7 exceeds 25 taps


def test_elementwise_cost_class_comes_from_the_op_type():
    X, names = _rows(categories.ELEMENTWISE, input_size=[10.0, 20.0, 30.0])
    cols = KernelFeatures(categories.ELEMENTWISE).columns(X, names, ["RELU", "ADD", "LOGISTIC"])
    assert cols.tolist() == [[0.0, 0.0], [20.0, 0.0], [0.0, 30.0]]


def test_cross_validation_picks_the_tile_that_shapes_latency():
    # Simulated rows (not measurements): latency steps with ceil(filters / 16), as an IGEMM kernel
    # with 16-wide output tiles does. The tile is a hyper-parameter: CV must find 16 and beat the
    # Table 3 features alone on held-out rows.
    rng = np.random.default_rng(0)
    n = 600
    hw = rng.choice([7.0, 14.0, 28.0, 56.0], n)
    cin = rng.integers(8, 96, n).astype(float)
    filters = rng.integers(8, 160, n).astype(float)
    flops = hw * hw * cin * 9 * filters
    latency = 1e-6 * hw * hw * cin * 9 * np.ceil(filters / 16) * 16 * rng.normal(1, 0.01, n)
    X, names = _rows(categories.CONV2D, input_hw=hw, input_c=cin, output_hw=hw, stride=np.ones(n),
                     kernel_hw=np.full(n, 3.0), filters=filters, input_size=hw * hw * cin,
                     output_size=hw * hw * filters, kernel_size=9 * cin * filters, flops=flops)
    train, test = slice(0, 450), slice(450, None)
    grid = {"alpha": [1e-5, 1e-3]}
    tiled = fit_category("lasso", categories.CONV2D, names, X[train], latency[train], grid=grid,
                         kernels=kernel_candidates(categories.CONV2D))
    plain = fit_category("lasso", categories.CONV2D, names, X[train], latency[train], grid=grid)
    assert tiled.kernel == KernelFeatures(categories.CONV2D, 16) and tiled.params["kernel"] == "tile 16"
    assert plain.kernel is None
    err_tiled = mape(latency[test], tiled.predict(X[test]))
    err_plain = mape(latency[test], plain.predict(X[test]))
    assert err_tiled < 0.03 and err_tiled < err_plain / 2, (err_tiled, err_plain)


def test_kernel_features_are_for_cpu_scenarios():
    assert uses_cpu_kernels(Scenario.parse("host/litert-2.3.0/cpu1/fp32"))
    assert not uses_cpu_kernels(Scenario.parse("pixel4/tflite-2.9/gpu/fp16"))
    assert kernel_candidates(categories.CONCAT) == [None]
