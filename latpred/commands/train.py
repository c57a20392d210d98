"""`latpred train STORE --method lasso|rf|gbdt|mlp|all --out P`: fit per-category predictors.

With one method, P is the bundle file. With ``all``, P is a folder (created if needed) that gets one
bundle per method: ``P/lasso.latpred``, ``P/rf.latpred``, ``P/gbdt.latpred``, ``P/mlp.latpred``."""
from __future__ import annotations

import os
import time

from ..errors import LatpredError
from ..predictors.methods import DEFAULT_OVERHEAD, METHODS, OVERHEAD_STATISTICS


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train per-category latency predictors from a profile store",
        description="Fit one latency model per op category (or GPU kernel type) of one scenario on "
                    "the mean squared percentage error, estimate the framework overhead, and save "
                    "everything as a predictor bundle. With --method all, --out is a folder that "
                    "gets one bundle per method (lasso.latpred, rf.latpred, gbdt.latpred, "
                    "mlp.latpred).")
    p.add_argument("store", metavar="STORE", help="profile store written by `latpred profile`")
    p.add_argument("--scenario", help="scenario id (may be left out when the store holds one)")
    p.add_argument("--method", required=True, choices=METHODS + ("all",))
    p.add_argument("--train-models", metavar="FILE",
                   help="train on these models only: one name, file path or hash per line "
                        "(default: every model of the scenario)")
    p.add_argument("--full-grid", action="store_true",
                   help="the paper's full hyper-parameter search (much slower; see "
                        "latpred.predictors.methods)")
    p.add_argument("--min-samples", type=int, default=None, metavar="N",
                   help="categories with fewer training ops use the fallback (default 5)")
    p.add_argument("--overhead", choices=OVERHEAD_STATISTICS, default=DEFAULT_OVERHEAD,
                   help="overhead term, from (end-to-end latency - sum of op latencies) of the "
                        "training models: linear (default: a fixed part plus a share of the "
                        "ops' sum, fitted on the MSPE), mean (the paper's), median (robust to a "
                        "few noisy models) or none")
    p.add_argument("--table3-only", action="store_true",
                   help="the paper's Table 3 features alone, without the CPU kernel features "
                        "(channel tiles, GEMM/multi-pass paths, element-wise cost class) that CPU "
                        "scenarios get by default")
    p.add_argument("--work-target", action="store_true",
                   help="per category, let cross-validation choose between predicting latency "
                        "and latency per unit of work (MACs; elements for memory-bound ops). "
                        "Better within the training space, worse on unlike models: see "
                        "experiments/README.md, ablation")
    p.add_argument("--no-linear-base", action="store_true",
                   help="RF and GBDT as the paper has them: without the candidate that refines a "
                        "per-category Lasso estimate (see latpred.predictors.methods)")
    p.add_argument("--keep-implausible", action="store_true",
                   help="train on every model, also those whose op timings are implausibly fast "
                        "for their ops' work (by default such models, whose op profile gave "
                        "times to the wrong ops, stay out of the category fits)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="threads for RF/GBDT/MLP (default 1)")
    p.add_argument("--out", required=True, metavar="P",
                   help="bundle file (one method) or folder (--method all)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def bundle_paths(out: str, methods: tuple[str, ...], all_methods: bool) -> dict[str, str]:
    if not all_methods:
        if os.path.isdir(out):
            raise LatpredError(f"{out}: is a folder; --out needs a bundle file name for one method")
        return {methods[0]: out}
    if os.path.exists(out) and not os.path.isdir(out):
        raise LatpredError(f"{out}: --method all needs --out to be a folder")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise LatpredError(f"{out}: folder {parent} does not exist")
    os.makedirs(out, exist_ok=True)
    return {m: os.path.join(out, f"{m}.latpred") for m in methods}


def run(args) -> int:
    from ..predictors import LatencyPredictor, MIN_SAMPLES, read_model_list, select_models
    from ..store import ProfileStore

    # counts that make no sense fail before anything is read
    if args.jobs < 1:
        raise LatpredError(f"--jobs must be >= 1, got {args.jobs}")
    if args.min_samples is not None and args.min_samples < 1:
        raise LatpredError(f"--min-samples must be >= 1, got {args.min_samples}")
    if not 0 <= args.seed < 2 ** 32:   # numpy / scikit-learn seeds
        raise LatpredError(f"--seed must be in 0 .. 2**32-1, got {args.seed}")
    if not os.path.isfile(args.store):
        raise LatpredError(f"{args.store}: no such profile store")
    all_methods = args.method == "all"
    methods = METHODS if all_methods else (args.method,)
    paths = bundle_paths(args.out, methods, all_methods)
    train_models = read_model_list(args.train_models) if args.train_models else None
    with ProfileStore(args.store, readonly=True) as store:
        scenarios = store.scenarios()
        if args.scenario is None and len(scenarios) > 1:
            raise LatpredError(f"{args.store} holds several scenarios; pick one with --scenario "
                               f"({', '.join(scenarios)})")
        if not scenarios:
            raise LatpredError(f"{args.store}: no measured models to train on")
        scenario_id = args.scenario or scenarios[0]
        if scenario_id not in scenarios:
            raise LatpredError(f"scenario {scenario_id!r} not in {args.store} "
                               f"(has: {', '.join(scenarios)})")
        scenario = store.scenario(scenario_id)
        frame = store.frame(scenario_id)
        models = store.models(scenario_id)
        models = models[models["status"] == "ok"]
    if train_models is not None:
        frame = select_models(frame, train_models)
    measured_on = {}
    if len(models):
        first = models.iloc[0].to_dict()
        measured_on = {k: first[k] for k in ("device", "backend", "core_config", "threads",
                                             "runtime_version", "cpu_model", "cpu_isa",
                                             "cpu_family", "cpu_model_number", "logical_cpus")
                       if k in first and first[k] == first[k]}
    for method, path in paths.items():
        t0 = time.perf_counter()
        estimator = LatencyPredictor(
            method, scenario, full_grid=args.full_grid,
            min_samples=MIN_SAMPLES if args.min_samples is None else args.min_samples,
            seed=args.seed, n_jobs=args.jobs, progress=not args.quiet,
            measured_on=measured_on, overhead=args.overhead,
            kernel_features=False if args.table3_only else None,
            work_target=args.work_target,
            linear_base=False if args.no_linear_base else None,
            **({"implausible_factor": None} if args.keep_implausible else {})).fit(frame)
        estimator.save(path)
        bundle = estimator.bundle_
        t = bundle.training
        fb = t["fallback_categories"]
        print(f"{method}: {t['n_models']} models, {sum(t['n_ops'].values())} ops, "
              f"{len(bundle.models)} category models, {bundle.describe_overhead()} "
              f"({args.overhead}), "
              f"{time.perf_counter() - t0:.1f} s -> {path}"
              + (f" (fallback for {', '.join(sorted(fb))})" if fb else "")
              + (f"; left out (implausible op timings): {', '.join(t['untrusted_models'])}"
                 if t["untrusted_models"] else ""))
    return 0
