"""Plugin discovery: .sock, .spec and .json files in the plugin directories."""

from __future__ import annotations

import json
import os
import socket

import pytest

from pynetlib.drivers.remote.discovery import find_plugin, parse_url, valid_plugin_name
from pynetlib.drivers.remote.errors import PluginSpecError
from pynetlib.errors import BadRequestError, NoServiceError


def _bind(path: str) -> socket.socket:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    return s


@pytest.fixture
def dirs(tmp_path):
    """Three plugin directories; files written with umask 022 (spec files writable by
    group or others are refused)."""
    old = os.umask(0o022)
    d = [str(tmp_path / "run"), str(tmp_path / "etc"), str(tmp_path / "lib")]
    for x in d:
        os.makedirs(x)
    yield tuple(d)
    os.umask(old)


def test_socket_in_dir_and_subdir(dirs):
    a = _bind(os.path.join(dirs[0], "alpha.sock"))
    b = _bind(os.path.join(dirs[0], "beta", "beta.sock"))
    try:
        pa, pb = find_plugin("alpha", dirs), find_plugin("beta", dirs)
        assert (pa.scheme, pa.path) == ("unix", os.path.join(dirs[0], "alpha.sock"))
        assert (pb.scheme, pb.path) == ("unix", os.path.join(dirs[0], "beta", "beta.sock"))
        assert find_plugin("gamma", dirs) is None
    finally:
        a.close()
        b.close()


def test_a_regular_file_named_sock_is_not_a_plugin(dirs):
    with open(os.path.join(dirs[0], "fake.sock"), "w") as f:
        f.write("not a socket")
    assert find_plugin("fake", dirs) is None


def test_spec_file_with_unix_url(dirs):
    with open(os.path.join(dirs[1], "p1.spec"), "w") as f:
        f.write("  unix:///run/elsewhere/p1.sock\n")
    p = find_plugin("p1", dirs)
    assert (p.scheme, p.path, p.source) == ("unix", "/run/elsewhere/p1.sock",
                                            os.path.join(dirs[1], "p1.spec"))


def test_spec_in_subdirectory_and_second_dir(dirs):
    os.makedirs(os.path.join(dirs[2], "p2"))
    with open(os.path.join(dirs[2], "p2", "p2.spec"), "w") as f:
        f.write("tcp://127.0.0.1:9234")
    p = find_plugin("p2", dirs)
    assert (p.scheme, p.host, p.port) == ("tcp", "127.0.0.1", 9234)
    assert str(p) == "tcp://127.0.0.1:9234"


def test_json_spec(dirs):
    with open(os.path.join(dirs[1], "p3.json"), "w") as f:
        json.dump({"Name": "p3", "Addr": "unix:///run/p3/p3.sock", "TLSConfig": {}}, f)
    p = find_plugin("p3", dirs)
    assert (p.scheme, p.path) == ("unix", "/run/p3/p3.sock")


def test_socket_wins_over_spec_and_spec_over_json(dirs):
    with open(os.path.join(dirs[1], "p4.spec"), "w") as f:
        f.write("unix:///from/spec.sock")
    with open(os.path.join(dirs[1], "p4.json"), "w") as f:
        json.dump({"Addr": "unix:///from/json.sock"}, f)
    assert find_plugin("p4", dirs).path == "/from/spec.sock"
    s = _bind(os.path.join(dirs[0], "p4.sock"))
    try:
        assert find_plugin("p4", dirs).path == os.path.join(dirs[0], "p4.sock")
    finally:
        s.close()


@pytest.mark.parametrize("url", [
    "tcp://10.0.0.5:8080",              # not loopback: no authentication on the protocol
    "tcp://localhost:8080",             # a host name, not a literal
    "http://127.0.0.1:8080",
    "https://127.0.0.1:8080",
    "unix://relative/path.sock",
    "unix:relative.sock",
    "tcp://127.0.0.1",                  # no port
    "ftp:///x",
    "no scheme at all",
])
def test_refused_urls(dirs, url):
    with open(os.path.join(dirs[1], "bad.spec"), "w") as f:
        f.write(url)
    with pytest.raises(PluginSpecError) as e:
        find_plugin("bad", dirs)
    assert isinstance(e.value, NoServiceError)
    assert "bad" in str(e.value)


def test_ipv6_loopback_is_accepted():
    p = parse_url("x", "tcp://[::1]:9000")
    assert (p.host, p.port, str(p)) == ("::1", 9000, "tcp://[::1]:9000")


@pytest.mark.parametrize("content,why", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"Addr": 5}', "Addr"),
    ('{"Addr": "unix:///a.sock", "TLSConfig": {"CAFile": "/ca.pem"}}', "TLS"),
    ('{"Name": 3, "Addr": "unix:///a.sock"}', "Name"),
])
def test_bad_json_specs(dirs, content, why):
    with open(os.path.join(dirs[2], "bj.json"), "w") as f:
        f.write(content)
    with pytest.raises(PluginSpecError, match=why):
        find_plugin("bj", dirs)


def test_oversized_spec_is_refused(dirs):
    with open(os.path.join(dirs[1], "big.spec"), "w") as f:
        f.write("unix:///" + "a" * 70000)
    with pytest.raises(PluginSpecError, match="larger"):
        find_plugin("big", dirs)


@pytest.mark.parametrize("name", ["", "../etc/passwd", "a/b", "..", "a..b", ".hidden",
                                  "x" * 129, "bad name", "nul\0", "ümlaut", 5, None])
def test_names_that_are_never_looked_up(tmp_path, name):
    # A name that is not a plain file name never reaches the file system.
    assert not valid_plugin_name(name)
    assert find_plugin(name, (str(tmp_path),)) is None


def test_controller_rejects_bad_plugin_dirs(tmp_path):
    import pynetlib

    for bad in ("relative", ["relative/dir"], [5], "/a/string/not/a/list"):
        with pytest.raises(BadRequestError):
            pynetlib.Controller(str(tmp_path / "s"), plugin_dirs=bad, store="memory")
    with pytest.raises(BadRequestError):
        pynetlib.Controller(str(tmp_path / "s"), plugin_call_timeout=-1, store="memory")


def test_plugin_files_of_other_users_are_refused(dirs):
    spec = os.path.join(dirs[1], "owned.spec")
    with open(spec, "w") as f:
        f.write("unix:///run/owned.sock")
    os.chmod(spec, 0o644)
    assert find_plugin("owned", dirs).path == "/run/owned.sock"
    os.chmod(spec, 0o666)
    with pytest.raises(PluginSpecError, match="writable by group or others"):
        find_plugin("owned", dirs)
    os.chmod(spec, 0o644)
    if os.geteuid() == 0:
        os.chown(spec, 4242, 4242)
        with pytest.raises(PluginSpecError, match="owned by uid 4242"):
            find_plugin("owned", dirs)
        s = _bind(os.path.join(dirs[0], "owned.sock"))
        try:
            os.chown(os.path.join(dirs[0], "owned.sock"), 4242, 4242)
            with pytest.raises(PluginSpecError, match="owned by uid 4242"):
                find_plugin("owned", dirs)
        finally:
            s.close()
