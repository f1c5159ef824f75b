"""Netlink adapter for the host's own network (the uplink and the bridge that takes it over).

Reads a link's state, its global addresses and every route through it in every table (the
local table excluded: the kernel derives it from addresses), as plain values that survive a
round trip through JSON (the rollback watchdog keeps them in a file). Moves addresses and
routes from one link to another so open connections survive, and restores a saved state
exactly. Also probes the default gateway through a given link (ICMP echo, and the neighbour
table for the ARP/NDP answer). This is the only ovsbridge module that talks to pyroute2 about
the host's network; it imports it lazily, so importing the values stays cheap. Netlink errors
become ovsbridge errors here.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import socket
import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ovsbridge.errors import EnvironmentProblem, NotFound, OperationFailed, OvsbridgeError

if TYPE_CHECKING:
    from pyroute2 import IPRoute

log = logging.getLogger(__name__)

# <linux/if.h>, <linux/if_addr.h>, <linux/rtnetlink.h>, <linux/neighbour.h>
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFA_F_SECONDARY = 0x01
IFA_F_TENTATIVE = 0x40
IFA_F_DADFAILED = 0x08
# Flags a user may set on an address; the others (secondary, tentative, permanent,
# deprecated, optimistic, dadfailed) are the kernel's to report.
IFA_F_SETTABLE = 0x02 | 0x10 | 0x100 | 0x200 | 0x400 | 0x800
RTNH_F_ONLINK = 0x04
RT_TABLE_LOCAL = 255
RT_TABLE_MAIN = 254
RTPROT_KERNEL = 2
RT_SCOPE_UNIVERSE = 0
INFINITY_LIFE = 0xFFFFFFFF
NUD_INCOMPLETE, NUD_REACHABLE, NUD_STALE, NUD_DELAY, NUD_PROBE = 0x01, 0x02, 0x04, 0x08, 0x10
NUD_FAILED, NUD_NOARP, NUD_PERMANENT = 0x20, 0x40, 0x80
NUD_ANSWERED = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE


# ----- values ------------------------------------------------------------------------
@dataclass(frozen=True)
class LinkInfo:
    index: int
    name: str
    mac: str
    mtu: int
    up: bool
    kind: str | None = None  # veth, bond, bridge, openvswitch, tun, ...
    master: str | None = None  # name of the bond / bridge / ovs-system it belongs to
    slave_kind: str | None = None  # bond, bridge, openvswitch: what enslaves it
    loopback: bool = False


@dataclass(frozen=True)
class Address:
    """One global address; everything the kernel accepts back on RTM_NEWADDR."""

    family: int  # 4 or 6
    local: str
    prefixlen: int
    peer: str | None = None  # IPv4 point-to-point peer (IFA_ADDRESS != IFA_LOCAL)
    broadcast: str | None = None
    label_suffix: str | None = None  # ":1" of an "eth0:1" label; None = the device name
    scope: int = RT_SCOPE_UNIVERSE
    flags: int = 0  # IFA_F_SETTABLE bits only
    secondary: bool = False
    valid_lft: int | None = None  # seconds left; None = forever
    preferred_lft: int | None = None
    metric: int | None = None  # IFA_RT_PRIORITY: metric of the prefix route
    proto: int | None = None  # IFA_PROTO

    @property
    def cidr(self) -> str:
        return f"{self.local}/{self.prefixlen}"

    @property
    def dynamic(self) -> bool:
        return self.valid_lft is not None

    def key(self) -> tuple[Any, ...]:
        """What must match for two addresses to be "the same" (lifetimes run down)."""
        return (
            self.family,
            self.local,
            self.prefixlen,
            self.peer,
            self.broadcast,
            self.label_suffix,
            self.scope,
            self.flags,
            self.metric,
            self.proto,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Address:
        return cls(**data)


@dataclass(frozen=True)
class Nexthop:
    dev: str | None
    gateway: str | None = None
    weight: int = 1
    flags: int = 0  # RTNH_F_ONLINK only


@dataclass(frozen=True)
class Route:
    """One route through a link, independent of the link's index (it names the device)."""

    family: int  # 4 or 6
    table: int
    dst: str  # "0.0.0.0/0", "203.0.113.0/24"
    dev: str | None
    gateway: str | None = None
    metric: int | None = None
    proto: int = 3  # boot
    scope: int = RT_SCOPE_UNIVERSE
    type: int = 1  # unicast
    tos: int = 0
    prefsrc: str | None = None
    src: str | None = None  # IPv6 source-specific routing ("from")
    flags: int = 0  # RTNH_F_ONLINK only
    pref: int | None = None  # IPv6 router preference
    metrics: tuple[tuple[str, int], ...] = ()
    multipath: tuple[Nexthop, ...] = ()

    @property
    def default(self) -> bool:
        return self.dst in ("0.0.0.0/0", "::/0")

    @property
    def kernel(self) -> bool:
        """A prefix route the kernel makes for an address: it follows the address."""
        return self.proto == RTPROT_KERNEL

    def devices(self) -> set[str]:
        devs = {self.dev} if self.dev else set()
        devs.update(nh.dev for nh in self.multipath if nh.dev)
        return devs

    def through(self, dev: str) -> bool:
        return dev in self.devices()

    def gateways(self) -> list[str]:
        gws = [self.gateway] if self.gateway else []
        gws.extend(nh.gateway for nh in self.multipath if nh.gateway)
        return gws

    def retarget(self, old: str, new: str) -> Route:
        """The same route with device OLD replaced by NEW."""
        hops = tuple(replace(nh, dev=new) if nh.dev == old else nh for nh in self.multipath)
        return replace(self, dev=new if self.dev == old else self.dev, multipath=hops)

    def key(self) -> tuple[Any, ...]:
        return astuple_route(self)

    def describe(self) -> str:
        text = "default" if self.default else self.dst
        if self.src:
            text += f" from {self.src}"
        for gw in self.gateways():
            text += f" via {gw}"
        if self.dev:
            text += f" dev {self.dev}"
        if self.table != RT_TABLE_MAIN:
            text += f" table {self.table}"
        if self.metric is not None:
            text += f" metric {self.metric}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Route:
        data = dict(data)
        data["metrics"] = tuple((str(k), int(v)) for k, v in data.get("metrics", ()))
        data["multipath"] = tuple(Nexthop(**nh) for nh in data.get("multipath", ()))
        return cls(**data)


