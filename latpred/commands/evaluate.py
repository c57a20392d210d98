"""`latpred evaluate P STORE`: MAPE of a bundle on the store's models it was not trained on."""
from __future__ import annotations

import json
import os

from ..errors import LatpredError


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="score a bundle on held-out profiled models",
        description="Predict every model of the bundle's scenario in STORE that was not used for "
                    "training (from the stored op features) and report end-to-end MAPE, the share "
                    "of models within ±1/5/10 %, and op-level MAPE per category.")
    p.add_argument("bundle", metavar="P", help="bundle file written by `latpred train`")
    p.add_argument("store", metavar="STORE", help="profile store with measured models")
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.add_argument("--per-model", action="store_true", help="also list every model's error")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..predictors import evaluate, load
    from ..store import ProfileStore

    predictor = load(args.bundle)
    if not os.path.isfile(args.store):
        raise LatpredError(f"{args.store}: no such profile store")
    with ProfileStore(args.store, readonly=True) as store:
        if predictor.bundle.scenario not in store.scenarios():
            raise LatpredError(f"{args.store} has no models of the bundle's scenario "
                               f"{predictor.bundle.scenario} (has: {', '.join(store.scenarios()) or 'none'})")
        frame = store.frame(predictor.bundle.scenario)
    result = evaluate(predictor, frame)
    if args.json:
        out = result.to_dict()
        if args.per_model:
            out["models"] = result.per_model.to_dict("records")
        print(json.dumps(out, indent=1))
        return 0
    print(result.text())
    if args.per_model:
        print(result.per_model.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0
