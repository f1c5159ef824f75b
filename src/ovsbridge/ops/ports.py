"""OVS port features of an attachment: access VLAN, trunk, native VLAN, ingress rate limit.

``columns(req)`` says which Port and Interface columns a request sets when its port is
added; ``set_port`` changes a live attachment to a new request in ONE OVSDB transaction
(the columns, and the recorded request and fingerprint in external_ids, so ps, a repeated
attach and the watcher all see the new configuration), never touching the veth.

``--rate-limit`` limits both directions of the container's port:
- what the container sends: OVS ingress policing on its Interface (``ingress_policing_rate``
  in kbit/s, ``_burst`` in kbit);
- what it receives: a ``linux-htb`` QoS on its Port (``max-rate`` in bit/s).

NOTE: measured on the lab's userspace (netdev) datapath with veths: the htb QoS shapes (a
10 Mbit/s limit gave 9.0 Mbit/s), ingress policing does NOT (224 Mbit/s through a 10 Mbit/s
policer): OVS reads the veth with an AF_PACKET socket, which sees a frame before the kernel's
tc ingress policer would drop it. On the kernel (system) datapath both work. So on netdev
bridges only the direction towards the container is limited; attach says so.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from ovsbridge import naming
from ovsbridge.errors import BadInput, NotFound
from ovsbridge.model import GuestSpec
from ovsbridge.ops.backend import Backend, OvsPort
from ovsbridge.request import AttachRequest, build_attach_request

DEFAULT_BURST_FRACTION = 10  # default burst: a tenth of a second at the rate


def vlan_mode(req: AttachRequest) -> str | None:
    if req.trunk:
        return "native-untagged" if req.vlan is not None else "trunk"
    return "access" if req.vlan is not None else None


def burst_kbit(req: AttachRequest) -> int:
    """The policer's burst in kbit: --burst KB * 8, else a tenth of a second at the rate."""
    if req.burst is not None:
        return req.burst * 8
    assert req.rate_limit is not None
    return max(100, req.rate_limit * 1000 // DEFAULT_BURST_FRACTION)


def columns(req: AttachRequest) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(Port column settings beyond ``tag``, Interface column settings) for REQ's port."""
    port: list[str] = []
    if req.trunk:
        port += [f"trunks={','.join(map(str, req.trunk))}", f"vlan_mode={vlan_mode(req)}"]
    iface: list[str] = []
    if req.rate_limit is not None:
        iface += [f"ingress_policing_rate={req.rate_limit * 1000}",
                  f"ingress_policing_burst={burst_kbit(req)}"]
    return tuple(port), tuple(iface)


def qos_max_rate(req: AttachRequest) -> int | None:
    """bit/s of the htb QoS towards the container, or None."""
    return None if req.rate_limit is None else req.rate_limit * 1_000_000


def live_columns(req: AttachRequest) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Every column ``set`` writes, cleared ones included, so the result is REQ exactly."""
    port = [
        f"tag={req.vlan}" if req.vlan is not None else "tag=[]",
        f"trunks=[{','.join(map(str, req.trunk))}]" if req.trunk else "trunks=[]",
        f"vlan_mode={vlan_mode(req)}" if req.trunk else "vlan_mode=[]",
    ]
    if req.rate_limit is not None:
        iface = [f"ingress_policing_rate={req.rate_limit * 1000}",
                 f"ingress_policing_burst={burst_kbit(req)}"]
    else:
        iface = ["ingress_policing_rate=0", "ingress_policing_burst=0"]
    return tuple(port), tuple(iface)


@dataclass(frozen=True)
class SetResult:
    guest: str
    bridge: str
    port: str
    ifname: str
    changed: dict[str, Any]
    vlan: int | None
    vlan_mode: str | None
    trunk: tuple[int, ...]
    rate_limit: int | None
    burst: int | None

    def to_json(self) -> dict[str, Any]:
        return {"container": self.guest, "bridge": self.bridge, "port": self.port,
                "ifname": self.ifname, "changed": self.changed, "vlan": self.vlan,
                "vlan_mode": self.vlan_mode, "trunk": list(self.trunk),
                "rate_limit": self.rate_limit, "burst": self.burst}


SETTABLE = ("vlan", "trunk", "rate_limit", "burst")


def set_port(backend: Backend, spec: GuestSpec, ifname: str,
             changes: dict[str, Any]) -> SetResult:
    """Change a live attachment's port features. CHANGES: request fields (strings, or None
    to clear) among SETTABLE. The veth is untouched (same ifindex); one transaction."""
    bad = sorted(set(changes) - set(SETTABLE))
    if bad or not changes:
        raise BadInput("nothing to change" if not changes else f"cannot set {bad[0]}",
                       hint="give --vlan, --trunk or --rate-limit (and --burst)")
    guest = backend.resolve_guest(spec)
    with backend.guest_lock(guest.key, ifname):
        found = backend.ports(None, {naming.K_OWNER: naming.OWNER,
                                     naming.K_CONTAINER_ID: guest.key,
                                     naming.K_IFNAME: ifname})
        if not found:
            raise NotFound(f'{guest.name} has no interface {ifname} from ovsbridge',
                           hint="attach it first (see 'ovsbridge ps')")
        port = found[0]
        old = recorded_request(port)
        fields = {**old.to_dict(), **changes}
        if changes.get("rate_limit") is None and "rate_limit" in changes:
            fields["burst"] = None
        new = build_attach_request({k: v for k, v in fields.items() if v is not None})
        port_cols, iface_cols = live_columns(new)
        ids = {naming.K_CONFIG: new.fingerprint(),
               naming.K_REQUEST: json.dumps(new.to_dict(), sort_keys=True,
                                            separators=(",", ":"))}
        backend.set_port_columns(port.port, port_cols, iface_cols, ids, qos_max_rate(new))
    changed = {k: getattr(new, k) for k in SETTABLE if getattr(new, k) != getattr(old, k)}
    if "trunk" in changed:
        changed["trunk"] = list(new.trunk)
    return SetResult(guest.name, port.bridge, port.port, ifname, changed, new.vlan,
                     vlan_mode(new), new.trunk, new.rate_limit, new.burst)


def recorded_request(port: OvsPort) -> AttachRequest:
    raw = port.external_ids.get(naming.K_REQUEST)
    if not raw:
        raise BadInput(f"port {port.port} records no request (made by an older ovsbridge)",
                       hint="attach it again with --replace, then use 'ovsbridge set'")
    data = json.loads(raw)
    return dataclasses.replace(build_attach_request(
        {k: v for k, v in {**data, "replace": False, "create_bridge": False}.items()
         if v is not None}))
