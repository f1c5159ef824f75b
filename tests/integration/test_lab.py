"""The harness itself, on the real lab: containers, netns, OVS netdev bridges, dnsmasq, and
that everything the lab makes is gone afterwards."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from lab import NAME_PREFIX, SESSION_LABEL, TEST_LABEL
from lab.guard import overlaps_test_networks, root_netns_overlaps
from lab.resources import Lab
from lab.session import Inventory, Session, find_leaks, labelled_containers
from lab.shell import run
from lab.snapshots import all_netns, netns_state, ovs_bridges, ovs_ports, root_links

pytestmark = pytest.mark.lab

UDHCPC_HOOK = """#!/bin/sh
# udhcpc hook: record what the server offered, apply the address.
env | grep -E '^(ip|mask|router|dns|domain|lease|serverid)=' | sort > "{out}.$1"
case "$1" in
bound|renew) ip addr add "$ip/$mask" dev "$interface" ;;
esac
"""


def udhcpc(netns_exec, netns: str, hook_dir: Path, ifname: str = "eth0", tries: int = 5):
    """Run busybox udhcpc once in NETNS; return (CompletedProcess, offered options)."""
    hook = hook_dir / "hook.sh"
    out = hook_dir / "offer"
    hook.write_text(UDHCPC_HOOK.format(out=out))
    hook.chmod(0o755)
    argv = ["busybox", "udhcpc", "-i", ifname, "-f", "-q", "-n", "-t", str(tries), "-T", "2"]
    proc = netns_exec(netns, *argv, "-s", str(hook))
    bound = Path(f"{out}.bound")
    offered = (
        dict(line.split("=", 1) for line in bound.read_text().splitlines())
        if bound.exists()
        else {}
    )
    return proc, offered


def wait_for_child(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for _ in range(200):
        found = children.read_text().split()
        if found:
            return int(found[0])
        time.sleep(0.05)
    raise AssertionError(f"process {pid} started no child")


def wait_until_dead(pid: int) -> bool:
    """True once PID is gone or a zombie (its reaper may be slow); False after a while."""
    for _ in range(200):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat[stat.rindex(")") + 2] == "Z":
            return True
        time.sleep(0.05)
    return False


def test_names_are_fresh_short_and_prefixed(names) -> None:
    issued = [names("bridge") for _ in range(50)] + [names() for _ in range(50)]
    assert len(set(issued)) == len(issued)
    assert all(len(n) <= 15 for n in issued)
    assert all(re.fullmatch(r"obtbri[0-9a-f]{6}", n) for n in issued[:50])
    assert all(re.fullmatch(NAME_PREFIX + r"[0-9a-f]{6}", n) for n in issued[50:])


def test_container_without_network_has_only_lo(make_container, netns_exec) -> None:
    container = make_container(labels={"purpose": "harness"})

    state = netns_state(container.pid)
    assert [link["name"] for link in state["links"]] == ["lo"]
    assert {a["address"] for a in state["addresses"]} <= {"127.0.0.1/8", "::1/128"}
    inside = netns_exec(container, "ip", "-o", "link")
    assert inside.returncode == 0, inside.stderr
    assert [line.split(":")[1].strip() for line in inside.stdout.splitlines()] == ["lo"]
    labels = json.loads(
        run(["docker", "inspect", "-f", "{{json .Config.Labels}}", container.id]).stdout
    )
    assert labels[TEST_LABEL] == "1"
    assert labels["purpose"] == "harness"
    assert labels[SESSION_LABEL]


def test_dhcp_server_leases_to_a_client_on_the_bridge(
    bridge, dhcp_server, make_netns, connect_netns, netns_exec, tmp_path
) -> None:
    server = dhcp_server(bridge)
    client = make_netns()
    port = connect_netns(bridge, client, mac="02:00:5e:10:00:01")
    assert {server.port, port} <= ovs_ports(bridge)

    proc, offered = udhcpc(netns_exec, client, tmp_path)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    leased = ipaddress.ip_address(offered["ip"])
    assert (
        ipaddress.ip_address("198.51.100.100") <= leased <= ipaddress.ip_address("198.51.100.199")
    )
    assert "router" not in offered and "dns" not in offered
    assert [(lease["mac"], lease["ip"]) for lease in server.leases()] == [
        ("02:00:5e:10:00:01", offered["ip"])
    ]
    assert "DHCPACK" in server.log()
    ping = netns_exec(client, "busybox", "ping", "-c", "1", "-W", "5", server.ip)
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_dhcp_server_sends_router_dns_and_domain_on_a_vlan(
    bridge, dhcp_server, make_netns, connect_netns, netns_exec, tmp_path
) -> None:
    server = dhcp_server(
        bridge,
        subnet="203.0.113.0/24",
        server_ip="203.0.113.2",
        pool=("203.0.113.50", "203.0.113.60"),
        router="203.0.113.1",
        dns=["203.0.113.53", "203.0.113.54"],
        domain="lab.test",
        vlan=42,
    )
    wrong_vlan, right_vlan = make_netns(), make_netns()
    connect_netns(bridge, wrong_vlan, vlan=43)
    connect_netns(bridge, right_vlan, vlan=42)

    unanswered, _ = udhcpc(netns_exec, wrong_vlan, tmp_path, tries=2)
    answered, offered = udhcpc(netns_exec, right_vlan, tmp_path)

    assert unanswered.returncode != 0
    assert answered.returncode == 0, answered.stdout + answered.stderr
    assert offered["router"] == "203.0.113.1"
    assert offered["dns"].split() == ["203.0.113.53", "203.0.113.54"]
    assert offered["domain"] == "lab.test"
    assert [lease["ip"] for lease in server.leases()] == [offered["ip"]]


def test_netns_state_sees_a_change_and_only_a_change(make_netns) -> None:
    netns = make_netns()
    before = netns_state(netns)
    assert netns_state(f"/var/run/netns/{netns}") == before

    run(["ip", "-n", netns, "link", "add", "in0", "type", "veth", "peer", "name", "in1"])
    run(["ip", "-n", netns, "addr", "add", "2001:db8::7/64", "dev", "in0"])

    after = netns_state(netns)
    assert after != before
    assert {"ifname": "in0", "address": "2001:db8::7/64"} in after["addresses"]


def test_lab_close_removes_everything_it_made(lab_session: Session, tmp_path) -> None:
    lab = Lab(lab_session)
    try:
        bridge = lab.make_bridge()
        server = lab.dhcp_server(bridge)
        netns = lab.make_netns()
        port = lab.connect_netns(bridge, netns)
        sleeper = lab.spawn(netns, "sleep", "1000")
        shell = lab.spawn(None, "sh", "-c", "sleep 1000 & wait")
        grandchild = wait_for_child(shell.pid)
        container = lab.make_container()
        made_links = {bridge, server.port, port}
        assert made_links <= root_links()
        assert {server.netns, netns} <= all_netns()
    finally:
        lab.close()

    assert not made_links & root_links()
    assert bridge not in ovs_bridges()
    assert not {server.netns, netns} & all_netns()
    assert container.id not in {c["id"] for c in labelled_containers()}
    assert sleeper.poll() is not None
    assert shell.poll() is not None
    assert wait_until_dead(grandchild)
    assert not Path(f"/proc/{server.pid}").exists()
    assert not server.log_path.parent.exists()


def test_leak_check_reports_what_is_left_behind(lab_session: Session) -> None:
    baseline = Inventory.take()
    lab = Lab(lab_session)
    try:
        bridge = lab.make_bridge()
        netns = lab.make_netns()
        sleeper = lab.spawn(None, "sleep", "1000")
        leaks = find_leaks(lab_session, baseline)
    finally:
        lab.close()

    assert f"OVS bridge {bridge}" in leaks
    assert f"network namespace {netns}" in leaks
    assert f"process sleep (pid {sleeper.pid}) started by the harness" in leaks
    assert find_leaks(lab_session, baseline) == []


def test_leak_check_finds_a_detached_process_the_session_started(lab_session: Session) -> None:
    # A daemon that double-forked away from its parent, as `ovsbridge daemon` may.
    subprocess.run(["setsid", "-f", "sleep", "1000"], check=True)
    try:
        leaks = find_leaks(lab_session, Inventory.take())
    finally:
        # NOTE: the session's own daemon (the CLI of earlier tests started it) is no orphan
        orphans = lab_session.descendants(own_daemon=False)
        lab_session.stop_descendants(own_daemon=False)

    assert [cmd for cmd in orphans.values()] == ["sleep 1000"]
    assert any("'sleep 1000'" in line and "started during the session" in line for line in leaks)
    assert all(wait_until_dead(pid) for pid in orphans)
    assert lab_session.descendants(own_daemon=False) == {}


def test_guard_refuses_test_networks_in_the_root_netns() -> None:
    net = ipaddress.ip_network
    assert overlaps_test_networks([net("198.51.100.7/32")])
    assert overlaps_test_networks([net("203.0.0.0/16")])
    assert overlaps_test_networks([net("2001:db8:5::/48")])
    assert not overlaps_test_networks([net("192.0.2.0/24"), net("fd00::/64"), net("fe80::/64")])
    assert not overlaps_test_networks([net("198.51.101.0/24"), net("ff00::/8")])
    assert root_netns_overlaps() == []


def test_guard_sees_test_addresses_and_routes(make_netns) -> None:
    netns = make_netns()
    assert root_netns_overlaps(netns) == []
    run(["ip", "-n", netns, "route", "add", "203.0.113.0/25", "dev", "lo", "table", "100"])
    run(["ip", "-n", netns, "addr", "add", "2001:db8::9/128", "dev", "lo"])

    found = root_netns_overlaps(netns)

    assert any("route 203.0.113.0/25 (table 100" in line for line in found), found
    assert any("address 2001:db8::9/128 on lo" in line for line in found), found
    assert not any("127.0.0.1" in line or "::1/128" in line for line in found), found


def test_a_daemon_a_cli_spawned_late_is_still_stopped_with_its_home(home) -> None:
    # The CLI returns as soon as it spawned the daemon: the test may end before the daemon
    # made its lock file. The home's teardown must wait for it and stop it by PID.
    import sys

    from lab.daemon_home import home_processes, stop_home_daemon

    # detached, as the CLI's own spawn is: not our child
    subprocess.run(["setsid", "-f", "sh", "-c",
                    f"sleep 1; exec {sys.executable} -m ovsbridge daemon run"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert home_processes(home)
    assert home.pid() is None and not Path(home.paths.lock).exists()
    stop_home_daemon(home)
    assert home_processes(home) == []
