# Borealis developer commands; CI runs `make test` (see .ci/run).
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BOREALIS := $(TARGET_DIR)/debug/borealis

.PHONY: build run test check fmt clippy deps deps-direction doc clean-data

build:
	$(CARGO) build --workspace --bins

## Start a whole local cluster (6 storage daemons in 3 zones, a writer, 2 readers, the proxy).
run: build
	$(BOREALIS) up

## Everything CI runs: installs the clients the tests drive, builds, runs every test.
test: deps build
	$(CARGO) test --workspace --no-fail-fast

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

## The clients the tests drive (psql).
deps:
	bash scripts/install-test-deps.sh

clean-data:
	rm -rf data

## Borealis against PostgreSQL on this machine: builds release, runs every
## workload, prints the table and writes bench-results/report.json and ratios.png.
BENCH_ARGS ?=
bench:
	bash scripts/install-bench-deps.sh
	$(CARGO) build --release -p borealis-server --bin borealis
	$(CARGO) build --release -p borealis-integration --bin borealis-bench
	$(TARGET_DIR)/release/borealis-bench all --out bench-results --borealis $(TARGET_DIR)/release/borealis $(BENCH_ARGS)

## The same at small scales and short durations (under 5 minutes after the build).
bench-quick:
	bash scripts/install-bench-deps.sh
	$(CARGO) build --release -p borealis-server --bin borealis
	$(CARGO) build --release -p borealis-integration --bin borealis-bench
	$(TARGET_DIR)/release/borealis-bench all --quick --out bench-results --borealis $(TARGET_DIR)/release/borealis $(BENCH_ARGS)
.PHONY: bench bench-quick
