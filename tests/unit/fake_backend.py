"""An in-memory Backend for unit tests of ops: state you can compare, failures you can inject."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ovsbridge.errors import Conflict, NotFound, OperationFailed
from ovsbridge.model import Guest, GuestSpec
from ovsbridge.ops.backend import BridgeInfo, GuestLink, NewPort, OvsPort, RouteRef

NETNS = "/proc/4242/ns/net"


@dataclass
class FakeLease:
    address: str = "198.51.100.150/24"
    router: str | None = "198.51.100.1"

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "router": self.router, "dns": [], "lease_time": 120}


@dataclass
class FakeLease6:
    address: str = "2001:db8:1::150/128"
    dns: tuple[str, ...] = ("2001:db8:1::1",)
    search: tuple[str, ...] = ("v6.lab.test",)

    def to_dict(self) -> dict[str, Any]:
        return {"family": 6, "address": self.address, "dns": list(self.dns), "valid": 120}


@dataclass
class FakeSlaac:
    addresses: tuple[str, ...] = ("2001:db8:1::aa/64",)
    router: str | None = "fe80::1"
    dns: tuple[str, ...] = ("2001:db8:1::53",)
    search: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"addresses": list(self.addresses), "router": self.router}


@dataclass
class World:
    bridges: dict[str, str] = field(default_factory=dict)  # name -> datapath
    ports: dict[str, OvsPort] = field(default_factory=dict)
    host_links: dict[str, str] = field(default_factory=dict)  # name -> ifalias
    guest_links: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_routes: dict[int, RouteRef] = field(default_factory=dict)
    held: dict[tuple[str, str], Any] = field(default_factory=dict)
    held6: dict[tuple[str, str], Any] = field(default_factory=dict)
    resolv: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # source -> (dns, search)


class FakeBackend:
    def __init__(self, guest: Guest | None = None) -> None:
        self.w = World()
        self.guest = guest or Guest(
            "docker", "c" * 64, "web1", 4242, NETNS, 777, resolv_conf="/fake/resolv.conf"
        )
        self.fail_on: str | None = None
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self.notes: dict[tuple[str, str], str] = {}
        self.peer: dict[str, str] = {}

    def state(self) -> World:
        return copy.deepcopy(self.w)

    def _maybe_fail(self, name: str) -> None:
        if self.fail_on == name:
            raise OperationFailed(f"fake failure in {name}")

    def resolve_guest(self, spec: GuestSpec) -> Guest:
        if spec.ref not in (self.guest.name, self.guest.key):
            raise NotFound(f'container "{spec.ref}" does not exist')
        return self.guest

    def guest_alive(self, kind: str, key: str, netns_inode: int) -> bool | None:
        return key == self.guest.key and netns_inode == self.guest.netns_inode

    def container_running(self, ref: str) -> bool | None:
        return ref in (self.guest.name, self.guest.key)

    def daemon_leases(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {}

    def bridge_info(self, name: str) -> BridgeInfo | None:
        dp = self.w.bridges.get(name)
        return None if dp is None else BridgeInfo(name, dp, 1500)

    def create_bridge(self, name: str, datapath: str) -> None:
        self._maybe_fail("create_bridge")
        self.w.bridges[name] = datapath

    def delete_bridge(self, name: str) -> None:
        self.w.bridges.pop(name, None)
        for port in [p for p in self.w.ports.values() if p.bridge == name]:
            del self.w.ports[port.port]

    def auto_datapath(self) -> str:
        return "netdev"

    def ports(self, bridge: str | None = None,
              match: dict[str, str] | None = None) -> list[OvsPort]:
        return [p for p in self.w.ports.values() if (bridge is None or p.bridge == bridge)
                and all(p.external_ids.get(k) == v for k, v in (match or {}).items())]

    def wait_applied(self, token: int) -> None:
        self._maybe_fail("wait_applied")

    def add_ports(self, bridge: str, ports: list[NewPort], pin_mtu: int | None,
                  wait: bool = True) -> int | None:
        self._maybe_fail("add_port")
        for port in ports:
            if port.name in self.w.ports:
                raise Conflict(f"port {port.name} exists")
        for port in ports:
            cols = dict(c.split("=", 1) for c in (*port.port_columns, *port.iface_columns))
            self.w.ports[port.name] = OvsPort(
                bridge, port.name, 1, "", None, port.vlan, dict(port.external_ids),
                trunks=tuple(int(t) for t in cols.get("trunks", "").split(",") if t),
                vlan_mode=cols.get("vlan_mode"),
                policing_rate=int(cols["ingress_policing_rate"])
                if "ingress_policing_rate" in cols else None,
                qos=f"qos-{port.qos_max_rate}" if port.qos_max_rate else None)
        return None if wait else 1

    def session(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def guest_lock(self, guest_key: str, ifname: str) -> Iterator[None]:
        lock = self._locks.setdefault((guest_key, ifname), threading.Lock())
        with lock:
            yield

    def note_building(self, guest_key: str, ifname: str, host_name: str | None) -> None:
        if host_name is None:
            self.notes.pop((guest_key, ifname), None)
        else:
            self.notes[(guest_key, ifname)] = host_name

    def try_guest_lock(self, guest_key: str, ifname: str) -> bool:
        lock = self._locks.get((guest_key, ifname))
        return lock is None or not lock.locked()

    def host_link_alias(self, name: str) -> str | None:
        return self.w.host_links.get(name)

    def set_host_alias(self, name: str, alias: str) -> None:
        self._maybe_fail("set_host_alias")
        if name not in self.w.host_links:
            raise NotFound(f"interface {name} does not exist")
        self.w.host_links[name] = alias

    def del_ports(self, ports: list[str]) -> None:
        for p in ports:
            self.w.ports.pop(p, None)

    def host_links(self) -> set[str]:
        return set(self.w.host_links)

    def host_link_aliases(self) -> dict[str, str]:
        return dict(self.w.host_links)

    def guest_link(self, netns_path: str, ifname: str) -> GuestLink | None:
        link = self.w.guest_links.get(ifname)
        if link is None:
            return None
        return GuestLink(ifname, link["mac"], link["mtu"], True, tuple(link["addresses"]))

    def create_veth(self, host: str, peer: str, netns_path: str, mtu: int | None,
                    alias: str) -> None:
        self._maybe_fail("create_veth")
        if host in self.w.host_links:
            raise Conflict(f"interface {host} exists")
        self.w.host_links[host] = alias
        self.w.guest_links[peer] = {"mac": "", "mtu": mtu, "addresses": [], "host": host}

    def delete_host_link(self, name: str, alias: str | None = None) -> bool:
        if name not in self.w.host_links:
            return False
        if alias is not None and self.w.host_links[name] != alias:
            return False
        del self.w.host_links[name]
        for gname, link in list(self.w.guest_links.items()):
            if link.get("host") == name:
                del self.w.guest_links[gname]
                for v, r in list(self.w.default_routes.items()):
                    if r.oif == hash(gname):
                        del self.w.default_routes[v]
        return True

    def delete_guest_link(self, netns_path: str, ifname: str) -> bool:
        link = self.w.guest_links.get(ifname)
        if link is None:
            return False
        return self.delete_host_link(link["host"])

    def configure_guest_link(
        self, netns_path: str, tmp: str, ifname: str, mac: str, mtu: int | None
    ) -> None:
        self._maybe_fail("configure_guest_link")
        link = self.w.guest_links.pop(tmp)
        link.update(mac=mac, mtu=mtu)
        self.w.guest_links[ifname] = link

    def disable_tx_offload(self, name: str, netns_path: str | None) -> None:
        self._maybe_fail("disable_tx_offload")

    def add_address(self, netns_path: str, ifname: str, iface: Any) -> None:
        self._maybe_fail("add_address")
        self.w.guest_links[ifname]["addresses"].append(str(iface))

    def default_route(self, netns_path: str, version: int) -> RouteRef | None:
        return self.w.default_routes.get(version)

    def replace_default_route(
        self, netns_path: str, ifname: str, gateway: Any, on_link: bool
    ) -> None:
        self._maybe_fail("replace_default_route")
        self.w.default_routes[gateway.version] = RouteRef(
            gateway.version, str(gateway), hash(ifname)
        )

    def restore_default_route(self, netns_path: str, route: RouteRef) -> None:
        self.w.default_routes[route.version] = route

    def announce(self, netns_path: str, ifname: str, iface: Any, mac: str) -> None:
        self._maybe_fail("announce")

    def dhcp_acquire(self, netns_path: str, ifname: str, **kw: Any) -> FakeLease:
        self._maybe_fail("dhcp_acquire")
        return FakeLease()

    def dhcp_apply(self, netns_path: str, ifname: str, lease: Any, default_route: bool) -> None:
        self._maybe_fail("dhcp_apply")
        self.w.guest_links[ifname]["addresses"].append(lease.address)

    def dhcp_unapply(self, netns_path: str, ifname: str, lease: Any) -> None:
        link = self.w.guest_links.get(ifname)
        if link and lease.address in link["addresses"]:
            link["addresses"].remove(lease.address)

    def dhcp_release(self, netns_path: str, ifname: str, lease: Any) -> None:
        pass

    def write_resolv_conf(self, path: str, lease: Any) -> None:
        self._maybe_fail("write_resolv_conf")

    def daemon_hold(self, guest: Guest, ifname: str, lease: Any, options: dict[str, Any]) -> None:
        self._maybe_fail("daemon_hold")
        if isinstance(lease, FakeLease6):
            self.w.held6[(guest.key, ifname)] = lease
        else:
            self.w.held[(guest.key, ifname)] = lease

    def daemon_drop(self, guest_key: str, ifname: str, release: bool) -> None:
        self.w.held.pop((guest_key, ifname), None)
        self.w.held6.pop((guest_key, ifname), None)

    # IPv6, MTU, port columns
    def ipv6_prepare(self, netns_path: str, ifname: str, autoconf: bool,
                     default_route: bool = True) -> None:
        self._maybe_fail("ipv6_prepare")
        self.w.guest_links[ifname]["accept_ra"] = (True, autoconf)

    def ra_wait(self, netns_path: str, ifname: str, timeout: float, need_address: bool,
                need_route: bool = True) -> Any:
        self._maybe_fail("ra_wait")
        result = FakeSlaac() if need_address else FakeSlaac(addresses=())
        self.w.guest_links[ifname]["addresses"].extend(result.addresses)
        return result

    def dhcp6_acquire(self, netns_path: str, ifname: str, *, mac: str, timeout: float) -> Any:
        self._maybe_fail("dhcp6_acquire")
        lease = FakeLease6()
        self.w.guest_links[ifname]["addresses"].append(lease.address)
        return lease

    def dhcp6_unapply(self, netns_path: str, ifname: str, lease: Any) -> None:
        link = self.w.guest_links.get(ifname)
        if link and lease.address in link["addresses"]:
            link["addresses"].remove(lease.address)

    def dhcp6_release(self, netns_path: str, ifname: str, lease: Any) -> None:
        pass

    def resolv_conf_update(self, path: str, source: str, dns: Any, search: Any) -> None:
        self._maybe_fail("resolv_conf_update")
        if dns or search:
            self.w.resolv[source] = (tuple(dns), tuple(search))
        else:
            self.w.resolv.pop(source, None)

    def set_link_mtu(self, name: str, netns_path: str | None, mtu: int) -> None:
        self._maybe_fail("set_link_mtu")
        if netns_path is not None:
            self.w.guest_links[name]["mtu"] = mtu

    def set_port_ids(self, port: str, ids: dict[str, str]) -> None:
        self._maybe_fail("set_port_ids")
        old = self.w.ports[port]
        self.w.ports[port] = dataclasses.replace(old, external_ids={**old.external_ids, **ids})

    def set_port_columns(self, port: str, port_columns: tuple[str, ...],
                         iface_columns: tuple[str, ...], ids: dict[str, str],
                         qos_max_rate: int | None = None) -> None:
        self._maybe_fail("set_port_columns")
        old = self.w.ports[port]
        cols = dict(c.split("=", 1) for c in (*port_columns, *iface_columns))
        tag = cols.get("tag", "[]")
        trunks = cols.get("trunks", "[]").strip("[]")
        rate = int(cols.get("ingress_policing_rate", "0"))
        self.w.ports[port] = dataclasses.replace(
            old, external_ids={**old.external_ids, **ids},
            vlan=None if tag == "[]" else int(tag),
            trunks=tuple(int(t) for t in trunks.split(",") if t),
            vlan_mode=None if cols.get("vlan_mode", "[]") == "[]" else cols["vlan_mode"],
            policing_rate=rate or None, qos=f"qos-{qos_max_rate}" if qos_max_rate else None)
