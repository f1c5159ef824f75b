"""ovsbridge adopt on ports made by the real pipework and the real ovs-docker.

After adopt, the container has exactly what it had (MAC, addresses, routes), the port is
ovsbridge's for ps and detach, and a DHCP address is held and renewed by the daemon.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
from integration import private_docker
from lab.daemon_home import home
from lab.peers import ip_in, need_ovs_docker, need_pipework, ovs_docker, pipework
from lab.snapshots import ovs_ports, root_links

from ovsbridge.system import daemon_client

pytestmark = pytest.mark.lab

private_dockerd = private_docker.private_dockerd
box_maker = private_docker.box_maker
__all__ = ["home"]


@pytest.fixture(autouse=True)
def _docker_host(private_dockerd: Any, monkeypatch: pytest.MonkeyPatch, home: Any) -> str:
    host: str = private_dockerd.host
    monkeypatch.setenv("DOCKER_HOST", host)
    return host


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return json.loads(result.stdout)


def guest_view(pid: int, ifname: str = "eth1") -> tuple[str, str, str]:
    link = ip_in(pid, "-o", "link", "show", "dev", ifname).split("link/ether")[1].split()[0]
    addrs = " ".join(sorted(line.split()[3] for line in
                            ip_in(pid, "-o", "addr", "show", "dev", ifname).splitlines()
                            if " inet" in line))
    routes = " ".join(sorted(ip_in(pid, "-o", "route", "show").splitlines()))
    return link, addrs, routes


def tx_checksum(port: str) -> str:
    out = subprocess.run(["ethtool", "-k", port], capture_output=True, text=True,
                         check=True).stdout
    return next(line.split(":")[1].split()[0] for line in out.splitlines()
                if line.strip().startswith("tx-checksum-ip-generic"))


def port_of(bridge: str, key: str, value: str) -> str:
    out = subprocess.run(["ovs-vsctl", "--format=json", "--columns=name,external_ids", "list",
                          "Interface"], capture_output=True, text=True, check=True).stdout
    names = ovs_ports(bridge)
    return next(name for name, ids in json.loads(out)["data"]
                if name in names and dict(ids[1]).get(key) == value)


def test_adopt_static_ports_keeps_the_guest_and_hands_them_to_ps_and_detach(
    bridge, box_maker, ovsbridge
):
    need_pipework()
    need_ovs_docker()
    pw_box, od_box, dead = box_maker(), box_maker(), box_maker()
    assert pipework(bridge, pw_box.name, "198.51.100.31/24@198.51.100.1",
                    "U:adopt me@20").returncode == 0
    assert ovs_docker("add-port", bridge, "eth1", od_box.name,
                      "--ipaddress=198.51.100.32/24").returncode == 0
    assert pipework(bridge, dead.name, "198.51.100.33/24").returncode == 0
    pw_port = port_of(bridge, "pipework.containerid", pw_box.id)
    od_port = port_of(bridge, "container_id", od_box.name)
    dead_port = port_of(bridge, "pipework.containerid", dead.id)
    subprocess.run(["docker", "kill", dead.id], capture_output=True, check=True)
    before = {box.name: guest_view(box.pid) for box in (pw_box, od_box)}
    assert tx_checksum(pw_port) == "on"  # pipework leaves it on: TCP/UDP break on netdev

    result = json_of(ovsbridge("adopt", bridge, "--json"))
    assert set(result) == {"adopted", "skipped"}
    for entry in (*result["adopted"], *result["skipped"]):
        assert set(entry) == {"bridge", "port", "owner", "container", "container_id", "ifname",
                              "mac", "addresses", "vlan", "mode", "action", "reason", "notes"}
    adopted = {e["port"]: e for e in result["adopted"]}
    assert set(adopted) == {pw_port, od_port}
    assert [e["port"] for e in result["skipped"]] == [dead_port]
    assert "not running" in result["skipped"][0]["reason"]
    pw = adopted[pw_port]
    assert (pw["owner"], pw["container_id"], pw["ifname"], pw["mode"], pw["vlan"]) == (
        "pipework", pw_box.id, "eth1", "static", 20)
    assert pw["addresses"] == ["198.51.100.31/24@198.51.100.1"]
    assert pw["mac"] == before[pw_box.name][0]
    assert any("cannot tell whether" in n for n in pw["notes"])
    assert adopted[od_port]["addresses"] == ["198.51.100.32/24"]
    assert {box.name: guest_view(box.pid) for box in (pw_box, od_box)} == before
    assert tx_checksum(pw_port) == "off"

    rows = {r["port"]: r for r in json_of(ovsbridge("ps", bridge, "--json"))}
    assert (rows[pw_port]["owner"], rows[pw_port]["container_name"], rows[pw_port]["mac"],
            rows[pw_port]["state"]) == ("ovsbridge", pw_box.name, pw["mac"], "ok")
    assert rows[od_port]["owner"] == "ovsbridge"
    again = json_of(ovsbridge("adopt", bridge, "--json"))
    assert again["adopted"] == []  # nothing left to adopt

    gone = json_of(ovsbridge("detach", pw_box.name, "--json"))
    assert [r["port"] for r in gone["removed"]] == [pw_port]
    assert pw_port not in ovs_ports(bridge) and pw_port not in root_links()


def test_adopted_dhcp_port_lease_is_held_and_renewed_by_the_daemon(
    bridge, box_maker, dhcp_server, home, ovsbridge, private_dockerd
):
    need_pipework()
    server = dhcp_server(bridge, router="198.51.100.1")
    box = box_maker()
    helper_image = "busybox"
    made_tag = subprocess.run(["docker", "-H", private_dockerd.host, "image", "inspect",
                               helper_image], capture_output=True, check=False).returncode != 0
    if made_tag:  # pipework's dhcp runs the local "busybox" image; tag ours only if none
        private_dockerd.docker("tag", private_docker.TEST_IMAGE, helper_image)
    try:
        # pipework's dhcp: a busybox container running udhcpc -f in the guest's netns
        done = pipework(bridge, box.name, "dhcp:-f -s /usr/share/udhcpc/default.script",
                        "U:adopt dhcp")
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 40
        while " inet " not in ip_in(box.pid, "-o", "addr", "show", "dev", "eth1"):
            assert time.monotonic() < deadline, "pipework's udhcpc got no lease"
            time.sleep(0.2)
        mac, address, _ = guest_view(box.pid)
        port = port_of(bridge, "pipework.containerid", box.id)
        result = json_of(ovsbridge("adopt", bridge, "--json"))
        entry = result["adopted"][0]
        assert (entry["port"], entry["mode"], entry["mac"]) == (port, "dhcp", mac)
        assert entry["addresses"] == [address]
        assert any("udhcpc" in n and "runs in the container" in n for n in entry["notes"])
        assert any("still runs" in n for n in entry["notes"])
        held = [x for x in home.leases() if x["guest"]["key"] == box.id]
        assert [x["ifname"] for x in held] == ["eth1"]
        first = float(held[0]["expires_at"])
        assert guest_view(box.pid)[1] == address
        time.sleep(1.5)  # so that a renewed lease ends later than the first
        assert daemon_client.renew(box.id, "eth1")
        deadline = time.monotonic() + 30
        while True:
            now = [x for x in home.leases() if x["guest"]["key"] == box.id]
            if now and float(now[0]["expires_at"]) > first:
                break
            assert time.monotonic() < deadline, f"the daemon never renewed: {now}"
            time.sleep(0.2)
        assert any(lease["mac"] == mac for lease in server.leases())
        rows = {r["port"]: r for r in json_of(ovsbridge("ps", bridge, "--json"))}
        assert (rows[port]["owner"], rows[port]["mode"]) == ("ovsbridge", "dhcp")
    finally:
        helpers = private_dockerd.docker("ps", "-aq", "--filter", f"ancestor={helper_image}")
        for helper in helpers.split():
            private_dockerd.docker("rm", "-f", helper)
        if made_tag:
            private_dockerd.docker("rmi", helper_image)
