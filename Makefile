# The two commands of README.md: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test install lint bench bench-login-flood clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

run: install
	scripts/run-demo

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/run.py $(ARGS)

# Introspection p50 idle vs while 16 loops log in (the bound on concurrent password hashing).
bench-login-flood: install
	$(BIN)/python bench/login_flood.py $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) instance .pytest_cache
