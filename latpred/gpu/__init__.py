"""GPU kernel deduction (paper §3.2, §4.1): replay TFLite GPU delegate fusion and kernel selection
from rules kept as data in ``latpred/kernels_rules/``, and predict GPU latency per deduced kernel."""
from .kernels import Kernel, KernelGraph, deduce_kernels, kernel_feature_rows
from .rules import DEFAULT_TFLITE_VERSION, GpuSpec, RuleSet, available_versions, known_gpus, load_rules, resolve_gpu
from .predict import GpuPrediction, gpu_training_rows, predict_gpu

__all__ = ["Kernel", "KernelGraph", "deduce_kernels", "kernel_feature_rows", "DEFAULT_TFLITE_VERSION",
           "GpuSpec", "RuleSet", "available_versions", "known_gpus", "load_rules", "resolve_gpu",
           "GpuPrediction", "gpu_training_rows", "predict_gpu"]
