# Two commands on a fresh Debian/Ubuntu machine; each installs what it needs (apt-get and a virtualenv) first:
#   make run    serve the example app on http://127.0.0.1:8000 (throwaway MariaDB unless DATABASE_URL is set);
#               another port: make run PORT=8080
#   make test   run the test suite against throwaway servers (the command CI runs), on the newest versions of
#               the requirements that pyproject.toml allows
#   make test-lowest  the same suite, but for the cluster tests, on the lowest versions it allows (CI runs both)
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# The virtualenv of `make test-lowest`, with every requirement at its lower bound (constraints/lowest.txt), on the
# lowest Python the package supports when the machine has one: a python3.10 on the PATH or installed by pyenv
# (whose shim may not run it); else $(PYTHON), and the run says so.
LOWEST_VENV ?= .venv-lowest
LOWEST_PYTHON ?= $(or $(shell for p in $$(command -v python3.10) $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10*/bin/python3.10; do \
	"$$p" -c "import ensurepip, venv" >/dev/null 2>&1 && { echo "$$p"; break; }; done),$(PYTHON))
HOST ?= 127.0.0.1
PORT ?= 8000
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# apt-get without questions: CI runs it with no terminal and no stdin.
APT_INSTALL := $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q

.PHONY: run test test-lowest server clusters browser wrk python check docs bench

run: server $(VENV)/.installed-run
	$(PY) -m example_app --host $(HOST) --port $(PORT)

# The suite runs in TEST_WORKERS pytest-xdist processes, each with its own throwaway server; the cluster tests
# share one of them and run one after another (tests/conftest.py). `make test TEST_WORKERS=0`: one process.
TEST_WORKERS ?= 2
PYTEST_WORKERS := -n $(TEST_WORKERS) --dist loadgroup

test: server clusters browser wrk $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_WORKERS)

# The suite on the lowest versions, with one explicit exception: the tests marked `cluster` (every test that
# uses a replica set or a Galera cluster fixture; tests/conftest.py marks them). They test the servers' side
# of replication and failover rather than the client libraries, and each starts several servers.
# Everything else, both drivers included, runs at both ends.
test-lowest: server clusters browser wrk $(LOWEST_VENV)/.installed
	@$(LOWEST_VENV)/bin/python -c "import sys; print('lowest versions, on Python', sys.version.split()[0])"
	$(LOWEST_VENV)/bin/python -m pytest $(PYTEST_WORKERS) -m "not cluster"

check: $(VENV)/.installed
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: server wrk $(VENV)/.installed
	$(PY) -m bench

server:
	@if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ] && ! command -v mysqld >/dev/null 2>&1 && [ ! -x /usr/sbin/mysqld ]; then \
		echo "Installing mariadb-server (the tests and the example app start throwaway servers from it)"; \
		$(APT_INSTALL) mariadb-server; \
	fi

# The Galera clusters of the tests need the galera-4 provider, and rsync for their state transfers.
clusters: server
	@need=""; \
	if [ ! -e /usr/lib/galera/libgalera_smm.so ] && [ ! -e /usr/lib/libgalera_smm.so ]; then need="galera-4"; fi; \
	command -v rsync >/dev/null 2>&1 || need="$$need rsync"; \
	if [ -n "$$need" ]; then \
		echo "Installing $$need (the test suite starts throwaway Galera clusters)"; \
		$(APT_INSTALL) $$need; \
	fi

# The dashboard tests drive a real headless chromium. Debian names the package chromium, Ubuntu chromium-browser.
# APT_INSTALL is an && chain: each alternative runs in a subshell of its own.
browser:
	@if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then \
		echo "Installing chromium (the dashboard tests render the page in a headless browser)"; \
		( $(APT_INSTALL) chromium ) || ( $(APT_INSTALL) chromium-browser ); \
	fi

# The HTTP benchmark (and its quick run in the tests) loads the apps with wrk.
wrk:
	@command -v wrk >/dev/null 2>&1 || { echo "Installing wrk (the HTTP benchmark's load generator)"; $(APT_INSTALL) wrk; }

# A fresh Debian has python3 without venv and ensurepip (the python3-venv package).
python:
	@if ! command -v $(PYTHON) >/dev/null 2>&1 || ! $(PYTHON) -c "import ensurepip, venv" >/dev/null 2>&1; then \
		echo "Installing python3 and python3-venv (for the virtualenv in $(VENV))"; \
		$(APT_INSTALL) python3 python3-venv; \
	fi

$(VENV)/.created: | python
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	touch $@

# Serving the example needs the package and uvicorn only: not the test, lint and docs toolchain.
$(VENV)/.installed-run: pyproject.toml $(VENV)/.created
	$(PY) -m pip install -q -e '.[example]'
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.created
	$(PY) -m pip install -q -e '.[dev,docs]'
	touch $@

# Built anew whenever the bounds change, so that no version of an earlier install is left behind.
$(LOWEST_VENV)/.installed: pyproject.toml constraints/lowest.txt | python
	rm -rf $(LOWEST_VENV)
	$(LOWEST_PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOWEST_VENV)/bin/python -m pip install -q -c constraints/lowest.txt -e '.[dev,docs]'
	touch $@
