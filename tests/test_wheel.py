"""The built wheel, installed into a fresh venv and run from outside the repository, works on its
own: GPU rules and the device catalog travel as package data, not through the source tree."""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from latpred.cli import main as in_tree_main

REPO = Path(__file__).resolve().parents[1]


def _tiny_cnn(keras, seed: int):
    L = keras.layers
    x0 = keras.Input((16, 16, 3), batch_size=1)
    x = L.Conv2D(8 + 8 * seed, 3, padding="same", activation="relu")(x0)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.Add()([x, L.Conv2D(8 + 8 * seed, 1)(x)])
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(x0, L.Dense(4)(x))


def _run(cmd, cwd, env):
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, f"{cmd}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def _in_tree(capsys, *argv) -> str:
    capsys.readouterr()
    assert in_tree_main([str(a) for a in argv]) == 0
    return capsys.readouterr().out


def test_wheel_in_fresh_venv_runs_kernels_and_predict(tmp_path, capsys):
    import tensorflow as tf
    import tf_keras as keras
    models = tmp_path / "models"
    models.mkdir()
    for seed in range(3):
        (models / f"tiny{seed}.tflite").write_bytes(
            tf.lite.TFLiteConverter.from_keras_model(_tiny_cnn(keras, seed)).convert())
    model = models / "tiny1.tflite"

    # Build from a copy of what the wheel is made of: an in-tree build would write build/ into the
    # shared checkout and keep stale files from earlier builds in build/lib (and so in the wheel).
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "latpred", src / "latpred",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "--no-index", "-w", tmp_path / "wheels", src], tmp_path, env)
    (wheel,) = (tmp_path / "wheels").glob("latpred-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"latpred/kernels_rules/tflite-2.10/fusion.json", "latpred/data/devices.json"} <= names

    # Fresh venv; dependencies come from this interpreter's site-packages through a .pth file. Its
    # lines add folders without reading their .pth files, so the editable latpred stays hidden.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp_path, env)
    py = venv / "bin" / "python"
    purelib = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        tmp_path, env).strip())
    deps = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]])
    (purelib / "project_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], tmp_path, env)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert REPO not in outside.resolve().parents
    where = _run([py, "-c", "import latpred; print(latpred.__file__)"], outside, env).strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), where

    cli = venv / "bin" / "latpred"
    kernels = json.loads(_run([cli, "kernels", model, "--gpu", "adreno640", "--json"], outside, env))
    assert kernels["gpu"] == "adreno640" and kernels["family"] == "adreno6xx"
    assert [k["kernel"] for k in kernels["kernels"]][:2] == ["Conv2D", "DepthwiseConv2D"]
    assert kernels == json.loads(_in_tree(capsys, "kernels", model, "--gpu", "adreno640", "--json"))

    store, bundle = outside / "store.sqlite", outside / "b.latpred"
    _run([cli, "profile", models, "--out", store, "--runs", "5", "--warmup", "1", "--quiet"],
         outside, env)
    _run([cli, "train", store, "--method", "lasso", "--out", bundle, "--quiet"], outside, env)
    (pred,) = json.loads(_run([cli, "predict", bundle, model, "--json"], outside, env))
    assert pred["latency_ms"] > 0 and pred["ops"]
    assert abs(pred["overhead_ms"] + sum(o["latency_ms"] for o in pred["ops"]) - pred["latency_ms"]) < 1e-9
    assert [pred] == json.loads(_in_tree(capsys, "predict", bundle, model, "--json"))
