"""Read-only snapshots of network state, for "nothing changed" assertions.

Take one before and one after an operation and compare with ``==``: rollback tests prove a
failed attach left the host, the bridge and the guest exactly as they were. Netlink reads
use pyroute2 with ``flags=0`` so opening a namespace never creates one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from lab.shell import run

NETNS_DIR = Path("/var/run/netns")


def root_links() -> set[str]:
    """Names of the interfaces in the root network namespace (the one pytest runs in)."""
    with IPRoute() as ipr:
        return {link.get("ifname") for link in ipr.get_links()}


def root_link_details() -> dict[str, dict[str, Any]]:
    """Root netns interfaces by name: kind and whether a veth peer lives in another netns."""
    details: dict[str, dict[str, Any]] = {}
    with IPRoute() as ipr:
        for link in ipr.get_links():
            details[link.get("ifname")] = {
                "kind": link.get(("linkinfo", "kind")),
                "peer_netnsid": link.get("link_netnsid"),
            }
    return details


def ovs_bridges(db: str | None = None) -> set[str]:
    """Names of the OVS bridges."""
    return _lines(run(_vsctl(db, "list-br")).stdout)


def ovs_ports(bridge: str, db: str | None = None) -> set[str]:
    """Names of the ports of BRIDGE (its own internal port excluded, as ovs-vsctl does)."""
    return _lines(run(_vsctl(db, "list-ports", bridge)).stdout)


def ovs_port_records(db: str | None = None) -> dict[str, dict[str, Any]]:
    """Every OVS port by name: its bridge and external_ids."""
    records: dict[str, dict[str, Any]] = {}
    for bridge in ovs_bridges(db):
        for port in ovs_ports(bridge, db):
            records[port] = {"bridge": bridge, "external_ids": {}}
    if not records:
        return records
    out = run(_vsctl(db, "--format=json", "--columns=name,external_ids", "list", "Port")).stdout
    for name, ids in json.loads(out)["data"]:
        if name in records and isinstance(ids, list) and ids[0] == "map":
            records[name]["external_ids"] = dict(ids[1])
    return records


def all_netns() -> set[str]:
    """Names of the named network namespaces (``/var/run/netns``)."""
    try:
        return set(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return set()


def netns_path(target: str | int) -> str:
    """A netns file path for a PID, a netns name or an explicit path."""
    if isinstance(target, int):
        return f"/proc/{target}/ns/net"
    if "/" in target:
        return target
    return str(NETNS_DIR / target)


def netns_state(path_or_pid: str | int) -> dict[str, list[dict[str, Any]]]:
    """Links, addresses and routes (every table, both families) of one network namespace.

    PATH_OR_PID is a PID (its ``/proc/PID/ns/net``), a netns name or a netns file path.
    Values are plain, sorted and free of counters and timers, so equal state compares equal.
    """
    with IPRoute(netns=netns_path(path_or_pid), flags=0) as ipr:
        raw_links = list(ipr.get_links())
        raw_addrs = list(ipr.get_addr())
        raw_routes = list(ipr.get_routes())
    by_index = {link["index"]: link.get("ifname") for link in raw_links}
    links = [
        {
            "name": link.get("ifname"),
            "mac": link.get("address"),
            "mtu": link.get("mtu"),
            "state": link.get("state"),
        }
        for link in raw_links
    ]
    addresses = [
        {
            "ifname": by_index.get(addr["index"], addr["index"]),
            "address": f"{addr.get('address')}/{addr['prefixlen']}",
        }
        for addr in raw_addrs
    ]
    routes = [_route(route, by_index) for route in raw_routes]
    return {
        "links": _sorted(links),
        "addresses": _sorted(addresses),
        "routes": _sorted(routes),
    }


def _route(route: Any, by_index: dict[int, str]) -> dict[str, Any]:
    dst = route.get("dst")
    oif = route.get("oif")
    multipath = route.get("multipath")
    return {
        "table": route.get("table"),
        "family": route["family"],
        "dst": f"{dst}/{route['dst_len']}" if dst else f"default/{route['dst_len']}",
        "gateway": route.get("gateway"),
        "oif": by_index.get(oif, oif) if oif is not None else None,
        "type": route["type"],
        "proto": route["proto"],
        "scope": route["scope"],
        "priority": route.get("priority"),
        "prefsrc": route.get("prefsrc"),
        "multipath": repr(multipath) if multipath else None,
    }


def _sorted(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda item: json.dumps(item, sort_keys=True, default=str))


def _vsctl(db: str | None, *args: str) -> list[str]:
    argv = ["ovs-vsctl", "--timeout=10"]
    if db:
        argv.append(f"--db={db}")
    return [*argv, *args]


def _lines(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if line.strip()}
