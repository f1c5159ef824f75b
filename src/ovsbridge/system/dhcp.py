"""DHCPv4 client adapter: leases for an interface inside a guest's network namespace.

Built on pyroute2's DHCP message classes (``dhcp4msg``) and its raw socket's framing and
decoding (``AsyncDHCP4Socket.put``/``get``), with our own small state machine, because
pyroute2's ``AsyncDHCPClient`` only works in the current netns: its raw socket looks the
interface up and binds it in the calling thread's netns, a netlink watcher it starts pins
that netns, its hooks configure the current netns and its signal handlers and lease files
are per process. Here every socket is made by a short-lived thread that has ``setns()``-ed
into the guest's netns (setns(CLONE_NEWNET) is per thread; a socket keeps the netns it was
made in), so one process can hold leases in any number of namespaces. Address and route
changes go through ``IPRoute()`` created the same way.

Side effects: raw packets on the guest's interface, addresses and routes in the guest's
netns, the container's own resolv.conf. Nothing here touches the root netns.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import math
import os
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, Final, TypeVar

from ovsbridge.dnsname import (
    MAX_NAMESERVERS,
    clean_domain,
    clean_nameserver,
    clean_nameservers,
    clean_search,
    is_hostname,
    parse_hostname,
)
from ovsbridge.errors import (
    BadInput,
    GuestGone,
    LeaseRefused,
    OperationFailed,
    OvsbridgeError,
)
from ovsbridge.system.nsthread import arun_in_netns, guest_index, run_in_netns
from ovsbridge.system.resolvconf import HOST_RESOLV_CONF  # noqa: F401 - part of this API

log = logging.getLogger(__name__)

T = TypeVar("T")

INFINITE: Final = 0xFFFFFFFF  # lease time "forever" (RFC 2131), also the kernel's forever lft
BROADCAST_MAC: Final = "ff:ff:ff:ff:ff:ff"
CLIENT_PORT: Final = 68
SERVER_PORT: Final = 67

_ETH_P_ALL: Final = 0x0003
_SIOCGIFFLAGS: Final = 0x8913
_IFF_UP: Final = 0x1
_SO_BINDTODEVICE: Final = 25
_RTPROT_DHCP: Final = 16  # routes we add show "proto dhcp"

# NOTE: ask for the options we apply (mask, router, DNS, domain, MTU, search list, classless
# routes; 249 is Microsoft's pre-standard 121) and the three timers. RFC 3442 asks clients to
# list 121 before 3 (servers that only send one of them pick by position).
_PARAMETERS: Final = (1, 121, 249, 3, 6, 15, 26, 119, 51, 58, 59)
_REBOOT_WINDOW: Final = 6.0  # INIT-REBOOT: how long to wait for ACK/NAK before DISCOVER
_MAX_LEASE_DNS: Final = 8  # servers kept from a lease (resolv.conf gets the first 3)


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    """One DHCPv4 lease as granted by the server's ACK. Times are seconds; obtained_at is epoch.

    ``lease_time == INFINITE`` means the lease never expires. ``server_mac`` is where unicast
    renewals and releases go (the ACK's Ethernet source; broadcast when unknown).
    """

    address: IPv4Interface
    router: IPv4Address | None
    dns: tuple[str, ...]
    domain: str | None
    lease_time: int
    renewal_time: int
    rebinding_time: int
    server_id: IPv4Address
    obtained_at: float
    mac: str
    hostname: str | None
    client_id: str  # hex of option 61's full payload (type byte first)
    server_mac: str | None = None
    # option 121 (or 249) routes other than the default: (destination CIDR, gateway), the
    # gateway "0.0.0.0" meaning on-link. With option 121, ``router`` is its 0.0.0.0/0 entry.
    routes: tuple[tuple[str, str], ...] = ()
    mtu: int | None = None  # option 26
    search: tuple[str, ...] = ()  # option 119 (domain search list)

    @property
    def infinite(self) -> bool:
        return self.lease_time >= INFINITE

    @property
    def expires_at(self) -> float:
        return float("inf") if self.infinite else self.obtained_at + self.lease_time

    @property
    def renew_at(self) -> float:
        return float("inf") if self.infinite else self.obtained_at + self.renewal_time

    @property
    def rebind_at(self) -> float:
        return float("inf") if self.infinite else self.obtained_at + self.rebinding_time

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    def remaining(self, now: float | None = None) -> int:
        """Seconds left, as an address lifetime: INFINITE for a lease that never expires."""
        if self.infinite:
            return INFINITE
        left = self.expires_at - (time.time() if now is None else now)
        return max(0, int(left))

    @property
    def client_id_bytes(self) -> bytes:
        return bytes.fromhex(self.client_id)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["address"] = self.address.with_prefixlen
        data["router"] = str(self.router) if self.router else None
        data["dns"] = list(self.dns)
        data["server_id"] = str(self.server_id)
        data["routes"] = [list(r) for r in self.routes]
        data["search"] = list(self.search)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lease:
        """A lease from its record (a state file, a request): wrong types are refused
        (BadInput); names and servers that are not valid are dropped, never passed on."""
        try:
            if not isinstance(data, dict):
                raise TypeError(f"a lease record is a JSON object, not {type(data).__name__}")
            dns = data.get("dns") or []
            if not isinstance(dns, list):
                raise TypeError("'dns' is not a list")
            hostname = data.get("hostname") or None
            mac = _text(data, "mac").lower()
            if not _MAC_TEXT.fullmatch(mac):
                raise ValueError(f"'mac' {mac!r} is not a MAC address")
            client_id = _text(data, "client_id")
            bytes.fromhex(client_id)
            server_mac = data.get("server_mac") or None
            if server_mac is not None and not (
                isinstance(server_mac, str) and _MAC_TEXT.fullmatch(server_mac.lower())
            ):
                raise ValueError("'server_mac' is not a MAC address")
            return cls(
                address=IPv4Interface(_text(data, "address")),
                router=_router(data.get("router")),
                dns=clean_nameservers(dns, _MAX_LEASE_DNS),
                domain=clean_domain(data.get("domain")),
                lease_time=_count(data, "lease_time"),
                renewal_time=_count(data, "renewal_time"),
                rebinding_time=_count(data, "rebinding_time"),
                server_id=IPv4Address(_text(data, "server_id")),
                obtained_at=_number(data, "obtained_at"),
                mac=mac,
                hostname=hostname if isinstance(hostname, str) and is_hostname(hostname) else None,
                client_id=client_id,
                server_mac=server_mac,
                routes=tuple((str(d), str(g)) for d, g in data.get("routes") or ()),
                mtu=int(data["mtu"]) if data.get("mtu") else None,
                search=clean_search(data.get("search") or ()),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise BadInput(f"malformed DHCP lease record: {exc}") from exc


_MAC_TEXT: Final = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def _text(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key!r} is not a string")
    return value


def _count(data: dict[str, Any], key: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INFINITE:
        raise ValueError(f"{key!r} is not a number of seconds")
    return value


def _number(data: dict[str, Any], key: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key!r} is not a time")
    return float(value)


def _router(value: object) -> IPv4Address | None:
    """A lease's router, or None when there is none or it is not a unicast address."""
    if not value:
        return None
    if not isinstance(value, str):
        raise TypeError("'router' is not a string")
    if clean_nameserver(value) is None:  # the same test: a real unicast address
        return None
    return IPv4Address(value)




def client_id_for(guest_key: str, ifname: str) -> bytes:
    """A stable DHCP client id (option 61 payload) for GUEST's interface IFNAME.

    Type 0 (not a hardware address) followed by readable text, so dnsmasq's lease file and
    logs show which guest holds a lease, and the same guest gets the same lease back.
    """
    text = f"ovsbridge:{guest_key}:{ifname}".encode()
    return b"\x00" + text[:250]


def hostname_for(name: str) -> str | None:
    """A DNS-safe hostname (option 12) derived from a container name; None if nothing is left."""
    label = "".join(c if c.isascii() and (c.isalnum() or c == "-") else "-" for c in name.lower())
    label = label.strip("-")[:63].strip("-")
    return label or None


# --------------------------------------------------------------------------------------------
# Running code inside a network namespace (per thread)
# --------------------------------------------------------------------------------------------




# --------------------------------------------------------------------------------------------
# Sockets
# --------------------------------------------------------------------------------------------


@functools.cache
def _socket_class() -> type:
    """pyroute2's AsyncDHCP4Socket, made in the caller's (thread's) netns without its netlink."""
    from pyroute2.dhcp.dhcp4socket import AsyncDHCP4Socket, listen_udp_port
    from pyroute2.ext import bpf

    class NetnsDHCP4Socket(AsyncDHCP4Socket):  # type: ignore[misc]
        # NOTE: AsyncDHCP4Socket.__init__ wants a running loop in this thread and __aenter__
        # looks the interface up (and starts a MAC watcher) with a netlink socket of the
        # *current* netns. We build the same socket by hand in the guest's netns thread and
        # reuse its put()/get() framing from the event loop.
        def __init__(self, ifname: str) -> None:
            socket.socket.__init__(
                self, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL)
            )
            try:
                self.ifname = ifname
                self.port = CLIENT_PORT
                self.bpf = listen_udp_port(CLIENT_PORT)
                self.fprog = None
                self._l2addr_watcher = None
                socket.socket.setblocking(self, False)
                socket.socket.bind(self, (ifname, _ETH_P_ALL))
                self.ifindex = socket.if_nametoindex(ifname)
                self.l2addr = self.getsockname()[4].hex(":")
                self.clear_buffer()
                fstring, self.fprog = bpf.compile(self.bpf)
                socket.socket.setsockopt(self, socket.SOL_SOCKET, 26, fstring)  # ATTACH_FILTER
            except BaseException:
                socket.socket.close(self)
                raise

        @property
        def loop(self) -> asyncio.AbstractEventLoop:
            return asyncio.get_running_loop()

    return NetnsDHCP4Socket


