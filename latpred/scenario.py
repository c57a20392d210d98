"""A scenario is what one predictor is trained for (paper §3.1, §4.3.1): device, hardware (a CPU core
configuration or the GPU), precision and runtime with its version.

Its id is a stable string ``device/runtime-version/hardware/precision``, e.g.
``host/litert-2.3.0/cpu1/fp32`` or ``pixel4/tflite-2.9/cpu1L3M/int8`` or ``pixel4/tflite-2.9/gpu/fp16``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import LatpredError
from .ir import ModelGraph

PRECISIONS = ("fp32", "fp16", "int8", "int8w", "unknown")
_ID_RE = re.compile(r"^(?P<device>[\w.-]+)/(?P<runtime>[a-z_]+)-(?P<version>[\w.+-]+)/"
                    r"(?P<hw>gpu|cpu[\w]+)/(?P<precision>\w+)$")


@dataclass(frozen=True)
class Scenario:
    device: str
    hardware: str          # core configuration label ("1", "2", "1L1M") or "gpu"
    precision: str         # fp32 | fp16 | int8 (integer-only) | int8w (int8 weights, float math)
    runtime: str           # litert | onnxruntime | tflite (benchmark tool on a phone)
    runtime_version: str

    @property
    def is_gpu(self) -> bool:
        return self.hardware == "gpu"

    @property
    def id(self) -> str:
        hw = "gpu" if self.is_gpu else f"cpu{self.hardware}"
        return f"{self.device}/{self.runtime}-{self.runtime_version}/{hw}/{self.precision}"

    def __str__(self) -> str:
        return self.id


def parse_scenario(text: str) -> Scenario:
    m = _ID_RE.match(text.strip())
    if not m:
        raise LatpredError(f"scenario {text!r} is not like host/litert-2.3.0/cpu1/fp32")
    hw = m["hw"]
    return Scenario(device=m["device"], hardware="gpu" if hw == "gpu" else hw[3:],
                    precision=m["precision"], runtime=m["runtime"], runtime_version=m["version"])


def model_precision(graph: ModelGraph) -> str:
    """Precision read from the model.

    int8: integer-only inference (quantized activations into convolutions / FC / element-wise);
    int8w: int8 weights with float activations (dynamic-range quantization); fp16: float16 weights
    (dequantized at load); fp32 otherwise."""
    const_dtypes = {t.dtype for op in graph.ops for t in graph.constant_inputs(op)}
    act_dtypes = {t.dtype for op in graph.ops for t in graph.activation_inputs(op)}
    if act_dtypes & {"int8", "uint8", "int16"}:
        return "int8"
    if const_dtypes & {"int8", "uint8"}:
        return "int8w"
    if "float16" in const_dtypes:
        return "fp16"
    return "fp32"
