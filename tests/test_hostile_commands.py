"""Hostile input to the commands (bundles of another scenario, tampered bundles, symbolic ONNX
dims, broken or hanging adb, runs that measure nothing, nonsense counts, file modes): one
``latpred: ...`` line and a non-zero exit, never a traceback or a silent wrong answer.

Real files throughout: tiny converter-made models profiled on this host into a temp store, a
bundle trained from it by ``latpred train``, ONNX models from onnx.helper, stand-in adb scripts.
A test launches the command line for real (``run_cli``); its further invocations go through the
same entry point in this process (``main_cli``, ``_main``), except where the process matters
(hanging adb children, the umask)."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import stat
import time
import zipfile

import numpy as np
import pytest

from conftest import ROOT, conv_stem, dw_residual, main_cli, run_cli, tiny_keras, write_tflite
from latpred.predictors import load, load_bundle, save_bundle
from latpred.readers import read_model

FAKE_ADB = os.path.join(ROOT, "tests", "fixtures", "android", "fake_adb")


def _cnn(width: int):
    def body(L, x):
        x = dw_residual(L, conv_stem(L, x, width), width)
        x = L.GlobalAveragePooling2D()(x)
        return L.Dense(10)(x)
    return tiny_keras(body)


def _onnx(path, batch) -> str:
    """Conv + Relu on a [batch, 3, 32, 32] input; ``batch`` a string is a symbolic dim."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(
        nodes, "conv_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 8, 32, 32])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    """fp32 models profiled for real (host LiteRT, 1 core), a lasso bundle from `latpred train`,
    an int8 model and ONNX models (fixed and symbolic batch)."""
    root = tmp_path_factory.mktemp("hostile")
    fp32 = [str(write_tflite(_cnn(w), root / f"cnn{w}.tflite")) for w in (8, 16, 24)]
    int8 = str(write_tflite(_cnn(8), root / "cnn8_int8.tflite", int8=True))
    store = str(root / "profiles.db")
    res = run_cli("profile", *fp32, "--out", store, "--runs", "5", "--warmup", "1",
                  "--budget", "0.2", "--quiet")
    assert res.returncode == 0, res.stderr
    bundle = str(root / "lasso.latpred")
    res = run_cli("train", store, "--method", "lasso", "--out", bundle, "--quiet")
    assert res.returncode == 0, res.stderr
    return {"root": root, "fp32": fp32, "int8": int8, "store": store, "bundle": bundle,
            "onnx": _onnx(root / "fixed.onnx", 1), "onnx_sym": _onnx(root / "sym.onnx", "N")}


def _main(capsys, *args) -> tuple[int, str, str]:
    """``latpred ARGS`` in this process (the same entry point, no interpreter start-up)."""
    from latpred.cli import main
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _main_error_line(capsys, *args) -> str:
    rc, out, err = _main(capsys, *args)
    assert rc == 2 and out == "" and err.count("\n") == 1 and err.startswith("latpred: "), \
        (rc, out, err)
    return err.strip()


def _error_line(res, rc: int = 2) -> str:
    """The one stderr line of a refused command."""
    assert res.returncode == rc, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("latpred: "), res.stderr
    return lines[0]


# 5 ------------------------------------------------------------------------------------------------
def test_bundle_of_another_scenario_warns_and_strict_refuses(art, tmp_path):
    scenario = load(art["bundle"]).bundle.scenario
    assert scenario.endswith("/fp32") and "/litert-" in scenario
    # int8 model on an fp32 bundle: a warning naming both, the prediction still printed
    res = run_cli("predict", art["bundle"], art["int8"])
    assert res.returncode == 0, res.stderr
    warn = [l for l in res.stderr.splitlines() if "another scenario" in l]
    assert len(warn) == 1 and "int8" in warn[0] and scenario in warn[0], res.stderr
    assert "cnn8_int8.tflite" in res.stdout
    line = _error_line(main_cli("predict", art["bundle"], art["int8"], "--strict"))
    assert "int8" in line and scenario in line and "--strict" in line
    # an ONNX model on a LiteRT bundle: named by format and runtime
    res = main_cli("predict", art["bundle"], art["onnx"])
    assert res.returncode == 0 and "onnx model" in res.stderr and "litert" in res.stderr
    line = _error_line(main_cli("predict", art["bundle"], art["onnx"], "--strict", "--json"))
    assert "fixed.onnx" in line and "onnx" in line and scenario in line
    # the bundle's own kind of model: no warning, --strict accepts it
    res = main_cli("predict", art["bundle"], art["fp32"][0], "--strict")
    assert res.returncode == 0 and "another scenario" not in res.stderr, res.stderr
    # a bundle measured on another host CPU: warned, refused under --strict
    b = load_bundle(art["bundle"])
    training = {**b.training, "measured_on": {**b.training["measured_on"],
                                              "cpu_model": "Imaginary CPU 9000"}}
    other = save_bundle(dataclasses.replace(b, training=training),
                        str(tmp_path / "other_cpu.latpred"))
    res = main_cli("predict", other, art["fp32"][0])
    assert res.returncode == 0 and "Imaginary CPU 9000" in res.stderr
    line = _error_line(main_cli("predict", other, art["fp32"][0], "--strict"))
    assert "Imaginary CPU 9000" in line and "--strict" in line


# 6 ------------------------------------------------------------------------------------------------
def _strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_tampered_numbers_and_non_finite_predictions_never_reach_json(art, tmp_path, capsys,
                                                                       monkeypatch):
    res = run_cli("predict", art["bundle"], art["fp32"][0], "--json")
    assert res.returncode == 0, res.stderr
    out = _strict_json(res.stdout)
    assert math.isfinite(out[0]["latency_ms"]) and out[0]["latency_ms"] > 0
    # NaN / Infinity / an overflowing literal written into the manifest: refused at load
    with zipfile.ZipFile(art["bundle"]) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    manifest = members["manifest.json"].decode()
    for literal in ("NaN", "Infinity", "-Infinity", "1e999"):
        tampered = re.sub(r'"overhead_ms": [^,\n]+', f'"overhead_ms": {literal}', manifest,
                          count=1)
        assert tampered != manifest
        path = tmp_path / f"tampered_{literal.strip('-')}.latpred"
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, tampered if name == "manifest.json" else data)
        res = main_cli("predict", path, art["fp32"][0], "--json")
        assert res.stdout == ""
        assert path.name in _error_line(res)
    # a non-finite prediction (a predictor damaged after loading) is an error, not output
    import latpred.predictors
    damaged = load(art["bundle"])
    damaged._set_state(dataclasses.replace(damaged.bundle, overhead_ms=float("inf")))
    monkeypatch.setattr(latpred.predictors, "load", lambda path: damaged)
    line = _main_error_line(capsys, "predict", art["bundle"], art["fp32"][0], "--json")
    assert "not a finite number" in line and "cnn8.tflite" in line


# 7 ------------------------------------------------------------------------------------------------
def test_predict_takes_input_shape_for_symbolic_onnx(art, capsys):
    line = _error_line(main_cli("predict", art["bundle"], art["onnx_sym"]))
    assert "symbolic" in line and "--input-shape" in line
    res = main_cli("predict", "--help")
    assert res.returncode == 0 and "--input-shape" in res.stdout   # the flag the message names
    res = run_cli("predict", art["bundle"], art["onnx_sym"], "--input-shape", "1,3,32,32",
                  "--json")
    assert res.returncode == 0, res.stderr
    (pred,) = _strict_json(res.stdout)
    assert pred["model"] == art["onnx_sym"] and pred["latency_ms"] > 0
    assert [op["type"] for op in pred["ops"]] == ["Conv", "Relu"]
    # the same graph as the fixed-shape model
    assert len(read_model(art["onnx_sym"], "1,3,32,32").ops) == len(read_model(art["onnx"]).ops)
    for bad in ("1,3", "0,3,32,32", "a,b"):
        line = _main_error_line(capsys, "predict", art["bundle"], art["onnx_sym"],
                                "--input-shape", bad)
        assert "--input-shape" in line


# 13 -----------------------------------------------------------------------------------------------
def _phone_args(art, adb, store, *extra):
    binary = art["root"] / "benchmark_model"
    binary.write_bytes(b"\x7fELF stand-in, never executed")
    return ("profile", art["fp32"][0], "--device", "pixel4", "--cores", "1L3M", "--adb", adb,
            "--benchmark-binary", binary, "--out", store, "--quiet", *extra)


def _process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")   # dead; left for an init that does not reap


def test_adb_not_executable_or_hanging_is_one_line_within_timeout(art, tmp_path):
    noexec = tmp_path / "adb_noexec"
    shutil.copy(FAKE_ADB, noexec)
    noexec.chmod(0o644)     # even root cannot exec a file without x bits
    line = _error_line(main_cli(*_phone_args(art, noexec, tmp_path / "a.db")))
    assert "not executable" in line and str(noexec) in line
    # `adb devices` hangs, with a child holding the pipes: --timeout 1 kills the whole group
    pidfile = tmp_path / "child.pid"
    hang = tmp_path / "adb_hang"
    hang.write_text(f"#!/bin/sh\nsleep 120 &\necho $! > {pidfile}\nwait\n")
    hang.chmod(0o755)
    t0 = time.monotonic()
    res = run_cli(*_phone_args(art, hang, tmp_path / "b.db", "--timeout", "1"), timeout=100)
    took = time.monotonic() - t0
    line = _error_line(res)
    assert "adb devices" in line and "timed out after 1 s" in line
    assert took < 60, took    # not the old fixed 60 s, nor the child's 120 s
    assert _process_gone(int(pidfile.read_text()))
    # a hang in the benchmark run: that model's failure, same timeout, child killed
    pidfile.unlink()
    shell_hang = tmp_path / "adb_shell_hang"
    shell_hang.write_text(
        '#!/bin/sh\n[ "$1" = "-s" ] && shift 2\ncase "$1" in\n'
        "  devices) printf 'List of devices attached\\nFAKE0001\\tdevice\\n' ;;\n"
        '  shell) case "$*" in *"benchmark_model --graph"*)\n'
        f"    sleep 120 & echo $! > {pidfile}; wait ;; esac ;;\nesac\nexit 0\n")
    shell_hang.chmod(0o755)
    res = run_cli(*_phone_args(art, shell_hang, tmp_path / "c.db", "--timeout", "1"),
                  timeout=100)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "timed out after 1 s" in res.stderr
    assert _process_gone(int(pidfile.read_text()))


# 14 -----------------------------------------------------------------------------------------------
def _nothing_measured(res) -> None:
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("latpred: no model measured"), res.stderr


def test_profile_fails_when_nothing_is_measured_and_rejects_nonsense_counts(art, tmp_path,
                                                                           capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "text.tflite").write_text("not a model")
    (broken / "truncated.tflite").write_bytes(open(art["fp32"][0], "rb").read()[:64])
    store = tmp_path / "broken.db"
    _nothing_measured(run_cli("profile", broken, "--out", store, "--quiet"))
    _nothing_measured(main_cli("profile", broken, "--out", store, "--quiet"))  # stored failures
    _nothing_measured(main_cli("profile", art["fp32"][0], "--backend", "onnxruntime",
                               "--out", tmp_path / "ort.db", "--quiet"))
    # garbage from the phone: every model fails
    garbage = tmp_path / "adb_garbage"
    garbage.write_text(
        '#!/bin/sh\n[ "$1" = "-s" ] && shift 2\ncase "$1" in\n'
        "  devices) printf 'List of devices attached\\nFAKE0001\\tdevice\\n' ;;\n"
        "  shell) printf '\\377\\376\\000junk\\ncount=12 avg=1.2.3 std=4\\n' ;;\nesac\nexit 0\n")
    garbage.chmod(0o755)
    res = main_cli(*_phone_args(art, garbage, tmp_path / "g.db"))
    _nothing_measured(res)
    assert "cannot parse timing line" in res.stderr
    # measured earlier counts: a run that only skips stored models succeeds
    copy = tmp_path / "copy.db"
    shutil.copy(art["store"], copy)
    res = main_cli("profile", art["fp32"][0], "--out", copy, "--quiet")
    assert res.returncode == 0 and "1 already stored" in res.stdout, res.stderr
    # nonsense counts and durations: one line each, before anything is written
    cases = [(("profile", art["fp32"][0], "--out", tmp_path / "n.db"), flag, value)
             for flag, value in (("--timeout", "0"), ("--timeout", "nan"), ("--budget", "-1"),
                                 ("--runs", "0"), ("--warmup", "-1"), ("--passes", "0"))]
    cases += [(("train", art["store"], "--method", "lasso", "--out", tmp_path / "n.latpred"),
               flag, value)
              for flag, value in (("--min-samples", "-3"), ("--jobs", "0"), ("--seed", "-1"))]
    for args, flag, value in cases:
        line = _main_error_line(capsys, *args, flag, value, "--quiet")
        assert flag in line, (flag, line)
    assert not os.path.exists(tmp_path / "n.db")
    assert not os.path.exists(tmp_path / "n.latpred")


# 15 -----------------------------------------------------------------------------------------------
def test_bundle_and_csv_are_private_whatever_the_umask(art, tmp_path):
    old = os.umask(0)
    try:
        plain = tmp_path / "plain.txt"
        with open(plain, "w") as fh:    # control: under umask 000 a plain file is 0666
            fh.write("x")
        bundle, csv = tmp_path / "umask.latpred", tmp_path / "ops.csv"
        res = run_cli("train", art["store"], "--method", "lasso", "--out", bundle, "--quiet")
        assert res.returncode == 0, res.stderr
        res = run_cli("store", "export", art["store"], csv)
        assert res.returncode == 0, res.stderr
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(plain).st_mode) == 0o666
    assert stat.S_IMODE(os.stat(bundle).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(csv).st_mode) == 0o600
    assert load(bundle).bundle.scenario == load(art["bundle"]).bundle.scenario
    import pandas as pd
    n_rows = int(res.stdout.split()[1])      # "exported N op rows to ..."
    assert n_rows > 0 and len(pd.read_csv(csv)) == n_rows
