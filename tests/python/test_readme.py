"""The README's Python example runs as written (with this test's segment
name in place of "sensors", so that runs never collide)."""

import os
import re


def readme_python_blocks():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "README.md"), encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


REDIS_URL = "redis://127.0.0.1:6379/0"


def test_readme_python_example_runs(segname, redis_server):
    blocks = readme_python_blocks()
    assert blocks, "README.md has no Python example"
    for code in blocks:
        assert '"sensors"' in code
        # The remote example runs against this test's own redis-server.
        code = code.replace(repr(REDIS_URL).replace("'", '"'), repr(redis_server))
        exec(compile(code.replace('"sensors"', repr(segname)), "README.md", "exec"), {})
    assert not os.path.exists(f"/dev/shm/{segname}"), "the example removes its segment"
