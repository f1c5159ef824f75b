"""ovsbridge doctor on the real lab: all ok, a pipework port with offload on, OVS unreachable."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from lab.daemon_home import home
from lab.peers import need_pipework, pipework
from lab.snapshots import ovs_ports

from ovsbridge.system import daemon_client

pytestmark = pytest.mark.lab
__all__ = ["home"]


def doctor(ovsbridge: Any, *args: str, db: str | None = None) -> tuple[int, dict[str, Any]]:
    done = ovsbridge("doctor", "--json", *args, db=db)
    return done.returncode, json.loads(done.stdout)


def by_name(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for check in report["checks"]:
        out.setdefault(check["check"], []).append(check)
    return out


def test_all_ok_on_the_lab_with_a_dhcp_probe_that_leases_nothing(
    bridge, make_container, dhcp_server, home, ovsbridge, monkeypatch
):
    monkeypatch.setenv("OVSBRIDGE_NO_DAEMON", "1")
    server = dhcp_server(bridge)
    box = make_container()
    attached = ovsbridge("attach", bridge, box.name, "198.51.100.40/24")
    assert attached.returncode == 0, attached.stderr
    daemon_client.ensure_running(home.paths)
    code, report = doctor(ovsbridge, "--bridge", bridge, "--dhcp-probe")
    assert code == 0
    assert set(report) == {"ok", "counts", "checks"} and report["ok"] is True
    assert set(report["counts"]) == {"ok", "warning", "fail"}
    assert all(set(c) == {"check", "status", "message", "fix", "subject"}
               for c in report["checks"])
    assert [c for c in report["checks"] if c["status"] != "ok"] == []
    assert set(by_name(report)) == {"root", "ovs", "datapath", "docker", "daemon", "offload",
                                    "mtu", "stale-ports", "dhcp"}
    assert server.ip in by_name(report)["dhcp"][0]["message"]
    assert server.leases() == []  # an OFFER, never a REQUEST
    assert ovs_ports(bridge) == {server.port, attached_port(attached)}
    text = ovsbridge("doctor", "--bridge", bridge).stdout
    assert "0 failed" in text and "ok      ovs: Open vSwitch" in text


def attached_port(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout.split(" port ")[1].split(":")[0]


def test_a_pipework_port_with_offload_on_is_a_warning_naming_the_port(
    bridge, make_container, home, ovsbridge
):
    need_pipework()
    box = make_container()
    assert pipework(bridge, box.name, "198.51.100.41/24").returncode == 0
    port = next(p for p in ovs_ports(bridge))
    code, report = doctor(ovsbridge, "--bridge", bridge)
    assert code == 0  # a warning is not a failure
    warned = [c for c in by_name(report)["offload"] if c["status"] == "warning"]
    assert [c["subject"] for c in warned] == [port]
    assert port in warned[0]["message"]
    assert f"ovsbridge adopt {bridge} --port {port}" in warned[0]["fix"]
    assert "ethtool -K" in warned[0]["fix"]


def test_ovs_unreachable_fails_with_the_fix(ovsbridge, tmp_path, home):
    missing = f"unix:{tmp_path / 'no-ovs.sock'}"
    code, report = doctor(ovsbridge, db=missing)
    assert code == 1
    ovs = by_name(report)["ovs"][0]
    assert ovs["status"] == "fail" and ("cannot reach OVS" in ovs["message"]
                                        or "ovsdb-server is not running" in ovs["message"])
    assert "start Open vSwitch" in ovs["fix"]
    assert report["ok"] is False and report["counts"]["fail"] >= 1


@pytest.fixture
def static_simhost(lab_session: Any) -> Any:
    """A simulated host (tests/lab/simhost.py) with eth0 configured statically."""
    from lab.simhost import SimHost

    sim = SimHost()
    for name in (sim.host_ns, sim.router_ns):
        lab_session.claim(name)
    sim.start()
    try:
        sim.configure_static()
        yield sim
    finally:
        sim.stop()


def test_uplink_after_setup_bridge_ok_then_down_fails(static_simhost):
    sim = static_simhost
    setup = sim.ovsbridge("setup-bridge", "eth0", "--yes", "--confirm-timeout", "30")
    assert setup.returncode == 0, setup.stderr
    done = sim.ovsbridge("doctor", "--bridge", "ovsbr0", "--json")
    report = json.loads(done.stdout)
    uplink = by_name(report)["uplink"][0]
    assert (uplink["status"], uplink["subject"]) == ("ok", "ovsbr0"), uplink
    assert "198.51.100.10/24" in uplink["message"]
    sim.run_in_host(["ip", "link", "set", "eth0", "down"], check=True)
    done = sim.ovsbridge("doctor", "--bridge", "ovsbr0", "--json")
    assert done.returncode == 1
    uplink = by_name(json.loads(done.stdout))["uplink"][0]
    assert uplink["status"] == "fail" and "down" in uplink["message"]
    assert "ip link set eth0 up" in uplink["fix"]
