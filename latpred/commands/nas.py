"""`latpred nas sample`: sample architectures of the synthetic NAS space and build their files."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("nas", help="synthetic NAS space (paper §4.3.2)")
    sub = parser.add_subparsers(dest="nas_command", metavar="ACTION", required=True)
    sample = sub.add_parser(
        "sample", help="sample N architectures and write <name>.json + model files",
        description="Sample architectures nas_s<SEED>_<i> (i = 0..N-1) and build them. Files that "
                    "exist are kept, so a killed run resumes.")
    sample.add_argument("--count", type=int, required=True, help="number of architectures")
    sample.add_argument("--seed", type=int, default=0, help="stream seed (default 0)")
    sample.add_argument("--out", required=True, help="output folder")
    sample.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    sample.add_argument("--format", dest="fmt", choices=("tflite", "onnx"), default="tflite")
    sample.add_argument("--input-size", type=int, default=224, help="input height = width")
    sample.add_argument("--workers", type=int, default=1, help="build processes (default 1)")
    sample.add_argument("--specs-only", action="store_true", help="write the JSON specs only")
    sample.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import LatpredError
    from ..sources.export import atomic_write_text, build_files, check_target, spec_json
    from ..sources.nas import sample_specs
    if args.count < 1:
        raise LatpredError(f"--count must be >= 1, got {args.count}")
    if args.workers < 1:
        raise LatpredError(f"--workers must be >= 1, got {args.workers}")
    check_target(args.precision, args.fmt)
    specs = sample_specs(args.count, args.seed, input_size=args.input_size)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise LatpredError(f"--out {out} is not a folder")
    if args.specs_only:
        for spec in specs:
            atomic_write_text(out / f"{spec['name']}.json", spec_json(spec))
        print(f"wrote {len(specs)} specs to {out}")
        return 0
    paths = build_files(specs, out, args.precision, args.fmt, workers=args.workers)
    print(f"{len(paths)} {args.precision} {args.fmt} models in {out}")
    return 0
