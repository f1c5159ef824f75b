"""ovsbridge cleanup on the real lab: real OVS (netdev), dockerd, netns, dnsmasq, ovs-docker.

Ports of the real pipework (and ovs-docker with a held netns): test_foreign_ports.py.

Every cleanup here is scoped with ``--bridge`` to the test's own bridge: other test runs on
this machine keep their own ports, stale or not. The containers live on a private dockerd
(DOCKER_HOST points the CLI, the in-process attach and ovs-docker at it), so no Docker
watcher of another daemon on this host removes the ports of the containers we kill before
cleanup gets to judge them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from typing import Any

import pytest
from integration import private_docker
from lab.shell import run
from lab.snapshots import ovs_ports, root_links

from ovsbridge import naming
from ovsbridge.model import parse_address_plan, parse_guest
from ovsbridge.ops.attach import attach
from ovsbridge.ops.cleanup import MIN_AGE
from ovsbridge.ops.cleanup import cleanup as cleanup_op
from ovsbridge.request import AttachRequest
from ovsbridge.system.backend import RealBackend
from ovsbridge.system.cleanup_backend import RealCleanupBackend
from ovsbridge.system.ovs import Ovs

pytestmark = pytest.mark.lab

private_dockerd = private_docker.private_dockerd
box_maker = private_docker.box_maker


@pytest.fixture(autouse=True)
def _docker_host(private_dockerd: Any, monkeypatch: pytest.MonkeyPatch, home: Any) -> str:
    """DOCKER_HOST: the private dockerd; a daemon home per test, so a daemon the CLI starts
    talks to this dockerd and is gone after the test (the session's serves the system one)."""
    host: str = private_dockerd.host
    monkeypatch.setenv("DOCKER_HOST", host)
    return host


def ok(result: Any) -> Any:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result


def cleanup_json(ovsbridge: Any, bridge: str, *extra: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(ovsbridge("cleanup", "--bridge", bridge, "--json",
                                                   *extra)).stdout)
    return data


def ports(entries: list[dict[str, Any]]) -> set[str]:
    return {e["port"] for e in entries}


def attach_static(bridge: str, guest: str, address: str) -> str:
    request = AttachRequest(bridge=bridge, guest=parse_guest(guest),
                            plan=parse_address_plan(address))
    return attach(RealBackend(Ovs()), request).port


def wait_until_older_than_min_age(bridge: str) -> None:
    """Let every port of ours on BRIDGE pass cleanup's in-flight grace period."""
    out = run(["ovs-vsctl", "--format=json", "--columns=name,external_ids", "list",
               "Interface"]).stdout
    newest = 0.0
    names = ovs_ports(bridge)
    for name, ids in json.loads(out)["data"]:
        if name in names and isinstance(ids, list):
            created = dict(ids[1]).get(naming.K_CREATED_AT)
            newest = max(newest, float(created or 0))
    delay = newest + MIN_AGE + 0.5 - time.time()
    if delay > 0:
        time.sleep(delay)


def docker(*argv: str) -> None:
    subprocess.run(["docker", *argv], check=True, capture_output=True, timeout=120)


def test_twenty_attached_ten_killed_cleanup_removes_exactly_those_ten(
    bridge, box_maker, make_netns, connect_netns, dhcp_server, names, ovsbridge
):
    server = dhcp_server(bridge)
    uplink_ns = make_netns()
    uplink = connect_netns(bridge, uplink_ns)  # a plain veth port whose peer stays alive
    internal = names("int")
    run(["ovs-vsctl", "add-port", bridge, internal, "--", "set", "Interface", internal,
         "type=internal"])
    boxes = [box_maker() for _ in range(20)]
    port_of = {box.name: attach_static(bridge, box.name, f"198.51.100.{10 + i}/24")
               for i, box in enumerate(boxes)}
    doomed, living = boxes[:10], boxes[10:]
    for box in doomed[:5]:
        docker("kill", box.id)
    docker("rm", "-f", *[box.id for box in doomed[5:]])
    wait_until_older_than_min_age(bridge)
    doomed_ports = {port_of[b.name] for b in doomed}
    kept_expected = {port_of[b.name] for b in living} | {server.port, uplink, internal}

    dry = cleanup_json(ovsbridge, bridge, "--dry-run")
    assert ports(dry["removed"]) == doomed_ports
    assert {e["action"] for e in dry["removed"]} == {"would remove"}
    assert ports(dry["kept"]) == kept_expected
    assert ovs_ports(bridge) == doomed_ports | kept_expected  # a dry run changes nothing

    done = cleanup_json(ovsbridge, bridge)
    assert ports(done["removed"]) == doomed_ports
    assert {e["container_name"] for e in done["removed"]} == {b.name for b in doomed}
    assert ports(done["kept"]) == kept_expected
    assert ovs_ports(bridge) == kept_expected
    assert not doomed_ports & root_links()

    again = cleanup_json(ovsbridge, bridge)
    assert again["removed"] == [] and ports(again["kept"]) == kept_expected

    table = ok(ovsbridge("cleanup", "--bridge", bridge)).stdout
    assert "removed 0 stale port(s), kept 13" in table


def test_table_shows_removed_and_kept_with_reasons(bridge, box_maker, ovsbridge):
    dead, alive = box_maker(), box_maker()
    dead_port = attach_static(bridge, dead.name, "198.51.100.41/24")
    alive_port = attach_static(bridge, alive.name, "198.51.100.42/24")
    docker("kill", dead.id)
    wait_until_older_than_min_age(bridge)
    out = ok(ovsbridge("cleanup", "--bridge", bridge, "--dry-run")).stdout
    lines = {port: line for line in out.splitlines() for port in (dead_port, alive_port)
             if port in line.split()}
    assert lines[dead_port].startswith("would remove")
    assert lines[alive_port].startswith("kept")
    assert "interface gone from the kernel" in lines[dead_port]
    assert dead.name in lines[dead_port] and "ovsbridge" in lines[dead_port]
    assert "healthy" in lines[alive_port]
    assert "would remove 1 stale port(s), kept 1" in out


def test_a_stopped_container_whose_veth_survives_is_cleaned_with_its_host_veth(
    bridge, make_netns, names, ovsbridge
):
    """A netns guest deleted while a process pins it: the veth lives on, cleanup deletes it."""
    ns = make_netns()
    port = attach_static(bridge, f"netns:{ns}", "198.51.100.51/24")
    holder = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "600"])
    try:
        # NOTE: only once sleep is inside the netns does it pin it; deleting the name earlier
        # frees the netns (and the veth) at once.
        inode = os.stat(f"/var/run/netns/{ns}").st_ino
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{holder.pid}/ns/net").st_ino == inode:
                    break
            time.sleep(0.01)
        run(["ip", "netns", "del", ns])  # the name is gone; sleep keeps the netns alive
        assert port in root_links()
        wait_until_older_than_min_age(bridge)
        done = cleanup_json(ovsbridge, bridge)
        assert ports(done["removed"]) == {port}
        assert done["removed"][0]["reason"] == "netns gone"
        assert done["links_deleted"] == [port]
        assert port not in root_links() and port not in ovs_ports(bridge)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif(shutil.which("ovs-docker") is None, reason="ovs-docker not installed")
