"""Netlink adapter (pyroute2) for veth pairs and the guest side of an attachment.

The only module of the attach path that imports pyroute2. Guest namespaces are opened from
their path (``/proc/PID/ns/net`` or ``/var/run/netns/NAME``); the CLI process itself never
changes namespace: work that must happen inside one runs in a short-lived thread that has
entered it (``setns`` is per thread). NetlinkError is translated into domain errors here.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import queue
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ovsbridge.errors import Conflict, NotFound, OperationFailed, OvsbridgeError
from ovsbridge.system.nsthread import run_in_netns
from ovsbridge.system.rtnl import Route

log = logging.getLogger(__name__)
T = TypeVar("T")


def netns_inode(path: str) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError as exc:
        raise NotFound(f"network namespace {path} does not exist") from exc


def current_netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def _translate(exc: NetlinkError, what: str) -> OvsbridgeError:
    code = exc.code
    text = f"{what}: {os.strerror(code) if code else exc}"
    if code == errno.EEXIST:
        return Conflict(text)
    if code in (errno.ENODEV, errno.ENOENT, errno.ESRCH):
        return NotFound(text)
    return OperationFailed(text)


def in_netns(path: str | None, func: Callable[[], T]) -> T:
    """Run FUNC in a thread that has entered the network namespace at PATH (here if None)."""
    if path is None:
        return func()
    return run_in_netns(path, func)


def _send_only_packet_socket() -> socket.socket:
    """A raw AF_PACKET socket that only sends (protocol 0: no receive hook, so binding or
    sending never re-hooks it, which waits for an RCU grace period, ~12 ms)."""
    return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)


_closing: queue.SimpleQueue[socket.socket] | None = None
_closing_lock = threading.Lock()


def close_later(sock: socket.socket) -> None:
    """Close SOCK in a background thread: closing an AF_PACKET socket waits for an RCU grace
    period (~12 ms on this kind of machine), which no attach should wait for."""
    global _closing
    with _closing_lock:
        if _closing is None:
            _closing = queue.SimpleQueue()
            threading.Thread(target=_closer, args=(_closing,), name="ovsbridge-close",
                             daemon=True).start()
    _closing.put(sock)


def _closer(pending: queue.SimpleQueue[socket.socket]) -> None:
    while True:
        sock = pending.get()
        with suppress(OSError):
            sock.close()


def _sockets_in(path: str) -> tuple[int, int, socket.socket, socket.socket]:
    """In ONE trip into PATH's netns: two NETLINK_ROUTE sockets (their fds: rtnl.Route's,
    and one for a full IPRoute if a call needs it), an AF_INET socket for ioctls and a
    send-only raw socket for announcements. A socket stays in the netns it was made in, so
    the rest of the work needs no thread of its own."""

    def body() -> tuple[int, int, socket.socket, socket.socket]:
        made: list[socket.socket] = []
        try:
            for family, kind, proto in ((socket.AF_NETLINK, socket.SOCK_RAW, 0),  # ROUTE
                                        (socket.AF_NETLINK, socket.SOCK_DGRAM, 0),
                                        (socket.AF_INET, socket.SOCK_DGRAM, 0)):
                made.append(socket.socket(family, kind, proto))
            made.append(_send_only_packet_socket())
        except OSError:
            for sock in made:
                sock.close()
            raise
        fast, full, inet, packet = made
        return fast.detach(), full.detach(), inet, packet

    return in_netns(path, body)


@dataclass
class _Kit:
    """One namespace's sockets for a session, and the indexes of links it made or renamed."""

    ipr: Route
    inet: socket.socket | None = None
    packet: socket.socket | None = None
    index: dict[str, int] = field(default_factory=dict)

    def close(self) -> None:
        if self.inet is not None:
            self.inet.close()
        if self.packet is not None:
            close_later(self.packet)
        self.ipr.close()


_session = threading.local()


