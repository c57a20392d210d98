"""`latpred store list|export|import|drop|refeature|combine`: look into, export, extend and maintain
a profile store."""
from __future__ import annotations

import os

import pandas as pd

from ..errors import LatpredError


def register(sub) -> None:
    p = sub.add_parser("store", help="list, export or import profile store contents",
                       description="Work with a profile store written by `latpred profile`. "
                                   "import, drop, refeature and combine lock the store "
                                   "(STORE.lock) and refuse at once while another latpred "
                                   "process writes it; list and export never wait.")
    s = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    ls = s.add_parser("list", help="scenarios, models and failures with counts")
    ls.add_argument("store", metavar="STORE")
    ls.add_argument("--models", action="store_true", help="also list every model")
    ls.set_defaults(func=run_list)
    ex = s.add_parser("export", help="one row per measured op to .csv or .parquet")
    ex.add_argument("store", metavar="STORE")
    ex.add_argument("out", metavar="OUT.csv|OUT.parquet")
    ex.add_argument("--scenario", help="only this scenario id")
    ex.set_defaults(func=run_export)
    im = s.add_parser("import", help="add op/kernel rows measured elsewhere from a CSV")
    im.add_argument("store", metavar="STORE")
    im.add_argument("csv", metavar="CSV",
                    help="columns: model, op_index, latency_ms; optional model_hash, op_type, "
                         "category, latency_cv, runs, e2e_ms, e2e_cv, kernel_ops, features")
    im.add_argument("--scenario", required=True, help="scenario id, e.g. pixel4/tflite-2.9/gpu/fp16")
    im.set_defaults(func=run_import)
    dr = s.add_parser("drop", help="delete measurements (e.g. noisy ones) so profiling redoes them")
    dr.add_argument("store", metavar="STORE")
    dr.add_argument("--models", help="comma-separated model names (file stems)")
    dr.add_argument("--min-e2e-cv", type=float,
                    help="drop models whose end-to-end CV is at least this (noisy timings)")
    dr.add_argument("--scenario", help="only in this scenario id")
    dr.set_defaults(func=run_drop)
    rf = s.add_parser("refeature", help="recompute stored op features from the model files, "
                                        "keeping every measurement")
    rf.add_argument("store", metavar="STORE")
    rf.add_argument("models", nargs="+", metavar="MODEL",
                    help="model files or folders; matched to stored models by file hash")
    rf.set_defaults(func=run_refeature)
    cb = s.add_parser("combine", help="merge repeated measurement passes into one store "
                                      "(median per op and end-to-end)")
    cb.add_argument("out", metavar="OUT", help="new store to write")
    cb.add_argument("passes", nargs="+", metavar="PASS",
                    help="stores made by the same `latpred profile` command at different times")
    cb.set_defaults(func=run_combine)
    nz = s.add_parser("normalize", help="take the machine's drift out of a store measured with "
                                        "`latpred profile --reference` (derived values)")
    nz.add_argument("store", metavar="STORE")
    nz.add_argument("--out", required=True, metavar="OUT", help="new store to write")
    nz.add_argument("--to", type=float, metavar="MS", dest="target_ms",
                    help="scale to this gauge time instead of the store's median (one target "
                         "for every pass of a campaign, so that the passes combine)")
    nz.set_defaults(func=run_normalize)


def _open(path: str, readonly: bool = True):
    """Writers lock the store for their whole run; readers never wait."""
    from ..store import ProfileStore
    if readonly and not os.path.isfile(path):
        raise LatpredError(f"{path}: no such profile store")
    return ProfileStore(path, readonly=readonly, lock=not readonly)


def run_list(args) -> int:
    with _open(args.store) as st:
        summary = st.summary()
        if summary.empty:
            print(f"{args.store}: empty")
            return 0
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        fails = st.failures()
        if len(fails):
            print(f"\nfailures ({len(fails)}):")
            for r in fails.itertuples():
                print(f"  {r.scenario}  {r.model}: {r.reason}")
        if args.models:
            print()
            cols = ["scenario", "model", "status", "n_ops", "e2e_ms", "e2e_cv", "measured_at"]
            print(st.models()[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def run_export(args) -> int:
    with _open(args.store) as st:
        n = st.export(args.out, scenario=args.scenario)
    print(f"exported {n} op rows to {args.out}")
    return 0


def run_import(args) -> int:
    from ..scenario import parse_scenario
    scen = parse_scenario(args.scenario).id
    if not os.path.isfile(args.csv):
        raise LatpredError(f"{args.csv}: no such file")
    with _open(args.store, readonly=False) as st:
        n = st.import_csv(args.csv, scen)
    print(f"imported {n} models into {args.store} under {scen}")
    return 0


def run_drop(args) -> int:
    if args.models is None and args.min_e2e_cv is None:
        raise LatpredError("store drop: give --models and/or --min-e2e-cv")
    names = [n for n in args.models.split(",") if n] if args.models is not None else None
    with _open(args.store, readonly=False) as st:
        n = st.drop(scenario=args.scenario, models=names, min_e2e_cv=args.min_e2e_cv)
    print(f"dropped {n} measurements from {args.store}; `latpred profile` measures them again")
    return 0


def run_refeature(args) -> int:
    """Features are a function of the model file; when their rules change (e.g. which ops the
    runtime folds), the stored rows are brought up to date without measuring again."""
    from tqdm import tqdm
    from ..features import graph_features
    from ..profiling import file_hash
    from ..store import iter_model_files
    from ..readers import read_model
    files = iter_model_files(args.models, (".tflite", ".onnx"))
    if not files:
        raise LatpredError("store refeature: no .tflite or .onnx files among the paths given")
    with _open(args.store, readonly=False) as st:
        stored = set(st.models()["model_hash"].astype(str))
        models = rows = 0
        for path in tqdm(files, unit="model", desc="refeature", dynamic_ncols=True):
            with open(path, "rb") as fh:
                digest = file_hash(fh.read())
            if digest in stored:
                rows += st.refresh_features(digest, graph_features(read_model(path)))
                models += 1
    print(f"refreshed the features of {rows} op rows of {models} models in {args.store} "
          f"({len(files) - models} files not in the store)")
    return 0


def run_combine(args) -> int:
    """One pass on a shared machine is a noisy label (see datasets/host/CARD.md); the median of
    passes taken at different times is steadier."""
    from ..store import combine_stores
    for p in args.passes:
        if not os.path.isfile(p):
            raise LatpredError(f"{p}: no such profile store")
    counts = combine_stores(args.passes, args.out)
    note = (f"; {counts['fewer_passes']} models have fewer than {len(args.passes)} passes"
            if counts["fewer_passes"] else "")
    print(f"combined {len(args.passes)} passes: {counts['models']} models, {counts['ops']} op rows "
          f"-> {args.out}{note}")
    return 0


def run_normalize(args) -> int:
    """Drift-normalized copy of a store; the values are derived (see
    :func:`latpred.store.normalize_store`), the raw store stays as measured."""
    from ..store import normalize_store
    if not os.path.isfile(args.store):
        raise LatpredError(f"{args.store}: no such profile store")
    for scen, r in normalize_store(args.store, args.out, target_ms=args.target_ms).items():
        print(f"{scen}: {r['models']} models scaled to the reference's median "
              f"{r['reference_median_ms']:.3f} ms (factors {r['factor_p5']:.3f}-"
              f"{r['factor_p95']:.3f}, 5th-95th percentile) -> {args.out} (derived, not measured)")
    return 0
