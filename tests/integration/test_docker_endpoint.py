"""The daemon and the Docker it talks to, on the real lab (a private dockerd beside the
system one).

A daemon looks containers up in the Docker its environment names (DOCKER_HOST): a CLI that
names another Docker must never hand it its work (the container would be looked up in the
wrong Docker), and a warm daemon whose dockerd went away says so in one line, then works
again once dockerd is back.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from integration import private_docker

from ovsbridge.system import daemon_client

pytestmark = pytest.mark.lab

private_dockerd = private_docker.private_dockerd
box_maker = private_docker.box_maker


def ok(result: Any) -> Any:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stdout} {result.stderr}"
    return result


def test_a_daemon_on_another_docker_never_gets_the_work_of_this_cli(
        bridge, home, make_container, box_maker, private_dockerd, ovsbridge,
        monkeypatch: pytest.MonkeyPatch):
    with monkeypatch.context() as env:
        env.setenv("DOCKER_HOST", private_dockerd.host)
        assert daemon_client.ensure_running(home.paths)
    box = make_container()  # on the system dockerd, which this CLI uses
    result = ok(ovsbridge("-v", "attach", bridge, box.name, "198.51.100.31/24"))
    assert "attach: in-process (this daemon uses Docker at " in result.stderr
    ok(ovsbridge("detach", box.name))
    # a script's call (the thin client) is refused by that daemon too, and runs here
    again = ok(ovsbridge("attach", bridge, box.name, "198.51.100.31/24"))
    assert again.stdout.startswith(f"attached: {box.name} eth1 ")
    ok(ovsbridge("detach", box.name))
    # A CLI on the daemon's Docker is served by it.
    private = box_maker()
    mine = {"DOCKER_HOST": private_dockerd.host}
    served = ok(ovsbridge("-v", "attach", bridge, private.name, "198.51.100.32/24", env=mine))
    assert "attach: done by the daemon" in served.stderr
    ok(ovsbridge("detach", private.name, env=mine))


def test_a_warm_daemon_whose_dockerd_went_away_says_so_and_recovers(
        bridge, home, box_maker, private_dockerd, ovsbridge, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DOCKER_HOST", private_dockerd.host)
    assert daemon_client.ensure_running(home.paths)
    first = box_maker()
    ok(ovsbridge("attach", bridge, first.name, "198.51.100.33/24"))  # warms its Docker client
    ok(ovsbridge("detach", first.name))
    private_dockerd.docker("rm", "-f", first.name)
    private_dockerd.stop()
    try:
        result = ovsbridge("attach", bridge, first.name, "198.51.100.33/24")
        assert result.returncode == 5, result.stderr  # environment: Docker unreachable
        assert result.stderr.startswith("error: cannot reach Docker: "), result.stderr
        assert "internal error" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    finally:
        private_dockerd.start()
    again = box_maker()
    served = ok(ovsbridge("-v", "attach", bridge, again.name, "198.51.100.34/24"))
    assert "attach: done by the daemon" in served.stderr
    ok(ovsbridge("detach", again.name))
    assert subprocess.run(["ovs-vsctl", "list-ports", bridge], capture_output=True, text=True,
                          check=True).stdout.strip() == ""