@contextmanager
def session() -> Iterator[None]:
    """Within this block, this thread reuses one set of sockets per namespace (made on first
    use, in one trip into the netns, closed at the end) instead of opening some per step.

    Nested, the outer session serves, and keeps this thread's own namespace's sockets; the
    other namespaces' ones first opened inside are closed when the nested block ends (a
    thread working on one guest after another keeps one set for the host, not one per
    guest)."""
    outer: dict[str | None, _Kit] | None = getattr(_session, "kits", None)
    if outer is not None:
        before = set(outer)
        try:
            yield
        finally:
            for path in [p for p in outer if p is not None and p not in before]:
                with suppress(Exception):
                    outer.pop(path).close()
        return
    kits: dict[str | None, _Kit] = {}
    _session.kits = kits
    try:
        yield
    finally:
        _session.kits = None
        for kit in kits.values():
            with suppress(Exception):
                kit.close()


def _open(path: str | None) -> _Kit:
    """The sockets for PATH's netns (the current one when None).

    NOTE: pyroute2's own ``IPRoute(netns=...)`` forks a helper process per socket (~10 ms);
    sockets made by a thread that entered the netns cost a fraction of that.
    """
    try:
        if path is None:
            fast = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
            return _Kit(Route(fast.detach(), IPRoute))
        fd, full_fd, inet, packet = _sockets_in(path)
        spare = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0, fileno=full_fd)
        route = Route(fd, lambda: IPRoute(fileno=spare.detach()), release=spare.close)
        return _Kit(route, inet, packet)
    except (OSError, TimeoutError) as exc:
        raise NotFound(f"network namespace {path} cannot be opened: {exc}") from exc


def _kit(path: str | None) -> _Kit | None:
    """The session's kit for PATH (made on first use), or None outside a session."""
    kits: dict[str | None, _Kit] | None = getattr(_session, "kits", None)
    if kits is None:
        return None
    kit = kits.get(path)
    if kit is None:
        kit = kits[path] = _open(path)
    return kit


@contextmanager
def _ipr(path: str | None = None) -> Iterator[Route]:
    """The session's netlink socket for PATH's netns, or a fresh one closed after the block."""
    kit = _kit(path)
    if kit is not None:
        yield kit.ipr
        return
    fresh = _open(path)
    try:
        yield fresh.ipr
    finally:
        fresh.close()


def _remember(path: str | None, name: str, index: int | None) -> None:
    """Note (or, with None, forget) NAME's ifindex for the rest of the session."""
    kits = getattr(_session, "kits", None)
    kit = kits.get(path) if kits is not None else None
    if kit is None:
        return
    if index is None:
        kit.index.pop(name, None)
    else:
        kit.index[name] = index


def _index(ipr: IPRoute, name: str, path: str | None = None) -> int | None:
    kits: dict[str | None, _Kit] | None = getattr(_session, "kits", None)
    kit = kits.get(path) if kits is not None else None
    if kit is not None and kit.ipr is ipr and name in kit.index:
        return kit.index[name]
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


@dataclass(frozen=True)
class LinkState:
    name: str
    index: int
    mac: str
    mtu: int
    up: bool
    kind: str | None
    addresses: tuple[str, ...]  # global addresses, "ip/prefix"


def _link_state(ipr: IPRoute, index: int) -> LinkState:
    msg = ipr.get_links(index)[0]
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    addrs = []
    for amsg in ipr.get_addr(index=index):
        if amsg["scope"] != 0:
            continue
        addrs.append(f"{amsg.get_attr('IFA_ADDRESS')}/{amsg['prefixlen']}")
    return LinkState(
        name=msg.get_attr("IFLA_IFNAME"),
        index=index,
        mac=msg.get_attr("IFLA_ADDRESS") or "",
        mtu=msg.get_attr("IFLA_MTU") or 0,
        up=bool(msg["flags"] & 1),
        kind=kind,
        addresses=tuple(addrs),
    )


def link(name: str, netns_path: str | None = None) -> LinkState | None:
    """State of link NAME in a netns (current when None), or None when absent."""
    try:
        with _ipr(netns_path) as ipr:
            index = _index(ipr, name, netns_path)
            return None if index is None else _link_state(ipr, index)
    except NetlinkError as exc:
        raise _translate(exc, f"cannot read link {name}") from exc


def link_names(netns_path: str | None = None) -> set[str]:
    with _ipr(netns_path) as ipr:
        return {m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}


