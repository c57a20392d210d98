"""`latpred nb201 build|predict`: NAS-Bench-201 networks as model files, and their predicted
latency straight from the arch string (see ``latpred.sources.nb201``)."""
from __future__ import annotations

import argparse

_ARCH_HELP = ("NAS-Bench-201 index (0-15624, in the order of --arch-table) or arch string "
              "'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' (ops: none, skip_connect, nor_conv_1x1, "
              "nor_conv_3x3, avg_pool_3x3)")
_NONE_NOTE = ("Edges 'none' are NAS-Bench-201's x*0; the TFLite converter keeps them as MUL by a "
              "scalar 0 (or folds one into the conv before it, which then computes zeros), so a "
              "cell with no path from its input to its output ('dead' cell, 341 archs) is "
              "converted like any other: nothing is pruned, every op runs, the output is a "
              "constant. (HW-NAS-Bench's own TFLite files prune such networks.)")
_EDGES_HELP = ("which edges of the cell run: 'all' (default) the converted .tflite as it is, every "
               "'none' a MUL by 0; 'live' only the edges on a path from the cell's input to its "
               "output that uses no 'none' (the rest, and every x*0, removed; a dead cell's "
               "network is a constant, predicted as the overhead alone): what a runtime that "
               "prunes zero and dead computation executes. HW-NAS-Bench's and "
               "HW-NAS-Bench-360's files were pruned so")


def _network_args(p: argparse.ArgumentParser) -> None:
    from ..sources.nb201 import DEFAULT_TABLE, TASKS
    p.add_argument("archs", nargs="+", metavar="ARCH", help=_ARCH_HELP)
    p.add_argument("--task", choices=sorted(TASKS),
                   help="input and classes of a NAS-Bench-201 / HW-NAS-Bench-360 task: "
                        + ", ".join(f"{k} {'x'.join(map(str, v[0]))}/{v[1]}"
                                    for k, v in TASKS.items())
                        + " (darcy as HW-NAS-Bench-360 builds it: NAS-Bench-201's classifier "
                          "with one output, not a dense map)")
    p.add_argument("--input", help="input H,W,C (default 32,32,3; H and W multiples of 4)")
    p.add_argument("--classes", type=int, help="classifier outputs (default 10)")
    p.add_argument("--arch-table", metavar="PATH",
                   help=f"CSV with nb201_index (or index) and arch_str giving NAS-Bench-201's "
                        f"index order (default {DEFAULT_TABLE}, if present)")


def register(subparsers) -> None:
    parser = subparsers.add_parser("nb201", help="NAS-Bench-201 networks (build files, predict)")
    sub = parser.add_subparsers(dest="nb201_command", metavar="ACTION", required=True)
    build = sub.add_parser(
        "build", help="build NAS-Bench-201 networks into .tflite / ONNX files",
        description="Build NAS-Bench-201 networks (stem 3x3 conv 16 + BN; 3 stages of 5 cells at "
                    "16/32/64 channels joined by stride-2 residual blocks; BN+ReLU, global "
                    "average pool, linear) with tf_keras at batch 1 and random weights, and "
                    "convert them with the TFLite converter (BN folded) or tf2onnx. Files are "
                    "nb201_<index>.<ext> (nb201_h<hash> for an arch string not in the table) with "
                    "a .json beside each; files already built for the same arch, input and "
                    "classes are kept. " + _NONE_NOTE)
    _network_args(build)
    build.add_argument("--out", required=True, help="output folder")
    build.add_argument("--format", dest="fmt", choices=("tflite", "onnx"), default="tflite")
    build.set_defaults(func=run_build)
    pred = sub.add_parser(
        "predict", help="predict the latency of NAS-Bench-201 networks with a bundle",
        description="Predict end-to-end latency (ms) per arch with a bundle, from the ops of the "
                    "converted .tflite built straight from the arch string (no TensorFlow, no "
                    "file; a CPU bundle scores thousands of archs a second). --json prints a list "
                    "of {model, index, arch, latency_ms, overhead_ms, ops}. " + _NONE_NOTE
                    + " --edges live predicts the pruned network instead.")
    pred.add_argument("bundle", metavar="BUNDLE", help="bundle file written by `latpred train`")
    _network_args(pred)
    pred.add_argument("--json", action="store_true", help="machine-readable output")
    pred.add_argument("--gpu", metavar="GPU",
                      help="GPU bundles: the GPU whose kernel fusion and selection to replay")
    pred.add_argument("--edges", choices=("all", "live"), default="all", help=_EDGES_HELP)
    pred.set_defaults(func=run_predict)


