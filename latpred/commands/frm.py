"""`latpred frm MODEL... --baseline MODEL (--predictor P | --measured STORE)`: the FRM table
(seed 001 §3.1-3.2) from predicted and/or measured latency."""
from __future__ import annotations

import json

from ..errors import LatpredError
from ..metrics import frm, inputs


def register(sub) -> None:
    p = sub.add_parser(
        "frm", help="rank models by FRM (FLOPs x latency x memory vs a baseline)",
        description="FRM = (ratio_flops x ratio_latency x ratio_memory)^(1/3), each ratio model over "
                    "baseline on the same device (lower = more efficient). " + frm.FLOPS_CONVENTION
                    + "; " + frm.MEMORY_CONVENTION + ". With both --predictor and --measured, also "
                    "Spearman rho between FRM from predicted and from measured latency.")
    p.add_argument("models", nargs="+", metavar="MODEL", help=".tflite or .onnx files")
    p.add_argument("--baseline", required=True, metavar="MODEL",
                   help="baseline model (a path or file stem among MODEL)")
    p.add_argument("--predictor", metavar="P", help="predictor bundle: predicted latency")
    p.add_argument("--measured", metavar="STORE", help="profile store: measured latency")
    p.add_argument("--scenario", help="scenario in STORE (needed when the models are measured "
                                      "under several)")
    p.add_argument("--accuracy", metavar="CSV",
                   help="CSV with columns model, accuracy (fraction or percent) and/or energy: "
                        "adds FRM_Q, the FRM/accuracy Pareto front, and FRM_E")
    p.add_argument("--input-shape", help="fix symbolic ONNX input dims, e.g. 1,3,224,224")
    p.add_argument("--plot", metavar="PNG", help="write FRM vs accuracy (or latency) with the "
                                                 "Pareto front")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def compute(args) -> dict:
    if not args.predictor and not args.measured:
        raise LatpredError("give --predictor P and/or --measured STORE for the latency")
    models = inputs.load_models(args.models, input_shape=args.input_shape)
    baseline = inputs.resolve_baseline(models, args.baseline)
    facts = frm.read_model_facts(args.accuracy) if args.accuracy else None
    sources: dict = {}
    lat_pred = lat_meas = None
    notes: list[str] = []
    pred_scen = None
    if args.predictor:
        predictor = inputs.load_predictor(args.predictor)
        pred_scen = inputs.predictor_scenario(predictor)
        lat_pred = inputs.predicted_latency(predictor, models)
        sources["predicted"] = {"predictor": args.predictor, "scenario": pred_scen}
    if args.measured:
        lat_meas, scen, match_notes = inputs.measured_latency(args.measured, models, args.scenario,
                                                         prefer=pred_scen)
        notes += match_notes
        sources["measured"] = {"store": args.measured, "scenario": scen}
        if pred_scen and pred_scen != scen:
            notes.append(f"predictor scenario {pred_scen} differs from measured scenario {scen}")
    accuracy = inputs.facts_for(models, facts, "accuracy")
    energy = inputs.facts_for(models, facts, "energy")
    if energy is not None:
        import math
        if math.isnan(energy[[m.name for m in models].index(baseline)]):
            notes.append("no energy for the baseline: FRM_E left out")
            energy = None
    if facts is not None and facts.attrs.get("accuracy_percent"):
        notes.append("accuracy read as percent")
    df, rho = frm.frm_table([m.name for m in models], [m.flops for m in models],
                          [m.memory_bytes for m in models], lat_pred, lat_meas, baseline,
                          accuracy=accuracy, energy=energy)
    by_name = {m.name: m for m in models}
    df.insert(1, "path", [by_name[n].path for n in df["name"]])
    df.insert(4, "weight_bytes", [by_name[n].weight_bytes for n in df["name"]])
    df.insert(5, "peak_activation_bytes", [by_name[n].peak_activation_bytes for n in df["name"]])
    return {"df": df, "rho": rho, "sources": sources, "notes": notes}


def run(args) -> int:
    res = compute(args)
    df, rho = res["df"], res["rho"]
    if args.plot:
        from ..metrics.plots import plot_frm
        plot_frm(df, args.plot)
    if args.json:
        out = {"baseline": df.attrs["baseline"], "latency_source": df.attrs["latency_source"],
               "sources": res["sources"], "flops_convention": frm.FLOPS_CONVENTION,
               "memory_convention": frm.MEMORY_CONVENTION,
               "frm_definition": "(ratio_flops * ratio_latency * ratio_memory) ** (1/3), ratios = "
                                 "model / baseline on the same device; lower is more efficient",
               "models": frm.table_records(df), "summary": frm.summary(df, rho),
               "notes": res["notes"]}
        if "frm_measured" in df:
            out["spearman_rho"] = rho
        print(json.dumps(out, indent=2))
        return 0
    src = res["sources"]
    head = []
    if "predicted" in src:
        head.append(f"predicted latency: {src['predicted']['predictor']}"
                    + (f" ({src['predicted']['scenario']})" if src["predicted"]["scenario"] else ""))
    if "measured" in src:
        head.append(f"measured latency: {src['measured']['store']} ({src['measured']['scenario']})")
    print("; ".join(head))
    print(frm.format_frm_table(df, rho))
    for note in res["notes"]:
        print(f"note: {note}")
    if args.plot:
        print(f"plot: {args.plot}")
    return 0