def create_veth(host: str, peer: str, netns_path: str, mtu: int | None,
                alias: str | None = None) -> None:
    """Create HOST (here, up, with ifalias ALIAS) and PEER placed directly in NETNS_PATH's
    netns (configured and brought up later by configure_guest_link)."""
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _ipr() as ipr:
            peer_spec: dict[str, Any] = {"ifname": peer, "net_ns_fd": fd}
            extra: dict[str, Any] = {}
            if mtu:
                peer_spec["mtu"] = mtu
                extra["mtu"] = mtu
            log.debug("netlink: add veth %s peer %s in %s mtu=%s", host, peer, netns_path, mtu)
            ipr.link("add", ifname=host, kind="veth", peer=peer_spec, state="up", **extra)
            if alias:
                # NOTE: the kernel ignores IFLA_IFALIAS in a newlink request: set it after
                # (by name: the kernel finds the link, no lookup request first).
                ipr.link("set", ifname=host, ifalias=alias)
    except NetlinkError as exc:
        raise _translate(exc, f"cannot create veth {host}") from exc
    finally:
        os.close(fd)


def set_mtu(name: str, mtu: int, netns_path: str | None = None) -> None:
    try:
        with _ipr(netns_path) as ipr:
            index = _index(ipr, name)
            if index is None:
                raise NotFound(f"interface {name} does not exist")
            log.debug("netlink: set %s mtu %d", name, mtu)
            ipr.link("set", index=index, mtu=mtu)
    except NetlinkError as exc:
        raise _translate(exc, f"cannot set the MTU of {name} to {mtu}") from exc


def link_alias(name: str, netns_path: str | None = None) -> str | None:
    """The ifalias of link NAME ("" when unset), or None when there is no such link."""
    try:
        with _ipr(netns_path) as ipr:
            msg = ipr.link("get", ifname=name)[0]  # one request, by name
            _remember(netns_path, name, int(msg["index"]))
            return str(msg.get_attr("IFLA_IFALIAS") or "")
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise _translate(exc, f"cannot read link {name}") from exc


def link_aliases(netns_path: str | None = None) -> dict[str, str]:
    """Every link's name and ifalias ("" when unset)."""
    with _ipr(netns_path) as ipr:
        return {m.get_attr("IFLA_IFNAME"): str(m.get_attr("IFLA_IFALIAS") or "")
                for m in ipr.get_links()}


def set_alias(name: str, alias: str, netns_path: str | None = None) -> None:
    try:
        with _ipr(netns_path) as ipr:
            log.debug("netlink: set %s alias %r", name, alias)
            ipr.link("set", ifname=name, ifalias=alias)  # by name: one request
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            raise NotFound(f"interface {name} does not exist") from exc
        raise _translate(exc, f"cannot set the identity of {name}") from exc


def set_up(name: str, netns_path: str | None = None) -> None:
    try:
        with _ipr(netns_path) as ipr:
            index = _index(ipr, name, netns_path)
            if index is None:
                raise NotFound(f"interface {name} does not exist")
            log.debug("netlink: set %s up", name)
            ipr.link("set", index=index, state="up")
    except NetlinkError as exc:
        raise _translate(exc, f"cannot bring {name} up") from exc


def delete_link(name: str, netns_path: str | None = None, alias: str | None = None) -> bool:
    """Delete link NAME; True if it existed. Succeeds when it is already gone.

    With ALIAS, only a link whose ifalias is exactly ALIAS is deleted (False otherwise): a
    link is never deleted by its name alone when its identity is known.
    """
    try:
        with _ipr(netns_path) as ipr:
            if alias is None:
                index = _index(ipr, name, netns_path)
                if index is None:
                    return False
            else:
                (msg,) = ipr.link("get", ifname=name)  # index and identity: one request
                index, found = msg["index"], msg.get_attr("IFLA_IFALIAS") or ""
                if found != alias:
                    log.warning("not deleting %s: its identity is %r, not %r", name, found,
                                alias)
                    return False
            log.debug("netlink: del link %s (netns %s)", name, netns_path or "current")
            _remember(netns_path, name, None)
            ipr.link("del", index=index)
            return True
    except NotFound:
        return False
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return False
        raise _translate(exc, f"cannot delete {name}") from exc


