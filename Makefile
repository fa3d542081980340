# mlgov — the two commands: `make run` and `make test`. Each sets itself up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MLGOV  := $(VENV)/bin/mlgov
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test setup setup-dev setup-sagemaker lint typecheck pytest bench clean helm-tools image

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# The Helm chart's checks (tests/deploy/test_helm_chart.py) run Helm's library in a tool virtualenv of its own:
# helm-python-sdk and helm-sdkpy need Python >= 3.12 (pyenv's, or a python3.12/3.13 on PATH).
HELM_VENV   ?= .venv-helm
HELM_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python $(HOME)/.pyenv/versions/3.12*/bin/python) $(shell command -v python3.13 python3.12 2>/dev/null))
HELM_TOOLS  := helm-python-sdk==0.2.2 helm-sdkpy==0.1.32 kubernetes-validate==1.37.0 PyYAML

$(HELM_VENV)/.installed: Makefile
	@test -n "$(HELM_PYTHON)" || { echo "helm-tools: no Python >= 3.12 found (set HELM_PYTHON)"; exit 1; }
	test -x $(HELM_VENV)/bin/python || $(HELM_PYTHON) -m venv $(HELM_VENV)
	$(HELM_VENV)/bin/python -m pip install -q $(HELM_TOOLS)
	touch $@

helm-tools: $(HELM_VENV)/.installed

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

# The SageMaker Python SDK v2 pins packaging/attrs/importlib-metadata/protobuf below mlgov's, so the drop-in tests
# run it from its own virtualenv (tests/test_sagemaker_sdk.py runs SDK scripts there as subprocesses).
SM_VENV ?= .venv-sagemaker
$(SM_VENV)/.installed: tests/sagemaker-sdk-requirements.txt
	test -x $(SM_VENV)/bin/python || $(PYTHON) -m venv $(SM_VENV)
	$(SM_VENV)/bin/python -m pip install -q --upgrade pip
	$(SM_VENV)/bin/python -m pip install -q -r tests/sagemaker-sdk-requirements.txt
	touch $@
setup-sagemaker: $(SM_VENV)/.installed

run: setup
	$(MLGOV) db upgrade
	$(MLGOV) demo seed --if-empty
	$(MLGOV) serve --host $(HOST) --port $(PORT)

lint: setup-dev
	$(VENV)/bin/ruff check .

typecheck: setup-dev
	$(VENV)/bin/mypy

# Two test processes (pytest-xdist): on two cores the suite ran 31 -> 23 min; each process gets its own databases,
# SeaweedFS and ports. PYTEST_WORKERS=0 runs it in one process. The slowest tests are listed at the end, so that a CI log
# on a slower machine says where the time went.
PYTEST_WORKERS ?= 2
pytest: setup-dev helm-tools setup-sagemaker
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal --durations=25 --tb=short $(PYTEST_ARGS)

test: setup-dev lint typecheck pytest

# The container image (Docker engine, else buildah; see helm/build-image.sh). IMAGE=registry/mlgov:tag to name it.
IMAGE ?= localhost/mlgov:dev
image:
	helm/build-image.sh $(IMAGE)

clean:
	rm -rf $(VENV) $(HELM_VENV) $(SM_VENV) .mlgov .pytest_cache .mypy_cache .ruff_cache
