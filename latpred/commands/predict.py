"""`latpred predict P MODEL... [--json]`: predicted end-to-end latency and per-op breakdown."""
from __future__ import annotations

import json
import logging
import math
import sys

from ..errors import LatpredError

log = logging.getLogger("latpred")


def register(sub) -> None:
    p = sub.add_parser(
        "predict", help="predict the latency of models with a trained bundle",
        description="Predict end-to-end latency (overhead + sum of per-op predictions) of .tflite or "
                    ".onnx models without running them. --json prints a list of {model, latency_ms, "
                    "overhead_ms, ops: [{index, type, category, latency_ms, fallback, fused}]}; fused ops are "
                    "folded into the next op by the CPU runtime (0 ms). A model of another "
                    "scenario than the bundle's (another precision, or a file format its runtime "
                    "does not run) or a bundle measured on another host CPU gives a warning; "
                    "--strict makes these errors (exit 2).")
    p.add_argument("bundle", metavar="P", help="bundle file written by `latpred train`")
    p.add_argument("models", nargs="+", metavar="MODEL", help=".tflite or .onnx files")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--ops", action="store_true", help="table: also list every op")
    p.add_argument("--input-shape", metavar="SHAPE",
                   help="fix symbolic ONNX input dims, e.g. 1,224,224,3 (every model)")
    p.add_argument("--strict", action="store_true",
                   help="a model of another scenario than the bundle's, or a bundle measured on "
                        "another host CPU, is an error instead of a warning")
    p.add_argument("--gpu", metavar="GPU",
                   help="GPU bundles: the GPU chip or phone whose kernel fusion and selection to "
                        "replay, when the bundle's scenario does not name it")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..predictors import load
    from ..readers import parse_input_shape, read_model

    input_shape = parse_input_shape(args.input_shape)
    predictor = load(args.bundle)
    if args.gpu:
        predictor.gpu = args.gpu
    warn_other_cpu(predictor, strict=args.strict)
    rows = []
    for model in args.models:
        graph = read_model(model, input_shape=input_shape)
        predictor.check_scenario(graph, model, strict=args.strict)
        rows.append(predictor.rows_of(graph))
    preds = predictor.predict_rows_many(rows, args.models)
    for p in preds:   # a damaged bundle must not print a number (or NaN) as a latency
        bad = [v for v in (p.latency_ms, p.overhead_ms, *p.op_latency_ms) if not math.isfinite(v)]
        if bad:
            raise LatpredError(f"{p.model}: the predicted latency is not a finite number "
                               f"({bad[0]}); the bundle {args.bundle} is damaged or unfit")
    if args.json:
        sys.stdout.write(json.dumps([p.to_dict() for p in preds], indent=1, allow_nan=False))
        sys.stdout.write("\n")
        return 0
    print(f"{predictor.bundle.method} predictor for {predictor.bundle.scenario} "
          f"({predictor.bundle.describe_overhead()})")
    width = max(12, *(len(p.model) for p in preds))
    print(f"{'model':<{width}}  {'latency ms':>11}  {'ops':>5}  {'fallback ops':>12}")
    for p in preds:
        print(f"{p.model:<{width}}  {p.latency_ms:>11.4f}  {len(p.op_index):>5}  "
              f"{len(p.fallback_ops):>12}")
        if args.ops:
            for row in p.ops.itertuples(index=False):
                mark = "  (fallback)" if row.fallback else "  (fused)" if row.fused else ""
                print(f"    {row.index:>4}  {row.type:<22} {row.category:<16}"
                      f"{row.latency_ms:>11.4f}{mark}")
    return 0


def warn_other_cpu(predictor, strict: bool = False) -> None:
    """A host bundle predicts the CPU it was measured on: say so (``strict``: refuse) when that is
    not this one."""
    from ..devices import HostCpu, this_cpu
    if not predictor.scenario_.is_host:
        return
    measured = HostCpu.from_facts(predictor.bundle.training.get("measured_on"))
    here = this_cpu()
    if measured is not None and measured.differs_from(here):
        if strict:
            raise LatpredError(f"{predictor.path or 'this bundle'}: measured on {measured}, this "
                               f"machine is {here}: its latencies are those of the other CPU "
                               "(--strict)")
        log.warning("this bundle was measured on %s, this machine is %s: its latencies are "
                    "those of the other CPU", measured, here)
