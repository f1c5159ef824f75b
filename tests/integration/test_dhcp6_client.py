"""The DHCPv6 client and SLAAC adapters on the real lab: dnsmasq sends RAs and serves DHCPv6
in its router netns on an OVS netdev bridge; guests are named netns on the same bridge.

``test_capture_dnsmasq_packets`` also records what dnsmasq sends (tcpdump in the router's
netns) and checks that our decoder reads every packet; with OVSBRIDGE_REFRESH_CAPTURES=1 it
rewrites tests/unit/data/dhcp6_dnsmasq.json, the data of the unit tests.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import time
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest
from lab.shell import run

from ovsbridge.system import dhcp6, slaac

pytestmark = pytest.mark.lab

V6NET = "2001:db8:1::/64"
ROUTER6 = "2001:db8:1::1"
RANGE = "2001:db8:1::100,2001:db8:1::1ff,64,2m"
DATA = Path(__file__).parent.parent / "unit" / "data" / "dhcp6_dnsmasq.json"


def ns(path: str, *argv: str) -> str:
    return run(["nsenter", f"--net={path}", "--", *argv]).stdout


@pytest.fixture
def lan6(bridge, dhcp_server):
    return dhcp_server(
        bridge, subnet="203.0.113.0/24", server_ip="203.0.113.1",
        pool=("203.0.113.100", "203.0.113.199"),
        ipv6=f"{ROUTER6}/64", dhcp6_range=RANGE, dns6=ROUTER6, domain6="v6.lab.test",
    )


def guest6(make_netns, connect_netns, bridge: str, *, autoconf: bool, mac: str | None = None
           ) -> tuple[str, str]:
    name = make_netns()
    connect_netns(bridge, name, ifname="eth1", mac=mac)
    path = f"/var/run/netns/{name}"
    slaac.prepare(path, "eth1", autoconf=autoconf)
    got = ns(path, "ip", "-o", "link", "show", "eth1").split("link/ether ")[1].split()[0]
    return path, got


def lease_lines(server) -> list[str]:
    """dnsmasq's IPv6 lease lines (expiry, IAID, address, hostname, DUID)."""
    try:
        text = server.leases_path.read_text()
    except FileNotFoundError:
        return []
    return [ln for ln in text.splitlines() if len(ln.split()) >= 5 and ":" in ln.split()[2]]


def has_lease(server, ip, present: bool = True) -> bool:
    """Whether dnsmasq's lease file lists IP (polled: dnsmasq writes it a moment later)."""
    deadline = time.monotonic() + 5
    while True:
        found = any(str(ip) == ln.split()[2] for ln in lease_lines(server))
        if found == present or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_dhcp6_lease_renew_release_and_same_address_back(
    lan6, make_netns, connect_netns, netns_exec
) -> None:
    path, mac = guest6(make_netns, connect_netns, lan6.bridge, autoconf=False)

    lease = dhcp6.acquire(path, "eth1", mac=mac, timeout=30)

    assert lease.ip in IPv6Network(V6NET)
    assert IPv6Address("2001:db8:1::100") <= lease.ip <= IPv6Address("2001:db8:1::1ff")
    assert lease.valid == 120 and 0 < lease.t1 < lease.t2 < 120
    assert lease.dns == (ROUTER6,) and lease.search == ("v6.lab.test",)
    assert lease.client_duid == dhcp6.duid_ll(mac).hex()
    assert f"{lease.ip}/128" in ns(path, "ip", "-6", "addr", "show", "eth1")
    assert has_lease(lan6, lease.ip), lan6.leases_path.read_text()
    # the default route comes from dnsmasq's RA (accept_ra=2 set by prepare)
    state = slaac.wait(path, "eth1", timeout=15, need_address=False)
    assert state.router and state.router.startswith("fe80:")
    ping = netns_exec(path, "busybox", "ping", "-6", "-c", "1", "-W", "3", ROUTER6)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    renewed = dhcp6._run(dhcp6.renew_async(path, "eth1", lease))
    assert renewed is not None and renewed.ip == lease.ip
    assert renewed.obtained_at > lease.obtained_at
    rebound = dhcp6._run(dhcp6.renew_async(path, "eth1", lease, rebind=True))
    assert rebound is not None and rebound.ip == lease.ip
    log = lan6.log()
    assert "DHCPRENEW(lan0)" in log and "DHCPREBIND(lan0)" in log

    dhcp6.unapply_lease(path, "eth1", lease)
    dhcp6.release(path, "eth1", lease)
    assert "DHCPRELEASE(lan0)" in lan6.log()
    assert not has_lease(lan6, lease.ip, present=False)
    again = dhcp6.acquire(path, "eth1", mac=mac, timeout=30)
    assert again.ip == lease.ip  # same DUID-LL and IAID: same address


