"""A scenario is what one predictor is trained for (paper §3.1, §4.3.1): device, runtime and its
version, hardware (a CPU core configuration, or the GPU), precision, and how op latencies were
timed. It is parsed once, from its id, and passed around as this object.

The id is a stable string ``device/runtime-version[+opprof]/hardware/precision``:
``host/litert-2.3.0+opprof/cpu1/fp32``, ``pixel4/tflite-2.9/cpu1L3M/int8``,
``pixel4/tflite-2.9/gpu/fp16`` or, naming the GPU chip, ``x/tflite-2.10/gpu-adreno640/fp16``.

Op timing (part of the id, so the kinds of data are never mixed in one predictor):
- ``opprof``: LiteRT's own profiler inside the full-graph runs (host, version suffix ``+opprof``);
- ``profiler``: a runtime's per-op profiler inside the full-graph run (the TFLite benchmark tool on
  a phone, ONNX Runtime's node profiler);
- ``isolated``: every op timed as its own single-op model (host LiteRT without the suffix).
Profilers report whole microseconds (:attr:`Scenario.op_timer_resolution_ms`).

The host is not one device: the CPU a host scenario was measured on (``cpu``, model and vector
ISA, see :class:`latpred.devices.HostCpu`) travels with the object, but not in the id, so that the
stores keep their ids; :mod:`latpred.store` and ``latpred predict`` compare it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from .errors import LatpredError
from .ir import ModelGraph

PRECISIONS = ("fp32", "fp16", "int8", "int8w", "unknown")   # unknown: a model that could not be read
RUNTIMES = ("litert", "tflite", "onnxruntime")
OP_TIMINGS = ("opprof", "profiler", "isolated")
OPPROF_SUFFIX = "+opprof"
PROFILER_RESOLUTION_MS = 1e-3
_ID_RE = re.compile(r"^(?P<device>[\w.-]+)/(?P<runtime>[a-z_]+)-(?P<version>[\w.+-]+)/"
                    r"(?P<hw>gpu(-[\w.-]+)?|cpu\w+)/(?P<precision>\w+)$")


@dataclass(frozen=True)
class Scenario:
    device: str            # "host" or a phone/board key of the device catalogue
    hardware: str          # core configuration ("1", "2", "1L3M"), "gpu" or "gpu-<chip>"
    precision: str         # fp32 | fp16 | int8 (integer-only) | int8w (int8 weights, float math)
    runtime: str           # litert | tflite (benchmark tool on a phone) | onnxruntime
    runtime_version: str   # as in the id: "2.3.0+opprof" for in-graph LiteRT op timings
    # the host CPU the measurements come from (None: unknown, or not a host scenario)
    cpu: object | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise LatpredError(f"scenario precision {self.precision!r} is not one of "
                               f"{', '.join(PRECISIONS)}")
        if self.runtime not in RUNTIMES:
            raise LatpredError(f"scenario runtime {self.runtime!r} is not one of "
                               f"{', '.join(RUNTIMES)}")
        hw = self.hardware
        if not (hw == "gpu" or hw.startswith("gpu-") or re.fullmatch(r"\d+|(\d+[LMS])+", hw)):
            raise LatpredError(f"scenario hardware {hw!r} is not a core configuration "
                               f"(1, 2, 1L3M) or gpu")

    # -- what it is ---------------------------------------------------------------------------
    @property
    def is_gpu(self) -> bool:
        return self.hardware == "gpu" or self.hardware.startswith("gpu-")

    @property
    def is_host(self) -> bool:
        return self.device == "host"

    @property
    def gpu_chip(self) -> str | None:
        """The GPU chip the id names (``gpu-adreno640``); None for ``gpu`` or a CPU scenario."""
        return self.hardware[4:] if self.hardware.startswith("gpu-") else None

    @property
    def threads(self) -> int | None:
        """Threads of a core configuration (``2`` -> 2, ``1L3M`` -> 4); None on a GPU."""
        if self.is_gpu:
            return None
        return sum(int(n) for n in re.findall(r"\d+", self.hardware))

    @property
    def base_version(self) -> str:
        """The runtime version without the op-timing suffix."""
        v = self.runtime_version
        return v[:-len(OPPROF_SUFFIX)] if v.endswith(OPPROF_SUFFIX) else v

    @property
    def op_timing(self) -> str:
        if self.runtime_version.endswith(OPPROF_SUFFIX):
            return "opprof"
        if self.is_host and self.runtime == "litert":
            return "isolated"
        return "profiler"

    @property
    def op_timer_resolution_ms(self) -> float:
        """Profilers report whole microseconds; isolated timings average many runs of a
        nanosecond clock and have no resolution to speak of (0)."""
        return 0.0 if self.op_timing == "isolated" else PROFILER_RESOLUTION_MS

    # -- naming --------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        hw = self.hardware if self.is_gpu else f"cpu{self.hardware}"
        return f"{self.device}/{self.runtime}-{self.runtime_version}/{hw}/{self.precision}"

    def __str__(self) -> str:
        return self.id

    def describe(self) -> str:
        """The id, and the host CPU where known."""
        return f"{self.id} on {self.cpu}" if self.cpu is not None else self.id

    def with_cpu(self, cpu) -> "Scenario":
        return replace(self, cpu=cpu)

    @classmethod
    def parse(cls, text: "str | Scenario", cpu=None) -> "Scenario":
        """The scenario of an id; anything else is one clear LatpredError (never a default)."""
        if isinstance(text, Scenario):
            return text if cpu is None else text.with_cpu(cpu)
        if not isinstance(text, str):
            raise LatpredError(f"scenario {text!r} is not an id like host/litert-2.3.0/cpu1/fp32")
        m = _ID_RE.match(text.strip())
        if not m:
            raise LatpredError(f"scenario {text!r} is not like host/litert-2.3.0/cpu1/fp32")
        hw = m["hw"]
        return cls(device=m["device"], hardware=hw if hw.startswith("gpu") else hw[3:],
                   precision=m["precision"], runtime=m["runtime"], runtime_version=m["version"],
                   cpu=cpu)


def parse_scenario(text: "str | Scenario", cpu=None) -> Scenario:
    """:meth:`Scenario.parse`."""
    return Scenario.parse(text, cpu)


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
