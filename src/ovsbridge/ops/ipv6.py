"""IPv6 address modes of attach: ``slaac`` and ``dhcp6`` (decisions and undo; no I/O here).

``configure`` runs after the port is on the bridge (and after DHCPv4, when both are asked):
the guest interface is let to accept router advertisements (with ``autoconf`` only for
slaac), a DHCPv6 lease is taken (configured and DAD-checked by the adapter) and handed to
the daemon's lease keeper like a DHCPv4 lease, and attach waits, bounded by ``--ra-timeout``,
for the RA's default route (and for slaac a global address). RDNSS/DNSSL and DHCPv6 options
23/24 go into the container's resolv.conf with ``--dns``. Every step pushes its undo.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ovsbridge import naming
from ovsbridge.errors import OperationFailed
from ovsbridge.model import AddressPlan, Guest
from ovsbridge.ops.backend import Backend, OvsPort
from ovsbridge.ops.undo import UndoStack
from ovsbridge.request import AttachRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ipv6Outcome:
    addresses: tuple[str, ...] = ()  # CIDR, as ps shows them
    origins: dict[str, str] = field(default_factory=dict)  # address -> slaac | dhcp6
    lease6: dict[str, Any] | None = None
    slaac: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"lease6": self.lease6, "slaac": self.slaac}


def wanted(plan: AddressPlan) -> bool:
    return bool(plan.dynamic & {"slaac", "dhcp6"})


def holds_dhcp6(port: OvsPort) -> bool:
    """Whether the attachment recorded on PORT asked for dhcp6 (its lease is the daemon's)."""
    request = port.external_ids.get(naming.K_REQUEST, "")
    return '"dhcp6' in request or ",dhcp6" in request


def configure(backend: Backend, undo: UndoStack, guest: Guest, req: AttachRequest,
              mac: str) -> Ipv6Outcome:
    dynamic = req.plan.dynamic
    slaac = "slaac" in dynamic
    backend.ipv6_prepare(guest.netns_path, req.ifname, slaac, req.default_route)
    undo.step_done("ipv6-prepare")
    addresses: list[str] = []
    origins: dict[str, str] = {}
    notes: list[str] = []
    lease6_json: dict[str, Any] | None = None
    if "dhcp6" in dynamic:
        lease = backend.dhcp6_acquire(guest.netns_path, req.ifname, mac=mac,
                                      timeout=req.dhcp_timeout)
        undo.push("release the DHCPv6 lease",
                  lambda: backend.dhcp6_release(guest.netns_path, req.ifname, lease))
        undo.push("remove the DHCPv6 address",
                  lambda: backend.dhcp6_unapply(guest.netns_path, req.ifname, lease))
        undo.step_done("dhcp6-lease")
        lease6_json = lease.to_dict()
        address = str(lease6_json["address"])
        addresses.append(address)
        origins[address] = "dhcp6"
        if req.dns and guest.resolv_conf:
            _resolv(backend, undo, guest.resolv_conf, "dhcp6", lease.dns, lease.search)
        backend.daemon_hold(guest, req.ifname, lease, {
            "bridge": req.bridge, "default_route": req.default_route, "dns": req.dns,
            "resolv_conf": guest.resolv_conf if req.dns else None,
        })
        undo.push("drop the DHCPv6 lease from the daemon",
                  lambda: backend.daemon_drop(guest.key, req.ifname, False))
        undo.step_done("dhcp6-hold")
    slaac_json: dict[str, Any] | None = None
    if slaac or req.default_route:
        try:
            result = backend.ra_wait(guest.netns_path, req.ifname, req.ra_timeout, slaac,
                                     req.default_route)
        except OperationFailed as exc:
            if slaac:
                raise
            # NOTE: with dhcp6 alone the lease is good without an RA; only the default
            # route (which RFC 8415 leaves to RAs) is missing: say so, do not fail.
            notes.append(f"no IPv6 default route: {exc.message}")
            result = None
        if result is not None:
            slaac_json = result.to_dict()
            if slaac:
                for address in result.addresses:
                    addresses.append(address)
                    origins[address] = "slaac"
                if req.dns and guest.resolv_conf:
                    _resolv(backend, undo, guest.resolv_conf, "slaac", result.dns,
                            result.search)
        undo.step_done("ra")
    return Ipv6Outcome(tuple(addresses), origins, lease6_json, slaac_json, tuple(notes))


def _resolv(backend: Backend, undo: UndoStack, path: str, source: str, dns: Any,
            search: Any) -> None:
    if not dns and not search:
        return
    backend.resolv_conf_update(path, source, dns, search)
    undo.push(f"withdraw the {source} DNS servers",
              lambda: backend.resolv_conf_update(path, source, (), ()))
