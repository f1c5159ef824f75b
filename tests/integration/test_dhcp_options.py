"""DHCPv4 options real routers send, and the RFC 5227 probe, against a real dnsmasq:
classless static routes (121, RFC 3442), interface MTU (26), search list (119), and an
offered address already held by another netns on the LAN (declined, another one bound)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lab.shell import run

from ovsbridge.system import dhcp

pytestmark = pytest.mark.lab

SUBNET = "203.0.113.0/24"
SERVER = "203.0.113.1"
POOL = ("203.0.113.100", "203.0.113.199")


def ns_run(path: str, *argv: str) -> str:
    return run(["nsenter", f"--net={path}", "--", *argv]).stdout


def guest(make_netns, connect_netns, bridge: str, mac: str | None = None) -> tuple[str, str]:
    name = make_netns()
    connect_netns(bridge, name, ifname="eth1", mac=mac)
    path = f"/var/run/netns/{name}"
    out = ns_run(path, "ip", "-o", "link", "show", "eth1")
    return path, out.split("link/ether ")[1].split()[0]


def test_option_121_routes_replace_option_3_and_mtu_and_search_list_arrive(
    bridge, dhcp_server, make_netns, connect_netns, tmp_path: Path
) -> None:
    lan = dhcp_server(
        bridge, subnet=SUBNET, server_ip=SERVER, pool=POOL, router="203.0.113.254",
        dns=SERVER, domain="lab.test",
        extra_args=[
            # default via .1 (not option 3's .254), 198.51.100.0/24 via .2, a host route
            # on-link (router 0.0.0.0)
            "--dhcp-option=121,198.51.100.0/24,203.0.113.2,0.0.0.0/0,203.0.113.1,"
            "198.51.100.77/32,0.0.0.0",
            "--dhcp-option=26,1400",
            "--dhcp-option=119,one.lab.test,two.lab.test",
        ],
    )
    path, mac = guest(make_netns, connect_netns, lan.bridge)

    lease = dhcp.acquire(path, "eth1", mac=mac, hostname=None, client_id=b"\x00r121", timeout=30)
    dhcp.apply_lease(path, "eth1", lease)

    assert str(lease.router) == "203.0.113.1"  # RFC 3442: option 3 ignored
    assert set(lease.routes) == {("198.51.100.0/24", "203.0.113.2"),
                                 ("198.51.100.77/32", "0.0.0.0")}
    assert lease.mtu == 1400
    assert lease.search == ("one.lab.test", "two.lab.test")
    routes = ns_run(path, "ip", "-4", "route", "show")
    assert "default via 203.0.113.1 dev eth1 proto dhcp" in routes
    assert "198.51.100.0/24 via 203.0.113.2 dev eth1 proto dhcp" in routes
    assert "198.51.100.77 dev eth1 proto dhcp scope link" in routes
    assert "203.0.113.254" not in routes

    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 198.51.100.253\noptions ndots:2\n")
    dhcp.write_resolv_conf(str(resolv), lease)
    text = resolv.read_text()
    assert "search one.lab.test two.lab.test" in text and f"nameserver {SERVER}" in text
    assert "options ndots:2" in text and "198.51.100.253" not in text

    dhcp.unapply_lease(path, "eth1", lease)
    assert "proto dhcp" not in ns_run(path, "ip", "-4", "route", "show")


def test_offered_address_in_use_is_declined_and_another_is_bound(
    bridge, dhcp_server, make_netns, connect_netns, netns_exec
) -> None:
    mac = "02:00:5e:10:00:42"
    taken = "203.0.113.150"
    lan = dhcp_server(
        bridge, subnet=SUBNET, server_ip=SERVER, pool=POOL,
        # the server offers this client TAKEN first (a reservation it believes is free)
        extra_args=[f"--dhcp-host={mac},{taken}"],
    )
    holder = make_netns()
    connect_netns(lan.bridge, holder, ifname="eth0")
    run(["ip", "-n", holder, "addr", "add", f"{taken}/24", "dev", "eth0"])
    # NOTE: dnsmasq pings an address before offering a *dynamic* one; the holder must not
    # give itself away by ping, only by ARP (the probe's job).
    run(["ip", "netns", "exec", holder, "sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=1"])
    path, got_mac = guest(make_netns, connect_netns, lan.bridge, mac=mac)
    assert got_mac == mac

    lease = dhcp.acquire(path, "eth1", mac=mac, hostname=None, client_id=b"\x00dcl", timeout=40)

    assert str(lease.address.ip) != taken
    log = lan.log()
    assert f"DHCPDECLINE(lan0) {taken} {mac}" in log, log[-2000:]
    assert f"DHCPACK(lan0) {lease.address.ip} {mac}" in log


def test_free_offer_is_probed_and_bound(bridge, dhcp_server, make_netns, connect_netns) -> None:
    lan = dhcp_server(bridge, subnet=SUBNET, server_ip=SERVER, pool=POOL)
    path, mac = guest(make_netns, connect_netns, lan.bridge)
    lease = dhcp.acquire(path, "eth1", mac=mac, hostname=None, client_id=b"\x00ok", timeout=30)
    assert "DHCPDECLINE" not in lan.log()
    assert str(lease.address.ip).startswith("203.0.113.1")