# NOTE: RFC 5227 2.1 spreads 3 probes over 1-2 s each and then listens 2 s (up to 7 s), for
# hosts that may be slow to answer on any medium. A holder on a switched LAN answers an ARP
# request within milliseconds, and the DHCP server has usually pinged the address already;
# we send 2 probes 0.3 s apart and listen 0.5 s more, so a DHCP attach costs < 1 s extra.
ARP_PROBES: Final = 2
ARP_PROBE_INTERVAL: Final = 0.3
ARP_LISTEN: Final = 0.5
DECLINE_WAIT: Final = 10.0  # RFC 2131 3.1.5: wait >= 10 s after DHCPDECLINE


def arp_probe_frame(mac: str, ip: IPv4Address) -> bytes:
    """An RFC 5227 ARP probe for IP: sender IP 0.0.0.0, target IP the candidate, broadcast."""
    hw = bytes.fromhex(mac.replace(":", ""))
    return (
        b"\xff" * 6 + hw + struct.pack("!H", 0x0806)
        + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
        + hw + b"\x00" * 4 + b"\x00" * 6 + ip.packed
    )


def arp_conflict(frame: bytes, mac: str, ip: IPv4Address) -> str | None:
    """The MAC of another host claiming IP in this ARP frame (RFC 5227 2.1.1), else None:
    any ARP with IP as sender, or another host's probe for IP."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, _op = struct.unpack("!HHBBH", frame[14:22])
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
        return None
    sha, spa, tpa = frame[22:28], frame[28:32], frame[38:42]
    sender = sha.hex(":")
    if sender == mac.lower():
        return None
    if spa == ip.packed or (spa == b"\x00" * 4 and tpa == ip.packed):
        return sender
    return None


def _probe_in_netns(ifname: str, mac: str, ip: IPv4Address) -> str | None:
    """Runs inside the guest's netns thread: probe IP, return a conflicting MAC or None."""
    import select

    frame = arp_probe_frame(mac, ip)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)) as sock:
        sock.bind((ifname, 0))
        sock.setblocking(False)
        for attempt in range(ARP_PROBES):
            sock.send(frame)
            listen = ARP_PROBE_INTERVAL if attempt < ARP_PROBES - 1 else ARP_LISTEN
            until = time.monotonic() + listen
            while (left := until - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    continue
                holder = arp_conflict(data, mac, ip)
                if holder is not None:
                    return holder
    return None


async def probe_address_async(
    netns_path: str, ifname: str, mac: str, ip: IPv4Address, netns_inode: int | None = None
) -> str | None:
    """ARP-probe IP on IFNAME (RFC 5227): the MAC of a host that already uses it, or None."""
    try:
        return await arun_in_netns(
            netns_path, lambda: _probe_in_netns(ifname, mac, ip), netns_inode
        )
    except OSError as exc:
        log.warning("ARP probe of %s on %s failed (%s); not checked", ip, ifname, exc)
        return None


def _interface_up(ifname: str) -> bool:
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        req = struct.pack("16sH14x", ifname.encode(), 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(probe, _SIOCGIFFLAGS, req))[1]
    return bool(flags & _IFF_UP)


class _Sockets:
    """The raw DHCP socket on the guest interface, plus a UDP port-68 sink (see NOTE)."""

    def __init__(self, raw: Any, sink: socket.socket | None) -> None:
        self.raw = raw
        self.sink = sink

    @property
    def mac(self) -> str:
        return str(self.raw.l2addr)

    def close(self) -> None:
        for sock in (self.raw, self.sink):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()


def _open_sockets(ifname: str, *, need_up: bool = True) -> _Sockets:
    """Runs inside the guest's netns thread."""
    try:
        socket.if_nametoindex(ifname)
    except OSError as exc:
        raise GuestGone(f"interface {ifname} does not exist in the guest's netns") from exc
    if need_up and not _interface_up(ifname):
        raise OperationFailed(
            f"interface {ifname} is down", hint="bring the link up before asking for a lease"
        )
    try:
        raw = _socket_class()(ifname)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise GuestGone(f"interface {ifname} does not exist in the guest's netns") from exc
        raise OperationFailed(f"cannot open a DHCP socket on {ifname}: {exc.strerror}") from exc
    # NOTE: unicast replies (renewals) reach port 68 of the leased address; without a UDP
    # socket there the guest's kernel answers ICMP port-unreachable to the server. The raw
    # socket reads the packet; this sink only exists to keep the kernel quiet.
    sink: socket.socket | None = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert sink is not None
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sink.setsockopt(socket.SOL_SOCKET, _SO_BINDTODEVICE, ifname.encode())
        sink.setblocking(False)
        sink.bind(("0.0.0.0", CLIENT_PORT))
    except OSError:
        assert sink is not None
        sink.close()
        sink = None
    return _Sockets(raw, sink)


async def _open_async(
    netns_path: str, ifname: str, netns_inode: int | None, *, need_up: bool = True
) -> _Sockets:
    return await arun_in_netns(
        netns_path, lambda: _open_sockets(ifname, need_up=need_up), netns_inode
    )


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Identity:
    mac: str
    hostname: str | None
    client_id: bytes


def _client_id_option(client_id: bytes) -> dict[str, Any]:
    if not client_id:
        raise BadInput("DHCP client id is empty", hint="use dhcp.client_id_for(guest, ifname)")
    kind, key = client_id[0], client_id[1:]
    if kind == 1 and len(key) == 6:
        # NOTE: pyroute2 encodes type-1 ids from a MAC *string* and asserts otherwise.
        return {"type": 1, "key": key.hex(":")}
    return {"type": kind, "key": key}


def _build(
    mtype: int,
    ident: _Identity,
    *,
    xid: int,
    secs: int = 0,
    ciaddr: str = "0.0.0.0",
    broadcast: bool = True,
    requested: str | None = None,
    server_id: str | None = None,
    eth_dst: str = BROADCAST_MAC,
    ip_src: str = "0.0.0.0",
    ip_dst: str = "255.255.255.255",
    params: bool = True,
) -> Any:
    from pyroute2.dhcp.dhcp4msg import dhcp4msg
    from pyroute2.dhcp.messages import SentDHCPMessage

    options: dict[str, Any] = {"message_type": mtype}
    if requested:
        options["requested_ip"] = requested
    if server_id:
        options["server_id"] = server_id
    if params:
        options["parameter_list"] = list(_PARAMETERS)
    options["client_id"] = _client_id_option(ident.client_id)
    if ident.hostname and mtype not in (4, 7):  # no hostname in DECLINE or RELEASE
        options["host_name"] = ident.hostname
    dhcp = dhcp4msg(
        {
            "op": 1,  # BOOTREQUEST
            "xid": xid,
            "secs": min(secs, 0xFFFF),
            "flags": 0x8000 if broadcast else 0,
            "ciaddr": ciaddr,
            "chaddr": ident.mac,
            "options": options,
        }
    )
    return SentDHCPMessage(
        dhcp=dhcp, eth_src=ident.mac, eth_dst=eth_dst, ip_src=ip_src, ip_dst=ip_dst
    )


def _u32(value: Any) -> int | None:
    # NOTE: pyroute2 decodes options 51/58/59 as *signed* 32-bit, so an infinite lease
    # (0xffffffff) arrives as -1. Normalise to the unsigned value.
    if value is None:
        return None
    return int(value) & 0xFFFFFFFF


def _classful_prefix(ip: IPv4Address) -> int:
    first = int(ip) >> 24
    return 8 if first < 128 else 16 if first < 192 else 24


def lease_from_ack(msg: Any, ident: _Identity, sent_at: float) -> Lease:
    """Turn a received DHCPACK (pyroute2 ReceivedDHCPMessage) into a Lease."""
    dhcp = msg.dhcp
    opts = dhcp["options"]
    ip = IPv4Address(dhcp["yiaddr"])
    mask = opts.get("subnet_mask")
    prefix = IPv4Interface(f"0.0.0.0/{mask}").network.prefixlen if mask else _classful_prefix(ip)
    lease_time = _u32(opts.get("lease_time"))
    if lease_time is None:
        raise OperationFailed(f"DHCPACK for {ip} has no lease time")
    t1 = _u32(opts.get("renewal_time"))
    t2 = _u32(opts.get("rebinding_time"))
    if lease_time >= INFINITE:
        t1 = t2 = INFINITE
    else:
        if t2 is None or not 0 < t2 < lease_time:
            t2 = int(lease_time * 0.875)
        if t1 is None or not 0 < t1 < t2:
            t1 = min(int(lease_time * 0.5), t2)
    routers = [str(r) for r in opts.get("router") or []]
    routes: tuple[tuple[str, str], ...] = ()
    classless = _raw_option(opts, "classless_static_route", 121)
    if classless is None:
        classless = _raw_option(opts, "private_classic_route_ms", 249)
    if classless is not None:
        parsed = parse_classless_routes(classless)
        if parsed:
            # NOTE: RFC 3442: when option 121 is present the client ignores option 3; the
            # default route, if any, is 121's 0.0.0.0/0 entry.
            routers = [g for d, g in parsed if d == "0.0.0.0/0"][:1]
            routes = tuple((d, g) for d, g in parsed if d != "0.0.0.0/0")
    mtu = opts.get("interface_mtu")
    search_raw = _raw_option(opts, "domain_search", 119)
    server = opts.get("server_id") or msg.ip_src
    raw_domain = opts.get("domain_name")
    if isinstance(raw_domain, list):  # undecodable bytes come back as a list of ints
        raw_domain = bytes(raw_domain).decode("ascii", "replace")
    # NOTE: the server's values are data, not text to paste: a domain with a newline would
    # add lines of its own to resolv.conf. What is not a valid name or address is dropped
    # (and logged with repr(), so it cannot forge a log line either).
    domain = clean_domain(raw_domain) if raw_domain else None
    if raw_domain and domain is None:
        log.warning("DHCPACK for %s: ignoring domain name %r (not a valid DNS name)",
                    ip, str(raw_domain)[:300])
    raw_dns = [str(d) for d in opts.get("name_server") or []]
    dns = clean_nameservers(raw_dns, _MAX_LEASE_DNS)
    if len(dns) < min(len(raw_dns), _MAX_LEASE_DNS):
        log.warning("DHCPACK for %s: ignoring name servers %r (not unicast addresses)",
                    ip, [d for d in raw_dns if d not in dns][:8])
    router = _router(routers[0]) if routers else None
    if routers and router is None:
        log.warning("DHCPACK for %s: ignoring router %r (not a unicast address)", ip, routers[0])
    return Lease(
        address=IPv4Interface(f"{ip}/{prefix}"),
        router=router,
        dns=dns,
        domain=domain,
        lease_time=lease_time,
        renewal_time=t1,
        rebinding_time=t2,
        server_id=IPv4Address(server),
        obtained_at=sent_at,
        mac=ident.mac,
        hostname=ident.hostname,
        client_id=ident.client_id.hex(),
        server_mac=msg.eth_src if msg.eth_src and msg.eth_src != BROADCAST_MAC else None,
        routes=routes,
        # NOTE: RFC 2132 9.1: the minimum legal MTU is 68; anything less is ignored.
        mtu=int(mtu) if isinstance(mtu, int) and 68 <= mtu <= 65535 else None,
        search=clean_search(decode_domain_list(search_raw)) if search_raw else (),
    )


def _raw_option(opts: dict[str, Any], name: str, code: int) -> bytes | None:
    """An option pyroute2 does not decode (it hands the payload over as a list of ints)."""
    value = opts.get(name, opts.get(f"option{code}"))
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("latin-1", "replace")
    try:
        return bytes(value)
    except (TypeError, ValueError):
        return None


def parse_classless_routes(data: bytes) -> tuple[tuple[str, str], ...]:
    """RFC 3442 option 121 payload: ((destination CIDR, router), ...).

    Each route is a width byte, the significant octets of the destination, and the router.
    A malformed payload yields () (RFC 3442: ignore the whole option then).
    """
    routes = []
    pos = 0
    while pos < len(data):
        width = data[pos]
        if width > 32:
            return ()
        size = (width + 7) // 8
        if pos + 1 + size + 4 > len(data):
            return ()
        dest = data[pos + 1 : pos + 1 + size] + b"\x00" * (4 - size)
        router = data[pos + 1 + size : pos + 5 + size]
        pos += 5 + size
        try:
            network = IPv4Network((int.from_bytes(dest, "big"), width), strict=False)
        except ValueError:
            return ()
        routes.append((network.with_prefixlen, str(IPv4Address(router))))
    return tuple(routes)


def decode_domain_list(data: bytes, *, compression: bool = True) -> tuple[str, ...]:
    """A list of DNS names in wire format (RFC 1035 3.1; option 119 allows RFC 1035 4.1.4
    compression pointers, DHCPv6 option 24 does not). Stops at the first malformed name."""
    names: list[str] = []
    pos = 0
    while pos < len(data):
        labels: list[str] = []
        cursor, jumps, end = pos, 0, None
        while True:
            if cursor >= len(data):
                return tuple(names)
            length = data[cursor]
            if length == 0:
                cursor += 1
                break
            if length & 0xC0 == 0xC0 and compression:
                if cursor + 1 >= len(data) or jumps > 16:
                    return tuple(names)
                if end is None:
                    end = cursor + 2
                cursor = ((length & 0x3F) << 8) | data[cursor + 1]
                jumps += 1
                continue
            if length > 63 or cursor + 1 + length > len(data):
                return tuple(names)
            labels.append(data[cursor + 1 : cursor + 1 + length].decode("ascii", "replace"))
            cursor += 1 + length
        pos = end if end is not None else cursor
        name = ".".join(labels)
        if name and name not in names:
            names.append(name)
    return tuple(names)


def _backoff(first: float = 4.0, cap: float = 64.0) -> Iterator[float]:
    """RFC 2131 4.1: wait 4 s before the first retransmission, doubling up to 64 s, each
    randomised by +-1 s (the caller's deadline, the attach's own timeout, cuts it short)."""
    delay = first
    while True:
        yield max(0.5, delay + random.uniform(-1.0, 1.0))
        delay = min(delay * 2, cap)


class _Session:
    """One DHCP conversation over sockets made in the guest's netns."""

    def __init__(self, socks: _Sockets, ident: _Identity) -> None:
        self.socks = socks
        self.ident = ident
        self.started = time.monotonic()

    async def send(self, msg: Any) -> None:
        msg.dhcp["secs"] = min(int(time.monotonic() - self.started), 0xFFFF)
        try:
            await self.socks.raw.put(msg)
        except OSError as exc:
            if exc.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                raise GuestGone(f"interface {self.socks.raw.ifname} went away") from exc
            raise OperationFailed(f"cannot send DHCP on {self.socks.raw.ifname}: {exc}") from exc

    async def _next_reply(self, xid: int, types: frozenset[int], until: float) -> Any | None:
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return None
            try:
                msg = await asyncio.wait_for(self.socks.raw.get(), left)
            except TimeoutError:
                return None
            except OSError as exc:
                if exc.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                    raise GuestGone(f"interface {self.socks.raw.ifname} went away") from exc
                raise
            dhcp = msg.dhcp
            mtype = int(dhcp["options"].get("message_type") or 0)
            if (
                dhcp["op"] == 2
                and dhcp["xid"] == xid
                and str(dhcp["chaddr"]).lower() == self.ident.mac
                and mtype in types
            ):
                return msg
            log.debug("ignoring DHCP message type %s xid %#x", mtype, dhcp["xid"])

    async def transact(
        self,
        make: Callable[[int], Any],
        types: frozenset[int],
        deadline: float,
        xid: int | None = None,
    ) -> tuple[Any | None, float]:
        """Send (and resend with backoff) until a reply of TYPES or DEADLINE.

        Returns the reply (or None) and the epoch time of the first send (lease start).
        """
        xid = random.getrandbits(32) if xid is None else xid
        sent_at = time.time()
        for delay in _backoff():
            now = time.monotonic()
            if now >= deadline:
                return None, sent_at
            await self.send(make(xid))
            reply = await self._next_reply(xid, types, min(deadline, now + delay))
            if reply is not None:
                return reply, sent_at
        return None, sent_at  # pragma: no cover - _backoff is endless


_OFFER, _DECLINE, _ACK, _NAK = 2, 4, 5, 6


def _discover_msg(ident: _Identity, hint: str | None, xid: int) -> Any:
    return _build(1, ident, xid=xid, requested=hint)


def _select_msg(ident: _Identity, address: str, server_id: str, xid: int) -> Any:
    return _build(3, ident, xid=xid, requested=address, server_id=server_id)


async def _discover_and_request(
    session: _Session, ident: _Identity, deadline: float, hint: str | None
) -> tuple[Lease | None, bool]:
    """INIT -> SELECTING -> REQUESTING. Returns (lease or None, whether any offer came)."""
    offered = False
    while time.monotonic() < deadline:
        offer, _ = await session.transact(
            functools.partial(_discover_msg, ident, hint), frozenset({_OFFER}), deadline
        )
        if offer is None:
            return None, offered
        offered = True
        yiaddr = offer.dhcp["yiaddr"]
        server_id = offer.dhcp["options"].get("server_id") or offer.ip_src
        log.info("DHCPOFFER of %s from %s", yiaddr, server_id)
        # NOTE: RFC 2131 4.4.1: the REQUEST that selects an offer keeps the offer's xid.
        reply, sent_at = await session.transact(
            functools.partial(_select_msg, ident, yiaddr, server_id),
            frozenset({_ACK, _NAK}),
            min(deadline, time.monotonic() + 12.0),
            xid=offer.dhcp["xid"],
        )
        if reply is None:
            continue
        if int(reply.dhcp["options"]["message_type"]) == _NAK:
            log.info("DHCPNAK for %s from %s; discovering again", yiaddr, server_id)
            hint = None
            continue
        return lease_from_ack(reply, ident, sent_at), True
    return None, offered


async def _reboot(
    session: _Session, ident: _Identity, address: str, deadline: float
) -> Lease | None:
    """INIT-REBOOT: broadcast REQUEST for a known address. None when nobody answers."""
    reply, sent_at = await session.transact(
        lambda xid: _build(3, ident, xid=xid, requested=address), frozenset({_ACK, _NAK}), deadline
    )
    if reply is None:
        return None
    if int(reply.dhcp["options"]["message_type"]) == _NAK:
        raise LeaseRefused(f"DHCP server refused {address} (DHCPNAK)")
    return lease_from_ack(reply, ident, sent_at)


# --------------------------------------------------------------------------------------------
# Async API (the lease keeper uses these from its event loop)
# --------------------------------------------------------------------------------------------


def _no_offer(
    ifname: str, timeout: float, offered: bool, declined: list[str] | None = None
) -> OperationFailed:
    if declined:
        return OperationFailed(
            f"no free DHCP address on {ifname} within {timeout:g} s "
            f"(declined as in use: {', '.join(declined)})",
            hint="another host uses the server's addresses: fix the conflict on the LAN",
        )
    if offered:
        return OperationFailed(
            f"no DHCP lease on {ifname} within {timeout:g} s (offers were not confirmed)",
            hint="check the DHCP server's log, or raise --dhcp-timeout",
        )
    return OperationFailed(
        f"no DHCP offer on {ifname} within {timeout:g} s",
        hint="check that a DHCP server answers on the bridge (and VLAN), or raise --dhcp-timeout",
    )


async def acquire_async(
    netns_path: str,
    ifname: str,
    *,
    mac: str,
    hostname: str | None,
    client_id: bytes,
    timeout: float = 30.0,
    requested: IPv4Address | None = None,
    netns_inode: int | None = None,
) -> Lease:
    """Obtain a lease (see ``acquire``) without blocking the running event loop."""
    if hostname is not None:
        parse_hostname(hostname)  # option 12 goes to the server and into its logs
    deadline = time.monotonic() + timeout
    socks = await _open_async(netns_path, ifname, netns_inode)
    try:
        if socks.mac != mac.lower():
            log.warning("%s has MAC %s, not %s; using the interface's", ifname, socks.mac, mac)
        ident = _Identity(socks.mac, hostname, client_id)
        session = _Session(socks, ident)
        hint = str(requested) if requested else None
        if requested is not None:
            window = min(deadline, time.monotonic() + min(_REBOOT_WINDOW, timeout / 2))
            try:
                lease = await _reboot(session, ident, str(requested), window)
            except LeaseRefused:
                log.info("INIT-REBOOT of %s refused; discovering", requested)
                hint = None
            else:
                if lease is not None:
                    return lease
        declined: list[str] = []
        while True:
            lease, offered = await _discover_and_request(session, ident, deadline, hint)
            if lease is None:
                raise _no_offer(ifname, timeout, offered, declined)
            holder = await probe_address_async(
                netns_path, ifname, ident.mac, lease.address.ip, netns_inode
            )
            if holder is None:
                return lease
            log.warning(
                "%s offered by %s is in use by %s; declining it",
                lease.address.ip, lease.server_id, holder,
            )
            await _decline(session, ident, lease)
            declined.append(f"{lease.address.ip} (held by {holder})")
            hint = None
            # NOTE: RFC 2131 3.1.5 asks for 10 s before starting again, so a server that
            # keeps offering a taken address is not hammered; shortened only as far as it
            # leaves time for one more DISCOVER within the attach's timeout.
            left = deadline - time.monotonic()
            await asyncio.sleep(max(0.0, min(DECLINE_WAIT, left - 8.0)))
    finally:
        socks.close()


async def _decline(session: _Session, ident: _Identity, lease: Lease) -> None:
    """DHCPDECLINE (RFC 2131 4.4.1): broadcast, the address in option 50, no ciaddr."""
    msg = _build(
        _DECLINE,
        ident,
        xid=random.getrandbits(32),
        requested=str(lease.address.ip),
        server_id=str(lease.server_id),
        params=False,
    )
    await session.send(msg)


async def renew_async(
    netns_path: str,
    ifname: str,
    lease: Lease,
    *,
    rebind: bool = False,
    timeout: float = 10.0,
    netns_inode: int | None = None,
) -> Lease | None:
    """RENEWING (unicast to the server) or REBINDING (broadcast): the new lease, or None when
    nobody answered within TIMEOUT. Raises LeaseRefused on DHCPNAK, GuestGone if the netns or
    interface is gone."""
    socks = await _open_async(netns_path, ifname, netns_inode)
    try:
        ident = _Identity(socks.mac, lease.hostname, lease.client_id_bytes)
        session = _Session(socks, ident)
        ip = str(lease.address.ip)

        def make(xid: int) -> Any:
            if rebind:
                return _build(3, ident, xid=xid, ciaddr=ip, broadcast=False, ip_src=ip)
            return _build(
                3,
                ident,
                xid=xid,
                ciaddr=ip,
                broadcast=False,
                eth_dst=lease.server_mac or BROADCAST_MAC,
                ip_src=ip,
                ip_dst=str(lease.server_id),
            )

        reply, sent_at = await session.transact(
            make, frozenset({_ACK, _NAK}), time.monotonic() + timeout
        )
        if reply is None:
            return None
        if int(reply.dhcp["options"]["message_type"]) == _NAK:
            raise LeaseRefused(f"DHCP server {lease.server_id} refused {ip} (DHCPNAK)")
        return lease_from_ack(reply, ident, sent_at)
    finally:
        socks.close()


async def reboot_async(
    netns_path: str,
    ifname: str,
    lease: Lease,
    *,
    timeout: float = _REBOOT_WINDOW,
    netns_inode: int | None = None,
) -> Lease | None:
    """INIT-REBOOT for LEASE's address: the confirmed lease, None on silence, LeaseRefused
    on DHCPNAK."""
    socks = await _open_async(netns_path, ifname, netns_inode)
    try:
        ident = _Identity(socks.mac, lease.hostname, lease.client_id_bytes)
        return await _reboot(
            _Session(socks, ident), ident, str(lease.address.ip), time.monotonic() + timeout
        )
    finally:
        socks.close()


async def release_async(
    netns_path: str, ifname: str, lease: Lease, *, netns_inode: int | None = None
) -> bool:
    """Send DHCPRELEASE; best effort. True if it was sent."""
    try:
        socks = await _open_async(netns_path, ifname, netns_inode, need_up=False)
    except OvsbridgeError as exc:
        log.info("no DHCPRELEASE for %s: %s", lease.address.ip, exc.message)
        return False
    except OSError as exc:
        log.info("no DHCPRELEASE for %s: %s", lease.address.ip, exc)
        return False
    try:
        ident = _Identity(lease.mac, lease.hostname, lease.client_id_bytes)
        ip = str(lease.address.ip)
        msg = _build(
            7,
            ident,
            xid=random.getrandbits(32),
            ciaddr=ip,
            broadcast=False,
            server_id=str(lease.server_id),
            eth_dst=lease.server_mac or BROADCAST_MAC,
            ip_src=ip,
            ip_dst=str(lease.server_id),
            params=False,
        )
        await _Session(socks, ident).send(msg)
        log.info("DHCPRELEASE of %s sent to %s", ip, lease.server_id)
        return True
    except (OvsbridgeError, OSError) as exc:
        log.info("DHCPRELEASE of %s not sent: %s", lease.address.ip, exc)
        return False
    finally:
        socks.close()


# --------------------------------------------------------------------------------------------
# Configuring the guest (netlink inside the netns)
# --------------------------------------------------------------------------------------------


def _apply_in_netns(ifname: str, lease: Lease, default_route: bool, previous: Lease | None) -> None:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        index = guest_index(ipr, ifname)
        if previous is not None and previous.address != lease.address:
            _del_addr(ipr, index, previous.address)
        lft = lease.remaining()
        if lft <= 0:
            raise OperationFailed(f"lease for {lease.address} has already expired")
        try:
            ipr.addr(
                "replace",
                index=index,
                address=str(lease.address.ip),
                prefixlen=lease.address.network.prefixlen,
                broadcast=str(lease.address.network.broadcast_address)
                if lease.address.network.prefixlen < 31
                else None,
                valid_lft=lft,
                preferred_lft=lft,
            )
        except NetlinkError as exc:
            raise OperationFailed(
                f"cannot add {lease.address} to {ifname}: {os.strerror(exc.code)}"
            ) from exc
        if default_route and lease.router is not None:
            router = str(lease.router)
            try:
                if lease.router not in lease.address.network:
                    # NOTE: a router outside the leased subnet needs an on-link route first.
                    ipr.route(
                        "replace", dst=f"{router}/32", oif=index, scope=253, proto=_RTPROT_DHCP
                    )
                ipr.route("replace", dst="0.0.0.0/0", gateway=router, oif=index, proto=_RTPROT_DHCP)
            except NetlinkError as exc:
                raise OperationFailed(
                    f"cannot set the default route via {router} on {ifname}: "
                    f"{os.strerror(exc.code)}"
                ) from exc
        if previous is not None:
            for stale in set(previous.routes) - set(lease.routes):
                _del_route(ipr, index, lease, stale)
        for route in lease.routes:
            _add_route(ipr, index, lease, route, ifname)


def _route_spec(index: int, lease: Lease, route: tuple[str, str]) -> dict[str, Any]:
    dst, gateway = route
    spec: dict[str, Any] = {"dst": dst, "oif": index, "proto": _RTPROT_DHCP}
    if gateway == "0.0.0.0":
        spec["scope"] = 253  # RFC 3442: router 0.0.0.0 means the destination is on-link
    else:
        spec["gateway"] = gateway
    return spec


def _add_route(ipr: Any, index: int, lease: Lease, route: tuple[str, str], ifname: str) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    dst, gateway = route
    try:
        if gateway != "0.0.0.0" and IPv4Address(gateway) not in lease.address.network:
            # NOTE: like the default router, a route's router outside the leased subnet is
            # made reachable on-link first, or the kernel refuses the route (ENETUNREACH).
            ipr.route("replace", dst=f"{gateway}/32", oif=index, scope=253, proto=_RTPROT_DHCP)
        ipr.route("replace", **_route_spec(index, lease, route))
    except NetlinkError as exc:
        raise OperationFailed(
            f"cannot add the route to {dst} via {gateway} on {ifname}: {os.strerror(exc.code)}"
        ) from exc


def _del_route(ipr: Any, index: int, lease: Lease, route: tuple[str, str]) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    spec = _route_spec(index, lease, route)
    spec.pop("proto")
    try:
        ipr.route("del", **spec)
    except NetlinkError as exc:
        if exc.code not in (errno.ESRCH, errno.ENOENT, errno.ENODEV):
            raise OperationFailed(
                f"cannot remove the route to {route[0]}: {os.strerror(exc.code)}"
            ) from exc


def _del_addr(ipr: Any, index: int, address: IPv4Interface) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr.addr("del", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
    except NetlinkError as exc:
        if exc.code not in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH, errno.ENODEV):
            raise OperationFailed(f"cannot remove {address}: {os.strerror(exc.code)}") from exc


def _unapply_in_netns(ifname: str, lease: Lease) -> None:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return
        index = found[0]
        for route in lease.routes:
            _del_route(ipr, index, lease, route)
        if lease.router is not None:
            router = str(lease.router)
            for spec in (
                {"dst": "0.0.0.0/0", "gateway": router, "oif": index},
                {"dst": f"{router}/32", "oif": index, "scope": 253},
            ):
                if spec.get("scope") and lease.router in lease.address.network:
                    continue
                try:
                    ipr.route("del", **spec)
                except NetlinkError as exc:
                    if exc.code not in (errno.ESRCH, errno.ENOENT, errno.ENODEV):
                        raise OperationFailed(
                            f"cannot remove the route via {router}: {os.strerror(exc.code)}"
                        ) from exc
        _del_addr(ipr, index, lease.address)


def lease_configured(
    netns_path: str, ifname: str, lease: Lease, netns_inode: int | None = None
) -> bool:
    """Whether LEASE's address is on IFNAME right now."""

    def probe() -> bool:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=ifname)
            if not found:
                return False
            for msg in ipr.get_addr(index=found[0], family=socket.AF_INET):
                if msg.get_attr("IFA_ADDRESS") == str(lease.address.ip):
                    return msg["prefixlen"] == lease.address.network.prefixlen  # type: ignore[no-any-return]
            return False

    return run_in_netns(netns_path, probe, netns_inode)


