# The project's entry points. Everything installs into .venv; `make install` is quick when nothing changed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install run test bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "actor-admin needs Python 3.11 or newer (found " + sys.version.split()[0] + ")")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[whatsapp,test,dev]'
	@touch $(STAMP)

run: install
	$(BIN)/actor-admin dev

test: install
	env $$(bash tests/services.sh) $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	env $$(bash tests/services.sh) $(BIN)/python -m tests.bench

# mypy is strict over the whole package (pyproject.toml); the explicit Any left is counted against
# .any-budget, which only goes down (docs/architecture.md#typed-seams).
lint: install
	$(BIN)/ruff check actor_admin tests
	$(BIN)/mypy actor_admin tests/tools tests/actors/memory_store.py
	$(BIN)/python -m tests.tools.count_any actor_admin --budget .any-budget

clean:
	rm -rf $(VENV) .bench .pytest_cache .mypy_cache .ruff_cache build *.egg-info
