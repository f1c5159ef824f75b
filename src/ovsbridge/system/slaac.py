"""IPv6 on a guest interface from router advertisements: sysctls, RS/RA, SLAAC results.

The kernel does SLAAC and installs the RA's default route once the interface's own sysctls
allow it (``accept_ra=2`` so a netns with forwarding on still listens, ``autoconf``); we set
them inside the guest's netns, send a router solicitation, read the RA ourselves only for
what the kernel leaves to user space (RDNSS and DNSSL, RFC 8106), and wait, bounded, for a
global address and a default route to appear. Side effects: sysctls under
/proc/sys/net/ipv6/conf/IFNAME of the guest's netns, ICMPv6 on the guest's interface.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import struct
import time
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Interface
from typing import Final

from ovsbridge.errors import OperationFailed
from ovsbridge.system.nsthread import guest_index, run_in_netns

log = logging.getLogger(__name__)

ALL_ROUTERS: Final = "ff02::2"
_ICMP6_FILTER: Final = 1
_RS, _RA = 133, 134
_OPT_SLLA, _OPT_PREFIX, _OPT_RDNSS, _OPT_DNSSL = 1, 3, 25, 31
_IFA_F_TENTATIVE: Final = 0x40
_IFA_F_DADFAILED: Final = 0x08
_IFA_F_PERMANENT: Final = 0x80
_RTPROT_RA: Final = 9


@dataclass(frozen=True)
class RouterAdvert:
    """What one RA said (only the parts we report or use)."""

    router: str  # link-local source
    lifetime: int  # router lifetime, s (0: not a default router)
    prefixes: tuple[str, ...]  # autonomous prefixes
    dns: tuple[str, ...]
    search: tuple[str, ...]
    managed: bool
    other: bool


@dataclass(frozen=True)
class SlaacResult:
    addresses: tuple[str, ...]  # global addresses the kernel made, CIDR
    router: str | None  # the default route's gateway
    dns: tuple[str, ...]
    search: tuple[str, ...]
    valid_lft: int | None = None
    preferred_lft: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {"addresses": list(self.addresses), "router": self.router,
                "dns": list(self.dns), "search": list(self.search),
                "valid_lft": self.valid_lft, "preferred_lft": self.preferred_lft}


def _sysctl(ifname: str, key: str, value: str) -> None:
    path = f"/proc/sys/net/ipv6/conf/{ifname}/{key}"
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except FileNotFoundError:
        raise OperationFailed(
            f"IPv6 is not available for {ifname} in the guest's netns",
            hint="boot with ipv6 enabled, or use IPv4 address modes only",
        ) from None
    log.debug("sysctl: net.ipv6.conf.%s.%s=%s", ifname, key, value)


def prepare(netns_path: str, ifname: str, *, autoconf: bool, default_route: bool = True,
            netns_inode: int | None = None) -> None:
    """Let IFNAME take RAs (and, with AUTOCONF, SLAAC addresses), then turn IPv6 on.

    NOTE: the order matters: with accept_ra set before disable_ipv6=0, the kernel's own
    router solicitation on enabling IPv6 already asks for an RA; /proc/sys/net shows the
    netns of the thread that opens it, hence run_in_netns.
    """

    def body() -> None:
        _sysctl(ifname, "accept_ra", "2")
        _sysctl(ifname, "accept_ra_defrtr", "1" if default_route else "0")
        _sysctl(ifname, "accept_ra_pinfo", "1")
        _sysctl(ifname, "autoconf", "1" if autoconf else "0")
        _sysctl(ifname, "disable_ipv6", "0")

    run_in_netns(netns_path, body, netns_inode)


def parse_ra(packet: bytes, source: str) -> RouterAdvert | None:
    """An ICMPv6 router advertisement (RFC 4861 4.2) as read from a raw ICMPv6 socket."""
    if len(packet) < 16 or packet[0] != _RA:
        return None
    flags = packet[5]
    lifetime = struct.unpack_from("!H", packet, 6)[0]
    prefixes: list[str] = []
    dns: list[str] = []
    search: list[str] = []
    pos = 16
    while pos + 2 <= len(packet):
        kind, units = packet[pos], packet[pos + 1]
        if units == 0:
            break
        body = packet[pos : pos + units * 8]
        if kind == _OPT_PREFIX and len(body) >= 32:
            plen, pflags = body[2], body[3]
            valid = struct.unpack_from("!I", body, 4)[0]
            if pflags & 0x40 and valid:
                prefix = IPv6Address(body[16:32])
                prefixes.append(str(IPv6Interface(f"{prefix}/{plen}").network))
        elif kind == _OPT_RDNSS and len(body) >= 24:
            life = struct.unpack_from("!I", body, 4)[0]
            if life:
                dns.extend(str(IPv6Address(body[i : i + 16])) for i in range(8, len(body) - 15, 16))
        elif kind == _OPT_DNSSL and len(body) >= 16:
            life = struct.unpack_from("!I", body, 4)[0]
            if life:
                from ovsbridge.system.dhcp6 import decode_domain_list

                search.extend(decode_domain_list(body[8:].rstrip(b"\x00") + b"\x00"))
        pos += units * 8
    return RouterAdvert(source, lifetime, tuple(prefixes), tuple(dns), tuple(search),
                        bool(flags & 0x80), bool(flags & 0x40))


def _router_solicit_socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        sock.setsockopt(socket.SOL_SOCKET, 25, ifname.encode())  # SO_BINDTODEVICE
        # NOTE: ICMP6_FILTER passes only RAs (a bitmap of blocked types: all but 134).
        sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, _icmp6_filter(_RA))
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF,
                        socket.if_nametoindex(ifname))
    except OSError:
        sock.close()
        raise
    return sock


def _icmp6_filter(allowed: int) -> bytes:
    # struct icmp6_filter: 8 x u32, bit set = blocked (ICMP6_FILTER_SETBLOCKALL then PASS)
    words = [0xFFFFFFFF] * 8
    words[allowed >> 5] &= ~(1 << (allowed & 31)) & 0xFFFFFFFF
    return struct.pack("=8I", *words)


def _state(ifname: str) -> tuple[list[tuple[str, int, int]], str | None]:
    """Global dynamic addresses (cidr, valid, preferred) and the IPv6 default gateway."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        index = guest_index(ipr, ifname)
        addrs = []
        for msg in ipr.get_addr(index=index, family=socket.AF_INET6):
            flags = int(msg.get_attr("IFA_FLAGS") or msg["flags"])
            if msg["scope"] != 0 or flags & (_IFA_F_TENTATIVE | _IFA_F_DADFAILED):
                continue
            if flags & _IFA_F_PERMANENT or msg["prefixlen"] == 128:
                continue  # static, or a DHCPv6 /128: not from SLAAC
            info = msg.get_attr("IFA_CACHEINFO")
            valid = int(info["ifa_valid"]) if info else 0
            pref = int(info["ifa_preferred"]) if info else 0
            addrs.append((f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}", valid, pref))
        gateway = None
        for route in ipr.get_routes(family=socket.AF_INET6, table=254):
            if route["dst_len"] == 0 and route.get_attr("RTA_OIF") == index:
                gateway = route.get_attr("RTA_GATEWAY")
                if gateway:
                    break
        return addrs, gateway


def route_state(netns_path: str, ifname: str) -> tuple[list[tuple[str, int, int]], str | None]:
    return run_in_netns(netns_path, lambda: _state(ifname))


def wait(netns_path: str, ifname: str, *, timeout: float, need_address: bool,
         need_route: bool = True, netns_inode: int | None = None) -> SlaacResult:
    """Solicit an RA and wait (at most TIMEOUT s) for an IPv6 default route and, with
    NEED_ADDRESS, a global SLAAC address. Raises OperationFailed naming what is missing."""

    def body() -> SlaacResult:
        deadline = time.monotonic() + timeout
        ras: list[RouterAdvert] = []
        with contextlib.closing(_router_solicit_socket(ifname)) as sock:
            rs = struct.pack("!BBHI", _RS, 0, 0, 0)
            index = socket.if_nametoindex(ifname)
            next_rs = 0.0
            sent = 0
            while True:
                now = time.monotonic()
                addrs, gateway = _state(ifname)
                routed = gateway or not need_route
                if routed and (addrs or not need_address) and (ras or now > deadline - 0.5):
                    break
                if now >= deadline:
                    missing = [] if routed else ["an IPv6 default route"]
                    if need_address and not addrs:
                        missing.insert(0, "a global IPv6 address")
                    if not ras:
                        missing.append("any router advertisement")
                    raise OperationFailed(
                        f"no {' or '.join(missing)} on {ifname} within {timeout:g} s",
                        hint="check that a router advertises on the bridge (and VLAN), "
                             "or raise --ra-timeout",
                    )
                # NOTE: RFC 4861 6.3.7: up to 3 solicitations, 4 s apart; the first may be
                # lost while the link-local address is still tentative, so try early again.
                if now >= next_rs and sent < 3:
                    with contextlib.suppress(OSError):
                        sock.sendto(rs, (ALL_ROUTERS, 0, 0, index))
                        sent += 1
                    next_rs = now + (1.0 if sent == 1 else 4.0)
                ready, _, _ = select.select([sock], [], [], 0.1)
                if ready:
                    data, src = sock.recvfrom(2048)
                    ra = parse_ra(data, str(src[0]).split("%")[0])
                    if ra is not None:
                        ras.append(ra)
        dns = tuple(dict.fromkeys(d for ra in ras for d in ra.dns))
        search = tuple(dict.fromkeys(d for ra in ras for d in ra.search))
        best = max(addrs, key=lambda a: a[1]) if addrs else None
        return SlaacResult(
            addresses=tuple(a[0] for a in addrs), router=gateway, dns=dns, search=search,
            valid_lft=best[1] if best else None, preferred_lft=best[2] if best else None,
        )

    return run_in_netns(netns_path, body, netns_inode)


def write_resolv_conf(path: str, result: SlaacResult) -> None:
    """RDNSS/DNSSL from the RA into the container's resolv.conf (source "slaac")."""
    from ovsbridge.system import resolvconf

    if result.dns or result.search:
        resolvconf.update(path, "slaac", result.dns, result.search, note="RA RDNSS/DNSSL")
