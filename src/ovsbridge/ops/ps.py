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

KERNEL_TYPES = ("", "system")


def owner_of(port: OvsPort) -> str:
    ids = port.external_ids
    if ids.get(naming.K_OWNER) == naming.OWNER:
        return "ovsbridge"
    if any(k.startswith("pipework.") for k in (*ids, *port.port_external_ids)):
        return "pipework"
    if "container_id" in ids:
        return "ovs-docker"
    return "unknown"


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
        if owner == "ovsbridge":
            cid = ids.get(naming.K_CONTAINER_ID)
            name = ids.get(naming.K_CONTAINER_NAME)
            ifname = ids.get(naming.K_IFNAME)
            mac = ids.get(naming.K_MAC)
            addresses = tuple(a for a in ids.get(naming.K_ADDRESSES, "").split(",") if a)
            mode = ids.get(naming.K_MODE)
            lease = (leases or {}).get((cid or "", ifname or ""))
            if lease:
                addresses = (str(lease["address"]),) if lease.get("address") else ()
                for key in ("expires_at", "renew_at", "state"):
                    if lease.get(key) is not None:
                        extra[key] = str(lease[key])
        elif owner == "ovs-docker":
            cid = ids.get("container_id")
            name, ifname, mac, addresses, mode = cid, ids.get("container_iface"), None, (), None
        else:
            pw = {**port.port_external_ids, **ids}
            cid = pw.get("pipework.container_id") if owner == "pipework" else None
            name = pw.get("pipework.container_name") if owner == "pipework" else None
            ifname = pw.get("pipework.ifname") if owner == "pipework" else None
            mac, addresses, mode = None, (), None
        records.append(PortRecord(
            bridge=port.bridge, port=port.port, ofport=port.ofport, container_id=cid,
            container_name=name, ifname=ifname, mac=mac, addresses=addresses, vlan=port.vlan,
            mode=mode,
            state=port_state(backend, port, owner, host_links), owner=owner, extra=extra,
            mtu=port.mtu,
        ))
    return records
