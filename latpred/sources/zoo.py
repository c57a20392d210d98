"""The paper's real-world CNNs (§5.3; the paper counts 102, the authors' scripts name 104), built from imgclsmob's TensorFlow port ``tf2cv`` with
random weights (``pretrained=False``: nothing is downloaded) at 224x224, then exported like the NAS
models (see ``export``). A model that cannot be built or converted is recorded in the manifest with
its reason, never dropped silently.

Manifest columns: name, family (tf2cv module), source, status (pending / built / failed), reason,
and one column per artefact (fp32_tflite, int8_tflite, fp32_onnx) holding built / failed / blank.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ..errors import LatpredError
from .export import (artefact_path, atomic_write_bytes, atomic_write_text, check_target,
                     export_model, run_jobs)

SOURCE = "imgclsmob tf2cv 0.0.18"
INPUT_SHAPE = (224, 224, 3)
# The set named by the paper authors' comparison scripts: 104 names; order kept.
REAL_WORLD_NAMES = tuple("""
bagnet9 bninception darknet_tiny darknet19 densenet121 densenet169 diracnet18v2 dla46c
efficientnet_edge_small_b efficientnet_edge_medium_b efficientnet_edge_large_b fbnet_cb
fdmobilenet_w1 fdmobilenet_w3d4 fdmobilenet_wd2 fdmobilenet_wd4 ghostnet hardnet39ds hardnet68ds
hrnet_w18_small_v1 hrnet_w18_small_v2 mnasnet_b1 mnasnet_a1 mobilenet_w1 mobilenet_w3d4
mobilenet_wd2 mobilenet_wd4 mobilenetb_w1 mobilenetb_w3d4 mobilenetb_wd2 mobilenetb_wd4
mobilenetv2_w1 mobilenetv2_w3d4 mobilenetv2_wd2 mobilenetv2_wd4 mobilenetv2b_w1 mobilenetv2b_w3d4
mobilenetv2b_wd2 mobilenetv2b_wd4 mobilenetv3_small_w7d20 mobilenetv3_small_wd2
mobilenetv3_small_w3d4 mobilenetv3_small_w1 mobilenetv3_small_w5d4 mobilenetv3_large_w7d20
mobilenetv3_large_wd2 mobilenetv3_large_w3d4 mobilenetv3_large_w1 mobilenetv3_large_w5d4 peleenet
preresnet10 preresnet12 preresnet14 preresnetbc14b preresnet16 preresnet18_wd4 preresnet18_wd2
preresnet18_w3d4 preresnet18 preresnetbc26b proxylessnas_cpu proxylessnas_gpu proxylessnas_mobile
proxylessnas_mobile14 regnetx002 regnetx004 regnetx006 regnetx008 regnetx016 regnety002 regnety004
regnety006 regnety008 regnety016 resnet10 resnet12 resnet14 resnetbc14b resnet16 resnet18_wd4
resnet18_wd2 resnet18_w3d4 resnet18 resnetbc26b resnext14_16x4d resnext14_32x4d resnext26_16x4d
resnext26_32x4d sepreresnet10 sepreresnet12 sepreresnet14 sepreresnet16 sepreresnet18 seresnet10
seresnet12 seresnet14 seresnet16 seresnet18 spnasnet squeezenet_v1_0 squeezenet_v1_1
squeezeresnet_v1_0 squeezeresnet_v1_1 vovnet27s
""".split())

MANIFEST_PATH = Path(__file__).resolve().parents[2] / "datasets" / "zoo" / "manifest.csv"
ARTEFACTS = {("fp32", "tflite"): "fp32_tflite", ("int8", "tflite"): "int8_tflite",
             ("fp32", "onnx"): "fp32_onnx"}
COLUMNS = ("name", "family", "source", "status", "reason", *ARTEFACTS.values())


# -- manifest ------------------------------------------------------------------------------------
def family_of(name: str) -> str:
    """tf2cv module that defines the model (e.g. 'resnet'); imports tf2cv, hence TensorFlow."""
    from tf2cv.model_provider import _models
    from .keras_build import import_tf
    import_tf()
    if name not in _models:
        raise LatpredError(f"tf2cv has no model named {name!r}")
    return _models[name].__module__.rsplit(".", 1)[-1]


def default_manifest(fresh: bool = False) -> list[dict[str, str]]:
    """Rows of the packaged manifest (statuses of the reference run), or, with ``fresh``, the same
    names and families with every status pending (for a new output folder)."""
    rows = (read_manifest(MANIFEST_PATH) if MANIFEST_PATH.exists()
            else [_new_row(n, "") for n in REAL_WORLD_NAMES])
    return [_new_row(r["name"], r["family"]) for r in rows] if fresh else rows


def _new_row(name: str, family: str) -> dict[str, str]:
    row = dict.fromkeys(COLUMNS, "")
    row.update(name=name, family=family, source=SOURCE, status="pending")
    return row


def read_manifest(path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise LatpredError(f"cannot read zoo manifest {path}: {exc.strerror}") from None
    if rows and "name" not in rows[0]:
        raise LatpredError(f"zoo manifest {path} has no 'name' column")
    return [{c: (r.get(c) or "") for c in COLUMNS} for r in rows]


def write_manifest(path, rows: list[dict[str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _summarise(row: dict[str, str]) -> None:
    """Overall status from the artefact columns: failed if any failed, built if any built."""
    states = [row[c] for c in ARTEFACTS.values()]
    row["status"] = ("failed" if "failed" in states else "built" if "built" in states
                     else "pending")
    if row["status"] != "failed":
        row["reason"] = ""


# -- building ------------------------------------------------------------------------------------
def build_keras_zoo(name: str):
    """tf2cv model with random weights (pretrained=False, so no download), built for 224x224."""
    from .compat import apply_numpy_shims, patch_tf2cv_grouped_conv
    from .keras_build import import_tf
    import_tf()
    apply_numpy_shims()
    patch_tf2cv_grouped_conv()
    from tf2cv.model_provider import get_model
    return get_model(name, pretrained=False)      # tf2cv defaults: 224x224, channels_last


def build_zoo_one(name: str, out_dir: str, precision: str, fmt: str) -> str:
    """Build one real-world model file (runs in a worker process); raises on failure."""
    from .keras_build import import_tf
    _, keras = import_tf()
    keras.backend.clear_session()
    keras.utils.set_random_seed(sum(map(ord, name)))   # repeatable random weights
    model = build_keras_zoo(name)
    data = export_model(model, INPUT_SHAPE, precision, fmt, seed=0)
    path = artefact_path(out_dir, name, precision, fmt)
    atomic_write_bytes(path, data)
    return str(path)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def build_zoo(out_dir, names=None, precision: str = "fp32", fmt: str = "tflite",
              workers: int = 1, manifest=None, progress: bool = True):
    """Build real-world models into ``out_dir``; existing files are kept (resume).

    Updates ``manifest`` (default ``<out_dir>/manifest.csv``, started with every status pending)
    after every model. Returns [(name, path or None, reason)] in the order of ``names``."""
    check_target(precision, fmt)
    names = list(REAL_WORLD_NAMES if not names else names)
    unknown = [n for n in names if n not in REAL_WORLD_NAMES]
    if unknown:
        raise LatpredError(f"not in the real-world list: {', '.join(unknown)} "
                           f"(see `latpred zoo list`)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Path(manifest) if manifest else out / "manifest.csv"
    rows = read_manifest(manifest) if manifest.exists() else default_manifest(fresh=True)
    by_name = {r["name"]: r for r in rows}
    for n in REAL_WORLD_NAMES:
        if n not in by_name:
            rows.append(_new_row(n, ""))
            by_name[n] = rows[-1]
    column = ARTEFACTS[(precision, fmt)]
    results: dict[str, tuple[str, Path | None, str]] = {}
    todo = []
    for n in names:
        path = artefact_path(out, n, precision, fmt)
        if path.exists():
            results[n] = (n, path, "")
            by_name[n][column] = "built"
        else:
            todo.append((n, str(out), precision, fmt))
    for job, res in run_jobs(build_zoo_one, todo, workers, f"zoo {precision} {fmt}", progress):
        n, row = job[0], by_name[job[0]]
        if isinstance(res, Exception):
            reason = f"{column}: {_reason(res)}"
            results[n] = (n, None, reason)
            row[column] = "failed"
            others = [r for r in row["reason"].split("; ") if r and not r.startswith(column)]
            row["reason"] = "; ".join(others + [reason])
        else:
            results[n] = (n, Path(res), "")
            row[column] = "built"
            row["reason"] = "; ".join(r for r in row["reason"].split("; ")
                                      if r and not r.startswith(column))
        _summarise(row)
        write_manifest(manifest, rows)
    for n in names:
        _summarise(by_name[n])
    write_manifest(manifest, rows)
    return [results[n] for n in names]