def test_dad_failure_declines_and_another_address_is_bound(
    bridge, dhcp_server, make_netns, connect_netns
) -> None:
    mac = "02:00:5e:10:06:42"
    taken = "2001:db8:1::150"
    lan = dhcp_server(
        bridge, subnet="203.0.113.0/24", server_ip="203.0.113.1",
        pool=("203.0.113.100", "203.0.113.199"), ipv6=f"{ROUTER6}/64", dhcp6_range=RANGE,
        extra_args=[f"--dhcp-host=id:{dhcp6.duid_ll(mac).hex(':')},[{taken}]"],
    )
    holder = make_netns()
    connect_netns(lan.bridge, holder, ifname="eth0")
    run(["ip", "netns", "exec", holder, "sysctl", "-q", "-w",
         "net.ipv6.conf.eth0.disable_ipv6=0"])
    run(["ip", "-n", holder, "addr", "add", f"{taken}/64", "dev", "eth0", "nodad"])
    path, _ = guest6(make_netns, connect_netns, lan.bridge, autoconf=False, mac=mac)

    lease = dhcp6.acquire(path, "eth1", mac=mac, timeout=40)

    assert str(lease.ip) != taken
    log = lan.log()
    assert f"DHCPDECLINE(lan0) {taken}" in log or "DHCPDECLINE(lan0)" in log, log[-2000:]
    addrs = ns(path, "ip", "-6", "addr", "show", "eth1")
    assert taken not in addrs and str(lease.ip) in addrs


def test_slaac_address_default_route_and_rdnss(bridge, dhcp_server, make_netns,
                                               connect_netns, netns_exec) -> None:
    lan = dhcp_server(
        bridge, subnet="203.0.113.0/24", server_ip="203.0.113.1",
        pool=("203.0.113.100", "203.0.113.199"), ipv6=f"{ROUTER6}/64",
        dhcp6_range="2001:db8:1::,ra-only", dns6=ROUTER6, domain6="v6.lab.test",
    )
    path, _ = guest6(make_netns, connect_netns, lan.bridge, autoconf=True)

    result = slaac.wait(path, "eth1", timeout=20, need_address=True)

    assert result.addresses and all(IPv6Network(a, strict=False) == IPv6Network(V6NET)
                                    for a in result.addresses)
    assert result.router and result.router.startswith("fe80:")
    assert result.dns == (ROUTER6,)
    assert "v6.lab.test" in result.search
    ping = netns_exec(path, "busybox", "ping", "-6", "-c", "1", "-W", "3", ROUTER6)
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_slaac_without_router_fails_within_the_timeout(bridge, make_netns, connect_netns) -> None:
    path, _ = guest6(make_netns, connect_netns, bridge, autoconf=True)
    started = time.monotonic()
    with pytest.raises(dhcp6.OperationFailed, match="within 3 s"):
        slaac.wait(path, "eth1", timeout=3, need_address=True)
    assert time.monotonic() - started < 10


def _udp_payloads(pcap: bytes) -> list[tuple[int, int, bytes]]:
    """(src port, dst port, payload) of each IPv6 UDP packet in a pcap (Ethernet link)."""
    out = []
    magic = struct.unpack_from("<I", pcap)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    pos = 24
    while pos + 16 <= len(pcap):
        incl = struct.unpack_from(endian + "I", pcap, pos + 8)[0]
        frame = pcap[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if len(frame) < 62 or frame[12:14] != b"\x86\xdd":
            continue
        ip = frame[14:]
        if ip[6] == 17:
            sport, dport, length = struct.unpack_from("!HHH", ip, 40)
            out.append((sport, dport, ip[48 : 40 + length]))
        elif ip[6] == 58 and ip[40] == 134:
            out.append((0, 0, ip[40:]))  # a router advertisement (ICMPv6 body)
    return out


def test_capture_dnsmasq_packets(lan6, make_netns, connect_netns, tmp_path: Path,
                                 spawn) -> None:
    pcap_path = tmp_path / "dhcp6.pcap"
    tcpdump = spawn(lan6.netns, "tcpdump", "-i", lan6.ifname, "-U", "-s", "0", "-w",
                    str(pcap_path), "udp port 546 or udp port 547 or icmp6",
                    stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    path, mac = guest6(make_netns, connect_netns, lan6.bridge, autoconf=False)
    lease = dhcp6.acquire(path, "eth1", mac=mac, timeout=30)
    assert dhcp6._run(dhcp6.renew_async(path, "eth1", lease)) is not None
    dhcp6.release(path, "eth1", lease)
    slaac.wait(path, "eth1", timeout=15, need_address=False)
    time.sleep(1.0)
    tcpdump.terminate()
    tcpdump.wait(5)

    packets = _udp_payloads(pcap_path.read_bytes())
    dhcp_msgs = [(s, d, dhcp6.decode(p)) for s, d, p in packets if s or d]
    names = [m.name for _, _, m in dhcp_msgs]
    for wanted in ("SOLICIT", "ADVERTISE", "REQUEST", "REPLY", "RENEW", "RELEASE"):
        assert wanted in names, (names, lan6.log()[-3000:])
    ras = [slaac.parse_ra(p, "?") for s, d, p in packets if not (s or d)]
    assert any(ra is not None and ra.managed for ra in ras)
    if os.environ.get("OVSBRIDGE_REFRESH_CAPTURES") == "1":
        record = {
            "source": "dnsmasq 2.90 in a router netns on an OVS netdev bridge, captured by "
                      "tcpdump on its lan0 in tests/integration/test_dhcp6_client.py::"
                      "test_capture_dnsmasq_packets; client messages are ours",
            "dnsmasq_args": f"--dhcp-range={RANGE} --enable-ra "
                            f"--dhcp-option=option6:dns-server,[{ROUTER6}] "
                            "--dhcp-option=option6:domain-search,v6.lab.test",
            "client_mac": mac,
            "lease_address": str(lease.ip),
            "packets": [{"sport": s, "dport": d, "hex": p.hex()} for s, d, p in packets],
        }
        DATA.parent.mkdir(exist_ok=True)
        DATA.write_text(json.dumps(record, indent=1) + "\n")
