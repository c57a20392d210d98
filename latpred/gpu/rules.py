"""Rule sets kept as package data in ``latpred/kernels_rules/``, one folder per TFLite version. GPUs
(chip -> family) come from the device catalog, :mod:`latpred.devices`.

A rule set is what the TFLite GPU delegate of that version does when it fuses operations and picks
convolution kernels; the Python passes (fusion.py, selection.py) only read these values."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ..devices import GpuSpec
from ..devices import get_gpu as resolve_gpu
from ..devices import gpu_keys as known_gpus
from ..errors import LatpredError

__all__ = ["DEFAULT_TFLITE_VERSION", "GpuSpec", "RuleSet", "available_versions", "known_gpus",
           "load_rules", "resolve_gpu"]

DEFAULT_TFLITE_VERSION = "2.10"


def _rules_dir():
    # Package data: found the same way in a checkout, an editable and a wheel install.
    return resources.files("latpred").joinpath("kernels_rules")


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


def _load_json(path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LatpredError(f"kernel rules file missing: {path}") from None
    except json.JSONDecodeError as exc:
        raise LatpredError(f"kernel rules file {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None


def available_versions() -> list[str]:
    root = _rules_dir()
    if not root.is_dir():
        return []
    return sorted(p.name[len("tflite-"):] for p in root.iterdir()
                  if p.is_dir() and p.name.startswith("tflite-"))


@lru_cache(maxsize=None)
def load_rules(tflite_version: str = DEFAULT_TFLITE_VERSION) -> RuleSet:
    """The rule set replaying TFLite ``tflite_version`` (e.g. '2.10')."""
    version = str(tflite_version).strip()
    if version.startswith("v"):
        version = version[1:]
    folder = _rules_dir().joinpath(f"tflite-{version}")
    if not folder.is_dir():
        have = ", ".join(available_versions()) or "none"
        raise LatpredError(f"no kernel rules for TFLite version {tflite_version!r} (available: {have})")
    return RuleSet(version=version, fusion=_load_json(folder / "fusion.json"),
                   selection=_load_json(folder / "selection.json"),
                   support=_load_json(folder / "gpu_support.json"))