def configure_guest_link(netns_path: str, tmp_name: str, ifname: str, mac: str,
                         mtu: int | None) -> None:
    """Rename the guest end to IFNAME, set its MAC and MTU, bring it and lo up."""
    try:
        with _ipr(netns_path) as ipr:
            index = _index(ipr, tmp_name)
            if index is None:
                raise NotFound(f"interface {tmp_name} vanished from the guest")
            # NOTE: one request: the kernel renames (which needs the link down) and sets MAC
            # and MTU before it applies the up flag. A name already taken is EEXIST.
            changes: dict[str, Any] = {"ifname": ifname, "address": mac, "state": "up"}
            if mtu:
                changes["mtu"] = mtu
            log.debug("netlink[%s]: set %s %s", netns_path, tmp_name, changes)
            ipr.link("set", index=index, **changes)
            _remember(netns_path, ifname, index)
            ipr.link("set", index=1, state="up")  # lo is always ifindex 1 in a netns
    except NetlinkError as exc:
        if exc.code == errno.EEXIST:
            raise Conflict(f"the guest already has an interface named {ifname}",
                           hint="pick another --ifname") from exc
        raise _translate(exc, f"cannot configure {ifname} in the guest") from exc


def add_address(netns_path: str, ifname: str, iface: ipaddress.IPv4Interface
                | ipaddress.IPv6Interface) -> None:
    try:
        with _ipr(netns_path) as ipr:
            index = _require(ipr, ifname, netns_path)
            kwargs: dict[str, Any] = {"address": str(iface.ip), "prefixlen":
                                      iface.network.prefixlen}
            if iface.version == 6:
                # NOTE: without nodad the address stays "tentative" for ~1 s and cannot be
                # used as a source; a static address on a LAN we manage is ours to use now.
                kwargs["flags"] = 0x02  # IFA_F_NODAD
            else:
                kwargs["broadcast"] = str(iface.network.broadcast_address)
            log.debug("netlink[%s]: add address %s on %s", netns_path, iface, ifname)
            ipr.addr("add", index=index, **kwargs)
    except NetlinkError as exc:
        raise _translate(exc, f"cannot add address {iface} on {ifname}") from exc


def replace_default_route(netns_path: str, ifname: str, gateway: ipaddress.IPv4Address
                          | ipaddress.IPv6Address, on_link: bool) -> None:
    """Make GATEWAY the default route of its family, adding an on-link route first if asked."""
    family = socket.AF_INET if gateway.version == 4 else socket.AF_INET6
    default = "0.0.0.0/0" if gateway.version == 4 else "::/0"
    try:
        with _ipr(netns_path) as ipr:
            index = _require(ipr, ifname, netns_path)
            if on_link:
                host = f"{gateway}/{gateway.max_prefixlen}"
                log.debug("netlink[%s]: route replace %s dev %s", netns_path, host, ifname)
                ipr.route("replace", dst=host, oif=index, family=family, scope=253)
            log.debug("netlink[%s]: route replace default via %s", netns_path, gateway)
            ipr.route("replace", dst=default, gateway=str(gateway), oif=index, family=family)
    except NetlinkError as exc:
        raise _translate(exc, f"cannot set the default route via {gateway}") from exc


def default_routes(netns_path: str) -> list[dict[str, Any]]:
    with _ipr(netns_path) as ipr:
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for r in ipr.get_routes(family=family, table=254):
                if r["dst_len"] == 0:
                    out.append({"family": family, "gateway": r.get_attr("RTA_GATEWAY"),
                                "oif": r.get_attr("RTA_OIF")})
        return out


def _require(ipr: IPRoute, name: str, path: str | None = None) -> int:
    index = _index(ipr, name, path)
    if index is None:
        raise NotFound(f"interface {name} does not exist in the guest")
    return index


_SIOCETHTOOL = 0x8946
_ETHTOOL_GTXCSUM = 0x16
_ETHTOOL_STXCSUM = 0x17


def _ethtool_value(sock: socket.socket, name: str, cmd: int, data: int = 0) -> int:
    """One SIOCETHTOOL ioctl with a ``struct ethtool_value`` on interface NAME."""
    import ctypes
    import fcntl

    value = ctypes.create_string_buffer(struct.pack("II", cmd, data))
    ifreq = struct.pack("16sP", name.encode(), ctypes.addressof(value)).ljust(40, b"\0")
    fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, ifreq)
    return int(struct.unpack("II", value.raw[:8])[1])


