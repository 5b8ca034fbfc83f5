# Two commands do all the set-up on a fresh machine:
#   make run    install into .venv, then count people on the sample footage (Mall frames in ../shared)
#   make test   install .venv, .venv-export and the system packages the tests need, then run every test
VENV ?= .venv
PYTHON ?= python3
CONFIG ?= configs/mall.yaml
export LOBBYWATCH_MODELS ?= $(abspath ../shared/models)
export LOBBYWATCH_DATA ?= $(abspath ../shared/data)

.PHONY: run test install system-deps bench lint install-export test-export test-deploy deploy-deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/lobbywatch run --config $(CONFIG)

# System packages for the tests (real broker from issue 3 on; Chromium and its driver for the
# phone web app's browser test, issue 12). Skipped when already present.
system-deps:
	@command -v mosquitto >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null; \
	  else echo "install mosquitto (sudo apt-get install mosquitto) for the broker tests"; fi; }
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; \
	  else echo "install postgresql (sudo apt-get install postgresql) for the central store tests"; fi; }
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "install chromium and chromium-driver (sudo apt-get install chromium chromium-driver) for the browser test"; fi; }
	@command -v nats-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq nats-server >/dev/null; \
	  else echo "install nats-server (sudo apt-get install nats-server) for the central broker tests"; fi; }

# Everything CI runs: the suite in .venv, then the model-export tests in their own venv
# (ultralytics and torch never enter the edge runtime's environment).
test: system-deps deploy-deps install install-export
	$(VENV)/bin/pytest -q
	YOLO_OFFLINE=1 $(EXPORT_VENV)/bin/pytest -q tests/test_export.py

lint: install
	$(VENV)/bin/ruff check edge models api central tests bench
	$(VENV)/bin/mypy

bench: install
	$(VENV)/bin/python bench/mall_accuracy.py --config $(CONFIG)

# Model export (issue 6): ultralytics and torch in a separate venv, never in the edge runtime's.
# torch is pinned to the releases that install without a multi-GB download where a wheel cache
# holds them (x86_64: a CUDA build, aarch64: a CPU build); override TORCH_PINS elsewhere.
EXPORT_VENV ?= .venv-export
ifeq ($(shell uname -m),aarch64)
TORCH_PINS ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
endif

$(EXPORT_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/pip install --quiet --upgrade pip
	$(EXPORT_VENV)/bin/pip install --quiet $(TORCH_PINS)
	$(EXPORT_VENV)/bin/pip install --quiet -e '.[dev,export]'
	touch $@

install-export: $(EXPORT_VENV)/.installed

# The export tests (ultralytics offline from a YAML model, ONNX and OpenVINO checked and loaded).
test-export: install-export
	YOLO_OFFLINE=1 $(EXPORT_VENV)/bin/pytest -q tests/test_export.py

# Tools the deployment tests use when present: shellcheck, and systemd-analyze (package systemd).
deploy-deps:
	@command -v shellcheck >/dev/null 2>&1 && command -v systemd-analyze >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq shellcheck systemd >/dev/null; \
	  else echo "install shellcheck and systemd for the deploy tests (they skip without them)"; fi; }

# The deployment tests alone (real mosquitto, systemd-analyze, install.sh --dry-run).
test-deploy: system-deps deploy-deps install
	$(VENV)/bin/pytest -q tests/test_deploy*.py tests/test_doctor.py tests/test_watchdog.py
