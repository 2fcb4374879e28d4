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
