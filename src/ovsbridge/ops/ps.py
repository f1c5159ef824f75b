"""The port-to-container map: every port on the bridges, who made it, and is it healthy.

Owner comes from tags: ours (``ovsbridge.owner``), pipework's (``pipework.*`` keys),
ovs-docker's (``container_id``), else unknown. State is ``ok``, ``stale`` (the guest or its
interface is gone, or the guest restarted into another netns) or ``error`` (OVS reports one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ovsbridge import naming
from ovsbridge.model import PortRecord
from ovsbridge.ops.backend import Backend, OvsPort
from ovsbridge.ops.cleanup import identity

KERNEL_TYPES = ("", "system")


def owner_of(port: OvsPort) -> str:
    ids = port.external_ids
    if ids.get(naming.K_OWNER) == naming.OWNER:
        return "ovsbridge"
    if any(k.startswith("pipework.") for k in (*ids, *port.port_external_ids)):
        return "pipework"
    if naming.OD_CONTAINER_ID in ids:
        return "ovs-docker"
    if any(k.startswith("ovn-") for k in port.port_external_ids):
        return "ovn"  # ovn-controller's tunnel and patch ports
    return "unknown"


def ovn_extra(ids: dict[str, str]) -> dict[str, str]:
    """An OVN attachment's logical switch, port and local binding (ovn-controller's flag)."""
    from ovsbridge.ops.ovn import K_OVN_PORT, K_OVN_SWITCH

    if not ids.get(K_OVN_PORT):
        return {}
    return {"ovn_switch": ids.get(K_OVN_SWITCH, ""), "ovn_port": ids[K_OVN_PORT],
            "ovn_binding": "bound" if ids.get("ovn-installed") == "true" else "not bound"}


def port_state(backend: Backend, port: OvsPort, owner: str,
               host_links: Mapping[str, Any]) -> str:
    # NOTE: one judge for ps and cleanup: ops/cleanup.py's assess.
    from ovsbridge.ops.cleanup import BackendProbe, assess

    return assess(port, owner, host_links, BackendProbe(backend)).state


def port_map(backend: Backend, bridge: str | None = None,
             leases: dict[tuple[str, str], dict[str, Any]] | None = None) -> list[PortRecord]:
    from ovsbridge.ops.cleanup import KernelLink

    host_links = {name: KernelLink(name, 0, None, alias)
                  for name, alias in backend.host_link_aliases().items()}
    records = []
    for port in sorted(backend.ports(bridge), key=lambda p: (p.bridge, p.port)):
        owner = owner_of(port)
        ids = port.external_ids
        extra: dict[str, str] = {}
        details: tuple[dict[str, object], ...] = ()
        if owner == "ovsbridge":
            cid = ids.get(naming.K_CONTAINER_ID)
            name = ids.get(naming.K_CONTAINER_NAME)
            ifname = ids.get(naming.K_IFNAME)
            mac = ids.get(naming.K_MAC)
            addresses = tuple(a for a in ids.get(naming.K_ADDRESSES, "").split(",") if a)
            mode = ids.get(naming.K_MODE)
            lease = (leases or {}).get((cid or "", ifname or ""))
            lease6 = (leases or {}).get((cid or "", f"{ifname}#6"))
            if lease:
                for key in ("expires_at", "renew_at", "state"):
                    if lease.get(key) is not None:
                        extra[key] = str(lease[key])
            extra.update(ovn_extra(ids))
            addresses, details = address_details(ids, addresses, lease, lease6)
        else:
            # NOTE: pipework and ovs-docker tags, under the keys those tools really write.
            found = identity(port, owner)
            cid, name, ifname = found.container_id, found.container_name, found.ifname
            mac, addresses, mode = None, (), None
            if owner == "ovs-docker":
                name = name or cid
        records.append(PortRecord(
            bridge=port.bridge, port=port.port, ofport=port.ofport, container_id=cid,
            container_name=name, ifname=ifname, mac=mac, addresses=addresses, vlan=port.vlan,
            mode=mode,
            state=port_state(backend, port, owner, host_links), owner=owner, extra=extra,
            mtu=port.mtu, address_details=details,
            vlan_mode=port.vlan_mode or ("access" if port.vlan is not None else None),
            trunks=port.trunks,
            rate_limit=port.policing_rate // 1000 if port.policing_rate else None,
            burst=port.policing_burst // 8 if port.policing_rate and port.policing_burst
            else None,
        ))
    return records


_LEASE_KEYS = ("state", "obtained_at", "renew_at", "rebind_at", "expires_at", "lease_time")


def address_details(ids: dict[str, str], addresses: tuple[str, ...],
                    lease: dict[str, Any] | None, lease6: dict[str, Any] | None
                    ) -> tuple[tuple[str, ...], tuple[dict[str, object], ...]]:
    """Every address with its origin; the daemon's current lease replaces the address
    recorded at attach time (a renewal may have moved it) and adds its times."""
    from ovsbridge.ops.addressing import recorded_origins

    origins = recorded_origins(ids)
    rows: list[dict[str, object]] = [
        {"address": a, "origin": origins.get(a, "static")} for a in addresses]
    for origin, current in (("dhcp", lease), ("dhcp6", lease6)):
        if not current:
            continue
        rows = [r for r in rows if r["origin"] != origin]
        row: dict[str, object] = {"address": current.get("address"), "origin": origin}
        row.update({k: current.get(k) for k in _LEASE_KEYS if k in current})
        if current.get("address"):
            rows.insert(0 if origin == "dhcp" else len(rows), row)
    return tuple(str(r["address"]) for r in rows), tuple(rows)
