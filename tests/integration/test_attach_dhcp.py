"""``attach BRIDGE GUEST dhcp`` end to end: the real CLI, dnsmasq as the LAN's server in its own
netns on the bridge, the one host daemon (private run/state dirs per test, stopped by PID)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import subprocess
import time
from pathlib import Path

import pytest
from lab.snapshots import netns_state, ovs_ports, root_links

from ovsbridge import naming

pytestmark = pytest.mark.lab

POOL = ("198.51.100.100", "198.51.100.199")


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result


def ours(links):
    return {n for n in links if n.startswith((naming.HOST_PREFIX, naming.PEER_PREFIX))}


def in_pool(address: str) -> bool:
    ip = ipaddress.ip_interface(address).ip
    return ipaddress.ip_address(POOL[0]) <= ip <= ipaddress.ip_address(POOL[1])


@pytest.fixture
def lan(bridge, dhcp_server):
    return dhcp_server(bridge, router="198.51.100.1", dns="198.51.100.53", domain="lab.test")


def test_dhcp_attach_takes_a_lease_pings_the_router_and_writes_resolv_conf(
        bridge, lan, home, make_container, ovsbridge, netns_exec):
    host_resolv = hashlib.sha256(Path("/etc/resolv.conf").read_bytes()).hexdigest()
    box = make_container()
    result = json.loads(ok(ovsbridge("attach", bridge, box.name, "dhcp", "--json")).stdout)
    lease = result["lease"]
    assert in_pool(lease["address"]) and lease["router"] == "198.51.100.1"
    assert ok(netns_exec(box, "busybox", "ping", "-c", "2", "-W", "2", lan.ip))
    assert f"default via {lan.ip} dev eth1" in ok(netns_exec(box, "ip", "route")).stdout
    leases = {x["mac"]: x for x in lan.leases()}
    assert result["mac"] in leases
    assert leases[result["mac"]]["hostname"] == box.name
    assert ipaddress.ip_interface(lease["address"]).ip == ipaddress.ip_address(
        leases[result["mac"]]["ip"])
    resolv = ok(netns_exec(box, "cat", "/etc/resolv.conf")).stdout
    assert "nameserver 198.51.100.53" in resolv and "lab.test" in resolv
    assert hashlib.sha256(Path("/etc/resolv.conf").read_bytes()).hexdigest() == host_resolv
    rows = json.loads(ok(ovsbridge("ps", bridge, "--json")).stdout)
    mine = [r for r in rows if r["container_id"] == box.id]
    assert mine[0]["mode"] == "dhcp" and mine[0]["addresses"] == [lease["address"]]
    assert [x["guest"]["key"] for x in home.leases()] == [box.id]
    again = ok(ovsbridge("attach", bridge, box.name, "dhcp"))
    assert "already attached" in again.stdout
    ok(ovsbridge("detach", box.name))
    assert home.leases() == []


def test_same_container_gets_the_same_address_back(bridge, lan, home, make_container,
                                                    ovsbridge):
    box = make_container()
    first = json.loads(ok(ovsbridge("attach", bridge, box.name, "dhcp", "--json")).stdout)
    ok(ovsbridge("detach", box.name))
    second = json.loads(ok(ovsbridge("attach", bridge, box.name, "dhcp", "--json")).stdout)
    assert first["lease"]["address"] == second["lease"]["address"]
    ok(ovsbridge("detach", box.name))


def test_killed_container_lets_go_of_its_netns_and_veth(bridge, lan, home, make_container,
                                                        ovsbridge):
    box = make_container()
    result = json.loads(ok(ovsbridge("attach", bridge, box.name, "dhcp", "--json")).stdout)
    host_end = result["port"]
    assert host_end in root_links()
    subprocess.run(["docker", "kill", box.id], check=True, capture_output=True)
    start = time.monotonic()
    while host_end in root_links() and time.monotonic() - start < 15:
        time.sleep(0.05)
    print(f"host end gone {time.monotonic() - start:.2f} s after docker kill")
    assert host_end not in root_links()
    deadline = time.monotonic() + 15
    while home.leases() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert home.leases() == []


def test_no_dhcp_server_fails_within_the_timeout_and_leaves_nothing(
        bridge, home, make_container, ovsbridge):
    box = make_container()
    before = (ours(root_links()), ovs_ports(bridge), netns_state(box.pid))
    result = ovsbridge("attach", bridge, box.name, "dhcp", "--dhcp-timeout", "3")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "DHCP" in lines[0]
    assert (ours(root_links()), ovs_ports(bridge), netns_state(box.pid)) == before
    assert home.pid() is None or home.leases() == []


def test_two_at_once_get_distinct_addresses_and_twenty_in_a_row_get_twenty(
        bridge, lan, home, make_container, ovsbridge):
    import sys

    a, b = make_container(), make_container()
    procs = [subprocess.Popen([sys.executable, "-m", "ovsbridge", "--json", "attach", bridge,
                               box.name, "dhcp"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for box in (a, b)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    pair = {json.loads(out)["lease"]["address"] for out, _ in outs}
    assert len(pair) == 2
    boxes = [make_container() for _ in range(20)]
    addresses = set()
    for box in boxes:
        out = ok(ovsbridge("--json", "attach", bridge, box.name, "dhcp")).stdout
        addresses.add(json.loads(out)["lease"]["address"])
    assert len(addresses) == 20 and not addresses & pair
    assert all(in_pool(x) for x in addresses | pair)
    assert len(home.leases()) == 22
    for box in (a, b, *boxes):
        ok(ovsbridge("detach", box.name))


def test_hostname_no_default_route_and_no_dns_are_honoured(bridge, lan, home, make_container,
                                                           ovsbridge, netns_exec):
    box = make_container()
    resolv_before = ok(netns_exec(box, "cat", "/etc/resolv.conf")).stdout
    result = json.loads(ok(ovsbridge("attach", bridge, box.name, "dhcp", "--json",
                                     "--hostname", "custom-name", "--no-default-route",
                                     "--no-dns")).stdout)
    assert "default" not in ok(netns_exec(box, "ip", "route")).stdout
    assert ok(netns_exec(box, "cat", "/etc/resolv.conf")).stdout == resolv_before
    leases = {x["mac"]: x for x in lan.leases()}
    assert leases[result["mac"]]["hostname"] == "custom-name"
    assert ok(netns_exec(box, "busybox", "ping", "-c", "1", "-W", "2", lan.ip))
    ok(ovsbridge("detach", box.name))
