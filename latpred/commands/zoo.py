"""`latpred zoo list|build`: the paper's real-world CNNs (imgclsmob tf2cv, random weights)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("zoo", help="the paper's real-world CNNs (tf2cv)")
    sub = parser.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    lst = sub.add_parser("list", help="list the real-world models and their build status")
    lst.add_argument("--manifest", help="manifest CSV (default: datasets/zoo/manifest.csv)")
    lst.set_defaults(func=run_list)
    build = sub.add_parser(
        "build", help="build real-world models into model files",
        description="Build tf2cv models (pretrained=False) at 224x224 and export them. Existing "
                    "files are kept; failures are recorded with their reason in the manifest.")
    build.add_argument("--out", required=True, help="output folder")
    build.add_argument("--names", help="comma-separated model names (default: all 104)")
    build.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    build.add_argument("--format", dest="fmt", choices=("tflite", "onnx"), default="tflite")
    build.add_argument("--workers", type=int, default=1, help="build processes (default 1)")
    build.add_argument("--manifest", help="manifest CSV to update (default: <out>/manifest.csv)")
    build.set_defaults(func=run_build)


def run_list(args: argparse.Namespace) -> int:
    from ..sources.zoo import default_manifest, read_manifest
    rows = read_manifest(args.manifest) if args.manifest else default_manifest()
    print(f"{'name':26s} {'family':16s} {'status':8s} {'fp32':7s} {'int8':7s} {'onnx':7s} reason")
    for r in rows:
        print(f"{r['name']:26s} {r['family']:16s} {r['status']:8s} {r['fp32_tflite'] or '-':7s} "
              f"{r['int8_tflite'] or '-':7s} {r['fp32_onnx'] or '-':7s} {r['reason']}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    import sys

    from ..errors import LatpredError
    from ..sources.zoo import build_zoo
    if args.workers < 1:
        raise LatpredError(f"--workers must be >= 1, got {args.workers}")
    names = [n.strip() for n in args.names.split(",") if n.strip()] if args.names else None
    if args.names is not None and not names:
        raise LatpredError("--names is empty")
    results = build_zoo(args.out, names, args.precision, args.fmt, workers=args.workers,
                        manifest=args.manifest)
    failed = [(n, reason) for n, path, reason in results if path is None]
    for n, reason in failed:
        print(f"latpred: skipped {n}: {reason}", file=sys.stderr)
    print(f"{len(results) - len(failed)} built, {len(failed)} failed ({args.precision} "
          f"{args.fmt}) in {args.out}")
    return 1 if failed and len(failed) == len(results) else 0
