"""adopt: make the ports pipework and ovs-docker made ovsbridge's, without touching the guest.

For each such port whose container is running, the guest end of the veth is found (its peer
index, not its name), and what the container has *now* is recorded in ovsbridge's tags: its
MAC, MTU, addresses, the default gateway on that interface, the VLAN tag. The other tool's
keys stay (provenance); ``ovsbridge.adopted_from`` names it. From then on ps, detach,
cleanup and the daemon treat the port as one ``ovsbridge attach`` made (the request recorded
is the one that would re-create it, so a repeat attach of it is "already attached").

Whether an IPv4 address came from DHCP is judged from evidence (a DHCP client running in the
container's netns, or an address with a lease lifetime); with ``assume_dhcp`` the caller says
so where there is none. A DHCP address is handed to the daemon: a lease is taken for the
container's own MAC and client id (the server gives it the address it already has), applied,
and held and renewed by the daemon. Where nothing tells, the port is adopted as static and
the result says so. On the userspace datapath TX checksum offload is turned off on both
veth ends (pipework leaves it on, which breaks TCP and UDP there).

Each port is tagged last: a failure before leaves it the other tool's, as it was.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ovsbridge import naming
from ovsbridge.errors import Conflict, NotFound, OvsbridgeError
from ovsbridge.model import Guest, GuestSpec
from ovsbridge.ops.backend import Backend, GuestLink, OvsPort
from ovsbridge.ops.cleanup import identity
from ovsbridge.ops.ps import owner_of

K_ADOPTED_FROM = "ovsbridge.adopted_from"
FOREIGN_OWNERS = ("pipework", "ovs-docker")
Origin = Literal["dhcp", "static", "unknown"]


@dataclass(frozen=True)
class Evidence:
    origin: Origin
    why: str
    clients: tuple[int, ...] = ()  # pids of DHCP clients still running in the netns


class AdoptProbe(Protocol):
    """What adopt asks of the host beyond the core Backend (system/adopt_backend.py)."""

    def peer_ifname(self, host_link: str, netns_path: str) -> str | None: ...
    def dhcp_evidence(self, guest: Guest, ifname: str) -> Evidence: ...
    def set_interface_ids(self, port: str, ids: dict[str, str]) -> None: ...


@dataclass(frozen=True)
class AdoptEntry:
    bridge: str
    port: str
    owner: str  # the tool that made it
    container: str | None
    container_id: str | None
    ifname: str | None
    mac: str | None
    addresses: tuple[str, ...]
    vlan: int | None
    mode: str | None  # static | dhcp | none
    action: str  # adopted | skipped
    reason: str
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {"bridge": self.bridge, "port": self.port, "owner": self.owner,
                "container": self.container, "container_id": self.container_id,
                "ifname": self.ifname, "mac": self.mac, "addresses": list(self.addresses),
                "vlan": self.vlan, "mode": self.mode, "action": self.action,
                "reason": self.reason, "notes": list(self.notes)}


@dataclass(frozen=True)
class AdoptResult:
    adopted: tuple[AdoptEntry, ...]
    skipped: tuple[AdoptEntry, ...]

    def to_json(self) -> dict[str, Any]:
        return {"adopted": [e.to_json() for e in self.adopted],
                "skipped": [e.to_json() for e in self.skipped]}


def adopt(backend: Backend, probe: AdoptProbe, bridge: str | None = None, *,
          ports: frozenset[str] | None = None, assume_dhcp: bool = False,
          dhcp_timeout: float = 10.0) -> AdoptResult:
    """Adopt the pipework and ovs-docker ports on BRIDGE (every bridge if None), or only
    PORTS; ASSUME_DHCP: an IPv4 address nothing proves static or dynamic is a DHCP lease."""
    if bridge is not None and backend.bridge_info(bridge) is None:
        raise NotFound(f'bridge "{bridge}" does not exist', hint="list bridges: ovs-vsctl list-br")
    adopted: list[AdoptEntry] = []
    skipped: list[AdoptEntry] = []
    candidates = [p for p in backend.ports(bridge) if _adoptable(p, assume_dhcp)
                  and (ports is None or p.port in ports)]
    if ports is not None:
        known = {p.port for p in candidates}
        for name in sorted(ports - known):
            skipped.append(AdoptEntry(bridge or "", name, "unknown", None, None, None, None, (),
                                      None, None, "skipped",
                                      "not a pipework or ovs-docker port here"))
    for port in sorted(candidates, key=lambda p: (p.bridge, p.port)):
        entry = _adopt_one(backend, probe, port, assume_dhcp, dhcp_timeout)
        (adopted if entry.action == "adopted" else skipped).append(entry)
    return AdoptResult(tuple(adopted), tuple(skipped))


def _adoptable(port: OvsPort, assume_dhcp: bool) -> bool:
    """A port of pipework or ovs-docker; or, with ASSUME_DHCP, one adopted as static before
    (so its address can still be handed to the daemon as a lease)."""
    if owner_of(port) in FOREIGN_OWNERS:
        return True
    ids = port.external_ids
    return assume_dhcp and bool(ids.get(K_ADOPTED_FROM)) and ids.get(naming.K_MODE) != "dhcp"


def _adopt_one(backend: Backend, probe: AdoptProbe, port: OvsPort, assume_dhcp: bool,
               dhcp_timeout: float) -> AdoptEntry:
    found = identity(port, owner_of(port))
    owner = port.external_ids.get(K_ADOPTED_FROM) or owner_of(port)

    def skip(reason: str, guest: Guest | None = None, ifname: str | None = None) -> AdoptEntry:
        return AdoptEntry(port.bridge, port.port, owner,
                          guest.name if guest else found.container_name or found.container_id,
                          guest.key if guest else found.container_id, ifname, None, (),
                          port.vlan, None, "skipped", reason)

    if not found.container_id:
        return skip("records no container")
    try:
        guest = backend.resolve_guest(GuestSpec("docker", found.container_id))
    except (NotFound, Conflict) as exc:
        return skip(f"{exc.message} ('ovsbridge cleanup' removes its port)")
    if port.port not in backend.host_links():
        return skip("its host interface is gone ('ovsbridge cleanup' removes the port)", guest)
    ifname = probe.peer_ifname(port.port, guest.netns_path)
    if ifname is None:
        return skip("the other end of its veth is not in the container", guest)
    link = backend.guest_link(guest.netns_path, ifname)
    if link is None:
        return skip(f"{ifname} vanished from the container", guest, ifname)
    try:
        return _take_over(backend, probe, port, owner, guest, link, assume_dhcp, dhcp_timeout)
    except OvsbridgeError as exc:
        entry = skip(f"not adopted: {exc.message}", guest, ifname)
        return entry


def _take_over(backend: Backend, probe: AdoptProbe, port: OvsPort, owner: str, guest: Guest,
               link: GuestLink, assume_dhcp: bool, dhcp_timeout: float) -> AdoptEntry:
    from ovsbridge.ops.attach import _external_ids, dhcp_hostname
    from ovsbridge.request import build_attach_request

    notes: list[str] = []
    v4 = [a for a in link.addresses if ":" not in a]
    evidence = probe.dhcp_evidence(guest, link.name) if v4 else Evidence("static", "no IPv4")
    origin = evidence.origin
    if origin == "unknown":
        if assume_dhcp:
            origin = "dhcp"
            notes.append(f"{', '.join(v4)} taken as a DHCP lease (--dhcp)")
        else:
            origin = "static"
            notes.append(f"cannot tell whether {', '.join(v4)} came from DHCP ({evidence.why}); "
                         "adopted as static. If it is a lease: 'ovsbridge adopt --dhcp --port "
                         f"{port.port}' hands it to the daemon")
    elif origin == "dhcp":
        notes.append(f"DHCP: {evidence.why}")
    statics = [a for a in link.addresses if origin != "dhcp" or ":" in a]
    statics = _with_gateways(backend, guest, statics)
    address = ",".join((["dhcp"] if origin == "dhcp" else []) + statics) or "none"
    fields: dict[str, Any] = {
        "bridge": port.bridge, "guest": guest.key, "address": address, "ifname": link.name,
        "mac": link.mac, "mtu": str(link.mtu), "host_ifname": port.port,
    }
    if port.vlan:
        fields["vlan"] = str(port.vlan)
    req = build_attach_request(fields)
    bridge = backend.bridge_info(port.bridge)
    if bridge is not None and bridge.datapath == "netdev":
        backend.disable_tx_offload(port.port, None)
        backend.disable_tx_offload(link.name, guest.netns_path)
        notes.append("TX checksum offload turned off on both veth ends (userspace datapath)")
    addresses = tuple(statics)
    held = False
    if origin == "dhcp":
        lease = backend.dhcp_acquire(
            guest.netns_path, link.name, mac=link.mac, hostname=dhcp_hostname(req, guest),
            client_id=b"\x01" + bytes.fromhex(link.mac.replace(":", "")), timeout=dhcp_timeout)
        leased = str(lease.address) if hasattr(lease, "address") else str(lease["address"])
        before = [a for a in v4]
        if before and leased.split("/")[0] not in [a.split("/")[0] for a in before]:
            notes.append(f"the DHCP server gave {leased}, not {', '.join(before)}: "
                         f"{leased} applied")
        backend.dhcp_apply(guest.netns_path, link.name, lease, True)
        backend.daemon_hold(guest, link.name, lease, {
            "bridge": port.bridge, "default_route": True, "dns": False, "resolv_conf": None,
            "hostname": dhcp_hostname(req, guest)})
        held = True
        addresses = (leased, *statics)
        notes.append("lease handed to the ovsbridge daemon, which renews it")
        if evidence.clients:
            notes.append(f"DHCP client pid {', '.join(map(str, evidence.clients))} still runs "
                         "in the container: stop it, so only the daemon renews the lease")
    ids = _external_ids(guest, req, link.mac, link.mtu, req.fingerprint(),
                        tuple(statics))
    ids[K_ADOPTED_FROM] = owner
    try:
        backend.set_host_alias(port.port,
                               naming.link_alias(guest.key, link.name, naming.ALIAS_READY))
        probe.set_interface_ids(port.port, ids)
    except BaseException:
        if held:
            backend.daemon_drop(guest.key, link.name, False)
        raise
    return AdoptEntry(port.bridge, port.port, owner, guest.name, guest.key, link.name, link.mac,
                      addresses, port.vlan, req.plan.mode, "adopted",
                      f"made by {owner}; now ovsbridge's", tuple(notes))


def _with_gateways(backend: Backend, guest: Guest, statics: list[str]) -> list[str]:
    """Record the container's default gateway (per family) on the address whose subnet
    holds it, as ``IP/PREFIX@GW``: what re-creating the attachment would need."""
    out = list(statics)
    for version in (4, 6):
        route = backend.default_route(guest.netns_path, version)
        if route is None or not route.gateway:
            continue
        gateway = ipaddress.ip_address(route.gateway)
        for index, text in enumerate(out):
            iface = ipaddress.ip_interface(text)
            if iface.version == version and gateway in iface.network and gateway != iface.ip:
                out[index] = f"{text}@{gateway}"
                break
    return out
