"""The host side of ``ovsbridge adopt``: the guest end of a veth, DHCP evidence, re-tagging.

The guest end is found by the veth's peer index (IFLA_LINK of the host end is the peer's
ifindex in the guest netns), never by name. DHCP evidence: a DHCP client process whose netns
is the guest's (from /proc/PID/ns/net), or an IPv4 address with a finite lifetime (set by
clients that track their lease). Tags are written in one ovs-vsctl transaction.
"""

from __future__ import annotations

import logging
import os

from ovsbridge.model import Guest
from ovsbridge.ops.adopt import Evidence
from ovsbridge.system import netns, ovs

log = logging.getLogger(__name__)
DHCP_CLIENTS = ("udhcpc", "dhclient", "dhcpcd", "dhcpcd5")
INFINITY = 0xFFFFFFFF


class RealAdoptProbe:
    def __init__(self, ovsdb: ovs.Ovs) -> None:
        self.ovs = ovsdb

    def peer_ifname(self, host_link: str, netns_path: str) -> str | None:
        with netns._ipr() as ipr:
            found = ipr.link_lookup(ifname=host_link)
            if not found:
                return None
            msg = ipr.get_links(found[0])[0]
            peer_index = msg.get_attr("IFLA_LINK")
        if not peer_index:
            return None
        with netns._ipr(netns_path) as ipr:
            links = [m for m in ipr.get_links() if m["index"] == peer_index]
            return str(links[0].get_attr("IFLA_IFNAME")) if links else None

    def dhcp_evidence(self, guest: Guest, ifname: str) -> Evidence:
        clients = dhcp_clients_in(guest.netns_inode)
        if clients:
            names = ", ".join(f"{name} (pid {pid})" for pid, name in clients)
            return Evidence("dhcp", f"{names} runs in the container's netns",
                            tuple(pid for pid, _ in clients))
        if _has_leased_ipv4(guest.netns_path, ifname):
            return Evidence("dhcp", "its IPv4 address has a lease lifetime")
        return Evidence("unknown", "no DHCP client runs in the container and its address has "
                                   "no lifetime")

    def set_interface_ids(self, port: str, ids: dict[str, str]) -> None:
        self.ovs.transact(ovs.external_ids_args("Interface", port, ids))


def dhcp_clients_in(netns_inode: int) -> list[tuple[int, str]]:
    """(pid, name) of the DHCP client processes whose netns has inode NETNS_INODE."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino != netns_inode:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        names = [os.path.basename(a.decode(errors="replace")) for a in argv[:2] if a]
        client = next((n for n in names if n in DHCP_CLIENTS), None)
        if client:
            out.append((int(entry), client))
    return sorted(out)


def _has_leased_ipv4(netns_path: str, ifname: str) -> bool:
    import socket

    with netns._ipr(netns_path) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return False
        for msg in ipr.get_addr(index=found[0], family=socket.AF_INET):
            info = msg.get_attr("IFA_CACHEINFO")
            if info is not None and info.get("ifa_valid", INFINITY) != INFINITY:
                return True
    return False