def test_ovs_docker_ports_are_cleaned(bridge, box_maker, ovsbridge):
    box, peer = box_maker(), box_maker()
    ok(run(["ovs-docker", "add-port", bridge, "eth1", box.id, "--ipaddress=198.51.100.61/24"],
           check=False))
    attach_static(bridge, peer.name, "198.51.100.62/24")
    # ovs-docker works on a netdev bridge: the container reaches an ovsbridge-attached peer
    pinged = subprocess.run(["docker", "exec", box.id, "busybox", "ping", "-c", "2", "-W", "2",
                             "198.51.100.62"], capture_output=True, check=False)
    assert pinged.returncode == 0
    od_port = next(p for p in ovs_ports(bridge) if p.endswith("_l"))
    assert cleanup_json(ovsbridge, bridge, "--dry-run")["removed"] == []
    docker("kill", box.id)
    done = cleanup_json(ovsbridge, bridge)
    assert ports(done["removed"]) == {od_port}
    assert done["removed"][0]["owner"] == "ovs-docker"
    assert done["removed"][0]["container_id"] == box.id
    assert od_port not in ovs_ports(bridge)


def test_untagged_veth_port_is_cleaned_but_not_an_untagged_internal_port(
    bridge, names, ovsbridge, request
):
    veth, peer, internal = names("ve"), names("vp"), names("in")
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer])
    request.addfinalizer(lambda: run(["ip", "link", "del", veth], check=False))
    run(["ovs-vsctl", "add-port", bridge, veth, "--", "add-port", bridge, internal, "--", "set",
         "Interface", internal, "type=internal"])
    assert cleanup_json(ovsbridge, bridge)["removed"] == []
    run(["ip", "link", "del", veth])
    done = cleanup_json(ovsbridge, bridge)
    assert ports(done["removed"]) == {veth}
    assert internal in ports(done["kept"]) and internal in ovs_ports(bridge)


def test_a_port_being_attached_is_never_removed(bridge, box_maker, ovsbridge):
    """attach (the real CLI) races two cleanup loops: the real CLI, and the op with no grace
    period (so only the OVS-then-kernel read order protects the attach). The port survives."""
    for round_ in range(4):
        box = box_maker()
        stop = threading.Event()
        removed: list[str] = []
        cli_results: list[Any] = []

        def op_loop(stop: threading.Event = stop, removed: list[str] = removed) -> None:
            while not stop.is_set():
                result = cleanup_op(RealCleanupBackend(Ovs()), bridge, min_age=0)
                removed.extend(e.port for e in result.removed)

        def cli_loop(stop: threading.Event = stop, out: list[Any] = cli_results) -> None:
            while not stop.is_set():
                out.append(ovsbridge("cleanup", "--bridge", bridge, "--json"))

        racers = [threading.Thread(target=op_loop), threading.Thread(target=cli_loop)]
        for racer in racers:
            racer.start()
        try:
            attached = ovsbridge("attach", bridge, box.name, f"198.51.100.{70 + round_}/24",
                                 "--json")
            time.sleep(0.5)  # let both loops run over the finished attach too
        finally:
            stop.set()
            for racer in racers:
                racer.join()
        port = json.loads(ok(attached).stdout)["port"]
        assert port in ovs_ports(bridge), f"round {round_}: the attached port was removed"
        assert port not in removed
        assert cli_results
        for result in cli_results:
            assert port not in ports(json.loads(ok(result).stdout)["removed"])
        assert cleanup_op(RealCleanupBackend(Ovs()), bridge, min_age=0).removed == ()


def test_removal_tolerates_a_bridge_deleted_meanwhile(make_bridge, names, request):
    doomed = make_bridge()
    veth, peer = names("ve"), names("vp")
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer])
    request.addfinalizer(lambda: run(["ip", "link", "del", veth], check=False))
    run(["ovs-vsctl", "add-port", doomed, veth])
    backend = RealCleanupBackend(Ovs())
    facts = backend.port_facts(doomed)
    run(["ovs-vsctl", "del-br", doomed])
    backend.remove_ports(facts)  # no error: the bridge went, and its ports with it
