#!/usr/bin/env bash
# `make test-install`: programs built against an installed copy of shmds
# (`make install PREFIX=...`) the ways a user builds them, each run on a
# queue holding 42 that it must pop:
#   - the README's C program with the source tree's link lines;
#   - the README's C program with pkg-config, linked with libshmds.so
#     (found through the soname and an rpath) and with libshmds.a;
#   - the same program and a C++ one (shmds.hpp) with CMake
#     find_package(shmds), linked with shmds::shmds and shmds::shmds_static;
#   - the installed `shmds` command lists the segment.
# Segment names are unique to this run and removed on exit, also on failure.
#
#   tests/install/run.sh PREFIX README_C FIXTURE PKG_CONFIG CMAKE
set -uo pipefail
prefix=$1 readme_c=$2 fixture=$3 pkg_config=$4 cmake=$5
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
seg="shmds-installtest-$$"
cleanup() { rm -f /dev/shm/"$seg"; rm -rf "$work"; }
trap cleanup EXIT
passed=0 failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "test-install: FAILED: $*" >&2; }

# A fresh queue holding 42 for each program (the fixture of tests/c/safety).
pops_42() {
    local what=$1; shift
    rm -f /dev/shm/"$seg"
    "$fixture" fixture "$seg" u64 || { fail "$what: fixture"; return; }
    local out rc
    out=$("$@" "$seg" 2>&1); rc=$?
    if [ $rc -eq 0 ] && [ "$out" = "job 42" ]; then pass; else fail "$what (exit $rc): $out"; fi
}

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cc=${CC:-cc}
cxx=${CXX:-c++}

# The README's link lines from the source tree (target/release).
tree=$(cd "$here/../.." && pwd)
if $cc -std=c11 -Wall -Wextra -Werror -I"$tree/include" "$readme_c" \
        "$tree/target/release/libshmds.a" -lpthread -ldl -lm -lrt -o "$work/tree-static"; then
    pops_42 "source tree, static" "$work/tree-static"
else
    fail "source tree, static: build"
fi
if $cc -std=c11 -Wall -Wextra -Werror -I"$tree/include" "$readme_c" \
        -L"$tree/target/release" -lshmds -Wl,-rpath,"$tree/target/release" -o "$work/tree-shared"; then
    pops_42 "source tree, shared" "$work/tree-shared"
else
    fail "source tree, shared: build"
fi

# pkg-config, shared library: the rpath comes from the .pc file's libdir.
libdir=$("$pkg_config" --variable=libdir shmds)
if $cc -std=c11 -Wall -Wextra -Werror $("$pkg_config" --cflags shmds) "$readme_c" \
        $("$pkg_config" --libs shmds) -Wl,-rpath,"$libdir" -o "$work/readme-shared"; then
    pops_42 "pkg-config, shared" "$work/readme-shared"
    if readelf -d "$work/readme-shared" | grep -q 'NEEDED.*libshmds\.so\.'; then pass
    else fail "pkg-config, shared: the program does not record the soname"; fi
else
    fail "pkg-config, shared: build"
fi

# pkg-config, static library: the archive, then the system libraries the
# .pc file lists for static linking (its Libs.private).
system_libs=$("$pkg_config" --static --libs-only-l shmds | sed 's/-lshmds\b//')
if $cc -std=c11 -Wall -Wextra -Werror $("$pkg_config" --cflags shmds) "$readme_c" \
        "$libdir/libshmds.a" $system_libs -o "$work/readme-static"; then
    pops_42 "pkg-config, static" "$work/readme-static"
else
    fail "pkg-config, static: build"
fi

# C++ with pkg-config and shmds.hpp.
if $cxx -std=c++17 -Wall -Wextra -Werror -pedantic $("$pkg_config" --cflags shmds) \
        "$here/consumer.cpp" $("$pkg_config" --libs shmds) -Wl,-rpath,"$libdir" \
        -o "$work/consumer-shared"; then
    pops_42 "C++, pkg-config" "$work/consumer-shared"
else
    fail "C++, pkg-config: build"
fi

# CMake find_package.
if "$cmake" -S "$here" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" \
        -DREADME_C="$readme_c" > "$work/cmake.log" 2>&1 &&
    "$cmake" --build "$work/cmake" >> "$work/cmake.log" 2>&1; then
    pops_42 "CMake, shmds::shmds (C)" "$work/cmake/readme_c"
    pops_42 "CMake, shmds::shmds_static (C++)" "$work/cmake/consumer_cxx"
else
    cat "$work/cmake.log" >&2
    fail "CMake: configure or build"
fi

# The installed command.
rm -f /dev/shm/"$seg"
"$fixture" fixture "$seg" u64 || fail "fixture for shmds ls"
if "$prefix/bin/shmds" ls | grep -q "$seg"; then pass; else fail "installed shmds ls"; fi

echo "test-install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
