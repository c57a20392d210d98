"""The scenario object and the host CPU it was measured on: parsed once, never a silent default;
stores refuse another CPU's rows, bundles say when they come from another CPU. Real measurements
of a converter-made model on this machine; another machine's store is simulated by rewriting the
CPU its rows record (labelled so below)."""
from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import conv_stem, main_cli, run_cli, tiny_keras, write_tflite
from latpred.cpu.fusion import runtime_folds
from latpred.cpu.kernels import uses_cpu_kernels
from latpred.devices import HostCpu, this_cpu
from latpred.errors import LatpredError
from latpred.predictors import LatencyPredictor
from latpred.scenario import Scenario
from latpred.store import ProfileStore


@pytest.mark.parametrize("text", [
    "host/litert-2.3.0+opprof/cpu1/fp32", "host/litert-2.3.0/cpu2/int8",
    "pixel4/tflite-2.9.1/cpu1L3M/int8", "galaxys10/tflite-2.9/gpu/fp16",
    "bench/tflite-2.10/gpu-adreno640/fp16", "host/onnxruntime-1.20.1/cpu1/fp32"])
def test_scenario_round_trips_its_id(text):
    s = Scenario.parse(text)
    assert s.id == text and Scenario.parse(s.id) == s and Scenario.parse(s) is s


def test_scenario_knows_its_op_timing_and_hardware():
    opprof = Scenario.parse("host/litert-2.3.0+opprof/cpu1/fp32")
    isolated = Scenario.parse("host/litert-2.3.0/cpu2/fp32")
    phone = Scenario.parse("pixel4/tflite-2.9/cpu1L3M/int8")
    ort = Scenario.parse("host/onnxruntime-1.20.1/cpu1/fp32")
    gpu = Scenario.parse("bench/tflite-2.10/gpu-adreno640/fp16")
    assert [s.op_timing for s in (opprof, isolated, phone, ort)] == \
        ["opprof", "isolated", "profiler", "profiler"]
    # profilers report whole microseconds; isolated timings have no such floor
    assert (opprof.op_timer_resolution_ms, isolated.op_timer_resolution_ms) == (1e-3, 0.0)
    assert opprof.base_version == "2.3.0" and (isolated.threads, phone.threads) == (2, 4)
    assert gpu.is_gpu and gpu.gpu_chip == "adreno640" and gpu.threads is None
    # the runtime rules read the object: XNNPACK folds on LiteRT/TFLite CPUs only
    assert runtime_folds(opprof) and runtime_folds(phone) and not runtime_folds(ort)
    assert not runtime_folds(gpu) and uses_cpu_kernels(ort) and not uses_cpu_kernels(gpu)


@pytest.mark.parametrize("text", [
    "host/litert-2.3.0/cpu1/fp8",          # unknown precision
    "host/tensorrt-10/cpu1/fp32",          # unknown runtime
    "host/litert-2.3.0/cpuX/fp32",         # not a core configuration
    "pixel4 cpu fp32", "", "SYNTHETIC-gpu"])
def test_bad_scenario_is_one_clear_error(text):
    with pytest.raises(LatpredError) as err:
        Scenario.parse(text)
    assert "\n" not in str(err.value)


