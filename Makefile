# Every target installs what it needs; `make demo` and `make test` work on a
# fresh Debian 12 machine with network access to Debian's archive, PyPI, npm and
# the Go module proxy. Downloads and builds are cached in $(CACHE).

PYTHON ?= python3
VENV := .venv
CACHE ?= $(or $(IPCS_FS_CACHE),$(HOME)/.cache/ipcs-fs)
export IPCS_FS_CACHE := $(CACHE)
STAMP := $(VENV)/.installed

.PHONY: venv tools images demo test test-unit bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	$(VENV)/bin/python -m ipcs_fs.service._generate
	touch $(STAMP)

tools:
	bash scripts/install-host-packages.sh
	bash scripts/install-unixfs-oracle.sh
	bash scripts/install-kubo.sh
	bash scripts/install-containerd.sh

images: venv
	bash scripts/install-host-packages.sh
	$(VENV)/bin/python -m fixtures.debian_images

demo: venv images
	$(VENV)/bin/python -m fixtures.demo

# Each run gets a fresh pytest base directory, removed with rm -rf afterwards:
# pytest's own rotation of old directories fails on trees deeper than Python's
# recursion limit, which the path-depth tests create.
PYTEST = tmp=$$(mktemp -d /tmp/ipcs-fs-test.XXXXXX); status=0; \
	$(VENV)/bin/python -m pytest -ra --basetemp=$$tmp/pytest $(1) || status=$$?; \
	rm -rf $$tmp; exit $$status

test: venv tools images
	$(call PYTEST,)

test-unit: venv
	$(call PYTEST,-m "not integration")

# The suite's rounds (RUNS, default 3) take about a minute each on 2 cores.
bench: venv tools images
	$(VENV)/bin/python -m benchmarks.run $(if $(RUNS),--runs $(RUNS))

clean:
	rm -rf $(VENV) build *.egg-info
