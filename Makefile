# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run examples test lint typecheck layering unit fuzz bench bench-probe bench-scan bench-advise bench-soak bench-cli clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: the local incident lab on loopback, watched by `chainwatch serve` with the
# default SQLite database, until Ctrl-C.
run: $(STAMP)
	$(BIN)/chainwatch lab --serve

examples: $(STAMP)
	$(BIN)/python examples/run_examples.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts examples

typecheck: $(STAMP)
	$(BIN)/mypy src

# The house layout (pyproject.toml [tool.importlinter]): rooms import only rooms below them.
layering: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

test: lint typecheck layering unit

# Coverage-guided fuzzing (atheris) of every harness in tests/fuzz/, FUZZ_SECONDS each
# (`make test` runs a short seeded campaign of each). New inputs go to build/fuzz/NAME/,
# a crashing input to build/fuzz/crash-*: see tests/fuzz/__init__.py.
FUZZ_SECONDS ?= 300
FUZZ_HARNESSES ?= bundle inventory revocation ari probe
fuzz: $(STAMP)
	@for h in $(FUZZ_HARNESSES); do \
	  mkdir -p build/fuzz/$$h && echo "== $$h ($(FUZZ_SECONDS)s)" && \
	  $(BIN)/python -m tests.fuzz.run $$h -max_total_time=$(FUZZ_SECONDS) -timeout=30 \
	    -rss_limit_mb=3072 -print_final_stats=1 -artifact_prefix=build/fuzz/ \
	    build/fuzz/$$h tests/fuzz/corpus/$$h || exit 1; \
	done

bench: $(STAMP)
	$(BIN)/python bench/analysis.py

# Live probing vs a pyOpenSSL floor, sslyze and openssl s_client on loopback nginx
# (needs nginx: apt-get install nginx-light; sslyze goes into its own cached venv).
bench-probe: $(STAMP)
	$(BIN)/python bench/probe.py --install-sslyze

# The monitor: `scan` of 10,000 loopback nginx endpoints with no database, into SQLite and
# into PostgreSQL (a throwaway database on the local server).
bench-scan: $(STAMP)
	$(BIN)/python bench/scan.py

# The chainwatch command as a whole process: `scan` of 1,000 loopback nginx endpoints into a
# fresh SQLite and PostgreSQL database (first and steady scans) and `check` of one endpoint,
# against the pyOpenSSL floor timed in the same run. BENCH_CLI_ARGS=--endpoints 10000, --big.
BENCH_CLI_ARGS ?=
bench-cli: $(STAMP)
	$(BIN)/python bench/cli.py $(BENCH_CLI_ARGS)

# `chainwatch advise` over 200 candidate certificates, against one check of the served chain.
bench-advise: $(STAMP)
	$(BIN)/python bench/advise.py

# Soak: `chainwatch serve` on 2,000 loopback TLS endpoints with certificate churn for
# SOAK_MINUTES (RSS flat within 5%, no missed sweep, every renewal tracked). Not in `make test`.
SOAK_MINUTES ?= 30
bench-soak: $(STAMP)
	$(BIN)/python bench/soak.py --minutes $(SOAK_MINUTES)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
