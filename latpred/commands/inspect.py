"""`latpred inspect MODEL`: the graph IR, categories, Table 3 features and model totals."""
from __future__ import annotations

import json
import sys

from ..features import op_features, op_macs
from ..ir import ModelGraph
from ..readers import read_model

MAC_CONVENTION = ("macs count multiply-accumulates of convolutions and fully-connected ops "
                  "(1 MAC = 1 multiply + 1 add); the 'flops' feature uses the same unit")


def register(sub) -> None:
    p = sub.add_parser("inspect", help="show a model's operations, categories and features",
                       description="Read a .tflite or ONNX model and show its operations, their "
                                   "categories and Table 3 features, and the model's totals.")
    p.add_argument("model", help=".tflite or .onnx file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--input-shape", help="fix symbolic ONNX input dims, e.g. 1,3,224,224")
    p.set_defaults(func=run)


def summary(graph: ModelGraph) -> dict:
    ops = []
    for op in graph.ops:
        ops.append({
            "index": op.index,
            "type": op.type,
            "category": op.category,
            "inputs": [list(graph.tensors[t].shape) for t in op.inputs
                       if t >= 0 and not graph.tensors[t].is_constant],
            "outputs": [list(graph.tensors[t].shape) for t in op.outputs],
            "weights": [list(graph.tensors[t].shape) for t in op.inputs
                        if t >= 0 and graph.tensors[t].is_constant],
            "dtype": graph.tensors[op.outputs[0]].dtype if op.outputs else None,
            "macs": op_macs(graph, op),
            "attrs": {k: v for k, v in op.attrs.items() if k != "macs"},
            "features": op_features(graph, op),
        })
    return {
        "model": graph.path,
        "format": graph.format,
        "layout": graph.layout,
        "macs": sum(o["macs"] for o in ops),
        "macs_convention": MAC_CONVENTION,
        "params": graph.params,
        "weight_bytes": graph.weight_bytes,
        "file_size": graph.file_size,
        "peak_activation_bytes": graph.peak_activation_bytes(),
        "ops": ops,
    }


def _fmt_shape(shapes: list) -> str:
    return " ".join("x".join(str(d) for d in s) or "scalar" for s in shapes)


def run(args) -> int:
    graph = read_model(args.model, args.input_shape)
    info = summary(graph)
    if args.json:
        json.dump(info, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    out = sys.stdout
    out.write(f"{args.model}: {info['format']} ({info['layout']}), {len(info['ops'])} ops\n")
    out.write(f"{'#':>4}  {'type':<22} {'category':<16} {'input':<22} {'output':<18} {'MACs':>13}\n")
    for o in info["ops"]:
        out.write(f"{o['index']:>4}  {o['type'][:22]:<22} {o['category']:<16} "
                  f"{_fmt_shape(o['inputs'])[:22]:<22} {_fmt_shape(o['outputs'])[:18]:<18} "
                  f"{o['macs']:>13,}\n")
    by_cat: dict[str, int] = {}
    for o in info["ops"]:
        by_cat[o["category"]] = by_cat.get(o["category"], 0) + 1
    out.write("categories: " + ", ".join(f"{k} {v}" for k, v in sorted(by_cat.items())) + "\n")
    out.write(f"MACs {info['macs'] / 1e6:,.1f} M ({MAC_CONVENTION})\n")
    out.write(f"params {info['params']:,} ({info['weight_bytes'] / 2**20:.2f} MiB), file "
              f"{info['file_size'] / 2**20:.2f} MiB, peak activations "
              f"{info['peak_activation_bytes'] / 2**20:.2f} MiB\n")
    return 0
