"""The real CleanupBackend: bulk reads of OVS, the kernel and Docker, and the one removal.

Reads are bulk on purpose (cleanup must stay fast with a thousand ports): one OVSDB round
trip for every bridge, port and interface; one netlink dump for every root-netns link with its
kind; each recorded container inspected once per run. Removal is one OVSDB transaction
that takes the ports out of their bridges by UUID; leftover host veths are deleted by ifindex,
so a device re-created under the same name meanwhile is left alone.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Sequence
from typing import Any

from ovsbridge.errors import OperationFailed
from ovsbridge.ops.cleanup import (
    ALIVE,
    GONE,
    RESTARTED,
    STOPPED,
    UNKNOWN,
    KernelLink,
    PortFacts,
)
from ovsbridge.system import ovs, ovsdb
from ovsbridge.system.backend import RealBackend, ports_of, read_snapshot

log = logging.getLogger(__name__)


class RealCleanupBackend:
    def __init__(self, ovs_db: ovs.Ovs) -> None:
        self.ovs = ovs_db
        self._containers: dict[str, Any] = {}
        self._held: dict[tuple[str, str], int] = {}  # locks cleanup holds, with their fds

    def ovn(self) -> Any:
        """The OVN side (this chassis and its central), for stale OVN attachments."""
        from ovsbridge.system.ovn import RealOvnSide

        return RealOvnSide(self.ovs)

    # OVS: straight OVSDB (system/ovsdb.py) ------------------------------------------------
    def bridge_exists(self, name: str) -> bool:
        return ovsdb.bridge_facts(ovsdb.client(self.ovs.db), name) is not None

    def port_facts(self, bridge: str | None) -> list[PortFacts]:
        snap = read_snapshot(self.ovs, bridge)
        ports = ports_of(snap, bridge)
        bridge_ids = {b["name"]: dict(b.get("external_ids") or {}) for b in snap.bridges}
        rows = {(br, row["name"]): (row["_uuid"], len(members))
                for br, row, members in snap.ports_with_interfaces()}
        out = []
        for port in ports:
            uuid, count = rows[(port.bridge, port.port)]
            out.append(PortFacts(port, uuid, count, bridge_ids.get(port.bridge, {})))
        return out

    def remove_ports(self, ports: Sequence[PortFacts]) -> None:
        # NOTE: removing the Port row we judged from its bridge, by UUID, drops exactly that
        # row (Port and Interface are garbage-collected with it); del-port by name could hit
        # a port that an attach re-created under the same name after our read. Absent UUIDs
        # (a bridge or port deleted meanwhile) are a no-op. ONE transaction for all of them;
        # committed but not applied by a stopped ovs-vswitchd is still done (a warning).
        log.debug("cleanup: removing %d ports in one transaction", len(ports))
        RealBackend(self.ovs).del_port_uuids([item.uuid for item in ports],
                                             what=f"{len(ports)} stale")

    # kernel -------------------------------------------------------------------------------
    def kernel_links(self) -> dict[str, KernelLink]:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            out = {}
            for msg in ipr.get_links():
                name = msg.get_attr("IFLA_IFNAME")
                info = msg.get_attr("IFLA_LINKINFO")
                kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
                out[name] = KernelLink(name, msg["index"], kind,
                                       str(msg.get_attr("IFLA_IFALIAS") or ""))
            return out

    def delete_link(self, link: KernelLink) -> bool:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            with IPRoute() as ipr:
                found = ipr.get_links(link.index)
                if not found or found[0].get_attr("IFLA_IFNAME") != link.name:
                    return False  # gone, or the index now names another device
                log.debug("netlink: del link %s (index %d)", link.name, link.index)
                ipr.link("del", index=link.index)
                return True
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT):
                return False
            raise OperationFailed(f"cannot delete {link.name}: {os.strerror(exc.code)}") from exc

    # guests -------------------------------------------------------------------------------
    def _container(self, ref: str) -> Any:
        if ref not in self._containers:
            from ovsbridge.errors import EnvironmentProblem
            from ovsbridge.system.docker import container_status

            try:
                self._containers[ref] = container_status(ref)
            except EnvironmentProblem as exc:
                log.warning("cannot ask Docker about %s: %s", ref, exc.message)
                self._containers[ref] = None
        return self._containers[ref]

    def container_state(self, ref: str) -> str:
        status = self._container(ref)
        if status is None:
            return UNKNOWN
        if not status.exists:
            return GONE
        return ALIVE if status.running else STOPPED

    def guest_state(self, kind: str, key: str, netns_inode: int | None) -> str:
        if kind == "docker":
            status = self._container(key)
            if status is None:
                return UNKNOWN
            if not status.exists:
                return GONE
            if not status.running:
                return STOPPED
            if netns_inode is not None and status.netns_inode != netns_inode:
                return RESTARTED
            return ALIVE
        from ovsbridge.system.docker import NETNS_RUN_DIR

        path = os.path.join(NETNS_RUN_DIR, key) if kind == "netns" else f"/proc/{key}/ns/net"
        try:
            inode = os.stat(path).st_ino
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return GONE
        if netns_inode is not None and inode != netns_inode:
            return RESTARTED
        return ALIVE

    # daemon -------------------------------------------------------------------------------
    def lock_free(self, guest_key: str, ifname: str) -> bool:
        from ovsbridge.system import locks

        return locks.is_free(guest_key, ifname)

    def hold_lock(self, guest_key: str, ifname: str) -> bool:
        from ovsbridge.system import locks

        if (guest_key, ifname) in self._held:
            return True
        fd = locks.try_hold(guest_key, ifname)
        if fd is None:
            return False
        self._held[(guest_key, ifname)] = fd
        return True

    def release_locks(self) -> None:
        while self._held:
            _, fd = self._held.popitem()
            os.close(fd)

    def building_notes(self) -> dict[str, tuple[str, str]]:
        from ovsbridge.system import locks

        return locks.building_notes()

    def sweep_idle_locks(self) -> None:
        from ovsbridge.system import locks, netns

        locks.sweep_idle(netns.link_names())

    def clear_note(self, guest_key: str, ifname: str) -> None:
        from ovsbridge.system import locks

        locks.clear_note(guest_key, ifname)

    def link_alias(self, name: str) -> str | None:
        from ovsbridge.system import netns

        return netns.link_alias(name)

    def drop_lease(self, guest_key: str, ifname: str) -> bool:
        import importlib

        try:
            daemon_client = importlib.import_module("ovsbridge.system.daemon_client")
        except ModuleNotFoundError:
            return False  # no daemon in this build: no lease to drop
        drop = getattr(daemon_client, "drop", None)
        if drop is None:
            return False
        # NOTE: release=True lets the daemon send DHCPRELEASE if it still can; the guest's
        # netns is usually gone, and the daemon then just forgets the lease.
        # No daemon running: nothing is held, drop() returns [].
        return bool(drop(guest_key, ifname, release=True))
