# ironlb — the two commands a user runs are `make demo` and `make test`.
# Everything else here is what they are built from.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := iproute2 nftables ndisc6 iputils-ping procps psmisc tcpdump
BENCH_APT_PACKAGES := haproxy nginx-light libnginx-mod-stream wrk iperf3

.PHONY: venv sys-deps test-tools bench-deps lint types unit test bench demo lock clean

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

# The demo needs the speaker (next milestone); until then say so, do not pretend.
demo:
	@echo "make demo is not available yet: it arrives with the Helm chart and the container image." >&2
	@echo "What runs today is listed in README.md ('What runs today')." >&2
	@exit 2

# Re-resolve the lock file from the ranges in pyproject.toml.
lock:
	$(PY) -m pip install -q pip-tools
	$(VENV)/bin/pip-compile -q --extra dev --strip-extras --no-emit-index-url \
	  --no-emit-find-links -o requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