def astuple_route(route: Route) -> tuple[Any, ...]:
    return (
        route.family,
        route.table,
        route.dst,
        route.dev,
        route.gateway,
        route.metric,
        route.proto,
        route.scope,
        route.type,
        route.tos,
        route.prefsrc,
        route.src,
        route.flags,
        route.pref,
        route.metrics,
        route.multipath,
    )


@dataclass(frozen=True)
class LinkState:
    """A link and the layer-3 configuration that lives on it, at one moment."""

    link: LinkInfo
    addresses: tuple[Address, ...] = ()
    routes: tuple[Route, ...] = ()  # every table but local, kernel prefix routes included
    taken_at: float = field(default_factory=time.time)

    @property
    def movable_routes(self) -> tuple[Route, ...]:
        """The routes to re-create elsewhere: kernel prefix routes follow their address."""
        return tuple(r for r in self.routes if not r.kernel)

    def default_gateways(self) -> list[str]:
        gws: list[str] = []
        for route in self.routes:
            if route.default and route.table == RT_TABLE_MAIN:
                gws.extend(g for g in route.gateways() if g not in gws)
        return gws

    def to_dict(self) -> dict[str, Any]:
        return {
            "link": asdict(self.link),
            "addresses": [a.to_dict() for a in self.addresses],
            "routes": [r.to_dict() for r in self.routes],
            "taken_at": self.taken_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinkState:
        return cls(
            link=LinkInfo(**data["link"]),
            addresses=tuple(Address.from_dict(a) for a in data.get("addresses", ())),
            routes=tuple(Route.from_dict(r) for r in data.get("routes", ())),
            taken_at=float(data.get("taken_at", time.time())),
        )


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    gateway: str
    dev: str
    how: str  # "icmp echo", "arp", "ndp", or why it failed


# ----- the adapter -------------------------------------------------------------------
def _translate(exc: Exception, what: str) -> OvsbridgeError:
    code = getattr(exc, "code", None)
    if code == errno.EPERM:
        return EnvironmentProblem(f"not allowed to {what}: {exc}", hint="run as root")
    if code in (errno.ENODEV, errno.ENOENT, errno.ESRCH):
        return NotFound(f"cannot {what}: {os.strerror(code)}")
    return OperationFailed(f"cannot {what}: {exc}")


class HostNet:
    """The current network namespace, through one netlink socket (opened on first use)."""

    def __init__(self) -> None:
        self._ipr: IPRoute | None = None
        self._names: dict[int, str] = {}

    # ----- plumbing --------------------------------------------------------------
    @property
    def ipr(self) -> IPRoute:
        if self._ipr is None:
            from pyroute2 import IPRoute

            try:
                self._ipr = IPRoute()
            except OSError as exc:
                raise EnvironmentProblem(f"cannot open a netlink socket: {exc}") from exc
        return self._ipr

    def close(self) -> None:
        if self._ipr is not None:
            with contextlib.suppress(Exception):
                self._ipr.close()
            self._ipr = None

    def __enter__(self) -> HostNet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _netlink(self, what: str) -> Iterator[None]:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            yield
        except NetlinkError as exc:
            raise _translate(exc, what) from exc
        except OSError as exc:
            raise OperationFailed(f"cannot {what}: {exc}") from exc

    def _refresh_names(self) -> None:
        with self._netlink("list links"):
            self._names = {m["index"]: m.get("IFLA_IFNAME") for m in self.ipr.get_links()}

    def _name(self, index: int | None) -> str | None:
        if index is None:
            return None
        if index not in self._names:
            self._refresh_names()
        return self._names.get(index)

    def _index(self, name: str) -> int:
        with self._netlink(f"look up {name}"):
            found = self.ipr.link_lookup(ifname=name)
        if not found:
            raise NotFound(
                f'network interface "{name}" does not exist', hint="list them with: ip link"
            )
        return int(found[0])

    # ----- reading ---------------------------------------------------------------
    def link(self, name: str) -> LinkInfo | None:
        """The link named NAME, or None."""
        with self._netlink(f"read link {name}"):
            found = self.ipr.link_lookup(ifname=name)
            if not found:
                return None
            msg = self.ipr.get_links(found[0])[0]
        return self._link_info(msg)

    def _link_info(self, msg: Any) -> LinkInfo:
        info = msg.get("IFLA_LINKINFO") or {}
        kind = info.get("IFLA_INFO_KIND") if info else None
        slave_kind = info.get("IFLA_INFO_SLAVE_KIND") if info else None
        self._names[msg["index"]] = msg.get("IFLA_IFNAME")
        return LinkInfo(
            index=msg["index"],
            name=msg.get("IFLA_IFNAME"),
            mac=(msg.get("IFLA_ADDRESS") or "").lower(),
            mtu=int(msg.get("IFLA_MTU") or 0),
            up=bool(msg["flags"] & IFF_UP),
            kind=kind,
            master=self._name(msg.get("IFLA_MASTER")),
            slave_kind=slave_kind,
            loopback=bool(msg["flags"] & IFF_LOOPBACK),
        )

    def uppers(self, name: str) -> list[tuple[str, str]]:
        """(name, kind) of the VLAN/macvlan/ipvlan links stacked on NAME."""
        index = self._index(name)
        with self._netlink("list links"):
            msgs = list(self.ipr.get_links())
        out = []
        for msg in msgs:
            info = msg.get("IFLA_LINKINFO") or {}
            kind = info.get("IFLA_INFO_KIND") if info else None
            if (
                kind in ("vlan", "macvlan", "macvtap", "ipvlan", "ipvtap")
                and msg.get("IFLA_LINK") == index
                and msg.get("IFLA_LINK_NETNSID") is None
            ):
                out.append((str(msg.get("IFLA_IFNAME")), str(kind)))
        return out

    def links(self) -> list[LinkInfo]:
        with self._netlink("list links"):
            msgs = list(self.ipr.get_links())
        return [self._link_info(m) for m in msgs]

    def addresses(self, name: str) -> tuple[Address, ...]:
        """Global addresses of NAME in the kernel's order (primaries before secondaries)."""
        index = self._index(name)
        with self._netlink(f"read the addresses of {name}"):
            msgs = list(self.ipr.get_addr(index=index))
        out = []
        for msg in msgs:
            if msg["scope"] != RT_SCOPE_UNIVERSE:
                continue  # link-local and host scope stay with their link
            out.append(_address_from_msg(msg, name))
        return tuple(out)

    def routes(self, name: str | None = None) -> tuple[Route, ...]:
        """Routes through NAME (all links when None), every table except local."""
        with self._netlink("read routes"):
            msgs = list(self.ipr.route("dump", family=255))
        out = []
        for msg in msgs:
            table = msg.get("RTA_TABLE") or msg["table"]
            if table == RT_TABLE_LOCAL or msg["family"] not in (socket.AF_INET, socket.AF_INET6):
                continue
            route = self._route_from_msg(msg, table)
            if route.family == 6 and route.dst.startswith("fe80::/") and route.kernel:
                continue
            if name is None or route.through(name):
                out.append(route)
        return tuple(out)

    def _route_from_msg(self, msg: Any, table: int) -> Route:
        family = 4 if msg["family"] == socket.AF_INET else 6
        zero = "0.0.0.0" if family == 4 else "::"
        metrics = msg.get("RTA_METRICS")
        metric_items: tuple[tuple[str, int], ...] = ()
        if metrics:
            metric_items = tuple(
                sorted(
                    (k.removeprefix("RTAX_").lower(), int(v))
                    for k, v in metrics["attrs"]
                    if k.startswith("RTAX_")
                )
            )
        hops = []
        for nh in msg.get("RTA_MULTIPATH") or ():
            hops.append(
                Nexthop(
                    dev=self._name(nh["oif"]),
                    gateway=nh.get("RTA_GATEWAY"),
                    weight=int(nh["hops"]) + 1,
                    flags=nh["flags"] & RTNH_F_ONLINK,
                )
            )
        src = msg.get("RTA_SRC")
        return Route(
            family=family,
            table=int(table),
            dst=f"{msg.get('RTA_DST') or zero}/{msg['dst_len']}",
            dev=self._name(msg.get("RTA_OIF")),
            gateway=msg.get("RTA_GATEWAY"),
            metric=msg.get("RTA_PRIORITY"),
            proto=msg["proto"],
            scope=msg["scope"],
            type=msg["type"],
            tos=msg["tos"],
            prefsrc=msg.get("RTA_PREFSRC"),
            src=f"{src}/{msg['src_len']}" if src else None,
            flags=msg["flags"] & RTNH_F_ONLINK,
            pref=msg.get("RTA_PREF") if family == 6 else None,
            metrics=metric_items,
            multipath=tuple(hops),
        )

    def state(self, name: str) -> LinkState:
        """LINK, its global addresses and every route through it."""
        link = self.link(name)
        if link is None:
            raise NotFound(
                f'network interface "{name}" does not exist', hint="list them with: ip link"
            )
        return LinkState(link=link, addresses=self.addresses(name), routes=self.routes(name))

    def tentative(self, name: str) -> list[str]:
        """IPv6 addresses of NAME still doing duplicate address detection."""
        index = self._index(name)
        with self._netlink(f"read the addresses of {name}"):
            msgs = list(self.ipr.get_addr(index=index, family=socket.AF_INET6))
        return [
            m.get("IFA_ADDRESS")
            for m in msgs
            if (m.get("IFA_FLAGS") or m["flags"]) & (IFA_F_TENTATIVE | IFA_F_DADFAILED)
            == IFA_F_TENTATIVE
        ]

    def dad_failed(self, name: str) -> list[str]:
        """IPv6 addresses of NAME that duplicate address detection rejected."""
        index = self._index(name)
        with self._netlink(f"read the addresses of {name}"):
            msgs = list(self.ipr.get_addr(index=index, family=socket.AF_INET6))
        return [m.get("IFA_ADDRESS") for m in msgs if (m.get("IFA_FLAGS") or 0) & IFA_F_DADFAILED]

    def wait_dad(self, name: str, timeout: float = 5.0) -> bool:
        """Wait until no IPv6 address of NAME is tentative; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.tentative(name):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def wait_link(self, name: str, timeout: float = 10.0) -> LinkInfo:
        deadline = time.monotonic() + timeout
        while True:
            link = self.link(name)
            if link is not None:
                return link
            if time.monotonic() >= deadline:
                raise OperationFailed(f'interface "{name}" did not appear within {timeout:g} s')
            time.sleep(0.05)

    # ----- writing: links ----------------------------------------------------------
    def set_link(
        self, name: str, *, up: bool | None = None, mtu: int | None = None, mac: str | None = None
    ) -> None:
        index = self._index(name)
        args: dict[str, Any] = {}
        if mtu is not None:
            args["mtu"] = mtu
        if mac is not None:
            args["address"] = mac
        if up is not None:
            args["state"] = "up" if up else "down"
        if args:
            log.debug("netlink: link set %s %s", name, args)
            with self._netlink(f"set {name} {args}"):
                self.ipr.link("set", index=index, **args)

    def delete_link(self, name: str) -> bool:
        """Delete link NAME; False when it is already gone."""
        link = self.link(name)
        if link is None:
            return False
        log.debug("netlink: link del %s", name)
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            self.ipr.link("del", index=link.index)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise _translate(exc, f"delete {name}") from exc
        return True

    # ----- writing: addresses ------------------------------------------------------
    def add_address(self, name: str, addr: Address, *, elapsed: float = 0.0) -> None:
        """Add ADDR to NAME (lifetimes shortened by ELAPSED seconds); present already is ok."""
        from pyroute2.netlink.exceptions import NetlinkError

        index = self._index(name)
        args: dict[str, Any] = {
            "index": index,
            "address": addr.local,
            "prefixlen": addr.prefixlen,
            "scope": addr.scope,
            "family": socket.AF_INET if addr.family == 4 else socket.AF_INET6,
        }
        if addr.flags:
            args["flags"] = addr.flags
        if addr.family == 4:
            args["local"] = addr.local
            if addr.peer:
                args["address"] = addr.peer
            if addr.broadcast:
                args["broadcast"] = addr.broadcast
            label = name + addr.label_suffix if addr.label_suffix else None
            if label and len(label) <= 15:
                args["label"] = label
        if addr.valid_lft is not None:
            valid = max(1, int(addr.valid_lft - elapsed))
            preferred = addr.preferred_lft if addr.preferred_lft is not None else valid
            args["valid_lft"] = valid
            args["preferred_lft"] = min(valid, max(0, int(preferred - elapsed)))
        if addr.metric is not None:
            args["IFA_RT_PRIORITY"] = addr.metric
        if addr.proto is not None:
            args["proto"] = addr.proto
        log.debug("netlink: addr add %s dev %s", addr.cidr, name)
        try:
            self.ipr.addr("add", **args)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise _translate(exc, f"add {addr.cidr} to {name}") from exc

    def del_address(self, name: str, addr: Address) -> None:
        """Remove ADDR from NAME; already gone is ok."""
        from pyroute2.netlink.exceptions import NetlinkError

        index = self._index(name)
        args: dict[str, Any] = {"index": index, "address": addr.local, "prefixlen": addr.prefixlen}
        if addr.family == 4:
            args["local"] = addr.local
            if addr.peer:
                args["address"] = addr.peer
        log.debug("netlink: addr del %s dev %s", addr.cidr, name)
        try:
            self.ipr.addr("del", **args)
        except NetlinkError as exc:
            if exc.code not in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH):
                raise _translate(exc, f"remove {addr.cidr} from {name}") from exc

    # ----- writing: routes ----------------------------------------------------------
    def _route_args(self, route: Route) -> dict[str, Any]:
        args: dict[str, Any] = {
            "family": socket.AF_INET if route.family == 4 else socket.AF_INET6,
            "dst": route.dst,
            "table": route.table,
            "proto": route.proto,
            "scope": route.scope,
            "type": route.type,
            "tos": route.tos,
        }
        if route.dev:
            args["oif"] = self._index(route.dev)
        if route.gateway:
            args["gateway"] = route.gateway
        if route.metric is not None:
            args["priority"] = route.metric
        if route.prefsrc:
            args["prefsrc"] = route.prefsrc
        if route.src:
            args["src"] = route.src
        if route.flags:
            args["flags"] = route.flags
        if route.pref is not None:
            args["RTA_PREF"] = route.pref
        if route.metrics:
            args["metrics"] = {f"RTAX_{k.upper()}": v for k, v in route.metrics}
        if route.multipath:
            args["multipath"] = [
                {
                    "oif": self._index(nh.dev) if nh.dev else 0,
                    **({"gateway": nh.gateway} if nh.gateway else {}),
                    "hops": nh.weight - 1,
                    "flags": nh.flags,
                }
                for nh in route.multipath
            ]
        return args

    def add_route(self, route: Route) -> None:
        """Add ROUTE next to any route of the same prefix and metric (no replacing)."""
        from pyroute2.netlink.exceptions import NetlinkError

        log.debug("netlink: route append %s", route.describe())
        try:
            self.ipr.route("append", **self._route_args(route))
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise _translate(exc, f"add route {route.describe()}") from exc

    def del_route(self, route: Route) -> None:
        """Delete exactly ROUTE (its device included); already gone is ok."""
        from pyroute2.netlink.exceptions import NetlinkError

        log.debug("netlink: route del %s", route.describe())
        try:
            self.ipr.route("del", **self._route_args(route))
        except NetlinkError as exc:
            if exc.code not in (errno.ESRCH, errno.ENOENT, errno.ENODEV):
                raise _translate(exc, f"delete route {route.describe()}") from exc
        except NotFound:
            return  # its device is gone, and the route with it

    # ----- moving and restoring -------------------------------------------------------
    def move(self, src: str, dst: str, state: LinkState, *, dad_timeout: float = 5.0) -> None:
        """Move STATE's addresses and routes from link SRC to link DST, keeping traffic up.

        Order: addresses on DST first (the kernel accepts the same address on two links),
        then each route re-created on DST before its SRC twin is deleted, then IPv6 duplicate
        address detection on DST, and only then the addresses leave SRC (secondaries before
        primaries: deleting a primary takes its secondaries with it).
        """
        elapsed = max(0.0, time.time() - state.taken_at)
        for addr in _primaries_first(state.addresses):
            self.add_address(dst, addr, elapsed=elapsed)
        moving = _routes_in_add_order(state.movable_routes)
        for route in moving:
            self.add_route(route.retarget(src, dst))
        for route in moving:
            self.del_route(route)
        if any(a.family == 6 for a in state.addresses):
            self.wait_dad(dst, timeout=dad_timeout)
            moved = {a.local for a in state.addresses if a.family == 6}
            rejected = [a for a in self.dad_failed(dst) if a in moved]
            if rejected:
                raise OperationFailed(
                    f"duplicate address detection failed for {', '.join(rejected)} on {dst}: "
                    "another host on the LAN answers for it"
                )
        for addr in reversed(_primaries_first(state.addresses)):
            self.del_address(src, addr)

    def restore(self, state: LinkState, *, dad_timeout: float = 5.0) -> list[str]:
        """Make the link of STATE carry exactly STATE's addresses and routes again.

        Missing addresses and routes are added, extra ones removed, MTU, MAC and the up flag
        set back. Returns what could not be restored (empty when all went back).
        """
        name = state.link.name
        problems: list[str] = []
        link = self.link(name)
        if link is None:
            return [f'interface "{name}" is gone']
        fixes: dict[str, Any] = {}
        if link.mtu != state.link.mtu:
            fixes["mtu"] = state.link.mtu
        if link.mac != state.link.mac:
            fixes["mac"] = state.link.mac
        if link.up != state.link.up:
            fixes["up"] = state.link.up
        _attempt(problems, f"set {name} back", lambda: self.set_link(name, **fixes))

        elapsed = max(0.0, time.time() - state.taken_at)
        want_addrs = {a.key(): a for a in state.addresses}
        have_addrs = {a.key(): a for a in self.addresses(name)}
        for key, addr in reversed(list(have_addrs.items())):
            if key not in want_addrs:
                _attempt(problems, f"remove {addr.cidr}", lambda a=addr: self.del_address(name, a))
        for addr in _primaries_first(state.addresses):
            if addr.key() not in have_addrs:
                _attempt(
                    problems,
                    f"add {addr.cidr}",
                    lambda a=addr: self.add_address(name, a, elapsed=elapsed),
                )

        want_routes = {r.key(): r for r in state.movable_routes}
        have_routes = {r.key(): r for r in self.routes(name) if not r.kernel}
        for key, route in have_routes.items():
            if key not in want_routes:
                _attempt(
                    problems, f"delete route {route.describe()}", lambda r=route: self.del_route(r)
                )
        for route in _routes_in_add_order(state.movable_routes):
            if route.key() not in have_routes:
                _attempt(
                    problems, f"add route {route.describe()}", lambda r=route: self.add_route(r)
                )
        if any(a.family == 6 for a in state.addresses):
            self.wait_dad(name, timeout=dad_timeout)
        return problems

    # ----- the gateway check ------------------------------------------------------------
    def route_dev(self, destination: str) -> str | None:
        """The device the kernel would use to reach DESTINATION now."""
        with self._netlink(f"look up the route to {destination}"):
            try:
                msgs = list(self.ipr.route("get", dst=destination))
            except Exception as exc:
                if getattr(exc, "code", None) in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                    return None
                raise
        for msg in msgs:
            return self._name(msg.get("RTA_OIF"))
        return None

    def neighbour_state(self, dev: str, address: str) -> int:
        """NUD_* state of ADDRESS's neighbour entry on DEV (0 when there is none)."""
        index = self._index(dev)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with self._netlink(f"read neighbours of {dev}"):
            msgs = list(self.ipr.get_neighbours(family=family, ifindex=index))
        for msg in msgs:
            if msg.get("NDA_DST") == address:
                return int(msg["state"])
        return 0

    def probe_gateway(self, dev: str, gateway: str, timeout: float = 5.0) -> ProbeResult:
        """Does GATEWAY answer through DEV? ICMP echo, or at least ARP/NDP, within TIMEOUT."""
        link_local = ipaddress.ip_address(gateway).is_link_local
        if not link_local:  # a link-local gateway is on every link; the route names none
            via = self.route_dev(gateway)
            if via != dev:
                return ProbeResult(False, gateway, dev, f"the route to it goes through {via}")
        deadline = time.monotonic() + timeout
        with _EchoProbe(dev, gateway) as echo:
            while time.monotonic() < deadline:
                if echo.ping(wait=0.25):
                    return ProbeResult(True, gateway, dev, "icmp echo")
                state = self.neighbour_state(dev, gateway)
                if state & NUD_ANSWERED:
                    return ProbeResult(True, gateway, dev, "ndp" if ":" in gateway else "arp")
        return ProbeResult(False, gateway, dev, f"no ARP/NDP or ICMP answer within {timeout:g} s")


# ----- the uplink's DHCP lease ----------------------------------------------------------
@dataclass(frozen=True)
class NetnsIdentity:
    """How the ovsbridge daemon reaches this network namespace (it outlives the CLI)."""

    kind: str  # "pid" (the root netns, through PID 1) or "netns" (a named one)
    key: str
    pid: int | None
    netns_path: str
    netns_inode: int

    def guest(self) -> dict[str, Any]:
        """The guest record the daemon keeps leases for (model.Guest's fields)."""
        return {
            "kind": self.kind,
            "key": self.key,
            "name": f"host ({self.key})",
            "pid": self.pid,
            "netns_path": self.netns_path,
            "netns_inode": self.netns_inode,
            "resolv_conf": None,
        }


def current_netns() -> NetnsIdentity:
    """The netns this process runs in, by a path that stays valid for another process."""
    inode = os.stat("/proc/self/ns/net").st_ino
    with contextlib.suppress(OSError):
        if os.stat("/proc/1/ns/net").st_ino == inode:
            return NetnsIdentity("pid", "host", 1, "/proc/1/ns/net", inode)
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir("/run/netns")):
            path = os.path.join("/run/netns", name)
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == inode:
                    return NetnsIdentity("netns", name, None, path, inode)
    raise EnvironmentProblem(
        "this network namespace has no name the ovsbridge daemon could reach it by",
        hint="run setup-bridge --dhcp in the root netns or in a named one (ip netns)",
    )


