"""attach and detach: put a guest's interface on an OVS bridge, or take it off.

attach is a sequence of small steps, each followed by pushing its undo; any failure unwinds
what was done, so the host, the bridge and the guest end exactly as they started. A repeat
of the same attach is a no-op; a different configuration for the same guest and ifname is a
conflict unless ``replace``. detach succeeds when there is nothing left to remove.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ovsbridge import naming
from ovsbridge.errors import Conflict, NotFound, OvsbridgeError
from ovsbridge.model import AttachRequest, Guest, GuestSpec, StaticAddress
from ovsbridge.ops import ovn as ovn_ops
from ovsbridge.ops.backend import Backend, OvsPort
from ovsbridge.ops.undo import UndoStack


@dataclass(frozen=True)
class AttachResult:
    status: str  # attached | already attached | replaced
    bridge: str
    port: str
    guest: str
    container_id: str
    ifname: str
    mac: str
    mtu: int | None
    vlan: int | None
    mode: str
    addresses: tuple[str, ...]
    lease: dict[str, Any] | None = None
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status, "bridge": self.bridge, "port": self.port,
            "container": self.guest, "container_id": self.container_id,
            "ifname": self.ifname, "mac": self.mac, "mtu": self.mtu, "vlan": self.vlan,
            "mode": self.mode, "addresses": list(self.addresses), "lease": self.lease,
        }


@dataclass(frozen=True)
class DetachResult:
    guest: str
    removed: tuple[tuple[str, str, str], ...]  # (bridge, port, ifname)

    def to_json(self) -> dict[str, Any]:
        return {"container": self.guest, "removed": [
            {"bridge": b, "port": p, "ifname": i} for b, p, i in self.removed]}


def resolve_mac(req: AttachRequest, guest: Guest) -> str:
    if req.mac is None:
        return naming.stable_mac(guest.key, req.ifname)
    if req.mac.upper().startswith("U:"):
        return naming.pipework_mac(req.mac[2:])
    return req.mac


def _fingerprint(req: AttachRequest, mac: str, mtu: int | None) -> str:
    config = {
        "bridge": req.bridge, "plan": str(req.plan), "mac": mac, "vlan": req.vlan,
        "mtu": mtu, "host_ifname": req.host_ifname,
    }
    if req.ovn_switch or req.ovn_port:
        config.update(ovn_switch=req.ovn_switch, ovn_port=req.ovn_port)
    if req.plan.mode == "dhcp":
        config.update(hostname=req.hostname, default_route=req.default_route, dns=req.dns)
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def dhcp_hostname(req: AttachRequest, guest: Guest) -> str | None:
    raw = req.hostname or guest.name
    cleaned = re.sub(r"[^A-Za-z0-9-]", "-", raw).strip("-")[:63]
    return cleaned or None


def ours(port: OvsPort) -> bool:
    return port.external_ids.get(naming.K_OWNER) == naming.OWNER


def attachments_of(backend: Backend, key: str, ifname: str | None = None) -> list[OvsPort]:
    return [p for p in backend.ports() if ours(p)
            and p.external_ids.get(naming.K_CONTAINER_ID) == key
            and (ifname is None or p.external_ids.get(naming.K_IFNAME) == ifname)]


def attach(backend: Backend, req: AttachRequest) -> AttachResult:
    guest = backend.resolve_guest(req.guest)
    bridge = backend.bridge_info(req.bridge)
    status = "attached"
    undo = UndoStack()
    try:
        if bridge is None:
            if not req.create_bridge:
                raise NotFound(
                    f'bridge "{req.bridge}" does not exist',
                    hint="create it with 'ovsbridge setup-bridge UPLINK --bridge "
                         f"{req.bridge}', or pass --create-bridge",
                )
            datapath = backend.auto_datapath()
            backend.create_bridge(req.bridge, datapath)
            undo.push(f"delete bridge {req.bridge}", lambda: backend.delete_bridge(req.bridge))
            undo.step_done("bridge")
            bridge = backend.bridge_info(req.bridge)
            if bridge is None:
                raise NotFound(f'bridge "{req.bridge}" vanished right after being created')

        mac = resolve_mac(req, guest)
        mtu = req.mtu or bridge.mtu
        fingerprint = _fingerprint(req, mac, mtu)
        host_name = req.host_ifname or naming.host_ifname(guest.key, req.ifname)

        existing = attachments_of(backend, guest.key, req.ifname)
        if existing:
            found = existing[0]
            if _healthy(backend, found, guest):
                if found.external_ids.get(naming.K_CONFIG) == fingerprint:
                    undo.commit()
                    return _result("already attached", found.bridge, found.port, guest, req,
                                   mac, mtu, _recorded_addresses(found))
                if not req.replace:
                    raise Conflict(
                        f'{_describe(guest)} already has {req.ifname} on bridge '
                        f'"{found.bridge}" with another configuration',
                        hint="detach it first, or pass --replace",
                    )
                status = "replaced"
            _remove_attachment(backend, found, guest)

        if host_name in backend.host_links():
            raise Conflict(f"host interface {host_name} already exists",
                           hint="run 'ovsbridge cleanup', or pick another --host-ifname")
        if backend.guest_link(guest.netns_path, req.ifname) is not None:
            raise Conflict(f"{_describe(guest)} already has an interface named {req.ifname}",
                           hint="pick another --ifname")

        ovn = ovn_ops.attach_prepare(backend, req, guest, mac, undo)
        mac = ovn.mac if ovn else mac
        peer = naming.peer_tmp_ifname(host_name)
        backend.create_veth(host_name, peer, guest.netns_path, mtu)
        undo.push(f"delete veth {host_name}", lambda: backend.delete_host_link(host_name))
        undo.step_done("veth")

        backend.configure_guest_link(guest.netns_path, peer, req.ifname, mac, mtu)
        undo.step_done("guest-link")

        if bridge.datapath == "netdev":
            backend.disable_tx_offload(host_name, None)
            backend.disable_tx_offload(req.ifname, guest.netns_path)
            undo.step_done("offload")
        backend.set_host_up(host_name)

        addresses = tuple(str(s) for s in req.plan.statics)
        ids = _external_ids(guest, req, mac, mtu, fingerprint, addresses)
        ids.update(ovn.external_ids() if ovn else {})
        backend.add_port(req.bridge, host_name, ids, req.vlan)
        undo.push(f"delete port {host_name}", lambda: backend.del_ports([host_name]))
        undo.step_done("port")
        if ovn:
            ovn_ops.attach_bound(backend, ovn, host_name, undo)

        lease_json: dict[str, Any] | None = None
        if req.plan.mode == "static":
            _apply_statics(backend, undo, guest, req, mac)
        elif req.plan.mode == "dhcp":
            lease_json = _apply_dhcp(backend, undo, guest, req, mac)
            addresses = (str(lease_json["address"]),)
        undo.commit()
        return _result(status, req.bridge, host_name, guest, req, mac, mtu, addresses,
                       lease_json)
    except BaseException as exc:
        raise undo.fail(exc) from None


def _apply_statics(backend: Backend, undo: UndoStack, guest: Guest, req: AttachRequest,
                   mac: str) -> None:
    for item in req.plan.statics:
        backend.add_address(guest.netns_path, req.ifname, item.interface)
    undo.step_done("addresses")
    for item in req.plan.statics:
        if item.gateway is not None:
            _replace_default(backend, undo, guest, req.ifname, item)
    undo.step_done("routes")
    for item in req.plan.statics:
        if item.version == 4:
            backend.announce(guest.netns_path, req.ifname, item.interface, mac)
    undo.step_done("announce")


def _replace_default(backend: Backend, undo: UndoStack, guest: Guest, ifname: str,
                     item: StaticAddress) -> None:
    assert item.gateway is not None
    before = backend.default_route(guest.netns_path, item.version)
    backend.replace_default_route(guest.netns_path, ifname, item.gateway,
                                  not item.gateway_on_link)
    if before is not None:
        undo.push(f"restore default route via {before.gateway}",
                  lambda: backend.restore_default_route(guest.netns_path, before))


def _apply_dhcp(backend: Backend, undo: UndoStack, guest: Guest, req: AttachRequest,
                mac: str) -> dict[str, Any]:
    before = backend.default_route(guest.netns_path, 4)
    lease = backend.dhcp_acquire(
        guest.netns_path, req.ifname, mac=mac, hostname=dhcp_hostname(req, guest),
        client_id=b"\x01" + bytes.fromhex(mac.replace(":", "")), timeout=req.dhcp_timeout,
    )
    undo.push("release the DHCP lease",
              lambda: backend.dhcp_release(guest.netns_path, req.ifname, lease))
    undo.step_done("dhcp-lease")
    backend.dhcp_apply(guest.netns_path, req.ifname, lease, req.default_route)
    undo.push("remove the leased address",
              lambda: backend.dhcp_unapply(guest.netns_path, req.ifname, lease))
    if before is not None and req.default_route:
        undo.push("restore the default route",
                  lambda: backend.restore_default_route(guest.netns_path, before))
    undo.step_done("dhcp-apply")
    if req.dns and guest.resolv_conf:
        backend.write_resolv_conf(guest.resolv_conf, lease)
    backend.daemon_hold(guest, req.ifname, lease, {
        "bridge": req.bridge, "default_route": req.default_route, "dns": req.dns,
        "resolv_conf": guest.resolv_conf if req.dns else None,
        "hostname": dhcp_hostname(req, guest),
    })
    undo.push("drop the lease from the daemon",
              lambda: backend.daemon_drop(guest.key, req.ifname, False))
    undo.step_done("dhcp-hold")
    data: dict[str, Any] = lease.to_dict() if hasattr(lease, "to_dict") else dict(lease)
    return data


def _external_ids(guest: Guest, req: AttachRequest, mac: str, mtu: int | None,
                  fingerprint: str, addresses: tuple[str, ...]) -> dict[str, str]:
    ids = {
        naming.K_OWNER: naming.OWNER,
        naming.K_GUEST_KIND: guest.kind,
        naming.K_CONTAINER_ID: guest.key,
        naming.K_CONTAINER_NAME: guest.name,
        naming.K_IFNAME: req.ifname,
        naming.K_NETNS_INODE: str(guest.netns_inode),
        naming.K_MAC: mac,
        naming.K_ADDRESSES: ",".join(addresses),
        naming.K_MODE: req.plan.mode,
        naming.K_CONFIG: fingerprint,
        naming.K_CREATED_AT: f"{time.time():.3f}",
    }
    if guest.pid is not None:
        ids[naming.K_PID] = str(guest.pid)
    if mtu:
        ids[naming.K_MTU] = str(mtu)
    return ids


def _healthy(backend: Backend, port: OvsPort, guest: Guest) -> bool:
    ids = port.external_ids
    if ids.get(naming.K_NETNS_INODE) != str(guest.netns_inode):
        return False
    if port.port not in backend.host_links():
        return False
    return backend.guest_link(guest.netns_path, ids.get(naming.K_IFNAME, "")) is not None


def _recorded_addresses(port: OvsPort) -> tuple[str, ...]:
    text = port.external_ids.get(naming.K_ADDRESSES, "")
    return tuple(a for a in text.split(",") if a)


def _describe(guest: Guest) -> str:
    return f'container "{guest.name}"' if guest.kind == "docker" else f'guest "{guest.name}"'


def _result(status: str, bridge: str, port: str, guest: Guest, req: AttachRequest, mac: str,
            mtu: int | None, addresses: tuple[str, ...],
            lease: dict[str, Any] | None = None) -> AttachResult:
    return AttachResult(status, bridge, port, guest.name, guest.key, req.ifname, mac, mtu,
                        req.vlan, req.plan.mode, addresses, lease)


def _remove_attachment(backend: Backend, port: OvsPort, guest: Guest | None) -> None:
    """Take one attachment down: lease, guest link, port, host link. Idempotent."""
    ids = port.external_ids
    key = ids.get(naming.K_CONTAINER_ID, "")
    ifname = ids.get(naming.K_IFNAME, "")
    if ids.get(naming.K_MODE) == "dhcp":
        backend.daemon_drop(key, ifname, True)
    if guest is not None and ids.get(naming.K_NETNS_INODE) == str(guest.netns_inode):
        backend.delete_guest_link(guest.netns_path, ifname)
    backend.del_ports([port.port])
    backend.delete_host_link(port.port)
    if ids.get(ovn_ops.K_OVN_PORT):
        ovn_ops.detach_release(backend, ids)


def detach(backend: Backend, spec: GuestSpec, ifname: str | None,
           all_ifaces: bool) -> DetachResult:
    guest: Guest | None
    try:
        guest = backend.resolve_guest(spec)
    except (NotFound, Conflict):
        guest = None  # gone or stopped: detach what OVS still records for it
    except OvsbridgeError:
        raise
    matches = _find_for_detach(backend, spec, guest)
    if not all_ifaces:
        wanted = ifname or "eth1"
        matches = [p for p in matches if p.external_ids.get(naming.K_IFNAME) == wanted]
    removed = []
    for port in matches:
        _remove_attachment(backend, port, guest)
        removed.append((port.bridge, port.port, port.external_ids.get(naming.K_IFNAME, "")))
    name = guest.name if guest else str(spec)
    return DetachResult(name, tuple(removed))


def detach_ports(backend: Backend, bridge: str, names: tuple[str, ...]) -> list[str]:
    """Take ovsbridge's ports NAMES off BRIDGE as detach does (leases released too)."""
    done = []
    for port in backend.ports(bridge):
        if port.port in names and ours(port):
            _remove_attachment(backend, port, None)
            done.append(port.port)
    return done


def _find_for_detach(backend: Backend, spec: GuestSpec, guest: Guest | None) -> list[OvsPort]:
    ports = [p for p in backend.ports() if ours(p)]
    if guest is not None:
        return [p for p in ports if p.external_ids.get(naming.K_CONTAINER_ID) == guest.key]
    ref = spec.ref
    out = []
    for p in ports:
        ids = p.external_ids
        if ids.get(naming.K_GUEST_KIND, "docker") != spec.kind:
            continue
        cid = ids.get(naming.K_CONTAINER_ID, "")
        if ref in (cid, ids.get(naming.K_CONTAINER_NAME)) or (
            spec.kind == "docker" and len(ref) >= 12 and cid.startswith(ref)
        ):
            out.append(p)
    return out
