"""What ``ovsbridge pipework`` asks of the host, as the pipework script asks it.

Reads /sys/class/net (is NAME a Linux bridge, an IPoIB device, a NIC; which interface has a
MAC), OVSDB (is NAME an OVS bridge) and Docker (is GUEST a container); runs ``ip``/``tc`` in
a guest's netns with ``nsenter --net`` (argv, no shell); waits for an interface to appear.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Sequence

from ovsbridge.errors import EnvironmentProblem
from ovsbridge.pipework_argv import HostKind
from ovsbridge.system import ovs

log = logging.getLogger(__name__)
SYS_NET = "/sys/class/net"
ARPHRD_INFINIBAND = 32


class SysHostFacts:
    def __init__(self, ovsdb: ovs.Ovs) -> None:
        self.ovs = ovsdb
        self._bridges: set[str] | None = None

    def ovs_bridges(self) -> set[str]:
        if self._bridges is None:
            self._bridges = {b["name"] for b in self.ovs.snapshot().bridges}
        return self._bridges

    def kind_of(self, name: str) -> HostKind | None:
        if name in self.ovs_bridges():
            return "ovs-bridge"
        path = os.path.join(SYS_NET, name)
        if not name or "/" in name or not os.path.isdir(path):
            return None
        if os.path.isdir(os.path.join(path, "bridge")):
            return "linux-bridge"
        try:
            with open(os.path.join(path, "type")) as handle:
                if int(handle.read().strip() or 0) == ARPHRD_INFINIBAND:
                    return "ipoib"
        except (OSError, ValueError):
            pass
        return "nic"

    def interface_with_mac(self, mac: str) -> str | None:
        """The interface whose MAC is MAC; an OVS bridge among several (after setup-bridge
        the bridge carries its uplink's MAC), else the first by name as pipework's glob."""
        matches = []
        for name in sorted(os.listdir(SYS_NET)):
            try:
                with open(os.path.join(SYS_NET, name, "address")) as handle:
                    if handle.read().strip().lower() == mac:
                        matches.append(name)
            except OSError:
                continue
        bridges = [m for m in matches if m in self.ovs_bridges()]
        found = bridges or matches
        return found[0] if found else None


def docker_knows(ref: str) -> bool:
    """Is REF a container Docker knows (False also when Docker cannot be reached)?"""
    from ovsbridge.system.docker import inspect_container

    try:
        return inspect_container(ref) is not None
    except EnvironmentProblem:
        return False


def run_in_netns(netns_path: str, argv: Sequence[str]) -> int:
    """Run ARGV in the netns at NETNS_PATH with the caller's stdio; its exit status."""
    full = ["nsenter", f"--net={netns_path}", "--", *argv]
    log.debug("exec: %s", " ".join(full))
    try:
        return subprocess.run(full, check=False).returncode
    except FileNotFoundError as exc:
        raise EnvironmentProblem(f"cannot run {argv[0]} in the guest: {exc.filename} not found",
                                 hint="install util-linux (nsenter) and iproute2") from exc


def wait_for_interface(ifname: str, poll: float = 1.0) -> None:
    """pipework --wait: until IFNAME has carrier or exists (no time limit, as pipework)."""
    path = os.path.join(SYS_NET, ifname)
    while not os.path.exists(path):
        time.sleep(poll)