class UplinkDhcp:
    """The bridge takes the uplink's DHCP lease over; the ovsbridge daemon keeps it.

    The bridge carries the uplink's MAC and asks for the uplink's address (INIT-REBOOT) with
    client id 01:MAC (RFC 2132's hardware form: what udhcpc and most clients send; a server
    that keyed the lease on the MAC alone matches it too).
    """

    def __init__(self, identity: NetnsIdentity | None = None) -> None:
        self._identity = identity

    @property
    def identity(self) -> NetnsIdentity:
        if self._identity is None:
            self._identity = current_netns()
        return self._identity

    @property
    def guest_key(self) -> str:
        return self.identity.key

    def acquire(
        self, dev: str, mac: str, requested: str | None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """A lease for DEV (not applied yet), as the daemon's lease record."""
        from ipaddress import IPv4Address

        from ovsbridge.system import dhcp

        client_id = b"\x01" + bytes.fromhex(mac.replace(":", ""))
        lease = dhcp.acquire(
            self.identity.netns_path,
            dev,
            mac=mac,
            hostname=dhcp.hostname_for(socket.gethostname()),
            client_id=client_id,
            timeout=timeout,
            requested=IPv4Address(requested) if requested else None,
        )
        return lease.to_dict()

    def keep(self, dev: str, lease: dict[str, Any], default_route: bool = False) -> None:
        """Apply LEASE on DEV (fresh lifetimes) and hand it to the daemon for renewals."""
        from ovsbridge.system import daemon_client, dhcp

        record = dhcp.Lease.from_dict(lease)
        dhcp.apply_lease(self.identity.netns_path, dev, record, default_route=default_route)
        daemon_client.hold(
            self.identity.guest(),
            dev,
            record,
            {"default_route": default_route, "dns": False, "resolv_conf": None, "uplink": True},
        )

    def drop(self, dev: str) -> dict[str, Any] | None:
        """Stop the daemon keeping DEV's lease (no DHCPRELEASE: the address stays in use)."""
        from ovsbridge.system import daemon_client

        dropped = daemon_client.drop(self.guest_key, dev, release=False)
        return dict(dropped[0]["lease"]) if dropped else None


# ----- helpers -----------------------------------------------------------------------
def _attempt(problems: list[str], what: str, action: Any) -> None:
    try:
        action()
    except OvsbridgeError as exc:
        problems.append(f"{what}: {exc.message}")


def _address_from_msg(msg: Any, dev: str) -> Address:
    family = 4 if msg["family"] == socket.AF_INET else 6
    raw_flags = msg.get("IFA_FLAGS")
    flags = int(raw_flags if raw_flags is not None else msg["flags"])
    cache = msg.get("IFA_CACHEINFO") or {}
    valid = cache.get("ifa_valid", INFINITY_LIFE)
    preferred = cache.get("ifa_preferred", INFINITY_LIFE)
    local = msg.get("IFA_LOCAL") if family == 4 else None
    address = msg.get("IFA_ADDRESS")
    label = msg.get("IFA_LABEL")
    suffix = label[len(dev) :] if label and label != dev and label.startswith(dev) else None
    return Address(
        family=family,
        local=local or address,
        prefixlen=msg["prefixlen"],
        peer=address if family == 4 and local and address != local else None,
        broadcast=msg.get("IFA_BROADCAST"),
        label_suffix=suffix or None,
        scope=msg["scope"],
        flags=flags & IFA_F_SETTABLE,
        secondary=bool(flags & IFA_F_SECONDARY) and family == 4,
        valid_lft=None if valid == INFINITY_LIFE else int(valid),
        preferred_lft=None if valid == INFINITY_LIFE else int(preferred),
        metric=msg.get("IFA_RT_PRIORITY"),
        proto=msg.get("IFA_PROTO"),
    )


def _primaries_first(addresses: Iterable[Address]) -> list[Address]:
    items = list(addresses)
    return [a for a in items if not a.secondary] + [a for a in items if a.secondary]


def _routes_in_add_order(routes: Sequence[Route]) -> list[Route]:
    """On-link routes before gateway routes: a gateway must be reachable when its route
    is added (unless onlink)."""
    return sorted(routes, key=lambda r: (bool(r.gateways()), bool(r.multipath)))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


class _EchoProbe:
    """ICMP/ICMPv6 echo to one address, bound to one device (raw socket: needs root)."""

    def __init__(self, dev: str, target: str) -> None:
        self.dev = dev
        self.target = target
        self.v6 = ipaddress.ip_address(target).version == 6
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0
        self.sock: socket.socket | None = None

    def __enter__(self) -> _EchoProbe:
        try:
            if self.v6:
                self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            else:
                self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.dev.encode())
        except OSError as exc:
            log.debug("echo probe unavailable: %s", exc)
            self.sock = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.sock is not None:
            self.sock.close()

    def ping(self, wait: float) -> bool:
        if self.sock is None:
            time.sleep(wait)
            return False
        self.seq = (self.seq + 1) & 0xFFFF
        kind = 128 if self.v6 else 8
        body = struct.pack("!HH", self.ident, self.seq) + b"ovsbridge-gw-check"
        header = struct.pack("!BBH", kind, 0, 0)
        packet = header + body
        if not self.v6:
            packet = struct.pack("!BBH", kind, 0, _checksum(packet)) + body
        try:
            if self.v6:
                scope = socket.if_nametoindex(self.dev)
                self.sock.sendto(packet, (self.target, 0, 0, scope))
            else:
                self.sock.sendto(packet, (self.target, 0))
        except OSError as exc:
            log.debug("echo to %s failed: %s", self.target, exc)
            time.sleep(wait)
            return False
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, peer = self.sock.recvfrom(2048)
            except (TimeoutError, OSError):
                return False
            if peer[0].split("%")[0] != self.target:
                continue
            icmp = data if self.v6 else data[(data[0] & 0x0F) * 4 :]
            if len(icmp) < 8:
                continue
            rtype, _, _, ident, _seq = struct.unpack("!BBHHH", icmp[:8])
            if rtype == (129 if self.v6 else 0) and ident == self.ident:
                return True
        return False
