"""`latpred adapt BUNDLE MEASURED.csv --out P [--gpu GPU]`: a bundle for a device from K end-to-end
latencies measured on it (see ``latpred.predictors.adapt``)."""
from __future__ import annotations

import csv
import io
import math
import os

from ..errors import LatpredError

MAX_CSV_BYTES = 16 * 2 ** 20
MAX_ROWS = 100_000


def register(sub) -> None:
    from ..predictors.adapt import ADAPT_METHODS, MIN_MODELS, MIN_MODELS_GROUPS
    p = sub.add_parser(
        "adapt", help="adapt a bundle to a device from end-to-end latencies measured on it",
        description="Fit what differs on a target device from K models timed on it end to end "
                    "(no per-op profile needed): per-group scales of the source bundle's op "
                    "predictions (groups: op categories, convolutions split 1x1 / larger, "
                    "element-wise ops by type), shrunk towards a common scale, optionally "
                    "per-group work terms, and the target's fixed overhead, on the MSPE. The "
                    "candidate is chosen by cross-validation inside the K models. The result is "
                    "an ordinary bundle: `latpred predict P MODEL --json` gives the target's "
                    "latency and its per-op (with --gpu: per-kernel) breakdown; the bundle "
                    "records the device, K, the models (sha256) and their latencies. "
                    f"K >= {MIN_MODELS}; below {MIN_MODELS_GROUPS} only one global scale is "
                    "fitted (with a warning).")
    p.add_argument("bundle", metavar="BUNDLE", help="source bundle (the prior), e.g. one trained "
                                                    "on this host's profiled ops")
    p.add_argument("measured", metavar="MEASURED.csv",
                   help="CSV with columns model (path of a .tflite/.onnx file; relative paths "
                        "are relative to the CSV's folder) and latency_ms (measured on the "
                        "target); one row per model")
    p.add_argument("--out", required=True, metavar="P", help="adapted bundle to write")
    p.add_argument("--gpu", metavar="GPU",
                   help="the target runs the models on this GPU (chip such as adreno640, "
                        "mali-g76, or a phone): replay its delegate's kernel fusion and kernel "
                        "selection, and adapt per kernel type")
    p.add_argument("--device", metavar="NAME",
                   help="target device name for the adapted scenario (default: the CSV's name)")
    p.add_argument("--method", choices=ADAPT_METHODS, default="auto",
                   help="auto (default): the candidate with the lowest cross-validated MSPE")
    p.add_argument("--input-shape", metavar="SHAPE",
                   help="fix symbolic ONNX input dims, e.g. 1,224,224,3 (every model)")
    p.add_argument("--seed", type=int, default=0, help="seed of the CV folds (K > 30)")
    p.set_defaults(func=run)


def read_measured(path: str) -> tuple[list[str], list[float]]:
    """(model paths, latencies) of a MEASURED.csv; every problem is one LatpredError line."""
    if not os.path.isfile(path):
        raise LatpredError(f"{path}: no such file")
    size = os.path.getsize(path)
    if size > MAX_CSV_BYTES:
        raise LatpredError(f"{path}: {size / 2 ** 20:.0f} MB is too large for a table of "
                           f"measurements (at most {MAX_CSV_BYTES // 2 ** 20} MB)")
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LatpredError(f"{path}: cannot read it as UTF-8 text ({exc.__class__.__name__})"
                           ) from None
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip() for h in (reader.fieldnames or [])]
        if "model" not in header or "latency_ms" not in header:
            raise LatpredError(f"{path}: needs columns model and latency_ms (found: "
                               f"{', '.join(header) or 'none'})")
        reader.fieldnames = header
        base = os.path.dirname(os.path.abspath(path))
        models, latencies, seen = [], [], {}
        for line, row in enumerate(reader, start=2):
            if len(models) >= MAX_ROWS:
                raise LatpredError(f"{path}: more than {MAX_ROWS} rows")
            model = (row.get("model") or "").strip()
            value = (row.get("latency_ms") or "").strip()
            if not model and not value:
                continue
            if not model:
                raise LatpredError(f"{path}:{line}: empty model path")
            try:
                ms = float(value)
            except ValueError:
                raise LatpredError(f"{path}:{line}: latency_ms {value!r} is not a number"
                                   ) from None
            if not (math.isfinite(ms) and ms > 0):
                raise LatpredError(f"{path}:{line}: latency_ms is {value}: measured latencies "
                                   "must be positive, finite milliseconds")
            full = model if os.path.isabs(model) else os.path.join(base, model)
            key = os.path.realpath(full)
            if key in seen:
                raise LatpredError(f"{path}:{line}: {model} is listed again (first on line "
                                   f"{seen[key]}); give each model once (the median of your "
                                   "runs)")
            seen[key] = line
            if not os.path.isfile(full):
                raise LatpredError(f"{path}:{line}: model file {model} not found"
                                   + ("" if os.path.isabs(model) else f" (in {base})"))
            models.append(full)
            latencies.append(ms)
    except csv.Error as exc:
        raise LatpredError(f"{path}: not a readable CSV ({exc})") from None
    if not models:
        raise LatpredError(f"{path}: no measured models")
    return models, latencies


