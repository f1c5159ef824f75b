"""The real CleanupBackend: bulk reads of OVS, the kernel and Docker, and the one removal.

Reads are bulk on purpose (cleanup must stay fast with a thousand ports): one ovs-vsctl call
for every bridge, port and interface; one netlink dump for every root-netns link with its
kind; each recorded container inspected once per run. Removal is one ovs-vsctl transaction
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
from ovsbridge.system import ovs
from ovsbridge.system.backend import list_ports

log = logging.getLogger(__name__)


class _FixedSnapshot:
    """Hands list_ports a snapshot already read, so facts and ports come from one read."""

    def __init__(self, snap: ovs.Snapshot) -> None:
        self._snap = snap

    def snapshot(self) -> ovs.Snapshot:
        return self._snap


class RealCleanupBackend:
    def __init__(self, ovsdb: ovs.Ovs) -> None:
        self.ovs = ovsdb
        self._containers: dict[str, Any] = {}

    # OVS ----------------------------------------------------------------------------------
    def bridge_exists(self, name: str) -> bool:
        return self.ovs.bridge(name) is not None

    def port_facts(self, bridge: str | None) -> list[PortFacts]:
        snap = self.ovs.snapshot()
        ports = list_ports(_FixedSnapshot(snap), bridge)  # type: ignore[arg-type]
        bridge_ids = {b["name"]: dict(b.get("external_ids") or {}) for b in snap.bridges}
        rows = {(br, row["name"]): (row["_uuid"], len(members))
                for br, row, members in snap.ports_with_interfaces()}
        out = []
        for port in ports:
            uuid, count = rows[(port.bridge, port.port)]
            out.append(PortFacts(port, uuid, count, bridge_ids.get(port.bridge, {})))
        return out

    def remove_ports(self, ports: Sequence[PortFacts]) -> None:
        by_bridge: dict[str, list[str]] = {}
        for item in ports:
            by_bridge.setdefault(item.port.bridge, []).append(item.uuid)
        # NOTE: "remove Bridge B ports UUID" drops exactly the row we judged (Port and
        # Interface are garbage-collected with it); del-port by name could hit a port that
        # an attach re-created under the same name after our read. Absent UUIDs are a no-op,
        # and --if-exists makes a bridge deleted meanwhile one too.
        commands = [ovs.cmd("--if-exists", "remove", "Bridge", br, "ports", *uuids)
                    for br, uuids in sorted(by_bridge.items())]
        log.debug("cleanup: removing %d ports in one transaction", len(ports))
        self.ovs.transact(*commands)

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
