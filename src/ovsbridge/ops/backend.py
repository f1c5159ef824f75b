"""The seam between ops and system: what ops may ask of the machine, as a Protocol.

``system.backend.RealBackend`` implements it on OVS, netlink, Docker and DHCP; unit tests
use an in-memory fake. Values passed across are plain dataclasses from model.py and here.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ovsbridge.model import Guest, GuestSpec, IPAddress, IPInterface


@dataclass(frozen=True)
class BridgeInfo:
    name: str
    datapath: str
    mtu: int | None
    mtu_request: int | None = None  # the bridge's own interface's pinned MTU, if any


@dataclass(frozen=True)
class NewPort:
    """A port to add: its (single) interface is the host end NAME of a veth."""

    name: str
    external_ids: dict[str, str]
    vlan: int | None = None
    port_columns: tuple[str, ...] = ()  # e.g. trunks=10,20 vlan_mode=trunk (ops/ports.py)
    iface_columns: tuple[str, ...] = ()  # e.g. ingress_policing_rate=10000
    qos_max_rate: int | None = None  # bit/s: a linux-htb QoS shaping what goes to the guest


@dataclass(frozen=True)
class OvsPort:
    """A port on a bridge with its (first) interface's OVS facts."""

    bridge: str
    port: str
    ofport: int | None
    iface_type: str
    error: str | None
    vlan: int | None
    external_ids: dict[str, str] = field(default_factory=dict)
    port_external_ids: dict[str, str] = field(default_factory=dict)
    mac_in_use: str | None = None
    uuid: str = ""
    mtu: int | None = None
    trunks: tuple[int, ...] = ()
    vlan_mode: str | None = None
    policing_rate: int | None = None  # kbit/s; None or 0: no policing
    policing_burst: int | None = None  # kbit
    qos: str | None = None  # uuid of the Port's QoS row


@dataclass(frozen=True)
class GuestLink:
    name: str
    mac: str
    mtu: int
    up: bool
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class RouteRef:
    """A default route as it was, to put back on rollback."""

    version: int
    gateway: str | None
    oif: int | None


