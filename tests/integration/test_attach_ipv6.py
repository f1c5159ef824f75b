"""IPv6 address modes end to end with containers on the machine's OVS: static IPv4 with
slaac (dnsmasq sends RAs in its router netns), a link-local IPv6 gateway, and bad input.

The DHCP flows (dhcp,dhcp6 and dhcp,slaac with renewals, daemon kill, release) run inside a
simulated host (test_ipv6_simhost.py): an attach that waits seconds for a lease is, on a
machine shared with other test runs, swept by their daemons' start-up sweep while it is still
"building" (the lock that protects it lives in another run dir).
"""

from __future__ import annotations

import ipaddress
import json

import pytest
from lab.snapshots import netns_state, ovs_ports

pytestmark = pytest.mark.lab

ROUTER6 = "2001:db8:1::1"
V6NET = ipaddress.ip_network("2001:db8:1::/64")


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result


@pytest.fixture
def lan_slaac(bridge, dhcp_server):
    return dhcp_server(bridge, router="198.51.100.1", dns="198.51.100.53",
                       ipv6=f"{ROUTER6}/64", dhcp6_range="2001:db8:1::,ra-only",
                       dns6=ROUTER6, domain6="v6.lab.test")


def test_static_ipv4_with_slaac(bridge, lan_slaac, home, make_container, ovsbridge,
                                netns_exec):
    box = make_container()
    result = json.loads(ok(ovsbridge("attach", bridge, box.name,
                                     "198.51.100.5/24@198.51.100.1,slaac", "--json")).stdout)
    assert result["addresses"][0] == "198.51.100.5/24@198.51.100.1"
    assert ipaddress.ip_interface(result["addresses"][1]).network == V6NET
    assert ok(netns_exec(box, "busybox", "ping", "-c", "1", "-W", "2", "198.51.100.1"))
    assert ok(netns_exec(box, "busybox", "ping", "-6", "-c", "1", "-W", "3", ROUTER6))
    again = ok(ovsbridge("attach", bridge, box.name, "198.51.100.5/24@198.51.100.1,slaac"))
    assert "already attached" in again.stdout
    ok(ovsbridge("detach", box.name))


@pytest.mark.parametrize("args, needle", [
    (["dhcp,dhcp"], "given twice"),
    (["none,slaac"], "'none' cannot be combined"),
    (["slaac,2001:db8::5/64@2001:db8::1"], "two IPv6 gateways"),
    (["dhcp6,dhcp6"], "given twice"),
    (["dhcp", "--trunk", "10,20"], "native VLAN"),
    (["none", "--trunk", "10,5000"], "out of range"),
    (["none", "--trunk", "10,x"], "not a number"),
    (["none", "--trunk", ""], "empty"),
    (["none", "--rate-limit", "0"], "out of range"),
    (["none", "--rate-limit", "fast"], "not a whole number"),
    (["none", "--burst", "100"], "needs --rate-limit"),
    (["none", "--rate-limit", "10", "--burst", "-1"], "not a whole number"),
    (["slaac", "--ra-timeout", "0"], "must be positive"),
])
def test_bad_new_options_exit_2_with_one_line_and_leave_nothing(
        bridge, make_container, ovsbridge, args, needle):
    box = make_container()
    before = (ovs_ports(bridge), netns_state(box.pid))
    result = ovsbridge("attach", bridge, box.name, *args)
    assert result.returncode == 2, (result.returncode, result.stderr)
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and needle in line, line
    assert (ovs_ports(bridge), netns_state(box.pid)) == before


def test_static_ipv6_with_a_link_local_gateway(bridge, home, make_container, ovsbridge,
                                               netns_exec):
    box = make_container()
    ok(ovsbridge("attach", bridge, box.name, "2001:db8:1::5/64@fe80::1"))
    route = ok(netns_exec(box, "ip", "-6", "route", "show", "default")).stdout
    assert "default via fe80::1 dev eth1" in route
    ok(ovsbridge("detach", box.name))
