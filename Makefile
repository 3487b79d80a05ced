# A fresh clone: `make setup` (virtualenv + control-plane binaries), then `make test`.
# `make check` judges the bundled example manifests offline; `make run` serves the webhook locally.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# KUBEBUILDER_ASSETS=<dir> from the cache (builds kube-apiserver, etcd, ... on the first run only).
ASSETS = export "$$(hack/control-plane.sh | tail -1)"
LOCAL := .local

.PHONY: setup control-plane test unit e2e lint check run bench bench-tools clean kind-up kind-demo kind-down

setup:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	hack/control-plane.sh >/dev/null

control-plane:
	hack/control-plane.sh

test: lint
	$(ASSETS) && $(BIN)/pytest

unit: lint
	$(BIN)/pytest -m 'not e2e'

e2e:
	$(ASSETS) && $(BIN)/pytest -m e2e

lint:
	$(BIN)/ruff check webhook tests bench
	$(BIN)/ruff format --check webhook tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

check:
	$(BIN)/python -m webhook check examples/manifests/

$(LOCAL)/certs/tls.crt:
	$(BIN)/python -m webhook certs --out-dir $(LOCAL)/certs --service localhost --namespace default \
		--dns localhost --ip 127.0.0.1 >/dev/null

run: $(LOCAL)/certs/tls.crt
	$(BIN)/python -m webhook serve --host 127.0.0.1 --port 8443 --example-nodes \
		--cert-file $(LOCAL)/certs/tls.crt --key-file $(LOCAL)/certs/tls.key

# The benches' load tool (wrk, from Debian) and Python extras (psutil); not part of `make setup`.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
bench-tools:
	$(SUDO) apt-get update && $(SUDO) apt-get install -y wrk
	$(BIN)/pip install -q -e '.[bench]'

bench:
	$(BIN)/python bench/manifests.py
	$(BIN)/python bench/decisions.py
	$(BIN)/python bench/server.py
	$(ASSETS) && export "$$(hack/kyverno.sh | tail -1)" && $(BIN)/python bench/apiserver.py

# Local testing on kind (needs docker, kind, kubectl, helm; see docs/install.md). Not run by CI.
kind-up:
	$(MAKE) -f hack/kind/Makefile up

kind-demo:
	$(MAKE) -f hack/kind/Makefile demo

kind-down:
	$(MAKE) -f hack/kind/Makefile down

clean:
	rm -rf $(VENV) $(LOCAL) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
