# latpred — the two contract commands are `make demo` and `make test`; both set up .venv themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export TF_CPP_MIN_LOG_LEVEL ?= 2
export TF_USE_LEGACY_KERAS ?= 1
QUICK ?=
N ?= 1000

.PHONY: install test demo bench experiments fuzz bundles clean

install: $(STAMP)

# torch is installed first with its exact pin: that is the CPU build on this machine's disk;
# any other spec would pull several GB of CUDA packages.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[build,dev]'
	touch $(STAMP)

# one worker per CPU; a test file stays on one worker, so that its module fixtures (real
# converter models, real profiling runs) are built once; then, alone, the tests that time runs
# on all CPUs (a neighbouring worker would skew their 2-thread timings)
test: install
	$(PY) -m pytest -q -p no:cacheprovider -n auto --dist loadfile -m "not exclusive_cpu"
	$(PY) -m pytest -q -p no:cacheprovider -m exclusive_cpu

demo: install
	$(PY) experiments/demo.py

bench: install
	$(PY) experiments/bench_parse.py

experiments: install
	$(PY) experiments/run_all.py $(if $(QUICK),--quick,)

# hostile-input fuzzing: N seeded mutants of real models (summary in experiments/.cache/fuzz)
fuzz: install
	$(PY) experiments/fuzz.py --cases $(N)

# the committed source bundle of `latpred adapt` (datasets/host/CARD.md): GBDT on the primary
# store's 1000 synthetic models
PRIMARY := datasets/host/litert_cpu1_fp32_opprof.sqlite
bundles: install
	$(PY) -c "import sys; from latpred.store import ProfileStore; s = ProfileStore(sys.argv[1], readonly=True); print(*sorted(m for m in s.frame(s.scenarios()[0]).model.unique() if m.startswith('nas_')), sep='\n')" $(PRIMARY) > $(VENV)/synthetic_models.txt
	$(PY) -m latpred train $(PRIMARY) --method gbdt --train-models $(VENV)/synthetic_models.txt --out datasets/host/bundles/litert_cpu1_fp32_opprof_gbdt.latpred

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
