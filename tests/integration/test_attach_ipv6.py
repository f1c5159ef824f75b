"""IPv6 address modes end to end: the real CLI, containers, dnsmasq sending RAs and serving
DHCPv4 + DHCPv6 in its router netns, the one host daemon (private dirs per test)."""

from __future__ import annotations

import ipaddress
import json
import signal
import time

import pytest
from lab.daemon_home import kill_daemon
from lab.snapshots import netns_state, ovs_ports, root_links

from ovsbridge import naming
from ovsbridge.system import daemon_client

pytestmark = pytest.mark.lab

ROUTER6 = "2001:db8:1::1"
V6NET = ipaddress.ip_network("2001:db8:1::/64")


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result


def ours(links):
    return {n for n in links if n.startswith((naming.HOST_PREFIX, naming.PEER_PREFIX))}


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def lan(bridge, dhcp_server):
    return dhcp_server(bridge, router="198.51.100.1", dns="198.51.100.53", domain="lab.test",
                       ipv6=f"{ROUTER6}/64", dhcp6_range="2001:db8:1::100,2001:db8:1::1ff,64,2m",
                       dns6=ROUTER6, domain6="v6.lab.test")


@pytest.fixture
def lan_slaac(bridge, dhcp_server):
    return dhcp_server(bridge, router="198.51.100.1", dns="198.51.100.53",
                       ipv6=f"{ROUTER6}/64", dhcp6_range="2001:db8:1::,ra-only",
                       dns6=ROUTER6, domain6="v6.lab.test")


def v6_leases(server) -> list[str]:
    try:
        text = server.leases_path.read_text()
    except FileNotFoundError:
        return []
    return [f.split()[2] for f in text.splitlines() if len(f.split()) >= 5
            and ":" in f.split()[2]]


def test_dhcp_dhcp6_gives_both_families_renews_releases_and_survives_a_daemon_kill(
        bridge, lan, home, make_container, ovsbridge, netns_exec):
    box = make_container()
    result = json.loads(ok(ovsbridge("attach", bridge, box.name, "dhcp,dhcp6", "--json")).stdout)
    v4, v6 = result["lease"]["address"], result["lease6"]["address"]
    assert ipaddress.ip_interface(v6).ip in V6NET and v6.endswith("/128")
    assert result["addresses"] == [v4, v6]
    assert result["slaac"]["router"].startswith("fe80:")  # the RA's default route
    ip6 = str(ipaddress.ip_interface(v6).ip)
    assert ip6 in v6_leases(lan)
    assert ok(netns_exec(box, "busybox", "ping", "-6", "-c", "2", "-W", "3", ROUTER6))
    resolv = ok(netns_exec(box, "cat", "/etc/resolv.conf")).stdout
    assert "nameserver 198.51.100.53" in resolv and f"nameserver {ROUTER6}" in resolv
    assert "search lab.test v6.lab.test" in resolv
    families = sorted(item["family"] for item in home.leases())
    assert families == [4, 6]

    rows = json.loads(ok(ovsbridge("ps", bridge, "--json")).stdout)
    [row] = [r for r in rows if r["container_id"] == box.id]
    origins = {a["address"]: a["origin"] for a in row["address_details"]}
    assert origins == {v4: "dhcp", v6: "dhcp6"}
    assert all(a["expires_at"] for a in row["address_details"])

    # a renewal now (the daemon's kick), seen in dnsmasq's log
    assert daemon_client.renew(box.id, "eth1")
    wait_for(lambda: "DHCPRENEW(lan0)" in lan.log(), 30, "the DHCPv6 RENEW")

    # the daemon is SIGKILLed and restarted: it rebinds the same address
    kill_daemon(home.pid(), signal.SIGKILL)
    daemon_client.ensure_running()
    wait_for(lambda: "DHCPREBIND(lan0)" in lan.log(), 30, "the REBIND after the restart")
    wait_for(lambda: any(i["family"] == 6 and i["state"] == "bound" for i in home.leases()),
             30, "the resumed DHCPv6 lease")
    addrs = ok(netns_exec(box, "ip", "-6", "addr", "show", "eth1")).stdout
    assert ip6 in addrs

    ok(ovsbridge("detach", box.name))
    wait_for(lambda: "DHCPRELEASE(lan0)" in lan.log(), 15, "the DHCPv6 RELEASE")
    wait_for(lambda: ip6 not in v6_leases(lan), 10, "dnsmasq forgetting the lease")
    assert home.leases() == []
    again = json.loads(ok(ovsbridge("attach", bridge, box.name, "dhcp,dhcp6", "--json")).stdout)
    assert again["lease6"]["address"] == v6  # DUID-LL from the stable MAC: same address
    ok(ovsbridge("detach", box.name))


def test_dhcp_slaac_gives_both_families_and_rdnss(bridge, lan_slaac, home, make_container,
                                                   ovsbridge, netns_exec):
    box = make_container()
    result = json.loads(ok(ovsbridge("attach", bridge, box.name, "dhcp,slaac", "--json")).stdout)
    slaac = result["slaac"]
    assert slaac["addresses"] and all(
        ipaddress.ip_interface(a).network == V6NET for a in slaac["addresses"])
    assert slaac["router"].startswith("fe80:")
    assert result["addresses"] == [result["lease"]["address"], *slaac["addresses"]]
    assert ok(netns_exec(box, "busybox", "ping", "-6", "-c", "2", "-W", "3", ROUTER6))
    route = ok(netns_exec(box, "ip", "-6", "route", "show", "default")).stdout
    assert "via fe80:" in route and "dev eth1" in route
    resolv = ok(netns_exec(box, "cat", "/etc/resolv.conf")).stdout
    assert f"nameserver {ROUTER6}" in resolv and "v6.lab.test" in resolv
    rows = json.loads(ok(ovsbridge("ps", bridge, "--json")).stdout)
    [row] = [r for r in rows if r["container_id"] == box.id]
    assert {a["origin"] for a in row["address_details"]} == {"dhcp", "slaac"}
    ok(ovsbridge("detach", box.name))


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


def test_slaac_without_a_router_fails_within_ra_timeout_and_leaves_nothing(
        bridge, home, make_container, ovsbridge):
    box = make_container()
    before = (ours(root_links()), ovs_ports(bridge), netns_state(box.pid))
    result = ovsbridge("attach", bridge, box.name, "slaac", "--ra-timeout", "3")
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "within 3 s" in line
    assert (ovs_ports(bridge), netns_state(box.pid)) == before[1:]


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