def tx_checksum_on(name: str, netns_path: str | None = None) -> bool:
    """Is TX checksum offload on for NAME (``ethtool -k``'s tx-checksumming)?"""

    def body() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            return bool(_ethtool_value(sock, name, _ETHTOOL_GTXCSUM))

    try:
        return in_netns(netns_path, body)
    except OSError as exc:
        raise OperationFailed(f"cannot read TX checksum offload of {name}: {exc}") from exc


def disable_tx_offload(name: str, netns_path: str | None = None) -> None:
    """``ethtool -K NAME tx off`` in the given netns: one ioctl (legacy ETHTOOL_STXCSUM, which
    clears every tx-checksum feature: ip, ipv6, generic, sctp, fcoe), skipped when already off.

    NOTE: on OVS's userspace datapath a veth with TX checksum offload hands OVS packets
    with partial checksums; OVS forwards them unfixed, so UDP (DHCP offers) is dropped.
    """

    def off(sock: socket.socket) -> None:
        if _ethtool_value(sock, name, _ETHTOOL_GTXCSUM):
            log.debug("ethtool[%s]: %s tx off", netns_path or "current", name)
            _ethtool_value(sock, name, _ETHTOOL_STXCSUM, 0)

    def body() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            off(sock)

    try:
        kit = _kit(netns_path) if netns_path is not None else None
        if kit is not None and kit.inet is not None:
            off(kit.inet)  # the session's socket lives in that netns already
        else:
            in_netns(netns_path, body)
    except OvsbridgeError:
        raise
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise NotFound(f"cannot turn off TX checksum offload on {name}: it is gone") from exc
        raise OperationFailed(f"cannot turn off TX checksum offload on {name}: {exc}") from exc


def gratuitous_arp(netns_path: str, ifname: str, ip: ipaddress.IPv4Address, mac: str) -> None:
    """Announce IP at MAC on IFNAME in the guest (an ARP request for itself, broadcast)."""
    hw = bytes.fromhex(mac.replace(":", ""))
    packet = (
        b"\xff" * 6 + hw + struct.pack("!H", 0x0806)
        + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
        + hw + ip.packed + b"\x00" * 6 + ip.packed
    )

    def body() -> None:
        sock = _send_only_packet_socket()
        try:
            sock.sendto(packet, (ifname, 0x0806))
        finally:
            close_later(sock)

    try:
        kit = _kit(netns_path)
        if kit is not None and kit.packet is not None:
            kit.packet.sendto(packet, (ifname, 0x0806))  # the session's, made in that netns
        else:
            in_netns(netns_path, body)
    except OSError as exc:
        log.warning("gratuitous ARP for %s on %s failed: %s", ip, ifname, exc)


def restore_default_route(netns_path: str, version: int, gateway: str | None,
                          oif: int | None) -> None:
    """Put back a default route as it was (undo of replace_default_route)."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    default = "0.0.0.0/0" if version == 4 else "::/0"
    try:
        with _ipr(netns_path) as ipr:
            spec: dict[str, Any] = {"dst": default, "family": family}
            if gateway:
                spec["gateway"] = gateway
            if oif and ipr.get_links(oif):
                spec["oif"] = oif
            log.debug("netlink[%s]: route replace %s", netns_path, spec)
            ipr.route("replace", **spec)
    except NetlinkError as exc:
        if exc.code in (errno.ENODEV, errno.ENETUNREACH):
            return  # its interface is gone: nothing to restore to
        raise _translate(exc, "cannot restore the default route") from exc


def enable_ipv6(netns_path: str, ifname: str) -> None:
    """Turn IPv6 on for IFNAME in the guest.

    NOTE: Docker starts containers with net.ipv6.conf.default.disable_ipv6=1, so a new
    interface refuses IPv6 addresses (EACCES) until its own switch is turned on. /proc/sys/net
    shows the netns of the thread that opens it, hence in_netns.
    """

    def body() -> None:
        path = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
        try:
            with open(path) as f:
                if f.read().strip() == "0":
                    return
            with open(path, "w") as f:
                f.write("0")
        except FileNotFoundError:
            raise OperationFailed("IPv6 is not available in the guest's kernel namespace",
                                  hint="boot with ipv6 enabled, or give IPv4 addresses only"
                                  ) from None

    log.debug("sysctl[%s]: net.ipv6.conf.%s.disable_ipv6=0", netns_path, ifname)
    in_netns(netns_path, body)
