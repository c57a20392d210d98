"""`latpred kernels MODEL --gpu NAME`: the GPU kernels TFLite's GPU delegate would run."""
from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "kernels", help="deduce the GPU kernels (fusion + kernel selection) of a .tflite model",
        description="Replay TFLite GPU delegate kernel fusion (Algorithm 3.1) and convolution kernel "
                    "selection (Algorithm 3.2) for one GPU, without the device.")
    p.add_argument("model", help=".tflite model file")
    p.add_argument("--gpu", required=True,
                   help="GPU chip (adreno640, adreno616, mali-g76, powervr-ge8320, apple-a12, ...), "
                        "a phone of the device catalog (pixel4, ...) or a family (adreno6xx, mali, generic, ...)")
    p.add_argument("--tflite-version", default=None, help="rule set to replay (default 2.10)")
    p.add_argument("--no-fusion", action="store_true", help="do not replay kernel fusion")
    p.add_argument("--no-selection", action="store_true", help="no Winograd selection: convs keep their category")
    p.add_argument("--json", action="store_true", help="print JSON {gpu, kernels, cpu_fallback_ops}")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..gpu import DEFAULT_TFLITE_VERSION, deduce_kernels, resolve_gpu
    from ..readers import read_model

    gpu = resolve_gpu(args.gpu)          # a bad GPU name fails before the model is read
    graph = read_model(args.model)
    kg = deduce_kernels(graph, gpu, tflite_version=args.tflite_version or DEFAULT_TFLITE_VERSION,
                        fusion=not args.no_fusion, selection=not args.no_selection)
    if args.json:
        print(json.dumps(kg.to_json(), indent=1))
        return 0
    print(f"{graph.name}: {len(graph.ops)} ops -> {len(kg.kernels)} GPU kernels on {gpu.name} "
          f"({gpu.family}, TFLite {kg.tflite_version} rules"
          f"{', no fusion' if args.no_fusion else ''}{', no selection' if args.no_selection else ''})")
    width = max([len(k.kernel) for k in kg.kernels] + [6])
    for i, k in enumerate(kg.kernels):
        types = " + ".join(graph.ops[o].type for o in k.ops)
        extra = f"  [{k.dispatches} dispatches]" if k.dispatches > 1 else ""
        if k.activation:
            types = f"fused activation {k.activation} of op {k.main_op}"
        print(f"{i:4d}  {k.kernel:<{width}}  ops {','.join(map(str, k.ops)):<14} {types}{extra}")
    if kg.removed_ops:
        print(f"removed by the delegate (no-op): ops {', '.join(map(str, kg.removed_ops))}")
    if kg.cpu_fallback_ops:
        print("CPU fallback: " + ", ".join(f"{i} {graph.ops[i].type}" for i in kg.cpu_fallback_ops))
    else:
        print("CPU fallback: none")
    return 0
