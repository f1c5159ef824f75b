"""Ports made by the real pipework and the real ovs-docker: ps names their containers, and
cleanup removes them once the container is dead, even while a process still holds its netns.

Nothing here writes another tool's tags by hand: pipework (../shared/peers/pipework) and
Debian's ovs-docker run for real, against a private dockerd (DOCKER_HOST), so no watcher of
another daemon on this machine touches the containers we kill.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from integration import private_docker
from lab.peers import need_ovs_docker, need_pipework, netns_holder, ovs_docker, pipework
from lab.shell import run
from lab.snapshots import ovs_ports, root_links

pytestmark = pytest.mark.lab

private_dockerd = private_docker.private_dockerd
box_maker = private_docker.box_maker


@pytest.fixture(autouse=True)
def _docker_host(private_dockerd: Any, monkeypatch: pytest.MonkeyPatch, home: Any) -> str:
    """DOCKER_HOST: the private dockerd; a daemon home per test, so a daemon the CLI starts
    talks to this dockerd and is gone after the test."""
    host: str = private_dockerd.host
    monkeypatch.setenv("DOCKER_HOST", host)
    return host


def interface_ids(bridge: str) -> dict[str, dict[str, str]]:
    """external_ids of every Interface on BRIDGE, by port name, as OVS stores them."""
    names = ovs_ports(bridge)
    out = run(["ovs-vsctl", "--format=json", "--columns=name,external_ids", "list",
               "Interface"]).stdout
    return {name: dict(ids[1]) for name, ids in json.loads(out)["data"] if name in names}


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return json.loads(result.stdout)


def made_by_pipework(bridge: str, box: Any, address: str) -> str:
    done = pipework(bridge, box.name, address)
    assert done.returncode == 0, done.stderr
    port = next(p for p, ids in interface_ids(bridge).items()
                if ids.get("pipework.containerid") == box.id)
    return port


def made_by_ovs_docker(bridge: str, box: Any, address: str) -> str:
    done = ovs_docker("add-port", bridge, "eth1", box.name, f"--ipaddress={address}")
    assert done.returncode == 0, done.stderr
    return next(p for p, ids in interface_ids(bridge).items()
                if ids.get("container_id") == box.name)


def test_the_real_tools_write_the_keys_ovsbridge_reads(bridge, box_maker):
    need_pipework()
    need_ovs_docker()
    pw_box, od_box = box_maker(), box_maker()
    pw_port = made_by_pipework(bridge, pw_box, "198.51.100.21/24")
    od_port = made_by_ovs_docker(bridge, od_box, "198.51.100.22/24")
    ids = interface_ids(bridge)
    assert ids[pw_port] == {
        "pipework.interface": pw_port, "pipework.bridge": bridge,
        "pipework.containerid": pw_box.id, "pipework.containername": f"/{pw_box.name}",
        "pipework.nspid": str(pw_box.pid),
    }
    assert ids[od_port] == {"container_id": od_box.name, "container_iface": "eth1"}


def test_ps_names_the_containers_of_pipework_and_ovs_docker_ports(bridge, box_maker, ovsbridge):
    need_pipework()
    need_ovs_docker()
    pw_box, od_box = box_maker(), box_maker()
    pw_port = made_by_pipework(bridge, pw_box, "198.51.100.23/24")
    od_port = made_by_ovs_docker(bridge, od_box, "198.51.100.24/24")
    rows = {r["port"]: r for r in json_of(ovsbridge("ps", bridge, "--json"))}
    assert (rows[pw_port]["owner"], rows[pw_port]["container_id"],
            rows[pw_port]["container_name"], rows[pw_port]["state"]) == (
        "pipework", pw_box.id, pw_box.name, "ok")
    assert (rows[od_port]["owner"], rows[od_port]["container_name"],
            rows[od_port]["ifname"], rows[od_port]["state"]) == (
        "ovs-docker", od_box.name, "eth1", "ok")
    table = ovsbridge("ps", bridge).stdout
    assert any(pw_port in line and pw_box.name in line for line in table.splitlines())


def test_cleanup_removes_their_ports_after_docker_kill_while_the_netns_is_held(
    bridge, box_maker, private_dockerd, ovsbridge
):
    need_pipework()
    need_ovs_docker()
    pw_box, od_box, alive = box_maker(), box_maker(), box_maker()
    pw_port = made_by_pipework(bridge, pw_box, "198.51.100.25/24")
    od_port = made_by_ovs_docker(bridge, od_box, "198.51.100.26/24")
    alive_port = made_by_pipework(bridge, alive, "198.51.100.27/24")
    assert json_of(ovsbridge("cleanup", "--bridge", bridge, "--json"))["removed"] == []
    with netns_holder(pw_box.pid), netns_holder(od_box.pid):
        private_dockerd.docker("kill", pw_box.id, od_box.id)
        # NOTE: the held netns keeps both veths alive: only the container's state, read
        # under the keys these tools really write, shows the ports are stale.
        assert {pw_port, od_port} <= root_links()
        states = {r["port"]: r["state"] for r in json_of(ovsbridge("ps", bridge, "--json"))}
        assert states[pw_port] == states[od_port] == "stale"
        done = json_of(ovsbridge("cleanup", "--bridge", bridge, "--json"))
        removed = {e["port"]: e for e in done["removed"]}
        assert set(removed) == {pw_port, od_port}
        assert removed[pw_port]["owner"] == "pipework"
        assert removed[pw_port]["container_id"] == pw_box.id
        assert removed[pw_port]["reason"] == "container stopped"
        assert removed[od_port]["owner"] == "ovs-docker"
        assert removed[od_port]["reason"] == "container stopped"
        # NOTE: another run's unscoped cleanup on this machine may delete a veth first
        assert set(done["links_deleted"]) <= {pw_port, od_port}
        assert not {pw_port, od_port} & root_links()
        assert ovs_ports(bridge) == {alive_port}
