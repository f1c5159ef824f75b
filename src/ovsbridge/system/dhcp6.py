"""DHCPv6 client adapter (RFC 8415, stateful IA_NA) for an interface inside a guest's netns.

Our own small wire format: no maintained, permissively licensed DHCPv6 client library exists
(pyroute2 has none; scapy is GPL-2.0 and heavy). Messages are values (``Message``) with an
encoder and a decoder tested on packets captured from dnsmasq (tests/unit/data/). The client
keeps one identity per interface: DUID-LL (type 3) from the interface's stable MAC and an
IAID from the interface name, so the same guest gets the same address back.

Exchanges: SOLICIT/ADVERTISE/REQUEST/REPLY (acquire, which also configures the address and
waits for DAD: on DAD failure the address is removed, DECLINEd and solicited again), RENEW
(to the server that granted the lease) and REBIND (any server), RELEASE. The address is
configured as a /128 with the lease's lifetimes; the on-link prefix and the default route
come from router advertisements (RFC 8415 18.2.10.1), which the caller lets the guest accept.

Side effects: UDP on ports 546/547 and netlink inside the guest's netns, through threads of
system/nsthread.py. Nothing here touches the root netns.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import random
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Interface
from typing import Any, Final

from ovsbridge.errors import (
    AddressInUse,
    BadInput,
    GuestGone,
    OperationFailed,
    OvsbridgeError,
)
from ovsbridge.system.dhcp import LeaseRefused  # the keeper handles both families alike
from ovsbridge.system.nsthread import arun_in_netns, guest_index, run_in_netns

log = logging.getLogger(__name__)

INFINITE: Final = 0xFFFFFFFF
CLIENT_PORT: Final = 546
SERVER_PORT: Final = 547
ALL_SERVERS: Final = "ff02::1:2"  # All_DHCP_Relay_Agents_and_Servers

SOLICIT, ADVERTISE, REQUEST, CONFIRM, RENEW, REBIND, REPLY, RELEASE, DECLINE = range(1, 10)
MESSAGE_NAMES: Final = {
    1: "SOLICIT", 2: "ADVERTISE", 3: "REQUEST", 4: "CONFIRM", 5: "RENEW", 6: "REBIND",
    7: "REPLY", 8: "RELEASE", 9: "DECLINE",
}
OPT_CLIENTID, OPT_SERVERID, OPT_IA_NA, OPT_IAADDR = 1, 2, 3, 5
OPT_ORO, OPT_PREFERENCE, OPT_ELAPSED_TIME, OPT_STATUS_CODE = 6, 7, 8, 13
OPT_RAPID_COMMIT, OPT_DNS_SERVERS, OPT_DOMAIN_LIST = 14, 23, 24
STATUS_SUCCESS, STATUS_UNSPEC_FAIL, STATUS_NO_ADDRS_AVAIL = 0, 1, 2
STATUS_NO_BINDING, STATUS_NOT_ON_LINK, STATUS_USE_MULTICAST = 3, 4, 5

_SO_BINDTODEVICE: Final = 25
_IFA_F_DADFAILED: Final = 0x08
_IFA_F_TENTATIVE: Final = 0x40
_IFA_F_NODAD: Final = 0x02
LINK_LOCAL_WAIT: Final = 5.0  # the link-local address must pass DAD before we can send
DAD_WAIT: Final = 4.0


class Malformed(ValueError):
    """A DHCPv6 message that does not parse."""




# --------------------------------------------------------------------------------------------
# Wire format
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One DHCPv6 client/server message (RFC 8415 8): type, 24-bit xid, options in order."""

    mtype: int
    xid: int
    options: tuple[tuple[int, bytes], ...] = ()

    def get(self, code: int) -> bytes | None:
        return next((data for c, data in self.options if c == code), None)

    def all(self, code: int) -> list[bytes]:
        return [data for c, data in self.options if c == code]

    @property
    def name(self) -> str:
        return MESSAGE_NAMES.get(self.mtype, f"type {self.mtype}")


def option(code: int, data: bytes) -> tuple[int, bytes]:
    if len(data) > 0xFFFF:
        raise BadInput(f"DHCPv6 option {code} is too long")
    return (code, data)


def encode_options(options: tuple[tuple[int, bytes], ...] | list[tuple[int, bytes]]) -> bytes:
    return b"".join(struct.pack("!HH", code, len(data)) + data for code, data in options)


