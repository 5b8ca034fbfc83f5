# Two commands do all the set-up on a fresh machine:
#   make run    install into .venv, then count people on the sample footage (Mall frames in ../shared)
#   make test   install into .venv (and the system packages the tests need), then run the tests
VENV ?= .venv
PYTHON ?= python3
CONFIG ?= configs/mall.yaml
export LOBBYWATCH_MODELS ?= $(abspath ../shared/models)
export LOBBYWATCH_DATA ?= $(abspath ../shared/data)

.PHONY: run test install system-deps bench lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/lobbywatch run --config $(CONFIG)

# System packages for the tests (real broker from issue 3 on). Skipped when already present.
system-deps:
	@command -v mosquitto >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null; \
	  else echo "install mosquitto (sudo apt-get install mosquitto) for the broker tests"; fi; }

test: system-deps install
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check edge models api tests bench
	$(VENV)/bin/mypy

bench: install
	$(VENV)/bin/python bench/mall_accuracy.py --config $(CONFIG)
