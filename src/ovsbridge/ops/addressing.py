"""What a DHCPv4 lease changes beyond the address: the interface MTU of option 26.

Decisions only: the MTU is applied to both veth ends (the guest's and the host's, so the
bridge port agrees), never above the bridge's MTU, never when the user gave ``--mtu``, and
never below 1280 when the attachment also carries IPv6. The port's recorded MTU follows.
"""

from __future__ import annotations

import logging
from typing import Any

from ovsbridge import naming
from ovsbridge.model import Guest
from ovsbridge.ops.backend import Backend
from ovsbridge.ops.undo import UndoStack
from ovsbridge.request import IPV6_MIN_MTU, AttachRequest

log = logging.getLogger(__name__)


def lease_mtu(req: AttachRequest, lease_json: dict[str, Any] | None,
              current: int | None) -> int | None:
    """The MTU to set for LEASE_JSON's option 26, or None to leave CURRENT as it is."""
    if req.mtu is not None or not lease_json:
        return None
    offered = lease_json.get("mtu")
    if not isinstance(offered, int) or offered <= 0:
        return None
    mtu = offered if current is None else min(offered, current)
    if 6 in req.plan.families:
        mtu = max(mtu, IPV6_MIN_MTU)
    return None if mtu == current else mtu


def apply_lease_mtu(backend: Backend, undo: UndoStack, guest: Guest, req: AttachRequest,
                    host_name: str, current: int | None,
                    lease_json: dict[str, Any] | None) -> int | None:
    """Apply option 26 to both veth ends; returns the MTU now in force."""
    mtu = lease_mtu(req, lease_json, current)
    if mtu is None:
        return current
    backend.set_link_mtu(req.ifname, guest.netns_path, mtu)
    backend.set_link_mtu(host_name, None, mtu)
    backend.set_port_ids(host_name, {naming.K_MTU: str(mtu)})
    if current is not None:
        before = current

        def restore() -> None:
            backend.set_link_mtu(host_name, None, before)
            backend.set_link_mtu(req.ifname, guest.netns_path, before)

        undo.push(f"restore MTU {before}", restore)
    undo.step_done("dhcp-mtu")
    log.info("%s: MTU %s from DHCP option 26", req.ifname, mtu)
    return mtu


K_ORIGINS = "ovsbridge.address_origins"  # "ADDRESS=ORIGIN,..." (static|dhcp|dhcp6|slaac)


def origins_of(req: AttachRequest, addresses: tuple[str, ...],
               lease_json: dict[str, Any] | None, v6: Any) -> dict[str, str]:
    origins = {str(s): "static" for s in req.plan.statics}
    if lease_json and lease_json.get("address"):
        origins[str(lease_json["address"])] = "dhcp"
    if v6 is not None:
        origins.update(v6.origins)
    return {a: origins.get(a, "static") for a in addresses}


def record_addresses(backend: Backend, host_name: str, req: AttachRequest,
                     addresses: tuple[str, ...], lease_json: dict[str, Any] | None,
                     v6: Any) -> None:
    """Record every address with its origin on the port (ps shows them), when any is
    dynamic (static-only attachments recorded theirs when the port was added)."""
    if not req.plan.dynamic:
        return
    origins = origins_of(req, addresses, lease_json, v6)
    backend.set_port_ids(host_name, {
        naming.K_ADDRESSES: ",".join(addresses),
        K_ORIGINS: ",".join(f"{a}={o}" for a, o in origins.items()),
    })


def recorded_origins(ids: dict[str, str]) -> dict[str, str]:
    out = {}
    for item in ids.get(K_ORIGINS, "").split(","):
        address, _, origin = item.partition("=")
        if address and origin:
            out[address] = origin
    return out
