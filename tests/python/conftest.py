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
        pytest.fail(f"build the Rust peer first: cargo build -p shmds --features remote --example interop ({path})")
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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A private redis-server on a free loopback port (AOF on), stopped at
    the end of the session; yields its URL. `make test` installs it."""
    import shutil
    import socket
    import subprocess
    import time

    exe = os.environ.get("SHMDS_REDIS_SERVER", "redis-server")
    if shutil.which(exe) is None:
        pytest.fail(f"{exe} is not installed (`make test` installs it: apt-get install redis-server)")
    workdir = tmp_path_factory.mktemp("redis")
    for _ in range(5):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--dir", str(workdir), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        up = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        up = True
                        break
            except OSError:
                time.sleep(0.02)
        if up:
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail("could not start redis-server")
    yield f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait()


@pytest.fixture
def remote_name(redis_server):
    """A remote segment name unique to this test, removed afterwards."""
    name = f"pytest-{os.getpid()}-{next(_counter)}"
    yield name
    shmds.remove_remote(redis_server, name)
