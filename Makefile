# shmds: the two commands a newcomer needs are `make demo` and `make test`.
# Everything they need beyond the Rust toolchain, Python 3.11 and gcc is
# installed by the targets below.

CARGO ?= cargo
LOOM_TARGET := target/loom

.PHONY: all demo test lint test-rust loom bench clean

all: test

## The main job: processes sharing structures in one segment.
demo:
	$(CARGO) build --release -p shmds-cli -p shmds --example demo --bin shmds
	SHMDS_CLI=target/release/shmds ./target/release/examples/demo

## Everything there is to test.
test: lint test-rust loom
	@echo "make test: all checks passed"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

test-rust:
	$(CARGO) test --workspace --all-features

## Loom model checks of the lock-free algorithms (same code as in shared memory).
loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$(LOOM_TARGET) $(CARGO) test -p shmds --lib --release loom

## Benchmarks (not tests): see BENCHMARKS.md.
bench:
	$(CARGO) bench -p shmds

clean:
	$(CARGO) clean
