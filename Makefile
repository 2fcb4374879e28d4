# shmds: the two commands a newcomer needs are `make demo` and `make test`.
# Everything they need beyond the Rust toolchain, Python 3.11 and gcc is
# installed by the targets below.

CARGO ?= cargo
LOOM_TARGET := target/loom
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python

.PHONY: all demo test lint redis test-rust test-c test-header test-install test-python python c install header loom fuzz bench bench-python bench-remote bench-channel clean

all: test

## The main job: processes sharing structures in one segment.
demo: python
	$(CARGO) build --release -p shmds-cli -p shmds --example demo --bin shmds
	$(MAKE) c
	$(CC) $(CFLAGS) -Iinclude examples/c/demo_reader.c $(C_STATIC) $(C_LIBS) -o target/c/demo_reader
	SHMDS_CLI=target/release/shmds SHMDS_PYTHON=$(CURDIR)/$(VPY) SHMDS_C_READER=target/c/demo_reader ./target/release/examples/demo

## Everything there is to test.
test: lint test-rust test-c test-header test-install test-python loom
	@echo "make test: all checks passed"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

test-rust: redis
	$(CARGO) test --workspace --all-features
	$(CARGO) run -q -p shmds --example readme_check

## redis-server, for the tests of remote segments (they start their own
## servers on free loopback ports): Debian's package, installed when missing.
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	    echo "installing redis-server (Debian's package) for the remote-segment tests"; \
	    SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    export DEBIAN_FRONTEND=noninteractive; \
	    $$SUDO apt-get install -y -q redis-server >/dev/null 2>&1 || \
	    { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q redis-server >/dev/null; }; }
	@command -v redis-server >/dev/null

## A virtualenv with the build and test tools (made once).
$(VENV)/.tools:
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "maturin>=1.7,<2" "numpy>=1.24" pytest "mypy>=1.10"
	touch $@

## The Python package, built from this tree and installed into the venv
## (what `pip install .` does, without re-fetching the build tools).
python: $(VENV)/.tools
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VPY) -m pip install -q --no-build-isolation --force-reinstall --no-deps .

## Python tests (run from tests/python so the source tree's shmds/ crate
## directory cannot shadow the installed package).
test-python: python c redis
	$(CARGO) build -p shmds --features remote --example interop
	cd tests/python && ../../$(VENV)/bin/pytest -q -p no:cacheprovider .

## The C library, release build (libshmds.so, libshmds.a in target/release:
## the README's link lines), and the C programs, compiled with the system C
## compiler against include/shmds.h (whose _Static_asserts check the
## layout). The tests link the static library.
CC ?= cc
CFLAGS ?= -std=c11 -O2 -Wall -Wextra -Werror -pedantic
C_LIBS := -lpthread -ldl -lm -lrt
C_STATIC := target/release/libshmds.a
CXX ?= c++
CXXFLAGS ?= -O2 -Wall -Wextra -Werror -pedantic
c:
	$(CARGO) build --release -p shmds-c
	ln -sf libshmds.so target/release/libshmds.so.$(ABI)  # the soname, for -Ltarget/release -lshmds
	mkdir -p target/c
	$(CC) $(CFLAGS) -Iinclude examples/c/interop.c $(C_STATIC) $(C_LIBS) -o target/c/interop
	$(CXX) -std=c++17 $(CXXFLAGS) -Iinclude examples/cpp/interop.cpp $(C_STATIC) $(C_LIBS) -o target/c/cpp_interop

## The C API's safety promises under AddressSanitizer: tests/c/safety.c calls
## every function with right and wrong sizes, types and NULLs; the README's C
## program (extracted from README.md, so it is tested as written) runs on a
## queue of its type and on one of 64-byte records. Unique segment names,
## removed also on failure (tests/c/run.sh). tests/c/coord.c runs every
## coordination primitive between forked processes, deaths included.
ASAN_CFLAGS := -std=c11 -g -O1 -Wall -Wextra -Werror -pedantic -fsanitize=address -fno-omit-frame-pointer
test-c: c
	$(CC) $(ASAN_CFLAGS) -Iinclude tests/c/safety.c $(C_STATIC) $(C_LIBS) -o target/c/safety
	sed -n '/^## C$$/,/^## /p' README.md | awk '/^```c$$/ {on = 1; next} /^```$$/ {on = 0} on' > target/c/readme.c
	$(CC) $(ASAN_CFLAGS) -Iinclude target/c/readme.c $(C_STATIC) $(C_LIBS) -o target/c/readme
	$(CC) $(ASAN_CFLAGS) -Iinclude tests/c/coord.c $(C_STATIC) $(C_LIBS) -o target/c/coord
	tests/c/run.sh target/c/safety target/c/readme target/c/coord

