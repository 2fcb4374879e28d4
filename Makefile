# shmds: the two commands a newcomer needs are `make demo` and `make test`.
# Everything they need beyond the Rust toolchain, Python 3.11 and gcc is
# installed by the targets below.

CARGO ?= cargo
LOOM_TARGET := target/loom
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python

.PHONY: all demo test lint test-rust test-c test-header test-python python c header loom fuzz bench bench-python bench-channel clean

all: test

## The main job: processes sharing structures in one segment.
demo: python
	$(CARGO) build --release -p shmds-cli -p shmds --example demo --bin shmds
	$(CARGO) build --release -p shmds-c
	mkdir -p target/c
	$(CC) $(CFLAGS) -Iinclude examples/c/demo_reader.c target/release/libshmds.a $(C_LIBS) -o target/c/demo_reader
	SHMDS_CLI=target/release/shmds SHMDS_PYTHON=$(CURDIR)/$(VPY) SHMDS_C_READER=target/c/demo_reader ./target/release/examples/demo

## Everything there is to test.
test: lint test-rust test-c test-header test-python loom
	@echo "make test: all checks passed"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

test-rust:
	$(CARGO) test --workspace --all-features
	$(CARGO) run -q -p shmds --example readme_check

## A virtualenv with the build and test tools (made once).
$(VENV)/.tools:
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "maturin>=1.7,<2" "numpy>=1.24" pytest
	touch $@

## The Python package, built from this tree and installed into the venv
## (what `pip install .` does, without re-fetching the build tools).
python: $(VENV)/.tools
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VPY) -m pip install -q --no-build-isolation --force-reinstall --no-deps .

## Python tests (run from tests/python so the source tree's shmds/ crate
## directory cannot shadow the installed package).
test-python: python c
	$(CARGO) build -p shmds --example interop
	cd tests/python && ../../$(VENV)/bin/pytest -q -p no:cacheprovider .

## The C library (libshmds.so, libshmds.a) and the C programs, compiled with
## the system C compiler against include/shmds.h (whose _Static_asserts
## check the layout). The tests link them statically.
CC ?= cc
CFLAGS ?= -std=c11 -O2 -Wall -Wextra -Werror -pedantic
C_LIBS := -lpthread -ldl -lm -lrt
c:
	$(CARGO) build -p shmds-c
	mkdir -p target/c
	$(CC) $(CFLAGS) -Iinclude examples/c/interop.c target/debug/libshmds.a $(C_LIBS) -o target/c/interop

## The C API's safety promises under AddressSanitizer: tests/c/safety.c calls
## every function with right and wrong sizes, types and NULLs; the README's C
## program (extracted from README.md, so it is tested as written) runs on a
## queue of its type and on one of 64-byte records. Unique segment names,
## removed also on failure (tests/c/run.sh). tests/c/coord.c runs every
## coordination primitive between forked processes, deaths included.
ASAN_CFLAGS := -std=c11 -g -O1 -Wall -Wextra -Werror -pedantic -fsanitize=address -fno-omit-frame-pointer
test-c: c
	$(CC) $(ASAN_CFLAGS) -Iinclude tests/c/safety.c target/debug/libshmds.a $(C_LIBS) -o target/c/safety
	sed -n '/^## C$$/,/^## /p' README.md | awk '/^```c$$/ {on = 1; next} /^```$$/ {on = 0} on' > target/c/readme.c
	$(CC) $(ASAN_CFLAGS) -Iinclude target/c/readme.c target/debug/libshmds.a $(C_LIBS) -o target/c/readme
	$(CC) $(ASAN_CFLAGS) -Iinclude tests/c/coord.c target/debug/libshmds.a $(C_LIBS) -o target/c/coord
	tests/c/run.sh target/c/safety target/c/readme target/c/coord

## include/shmds.h compiles warning-free as C11, C17, C++17 and C++20; the
## C++ program links with the library (extern "C") and runs.
CXX ?= c++
HEADER_WARN := -Wall -Wextra -Werror -pedantic
test-header: c
	for std in c11 c17; do \
	    echo '#include "shmds.h"' | $(CC) -std=$$std $(HEADER_WARN) -Iinclude -x c -c - -o /dev/null || exit 1; \
	done
	for std in c++17 c++20; do \
	    $(CXX) -std=$$std $(HEADER_WARN) -Iinclude tests/c/cxx.cpp target/debug/libshmds.a $(C_LIBS) -o target/c/cxx-$$std && \
	    ./target/c/cxx-$$std || exit 1; \
	done

## Regenerate include/shmds.h (a test fails when the checked-in one is stale).
header:
	SHMDS_UPDATE_HEADER=1 $(CARGO) test -p shmds-c --lib header

## Loom model checks of the lock-free algorithms (same code as in shared memory).
loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$(LOOM_TARGET) $(CARGO) test -p shmds --lib --release loom

## A long live-mutation campaign (make test runs 2,000 cases of the same
## fuzzer): a process rewrites random header, table and structure words
## while a child runs every operation; crashes, panics and hangs must be 0.
FUZZ_CASES ?= 50000
FUZZ_SEED ?= 1
fuzz:
	SHMDS_FUZZ_CASES=$(FUZZ_CASES) SHMDS_FUZZ_SEED=$(FUZZ_SEED) $(CARGO) test -p shmds --all-features --test live_mutation live_mutation_fuzz -- --nocapture

## Benchmarks (not tests): see BENCHMARKS.md.
bench:
	$(CARGO) bench -p shmds

## Python benchmarks beside multiprocessing.Queue, faster-fifo,
## shared-memory-dict and iceoryx2 (installed here, not needed by tests).
bench-python: python
	$(VPY) -m pip install -q faster-fifo shared-memory-dict iceoryx2
	cd /tmp && $(CURDIR)/$(VPY) $(CURDIR)/benches/python/bench.py

## Peers of the Channel benchmarks (issue 13), not part of `make test`:
## benches/channel-peers, a standalone crate outside the workspace (iceoryx2
## publish-subscribe throughput and ping-pong latency between processes,
## memcpy of 4 MiB), then benches/python/channel_bench.py (faster-fifo and
## multiprocessing.Queue between processes), each beside its shmds Channel
## rows (alternating runs). Sizes: CHANNEL_BENCH_* (Rust) and
## BENCH_N / BENCH_FRAMES / BENCH_REPEAT (Python); see the two files.
CHANNEL_PEERS_TARGET ?= $(CURDIR)/target/channel-peers
bench-channel: python
	$(VPY) -m pip install -q faster-fifo
	CARGO_TARGET_DIR=$(CHANNEL_PEERS_TARGET) $(CARGO) build --release --manifest-path benches/channel-peers/Cargo.toml
	cd /tmp && $(CHANNEL_PEERS_TARGET)/release/shmds-channel-peers
	cd /tmp && $(CURDIR)/$(VPY) $(CURDIR)/benches/python/channel_bench.py

clean:
	$(CARGO) clean
	rm -rf $(VENV)
