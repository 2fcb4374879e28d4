"""The package's types, checked by mypy: typecheck/ok.py must type-check
clean, and mypy must report exactly the lines of typecheck/bad.py marked
``# E: <error code>`` (with those codes). Neither file is ever run.

mypy checks the package's source tree (shmds-py/python: its inline types
and stubs), not the installed copy. Skipped when mypy is not installed.
"""

import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "typecheck")
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", "shmds-py", "python"))

#: The flags the package itself is checked with.
FLAGS = ["--strict", "--no-error-summary", "--no-pretty", "--show-error-codes",
         "--hide-error-context", "--no-color-output"]

_ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")
_EXPECTED = re.compile(r"#\s*E:\s*(?P<codes>[a-z-]+(?:\s*,\s*[a-z-]+)*)\s*$")


def _mypy(tmp_path, *targets):
    pytest.importorskip("mypy", reason="mypy is not installed")
    env = dict(os.environ, MYPYPATH=SOURCE)
    cmd = [sys.executable, "-m", "mypy", *FLAGS, "--cache-dir", str(tmp_path / "cache"),
           *targets]
    run = subprocess.run(cmd, cwd=CASES, env=env, capture_output=True, text=True,
                         timeout=600)
    if run.returncode not in (0, 1):  # 2: mypy itself failed
        pytest.fail(f"mypy failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    found = {}
    for line in run.stdout.splitlines():
        m = _ERROR.match(line)
        if m:
            found.setdefault(os.path.basename(m["file"]), set()).add((int(m["line"]), m["code"]))
    return found, run.stdout


def _expected(path):
    want = set()
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            m = _EXPECTED.search(line)
            if m:
                want |= {(number, code.strip()) for code in m["codes"].split(",")}
    return want


def test_ok_is_clean_and_bad_has_exactly_the_marked_errors(tmp_path):
    found, out = _mypy(tmp_path, "ok.py", "bad.py")
    assert found.get("ok.py", set()) == set(), out
    want = _expected(os.path.join(CASES, "bad.py"))
    assert len(want) >= 10
    got = found.get("bad.py", set())
    assert got == want, (f"missing: {sorted(want - got)}, unexpected: {sorted(got - want)}"
                         f"\n{out}")


def test_the_package_type_checks(tmp_path):
    found, out = _mypy(tmp_path, "-p", "shmds")
    assert not found, out
