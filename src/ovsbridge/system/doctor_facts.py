"""The facts ``ovsbridge doctor`` judges: OVSDB, the kernel, ethtool, Docker, the daemon.

Read-only, except the optional DHCP probe: a throwaway netns (an ``unshare --net sleep``
started and stopped by its PID), one veth from the bridge into it (TX offload off on the
userspace datapath), one DISCOVER and the first OFFER; no REQUEST, so the server leases
nothing. The probe's port and veth are removed before it returns, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from typing import Any

from ovsbridge import naming
from ovsbridge.errors import EnvironmentProblem, OperationFailed, OvsbridgeError
from ovsbridge.ops.backend import OvsPort
from ovsbridge.ops.doctor import BridgeFacts, DockerFacts, ProbeResult, UplinkFacts
from ovsbridge.system import netns, ovs

log = logging.getLogger(__name__)
PROBE_ROLE = "doctor-probe"


class RealDoctorFacts:
    def __init__(self, ovsdb: ovs.Ovs) -> None:
        self.ovs = ovsdb
        self._snap: ovs.Snapshot | None = None
        self._links: dict[str, Any] | None = None

    def _snapshot(self) -> ovs.Snapshot:
        if self._snap is None:
            self._snap = self.ovs.snapshot()
        return self._snap

    # OVS ----------------------------------------------------------------------------------
    def is_root(self) -> bool:
        return os.geteuid() == 0

    def ovs_version(self) -> str:
        _, out = self.ovs.run(ovs.cmd("get", "Open_vSwitch", ".", "ovs_version"))
        return out.strip().strip('"') or "(version unknown)"

    def kernel_datapath(self) -> bool:
        return ovs.kernel_datapath_available()

    def bridges(self) -> list[BridgeFacts]:
        snap = self._snapshot()
        out = []
        for row in snap.bridges:
            name = row["name"]
            iface = next((i for i in snap.interfaces if i["name"] == name), {})
            mtu = ovs.scalar(iface.get("mtu"))
            out.append(BridgeFacts(name, ovs.scalar(row.get("datapath_type")) or "system",
                                   mtu if isinstance(mtu, int) else None,
                                   dict(row.get("external_ids") or {})))
        return sorted(out, key=lambda b: b.name)

    def ports(self, bridge: str) -> list[OvsPort]:
        from ovsbridge.system.backend import ports_of

        return ports_of(self._snapshot(), bridge)

    def port_mtu(self, port: str) -> int | None:
        iface = next((i for i in self._snapshot().interfaces if i["name"] == port), {})
        mtu = ovs.scalar(iface.get("mtu"))
        return mtu if isinstance(mtu, int) else None

    # kernel -------------------------------------------------------------------------------
    def link_kind(self, name: str) -> str | None:
        if self._links is None:
            from ovsbridge.system.cleanup_backend import RealCleanupBackend

            self._links = RealCleanupBackend(self.ovs).kernel_links()
        link = self._links.get(name)
        return None if link is None else link.kind

    def tx_checksum_on(self, name: str) -> bool | None:
        return tx_checksum_on(name)

    # Docker and the daemon -------------------------------------------------------------
    def docker(self) -> DockerFacts:
        try:
            from ovsbridge.system.docker import _client

            client = _client()
            version = client.version()
            info = client.info()
        except EnvironmentProblem as exc:
            return DockerFacts(None, None, False, exc.message)
        except Exception as exc:  # the SDK's connection errors
            return DockerFacts(None, None, False, str(exc))
        rootless = any("rootless" in str(opt) for opt in info.get("SecurityOptions") or [])
        return DockerFacts(str(version.get("ApiVersion")), str(version.get("Version")),
                           rootless)

    def daemon_version(self) -> str | None:
        from ovsbridge.system import daemon_client

        try:
            info = daemon_client.ping()
        except Exception:
            return None
        return str(info.get("version")) if info else None

    def stale_ports(self, bridge: str) -> list[tuple[str, str]]:
        from ovsbridge.errors import NotFound
        from ovsbridge.ops.cleanup import cleanup
        from ovsbridge.system.cleanup_backend import RealCleanupBackend

        try:
            result = cleanup(RealCleanupBackend(self.ovs), bridge, dry_run=True)
        except NotFound:
            return []  # the bridge went away since we listed it
        return [(e.port, e.reason) for e in result.removed]

    def uplink(self, bridge: str, uplink: str) -> UplinkFacts:
        snap = self._snapshot()
        in_bridge = any(br == bridge and port["name"] == uplink
                        for br, port, _ in snap.ports_with_interfaces())
        state = netns.link(uplink)
        bridge_state = netns.link(bridge)
        carrier = _read(f"/sys/class/net/{uplink}/carrier") == "1"
        default_dev = _default_route_dev()
        return UplinkFacts(uplink, in_bridge, state is not None,
                           state is not None and state.up and carrier,
                           state.addresses if state else (),
                           bridge_state.addresses if bridge_state else (), default_dev)

    # the DHCP probe ---------------------------------------------------------------------
    def dhcp_probe(self, bridge: str, timeout: float) -> ProbeResult:
        host = naming.host_ifname(PROBE_ROLE, bridge)
        peer = naming.peer_tmp_ifname(host)
        mac = naming.stable_mac(PROBE_ROLE, bridge)
        info = next((b for b in self.bridges() if b.name == bridge), None)
        holder = subprocess.Popen(["unshare", "--net", "sleep", "300"],
                                  stdin=subprocess.DEVNULL)
        added = False
        try:
            path = f"/proc/{holder.pid}/ns/net"
            _wait_own_netns(holder.pid)
            netns.create_veth(host, peer, path, info.mtu if info else None)
            netns.configure_guest_link(path, peer, "eth0", mac, None)
            if info is not None and info.datapath == "netdev":
                netns.disable_tx_offload(host, None)
                netns.disable_tx_offload("eth0", path)
            # NOTE: create_veth brings the host end up
            self.ovs.transact(*ovs.add_port_cmds(bridge, host, {"ovsbridge.role": PROBE_ROLE},
                                                 None))
            added = True
            started = time.monotonic()
            server, offered = _discover(path, "eth0", mac, timeout)
            return ProbeResult(server, offered, round(time.monotonic() - started, 1))
        finally:
            if added:
                with contextlib.suppress(Exception):
                    self.ovs.transact(*ovs.del_port_cmds([host]))
            with contextlib.suppress(Exception):
                netns.delete_link(host)
            holder.send_signal(signal.SIGKILL)
            holder.wait()


def tx_checksum_on(name: str) -> bool | None:
    """Is TX checksum offload on for NAME (root netns)? None: cannot tell.

    NOTE: the same legacy ETHTOOL_GTXCSUM ioctl netns.disable_tx_offload reads first.
    """
    try:
        return netns.tx_checksum_on(name)
    except OvsbridgeError:
        return None


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _default_route_dev() -> str | None:
    """The device of the host's IPv4 default route (main table), or None."""
    import socket

    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for route in ipr.get_routes(family=socket.AF_INET, table=254):
            oif = route.get_attr("RTA_OIF")
            if route["dst_len"] == 0 and oif:
                return _ifname(int(oif))
    return None