def test_host_cpu_records_compare_on_what_both_say():
    here = this_cpu()
    assert here.model and here.isa          # this machine's /proc/cpuinfo names both
    epyc = HostCpu("AMD EPYC")
    assert epyc.differs_from(HostCpu("Intel(R) Xeon(R) Processor"))
    assert not epyc.differs_from(HostCpu("AMD EPYC", isa="avx2"))   # the old record has no ISA
    assert HostCpu("AMD EPYC", "avx512").differs_from(HostCpu("AMD EPYC", "avx2"))
    assert HostCpu.from_facts(here.facts()) == here and HostCpu.from_facts({}) is None


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Two tiny CNNs, one profiled for real on this machine into a store."""
    tmp = tmp_path_factory.mktemp("scenario")
    first = write_tflite(tiny_keras(lambda L, x: L.GlobalAveragePooling2D()(conv_stem(L, x, 8))),
                         tmp / "first.tflite")
    second = write_tflite(tiny_keras(lambda L, x: L.Flatten()(conv_stem(L, x, 16))),
                          tmp / "second.tflite")
    store = tmp / "store.sqlite"
    r = run_cli("profile", first, "--out", store, "--runs", "3", "--warmup", "1")
    assert r.returncode == 0, r.stderr
    return {"tmp": tmp, "first": first, "second": second, "store": store}


def _pretend_measured_on(store, cpu: HostCpu) -> None:
    """SIMULATED: rewrite the CPU the stored rows record, as if another machine measured them."""
    con = sqlite3.connect(store)
    with con:
        for rid, machine in con.execute("SELECT id, machine FROM models").fetchall():
            facts = {**json.loads(machine), **cpu.facts()}
            con.execute("UPDATE models SET machine = ? WHERE id = ?", (json.dumps(facts), rid))
    con.close()


def test_store_gives_the_scenario_with_this_cpu(measured):
    with ProfileStore(measured["store"], readonly=True) as st:
        (sid,) = st.scenarios()
        scenario = st.scenario(sid)
    assert scenario.id == sid and scenario.cpu == this_cpu()
    assert str(this_cpu()) in scenario.describe()


def test_profile_refuses_another_cpus_scenario_and_predict_warns(measured, tmp_path):
    import shutil
    store = tmp_path / "other_cpu.sqlite"
    shutil.copy(measured["store"], store)
    other = HostCpu("SIMULATED other CPU", isa="sse4", family="99", model_number="1")
    _pretend_measured_on(store, other)
    # adding this machine's rows to a scenario measured on another CPU: one line, exit 2
    r = run_cli("profile", measured["second"], "--out", store, "--runs", "3")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "SIMULATED other CPU" in r.stderr and "new store" in r.stderr
    with ProfileStore(store, readonly=True) as st:
        assert len(st.models()) == 1                      # nothing was added
    # a bundle of that store records the other CPU, and predict says so here
    bundle = tmp_path / "b.latpred"
    r = main_cli("train", store, "--method", "lasso", "--min-samples", "1", "--out", bundle,
                 "--quiet")
    assert r.returncode == 0, r.stderr
    est = LatencyPredictor.load(bundle)
    assert HostCpu.from_facts(est.training_["measured_on"]) == other
    r = run_cli("predict", bundle, measured["first"], "--json")
    assert r.returncode == 0 and "SIMULATED other CPU" in r.stderr and str(this_cpu()) in r.stderr
    assert json.loads(r.stdout)[0]["latency_ms"] > 0


def test_a_scenario_of_two_cpus_is_refused(measured, tmp_path):
    import shutil
    store = tmp_path / "mixed.sqlite"
    shutil.copy(measured["store"], store)
    r = main_cli("profile", measured["second"], "--out", store, "--runs", "3", "--warmup", "1")
    assert r.returncode == 0, r.stderr
    con = sqlite3.connect(store)   # SIMULATED: the second model's row from another CPU
    with con:
        rid, machine = con.execute("SELECT id, machine FROM models ORDER BY id DESC").fetchone()
        facts = {**json.loads(machine), **HostCpu("SIMULATED other CPU", "sse4").facts()}
        con.execute("UPDATE models SET machine = ? WHERE id = ?", (json.dumps(facts), rid))
    con.close()
    with ProfileStore(store, readonly=True) as st:
        with pytest.raises(LatpredError, match="mixes measurements of two CPUs"):
            st.scenario(st.scenarios()[0])
    r = run_cli("train", store, "--method", "lasso", "--out", tmp_path / "x.latpred", "--quiet")
    assert r.returncode == 2 and "two CPUs" in r.stderr and r.stderr.count("\n") == 1
