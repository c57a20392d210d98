"""Device catalog (``latpred/data/devices.json``: the paper's Table 1 plus ``host``, and the GPU
chips those phones carry) and core configurations in the paper's notation: ``1L``, ``3M``, ``1L1M``,
``4S`` on phones; ``1``, ``2`` on the host (N cores of this machine)."""
from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from .errors import LatpredError

HOST = "host"
CLUSTER_ORDER = ("L", "M", "S")
_CONFIG_RE = re.compile(r"(\d+)([LMS])")


@dataclass(frozen=True)
class Cluster:
    cores: int
    ghz: float | None
    cpu_ids: tuple[int, ...] | None   # None on iOS (no affinity there)


@dataclass(frozen=True)
class Device:
    key: str
    name: str
    platform: str
    os: str                           # android | ios | linux (host)
    clusters: dict[str, Cluster] = field(default_factory=dict)
    gpu: str | None = None            # GPU chip key (get_gpu)
    gpu_name: str | None = None       # the chip's full name, from the GPU catalog

    @property
    def total_cores(self) -> int:
        return sum(c.cores for c in self.clusters.values())


@dataclass(frozen=True)
class CoreConfig:
    """A CPU core configuration: its label (paper notation), the CPUs to pin and the thread count."""
    label: str
    cpu_ids: tuple[int, ...] | None
    threads: int

    @property
    def cpu_mask(self) -> str:
        """Hex affinity mask for ``taskset`` (e.g. cpus 4-7 -> 'f0')."""
        if not self.cpu_ids:
            raise LatpredError(f"core configuration {self.label} has no CPU ids to pin")
        return format(sum(1 << i for i in self.cpu_ids), "x")


@dataclass(frozen=True)
class GpuSpec:
    """A GPU as the kernel rules see it: a chip of the catalog or a bare family."""
    name: str          # chip key, e.g. 'mali-g76', or a bare family name
    family: str        # adreno, adreno6xx, mali, powervr, apple, amd, generic
    api: str           # opencl | metal
    title: str | None = None


