"""attach / detach / ps on the real lab: real OVS (netdev), netns, dockerd."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
from lab.snapshots import netns_state, ovs_ports, root_links

from ovsbridge import naming
from ovsbridge.ops.undo import FAIL_AT_ENV

pytestmark = pytest.mark.lab


@pytest.fixture(params=["daemon", "no-daemon"])
def ovsbridge(request, home):
    """The real CLI, every test of this module twice: through a running daemon (the default
    path), and in-process (OVSBRIDGE_NO_DAEMON=1)."""
    from lab.resources import ovsbridge_cli

    from ovsbridge.system import daemon_client

    mode = {"OVSBRIDGE_NO_DAEMON": "1"} if request.param == "no-daemon" else {}
    if not mode:
        daemon_client.ensure_running(home.paths)

    def run(*args, env=None, **kwargs):
        return ovsbridge_cli(*args, env={**mode, **(env or {})}, **kwargs)

    return run


def ours_for(*boxes: Any) -> set[str]:
    """Product links (ovb*/ovp*) that belong to BOXES: by their identity (ifalias) or their
    derived name. Other test runs on this machine make product links of their own."""
    from pyroute2 import IPRoute

    derived = set()
    for box in boxes:
        host = naming.host_ifname(box.id, "eth1")
        derived |= {host, naming.peer_tmp_ifname(host)}
    found = set()
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name, alias = link.get("ifname"), link.get_attr("IFLA_IFALIAS") or ""
            if name.startswith((naming.HOST_PREFIX, naming.PEER_PREFIX)) and (
                    name in derived or any(box.id in alias for box in boxes)):
                found.add(name)
    return found


def wait_in_netns(pid: int, netns: str) -> None:
    """Wait until PID (started by `ip netns exec`) has entered NETNS."""
    import time

    inode = os.stat(f"/var/run/netns/{netns}").st_ino
    deadline = time.monotonic() + 10
    while os.stat(f"/proc/{pid}/ns/net").st_ino != inode:
        assert time.monotonic() < deadline, f"pid {pid} never entered {netns}"
        time.sleep(0.01)


def ok(result: Any) -> Any:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result


def ping(netns_exec: Any, target: Any, address: str) -> bool:
    argv = ["busybox", "ping", "-c", "2", "-W", "2", address]
    if ":" in address:
        argv.insert(2, "-6")
    return netns_exec(target, *argv).returncode == 0


def guest_ip(netns_exec: Any, target: Any, *argv: str) -> str:
    return str(ok(netns_exec(target, "ip", *argv)).stdout)


def test_two_containers_ping_over_ipv4_and_ipv6(bridge, make_container, ovsbridge, netns_exec):
    a, b = make_container(), make_container()
    ok(ovsbridge("attach", bridge, a.name, "198.51.100.11/24,2001:db8::11/64"))
    ok(ovsbridge("attach", bridge, b.id, "198.51.100.12/24,2001:db8::12/64"))
    assert ping(netns_exec, a, "198.51.100.12")
    assert ping(netns_exec, b, "198.51.100.11")
    assert ping(netns_exec, a, "2001:db8::12")
    assert ping(netns_exec, b, "2001:db8::11")


def test_vlan_tags_isolate_the_same_subnet(bridge, make_container, ovsbridge, netns_exec):
    a, b, c = make_container(), make_container(), make_container()
    ok(ovsbridge("attach", bridge, a.name, "198.51.100.21/24", "--vlan", "10"))
    ok(ovsbridge("attach", bridge, b.name, "198.51.100.22/24", "--vlan", "20"))
    ok(ovsbridge("attach", bridge, c.name, "198.51.100.23/24", "--vlan", "10"))
    assert ping(netns_exec, a, "198.51.100.23")
    assert not ping(netns_exec, a, "198.51.100.22")
    assert not ping(netns_exec, b, "198.51.100.23")
    rows = json.loads(ok(ovsbridge("ps", bridge, "--json")).stdout)
    assert sorted(r["vlan"] for r in rows) == [10, 10, 20]


def test_inside_the_container_everything_is_as_asked(bridge, make_container, ovsbridge, netns_exec):
    box = make_container()
    ok(
        ovsbridge(
            "attach",
            bridge,
            box.name,
            "198.51.100.31/24@198.51.100.1,2001:db8::31/64@2001:db8::1",
            "--ifname",
            "lan0",
            "--mac",
            "02:42:c6:33:64:1f",
            "--mtu",
            "1400",
        )
    )
    state = netns_state(box.pid)
    link = next(x for x in state["links"] if x["name"] == "lan0")
    assert link["mac"] == "02:42:c6:33:64:1f"
    assert link["mtu"] == 1400
    assert link["state"] == "up"
    addrs = {x["address"] for x in state["addresses"] if x["ifname"] == "lan0"}
    assert {"198.51.100.31/24", "2001:db8::31/64"} <= addrs
    assert "default via 198.51.100.1 dev lan0" in guest_ip(netns_exec, box, "route")
    assert "default via 2001:db8::1 dev lan0" in guest_ip(netns_exec, box, "-6", "route")
    host_end = json.loads(ok(ovsbridge("ps", bridge, "--json")).stdout)[0]["port"]
    assert len(host_end) <= 15 and host_end in root_links()


def test_gateway_outside_the_subnet_gets_an_on_link_route(
    bridge, make_container, ovsbridge, netns_exec
):
    box = make_container()
    ok(ovsbridge("attach", bridge, box.name, "198.51.100.41/25@198.51.100.254"))
    routes = guest_ip(netns_exec, box, "route")
    assert "198.51.100.254 dev eth1" in routes
    assert "default via 198.51.100.254 dev eth1" in routes


def test_default_mac_is_stable_across_reattach(bridge, make_container, ovsbridge):
    box = make_container()
    first = json.loads(ok(ovsbridge("attach", bridge, box.name, "none", "--json")).stdout)
    ok(ovsbridge("detach", box.name))
    second = json.loads(ok(ovsbridge("attach", bridge, box.name, "none", "--json")).stdout)
    assert first["mac"] == second["mac"]
    assert int(first["mac"][:2], 16) & 0x03 == 0x02


def test_netns_and_pid_guests(bridge, make_netns, spawn, ovsbridge, netns_exec):
    ns_a, ns_b = make_netns(), make_netns()
    proc = spawn(ns_b, "sleep", "600")
    wait_in_netns(proc.pid, ns_b)
    ok(ovsbridge("attach", bridge, f"netns:{ns_a}", "198.51.100.51/24"))
    ok(ovsbridge("attach", bridge, f"pid:{proc.pid}", "198.51.100.52/24"))
    assert ping(netns_exec, ns_a, "198.51.100.52")
    rows = json.loads(ok(ovsbridge("ps", bridge, "--json")).stdout)
    assert {r["container_name"] for r in rows} == {ns_a, f"pid:{proc.pid}"}
    assert all(r["state"] == "ok" for r in rows)
    ok(ovsbridge("detach", f"netns:{ns_a}"))
    ok(ovsbridge("detach", f"pid:{proc.pid}"))
    assert ovs_ports(bridge) == set()


def test_rerun_is_a_no_op_and_detach_is_idempotent(bridge, make_container, ovsbridge, netns_exec):
    box, peer = make_container(), make_container()
    ok(ovsbridge("attach", bridge, peer.name, "198.51.100.62/24"))
    args = ("attach", bridge, box.name, "198.51.100.61/24")
    ok(ovsbridge(*args))
    before = (netns_state(box.pid), ovs_ports(bridge))
    again = ok(ovsbridge(*args))
    assert "already attached" in again.stdout
    assert (netns_state(box.pid), ovs_ports(bridge)) == before
    conflict = ovsbridge("attach", bridge, box.name, "198.51.100.63/24")
    assert conflict.returncode == 4 and "--replace" in conflict.stderr
    ok(ovsbridge("detach", box.name))
    second = ok(ovsbridge("detach", box.name))
    assert "nothing attached" in second.stdout
    assert not any(x["name"] == "eth1" for x in netns_state(box.pid)["links"])
    ok(ovsbridge(*args))
    assert ping(netns_exec, box, "198.51.100.62")
    replaced = ok(ovsbridge("attach", bridge, box.name, "198.51.100.64/24", "--replace"))
    assert "replaced" in replaced.stdout
    assert ping(netns_exec, peer, "198.51.100.64")


def test_a_restarted_container_is_reattached_over_its_stale_port(
    bridge, make_container, ovsbridge, netns_exec
):
    import subprocess

    box, peer = make_container(), make_container()
    ok(ovsbridge("attach", bridge, peer.name, "198.51.100.72/24"))
    ok(ovsbridge("attach", bridge, box.name, "198.51.100.71/24"))
    subprocess.run(["docker", "restart", "-t", "0", box.id], check=True, capture_output=True)
    rows = {
        r["container_name"]: r for r in json.loads(ok(ovsbridge("ps", bridge, "--json")).stdout)
    }
    assert rows[box.name]["state"] == "stale"
    ok(ovsbridge("attach", bridge, box.name, "198.51.100.71/24"))
    assert ping(netns_exec, box, "198.51.100.72")


STEPS = ["veth", "guest-link", "offload", "port", "addresses", "routes", "announce"]


@pytest.mark.parametrize("step", STEPS)
def test_failure_at_each_step_leaves_everything_as_it_was(step, bridge, make_container, ovsbridge):
    box = make_container()
    before = (ours_for(box), ovs_ports(bridge), netns_state(box.pid))
    result = ovsbridge(
        "attach", bridge, box.name, "198.51.100.81/24@198.51.100.1", env={FAIL_AT_ENV: step}
    )
    assert result.returncode == 1, result.stderr
    assert f"injected failure after step '{step}'" in result.stderr
    assert naming.host_ifname(box.id, "eth1") not in root_links()
    assert (ours_for(box), ovs_ports(bridge), netns_state(box.pid)) == before


def test_failure_after_creating_the_bridge_removes_it(names, make_container, ovsbridge):
    from lab.snapshots import ovs_bridges

    box = make_container()
    name = names("br")
    before = (ours_for(box), netns_state(box.pid))
    result = ovsbridge(
        "attach", name, box.name, "198.51.100.82/24", "--create-bridge", env={FAIL_AT_ENV: "port"}
    )
    assert result.returncode == 1
    assert name not in ovs_bridges()
    assert naming.host_ifname(box.id, "eth1") not in root_links()
    assert (ours_for(box), netns_state(box.pid)) == before


def test_create_bridge_picks_the_userspace_datapath_without_the_module(
    names, make_container, ovsbridge
):
    import os
    import subprocess

    box = make_container()
    name = names("br")
    try:
        ok(ovsbridge("attach", name, box.name, "none", "--create-bridge"))
        datapath = subprocess.run(
            ["ovs-vsctl", "get", "Bridge", name, "datapath_type"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        expected = "system" if os.path.isdir("/sys/module/openvswitch") else "netdev"
        assert datapath == expected
    finally:
        ok(ovsbridge("detach", box.name))
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", name], check=True)


def test_ps_json_has_exactly_the_documented_keys(bridge, make_container, ovsbridge):
    box = make_container()
    ok(ovsbridge("attach", bridge, box.name, "198.51.100.91/24", "--vlan", "7"))
    rows = json.loads(ok(ovsbridge("ps", bridge, "--json")).stdout)
    assert len(rows) == 1
    assert set(rows[0]) == {
        "bridge",
        "port",
        "ofport",
        "container_id",
        "container_name",
        "ifname",
        "mac",
        "addresses",
        "vlan",
        "mode",
        "state",
        "owner",
        "mtu",
        # issue 11 (new keys only; the ones above are unchanged)
        "address_details",
        "vlan_mode",
        "trunks",
        "rate_limit",
        "burst",
        "ovn",
    }
    row = rows[0]
    assert row["address_details"] == [{"address": "198.51.100.91/24", "origin": "static"}]
    assert (row["vlan_mode"], row["trunks"], row["rate_limit"]) == ("access", [], None)
    assert (
        row["container_id"],
        row["container_name"],
        row["vlan"],
        row["mode"],
        row["state"],
        row["owner"],
    ) == (box.id, box.name, 7, "static", "ok", "ovsbridge")
    table = ok(ovsbridge("ps", bridge)).stdout
    assert box.name in table and box.id[:12] in table


def bad_inputs(
    bridge: str, box: str, stopped: str, hostnet: str
) -> list[tuple[list[str], int, str]]:
    a = ["attach", bridge, box]
    return [
        (a + ["198.51.100.5"], 2, "no prefix length"),
        (a + ["198.51.100.5/33"], 2, "out of range"),
        (a + ["198.51.100.5/0"], 2, "out of range"),
        (a + ["198.51.100.5/abc"], 2, "not a number"),
        (a + ["198.51.100.300/24"], 2, "not an IPv4 or IPv6 address"),
        (a + ["2001:db8::zz/64"], 2, "not an IPv4 or IPv6 address"),
        (a + ["2001:db8::5/129"], 2, "out of range"),
        (a + ["198.51.100.5/24@"], 2, "gateway after"),
        (a + ["198.51.100.5/24@nope"], 2, "not an IP address"),
        (a + ["198.51.100.5/24@2001:db8::1"], 2, "IPv6 but"),
        (a + ["198.51.100.5/24@198.51.100.5"], 2, "the address itself"),
        (a + ["198.51.100.0/24"], 2, "network address"),
        (a + ["198.51.100.255/24"], 2, "broadcast address"),
        (a + ["224.0.0.5/24"], 2, "cannot be a host address"),
        (a + ["198.51.100.5/24,"], 2, "empty entry"),
        (a + ["198.51.100.5/24@198.51.100.1,198.51.100.6/24@198.51.100.1"], 2, "two IPv4"),
        (a + ["none", "--mac", "01:00:5e:00:00:01"], 2, "multicast"),
        (a + ["none", "--mac", "00:00:00:00:00:00"], 2, "all zeros"),
        (a + ["none", "--mac", "02:42:zz:00:00:01"], 2, "malformed"),
        (a + ["none", "--mac", "U:"], 2, "needs text"),
        (a + ["none", "--vlan", "0"], 2, "VLAN 0"),
        (a + ["none", "--vlan", "4095"], 2, "VLAN 4095"),
        (a + ["none", "--vlan", "ten"], 2, "not a whole number"),
        (a + ["none", "--mtu", "67"], 2, "MTU 67"),
        (a + ["none", "--mtu", "70000"], 2, "MTU 70000"),
        (a + ["none", "--ifname", "a-very-long-name0"], 2, "at most 15"),
        (a + ["none", "--ifname", "eth/1"], 2, "characters Linux does not allow"),
        (a + ["none", "--host-ifname", "way-too-long-name"], 2, "at most 15"),
        (a + ["none", "--dhcp-timeout", "0"], 2, "must be positive"),
        (a + ["none", "--bogus"], 2, "No such option"),
        (["attach", bridge, box], 2, "attach needs BRIDGE, at least one GUEST and ADDRESS"),
        (["attach", bridge, "obt-no-such-container", "none"], 3, "does not exist"),
        (["attach", bridge, "netns:obt-no-such-ns", "none"], 3, "does not exist"),
        (["attach", bridge, "pid:999999999", "none"], 3, "does not exist"),
        (["attach", bridge, "pid:abc", "none"], 2, "not a process id"),
        (["attach", "obt-nobridge", box, "none"], 3, "does not exist"),
        (["attach", bridge, stopped, "none"], 4, "is not running"),
        (["attach", bridge, hostnet, "none"], 2, "host's network"),
        (["attach", bridge, f"pid:{os.getpid()}", "none"], 2, "host's network namespace"),
        (["detach", box, "--ifname", "eth1", "--all"], 2, "cannot be combined"),
        (["ps", "obt-nobridge"], 3, "does not exist"),
    ]


def test_bad_inputs_fail_cleanly_with_one_line_and_leave_nothing(bridge, make_container, ovsbridge):
    import subprocess

    box = make_container()
    stopped = make_container()
    subprocess.run(["docker", "stop", "-t", "0", stopped.id], check=True, capture_output=True)
    hostnet = make_container(network="host")
    cases = bad_inputs(bridge, box.name, stopped.name, hostnet.name)
    assert len(cases) >= 25
    before = (ours_for(box), ovs_ports(bridge), netns_state(box.pid))
    for argv, code, fragment in cases:
        result = ovsbridge(*argv)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == code, (argv, result.returncode, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, result.stderr)
        assert fragment in lines[0], (argv, lines[0])
        assert result.stdout == "", (argv, result.stdout)
    assert (ours_for(box), ovs_ports(bridge), netns_state(box.pid)) == before


def test_json_errors_are_json_on_stderr(bridge, ovsbridge):
    result = ovsbridge("--json", "attach", bridge, "obt-no-such-container", "none")
    assert result.returncode == 3 and result.stdout == ""
    error = json.loads(result.stderr)
    assert error["exit_code"] == 3 and error["error"] == "not-found"
    assert re.search("does not exist", error["message"])