def decode_options(data: bytes) -> tuple[tuple[int, bytes], ...]:
    out = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise Malformed(f"truncated option header at byte {pos}")
        code, length = struct.unpack_from("!HH", data, pos)
        if pos + 4 + length > len(data):
            raise Malformed(f"option {code} runs past the end ({length} bytes)")
        out.append((code, data[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    return tuple(out)


def encode(msg: Message) -> bytes:
    return bytes([msg.mtype]) + (msg.xid & 0xFFFFFF).to_bytes(3, "big") + encode_options(
        msg.options
    )


def decode(data: bytes) -> Message:
    if len(data) < 4:
        raise Malformed("shorter than a DHCPv6 header")
    return Message(data[0], int.from_bytes(data[1:4], "big"), decode_options(data[4:]))


def duid_ll(mac: str) -> bytes:
    """DUID-LL (RFC 8415 11.4): type 3, hardware type 1 (Ethernet), the MAC."""
    return struct.pack("!HH", 3, 1) + bytes.fromhex(mac.replace(":", ""))


def iaid_for(ifname: str) -> int:
    """A stable IAID for IFNAME (RFC 8415 12: constant across restarts for one interface)."""
    return int.from_bytes(hashlib.sha256(ifname.encode()).digest()[:4], "big")


@dataclass(frozen=True)
class IaAddress:
    address: IPv6Address
    preferred: int
    valid: int
    status: tuple[int, str] | None = None


@dataclass(frozen=True)
class IaNa:
    iaid: int
    t1: int
    t2: int
    addresses: tuple[IaAddress, ...] = ()
    status: tuple[int, str] | None = None


def encode_ia_na(ia: IaNa) -> bytes:
    inner = [
        option(OPT_IAADDR, a.address.packed + struct.pack("!II", a.preferred, a.valid))
        for a in ia.addresses
    ]
    return struct.pack("!III", ia.iaid, ia.t1, ia.t2) + encode_options(inner)


def decode_status(data: bytes) -> tuple[int, str]:
    if len(data) < 2:
        raise Malformed("status code option is shorter than 2 bytes")
    return struct.unpack_from("!H", data)[0], data[2:].decode("utf-8", "replace")


def decode_ia_na(data: bytes) -> IaNa:
    if len(data) < 12:
        raise Malformed("IA_NA option is shorter than 12 bytes")
    iaid, t1, t2 = struct.unpack_from("!III", data)
    addresses = []
    status = None
    for code, inner in decode_options(data[12:]):
        if code == OPT_IAADDR:
            if len(inner) < 24:
                raise Malformed("IAADDR option is shorter than 24 bytes")
            pref, valid = struct.unpack_from("!II", inner, 16)
            sub = decode_options(inner[24:])
            st = next((decode_status(d) for c, d in sub if c == OPT_STATUS_CODE), None)
            addresses.append(IaAddress(IPv6Address(inner[:16]), pref, valid, st))
        elif code == OPT_STATUS_CODE:
            status = decode_status(inner)
    return IaNa(iaid, t1, t2, tuple(addresses), status)


def decode_dns_servers(data: bytes) -> tuple[str, ...]:
    return tuple(str(IPv6Address(data[i : i + 16])) for i in range(0, len(data) - 15, 16))


def decode_domain_list(data: bytes) -> tuple[str, ...]:
    """Option 24: uncompressed DNS wire-format names (RFC 8415 21.1 / RFC 1035 3.1)."""
    names: list[str] = []
    pos = 0
    while pos < len(data):
        labels = []
        while pos < len(data) and data[pos] != 0:
            length = data[pos]
            if length > 63 or pos + 1 + length > len(data):
                return tuple(names)
            labels.append(data[pos + 1 : pos + 1 + length].decode("ascii", "replace"))
            pos += 1 + length
        pos += 1
        if labels:
            name = ".".join(labels)
            if name not in names:
                names.append(name)
    return tuple(names)


# --------------------------------------------------------------------------------------------
# The lease
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lease6:
    """One IA_NA address as granted by a REPLY. Times are seconds; obtained_at is epoch.

    Shaped like the DHCPv4 ``Lease`` where the lease keeper looks (address, timers, dns,
    domain, server_id, to_dict), so one keeper holds both families.
    """

    ip: IPv6Address
    preferred: int
    valid: int
    t1: int
    t2: int
    iaid: int
    client_duid: str  # hex
    server_duid: str  # hex
    obtained_at: float
    mac: str
    dns: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    server_addr: str | None = None  # where the REPLY came from (a link-local address)
    family: int = field(default=6, init=False)

    # -- the keeper's view ------------------------------------------------------------------
    @property
    def address(self) -> IPv6Interface:
        return IPv6Interface(f"{self.ip}/128")

    @property
    def domain(self) -> str | None:
        return self.search[0] if self.search else None

    @property
    def router(self) -> None:
        return None  # the default route comes from router advertisements

    @property
    def server_id(self) -> str:
        return self.server_duid

    @property
    def hostname(self) -> None:
        return None

    @property
    def lease_time(self) -> int:
        return self.valid

    @property
    def infinite(self) -> bool:
        return self.valid >= INFINITE

    @property
    def expires_at(self) -> float:
        return float("inf") if self.infinite else self.obtained_at + self.valid

    @property
    def renew_at(self) -> float:
        return float("inf") if self.t1 >= INFINITE else self.obtained_at + self.t1

    @property
    def rebind_at(self) -> float:
        return float("inf") if self.t2 >= INFINITE else self.obtained_at + self.t2

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    def remaining(self, now: float | None = None, *, preferred: bool = False) -> int:
        total = self.preferred if preferred else self.valid
        if total >= INFINITE:
            return INFINITE
        left = self.obtained_at + total - (time.time() if now is None else now)
        return max(0, int(left))

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": 6,
            "address": self.address.with_prefixlen,
            "preferred": self.preferred,
            "valid": self.valid,
            "t1": self.t1,
            "t2": self.t2,
            "iaid": self.iaid,
            "client_duid": self.client_duid,
            "server_duid": self.server_duid,
            "obtained_at": self.obtained_at,
            "mac": self.mac,
            "dns": list(self.dns),
            "search": list(self.search),
            "server_addr": self.server_addr,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lease6:
        try:
            return cls(
                ip=IPv6Interface(data["address"]).ip,
                preferred=int(data["preferred"]),
                valid=int(data["valid"]),
                t1=int(data["t1"]),
                t2=int(data["t2"]),
                iaid=int(data["iaid"]),
                client_duid=str(data["client_duid"]),
                server_duid=str(data["server_duid"]),
                obtained_at=float(data["obtained_at"]),
                mac=str(data["mac"]).lower(),
                dns=tuple(str(IPv6Address(d)) for d in data.get("dns") or ()),
                search=tuple(str(d) for d in data.get("search") or ()),
                server_addr=data.get("server_addr") or None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInput(f"malformed DHCPv6 lease record: {exc}") from exc


def is_lease6(data: dict[str, Any]) -> bool:
    return data.get("family") == 6


@dataclass(frozen=True)
class Identity:
    mac: str
    iaid: int

    @property
    def duid(self) -> bytes:
        return duid_ll(self.mac)


def lease_from_reply(msg: Message, ident: Identity, sent_at: float,
                     server_addr: str | None = None) -> Lease6:
    """The Lease6 in a REPLY. Raises LeaseRefused on a status that refuses the IA."""
    check_status(msg)
    server = msg.get(OPT_SERVERID)
    if server is None:
        raise Malformed("REPLY without a server identifier")
    ia = _our_ia(msg, ident)
    usable = [a for a in ia.addresses if a.valid > 0 and (a.status is None or a.status[0] == 0)]
    if not usable:
        raise LeaseRefused("the DHCPv6 server granted no address", hint="check its range")
    addr = usable[0]
    t1, t2 = ia.t1, ia.t2
    # NOTE: RFC 8415 21.4: T1/T2 of 0 leave the timing to the client; use 0.5 and 0.8 of
    # the preferred lifetime (and never let T1 > T2 confuse the keeper).
    if t1 == 0 or t2 == 0 or t1 > t2:
        base = addr.preferred if addr.preferred < INFINITE else addr.valid
        t1, t2 = (INFINITE, INFINITE) if base >= INFINITE else (base // 2, base * 4 // 5)
    dns = msg.get(OPT_DNS_SERVERS)
    domains = msg.get(OPT_DOMAIN_LIST)
    return Lease6(
        ip=addr.address,
        preferred=min(addr.preferred, addr.valid),
        valid=addr.valid,
        t1=t1,
        t2=t2,
        iaid=ident.iaid,
        client_duid=ident.duid.hex(),
        server_duid=server.hex(),
        obtained_at=sent_at,
        mac=ident.mac,
        dns=decode_dns_servers(dns) if dns else (),
        search=decode_domain_list(domains) if domains else (),
        server_addr=server_addr,
    )


def _our_ia(msg: Message, ident: Identity) -> IaNa:
    for data in msg.all(OPT_IA_NA):
        ia = decode_ia_na(data)
        if ia.iaid == ident.iaid:
            if ia.status is not None and ia.status[0] != STATUS_SUCCESS:
                raise LeaseRefused(
                    f"DHCPv6 server refused the address: status {ia.status[0]} "
                    f"({ia.status[1] or 'no text'})"
                )
            return ia
    raise LeaseRefused("the DHCPv6 reply carries no IA_NA for us")


def check_status(msg: Message) -> None:
    data = msg.get(OPT_STATUS_CODE)
    if data is None:
        return
    code, text = decode_status(data)
    if code != STATUS_SUCCESS:
        raise LeaseRefused(f"DHCPv6 server answered status {code} ({text or 'no text'})")


def build(mtype: int, ident: Identity, xid: int, *, elapsed_cs: int = 0,
          server_duid: bytes | None = None, ia: IaNa | None = None,
          oro: bool = True) -> Message:
    """A client message with our DUID, elapsed time, ORO (DNS, domains) and IA_NA."""
    opts: list[tuple[int, bytes]] = [option(OPT_CLIENTID, ident.duid)]
    if server_duid is not None:
        opts.append(option(OPT_SERVERID, server_duid))
    if oro:
        opts.append(option(OPT_ORO, struct.pack("!HH", OPT_DNS_SERVERS, OPT_DOMAIN_LIST)))
    opts.append(option(OPT_ELAPSED_TIME, struct.pack("!H", min(elapsed_cs, 0xFFFF))))
    opts.append(option(OPT_IA_NA, encode_ia_na(ia or IaNa(ident.iaid, 0, 0))))
    return Message(mtype, xid, tuple(opts))


def _ia_for(lease: Lease6) -> IaNa:
    # NOTE: RFC 8415 18.2.4: RENEW/REBIND/RELEASE carry the address with lifetimes 0 (the
    # server ignores the client's preferences there) and T1/T2 0.
    return IaNa(lease.iaid, 0, 0, (IaAddress(lease.ip, 0, 0),))


# --------------------------------------------------------------------------------------------
# Retransmission (RFC 8415 15)
# --------------------------------------------------------------------------------------------

SOL_TIMEOUT, SOL_MAX_RT = 1.0, 3600.0
REQ_TIMEOUT, REQ_MAX_RT, REQ_MAX_RC = 1.0, 30.0, 10
REN_TIMEOUT, REN_MAX_RT = 10.0, 600.0
REB_TIMEOUT, REB_MAX_RT = 10.0, 600.0
REL_TIMEOUT, REL_MAX_RC = 1.0, 4
DEC_TIMEOUT, DEC_MAX_RC = 1.0, 4


def retransmissions(irt: float, mrt: float, *, first_positive: bool = False) -> Iterator[float]:
    """RT = IRT + RAND*IRT, then 2*RTprev + RAND*RTprev, capped at MRT + RAND*MRT;
    RAND uniform in [-0.1, 0.1] (for the first SOLICIT strictly positive)."""
    rand = random.uniform(0.0, 0.1) if first_positive else random.uniform(-0.1, 0.1)
    rt = irt + rand * irt
    while True:
        yield rt
        rt = 2 * rt + random.uniform(-0.1, 0.1) * rt
        if mrt and rt > mrt:
            rt = mrt + random.uniform(-0.1, 0.1) * mrt


# --------------------------------------------------------------------------------------------
# Sockets and exchanges
# --------------------------------------------------------------------------------------------


class _Socket:
    def __init__(self, sock: socket.socket, ifname: str, index: int) -> None:
        self.sock = sock
        self.ifname = ifname
        self.index = index

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _link_local_ready(ifname: str, deadline: float) -> int:
    """Runs in the guest's netns: the ifindex once IFNAME has a usable link-local address."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        index = guest_index(ipr, ifname)
        while True:
            for msg in ipr.get_addr(index=index, family=socket.AF_INET6):
                flags = msg.get_attr("IFA_FLAGS") or msg["flags"]
                if msg["scope"] == 253 and not flags & (_IFA_F_TENTATIVE | _IFA_F_DADFAILED):
                    return index
            if time.monotonic() >= deadline:
                raise OperationFailed(
                    f"{ifname} has no usable IPv6 link-local address",
                    hint="IPv6 must be on for the interface (disable_ipv6=0) and the link up",
                )
            time.sleep(0.1)


def _open_in_netns(ifname: str, ll_wait: float) -> _Socket:
    index = _link_local_ready(ifname, time.monotonic() + ll_wait)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, _SO_BINDTODEVICE, ifname.encode())
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
        sock.bind(("::", CLIENT_PORT))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OperationFailed(f"cannot open a DHCPv6 socket on {ifname}: {exc.strerror}") from exc
    return _Socket(sock, ifname, index)


async def _open(netns_path: str, ifname: str, netns_inode: int | None,
                ll_wait: float = LINK_LOCAL_WAIT) -> _Socket:
    return await arun_in_netns(netns_path, lambda: _open_in_netns(ifname, ll_wait), netns_inode)


class _Session:
    def __init__(self, sock: _Socket, ident: Identity) -> None:
        self.sock = sock
        self.ident = ident
        self.started = time.monotonic()

    async def send(self, msg: Message) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_sendto(
                self.sock.sock, encode(msg), (ALL_SERVERS, SERVER_PORT, 0, self.sock.index)
            )
        except OSError as exc:
            if exc.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                raise GuestGone(f"interface {self.sock.ifname} went away") from exc
            raise OperationFailed(f"cannot send DHCPv6 on {self.sock.ifname}: {exc}") from exc
        log.debug("DHCPv6 %s xid %#x sent on %s", msg.name, msg.xid, self.sock.ifname)

    async def receive(self, xid: int, types: frozenset[int], until: float
                      ) -> tuple[Message, str] | None:
        loop = asyncio.get_running_loop()
        while (left := until - time.monotonic()) > 0:
            try:
                data, addr = await asyncio.wait_for(loop.sock_recvfrom(self.sock.sock, 4096), left)
            except TimeoutError:
                return None
            try:
                msg = decode(data)
            except Malformed as exc:
                log.debug("ignoring a malformed DHCPv6 message: %s", exc)
                continue
            if msg.xid != xid or msg.mtype not in types:
                continue
            if msg.get(OPT_CLIENTID) != self.ident.duid:
                continue  # RFC 8415 16: a reply must carry our DUID
            return msg, str(addr[0]).split("%")[0]
        return None

    async def transact(self, make: Any, types: frozenset[int], deadline: float,
                       irt: float, mrt: float, mrc: int = 0, *, collect: bool = False,
                       ) -> tuple[tuple[Message, str] | None, float]:
        """Send MAKE(xid, elapsed_cs) with RFC 8415 retransmissions until a reply of TYPES,
        DEADLINE or MRC sends. With COLLECT (SOLICIT), wait out the first RT for the best
        ADVERTISE (highest preference; 255 ends the wait)."""
        xid = random.getrandbits(24)
        sent_at = time.time()
        for count, rt in enumerate(
            retransmissions(irt, mrt, first_positive=collect), start=1
        ):
            now = time.monotonic()
            if now >= deadline:
                return None, sent_at
            elapsed = int((now - self.started) * 100)
            await self.send(make(xid, elapsed))
            until = min(deadline, now + rt)
            if collect:
                best: tuple[int, tuple[Message, str]] | None = None
                while True:
                    got = await self.receive(xid, types, until)
                    if got is None:
                        break
                    pref_raw = got[0].get(OPT_PREFERENCE)
                    pref = pref_raw[0] if pref_raw else 0
                    if best is None or pref > best[0]:
                        best = (pref, got)
                    if pref == 255:
                        break
                if best is not None:
                    return best[1], sent_at
            else:
                got = await self.receive(xid, types, until)
                if got is not None:
                    return got, sent_at
            if mrc and count >= mrc:
                return None, sent_at
        return None, sent_at  # pragma: no cover - endless


def _usable_advertise(msg: Message, ident: Identity) -> bool:
    try:
        check_status(msg)
        ia = _our_ia(msg, ident)
    except (LeaseRefused, Malformed):
        return False
    return any(a.valid > 0 for a in ia.addresses) and msg.get(OPT_SERVERID) is not None


async def _solicit_and_request(session: _Session, ident: Identity, deadline: float,
                               hint: IPv6Address | None) -> Lease6 | None:
    while time.monotonic() < deadline:
        ia_hint = IaNa(ident.iaid, 0, 0, (IaAddress(hint, 0, 0),)) if hint else None

        def solicit(xid: int, elapsed: int, ia: IaNa | None = ia_hint) -> Message:
            return build(SOLICIT, ident, xid, elapsed_cs=elapsed, ia=ia)

        got, _ = await session.transact(solicit, frozenset({ADVERTISE}), deadline,
                                        SOL_TIMEOUT, SOL_MAX_RT, collect=True)
        if got is None:
            return None
        adv, server_addr = got
        if not _usable_advertise(adv, ident):
            log.info("DHCPv6 ADVERTISE from %s offers no address; soliciting again", server_addr)
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            continue
        server_duid = adv.get(OPT_SERVERID)
        offered = _our_ia(adv, ident)
        log.info("DHCPv6 ADVERTISE of %s from %s",
                 ", ".join(str(a.address) for a in offered.addresses), server_addr)
        wanted = IaNa(ident.iaid, 0, 0, tuple(IaAddress(a.address, 0, 0)
                                              for a in offered.addresses))

        def request(xid: int, elapsed: int, server_duid: bytes | None = server_duid,
                    wanted: IaNa = wanted) -> Message:
            return build(REQUEST, ident, xid, elapsed_cs=elapsed, server_duid=server_duid,
                         ia=wanted)

        got, sent_at = await session.transact(request, frozenset({REPLY}), deadline,
                                              REQ_TIMEOUT, REQ_MAX_RT, REQ_MAX_RC)
        if got is None:
            continue
        try:
            lease = lease_from_reply(got[0], ident, sent_at, got[1])
        except LeaseRefused as exc:
            log.info("DHCPv6 REQUEST refused (%s); soliciting again", exc.message)
            hint = None
            continue
        return lease
    return None


# --------------------------------------------------------------------------------------------
# Configuring the address (netlink inside the netns)
# --------------------------------------------------------------------------------------------


def _apply_in_netns(ifname: str, lease: Lease6, previous: Lease6 | None, wait_dad: bool) -> None:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        index = guest_index(ipr, ifname)
        if previous is not None and previous.ip != lease.ip:
            _del_addr(ipr, index, previous.ip)
        valid = lease.remaining()
        if valid <= 0:
            raise OperationFailed(f"DHCPv6 lease for {lease.ip} has already expired")
        try:
            ipr.addr("replace", index=index, address=str(lease.ip), prefixlen=128,
                     family=socket.AF_INET6, valid_lft=valid,
                     preferred_lft=min(valid, lease.remaining(preferred=True)))
        except NetlinkError as exc:
            raise OperationFailed(
                f"cannot add {lease.ip}/128 to {ifname}: {os.strerror(exc.code)}"
            ) from exc
        if not wait_dad:
            return
        deadline = time.monotonic() + DAD_WAIT
        while time.monotonic() < deadline:
            state = _addr_flags(ipr, index, lease.ip)
            if state is None:
                raise AddressInUse(f"{lease.ip} vanished from {ifname} during DAD")
            if state & _IFA_F_DADFAILED:
                _del_addr(ipr, index, lease.ip)
                raise AddressInUse(f"duplicate address detection failed for {lease.ip}")
            if not state & _IFA_F_TENTATIVE:
                return
            time.sleep(0.1)
        log.warning("DAD of %s on %s did not finish within %g s", lease.ip, ifname, DAD_WAIT)


def _addr_flags(ipr: Any, index: int, ip: IPv6Address) -> int | None:
    for msg in ipr.get_addr(index=index, family=socket.AF_INET6):
        if msg.get_attr("IFA_ADDRESS") == str(ip):
            return int(msg.get_attr("IFA_FLAGS") or msg["flags"])
    return None


def _del_addr(ipr: Any, index: int, ip: IPv6Address) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr.addr("del", index=index, address=str(ip), prefixlen=128, family=socket.AF_INET6)
    except NetlinkError as exc:
        if exc.code not in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH, errno.ENODEV):
            raise OperationFailed(f"cannot remove {ip}/128: {os.strerror(exc.code)}") from exc


def _unapply_in_netns(ifname: str, lease: Lease6) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if found:
            _del_addr(ipr, found[0], lease.ip)


async def apply_lease_async(netns_path: str, ifname: str, lease: Lease6, *,
                            previous: Lease6 | None = None, wait_dad: bool = False,
                            netns_inode: int | None = None) -> None:
    await arun_in_netns(
        netns_path, lambda: _apply_in_netns(ifname, lease, previous, wait_dad), netns_inode
    )


async def unapply_lease_async(netns_path: str, ifname: str, lease: Lease6, *,
                              netns_inode: int | None = None) -> None:
    with contextlib.suppress(GuestGone):
        await arun_in_netns(netns_path, lambda: _unapply_in_netns(ifname, lease), netns_inode)


def lease_configured(netns_path: str, ifname: str, lease: Lease6,
                     netns_inode: int | None = None) -> bool:
    def probe() -> bool:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=ifname)
            return bool(found) and _addr_flags(ipr, found[0], lease.ip) is not None

    return run_in_netns(netns_path, probe, netns_inode)


# --------------------------------------------------------------------------------------------
# Async API (attach through the blocking wrappers, the lease keeper directly)
# --------------------------------------------------------------------------------------------


async def acquire_async(netns_path: str, ifname: str, *, mac: str, iaid: int | None = None,
                        timeout: float = 30.0, requested: IPv6Address | None = None,
                        netns_inode: int | None = None) -> Lease6:
    """SOLICIT/ADVERTISE/REQUEST/REPLY, then the address is configured on IFNAME and must
    pass DAD; a duplicate is removed, DECLINEd, and another address solicited. Raises
    OperationFailed on timeout, GuestGone if the netns or interface is gone."""
    deadline = time.monotonic() + timeout
    ident = Identity(mac.lower(), iaid_for(ifname) if iaid is None else iaid)
    sock = await _open(netns_path, ifname, netns_inode,
                       ll_wait=min(LINK_LOCAL_WAIT, timeout))
    try:
        session = _Session(sock, ident)
        declined: set[IPv6Address] = set()
        hint = requested
        while True:
            lease = await _solicit_and_request(session, ident, deadline, hint)
            if lease is None:
                extra = f" (declined: {', '.join(map(str, declined))})" if declined else ""
                raise OperationFailed(
                    f"no DHCPv6 lease on {ifname} within {timeout:g} s{extra}",
                    hint="check that a DHCPv6 server answers on the bridge (and VLAN), "
                         "or raise --dhcp-timeout",
                )
            try:
                await apply_lease_async(netns_path, ifname, lease, wait_dad=True,
                                        netns_inode=netns_inode)
            except AddressInUse as exc:
                log.warning("%s; declining it", exc.message)
                await _decline(session, ident, lease, deadline)
                declined.add(lease.ip)
                hint = None
                continue
            log.info("DHCPv6 lease of %s on %s (valid %s s)", lease.ip, ifname, lease.valid)
            return lease
    finally:
        sock.close()


async def _decline(session: _Session, ident: Identity, lease: Lease6, deadline: float) -> None:
    server = bytes.fromhex(lease.server_duid)

    def make(xid: int, elapsed: int) -> Message:
        return build(DECLINE, ident, xid, elapsed_cs=elapsed, server_duid=server,
                     ia=_ia_for(lease), oro=False)

    await session.transact(make, frozenset({REPLY}), min(deadline, time.monotonic() + 3.0),
                           DEC_TIMEOUT, 0, DEC_MAX_RC)


async def renew_async(netns_path: str, ifname: str, lease: Lease6, *, rebind: bool = False,
                      timeout: float = 10.0, netns_inode: int | None = None) -> Lease6 | None:
    """RENEW (to the granting server) or REBIND (any server): the new lease, None on silence.
    Raises LeaseRefused when the server no longer has the binding."""
    ident = Identity(lease.mac, lease.iaid)
    sock = await _open(netns_path, ifname, netns_inode)
    try:
        session = _Session(sock, ident)
        server = None if rebind else bytes.fromhex(lease.server_duid)

        def make(xid: int, elapsed: int) -> Message:
            return build(REBIND if rebind else RENEW, ident, xid, elapsed_cs=elapsed,
                         server_duid=server, ia=_ia_for(lease))

        irt, mrt = (REB_TIMEOUT, REB_MAX_RT) if rebind else (REN_TIMEOUT, REN_MAX_RT)
        got, sent_at = await session.transact(make, frozenset({REPLY}),
                                              time.monotonic() + timeout, irt, mrt)
        if got is None:
            return None
        new = lease_from_reply(got[0], ident, sent_at, got[1])
        if new.ip != lease.ip:
            log.info("DHCPv6 %s moved %s to %s", "REBIND" if rebind else "RENEW",
                     lease.ip, new.ip)
        return new
    finally:
        sock.close()


async def reboot_async(netns_path: str, ifname: str, lease: Lease6, *, timeout: float = 6.0,
                       netns_inode: int | None = None) -> Lease6 | None:
    """After a restart: REBIND for the known address (RFC 8415 18.2.5 lets a client that
    knows its lease rebind). None on silence; LeaseRefused when refused."""
    return await renew_async(netns_path, ifname, lease, rebind=True, timeout=timeout,
                             netns_inode=netns_inode)


async def release_async(netns_path: str, ifname: str, lease: Lease6, *,
                        netns_inode: int | None = None, timeout: float = 2.0) -> bool:
    """RELEASE the address (best effort, waits briefly for the REPLY). True if sent."""
    ident = Identity(lease.mac, lease.iaid)
    try:
        sock = await _open(netns_path, ifname, netns_inode, ll_wait=1.0)
    except (OvsbridgeError, OSError) as exc:
        log.info("no DHCPv6 RELEASE for %s: %s", lease.ip, exc)
        return False
    try:
        server = bytes.fromhex(lease.server_duid)

        def make(xid: int, elapsed: int) -> Message:
            return build(RELEASE, ident, xid, elapsed_cs=elapsed, server_duid=server,
                         ia=_ia_for(lease), oro=False)

        got, _ = await _Session(sock, ident).transact(
            make, frozenset({REPLY}), time.monotonic() + timeout, REL_TIMEOUT, 0, REL_MAX_RC
        )
        log.info("DHCPv6 RELEASE of %s %s", lease.ip, "confirmed" if got else "sent")
        return True
    except (OvsbridgeError, OSError) as exc:
        log.info("DHCPv6 RELEASE of %s not sent: %s", lease.ip, exc)
        return False
    finally:
        sock.close()


# --------------------------------------------------------------------------------------------
# Blocking wrappers
# --------------------------------------------------------------------------------------------


def _run(coro: Any) -> Any:
    from ovsbridge.system.dhcp import _run as run_coro

    return run_coro(coro)


def acquire(netns_path: str, ifname: str, *, mac: str, timeout: float = 30.0,
            requested: IPv6Address | None = None) -> Lease6:
    """Obtain and configure a DHCPv6 address on IFNAME (see ``acquire_async``)."""
    return _run(  # type: ignore[no-any-return]
        acquire_async(netns_path, ifname, mac=mac, timeout=timeout, requested=requested)
    )


def apply_lease(netns_path: str, ifname: str, lease: Lease6,
                previous: Lease6 | None = None) -> None:
    _run(apply_lease_async(netns_path, ifname, lease, previous=previous))


def unapply_lease(netns_path: str, ifname: str, lease: Lease6) -> None:
    _run(unapply_lease_async(netns_path, ifname, lease))


def release(netns_path: str, ifname: str, lease: Lease6) -> None:
    """RELEASE; never raises."""
    try:
        _run(release_async(netns_path, ifname, lease))
    except Exception as exc:
        log.info("DHCPv6 RELEASE of %s failed: %s", lease.ip, exc)


def write_resolv_conf(path: str, lease: Lease6) -> None:
    """The lease's DNS servers (23) and domains (24) into the container's resolv.conf."""
    from ovsbridge.system import resolvconf

    if not lease.dns and not lease.search:
        return
    resolvconf.update(path, "dhcp6", lease.dns, lease.search,
                      note=f"DHCPv6 lease of {lease.ip}")


__all__ = [
    "AddressInUse",
    "GuestGone",
    "Lease6",
    "LeaseRefused",
    "Message",
    "acquire",
    "acquire_async",
    "apply_lease",
    "apply_lease_async",
    "decode",
    "duid_ll",
    "encode",
    "is_lease6",
    "lease_configured",
    "lease_from_reply",
    "reboot_async",
    "release",
    "release_async",
    "renew_async",
    "unapply_lease",
    "unapply_lease_async",
    "write_resolv_conf",
]
