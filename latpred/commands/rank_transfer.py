"""`latpred rank-transfer STORE|P...`: latency monotonicity (SRCC) between scenarios, FRM rank
transfer, and MonoNAS proxy-scenario selection (seed 004 §4-5, seed 001 §4.3)."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd

from ..errors import LatpredError
from ..metrics import frm, inputs, transfer

FLOPS_DEVICE = "flops (virtual device)"


def register(sub) -> None:
    p = sub.add_parser(
        "rank-transfer", help="SRCC of model latencies and FRM between scenarios; proxy selection",
        description="Latency monotonicity between scenarios: Spearman rank correlation (SRCC) of "
                    "model latencies and of FRM for every pair of scenarios, from profile stores "
                    "(measured; every scenario in a store is one column) and predictor bundles "
                    "(predicted for --models). Then, per target scenario, MonoNAS proxy selection "
                    "from k measured sample models, and (with --accuracy) how the latency/accuracy "
                    "Pareto set transfers. FLOPs (= MACs) joins as a virtual device when the model "
                    "files are known.")
    p.add_argument("sources", nargs="+", metavar="STORE|P",
                   help="profile stores and/or predictor bundles")
    p.add_argument("--models", nargs="+", metavar="MODEL",
                   help="model files: needed for predictor bundles and for FRM (default for "
                        "stores: the model files the store recorded, where they still exist)")
    p.add_argument("--scenario", action="append", metavar="S",
                   help="use only these store scenarios (repeatable)")
    p.add_argument("--target", metavar="S", help="target scenario for proxy selection "
                                                 "(default: every scenario in turn)")
    p.add_argument("-k", type=int, default=transfer.DEFAULT_SAMPLES,
                   help="measured sample models on the target "
                        f"(default {transfer.DEFAULT_SAMPLES})")
    p.add_argument("--threshold", type=float, default=transfer.DEFAULT_THRESHOLD,
                   help="SRCC a proxy must reach "
                        f"(default {transfer.DEFAULT_THRESHOLD}, seed 004 §6.3.1)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the sample models")
    p.add_argument("--accuracy", metavar="CSV", help="CSV model,accuracy: Pareto-set transfer")
    p.add_argument("--no-flops-device", action="store_true",
                   help="leave out the FLOPs virtual device")
    p.add_argument("--input-shape", help="fix symbolic ONNX input dims, e.g. 1,3,224,224")
    p.add_argument("--plot", metavar="PNG", help="write the latency SRCC heat map")
    p.add_argument("--plot-frm", metavar="PNG", help="write the FRM SRCC heat map")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def gather(args) -> dict:
    """Latency table (rows: model hash, columns: scenario), names, FLOPs and memory."""
    if not (0 < args.threshold <= 1):
        raise LatpredError("--threshold must be in (0, 1]")
    models = inputs.load_models(args.models, args.input_shape) if args.models else []
    names: dict[str, str] = {m.sha256: m.name for m in models}
    costs: dict[str, tuple[int, int]] = {m.sha256: (m.flops, m.memory_bytes) for m in models}
    columns: dict[str, pd.Series] = {}
    kinds: dict[str, str] = {}
    store_paths: dict[str, str] = {}
    for src in args.sources:
        if not os.path.exists(src):
            raise LatpredError(f"{src}: no such profile store or predictor bundle")
        if inputs.is_profile_store(src):
            store = inputs.open_store(src)
            try:
                rows = inputs.ok_rows(store)
            finally:
                store.close()
            if args.scenario:
                rows = rows[rows["scenario"].isin(args.scenario)]
            for scen, sub in rows.groupby("scenario", sort=True):
                label = scen if scen not in columns else f"{scen} [{os.path.basename(src)}]"
                columns[label] = pd.Series(sub["e2e_ms"].to_numpy(), index=sub["model_hash"])
                kinds[label] = "measured"
                for r in sub.itertuples():
                    names.setdefault(r.model_hash, r.model)
                    if r.model_path:
                        store_paths.setdefault(r.model_hash, r.model_path)
        else:
            if not models:
                raise LatpredError(f"{src}: a predictor bundle needs --models to predict")
            predictor = inputs.load_predictor(src)
            scen = (inputs.predictor_scenario(predictor)
                    or os.path.splitext(os.path.basename(src))[0])
            label = f"predicted:{scen}"
            if label in columns:
                label = f"{label} [{os.path.basename(src)}]"
            columns[label] = pd.Series(inputs.predicted_latency(predictor, models),
                                       index=[m.sha256 for m in models])
            kinds[label] = "predicted"
    if not columns:
        raise LatpredError("no measurements in the given sources"
                           + (" for the chosen --scenario" if args.scenario else ""))
    if len(columns) < 2:
        raise LatpredError(f"only one scenario ({next(iter(columns))}); rank transfer needs two "
                           f"or more")
    table = pd.DataFrame(columns)
    if models:  # only the models asked for
        table = table.reindex([m.sha256 for m in models])
    else:       # model files the stores recorded, where they are still there and unchanged
        from ..readers import read_model
        for h, path in store_paths.items():
            if h in table.index and os.path.isfile(path) and inputs.file_sha256(path) == h:
                try:
                    costs[h] = tuple(frm.model_costs(read_model(path))[k]
                                     for k in ("flops", "memory_bytes"))
                except LatpredError:
                    pass
    flops = pd.Series({h: c[0] for h, c in costs.items()}, dtype=float)
    memory = pd.Series({h: c[1] for h, c in costs.items()}, dtype=float)
    if len(costs) >= 3 and not args.no_flops_device:
        table[FLOPS_DEVICE] = flops.reindex(table.index)
        kinds[FLOPS_DEVICE] = "virtual"
    labels = _unique_labels(table.index, names)
    return {"table": table, "kinds": kinds, "names": labels, "flops": flops, "memory": memory}


def _unique_labels(index, names: dict) -> dict:
    labels = {h: names.get(h, h[:12]) for h in index}
    counts = pd.Series(list(labels.values())).value_counts()
    return {h: (n if counts[n] == 1 else f"{n}@{h[:8]}") for h, n in labels.items()}


def compute(args) -> dict:
    g = gather(args)
    table, names = g["table"], g["names"]
    lat_srcc = transfer.srcc_matrix(table)
    n_common = transfer.common_counts(table)
    real = [c for c in table.columns if g["kinds"][c] != "virtual"]
    frm_by_scenario = transfer.frm_table_by_scenario(table[real], g["flops"], g["memory"])
    frm_srcc = transfer.srcc_matrix(frm_by_scenario) if len(frm_by_scenario) >= 3 else None
    facts = frm.read_model_facts(args.accuracy) if args.accuracy else None
    acc = None
    if facts is not None and "accuracy" in facts:
        acc = pd.Series({h: facts["accuracy"].get(n, np.nan) for h, n in names.items()})
    targets = [args.target] if args.target else real
    if args.target and args.target not in table.columns:
        raise LatpredError(f"--target {args.target!r} is not one of: {', '.join(table.columns)}")
    proxies = []
    for tgt in targets:
        if table[tgt].notna().sum() < 3:
            continue
        choice = transfer.select_proxy(table, tgt, k=args.k, threshold=args.threshold,
                                       seed=args.seed)
        entry = choice.as_dict()
        entry["samples"] = [names[h] for h in choice.samples]
        entry["srcc_all_models"] = {s: _f(lat_srcc.loc[tgt, s]) for s in choice.srcc}
        if choice.proxy and acc is not None and acc.notna().sum() >= 2:
            try:
                pt = transfer.pareto_transfer(table[choice.proxy], table[tgt], acc)
            except LatpredError as exc:
                pt = {"error": str(exc)}
            for key in ("source_front", "target_front", "common", "missed", "extra"):
                if key in pt:
                    pt[key] = sorted(names.get(h, h) for h in pt[key])
            entry["pareto_transfer"] = pt
        proxies.append(entry)
    return {"table": table, "names": names, "kinds": g["kinds"], "latency_srcc": lat_srcc,
            "n_common": n_common, "frm": frm_by_scenario, "frm_srcc": frm_srcc, "proxies": proxies,
            "accuracy": acc is not None}


def _f(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _matrix_json(m: pd.DataFrame | None):
    if m is None:
        return None
    return {str(a): {str(b): _f(m.loc[a, b]) for b in m.columns} for a in m.index}


def _format_matrix(m: pd.DataFrame) -> list[str]:
    keys = list(m.columns)
    lines = ["      " + " ".join(f"{'S' + str(i + 1):>6}" for i in range(len(keys)))]
    for i, a in enumerate(keys):
        vals = " ".join(f"{'-':>6}" if not np.isfinite(m.loc[a, b]) else f"{m.loc[a, b]:>6.3f}"
                        for b in keys)
        lines.append(f"{'S' + str(i + 1):>5} {vals}")
    return lines


def run(args) -> int:
    res = compute(args)
    if args.plot:
        from ..metrics.plots import plot_srcc
        plot_srcc(res["latency_srcc"], args.plot, "SRCC of model latencies between scenarios")
    if args.plot_frm and res["frm_srcc"] is not None:
        from ..metrics.plots import plot_srcc
        plot_srcc(res["frm_srcc"], args.plot_frm, "SRCC of FRM between scenarios")
    table, names = res["table"], res["names"]
    if args.json:
        lat = table.rename(index=names)
        out = {"scenarios": [{"name": c, "kind": res["kinds"][c],
                              "models": int(table[c].notna().sum())} for c in table.columns],
               "latency_ms": {str(c): {str(k): _f(v) for k, v in lat[c].items()}
                              for c in lat.columns},
               "latency_srcc": _matrix_json(res["latency_srcc"]),
               "n_common": {str(a): {str(b): int(res["n_common"].loc[a, b])
                                     for b in res["n_common"].columns}
                            for a in res["n_common"].index},
               "frm_srcc": _matrix_json(res["frm_srcc"]),
               "frm_models": int(len(res["frm"])),
               "threshold": args.threshold, "k": args.k, "seed": args.seed,
               "proxies": res["proxies"],
               "notes": ["SRCC over the models both scenarios have",
                         "FRM ranks do not depend on the baseline, so neither does FRM SRCC",
                         frm.FLOPS_CONVENTION, frm.MEMORY_CONVENTION]}
        print(json.dumps(out, indent=2))
        return 0
    cols = list(table.columns)
    print(f"{len(table)} models, {len(cols)} scenarios:")
    for i, c in enumerate(cols):
        print(f"  S{i + 1} {c} ({res['kinds'][c]}, {int(table[c].notna().sum())} models)")
    print("\nSRCC of model latencies (over the models both scenarios have):")
    print("\n".join(_format_matrix(res["latency_srcc"])))
    if res["frm_srcc"] is not None:
        print(f"\nSRCC of FRM ({len(res['frm'])} models with FLOPs and memory known; "
              f"{frm.FLOPS_CONVENTION}; {frm.MEMORY_CONVENTION}):")
        frm_cols = list(res["frm_srcc"].columns)
        print("  (" + ", ".join(f"S{cols.index(c) + 1}" for c in frm_cols) + ")")
        print("\n".join(_format_matrix(res["frm_srcc"])))
    else:
        print("\nSRCC of FRM: needs the model files (--models) of at least 3 models")
    print(f"\nProxy selection (k = {args.k} sample models, threshold {args.threshold}):")
    for p in res["proxies"]:
        best = p["proxy"] or "none (measure the target itself)"
        scores = ", ".join(f"S{cols.index(s) + 1} {'-' if v is None else f'{v:.3f}'}"
                           for s, v in p["srcc"].items())
        print(f"  target S{cols.index(p['target']) + 1}: proxy {best}; SRCC over "
              f"{p['k']} samples: {scores}")
        pt = p.get("pareto_transfer")
        if pt and "error" not in pt:
            lost = pt["max_accuracy_lost"]
            print(f"    Pareto set: target {len(pt['target_front'])}, from proxy "
                  f"{len(pt['source_front'])}, common {len(pt['common'])} (Jaccard "
                  f"{pt['jaccard']:.2f}); missed: {', '.join(pt['missed']) or 'none'}; "
                  f"max accuracy lost searching the proxy's front: "
                  f"{'-' if lost is None else f'{lost:.4f}'}")
    if not res["accuracy"]:
        print("  (Pareto-set transfer needs --accuracy CSV)")
    for flag, path in (("plot", args.plot), ("plot-frm", args.plot_frm)):
        if path:
            print(f"{flag}: {path}")
    return 0
