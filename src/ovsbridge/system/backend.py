"""The real Backend: ops' requests carried out on OVS, netlink, Docker and DHCP.

Thin by design: each method forwards to one adapter call. See ops/backend.py for the seam.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ovsbridge.errors import NotFound, OperationFailed, OvsbridgeError, VswitchdNotApplied
from ovsbridge.model import Guest, GuestSpec, IPAddress, IPInterface
from ovsbridge.ops.backend import BridgeInfo, GuestLink, NewPort, OvsPort, RouteRef
from ovsbridge.system import docker as docker_adapter
from ovsbridge.system import locks, netns, ovs, ovsdb

DEFAULT_BRIDGE_MTU = 1500
log = logging.getLogger(__name__)


class RealBackend:
    def __init__(self, ovs_db: ovs.Ovs) -> None:
        self.ovs = ovs_db  # where OVSDB is (ovs.db); reads and writes go through system/ovsdb.py

    def ovn(self) -> Any:
        """The OVN side of attach/detach (this chassis and its central), made on demand."""
        from ovsbridge.system.ovn import RealOvnSide

        return RealOvnSide(self.ovs)

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
            ifname = str(item.get("ifname", ""))
            if item.get("family") == 6:
                ifname += "#6"  # NOTE: DHCPv6 leases sit next to DHCPv4 ones (ops/ps.py)
            out[(str(guest.get("key", "")), ifname)] = item
        return out

    # OVS: straight OVSDB (system/ovsdb.py), flat in the number of ports --------------------
    @property
    def db(self) -> ovsdb.OvsdbClient:
        return ovsdb.client(self.ovs.db)

    def bridge_info(self, name: str) -> BridgeInfo | None:
        found = ovsdb.bridge_facts(self.db, name)
        if found is None:
            return None
        row, iface = found
        datapath = ovsdb.optional(row.get("datapath_type")) or "system"
        mtu = ovsdb.optional(iface.get("mtu"))
        pinned = ovsdb.optional(iface.get("mtu_request"))
        return BridgeInfo(name, datapath, mtu if isinstance(mtu, int) else None,
                          pinned if isinstance(pinned, int) else None)

    def create_bridge(self, name: str, datapath: str, mtu: int | None = None) -> None:
        """Bridge NAME (if missing) with its internal port, its MTU pinned: ONE transaction."""
        ops = ovsdb.add_bridge_ops(name, datapath, mtu or DEFAULT_BRIDGE_MTU)
        try:
            self.db.transact(ops)
        except VswitchdNotApplied:
            self._undo_unapplied(f"bridge {name}", lambda: self._remove_bridge(name))
            raise
        except OperationFailed as exc:
            if ovsdb.is_failed_check(exc) or self.bridge_info(name) is not None:
                return  # there already (maybe made by a parallel attach meanwhile)
            raise

    def delete_bridge(self, name: str) -> None:
        try:
            self._remove_bridge(name, wait=True)
        except VswitchdNotApplied as exc:
            log.warning("bridge %s removed from OVSDB, but %s", name, exc.message)

    def _remove_bridge(self, name: str, wait: bool = False) -> None:
        found = ovsdb.bridge_facts(self.db, name)
        if found is not None:
            self.db.transact(ovsdb.remove_bridge_ops(found[0]["_uuid"]), wait=wait)

    def auto_datapath(self) -> str:
        return ovs.auto_datapath()

    def ports(self, bridge: str | None = None,
              match: dict[str, str] | None = None) -> list[OvsPort]:
        """Ports (but each bridge's own) with their interface facts.

        MATCH: Interface external_ids that must all be equal, filtered by ovsdb-server, so
        an attach reads only its own rows however many ports the bridge has. Never cached:
        a filtered read decides about one guest, usually under its lock, and must see what
        the previous holder of that lock wrote.
        """
        if match:
            snap = ovs.Snapshot(*ovsdb.matching_read(self.db, match))
        else:
            snap = ovs.Snapshot(*ovsdb.full_read(self.db, bridge))
        return ports_of(snap, bridge, match)

    def add_port(self, bridge: str, port: str, external_ids: dict[str, str],
                 vlan: int | None) -> None:
        self.add_ports(bridge, [NewPort(port, dict(external_ids), vlan)], None)

    def add_ports(self, bridge: str, ports: list[NewPort], pin_mtu: int | None,
                  wait: bool = True) -> int | None:
        """PORTS onto BRIDGE (and PIN_MTU on the bridge's own port) in ONE transaction.

        With WAIT, applied by ovs-vswitchd before this returns; if it does not apply them in
        time the rows are taken out again and VswitchdNotApplied raised, so no port is left
        behind. Without, returns the token for ``wait_applied`` (the caller's undo removes
        the ports if vswitchd never applies them).
        """
        if not ports and pin_mtu is None:
            return None
        ops = ovsdb.add_ports_ops(bridge, [(p.name, p.external_ids, p.vlan) for p in ports],
                                  pin_mtu)
        ops += _port_features(ops, ports)
        try:
            if not wait:
                return self.db.transact_deferred(ops)[1]
            self.db.transact(ops)
        except VswitchdNotApplied:
            names = [p.name for p in ports]
            self._undo_unapplied(f"ports {', '.join(names)}",
                                 lambda: self._remove_port_rows(names))
            raise
        except OperationFailed as exc:
            if ovsdb.is_failed_check(exc):
                raise NotFound(f'bridge "{bridge}" does not exist',
                               hint="create it with 'ovsbridge setup-bridge' or "
                                    "--create-bridge") from exc
            raise
        return None

    def wait_applied(self, token: int) -> None:
        """Until ovs-vswitchd has applied the change that returned TOKEN (add_ports)."""
        self.db.wait_applied(token)

    def _remove_port_rows(self, names: list[str]) -> None:
        uuids = ovsdb.port_uuids(self.db, names)
        if uuids:
            self.db.transact(ovsdb.remove_ports_ops(uuids), wait=False)

    def del_ports(self, ports: list[str]) -> None:
        """Take PORTS (names) off their bridges in one transaction; missing ones are ignored."""
        self.del_port_uuids(ovsdb.port_uuids(self.db, ports), what=", ".join(ports))

    def del_port_uuids(self, uuids: Sequence[str], what: str = "") -> None:
        """Take the Port rows UUIDS off their bridges in one transaction (absent: no-op)."""
        if not uuids:
            return
        try:
            self.db.transact([*ovsdb.remove_ports_ops(uuids), *self._our_qos_ops(uuids)])
        except VswitchdNotApplied as exc:
            # NOTE: OVSDB committed the removal; ovs-vswitchd drops the ports when it comes
            # back. The work of detach/cleanup is done: a warning, not a failure.
            log.warning("removal of ports %s committed to OVSDB, but %s", what or len(uuids),
                        exc.message)

    @staticmethod
    def _undo_unapplied(what: str, undo: Callable[[], object]) -> None:
        log.warning("ovs-vswitchd did not apply %s in time: taking it out of OVSDB", what)
        try:
            undo()
        except OvsbridgeError as exc:
            log.warning("could not take %s out of OVSDB again: %s", what, exc.message)

    def _our_qos_ops(self, port_uuids: Sequence[str]) -> list[dict[str, Any]]:
        """NOTE: QoS is a root table: the QoS ovsbridge made for a port (--rate-limit) is
        deleted in the same transaction as the port, or it would outlive it."""
        wanted = set(port_uuids)
        qos = [ovsdb.optional(p.get("qos")) for p in ovsdb.full_read(self.db)[1]
               if p.get("_uuid") in wanted]
        return [{"op": "delete", "table": "QoS",
                 "where": [["_uuid", "==", ["uuid", str(q)]],
                           ["external_ids", "includes", ["map", [[QOS_KEY, "ovsbridge"]]]]]}
                for q in qos if q]

    def session(self) -> AbstractContextManager[None]:
        return netns.session()

    # serialisation ---------------------------------------------------------------------
    def guest_lock(self, guest_key: str, ifname: str) -> AbstractContextManager[None]:
        return locks.guest_lock(guest_key, ifname)

    def note_building(self, guest_key: str, ifname: str, host_name: str | None) -> None:
        locks.note_building(guest_key, ifname, host_name)

    def try_guest_lock(self, guest_key: str, ifname: str) -> bool:
        return locks.is_free(guest_key, ifname)

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


    # IPv6, MTU, live port changes (ops/ipv6.py, ops/addressing.py, ops/ports.py) ----------
    def ipv6_prepare(self, netns_path: str, ifname: str, autoconf: bool,
                     default_route: bool) -> None:
        from ovsbridge.system import slaac

        slaac.prepare(netns_path, ifname, autoconf=autoconf, default_route=default_route)

    def ra_wait(self, netns_path: str, ifname: str, timeout: float, need_address: bool,
                need_route: bool = True) -> Any:
        from ovsbridge.system import slaac

        return slaac.wait(netns_path, ifname, timeout=timeout, need_address=need_address,
                          need_route=need_route)

    def dhcp6_acquire(self, netns_path: str, ifname: str, *, mac: str, timeout: float) -> Any:
        from ovsbridge.system import dhcp6

        return dhcp6.acquire(netns_path, ifname, mac=mac, timeout=timeout)

    def dhcp6_unapply(self, netns_path: str, ifname: str, lease: Any) -> None:
        from ovsbridge.system import dhcp6

        dhcp6.unapply_lease(netns_path, ifname, lease)

    def dhcp6_release(self, netns_path: str, ifname: str, lease: Any) -> None:
        from ovsbridge.system import dhcp6

        dhcp6.release(netns_path, ifname, lease)

    def resolv_conf_update(self, path: str, source: str, dns: Any, search: Any) -> None:
        from ovsbridge.system import resolvconf

        resolvconf.update(path, source, tuple(dns), tuple(search))

    def set_link_mtu(self, name: str, netns_path: str | None, mtu: int) -> None:
        netns.set_mtu(name, mtu, netns_path)

    def set_port_ids(self, port: str, ids: dict[str, str]) -> None:
        self.db.transact([_iface_ids_op(port, ids)])

    def set_port_columns(self, port: str, port_columns: tuple[str, ...],
                         iface_columns: tuple[str, ...], ids: dict[str, str],
                         qos_max_rate: int | None) -> None:
        """ONE transaction: Port columns, Interface columns and ids, the QoS."""
        current = next((p.qos for p in self.ports() if p.port == port), None)
        prow: dict[str, Any] = {}
        for setting in port_columns:
            column, _, value = setting.partition("=")
            if value == "[]":
                prow[column] = ovsdb.encode([])
            elif column in ("tag",):
                prow[column] = int(value)
            elif column == "trunks":
                prow[column] = ovsdb.encode([int(v) for v in value.strip("[]").split(",") if v])
            else:
                prow[column] = value
        irow = {c: int(v) for c, _, v in (s.partition("=") for s in iface_columns)}
        where = [ovsdb.condition("name", "==", port)]
        ops: list[dict[str, Any]] = []
        if qos_max_rate is not None and current:
            ops.append({"op": "update", "table": "QoS",
                        "where": [["_uuid", "==", ["uuid", current]]],
                        "row": {"other_config": ovsdb.encode(
                            {"max-rate": str(qos_max_rate)})}})
        elif qos_max_rate is not None:
            ops.append({"op": "insert", "table": "QoS", "uuid-name": "qos", "row": {
                "type": "linux-htb",
                "other_config": ovsdb.encode({"max-rate": str(qos_max_rate)}),
                "external_ids": ovsdb.encode({QOS_KEY: "ovsbridge"})}})
            prow["qos"] = ovsdb.encode(ovsdb.NamedUuid("qos"))
        elif current:
            prow["qos"] = ovsdb.encode([])
            ops.append({"op": "delete", "table": "QoS",
                        "where": [["_uuid", "==", ["uuid", current]]]})
        ops.insert(0, {"op": "update", "table": "Port", "where": where, "row": prow})
        if irow:
            ops.append({"op": "update", "table": "Interface", "where": where, "row": irow})
        ops.append(_iface_ids_op(port, ids))
        self.db.transact(ops)

def list_ports(ovs_db: ovs.Ovs, bridge: str | None = None) -> list[OvsPort]:
    """Every port (but each bridge's own internal port) with its interface facts, one read."""
    return ports_of(read_snapshot(ovs_db, bridge), bridge)


def read_snapshot(ovs_db: ovs.Ovs, bridge: str | None = None) -> ovs.Snapshot:
    """Bridges (BRIDGE only, if given), ports and interfaces: one OVSDB round trip."""
    return ovs.Snapshot(*ovsdb.full_read(ovsdb.client(ovs_db.db), bridge))


def ports_of(snap: ovs.Snapshot, bridge: str | None = None,
             match: dict[str, str] | None = None) -> list[OvsPort]:
    out = []
    for br, port, ifaces in snap.ports_with_interfaces():
        if bridge is not None and br != bridge:
            continue
        if port["name"] == br:
            continue
        iface = ifaces[0] if ifaces else {}
        ids = dict(iface.get("external_ids") or {})
        if match and any(ids.get(k) != v for k, v in match.items()):
            continue
        ofport = ovs.scalar(iface.get("ofport"))
        mtu = ovs.scalar(iface.get("mtu"))
        out.append(OvsPort(
            bridge=br, port=port["name"],
            ofport=int(ofport) if isinstance(ofport, int) else None,
            iface_type=iface.get("type") or "",
            error=ovs.scalar(iface.get("error")),
            vlan=ovs.scalar(port.get("tag")),
            external_ids=ids,
            port_external_ids=dict(port.get("external_ids") or {}),
            mac_in_use=ovs.scalar(iface.get("mac_in_use")),
            uuid=str(port.get("_uuid") or ""),
            mtu=mtu if isinstance(mtu, int) else None,
            trunks=tuple(sorted(int(t) for t in ovsdb.as_set(port.get("trunks") or []))),
            vlan_mode=ovs.scalar(port.get("vlan_mode")) or None,
            policing_rate=_int_or_none(iface.get("ingress_policing_rate")),
            policing_burst=_int_or_none(iface.get("ingress_policing_burst")),
            qos=str(q) if (q := ovs.scalar(port.get("qos"))) else None,
        ))
    return out


def _int_or_none(value: Any) -> int | None:
    value = ovs.scalar(value)
    return value if isinstance(value, int) else None


QOS_KEY = "ovsbridge.owner"


def _port_features(ops: list[dict[str, Any]], ports: list[NewPort]) -> list[dict[str, Any]]:
    """Trunks, VLAN mode, policing and the QoS of ops/ports.py, written into the insert rows
    of ADD_PORTS_OPS (so the port and its features are ONE transaction); extra QoS inserts."""
    extra: list[dict[str, Any]] = []
    inserts = {(op["table"], op["row"].get("name")): op["row"] for op in ops
               if op.get("op") == "insert"}
    for index, port in enumerate(ports):
        prow, irow = inserts.get(("Port", port.name)), inserts.get(("Interface", port.name))
        if prow is None or irow is None:
            continue
        for setting in port.port_columns:
            column, _, value = setting.partition("=")
            prow[column] = (ovsdb.encode([int(v) for v in value.split(",") if v])
                            if column == "trunks" else value)
        for setting in port.iface_columns:
            column, _, value = setting.partition("=")
            irow[column] = int(value)
        if port.qos_max_rate is not None:
            name = f"qos{index}"
            extra.append({"op": "insert", "table": "QoS", "uuid-name": name, "row": {
                "type": "linux-htb",
                "other_config": ovsdb.encode({"max-rate": str(port.qos_max_rate)}),
                "external_ids": ovsdb.encode({QOS_KEY: "ovsbridge"})}})
            prow["qos"] = ovsdb.encode(ovsdb.NamedUuid(name))
    return extra


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


def _iface_ids_op(port: str, ids: dict[str, str]) -> dict[str, Any]:
    """Set KEYS of PORT's Interface external_ids (others kept): delete then insert."""
    return {"op": "mutate", "table": "Interface", "where": [ovsdb.condition("name", "==", port)],
            "mutations": [["external_ids", "delete", ovsdb.encode(sorted(ids))],
                          ["external_ids", "insert", ovsdb.encode(dict(ids))]]}