def run(args) -> int:
    import logging

    import numpy as np

    from ..predictors import load
    from ..predictors.adapt import MIN_MODELS, MIN_MODELS_GROUPS, adapt, file_sha256
    from ..readers import parse_input_shape, read_model
    log = logging.getLogger("latpred")
    if os.path.abspath(args.out) == os.path.abspath(args.bundle):
        raise LatpredError("--out must not overwrite the source bundle")
    input_shape = parse_input_shape(args.input_shape)
    source = load(args.bundle)
    paths, latencies = read_measured(args.measured)
    if len(paths) < MIN_MODELS:
        raise LatpredError(f"{args.measured}: {len(paths)} measured models; adaptation needs at "
                           f"least {MIN_MODELS} (2 numbers are fitted, one model validates)")
    if len(paths) < MIN_MODELS_GROUPS:
        log.warning("%d measured models: only one global scale and the overhead are fitted "
                    "(at least %d for per-group scales)", len(paths), MIN_MODELS_GROUPS)
    graphs = [read_model(p, input_shape=input_shape) for p in paths]
    names = [os.path.relpath(p, os.path.dirname(os.path.abspath(args.measured))) for p in paths]
    device = args.device or os.path.splitext(os.path.basename(args.measured))[0]
    device = "".join(c if c.isalnum() or c in "_.-" else "_" for c in device)[:64] or "target"
    adapted = adapt(source, graphs, latencies, device=device, gpu=args.gpu, method=args.method,
                    seed=args.seed, names=names, hashes=[file_sha256(p) for p in paths])
    adapted.save(args.out)
    ad = adapted.bundle.training["adaptation"]
    pred = adapted.predict(graphs)
    y = np.asarray(latencies)
    err = np.abs(pred - y) / y
    print(f"adapted {source.bundle.method} bundle {args.bundle} ({source.bundle.scenario}) to "
          f"{adapted.bundle.scenario} from {len(paths)} measured models -> {args.out}")
    print(f"chosen: {ad['chosen']} (cross-validated MSPE "
          f"{ad['cv_mspe'][ad['chosen']]:.2f} %^2; overhead {adapted.bundle.overhead_ms:.4f} ms)")
    for label, score in sorted(ad["cv_mspe"].items(), key=lambda kv: kv[1]):
        print(f"  {label:<36} CV MSPE {score:10.3f}")
    groups = ad["coefficients"]["groups"]
    print("scales (target ms per source ms): "
          + ", ".join(f"{g} {v['scale']:.3g}" for g, v in sorted(groups.items())))
    print(f"on the {len(paths)} adaptation models: MAPE {100 * err.mean():.2f} %, "
          f"within 10 % {100 * np.mean(err <= 0.1):.0f} %")
    return 0
