# The two commands of README.md: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: browser run test test-fast check lock fuzz install lint typecheck bench bench-login-flood clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

run: install
	scripts/run-demo

# Debian's Chromium for tests/browser (Playwright drives it; nothing is downloaded by Playwright).
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	apt-get install -y --no-install-recommends chromium >/dev/null || \
		(apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null)

browser: $(CHROMIUM)

# Two pytest workers (pytest-xdist), a test file per worker at a time: most tests wait on live
# servers and subprocesses, so two cores run the suite in about 60 % of the serial time.
# TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

test: install browser
	$(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# The fast tier: pure functions and in-process tests, no server or process started (the
# `live` marker, set from the fixtures in tests/conftest.py) and nothing marked `slow`.
test-fast: install
	$(BIN)/python -m pytest -m "not slow and not live" -q

# What CI (.ci/run) checks before the tests; .pre-commit-config.yaml runs the same tools.
check: lint typecheck

typecheck: install
	$(BIN)/mypy

# requirements.lock (pip-compile, pip-tools): every runtime dependency and the build backend,
# pinned with hashes; the Dockerfile installs from it. Run after changing the dependencies.
lock: install
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
		--no-emit-index-url --no-emit-find-links --build-deps-for wheel \
		--output-file requirements.lock pyproject.toml

# The fuzzers of tests/fuzz/ with FUZZ_CASES (default here 20000) API cases per database
# backend and FUZZ_EXAMPLES (default here 2000) per Hypothesis fuzzer; `make test` runs 2000 / 200.
fuzz: install
	FUZZ_CASES=$${FUZZ_CASES:-20000} FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-2000} \
		$(BIN)/python -m pytest tests/fuzz -s

# wrk against both services, a bare Flask ceiling and the peers (docs/benchmarks.md);
# ARGS="--quick" for a 3 s SQLite smoke run, ARGS="--peers DIR" / "--no-peers".
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
