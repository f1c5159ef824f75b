"""The real Backend: ops' requests carried out on OVS, netlink, Docker and DHCP.

Thin by design: each method forwards to one adapter call. See ops/backend.py for the seam.
"""

from __future__ import annotations

import dataclasses
import socket
from contextlib import AbstractContextManager
from typing import Any

from ovsbridge.model import Guest, GuestSpec, IPAddress, IPInterface
from ovsbridge.ops.backend import BridgeInfo, GuestLink, NewPort, OvsPort, RouteRef
from ovsbridge.system import docker as docker_adapter
from ovsbridge.system import locks, netns, ovs


class RealBackend:
    def __init__(self, ovsdb: ovs.Ovs) -> None:
        self.ovs = ovsdb
        self._snap: ovs.Snapshot | None = None

    # guests -------------------------------------------------------------------------
    def resolve_guest(self, spec: GuestSpec) -> Guest:
        return docker_adapter.resolve_guest(spec)

    def guest_alive(self, kind: str, key: str, netns_inode: int) -> bool | None:
        return guest_alive(kind, key, netns_inode)

    def container_running(self, ref: str) -> bool | None:
        return docker_adapter.container_status(ref).running

    def daemon_leases(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Leases the daemon holds, by (guest key, ifname); empty when no daemon runs."""
        try:
            from ovsbridge.system import daemon_client

            status = daemon_client.status()
        except Exception:
            return {}
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for item in status.get("leases", []):
            guest = item.get("guest") or {}
            key = (str(guest.get("key", "")), str(item.get("ifname", "")))
            out[key] = item
        return out

    # OVS ------------------------------------------------------------------------------
    def _snapshot(self) -> ovs.Snapshot:
        """One read of OVSDB, reused until this backend writes."""
        if self._snap is None:
            self._snap = self.ovs.snapshot()
        return self._snap

    def _write(self, *commands: ovs.Command) -> None:
        self._snap = None
        self.ovs.transact(*commands)

    def bridge_info(self, name: str) -> BridgeInfo | None:
        snap = self._snapshot()
        row = next((b for b in snap.bridges if b["name"] == name), None)
        if row is None:
            return None
        datapath = ovs.scalar(row["datapath_type"]) or "system"
        iface = next((i for i in snap.interfaces if i["name"] == name), {})
        mtu = ovs.scalar(iface.get("mtu"))
        pinned = ovs.scalar(iface.get("mtu_request"))
        return BridgeInfo(name, datapath, mtu if isinstance(mtu, int) else None,
                          pinned if isinstance(pinned, int) else None)

    def create_bridge(self, name: str, datapath: str) -> None:
        self._write(*ovs.add_bridge_cmds(name, datapath))

    def delete_bridge(self, name: str) -> None:
        self._write(ovs.cmd("--if-exists", "del-br", name))

    def auto_datapath(self) -> str:
        return ovs.auto_datapath()

    def ports(self, bridge: str | None = None,
              match: dict[str, str] | None = None) -> list[OvsPort]:
        # NOTE: a filtered read decides about one guest, usually under its lock: it must see
        # what the previous holder of that lock wrote, so it is never served from the cache.
        found = ports_of(self.ovs.snapshot() if match else self._snapshot(), bridge)
        if match:
            found = [p for p in found
                     if all(p.external_ids.get(k) == v for k, v in match.items())]
        return found

    def add_ports(self, bridge: str, ports: list[NewPort], pin_mtu: int | None) -> None:
        commands: list[ovs.Command] = []
        for port in ports:
            commands += ovs.add_port_cmds(bridge, port.name, port.external_ids, port.vlan)
        if pin_mtu is not None:
            commands.append(ovs.cmd("set", "Interface", bridge, f"mtu_request={pin_mtu}"))
        self._write(*commands)

    def session(self) -> AbstractContextManager[None]:
        return netns.session()

    # serialisation ---------------------------------------------------------------------
    def guest_lock(self, guest_key: str, ifname: str) -> AbstractContextManager[None]:
        return locks.guest_lock(guest_key, ifname)

    def try_guest_lock(self, guest_key: str, ifname: str) -> bool:
        return locks.is_free(guest_key, ifname)

    def del_ports(self, ports: list[str]) -> None:
        self._write(*ovs.del_port_cmds(ports))

    # links ------------------------------------------------------------------------------
    def host_links(self) -> set[str]:
        return netns.link_names()

    def guest_link(self, netns_path: str, ifname: str) -> GuestLink | None:
        state = netns.link(ifname, netns_path)
        if state is None:
            return None
        return GuestLink(state.name, state.mac, state.mtu, state.up, state.addresses)

    def create_veth(self, host: str, peer: str, netns_path: str, mtu: int | None,
                    alias: str) -> None:
        netns.create_veth(host, peer, netns_path, mtu, alias)

    def host_link_alias(self, name: str) -> str | None:
        return netns.link_alias(name)

    def host_link_aliases(self) -> dict[str, str]:
        return netns.link_aliases()

    def set_host_alias(self, name: str, alias: str) -> None:
        netns.set_alias(name, alias)

    def delete_host_link(self, name: str, alias: str | None = None) -> bool:
        return netns.delete_link(name, alias=alias)

    def delete_guest_link(self, netns_path: str, ifname: str) -> bool:
        try:
            return netns.delete_link(ifname, netns_path)
        except Exception:
            return False

    def configure_guest_link(self, netns_path: str, tmp: str, ifname: str, mac: str,
                             mtu: int | None) -> None:
        netns.configure_guest_link(netns_path, tmp, ifname, mac, mtu)

    def disable_tx_offload(self, name: str, netns_path: str | None) -> None:
        netns.disable_tx_offload(name, netns_path)

    # addresses and routes -------------------------------------------------------------
    def add_address(self, netns_path: str, ifname: str, iface: IPInterface) -> None:
        if iface.version == 6:
            netns.enable_ipv6(netns_path, ifname)
        netns.add_address(netns_path, ifname, iface)

    def default_route(self, netns_path: str, version: int) -> RouteRef | None:
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        for route in netns.default_routes(netns_path):
            if route["family"] == family:
                return RouteRef(version, route["gateway"], route["oif"])
        return None

    def replace_default_route(self, netns_path: str, ifname: str, gateway: IPAddress,
                              on_link: bool) -> None:
        netns.replace_default_route(netns_path, ifname, gateway, on_link)

    def restore_default_route(self, netns_path: str, route: RouteRef) -> None:
        netns.restore_default_route(netns_path, route.version, route.gateway, route.oif)

    def announce(self, netns_path: str, ifname: str, iface: IPInterface, mac: str) -> None:
        if iface.version == 4:
            netns.gratuitous_arp(netns_path, ifname, iface.ip, mac)

    # DHCP ------------------------------------------------------------------------------
    def dhcp_acquire(self, netns_path: str, ifname: str, *, mac: str, hostname: str | None,
                     client_id: bytes, timeout: float) -> Any:
        from ovsbridge.system import dhcp

        return dhcp.acquire(netns_path, ifname, mac=mac, hostname=hostname,
                            client_id=client_id, timeout=timeout)

    def dhcp_apply(self, netns_path: str, ifname: str, lease: Any, default_route: bool) -> None:
        from ovsbridge.system import dhcp

        dhcp.apply_lease(netns_path, ifname, lease, default_route=default_route)

    def dhcp_unapply(self, netns_path: str, ifname: str, lease: Any) -> None:
        from ovsbridge.system import dhcp

        dhcp.unapply_lease(netns_path, ifname, lease)

    def dhcp_release(self, netns_path: str, ifname: str, lease: Any) -> None:
        from ovsbridge.system import dhcp

        dhcp.release(netns_path, ifname, lease)

    def write_resolv_conf(self, path: str, lease: Any) -> None:
        from ovsbridge.system import dhcp

        dhcp.write_resolv_conf(path, lease)

    def daemon_hold(self, guest: Guest, ifname: str, lease: Any,
                    options: dict[str, Any]) -> None:
        from ovsbridge.system import daemon_client

        daemon_client.hold(dataclasses.asdict(guest), ifname, lease, options)

    def daemon_drop(self, guest_key: str, ifname: str, release: bool) -> None:
        from ovsbridge.system import daemon_client

        daemon_client.drop(guest_key, ifname, release=release)


def list_ports(ovsdb: ovs.Ovs, bridge: str | None = None) -> list[OvsPort]:
    """Every port (but each bridge's own internal port) with its interface facts, one read."""
    return ports_of(ovsdb.snapshot(), bridge)


def ports_of(snap: ovs.Snapshot, bridge: str | None = None) -> list[OvsPort]:
    out = []
    for br, port, ifaces in snap.ports_with_interfaces():
        if bridge is not None and br != bridge:
            continue
        if port["name"] == br:
            continue
        iface = ifaces[0] if ifaces else {}
        ofport = ovs.scalar(iface.get("ofport"))
        out.append(OvsPort(
            bridge=br, port=port["name"],
            ofport=int(ofport) if isinstance(ofport, int) else None,
            iface_type=iface.get("type") or "",
            error=ovs.scalar(iface.get("error")),
            vlan=ovs.scalar(port.get("tag")),
            external_ids=dict(iface.get("external_ids") or {}),
            port_external_ids=dict(port.get("external_ids") or {}),
            mac_in_use=ovs.scalar(iface.get("mac_in_use")),
            uuid=str(port.get("_uuid") or ""),
            mtu=mtu if isinstance(mtu := ovs.scalar(iface.get("mtu")), int) else None,
        ))
    return out


def guest_alive(kind: str, key: str, netns_inode: int) -> bool | None:
    """Is the recorded guest still there in the same netns? None when it cannot be told."""
    import os

    if kind == "docker":
        status = docker_adapter.container_status(key)
        return status.running and status.netns_inode == netns_inode
    path = (os.path.join(docker_adapter.NETNS_RUN_DIR, key) if kind == "netns"
            else f"/proc/{key}/ns/net")
    try:
        return os.stat(path).st_ino == netns_inode
    except (FileNotFoundError, ValueError):
        return False