def _network(args) -> tuple[tuple[int, int, int], int]:
    from ..errors import LatpredError
    from ..readers import parse_input_shape
    from ..sources.nb201 import DEFAULT_CLASSES, DEFAULT_INPUT, TASKS, check_input
    shape, classes = TASKS[args.task] if args.task else (DEFAULT_INPUT, DEFAULT_CLASSES)
    if args.input:
        dims = parse_input_shape(args.input)
        if len(dims) != 3:
            raise LatpredError(f"--input {args.input!r}: expected H,W,C, e.g. 32,32,3")
        shape = dims
    if args.classes is not None:
        classes = args.classes
    return check_input(shape, classes), int(classes)


def _resolve(args) -> list[tuple[str, str]]:
    from ..sources.nb201 import load_table, resolve
    needs_index = any(str(a).strip().isdigit() for a in args.archs)
    table = load_table(args.arch_table, required=needs_index)
    return [resolve(a, table) for a in args.archs]


def run_build(args: argparse.Namespace) -> int:
    from ..sources.nb201 import build_files
    shape, classes = _network(args)
    items = _resolve(args)
    paths = build_files(items, args.out, shape, classes, args.fmt, progress=len(items) > 1)
    print(f"{len(paths)} NAS-Bench-201 {args.fmt} models "
          f"({'x'.join(map(str, shape))}, {classes} classes) in {args.out}")
    return 0


def _record(name: str, arch: str, p) -> dict:
    d = p.to_dict()
    index = name[len("nb201_"):]
    return {"model": d.pop("model"), "index": int(index) if index.isdigit() else None,
            "arch": arch, **d}


_OP_JSON = (',\n    "type": {},\n    "category": {},\n    "latency_ms": {},\n    "fallback": {},'
            '\n    "fused": {}\n   }}')


def _json_text(items, preds) -> str:
    """``json.dumps([_record(...) ...], indent=1)``, the per-op rows (most of the text) from a
    template: json's indenting encoder is pure Python, several times slower than the rest of
    the command for thousands of archs."""
    import dataclasses
    import json
    rows: dict[tuple, str] = {}               # an op's text after its index: archs share rows

    def row(t: str, c: str, v: float, f: bool, u: bool) -> str:
        key = (t, c, v, f, u)
        if key not in rows or not v:          # 0.0 == -0.0 as keys, not as text
            rows[key] = _OP_JSON.format(json.dumps(t), json.dumps(c), json.dumps(v),
                                        json.dumps(f), json.dumps(u))
        return rows[key]

    out = []
    for (name, arch), p in zip(items, preds):
        head = dataclasses.replace(p, op_index=p.op_index[:0], op_type=[], op_category=[],
                                   op_latency_ms=p.op_latency_ms[:0],
                                   op_fallback=p.op_fallback[:0], op_fused=p.op_fused[:0],
                                   _ops=None)
        d = " " + json.dumps(_record(name, arch, head), indent=1).replace("\n", "\n ")
        if len(p.op_index):
            ops = ",\n".join(
                f'   {{\n    "index": {i}' + row(t, c, v, f, u)
                for i, t, c, v, f, u in zip(p.op_index.tolist(), p.op_type, p.op_category,
                                            p.op_latency_ms.tolist(), p.op_fallback.tolist(),
                                            p.op_fused.tolist()))
            before, _, after = d.rpartition('"ops": []')
            d = f'{before}"ops": [\n{ops}\n  ]{after}'
        out.append(d)
    return "[\n" + ",\n".join(out) + "\n]" if out else "[]"


def run_predict(args: argparse.Namespace) -> int:
    import sys

    from ..predictors import LatencyPredictor
    from ..sources.nb201 import predict_archs
    from .predict import warn_other_cpu
    shape, classes = _network(args)
    items = _resolve(args)
    predictor = LatencyPredictor.load(args.bundle)
    if args.gpu:
        predictor.gpu = args.gpu
    warn_other_cpu(predictor)
    preds = predict_archs(predictor, [arch for _, arch in items], shape, classes,
                          edges=args.edges, names=[name for name, _ in items])
    if args.json:
        sys.stdout.write(_json_text(items, preds) + "\n")
        return 0
    print(f"{predictor.bundle.method} predictor for {predictor.bundle.scenario} "
          f"({predictor.bundle.describe_overhead()}); input {'x'.join(map(str, shape))}, "
          f"{classes} classes, {args.edges} edges")
    width = max(12, *(len(n) for n, _ in items))
    print(f"{'model':<{width}}  {'latency ms':>11}  {'ops':>4}  arch")
    for (name, arch), p in zip(items, preds):
        print(f"{name:<{width}}  {p.latency_ms:>11.4f}  {len(p.op_index):>4}  {arch}")
    return 0
