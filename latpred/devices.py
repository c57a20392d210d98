"""Device catalog (``latpred/data/devices.json``: the paper's Table 1 plus ``host``) and core
configurations in the paper's notation: ``1L``, ``3M``, ``1L1M``, ``4S`` on phones; ``1``, ``2`` on
the host (N cores of this machine)."""
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
    gpu: str | None = None            # GPU family key used by the kernel rules
    gpu_name: str | None = None

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


@lru_cache(maxsize=1)
def _catalog() -> dict:
    text = resources.files("latpred").joinpath("data/devices.json").read_text()
    return json.loads(text)["devices"]


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
    return [HOST, *_catalog()]


def get_device(key: str) -> Device:
    if key == HOST:
        return host_device()
    cat = _catalog()
    if key not in cat:
        raise LatpredError(f"unknown device {key!r}; known: {', '.join(device_keys())}")
    d = cat[key]
    clusters = {k: Cluster(cores=v["cores"], ghz=v.get("ghz"),
                           cpu_ids=tuple(v["cpu_ids"]) if v.get("cpu_ids") is not None else None)
                for k, v in d["clusters"].items()}
    return Device(key=key, name=d["name"], platform=d["platform"], os=d["os"], clusters=clusters,
                  gpu=d.get("gpu"), gpu_name=d.get("gpu_name"))


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
