# Two commands on a fresh Debian/Ubuntu machine:
#   make run    serve the example app on http://127.0.0.1:8000 (throwaway MariaDB unless DATABASE_URL is set)
#   make test   run the test suite against throwaway servers
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test server check docs bench

run: server $(VENV)/.installed
	$(PY) -m example_app

test: server $(VENV)/.installed
	$(PY) -m pytest

check: $(VENV)/.installed
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: server $(VENV)/.installed
	$(PY) -m bench

# The Galera clusters of the tests also need the galera-4 provider and rsync for their state transfers.
server:
	@need=""; \
	if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ] && ! command -v mysqld >/dev/null 2>&1 && [ ! -x /usr/sbin/mysqld ]; then need=" mariadb-server"; fi; \
	if [ ! -e /usr/lib/galera/libgalera_smm.so ] && [ ! -e /usr/lib/libgalera_smm.so ]; then need="$$need galera-4"; fi; \
	command -v rsync >/dev/null 2>&1 || need="$$need rsync"; \
	if [ -n "$$need" ]; then \
		echo "Installing$$need (the tests and the example app start throwaway servers and clusters from it)"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$need; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,docs]'
	touch $@