def _ifname(index: int) -> str | None:
    for name in os.listdir("/sys/class/net"):
        if _read(f"/sys/class/net/{name}/ifindex") == str(index):
            return name
    return None


def _wait_own_netns(pid: int, timeout: float = 5.0) -> None:
    host = os.stat("/proc/thread-self/ns/net").st_ino
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{pid}/ns/net").st_ino != host:
                return
        if time.monotonic() > deadline:
            raise OperationFailed("the DHCP probe's namespace never appeared")
        time.sleep(0.01)


def _discover(path: str, ifname: str, mac: str, timeout: float) -> tuple[str | None, str | None]:
    """One DISCOVER (resent with backoff) and the first OFFER: (server id, offered address).

    NOTE: built on the DHCP adapter's own session (system/dhcp.py), so the probe speaks
    exactly as attach does; it stops at the OFFER, and an OFFER leases nothing.
    """
    from ovsbridge.system import dhcp

    async def run() -> tuple[str | None, str | None]:
        socks = await dhcp._open_async(path, ifname, None)
        try:
            ident = dhcp._Identity(socks.mac, None,
                                   b"\x01" + bytes.fromhex(mac.replace(":", "")))
            session = dhcp._Session(socks, ident)
            offer, _ = await session.transact(
                lambda xid: dhcp._discover_msg(ident, None, xid), frozenset({dhcp._OFFER}),
                time.monotonic() + timeout)
        finally:
            socks.close()
        if offer is None:
            return None, None
        server = offer.dhcp["options"].get("server_id") or offer.ip_src
        return str(server), str(offer.dhcp["yiaddr"])

    result: tuple[str | None, str | None] = asyncio.run(run())
    return result
