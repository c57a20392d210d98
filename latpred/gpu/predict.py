"""End-to-end GPU latency: Σ predicted kernel latencies + the scenario's framework overhead (paper
§4.2 applied to the kernels deduced by :func:`deduce_kernels`), and training rows keyed by kernel type."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..features import ALL_FEATURES
from ..ir import ModelGraph
from .kernels import KernelGraph, deduce_kernels, kernel_feature_rows
from .rules import DEFAULT_TFLITE_VERSION


@dataclass
class GpuPrediction:
    e2e_ms: float                  # GPU kernels + overhead (CPU fallback ops are not included)
    kernels_ms: list[float]        # one per kernel, in kernel order
    overhead_ms: float
    kernel_graph: KernelGraph
    cpu_fallback_ops: list[int] = field(default_factory=list)

    @property
    def by_category(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for k, ms in zip(self.kernel_graph.kernels, self.kernels_ms):
            out[k.category] = out.get(k.category, 0.0) + ms
        return out


def predict_gpu(predictor, graph: ModelGraph, gpu, tflite_version: str = DEFAULT_TFLITE_VERSION,
                fusion: bool = True, selection: bool = True,
                overhead_ms: float | None = None) -> GpuPrediction:
    """Predict a model's latency on ``gpu`` with a predictor trained on kernel-level GPU rows.

    ``predictor`` (a :class:`latpred.predictors.Predictor`) gets (category, features) rows, one
    per deduced kernel. The overhead is ``overhead_ms`` when given, else the bundle's own."""
    kg = deduce_kernels(graph, gpu, tflite_version=tflite_version, fusion=fusion, selection=selection)
    rows = kernel_feature_rows(graph, kg)
    preds = [float(x) for x in predictor.predict_rows(rows)] if rows else []
    over = float(overhead_ms) if overhead_ms is not None else \
        float(predictor.bundle.overhead_for(sum(preds)))
    return GpuPrediction(e2e_ms=sum(preds) + over, kernels_ms=preds, overhead_ms=over, kernel_graph=kg,
                         cpu_fallback_ops=list(kg.cpu_fallback_ops))


def gpu_training_rows(graph: ModelGraph, kernel_graph: KernelGraph, kernel_latencies_ms: list[float],
                      model: str, scenario: str, e2e_ms: float) -> list[dict]:
    """Training rows (the predictors' DataFrame schema) from per-kernel latencies of one GPU run,
    in kernel order. ``op_index`` is the kernel's main op; ``category`` the kernel type."""
    if len(kernel_latencies_ms) != len(kernel_graph.kernels):
        from ..errors import LatpredError
        raise LatpredError(f"{model}: {len(kernel_latencies_ms)} kernel latencies for "
                           f"{len(kernel_graph.kernels)} deduced kernels on {kernel_graph.gpu.name}")
    out = []
    for k, (cat, feats), ms in zip(kernel_graph.kernels, kernel_feature_rows(graph, kernel_graph),
                                   kernel_latencies_ms):
        row = {"model": model, "scenario": scenario, "op_index": k.main_op, "category": cat,
               "latency_ms": float(ms), "e2e_ms": float(e2e_ms)}
        row.update({f: float(feats.get(f, 0.0)) for f in ALL_FEATURES})
        out.append(row)
    return out
