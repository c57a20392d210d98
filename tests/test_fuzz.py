"""Hostile model files (experiments/fuzz.py): seeded mutants of real converter-made .tflite and ONNX
models through read_model -> features -> predict -> GPU kernel deduction must end in a clean
rejection or a plausible result: no traceback, hang, native crash or memory blow-up.

The seeds (TFLite converter, torch.onnx, onnx.helper) and a small Lasso bundle are built once into
experiments/.cache/fuzz. A failing case is replayed with the command its message shows,
``.venv/bin/python experiments/fuzz.py --replay S-I``."""
from __future__ import annotations

import importlib.util
import json
import os

import pytest

from conftest import ROOT, run_python

FUZZ = os.path.join(ROOT, "experiments", "fuzz.py")
N_CASES = int(os.environ.get("LATPRED_FUZZ_CASES", "300"))


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("latpred_fuzz", FUZZ)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.ensure_seeds(mod.DEFAULT_WORK)            # the first run builds them (TensorFlow, torch)
    return mod


@pytest.fixture(scope="module")
def seeds(fuzz):
    return fuzz.load_seeds(fuzz.DEFAULT_WORK, fuzz.ensure_seeds(fuzz.DEFAULT_WORK))


def test_case_i_of_seed_s_is_always_the_same_mutant(fuzz, seeds):
    first = [fuzz.make_case(seeds, 5, i) for i in range(60)]
    again = [fuzz.make_case(seeds, 5, i) for i in range(60)]
    assert [c["data"] for c in first] == [c["data"] for c in again]
    assert [c["description"] for c in first] == [c["description"] for c in again]
    assert len({c["data"] for c in first}) >= 55
    assert fuzz.make_case(seeds, 6, 0)["data"] != first[0]["data"]
    # every kind of mutation and both formats occur in a few dozen cases
    assert {c["mutator"] for c in first} >= {"bitflip", "truncate", "overwrite", "tflite-field",
                                              "onnx-field"}
    original = {s.name: s.data for s in seeds}
    assert sum(c["data"] != original[c["seed_file"]] for c in first) >= 57


def test_field_edits_go_through_the_schemas(fuzz, seeds):
    import onnx
    from ai_edge_litert import schema_py_generated as schema
    tfl = [c for c in (fuzz.make_case(seeds, 0, i) for i in range(200)) if c["mutator"] ==
           "tflite-field"]
    onx = [c for c in (fuzz.make_case(seeds, 0, i) for i in range(200)) if c["mutator"] ==
           "onnx-field"]
    assert len(tfl) > 20 and len(onx) > 10
    for c in tfl:   # still a well-formed flatbuffer: only the edited fields changed
        assert c["data"][4:8] == b"TFL3"
        schema.ModelT.InitFromPackedBuf(c["data"], 0)
    for c in onx:   # still a protobuf that parses (validity is the reader's business)
        onnx.load_model_from_string(c["data"])


def test_harness_classifies_hangs_crashes_and_memory_faults():
    r = run_python(FUZZ, "--self-test", "--timeout", "3", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for kind, outcome in (("hang", "hang"), ("segfault", "crash"), ("alloc", "over_memory"),
                          ("swallowed", "over_memory"), ("rss", "over_memory"),
                          ("error", "traceback"), ("seed", "accepted")):
        assert any(line.split()[:3] == [kind, outcome, "ok"] for line in r.stdout.splitlines()), \
            r.stdout


def test_replay_writes_the_mutant_and_runs_it_in_the_foreground(fuzz, seeds, tmp_path):
    case = fuzz.make_case(seeds, 3, 1)
    out = tmp_path / ("mutant" + fuzz._ext(case["format"]))
    r = run_python(FUZZ, "--replay", "3-1", "--out", out, timeout=300)
    assert out.read_bytes() == case["data"]
    assert f"case 3-1: {case['seed_file']}" in r.stdout
    outcome = [ln for ln in r.stdout.splitlines() if ln.startswith("outcome: ")]
    assert outcome, r.stdout + r.stderr
    assert r.returncode == (0 if outcome[0].split()[1] in ("accepted", "rejected") else 1)


def test_seeded_mutants_are_rejected_cleanly_or_accepted_plausibly(tmp_path):
    path = tmp_path / "summary.json"
    r = run_python(FUZZ, "--cases", N_CASES, "--seed", 1, "--timeout", 10, "--summary", path,
                   "--quiet", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(path.read_text())
    assert s["cases"] == N_CASES
    assert set(s["seed_outcomes"].values()) == {"accepted"}, s["seed_outcomes"]
    assert s["counts"]["rejected"] > 0 and s["counts"]["accepted"] > 0
    sites = "\n".join(f"{x['count']:>4}  {x['site']}: {(x['message'] or '')[:150]}\n"
                      f"      e.g. {x['repro']}" for x in s["sites"])
    counts = {o: s["counts"][o] for o in ("traceback", "hang", "crash", "over_memory",
                                          "implausible")}
    assert s["failures_total"] == 0 and s["over_rss_limit"] == 0, f"{counts}\n{sites}"
