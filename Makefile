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
CHECKOV_VERSION := 3.3.30

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The image lock constrains the venv, so tests run against exactly the image's packages
# (after changing a pin in pyproject.toml, `make lock` rewrites the lock).
$(BIN)/cnnzoo: pyproject.toml images/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c images/requirements.txt -e ".[dev]"
	@touch $@

.PHONY: install
install: $(BIN)/cnnzoo ## create .venv and install cnnzoo (editable) with dev extras

.PHONY: system-deps
system-deps: ## provision what the tests need beyond the venv (headless Chromium), or name it
	@# A missing need is named in one line and the test needing it then fails (never skips).
	-@bash tools/system-deps.sh browser

# The container tier runs wherever its engines exist or can be provisioned (root + apt);
# elsewhere system-deps says in one line that it did not run and why, and the rest runs.
.PHONY: test
test: install system-deps ## run the test suite (all tiers, the container tier and the local pipeline run)
	@if bash tools/system-deps.sh containers; then \
	  echo "$(BIN)/pytest -m 'not gpu_image' $(PYTEST_ARGS)"; \
	  $(BIN)/pytest -m "not gpu_image" $(PYTEST_ARGS); \
	else \
	  echo "$(BIN)/pytest -m 'not containers and not gpu_image' $(PYTEST_ARGS)"; \
	  $(BIN)/pytest -m "not containers and not gpu_image" $(PYTEST_ARGS); \
	fi

.PHONY: test-images
test-images: install ## the container tier only: build the CPU image, run the steps and a pipeline in it
	bash tools/system-deps.sh containers
	$(BIN)/pytest -m "containers and not gpu_image" tests/test_images_run.py $(PYTEST_ARGS)

.PHONY: test-images-gpu
test-images-gpu: install ## build the GPU image (several GB of CUDA wheels) and check TensorFlow in it
	bash tools/system-deps.sh containers
	$(BIN)/pytest -m gpu_image tests/test_images_run.py $(PYTEST_ARGS)

.PHONY: lint
lint: install $(LINT_VENV)/bin/checkov ## ruff, import-linter (the layers), hadolint, manifest validation, checkov
	$(BIN)/ruff check cnnzoo components pipelines tests benchmarks tools
	$(BIN)/ruff format --check cnnzoo components pipelines tests benchmarks tools
	$(BIN)/lint-imports
	$(BIN)/hadolint $(wildcard images/Dockerfile*)
	$(PY) tools/validate_manifests.py --render-to build/rendered
	@# checkov reads the rendered manifests: what `kubectl apply -k` sends, namespace included.
	$(LINT_VENV)/bin/checkov --quiet --compact --skip-download --framework dockerfile kubernetes \
	  -d images -d build/rendered

# checkov pins packaging/python-dateutil below the project's, so it gets its own venv.
$(LINT_VENV)/bin/checkov:
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)

.PHONY: images
images: ## build the CPU and GPU images with docker or podman (IMAGE_REGISTRY, IMAGE_TAG, FLAVORS, BASE_IMAGE)
	IMAGE_REGISTRY=$(IMAGE_REGISTRY) IMAGE_TAG=$(IMAGE_TAG) VERSION=$(VERSION) bash images/build.sh build

.PHONY: local-base
local-base: ## build the Debian stand-in base where no registry is reachable (then: make images BASE_IMAGE=LOCAL_BASE)
	bash images/local-base.sh $(LOCAL_BASE)

.PHONY: push
push: images ## build and push both images to IMAGE_REGISTRY, tagged <version> and <version>-<commit>
	IMAGE_REGISTRY=$(IMAGE_REGISTRY) IMAGE_TAG=$(IMAGE_TAG) VERSION=$(VERSION) bash images/build.sh push

.PHONY: lock
lock: ## after changing a pin in pyproject.toml: reinstall unconstrained, rewrite the image locks
	$(BIN)/pip install --quiet -e ".[dev]"
	$(PY) tools/lock_images.py

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
