"""Ablation of what is new in the method (issue 7 item 7), Lasso and GBDT on the primary scenario:
- features: the paper's Table 3 per category vs nn-Meter's kernel features (same method, MSPE);
- objective: MSPE (Eq. 1) vs plain squared error (Table 3 features);
- overhead term: on vs off.
Train: synthetic training pool; test: synthetic test models and real-world models."""
from __future__ import annotations

import sys

import pandas as pd

import common as c

EXPERIMENT = "ablation"
CSV = "ablation.csv"
VARIANTS = {
    "full (Table 3, MSPE, overhead)": {},
    "nn-Meter features": {"feature_set": "nnmeter"},
    "plain squared error": {"objective": "mse"},
    "no overhead term": {"overhead": False},
}


def run(data: c.Data, out, quick: bool) -> None:
    train_names, test_names = c.split_synthetic(data)
    scen = c.primary_scenario(data)
    if scen is None or not train_names:
        return c.skip(out, EXPERIMENT, "no synthetic (nas_*) models measured")
    tr = data.ops_of(scen, train_names)
    tests = {"synthetic": data.ops_of(scen, test_names),
             "real": data.ops_of(scen, c.real_world(data, scen))}
    rows = []
    for method in ("lasso", "gbdt"):
        for variant, kw in VARIANTS.items():
            model = c.fit_ours(out, scen, method, tr, quick, **kw)
            for test, te in tests.items():
                if te.empty:
                    continue
                s = c.e2e_scores(model, te)
                rows.append({"scenario": scen, "method": method, "variant": variant, "test": test,
                             **s, "overhead_ms": model.overhead_ms})
                print(f"[{EXPERIMENT}] {method} {variant} {test}: MAPE {s['mape']:.2f} %")
    c.write_csv(pd.DataFrame(rows), out, CSV)
    c.write_status(out, EXPERIMENT, "ok", scenario=scen)


def readme(out) -> str:
    def render(df):
        t = df[["method", "variant", "test", "n", "mape", "acc5", "acc10", "overhead_ms"]].copy()
        t.columns = ["method", "variant", "test", "models", "e2e MAPE %", "±5% acc %",
                     "±10% acc %", "overhead term ms"]
        return (f"Scenario `{df['scenario'].iloc[0]}`. The paper has no such ablation; its §5.6.1 "
                "attributes its lead over nn-Meter to the broader feature set.\n\n"
                + c.md_table(t, 2) + "\n")
    return c.section_or_nodata(out, EXPERIMENT, "7. Ablation: features, objective, overhead", CSV,
                               render)


def main(argv=None) -> int:
    args = c.arg_parser(__doc__).parse_args(argv)
    run(c.load_data(args.data, args.manifest), args.out, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
