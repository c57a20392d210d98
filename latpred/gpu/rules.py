"""Rule sets kept as data in ``kernels_rules/``: one folder per TFLite version, plus the GPU catalog.

A rule set is what the TFLite GPU delegate of that version does when it fuses operations and picks
convolution kernels; the Python passes (fusion.py, selection.py) only read these values."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import LatpredError

DEFAULT_TFLITE_VERSION = "2.10"
RULES_DIR = Path(os.environ.get("LATPRED_KERNELS_RULES", Path(__file__).resolve().parents[2] / "kernels_rules"))


@dataclass(frozen=True)
class GpuSpec:
    name: str          # catalog key, e.g. 'mali-g76', or a bare family name
    family: str        # adreno, adreno6xx, mali, powervr, apple, amd, generic
    api: str


@dataclass(frozen=True)
class RuleSet:
    version: str
    fusion: dict
    selection: dict
    support: dict

    @property
    def linkable(self) -> frozenset[str]:
        return frozenset(self.fusion["linkable"]["op_types"])

    @property
    def supported_ops(self) -> frozenset[str]:
        return frozenset(self.support["supported"])

    def winograd_thresholds(self, family: str) -> dict:
        table = self.selection["winograd"]["thresholds"]
        return table.get(family, table["generic"])


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise LatpredError(f"kernel rules file missing: {path}") from None
    except json.JSONDecodeError as exc:
        raise LatpredError(f"kernel rules file {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None


def available_versions() -> list[str]:
    if not RULES_DIR.is_dir():
        return []
    return sorted(p.name[len("tflite-"):] for p in RULES_DIR.iterdir()
                  if p.is_dir() and p.name.startswith("tflite-"))


@lru_cache(maxsize=None)
def load_rules(tflite_version: str = DEFAULT_TFLITE_VERSION) -> RuleSet:
    """The rule set replaying TFLite ``tflite_version`` (e.g. '2.10')."""
    version = str(tflite_version).strip()
    if version.startswith("v"):
        version = version[1:]
    folder = RULES_DIR / f"tflite-{version}"
    if not folder.is_dir():
        have = ", ".join(available_versions()) or "none"
        raise LatpredError(f"no kernel rules for TFLite version {tflite_version!r} (available: {have})")
    return RuleSet(version=version, fusion=_load_json(folder / "fusion.json"),
                   selection=_load_json(folder / "selection.json"),
                   support=_load_json(folder / "gpu_support.json"))


@lru_cache(maxsize=None)
def _catalog() -> dict:
    return _load_json(RULES_DIR / "gpus.json")


def known_gpus() -> list[str]:
    return sorted(_catalog()["gpus"])


def resolve_gpu(name: str) -> GpuSpec:
    """Catalog name (``mali-g76``), phone alias (``pixel4``) or bare family (``adreno6xx``)."""
    if isinstance(name, GpuSpec):
        return name
    key = str(name).strip().lower().replace("_", "-").replace(" ", "-")
    cat = _catalog()
    gpus = cat["gpus"]
    if key in gpus:
        g = gpus[key]
        return GpuSpec(key, g["family"], g.get("api", "opencl"))
    squash = key.replace("-", "")
    for gname, g in gpus.items():
        if squash in {a.replace("-", "") for a in [gname, *g.get("aliases", ())]}:
            return GpuSpec(gname, g["family"], g.get("api", "opencl"))
    families = {k for k in cat.get("generic_families", {}) if not k.startswith("_")}
    if key in families:
        return GpuSpec(key, key, "metal" if key == "apple" else "opencl")
    raise LatpredError(f"unknown GPU {name!r}; known: {', '.join(known_gpus())} "
                       f"(or a family: {', '.join(sorted(families))})")
