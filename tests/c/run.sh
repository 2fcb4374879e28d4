#!/usr/bin/env bash
# Runs the C safety checks (`make test-c`): tests/c/safety and tests/c/coord
# (the coordination primitives between processes) under AddressSanitizer,
# and the README's C program against a queue of the type
# it expects and one of 64-byte records. Segment names are unique to this
# run (shmds-ctest-PID-...) and removed on exit, also when a check fails or
# a program dies.
#
#   tests/c/run.sh SAFETY README_PROGRAM COORD
set -uo pipefail
safety=$1 readme=$2 coord=$3
prefix="shmds-ctest-$$"
cleanup() { rm -f /dev/shm/"$prefix"-*; }
trap cleanup EXIT
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:exitcode=99"
passed=0 failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "test-c: FAILED: $*" >&2; }

if "$safety" "$prefix"; then pass; else fail "safety (exit $?)"; fi
if "$coord" "$prefix"; then pass; else fail "coord (exit $?)"; fi

# The README program, as written there, on a queue of uint64_t: it pops 42.
"$safety" fixture "$prefix-readme-ok" u64 || fail "fixture u64"
out=$("$readme" "$prefix-readme-ok" 2>&1); rc=$?
if [ $rc -eq 0 ] && [ "$out" = "job 42" ]; then pass; else fail "README program on u64 (exit $rc): $out"; fi

# ... and on a queue of 64-byte records: refused with a message, no overflow.
"$safety" fixture "$prefix-readme-rec" rec || fail "fixture rec"
out=$("$readme" "$prefix-readme-rec" 2>&1); rc=$?
case "$out" in
    *"holds elements of 64 bytes (record{a: u64,"*'("T{'*'}")), not 8'*) msg=1 ;;
    *) msg=0 ;;
esac
if [ $rc -eq 1 ] && [ $msg -eq 1 ]; then pass; else fail "README program on records (exit $rc): $out"; fi

echo "test-c: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
