"""The example of docs/remote.md, run as written: the plugin as its own process, the
runtime's code in this one, inside the test run's namespaces."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import ip_json, requires_kernel  # noqa: E402

pytestmark = [requires_kernel, pytest.mark.kernel]
DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                   "remote.md")


def _blocks() -> list[str]:
    with open(DOC) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_the_documented_example_runs(tmp_path):
    blocks = _blocks()
    plugin_src = next(b for b in blocks if b.startswith("# example_plugin.py"))
    user_src = next(b for b in blocks if "STATE_DIR" in b)
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    script = tmp_path / "example_plugin.py"
    script.write_text(plugin_src)
    sock = str(plugin_dir / "demo.sock")
    links_before = {l["ifname"] for l in ip_json("link", "show")}
    proc = subprocess.Popen([sys.executable, str(script), sock])
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            assert proc.poll() is None, "the example plugin exited"
            assert time.monotonic() < deadline, "the example plugin did not start"
            time.sleep(0.02)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(user_src, "docs/remote.md", "exec"),
                 {"STATE_DIR": str(tmp_path / "state"), "PLUGIN_DIR": str(plugin_dir)})
        assert out.getvalue().splitlines() == ["10.77.0.2/24", "10.77.0.1",
                                               "{'address': '10.77.0.2/24'}"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert {l["ifname"] for l in ip_json("link", "show")} == links_before