## include/shmds.h compiles warning-free as C11, C17, C++17 and C++20; the
## C++ program links with the library (extern "C") and runs; and the C++
## layer include/shmds.hpp: tests/cxx/hpp_test.cpp (every class, between
## processes too) built as C++17 and C++20 with warnings as errors, run.
HEADER_WARN := -Wall -Wextra -Werror -pedantic
test-header: c
	for std in c11 c17; do \
	    echo '#include "shmds.h"' | $(CC) -std=$$std $(HEADER_WARN) -Iinclude -x c -c - -o /dev/null || exit 1; \
	done
	for std in c++17 c++20; do \
	    $(CXX) -std=$$std $(HEADER_WARN) -Iinclude tests/c/cxx.cpp $(C_STATIC) $(C_LIBS) -o target/c/cxx-$$std && \
	    ./target/c/cxx-$$std || exit 1; \
	    $(CXX) -std=$$std -O1 $(HEADER_WARN) -Iinclude tests/cxx/hpp_test.cpp $(C_STATIC) $(C_LIBS) -o target/c/hpp-$$std && \
	    ./target/c/hpp-$$std "shmds-hpptest-$$$$-$${std#c++}" || exit 1; \
	done
	sed -n '/^## C++$$/,/^## /p' README.md | awk '/^```cpp$$/ {on = 1; next} /^```$$/ {on = 0} on' > target/c/readme.cpp
	$(CXX) -std=c++17 $(HEADER_WARN) -Iinclude target/c/readme.cpp $(C_STATIC) $(C_LIBS) -o target/c/readme-cpp
	name="shmds-readmecpp-$$$$"; ./target/c/readme-cpp "$$name"; rc=$$?; rm -f "/dev/shm/$$name"; exit $$rc

## Install the C/C++ library, the headers, a pkg-config file, a CMake
## package and the `shmds` command under PREFIX (DESTDIR for staging):
##   PREFIX/lib/libshmds.so.$(ABI) (+ libshmds.so), PREFIX/lib/libshmds.a,
##   PREFIX/include/shmds.h, shmds.hpp, PREFIX/lib/pkgconfig/shmds.pc,
##   PREFIX/lib/cmake/shmds/shmdsConfig*.cmake, PREFIX/bin/shmds.
PREFIX ?= /usr/local
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR := $(word 1,$(subst ., ,$(VERSION)))
MINOR := $(word 2,$(subst ., ,$(VERSION)))
ABI := $(if $(filter 0,$(MAJOR)),0.$(MINOR),$(MAJOR))
LIBDIR := $(DESTDIR)$(PREFIX)/lib
install: c
	$(CARGO) build --release -p shmds-cli
	install -d $(LIBDIR)/pkgconfig $(LIBDIR)/cmake/shmds $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin
	install -m 644 target/release/libshmds.a $(LIBDIR)/libshmds.a
	install -m 755 target/release/libshmds.so $(LIBDIR)/libshmds.so.$(ABI)
	ln -sf libshmds.so.$(ABI) $(LIBDIR)/libshmds.so
	install -m 644 include/shmds.h include/shmds.hpp $(DESTDIR)$(PREFIX)/include/
	if [ -d include/shmds ]; then install -d $(DESTDIR)$(PREFIX)/include/shmds && install -m 644 include/shmds/*.hpp $(DESTDIR)$(PREFIX)/include/shmds/; fi
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' shmds-c/pkg/shmds.pc.in > $(LIBDIR)/pkgconfig/shmds.pc
	sed -e 's|@ABI@|$(ABI)|' shmds-c/pkg/shmdsConfig.cmake.in > $(LIBDIR)/cmake/shmds/shmdsConfig.cmake
	sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(MAJOR)|g' -e 's|@MINOR@|$(MINOR)|g' \
	    shmds-c/pkg/shmdsConfigVersion.cmake.in > $(LIBDIR)/cmake/shmds/shmdsConfigVersion.cmake
	install -m 755 target/release/shmds $(DESTDIR)$(PREFIX)/bin/shmds
	@echo "installed under $(DESTDIR)$(PREFIX); the command is $(DESTDIR)$(PREFIX)/bin/shmds"

## The install as a user meets it: `make install` into target/install-test,
## then C and C++ programs built with pkg-config and with CMake
## find_package(shmds) against that copy, run (tests/install/run.sh).
## pkgconf and cmake come from PyPI into the venv.
$(VENV)/.install-tools: $(VENV)/.tools
	$(VPY) -m pip install -q pkgconf cmake
	touch $@
INSTALL_TEST := $(CURDIR)/target/install-test
test-install: test-c $(VENV)/.install-tools
	rm -rf $(INSTALL_TEST)
	$(MAKE) install PREFIX=$(INSTALL_TEST)
	tests/install/run.sh $(INSTALL_TEST) $(CURDIR)/target/c/readme.c $(CURDIR)/target/c/safety \
	    $(CURDIR)/$(VENV)/bin/pkgconf $(CURDIR)/$(VENV)/bin/cmake

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

## Remote segments beside redis-py doing the same by hand, and the
## bridge's forwarding rate (redis-py installed here, not needed by tests).
bench-remote: python redis
	$(VPY) -m pip install -q redis
	$(CARGO) build --release -p shmds-cli
	cd /tmp && PATH="$(CURDIR)/target/release:$$PATH" $(CURDIR)/$(VPY) $(CURDIR)/benches/python/remote_bench.py

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
