# cnnzoo: the front door. `make help` lists every target.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PYTEST_ARGS ?=
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_REGISTRY ?= ghcr.io/example/cnnzoo
IMAGE_TAG ?= $(VERSION)
LOCAL_BASE ?= localhost/cnnzoo-base:bookworm
LINT_VENV ?= .venv-lint
# Extra packages for both images (e.g. a plugin of architectures): requirement specifiers
# (mypkg==1.2), wheel files or folders of wheels; docs/your-own-configurations.md.
EXTRA_PACKAGES ?=
CHECKOV_VERSION := 3.3.30
# The pip that installs the locks, here and in images/Dockerfile.
PIP_VERSION := 26.3

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The venv is requirements-dev.txt (the CPU image's lock plus the dev tools, every file
# hash-checked), then cnnzoo itself with --no-deps: the tests run against exactly the CPU
# image's packages. --clear: a package the lock dropped does not linger.
# (After changing a dependency in pyproject.toml, `make lock` rewrites the locks.)
$(BIN)/cnnzoo: pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	@touch $@

.PHONY: install
install: $(BIN)/cnnzoo ## create .venv from requirements-dev.txt (hash-checked), cnnzoo editable

.PHONY: system-deps
system-deps: ## provision what the tests need beyond the venv (headless Chromium), or name it
	@# A missing need is named in one line and the test needing it then fails (never skips).
	-@bash tools/system-deps.sh browser

# The container tier runs wherever its engines exist or can be provisioned (root + apt);
# elsewhere system-deps says in one line that it did not run and why, and the rest runs.
# Two passes: the independent tests spread over the cores with pytest-xdist (a file's tests
# on one worker, so its module fixtures are built once; at most 4 workers, each may hold
# TensorFlow models), then the `serial` ones alone. Each pass lists its 25 slowest tests.
PYTEST_XDIST ?= -n auto --maxprocesses 4 --dist loadfile
.PHONY: test
test: install system-deps ## run the test suite (all tiers, the container tier and the local pipeline run)
	@if bash tools/system-deps.sh containers; then sel="not gpu_image"; \
	else sel="not containers and not gpu_image"; fi; \
	rc=0; \
	echo "$(BIN)/pytest $(PYTEST_XDIST) -m '$$sel and not serial' $(PYTEST_ARGS)"; \
	$(BIN)/pytest $(PYTEST_XDIST) -m "$$sel and not serial" $(PYTEST_ARGS) || rc=$$?; \
	echo "$(BIN)/pytest -m '$$sel and serial' $(PYTEST_ARGS)"; \
	$(BIN)/pytest -m "$$sel and serial" $(PYTEST_ARGS) || { r=$$?; [ $$r -eq 5 ] || rc=$$r; }; \
	exit $$rc

.PHONY: test-images
test-images: install ## the container tier only: build the CPU image, run the steps and a pipeline in it
	bash tools/system-deps.sh containers
	$(BIN)/pytest -m "containers and not gpu_image" tests/test_images_run.py $(PYTEST_ARGS)

.PHONY: test-images-gpu
test-images-gpu: install ## build the GPU image (several GB of CUDA wheels) and check TensorFlow in it
	bash tools/system-deps.sh containers
	$(BIN)/pytest -m gpu_image tests/test_images_run.py $(PYTEST_ARGS)

# Every shell script in the repository (tests/test_packaging.py checks none is left out).
SHELL_SCRIPTS := .ci/run $(sort $(wildcard images/*.sh tools/*.sh))

.PHONY: lint
lint: install $(LINT_VENV)/bin/checkov ## ruff, deptry, import-linter, shellcheck, hadolint, kustomize + schemas, checkov
	$(BIN)/ruff check cnnzoo components pipelines tests benchmarks tools examples
	$(BIN)/ruff format --check cnnzoo components pipelines tests benchmarks tools
	@# deptry twice: the package against its dependencies (no dev tool may be imported),
	@# then the dev-only code, for which the dev extra counts and the package's may go unused.
	$(BIN)/deptry cnnzoo components pipelines
	$(BIN)/deptry tests tools benchmarks --ignore DEP002,DEP004 --exclude __pycache__ \
	  -kf cnnzoo -kf components -kf pipelines -kf benchmarks
	$(BIN)/lint-imports
	$(BIN)/shellcheck $(SHELL_SCRIPTS)
	$(BIN)/hadolint $(wildcard images/Dockerfile*)
	$(PY) tools/validate_manifests.py --render-to build/rendered
	@# checkov reads the rendered manifests: what `kubectl apply -k` sends, namespace included.
	$(LINT_VENV)/bin/checkov --quiet --compact --skip-download --framework dockerfile kubernetes \
	  -d images -d build/rendered

# checkov pins packaging/python-dateutil below the project's, so it gets its own venv.
$(LINT_VENV)/bin/checkov:
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)

.PHONY: docs
docs: install ## regenerate the reference pages, build the documentation site in build/site (mkdocs --strict)
	$(PY) tools/docs_reference.py
	$(BIN)/mkdocs build --strict

.PHONY: images
images: ## build the CPU and GPU images with docker or podman (IMAGE_REGISTRY, IMAGE_TAG, FLAVORS, BASE_IMAGE, EXTRA_PACKAGES)
	IMAGE_REGISTRY=$(IMAGE_REGISTRY) IMAGE_TAG=$(IMAGE_TAG) VERSION=$(VERSION) \
	  EXTRA_PACKAGES="$(EXTRA_PACKAGES)" bash images/build.sh build

.PHONY: local-base
local-base: ## build the Debian stand-in base where no registry is reachable (then: make images BASE_IMAGE=LOCAL_BASE)
	bash images/local-base.sh $(LOCAL_BASE)

.PHONY: push
push: images ## build and push both images to IMAGE_REGISTRY, tagged <version> and <version>-<commit>
	IMAGE_REGISTRY=$(IMAGE_REGISTRY) IMAGE_TAG=$(IMAGE_TAG) VERSION=$(VERSION) bash images/build.sh push

# The three locks, by uv from pyproject.toml (uv is a pinned dev dependency): exact pins with
# every file's hash, for CPython 3.11 on x86-64 Linux (the images' Python and platform).
# An existing lock's pins are kept unless pyproject.toml rules them out (UPGRADE=1: the
# newest allowed). The GPU image and the venv are resolved within the CPU image's pins.
LOCK := $(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
  --python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock" \
  $(if $(UPGRADE),--upgrade)

.PHONY: lock
lock: | $(BIN)/uv ## after changing a dependency in pyproject.toml: rewrite the three locks (uv)
	$(LOCK) --extra cpu -o images/requirements-cpu.txt
	$(LOCK) --extra gpu -c images/requirements-cpu.txt -o images/requirements-gpu.txt
	$(LOCK) --extra cpu --extra docker --extra dev -c images/requirements-cpu.txt \
	  -o requirements-dev.txt

# `make lock` needs only uv: a venv that no longer matches pyproject.toml still has it.
$(BIN)/uv:
	$(MAKE) install

.PHONY: tensorboard
tensorboard: install ## serve the latest local run's TensorBoard (RUN=runs/<ts> or gs://... for another)
	$(BIN)/cnnzoo tensorboard $(RUN)

.PHONY: format
format: install ## format the code with ruff
	$(BIN)/ruff format cnnzoo components pipelines tests benchmarks tools
	$(BIN)/ruff check --fix cnnzoo components pipelines tests benchmarks tools

.PHONY: clean
clean: ## remove build outputs (keeps .venv and runs/)
	rm -rf build .pytest_cache .ruff_cache

# --- the pipeline: local run, compile, submit --------------------------------------------
KFP_HOST ?= http://localhost:8080
SUBMIT_ARGS ?=
PIPELINE_IMAGES = --image $(IMAGE_REGISTRY)/cnnzoo:$(IMAGE_TAG) \
  --gpu-image $(IMAGE_REGISTRY)/cnnzoo-gpu:$(IMAGE_TAG)

.PHONY: run
run: install ## run the pipeline locally (kfp.local): all fourteen models, demo data and profile
	$(BIN)/cnnzoo run

.PHONY: compile
compile: install ## compile the pipeline to build/cnn_comparison.yaml (configs/cluster.yaml)
	$(BIN)/cnnzoo compile --out build/cnn_comparison.yaml $(PIPELINE_IMAGES)

.PHONY: submit
submit: install ## compile and start a cluster run: make submit KFP_HOST=URL SUBMIT_ARGS='--data gs://...'
	$(BIN)/cnnzoo submit --host $(KFP_HOST) $(PIPELINE_IMAGES) $(SUBMIT_ARGS)

# --- benchmarks ---------------------------------------------------------------------------
BENCH_ARGS ?=

.PHONY: bench
bench: install ## input path and training speed vs the notebook's way (benchmarks/bench.py)
	$(PY) -m benchmarks.bench $(BENCH_ARGS)

.PHONY: bench-quick
bench-quick: install ## the benchmark at tiny sizes: checks that it runs (what CI runs), not timed
	$(PY) -m benchmarks.bench --quick $(BENCH_ARGS)

.PHONY: bench-memory
bench-memory: install ## time and peak memory of split and training at 2k, 20k, 100k images
	$(PY) -m benchmarks.memory $(BENCH_ARGS)
