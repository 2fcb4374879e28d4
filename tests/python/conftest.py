"""Fixtures for the Python tests: unique segment names, always removed."""

import itertools
import os

import pytest

import shmds

_counter = itertools.count()


@pytest.fixture
def segname():
    """A segment name unique to this test, removed afterwards even on failure."""
    name = f"shmds-pytest-{os.getpid()}-{next(_counter)}"
    yield name
    try:
        shmds.remove(name)
    except FileNotFoundError:
        pass


@pytest.fixture(scope="session")
def interop():
    """Path of the Rust peer of the cross-language tests (built by `make`)."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.environ.get(
        "SHMDS_INTEROP",
        os.path.join(here, "..", "..", "target", "debug", "examples", "interop"),
    )
    if not os.access(path, os.X_OK):
        pytest.fail(f"build the Rust peer first: cargo build -p shmds --example interop ({path})")
    return path


@pytest.fixture(scope="session")
def c_interop():
    """Path of the C peer of the cross-language tests (built by `make c`)."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.environ.get(
        "SHMDS_C_INTEROP", os.path.join(here, "..", "..", "target", "c", "interop")
    )
    if not os.access(path, os.X_OK):
        pytest.fail(f"build the C peer first: make c ({path})")
    return path


@pytest.fixture(scope="session")
def cpp_interop():
    """Path of the C++ peer (examples/cpp/interop.cpp over shmds.hpp, built by `make c`)."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.environ.get(
        "SHMDS_CPP_INTEROP", os.path.join(here, "..", "..", "target", "c", "cpp_interop")
    )
    if not os.access(path, os.X_OK):
        pytest.fail(f"build the C++ peer first: make c ({path})")
    return path