@lru_cache(maxsize=1)
def _catalog() -> dict:
    text = resources.files("latpred").joinpath("data/devices.json").read_text()
    return json.loads(text)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_cpus() -> list[int]:
    """CPUs this process may run on (respects cgroup/affinity limits, unlike os.cpu_count)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        return list(range(os.cpu_count() or 1))


def host_device() -> Device:
    cpus = host_cpus()
    return Device(key=HOST, name=platform.node() or "host", platform=cpu_model(), os="linux",
                  clusters={"host": Cluster(cores=len(cpus), ghz=None, cpu_ids=tuple(cpus))})


def device_keys() -> list[str]:
    return [HOST, *_catalog()["devices"]]


def get_device(key: str) -> Device:
    if key == HOST:
        return host_device()
    cat = _catalog()["devices"]
    if key not in cat:
        raise LatpredError(f"unknown device {key!r}; known: {', '.join(device_keys())}")
    d = cat[key]
    clusters = {k: Cluster(cores=v["cores"], ghz=v.get("ghz"),
                           cpu_ids=tuple(v["cpu_ids"]) if v.get("cpu_ids") is not None else None)
                for k, v in d["clusters"].items()}
    gpu = d.get("gpu")
    return Device(key=key, name=d["name"], platform=d["platform"], os=d["os"], clusters=clusters,
                  gpu=gpu, gpu_name=get_gpu(gpu).title if gpu else None)


def _entries(section: str) -> dict:
    return {k: v for k, v in _catalog()[section].items() if not k.startswith("_")}


def gpu_keys() -> list[str]:
    """GPU chip keys of the catalog (adreno640, mali-g76, ...)."""
    return sorted(_entries("gpus"))


def gpu_families() -> list[str]:
    return sorted(_entries("gpu_families"))


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


def get_gpu(name: str) -> GpuSpec:
    """A GPU chip key (``mali-g76``), a phone (key ``pixel4``, name or SoC: ``Galaxy S10``,
    ``snapdragon855``) or a bare family (``adreno6xx``)."""
    if isinstance(name, GpuSpec):
        return name
    chips, squash = _entries("gpus"), _squash(name)   # 'Mali G76', 'Galaxy_S10' match too
    chip = next((k for k in chips if _squash(k) == squash), None)
    if chip is None:   # a phone: its GPU is recorded only on the device entry
        chip = next((d["gpu"] for k, d in _catalog()["devices"].items() if d.get("gpu") and squash in
                     {_squash(k), _squash(d["name"]), _squash(d["platform"])}), None)
    if chip is not None:
        if chip not in chips:
            raise LatpredError(f"devices.json: GPU {chip!r} of {name!r} is not in the GPU catalog")
        c = chips[chip]
        return GpuSpec(chip, c["family"], c.get("api", "opencl"), c.get("name"))
    if squash in gpu_families():
        return GpuSpec(squash, squash, "metal" if squash == "apple" else "opencl")
    phones = [k for k, d in _catalog()["devices"].items() if d.get("gpu")]
    raise LatpredError(f"unknown GPU {name!r}; known GPUs: {', '.join(gpu_keys())}; "
                       f"phones: {', '.join(phones)}; families: {', '.join(gpu_families())}")


def core_config(device: Device | str, spec: str | int) -> CoreConfig:
    """Parse a core configuration for a device: ``2`` on the host, ``1L1M`` on a phone."""
    dev = get_device(device) if isinstance(device, str) else device
    text = str(spec).strip()
    if dev.key == HOST:
        if not text.isdigit() or int(text) < 1:
            raise LatpredError(f"host core configuration must be a number of cores, got {spec!r}")
        n = int(text)
        cpus = dev.clusters["host"].cpu_ids or ()
        if n > len(cpus):
            raise LatpredError(f"asked for {n} cores but this machine offers {len(cpus)}")
        return CoreConfig(label=str(n), cpu_ids=tuple(cpus[:n]), threads=n)
    parts = _CONFIG_RE.findall(text.upper())
    if not parts or "".join(f"{n}{c}" for n, c in parts) != text.upper():
        raise LatpredError(f"core configuration {spec!r} is not like 1L, 3M, 1L1M or 4S")
    ids: list[int] = []
    counts: dict[str, int] = {}
    for n, c in parts:
        counts[c] = counts.get(c, 0) + int(n)
    for c in CLUSTER_ORDER:
        if c not in counts:
            continue
        cl = dev.clusters.get(c)
        if cl is None:
            raise LatpredError(f"{dev.name} has no {c} cluster (has {', '.join(dev.clusters)})")
        if counts[c] > cl.cores or counts[c] < 1:
            raise LatpredError(f"{dev.name} has {cl.cores} {c} core(s), asked for {counts[c]}")
        if cl.cpu_ids is not None:
            ids.extend(cl.cpu_ids[:counts[c]])
    label = "".join(f"{counts[c]}{c}" for c in CLUSTER_ORDER if c in counts)
    return CoreConfig(label=label, cpu_ids=tuple(ids) if ids else None,
                      threads=sum(counts.values()))


# -- the host CPU -------------------------------------------------------------------------------
# The host is not one device: machines of one cloud type have been different CPU generations (one
# with AVX-512, one without), and XNNPACK picks other micro-kernels on each, so measurements of two
# CPUs must never feed one predictor.
ISA_ORDER = (("avx512f", "avx512"), ("avx2", "avx2"), ("avx", "avx"), ("sse4_2", "sse4"),
             ("sve", "sve"), ("asimd", "neon"), ("neon", "neon"))


@dataclass(frozen=True)
class HostCpu:
    """A host CPU as measurements record it: model name, widest vector ISA XNNPACK can use, and
    the x86 family/model numbers; '' where a record does not say (stores made before these were
    recorded hold the model name only)."""
    model: str
    isa: str = ""
    family: str = ""
    model_number: str = ""

    def __str__(self) -> str:
        ids = "/".join(x for x in (self.family, self.model_number) if x)
        extra = ", ".join(x for x in (self.isa, f"family/model {ids}" if ids else "") if x)
        return f"{self.model} ({extra})" if extra else self.model

    def differs_from(self, other: "HostCpu") -> bool:
        """True when the two records are known to be different CPUs: fields that both give
        disagree. A record without the ISA is not taken for a match or a mismatch on it."""
        return any(a and b and a != b for a, b in (
            (self.model, other.model), (self.isa, other.isa), (self.family, other.family),
            (self.model_number, other.model_number)))

    def facts(self) -> dict:
        """Fields for a store's machine record (``cpu_model`` keeps its historical name)."""
        return {"cpu_model": self.model, "cpu_isa": self.isa, "cpu_family": self.family,
                "cpu_model_number": self.model_number}

    @classmethod
    def from_facts(cls, facts: dict | None) -> "HostCpu | None":
        facts = facts or {}
        model = str(facts.get("cpu_model") or facts.get("cpu") or "")
        if not model:
            return None
        return cls(model=model, isa=str(facts.get("cpu_isa") or ""),
                   family=str(facts.get("cpu_family") or ""),
                   model_number=str(facts.get("cpu_model_number") or ""))


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    if out:
                        break
                    continue
                key, _, value = line.partition(":")
                out.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    return out


@lru_cache(maxsize=1)
def this_cpu() -> HostCpu:
    """This machine's CPU."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("features") or "").split())
    isa = next((name for flag, name in ISA_ORDER if flag in flags), "")
    return HostCpu(model=cpu_model(), isa=isa, family=info.get("cpu family", ""),
                   model_number=info.get("model", "") if "cpu family" in info else "")
