# make book | test | notebooks | lab | bench | clean — each sets up .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
READY  := $(VENV)/.ready
CHAPTERS := $(sort $(wildcard book/[0-9]*.ipynb))

.PHONY: book test notebooks lab bench clean distclean

# torch first, then the pinned set, then the package. Without an NVIDIA GPU (no nvidia-smi), torch comes
# from PyTorch's CPU index (a 190 MB wheel; PyPI's Linux wheel is the CUDA build and pulls gigabytes of
# nvidia-* packages); where that index cannot be reached (these machines reach PyPI only, and have the
# CPU wheel locally), the ordinary index is used. With a GPU, PyPI's CUDA build.
TORCH := torch==2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
$(READY): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q $(TORCH); \
	else $(PY) -m pip install -q --timeout 15 --retries 0 --index-url $(TORCH_CPU_INDEX) $(TORCH) \
	  || $(PY) -m pip install -q $(TORCH); fi
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(READY)

book: $(READY)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "The book: file://$(CURDIR)/_build/html/index.html"

# One pytest call: unit tests, a fresh nbval execution of every chapter, the strict build and the
# headless-browser check. Results cached by sweeps go to a fresh directory, so nothing is reused.
# Then the unit tests again on a second CPU code path (AVX2 kernels in ATen and MKL), so a test that
# leans on one machine's summation order fails here rather than on a user's machine.
SECOND_CPU_PATH := ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2
test: $(READY)
	ASSOCMEM_CACHE_DIR=$$(mktemp -d) $(PY) -m pytest tests $(CHAPTERS) --nbval-lax -q -rs --durations=15
	ASSOCMEM_CACHE_DIR=$$(mktemp -d) $(SECOND_CPU_PATH) $(PY) -m pytest tests -m "not book" -q

# NB=book/twins/02_interference.md re-executes one chapter; default: all of them.
notebooks: $(READY)
	ASSOCMEM_CACHE_DIR=$$(mktemp -d) $(PY) tools/notebooks.py execute $(NB)

# Autosave off (a default in the venv's lab settings): opening and playing with a chapter never rewrites
# the tracked .ipynb and its twin; an explicit save does, and `make notebooks NB=...` regenerates them.
lab: $(READY)
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	@echo '{"@jupyterlab/docmanager-extension:plugin": {"autosave": false}}' \
		> $(VENV)/share/jupyter/lab/settings/overrides.json
	$(VENV)/bin/jupyter lab book $(if $(filter 0,$(shell id -u)),--allow-root)

bench: $(READY)
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf _build .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
