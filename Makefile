# mlgov — the two commands: `make run` and `make test`. Each sets itself up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MLGOV  := $(VENV)/bin/mlgov
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test setup setup-dev setup-sagemaker lint typecheck pytest bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

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

pytest: setup-dev setup-sagemaker
	$(PY) -m pytest $(PYTEST_ARGS)

test: setup-dev lint typecheck pytest

clean:
	rm -rf $(VENV) $(SM_VENV) .mlgov .pytest_cache .mypy_cache .ruff_cache
