# Borealis developer commands; CI runs `make test` (see .ci/run).
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BOREALIS := $(TARGET_DIR)/debug/borealis

.PHONY: build run test slt check fmt clippy deps deps-direction doc clean-data sim

build:
	$(CARGO) build --workspace --bins

## Start a whole local cluster (6 storage daemons in 3 zones, a writer, 2 readers, the proxy).
run: build
	$(BOREALIS) up

## Everything CI runs: installs the clients the tests drive, builds, runs every test.
test: deps build
	$(CARGO) test --workspace --no-fail-fast

## The SQL logic tests alone (sql/tests/slt/*.slt, on Borealis and PostgreSQL);
## `make slt SLT=basic` runs the tests whose name contains "basic".
SLT ?=
slt: deps build
	$(CARGO) test --workspace --test slt -- $(SLT)

## Formatting, lints, dependency direction, then the tests.
check: fmt clippy deps-direction test

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

## sql must not see QUIC: storage's network code stays behind features.
deps-direction:
	@if $(CARGO) tree -p borealis-sql -e normal | grep -q ' quinn '; then \
		echo "borealis-sql depends on quinn: storage's features leaked"; exit 1; fi

## The storage simulation. `make sim SEED=1234` replays one seed exactly;
## without SEED it runs the fixed seeds plus SIM_RANDOM random ones, printing
## every seed (a failure names the seed to replay). `make test` runs the
## fixed seeds and two random ones as an ordinary test.
SEED ?=
SIM_RANDOM ?= 8
sim:
	BOREALIS_SIM_SEED=$(SEED) BOREALIS_SIM_RANDOM_SEEDS=$(SIM_RANDOM) \
		$(CARGO) test -p borealis-storage --test sim -- --nocapture

## The clients the tests drive (psql, pgbench, psycopg, SQLAlchemy, node-postgres, pgjdbc).
deps:
	bash scripts/install-test-deps.sh

clean-data:
	rm -rf data

## Borealis against PostgreSQL on this machine: builds release, runs every
## workload, prints the table and writes bench-results/report.json and ratios.png.
## BENCH_PROFILE=debug uses debug builds (quicker to build, far slower to run);
## BENCH_ARGS passes more flags to borealis-bench.
BENCH_PROFILE ?= release
BENCH_ARGS ?=
BENCH_BUILD_FLAGS := $(if $(filter release,$(BENCH_PROFILE)),--release,)
BENCH_DIR := $(TARGET_DIR)/$(if $(filter release,$(BENCH_PROFILE)),release,debug)

bench: bench-build
	$(BENCH_DIR)/borealis-bench all --out bench-results --borealis $(BENCH_DIR)/borealis $(BENCH_ARGS)

## The same at small scales and short runs (under 5 minutes once built).
bench-quick: bench-build
	$(BENCH_DIR)/borealis-bench all --quick --out bench-results --borealis $(BENCH_DIR)/borealis $(BENCH_ARGS)

## Both binaries in one cargo invocation: DataFusion's features unify across
## them (the bench adds parquet), so DataFusion compiles once, not twice.
bench-build:
	bash scripts/install-bench-deps.sh
	$(CARGO) build $(BENCH_BUILD_FLAGS) -p borealis-server --bin borealis -p borealis-integration --bin borealis-bench

.PHONY: bench bench-quick bench-build
