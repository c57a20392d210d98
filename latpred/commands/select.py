"""`latpred select --predictor P --measured STORE [MODEL...]`: what replacing measurement by the
predictor costs when selecting models under latency limits (BRP-NAS §S1.3, seed 003)."""
from __future__ import annotations

import json
import os

import numpy as np

from ..errors import LatpredError
from ..metrics import frm, inputs, selection


def register(sub) -> None:
    p = sub.add_parser(
        "select", help="false positives/negatives of latency-limited selection with a predictor",
        description="For each latency limit: models the predictor wrongly accepts (false "
                    "positives) or rejects (false negatives) compared with measured latency and, "
                    "with --accuracy, the accuracy missed and over-claimed by picking the most "
                    "accurate model under the limit from predictions (BRP-NAS §S1.3).")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="model files (default: the store's recorded model files that still exist)")
    p.add_argument("--predictor", required=True, metavar="P", help="predictor bundle")
    p.add_argument("--measured", required=True, metavar="STORE", help="profile store")
    p.add_argument("--scenario", help="scenario in STORE")
    p.add_argument("--accuracy", metavar="CSV", help="CSV with columns model, accuracy")
    p.add_argument("--limits", help="limits in ms: 1,2,5 or START:STOP:STEP "
                                    f"(default {selection.DEFAULT_STEPS} spanning the latencies)")
    p.add_argument("--input-shape", help="fix symbolic ONNX input dims, e.g. 1,3,224,224")
    p.add_argument("--plot", metavar="PNG", help="write FP/FN (and accuracy) vs limit")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _store_model_files(store_path: str, scenario: str | None) -> list[str]:
    store = inputs.open_store(store_path)
    try:
        rows = inputs.ok_rows(store, scenario)
    finally:
        store.close()
    paths = sorted({p for p in rows["model_path"].dropna() if os.path.isfile(p)})
    if not paths:
        raise LatpredError(f"{store_path}: none of its recorded model files exist here; "
                           f"give the MODEL files")
    return paths


def compute(args) -> dict:
    paths = args.models or _store_model_files(args.measured, args.scenario)
    models = inputs.load_models(paths, args.input_shape)
    predictor = inputs.load_predictor(args.predictor)
    pred_scen = inputs.predictor_scenario(predictor)
    pred = inputs.predicted_latency(predictor, models)
    meas, scen, notes = inputs.measured_latency(args.measured, models, args.scenario,
                                                prefer=pred_scen)
    if pred_scen and pred_scen != scen:
        notes.append(f"predictor scenario {pred_scen} differs from measured scenario {scen}")
    facts = frm.read_model_facts(args.accuracy) if args.accuracy else None
    acc = inputs.facts_for(models, facts, "accuracy")
    limits = (selection.parse_limits(args.limits) if args.limits
              else selection.default_limits(meas, pred))
    names = [m.name for m in models]
    curve = selection.selection_curve(names, pred, meas, limits, acc)
    return {"models": [{"name": n, "predicted_ms": p, "measured_ms": m,
                        "accuracy": None if acc is None or np.isnan(acc[i]) else acc[i]}
                       for i, (n, p, m) in enumerate(zip(names, pred, meas))],
            "curve": curve, "summary": selection.curve_summary(curve), "scenario": scen,
            "predictor_scenario": pred_scen, "notes": notes}


def run(args) -> int:
    res = compute(args)
    curve = res["curve"]
    if args.plot:
        from ..metrics.plots import plot_selection
        plot_selection(curve, args.plot)
    if args.json:
        out = {"predictor": args.predictor, "predictor_scenario": res["predictor_scenario"],
               "store": args.measured, "scenario": res["scenario"], "models": res["models"],
               "limits": frm.table_records(curve), "summary": res["summary"],
               "notes": res["notes"]}
        print(json.dumps(out, indent=2))
        return 0
    with_acc = "missed_accuracy" in curve
    print(f"{len(res['models'])} models; measured {args.measured} ({res['scenario']}); "
          f"predicted by {args.predictor}")
    head = f"{'limit ms':>9} {'fit':>4} {'pred fit':>8} {'FP':>3} {'FN':>3}"
    if with_acc:
        head += f" {'missed acc':>10} {'over-claimed':>12}  picked (effective / truth)"
    print(head)
    for r in curve.itertuples():
        line = (f"{r.limit_ms:>9.3f} {r.truly_fit:>4} {r.predicted_fit:>8} "
                f"{r.false_positives:>3} {r.false_negatives:>3}")
        if with_acc:
            line += (f" {_n(r.missed_accuracy):>10} {_n(r.overclaimed_accuracy):>12}  "
                     f"{r.effective_best or '-'} / {r.ground_truth_best or '-'}")
        print(line)
    s = res["summary"]
    print(f"limits with false positives: {s['limits_with_false_positives']}/{s['limits']}, "
          f"with false negatives: {s['limits_with_false_negatives']}/{s['limits']}")
    if with_acc:
        print(f"max missed accuracy {_n(s['max_missed_accuracy'])}, max over-claimed accuracy "
              f"{_n(s['max_overclaimed_accuracy'])}; limits where the predictor finds nothing "
              f"that fits but something does: {s['limits_where_predictor_finds_nothing']}")
    for note in res["notes"]:
        print(f"note: {note}")
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


def _n(v) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.4f}"
