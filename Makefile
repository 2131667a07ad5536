# ironlb — the two commands a user runs are `make demo` and `make test`.
# Everything else here is what they are built from.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := iproute2 nftables ndisc6 iputils-ping procps psmisc tcpdump curl
BENCH_APT_PACKAGES := haproxy nginx-light libnginx-mod-stream wrk iperf3

.PHONY: venv sys-deps test-tools bench-deps lint types unit test bench demo lock clean image image-deps image-base

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# System packages the network tests need (root on Debian; skipped if present).
# Any arping will do (the tests speak both flavours): Debian's arping is installed
# only when there is none, since it would replace iputils-arping.
sys-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v arping >/dev/null || missing="$$missing arping"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# Tools the tests run but nothing else may: Debian's nginx unpacked under the venv
# (installing the package would start a web server on the host).
NGINX_BIN := $(VENV)/nginx/usr/sbin/nginx
$(NGINX_BIN):
	mkdir -p $(VENV)/nginx/deb
	cd $(VENV)/nginx/deb && (apt-get download -q nginx 2>/dev/null || (apt-get update -qq && apt-get download -q nginx))
	dpkg -x $(VENV)/nginx/deb/nginx_*.deb $(VENV)/nginx
	$(NGINX_BIN) -v

test-tools: venv $(NGINX_BIN)

bench-deps:
	@missing=""; for p in $(BENCH_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

lint: venv
	$(VENV)/bin/ruff check ironlb tests
	$(VENV)/bin/ruff format --check ironlb tests

types: venv
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/pytest tests/unit

test: venv sys-deps test-tools lint types
	$(VENV)/bin/pytest

bench: venv sys-deps bench-deps
	$(PY) -m tests.bench.run_all $(BENCH_ARGS)

# The main job end to end in the lab (root): cluster, helm install, a LoadBalancer
# Service, round-robin, ARP, failover with the measured gap, teardown.
demo: venv sys-deps
	$(PY) -m ironlb.lab.demo $(DEMO_ARGS)

# Re-resolve the lock file from the ranges in pyproject.toml.
lock:
	$(PY) -m pip install -q pip-tools
	$(VENV)/bin/pip-compile -q --extra dev --strip-extras --no-emit-index-url \
	  --no-emit-find-links -o requirements.lock pyproject.toml

# -- the container image (Containerfile) --------------------------------------
# Built with Debian's podman, as measured on this machine (docs/design.md
# "Container image"): runc (crun fails on hybrid cgroups), lowered rlimits, a
# base imported from debootstrap (no registry is reachable; cached by name, so
# a second `make image` reuses it), wheels built here (TLS to the package index
# is not trusted inside a build), and the host network for the build's apt
# (podman's default bridge network would turn on IPv4 forwarding here).
# Labels that change without the files changing go in as --label: podman 4.3
# (buildah 1.28) reuses a cached LABEL step even when its --build-arg changed.
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' ironlb/__init__.py)
IMAGE ?= ironlb
IMAGE_BASE ?= localhost/ironlb-base:bookworm
IMAGE_MIRROR ?= http://deb.debian.org/debian
PODMAN_OPTS := --runtime runc
PODMAN_LIMITS := --ulimit nofile=4096:4096 --ulimit nproc=4096:4096
IMAGE_APT_PACKAGES := podman runc debootstrap
SOURCES := $(shell find ironlb -type f -not -path '*/__pycache__/*' 2>/dev/null)

image-deps:
	@missing=""; for p in $(IMAGE_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

image-base: image-deps
	@if podman image exists $(IMAGE_BASE); then echo "base $(IMAGE_BASE): cached"; else \
	  dir=$$(mktemp -d /var/tmp/ironlb-base.XXXXXX) && trap 'rm -rf "$$dir"' EXIT && \
	  echo "base $(IMAGE_BASE): debootstrap bookworm" && \
	  debootstrap --variant=minbase bookworm "$$dir" $(IMAGE_MIRROR) >"$$dir.log" 2>&1 || \
	    { tail -20 "$$dir.log" >&2; rm -f "$$dir.log"; exit 1; }; \
	  rm -f "$$dir.log"; rm -rf "$$dir"/var/cache/apt/archives/*.deb "$$dir"/var/lib/apt/lists/*; \
	  tar -C "$$dir" -c . | podman import - $(IMAGE_BASE) >/dev/null; \
	fi

# The project's wheel and its runtime dependencies' wheels, pinned by the lock.
# Any pip will do: the venv's if there is one.
WHEEL_PY ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
dist/wheels.stamp: requirements.lock pyproject.toml $(SOURCES)
	rm -rf dist/wheels build
	$(WHEEL_PY) -m pip wheel -q -c requirements.lock -w dist/wheels .
	touch $@

image: image-base dist/wheels.stamp
	podman build $(PODMAN_OPTS) $(PODMAN_LIMITS) --network host --pull=never -q \
	  --build-arg BASE=$(IMAGE_BASE) --build-arg VERSION=$(VERSION) \
	  --label org.opencontainers.image.version=$(VERSION) \
	  --label org.opencontainers.image.source="$$(git remote get-url origin 2>/dev/null || echo unknown)" \
	  --label org.opencontainers.image.revision="$$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
	  -f Containerfile -t $(IMAGE):$(VERSION) -t $(IMAGE):dev . >/dev/null
	@podman image inspect --format '{{.Id}}' $(IMAGE):dev

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