async def apply_lease_async(
    netns_path: str,
    ifname: str,
    lease: Lease,
    *,
    default_route: bool = True,
    previous: Lease | None = None,
    netns_inode: int | None = None,
) -> None:
    await arun_in_netns(
        netns_path, lambda: _apply_in_netns(ifname, lease, default_route, previous), netns_inode
    )


async def unapply_lease_async(
    netns_path: str, ifname: str, lease: Lease, *, netns_inode: int | None = None
) -> None:
    try:
        await arun_in_netns(netns_path, lambda: _unapply_in_netns(ifname, lease), netns_inode)
    except GuestGone:
        return


# --------------------------------------------------------------------------------------------
# Blocking public API (attach/detach call these)
# --------------------------------------------------------------------------------------------


def _run(coro: Any) -> Any:
    """Run a coroutine to completion from blocking code, even if this thread runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: list[Any] = []

    def target() -> None:
        try:
            box.append((asyncio.run(coro), None))
        except BaseException as exc:
            box.append((None, exc))

    thread = threading.Thread(target=target, name="ovsbridge-dhcp")
    thread.start()
    thread.join()
    result, exc = box[0]
    if exc is not None:
        raise exc
    return result


def acquire(
    netns_path: str,
    ifname: str,
    *,
    mac: str,
    hostname: str | None,
    client_id: bytes,
    timeout: float = 30.0,
    requested: IPv4Address | None = None,
) -> Lease:
    """Obtain a lease on IFNAME inside the netns at NETNS_PATH; configures nothing.

    DISCOVER/OFFER/REQUEST/ACK, or first an INIT-REBOOT REQUEST for REQUESTED (falling back to
    DISCOVER on NAK or silence). Sends HOSTNAME as option 12 and CLIENT_ID (option 61 payload,
    type byte first; see ``client_id_for``). Raises OperationFailed("no DHCP offer on IFNAME
    within N s") on timeout, GuestGone if the netns or interface does not exist.
    """
    return _run(  # type: ignore[no-any-return]
        acquire_async(
            netns_path,
            ifname,
            mac=mac,
            hostname=hostname,
            client_id=client_id,
            timeout=timeout,
            requested=requested,
        )
    )


def apply_lease(
    netns_path: str,
    ifname: str,
    lease: Lease,
    *,
    default_route: bool = True,
    previous: Lease | None = None,
) -> None:
    """Configure LEASE on IFNAME: the address (valid/preferred lifetime = what is left of the
    lease, so the kernel drops it at expiry if nobody renews) and, unless DEFAULT_ROUTE is
    False, the IPv4 default route via the router (replaced; IPv6 untouched). With PREVIOUS,
    its address is removed first if it differs."""
    run_in_netns(netns_path, lambda: _apply_in_netns(ifname, lease, default_route, previous))


def unapply_lease(netns_path: str, ifname: str, lease: Lease) -> None:
    """Remove LEASE's address and our default route from IFNAME. Idempotent; a netns or
    interface that is already gone is success."""
    try:
        run_in_netns(netns_path, lambda: _unapply_in_netns(ifname, lease))
    except GuestGone:
        return


def release(netns_path: str, ifname: str, lease: Lease) -> None:
    """Send DHCPRELEASE for LEASE to its server. Best effort: never raises."""
    try:
        _run(release_async(netns_path, ifname, lease))
    except Exception as exc:
        log.info("DHCPRELEASE of %s failed: %s", lease.address.ip, exc)


# --------------------------------------------------------------------------------------------
# resolv.conf
# --------------------------------------------------------------------------------------------


def _search_of(lease: Lease) -> tuple[str, ...]:
    """The search list a lease asks for: option 119's list, else option 15's domain."""
    if lease.search:
        return lease.search
    return (lease.domain,) if lease.domain else ()


def render_resolv_conf(old: str, lease: Lease) -> str:
    """OLD with the DHCPv4 servers and search domains set to the lease's (other sources of
    ours, e.g. DHCPv6, are kept; see system/resolvconf.py). Values are checked again here:
    a Lease can be made anywhere."""
    from ovsbridge.system import resolvconf

    note = f"DHCP lease of {lease.address.ip} (server {lease.server_id})"
    return resolvconf.render(old, "dhcp4", clean_nameservers(lease.dns, MAX_NAMESERVERS),
                             clean_search(_search_of(lease)), note)


def write_resolv_conf(path: str, lease: Lease) -> None:
    """Put the lease's DNS servers and search domains into a container's own resolv.conf.

    Refuses the host's /etc/resolv.conf. Leaves the file alone when the lease carries no DNS
    server and no domain.
    """
    from ovsbridge.system import resolvconf

    if resolvconf.is_host_resolv_conf(path):
        raise BadInput(
            f"refusing to write {path}: it is the host's resolv.conf",
            hint="give the container's own resolv.conf (Docker's ResolvConfPath)",
        )
    if not clean_nameservers(lease.dns) and not clean_search(_search_of(lease)):
        return
    note = f"DHCP lease of {lease.address.ip} (server {lease.server_id})"
    resolvconf.update(path, "dhcp4", lease.dns, _search_of(lease), note)


__all__ = [
    "INFINITE",
    "GuestGone",
    "Lease",
    "LeaseRefused",
    "acquire",
    "acquire_async",
    "apply_lease",
    "apply_lease_async",
    "arun_in_netns",
    "client_id_for",
    "hostname_for",
    "lease_configured",
    "lease_from_ack",
    "reboot_async",
    "release",
    "release_async",
    "render_resolv_conf",
    "renew_async",
    "run_in_netns",
    "unapply_lease",
    "unapply_lease_async",
    "write_resolv_conf",
]