class Backend(Protocol):
    # guests
    def resolve_guest(self, spec: GuestSpec) -> Guest: ...
    def guest_alive(self, kind: str, key: str, netns_inode: int) -> bool | None: ...
    def container_running(self, ref: str) -> bool | None: ...
    def daemon_leases(self) -> dict[tuple[str, str], dict[str, Any]]: ...

    # OVS
    def bridge_info(self, name: str) -> BridgeInfo | None: ...
    def create_bridge(self, name: str, datapath: str) -> None: ...
    def delete_bridge(self, name: str) -> None: ...
    def auto_datapath(self) -> str: ...
    def ports(self, bridge: str | None = None,
              match: dict[str, str] | None = None) -> list[OvsPort]:
        """Ports (of BRIDGE, or all) whose Interface external_ids include every MATCH pair."""
        ...
    def add_ports(self, bridge: str, ports: list[NewPort], pin_mtu: int | None,
                  wait: bool = True) -> int | None:
        """Add PORTS to BRIDGE in one transaction; PIN_MTU sets the bridge's mtu_request.
        Without WAIT, a token for ``wait_applied`` (vswitchd applies it meanwhile)."""
        ...
    def wait_applied(self, token: int) -> None: ...
    def del_ports(self, ports: list[str]) -> None: ...

    def session(self) -> AbstractContextManager[None]:
        """Within it, this thread may reuse its connections (netlink sockets per netns)."""
        ...

    # serialisation: one operation at a time per guest interface, across processes
    def guest_lock(self, guest_key: str, ifname: str) -> AbstractContextManager[None]: ...
    def note_building(self, guest_key: str, ifname: str, host_name: str | None) -> None:
        """Record (with GUEST_KEY/IFNAME's lock held) that HOST_NAME is about to be made for
        it; the note outlives only a holder that was killed (see system/locks.py). None:
        the veth is tagged now, the note is cleared."""
        ...

    def try_guest_lock(self, guest_key: str, ifname: str) -> bool:
        """True when no operation holds GUEST_KEY/IFNAME now (a probe: nothing is kept)."""
        ...

    # links
    def host_links(self) -> set[str]: ...
    def guest_link(self, netns_path: str, ifname: str) -> GuestLink | None: ...
    def create_veth(self, host: str, peer: str, netns_path: str, mtu: int | None,
                    alias: str) -> None:
        """A veth pair, HOST here carrying ALIAS (its identity), PEER in the netns."""
        ...
    def host_link_aliases(self) -> dict[str, str]:
        """Every host link's name and identity (ifalias, "" when it has none)."""
        ...
    def host_link_alias(self, name: str) -> str | None:
        """The identity (ifalias) of host link NAME: "" when it has none, None if absent."""
        ...
    def set_host_alias(self, name: str, alias: str) -> None: ...
    def delete_host_link(self, name: str, alias: str | None = None) -> bool:
        """Delete host link NAME if it exists and, when ALIAS is given, carries exactly it."""
        ...
    def delete_guest_link(self, netns_path: str, ifname: str) -> bool: ...
    def configure_guest_link(self, netns_path: str, tmp: str, ifname: str, mac: str,
                             mtu: int | None) -> None: ...
    def disable_tx_offload(self, name: str, netns_path: str | None) -> None: ...

    # addresses and routes in the guest
    def add_address(self, netns_path: str, ifname: str, iface: IPInterface) -> None: ...
    def default_route(self, netns_path: str, version: int) -> RouteRef | None: ...
    def replace_default_route(self, netns_path: str, ifname: str, gateway: IPAddress,
                              on_link: bool) -> None: ...
    def restore_default_route(self, netns_path: str, route: RouteRef) -> None: ...
    def announce(self, netns_path: str, ifname: str, iface: IPInterface, mac: str) -> None: ...

    # DHCP
    def dhcp_acquire(self, netns_path: str, ifname: str, *, mac: str, hostname: str | None,
                     client_id: bytes, timeout: float) -> Any: ...
    def dhcp_apply(self, netns_path: str, ifname: str, lease: Any, default_route: bool) -> None: ...
    def dhcp_unapply(self, netns_path: str, ifname: str, lease: Any) -> None: ...
    def dhcp_release(self, netns_path: str, ifname: str, lease: Any) -> None: ...
    def write_resolv_conf(self, path: str, lease: Any) -> None: ...
    def daemon_hold(self, guest: Guest, ifname: str, lease: Any,
                    options: dict[str, Any]) -> None: ...
    def daemon_drop(self, guest_key: str, ifname: str, release: bool) -> None: ...

    # OVN (ops/ovn.py OvnSide: this chassis and its central)
    def ovn(self) -> Any: ...
    # IPv6 from router advertisements and DHCPv6; MTU (ops/ipv6.py, ops/addressing.py)
    def ipv6_prepare(self, netns_path: str, ifname: str, autoconf: bool,
                     default_route: bool) -> None: ...
    def ra_wait(self, netns_path: str, ifname: str, timeout: float, need_address: bool,
                need_route: bool = True) -> Any:
        """Wait for the RA's default route (and a SLAAC address): a slaac.SlaacResult."""
        ...
    def dhcp6_acquire(self, netns_path: str, ifname: str, *, mac: str, timeout: float) -> Any:
        """A DHCPv6 lease, already configured on IFNAME and through DAD."""
        ...
    def dhcp6_unapply(self, netns_path: str, ifname: str, lease: Any) -> None: ...
    def dhcp6_release(self, netns_path: str, ifname: str, lease: Any) -> None: ...
    def resolv_conf_update(self, path: str, source: str, dns: Any, search: Any) -> None: ...
    def set_link_mtu(self, name: str, netns_path: str | None, mtu: int) -> None: ...
    def set_port_ids(self, port: str, ids: dict[str, str]) -> None:
        """Set external_ids keys on PORT's Interface (one transaction)."""
        ...
    def set_port_columns(self, port: str, port_columns: tuple[str, ...],
                         iface_columns: tuple[str, ...], ids: dict[str, str],
                         qos_max_rate: int | None) -> None:
        """Set Port and Interface columns, the port's QoS (created, changed or destroyed:
        None) and Interface external_ids in ONE transaction."""
        ...
