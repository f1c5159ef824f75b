"""The DHCP client adapter on the real lab: dnsmasq in its own netns on an OVS netdev bridge,
guests as named netns or ``--net=none`` containers whose eth1 the test makes itself.

Everything runs from this one pytest process: the adapter enters each guest's netns per
thread, so these tests also prove that one process serves many namespaces.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from pathlib import Path

import pytest
from lab.resources import Container
from lab.shell import run

from ovsbridge.errors import BadInput, OperationFailed
from ovsbridge.system import dhcp

pytestmark = pytest.mark.lab

SUBNET = "203.0.113.0/24"
SERVER = "203.0.113.1"
POOL = ("203.0.113.100", "203.0.113.199")


@pytest.fixture
def lan(bridge, dhcp_server):
    """A bridge with dnsmasq serving 203.0.113.100-199 (router and DNS = the server)."""
    return dhcp_server(
        bridge,
        subnet=SUBNET,
        server_ip=SERVER,
        pool=POOL,
        router=SERVER,
        dns=SERVER,
        domain="lab.test",
    )


def guest_netns(make_netns, connect_netns, bridge: str, ifname: str = "eth1") -> tuple[str, str]:
    """A named netns on BRIDGE; returns (netns path, MAC of its IFNAME)."""
    name = make_netns()
    connect_netns(bridge, name, ifname=ifname)
    return f"/var/run/netns/{name}", link_mac(f"/var/run/netns/{name}", ifname)


def link_mac(netns_path: str, ifname: str) -> str:
    out = run(["nsenter", f"--net={netns_path}", "--", "ip", "-o", "link", "show", ifname])
    return out.stdout.split("link/ether ")[1].split()[0]


def container_eth1(make_container, _lab, bridge: str) -> tuple[Container, str, str]:
    """A --net=none container with an eth1 on BRIDGE made here by hand (attach is not used)."""
    container = make_container()
    path = container.netns_path
    host = _lab.names("v")
    tmp = _lab.names("p")
    run(
        [
            "ip",
            "link",
            "add",
            host,
            "type",
            "veth",
            "peer",
            "name",
            tmp,
            "netns",
            str(container.pid),
        ]
    )
    _lab.defer(f"delete veth {host}", lambda: run(["ip", "link", "del", host], check=False))
    run(["nsenter", f"--net={path}", "--", "ip", "link", "set", tmp, "name", "eth1"])
    run(["ethtool", "-K", host, "tx", "off"])
    run(["nsenter", f"--net={path}", "--", "ethtool", "-K", "eth1", "tx", "off"])
    run(["ip", "link", "set", host, "up"])
    run(["nsenter", f"--net={path}", "--", "ip", "link", "set", "eth1", "up"])
    run(["ovs-vsctl", "--timeout=10", "add-port", bridge, host])
    _lab.defer(
        f"delete port {host}",
        lambda: run(["ovs-vsctl", "--timeout=10", "--if-exists", "del-port", bridge, host]),
    )
    return container, path, link_mac(path, "eth1")


def addresses(netns_path: str, ifname: str = "eth1") -> list[str]:
    out = run(["nsenter", f"--net={netns_path}", "--", "ip", "-4", "-o", "addr", "show", ifname])
    return [line.split()[3] for line in out.stdout.splitlines()]


def default_routes(netns_path: str) -> list[str]:
    out = run(["nsenter", f"--net={netns_path}", "--", "ip", "-4", "route", "show", "default"])
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def test_container_gets_a_lease_pings_the_server_and_dnsmasq_records_it(
    lan, make_container, _lab, netns_exec
) -> None:
    container, path, mac = container_eth1(make_container, _lab, lan.bridge)
    cid = dhcp.client_id_for(container.id, "eth1")

    lease = dhcp.acquire(path, "eth1", mac=mac, hostname="web1", client_id=cid, timeout=30)
    dhcp.apply_lease(path, "eth1", lease)

    assert lease.address.ip in ipaddress.ip_network(SUBNET)
    assert lease.address.network == ipaddress.ip_network(SUBNET)
    assert str(lease.router) == SERVER and lease.dns == (SERVER,) and lease.domain == "lab.test"
    assert str(lease.server_id) == SERVER and lease.server_mac
    assert lease.lease_time == 120 and 0 < lease.renewal_time < lease.rebinding_time < 120
    assert lease.mac == mac and lease.client_id == cid.hex()
    assert addresses(path) == [lease.address.with_prefixlen]
    assert default_routes(path) == [f"default via {SERVER} dev eth1 proto dhcp"]
    ping = netns_exec(container, "ping", "-c", "1", "-W", "2", SERVER)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    [record] = lan.leases()
    assert record["mac"] == mac and record["hostname"] == "web1"
    assert record["ip"] == str(lease.address.ip)
    assert record["client_id"].replace(":", "") == cid.hex()


def test_address_lifetime_follows_the_lease(lan, make_netns, connect_netns) -> None:
    path, mac = guest_netns(make_netns, connect_netns, lan.bridge)
    lease = dhcp.acquire(path, "eth1", mac=mac, hostname=None, client_id=b"\x00lt", timeout=30)
    dhcp.apply_lease(path, "eth1", lease)

    out = run(["nsenter", f"--net={path}", "--", "ip", "-4", "addr", "show", "eth1"]).stdout
    valid = int(out.split("valid_lft ")[1].split("sec")[0])
    assert 0 < valid <= 120


def test_same_client_id_gets_the_same_address_back(lan, make_netns, connect_netns) -> None:
    path, mac = guest_netns(make_netns, connect_netns, lan.bridge)
    first = dhcp.acquire(path, "eth1", mac=mac, hostname="a", client_id=b"\x00same", timeout=30)
    again = dhcp.acquire(path, "eth1", mac=mac, hostname="a", client_id=b"\x00same", timeout=30)
    assert again.address == first.address


def test_init_reboot_confirms_a_known_address(lan, make_netns, connect_netns) -> None:
    path, mac = guest_netns(make_netns, connect_netns, lan.bridge)
    first = dhcp.acquire(path, "eth1", mac=mac, hostname="rb", client_id=b"\x00rb", timeout=30)
    before = lan.log().count("DHCPDISCOVER")

    again = dhcp.acquire(
        path,
        "eth1",
        mac=mac,
        hostname="rb",
        client_id=b"\x00rb",
        timeout=30,
        requested=first.address.ip,
    )

    assert again.address == first.address
    assert lan.log().count("DHCPDISCOVER") == before  # no DISCOVER: REQUEST/ACK only


def test_init_reboot_for_a_foreign_address_is_refused_then_discovers(
    lan, make_netns, connect_netns
) -> None:
    path, mac = guest_netns(make_netns, connect_netns, lan.bridge)
    wrong = ipaddress.IPv4Address("203.0.113.250")  # outside dnsmasq's pool: DHCPNAK

    lease = dhcp.acquire(
        path, "eth1", mac=mac, hostname="nk", client_id=b"\x00nk", timeout=30, requested=wrong
    )

    assert lease.address.ip != wrong
    assert "DHCPNAK" in lan.log()


def test_renew_and_rebind_extend_the_lease(lan, make_netns, connect_netns) -> None:
    import asyncio

    path, mac = guest_netns(make_netns, connect_netns, lan.bridge)
    lease = dhcp.acquire(path, "eth1", mac=mac, hostname="rn", client_id=b"\x00rn", timeout=30)
    dhcp.apply_lease(path, "eth1", lease)

    renewed = asyncio.run(dhcp.renew_async(path, "eth1", lease))
    rebound = asyncio.run(dhcp.renew_async(path, "eth1", lease, rebind=True))

    assert renewed is not None and rebound is not None
    assert renewed.address == lease.address == rebound.address
    assert renewed.obtained_at >= lease.obtained_at
    log = lan.log()
    assert f"DHCPREQUEST(lan0) {lease.address.ip} {mac}" in log
    assert log.count(f"DHCPACK(lan0) {lease.address.ip} {mac}") >= 3


def test_renew_answered_by_nak_raises_lease_refused(lan, make_netns, connect_netns) -> None:
    import asyncio

    path, mac = guest_netns(make_netns, connect_netns, lan.bridge)
    lease = dhcp.acquire(path, "eth1", mac=mac, hostname="nk2", client_id=b"\x00nk2", timeout=30)
    dhcp.apply_lease(path, "eth1", lease)
    foreign = dhcp.Lease.from_dict(
        {**lease.to_dict(), "address": "203.0.113.251/24"}  # not the address dnsmasq gave
    )
    dhcp.apply_lease(path, "eth1", foreign, default_route=False)

    with pytest.raises(dhcp.LeaseRefused):
        asyncio.run(dhcp.renew_async(path, "eth1", foreign))  # unicast: dnsmasq NAKs


def test_no_server_fails_within_the_timeout(bridge, make_netns, connect_netns) -> None:
    path, mac = guest_netns(make_netns, connect_netns, bridge)
    started = time.monotonic()
    with pytest.raises(OperationFailed, match=r"^no DHCP offer on eth1 within 3 s$"):
        dhcp.acquire(path, "eth1", mac=mac, hostname=None, client_id=b"\x00x", timeout=3)
    assert time.monotonic() - started < 3 + 5  # bounded; the exact figure is in bench_dhcp
    assert addresses(path) == []


def test_missing_netns_or_interface_is_guest_gone(bridge, make_netns, connect_netns) -> None:
    path, mac = guest_netns(make_netns, connect_netns, bridge)
    with pytest.raises(dhcp.GuestGone):
        dhcp.acquire(path, "eth9", mac=mac, hostname=None, client_id=b"\x00x", timeout=3)
    with pytest.raises(dhcp.GuestGone):
        dhcp.acquire(
            "/var/run/netns/obtnosuch0",
            "eth1",
            mac=mac,
            hostname=None,
            client_id=b"\x00x",
            timeout=3,
        )


def test_two_guests_at_once_get_distinct_addresses(lan, make_netns, connect_netns) -> None:
    guests = [guest_netns(make_netns, connect_netns, lan.bridge) for _ in range(2)]
    leases: dict[int, dhcp.Lease] = {}

    def take(i: int) -> None:
        path, mac = guests[i]
        leases[i] = dhcp.acquire(
            path, "eth1", mac=mac, hostname=f"c{i}", client_id=f"\x00c{i}".encode(), timeout=30
        )

    threads = [threading.Thread(target=take, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(leases) == 2
    assert leases[0].address != leases[1].address


def test_twenty_in_a_row_get_twenty_addresses(lan, make_netns, connect_netns, netns_exec) -> None:
    got = []
    for i in range(20):
        path, mac = guest_netns(make_netns, connect_netns, lan.bridge)
        lease = dhcp.acquire(
            path, "eth1", mac=mac, hostname=f"r{i}", client_id=f"\x00r{i}".encode(), timeout=30
        )
        dhcp.apply_lease(path, "eth1", lease)
        got.append(lease.address.ip)
    assert len(set(got)) == 20
    assert len(lan.leases()) == 20
    ping = netns_exec(path, "busybox", "ping", "-c", "1", "-W", "2", str(got[0]))
    assert ping.returncode == 0


def test_apply_replaces_only_the_ipv4_default_route_and_unapply_is_idempotent(
    lan, make_netns, connect_netns
) -> None:
    name = make_netns()
    path = f"/var/run/netns/{name}"
    connect_netns(lan.bridge, name, ifname="eth1")
    connect_netns(lan.bridge, name, ifname="eth0")
    run(["ip", "-n", name, "addr", "add", "198.51.100.9/24", "dev", "eth0"])
    run(["ip", "-n", name, "route", "add", "default", "via", "198.51.100.1", "dev", "eth0"])
    run(["ip", "-n", name, "-6", "addr", "add", "2001:db8::9/64", "dev", "eth0", "nodad"])
    run(["ip", "-n", name, "-6", "route", "add", "default", "via", "2001:db8::1", "dev", "eth0"])
    mac = link_mac(path, "eth1")

    lease = dhcp.acquire(path, "eth1", mac=mac, hostname=None, client_id=b"\x00dr", timeout=30)
    dhcp.apply_lease(path, "eth1", lease)
    assert default_routes(path) == [f"default via {SERVER} dev eth1 proto dhcp"]
    v6 = run(["ip", "-n", name, "-6", "route", "show", "default"]).stdout
    assert "2001:db8::1" in v6

    dhcp.unapply_lease(path, "eth1", lease)
    dhcp.unapply_lease(path, "eth1", lease)
    assert addresses(path) == []
    assert default_routes(path) == []
    assert "198.51.100.9/24" in addresses(path, "eth0")


def test_no_default_route_and_previous_address_removed(lan, make_netns, connect_netns) -> None:
    path, mac = guest_netns(make_netns, connect_netns, lan.bridge)
    lease = dhcp.acquire(path, "eth1", mac=mac, hostname=None, client_id=b"\x00nd", timeout=30)
    old = dhcp.Lease.from_dict({**lease.to_dict(), "address": "203.0.113.77/24"})
    dhcp.apply_lease(path, "eth1", old, default_route=False)

    dhcp.apply_lease(path, "eth1", lease, default_route=False, previous=old)

    assert addresses(path) == [lease.address.with_prefixlen]
    assert default_routes(path) == []


def test_release_frees_the_lease_at_the_server(lan, make_netns, connect_netns) -> None:
    path, mac = guest_netns(make_netns, connect_netns, lan.bridge)
    lease = dhcp.acquire(path, "eth1", mac=mac, hostname="rel", client_id=b"\x00rel", timeout=30)
    dhcp.apply_lease(path, "eth1", lease)
    dhcp.unapply_lease(path, "eth1", lease)

    dhcp.release(path, "eth1", lease)

    deadline = time.monotonic() + 10
    while lan.leases() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lan.leases() == []
    assert f"DHCPRELEASE(lan0) {lease.address.ip} {mac}" in lan.log()


def test_release_never_raises_when_the_netns_is_gone(lan, make_netns, connect_netns) -> None:
    path, mac = guest_netns(make_netns, connect_netns, lan.bridge)
    lease = dhcp.acquire(path, "eth1", mac=mac, hostname=None, client_id=b"\x00g", timeout=30)
    dhcp.release("/var/run/netns/obtgone000", "eth1", lease)
    dhcp.release(path, "eth7", lease)
    dhcp.unapply_lease("/var/run/netns/obtgone000", "eth1", lease)


def test_many_netns_from_one_process_leave_no_thread_or_socket(
    lan, make_netns, connect_netns
) -> None:
    own_netns = os.stat("/proc/self/ns/net").st_ino
    before_threads = threading.active_count()
    before_fds = len(os.listdir("/proc/self/fd"))
    for i in range(3):
        path, mac = guest_netns(make_netns, connect_netns, lan.bridge)
        lease = dhcp.acquire(
            path, "eth1", mac=mac, hostname=None, client_id=f"\x00m{i}".encode(), timeout=30
        )
        dhcp.apply_lease(path, "eth1", lease)
        dhcp.unapply_lease(path, "eth1", lease)
    assert threading.active_count() == before_threads
    assert len(os.listdir("/proc/self/fd")) == before_fds
    # and no thread of the pytest process was left in a guest's netns
    assert os.stat("/proc/self/ns/net").st_ino == own_netns
    tasks = os.listdir("/proc/self/task")
    assert {os.stat(f"/proc/self/task/{t}/ns/net").st_ino for t in tasks} == {own_netns}


def test_resolv_conf_of_a_container_gets_the_lease_dns(
    lan, make_container, _lab, netns_exec
) -> None:
    container, path, mac = container_eth1(make_container, _lab, lan.bridge)
    lease = dhcp.acquire(path, "eth1", mac=mac, hostname="dns", client_id=b"\x00dns", timeout=30)
    resolv = run(["docker", "inspect", "-f", "{{.ResolvConfPath}}", container.id]).stdout.strip()
    host_before = Path("/etc/resolv.conf").read_bytes()

    dhcp.write_resolv_conf(resolv, lease)

    inside = netns_exec(container, "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {SERVER}" in inside and "search lab.test" in inside
    assert Path("/etc/resolv.conf").read_bytes() == host_before
    with pytest.raises(BadInput):
        dhcp.write_resolv_conf("/etc/resolv.conf", lease)
    assert Path("/etc/resolv.conf").read_bytes() == host_before


def test_acquire_inside_a_running_event_loop(lan, make_netns, connect_netns) -> None:
    """The daemon's watcher may call attach (and so acquire) from code under a running loop."""
    import asyncio

    path, mac = guest_netns(make_netns, connect_netns, lan.bridge)

    async def under_loop() -> dhcp.Lease:
        return dhcp.acquire(path, "eth1", mac=mac, hostname=None, client_id=b"\x00L", timeout=30)

    assert asyncio.run(under_loop()).address.ip in ipaddress.ip_network(SUBNET)


def test_pyroute2s_own_socket_cannot_reach_a_guest_interface_ours_can(
    lan, make_netns, connect_netns, names
) -> None:
    """The case this adapter exists for: pyroute2's AsyncDHCP4Socket looks the interface up
    (and binds it) in the *caller's* netns, so a process outside the guest cannot use it."""
    import asyncio

    from pyroute2.dhcp.dhcp4socket import AsyncDHCP4Socket

    ifname = names("if")  # exists only inside the guest's netns
    name = make_netns()
    connect_netns(lan.bridge, name, ifname=ifname)
    path = f"/var/run/netns/{name}"

    async def pyroute2_alone() -> None:
        async with AsyncDHCP4Socket(ifname):
            pass

    with pytest.raises(OSError, match="Link not found"):
        asyncio.run(pyroute2_alone())

    lease = dhcp.acquire(path, ifname, mac=link_mac(path, ifname), hostname=None,
                         client_id=b"\x00p2", timeout=30)
    assert lease.address.ip in ipaddress.ip_network(SUBNET)
