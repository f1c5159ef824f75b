"""Is this machine a lab the tests may run on? Root, OVS, dockerd, the image, the tools, and
no test network anywhere in the root netns (the tests must never touch the host's network).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from collections.abc import Iterable

from pyroute2 import IPRoute

from lab import TEST_IMAGE, TEST_NETWORKS
from lab.shell import LabError, run
from lab.snapshots import netns_path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
TOOLS = ("ovs-vsctl", "ovs-appctl", "docker", "ip", "dnsmasq", "ethtool", "busybox")
FIX = "run ./scripts/lab.sh as root to set up the lab"


def lab_problems() -> list[str]:
    """Everything that keeps the lab tests from running here (empty when ready)."""
    if os.geteuid() != 0:
        return ["the lab tests must run as root (they create namespaces, veths, bridges)"]
    problems = [f"{tool} is not installed ({FIX})" for tool in TOOLS if not shutil.which(tool)]
    if problems:
        return problems
    if _fails(["ovs-vsctl", "--timeout=5", "show"]):
        problems.append(f"Open vSwitch does not answer to `ovs-vsctl show` ({FIX})")
    elif _fails(["ovs-appctl", "-t", "ovs-vswitchd", "version"]):
        problems.append(f"ovs-vswitchd is not running ({FIX})")
    if _fails(["docker", "info"]):
        problems.append(f"dockerd does not answer to `docker info` ({FIX})")
    elif _fails(["docker", "image", "inspect", TEST_IMAGE]):
        problems.append(f"the test image {TEST_IMAGE} is missing ({FIX})")
    problems.extend(
        f"the root netns holds {what}, inside the test networks; the tests refuse to run "
        "because they would disturb this machine's network"
        for what in root_netns_overlaps()
    )
    return problems


def _fails(argv: list[str]) -> bool:
    try:
        return run(argv, check=False, timeout=30).returncode != 0
    except LabError:
        return True


def root_netns_overlaps(netns: str | None = None) -> list[str]:
    """Addresses and routes overlapping the test networks, in the root netns (or NETNS)."""
    found: list[tuple[str, str]] = []
    ipr = IPRoute() if netns is None else IPRoute(netns=netns_path(netns), flags=0)
    with ipr:
        names = {link["index"]: link.get("ifname") for link in ipr.get_links()}
        for addr in ipr.get_addr():
            ifname = names.get(addr["index"], addr["index"])
            found.append(("address", f"{addr.get('address')}/{addr['prefixlen']} on {ifname}"))
        for route in ipr.get_routes():
            dst = route.get("dst")
            if not dst or route["dst_len"] == 0:
                continue  # a default route covers everything; it is not a test route
            oif = names.get(route.get("oif"), route.get("oif"))
            found.append(
                ("route", f"{dst}/{route['dst_len']} (table {route.get('table')}, dev {oif})")
            )
    return [f"{kind} {text}" for kind, text in found if overlaps_test_networks([_net(text)])]


def _net(text: str) -> Network:
    return ipaddress.ip_network(text.split()[0], strict=False)


def overlaps_test_networks(networks: Iterable[Network]) -> bool:
    """True when any of NETWORKS overlaps 198.51.100.0/24, 203.0.113.0/24 or 2001:db8::/32."""
    return any(
        net.version == test.version and net.overlaps(test)  # type: ignore[arg-type]
        for net in networks
        for test in TEST_NETWORKS
    )
