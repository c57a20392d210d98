"""`make demo`: the paper's claim that 30 profiled architectures suffice, shown live on this CPU.

1. sample 30 synthetic architectures from the NAS space (§4.3.2) and build them as fp32 .tflite;
2. build a handful of real-world CNNs (imgclsmob tf2cv, random weights) the predictors never see;
3. profile everything on this machine (LiteRT, 1 core, fp32): op-wise and end-to-end, in two
   whole passes whose median is kept (one pass on a shared machine drifts by a few percent);
4. train Lasso and GBDT on the 30 synthetic architectures only;
5. predict the real-world CNNs, and print predicted vs measured latency with errors and the MAPE;
6. rank the real-world CNNs by FRM from predicted and from measured latency.

Everything is cached under runs/demo/ (models, the profile store, bundles): a second run, or a run
that was interrupted, resumes instead of starting over. Measurements are real (this machine's CPU).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REAL_WORLD = ["mobilenetv2_w1", "mobilenet_wd2", "squeezenet_v1_1", "resnet10", "regnetx004",
              "mnasnet_b1"]


def _step(n: int, text: str) -> None:
    print(f"\n[{n}/6] {text}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "runs" / "demo"))
    ap.add_argument("--count", type=int, default=30, help="synthetic training architectures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--names", default=",".join(REAL_WORLD), help="real-world CNNs to predict")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per measurement")
    ap.add_argument("--passes", type=int, default=2,
                    help="measurement passes over all models, combined by their median")
    args = ap.parse_args()

    from latpred.errors import LatpredError
    try:
        return run(args)
    except LatpredError as exc:
        print(f"latpred demo: {exc}", file=sys.stderr)
        return 2


def run(args) -> int:
    import numpy as np
    import pandas as pd

    from latpred.predictors import LatencyPredictor
    from latpred.profiling import profile_models, profile_passes
    from latpred.store import ProfileStore
    from latpred.sources.export import build_files
    from latpred.sources.nas import sample_specs
    from latpred.sources.zoo import build_zoo

    t_start = time.time()
    out = Path(args.out)
    syn_dir, zoo_dir = out / "synthetic", out / "zoo"
    store_path = out / ("profiles.sqlite" if args.passes == 1 else f"profiles_{args.passes}pass.sqlite")

    _step(1, f"sampling {args.count} synthetic architectures (seed {args.seed}) -> fp32 .tflite")
    specs = sample_specs(args.count, args.seed)
    syn_paths = [Path(p) for p in build_files(specs, syn_dir, precision="fp32", fmt="tflite")]

    names = [n for n in args.names.split(",") if n]
    _step(2, f"building {len(names)} real-world CNNs (tf2cv, random weights) -> fp32 .tflite")
    zoo_paths = []
    for name, path, reason in build_zoo(zoo_dir, names, precision="fp32", fmt="tflite"):
        if path is None:
            print(f"  skipped {name}: {reason}")
        else:
            zoo_paths.append(Path(path))
    if not zoo_paths:
        print("no real-world model could be built; nothing to predict", file=sys.stderr)
        return 1

    _step(3, "profiling on this CPU (LiteRT, 1 core, fp32): op-wise and end-to-end"
             + ("" if args.passes == 1 else f", {args.passes} passes (median)"))
    kw = {} if args.runs is None else {"runs": args.runs}

    def measure_into(path):
        profile_models(syn_paths + zoo_paths, str(path), device="host", backend="litert",
                       cores=1, progress=True, **kw)
    if args.passes == 1:
        measure_into(store_path)
    else:
        profile_passes(store_path, args.passes, measure_into, announce=lambda m: print(f"  {m}"))
    store = ProfileStore(str(store_path))
    (scenario,) = [s for s in store.scenarios() if "cpu1" in s or s.endswith("/1/fp32")][:1] or store.scenarios()[:1]
    frame = store.frame(scenario)
    scenario_object = store.scenario(scenario)
    syn_names = {p.stem for p in syn_paths}
    train = frame[frame["model"].isin(syn_names)]
    print(f"  scenario {scenario}: {train['model'].nunique()} training architectures, {len(train)} op rows")

    _step(4, "training Lasso and GBDT on the synthetic architectures only")
    # The overhead term is the median (not the paper's mean) of end-to-end minus the sum of op-wise
    # latencies: on a shared CPU a few end-to-end timings get inflated by preemption, and the mean
    # follows them. `latpred train --overhead mean` gives the paper's definition.
    print("  overhead term: median over training models of (end-to-end - sum of op-wise latencies)")
    bundles = {}
    for method in ("lasso", "gbdt"):
        t0 = time.time()
        path = out / f"bundle_{method}.latpred"
        LatencyPredictor(method, scenario_object, overhead="median").fit(train).save(path)
        bundles[method] = LatencyPredictor.load(path)
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        print(f"  {method}: trained in {time.time() - t0:.1f} s, overhead "
              f"{bundles[method].overhead_ms:.2f} ms -> {shown}")

    _step(5, "predicting the real-world CNNs (never seen in training) vs measuring them")
    models = store.models(scenario).set_index("model")
    measured, measured_cv = models["e2e_ms"], models["e2e_cv"]
    from latpred.readers import read_model
    rows, graphs = [], {}
    for p in zoo_paths:
        if p.stem not in measured.index:
            print(f"  {p.stem}: not measured (see `latpred store list {store_path}`)")
            continue
        # The CV shows how far one measurement can be trusted on this (possibly busy) machine.
        row = {"model": p.stem, "measured_ms": float(measured[p.stem]),
               "measured_cv": float(measured_cv[p.stem])}
        graphs[p.stem] = read_model(p)  # parsed once, for both bundles and FRM
        for method, bundle in bundles.items():
            pred = bundle.predict(graphs[p.stem])
            row[f"{method}_ms"] = pred.latency_ms
            row[f"{method}_err"] = (pred.latency_ms - row["measured_ms"]) / row["measured_ms"]
        rows.append(row)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 120, "display.float_format", "{:.2f}".format):
        shown = table.copy()
        for m in bundles:
            shown[f"{m}_err"] = (100 * shown[f"{m}_err"]).map("{:+.1f}%".format)
        print(shown.to_string(index=False))
    for m in bundles:
        print(f"  MAPE {m}: {100 * np.mean(np.abs(table[f'{m}_err'])):.1f}% over {len(table)} real-world CNNs "
              f"(paper, phones: Lasso 6.5% with 900 training architectures)")

    _step(6, "FRM of the real-world CNNs from predicted vs measured latency")
    try:
        _frm(graphs, table, bundles)
    except ImportError as exc:
        print(f"  FRM not available: {exc}")
    print(f"\ndone in {time.time() - t_start:.0f} s; everything is cached under {out}")
    return 0


def _frm(graphs, table, bundles) -> None:
    from latpred.metrics.frm import format_frm_table, frm_table, model_costs

    names = list(table["model"])
    costs = [model_costs(graphs[name]) for name in names]
    flops = [c["flops"] for c in costs]
    memory = [c["memory_bytes"] for c in costs]
    best = "gbdt" if "gbdt" in bundles else next(iter(bundles))
    baseline = "mobilenetv2_w1" if "mobilenetv2_w1" in names else names[0]
    df, rho = frm_table(names, flops, memory, list(table[f"{best}_ms"]), list(table["measured_ms"]),
                        baseline=baseline)
    print(format_frm_table(df))
    print(f"  (FRM latency from the {best} bundle)")


if __name__ == "__main__":
    sys.exit(main())
