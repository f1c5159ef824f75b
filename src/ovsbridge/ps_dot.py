"""``ovsbridge ps --format dot``: the port map as a Graphviz graph (pure, no I/O).

Bridges are clusters, VLANs clusters inside them (untagged ports sit in the bridge), ports
are nodes, and each port points at its container (one node per container, so a container
with two interfaces shows both edges). Stale and error ports are drawn red and dashed.
Render with ``ovsbridge ps --format dot | dot -Tsvg > ports.svg``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def quote(text: object) -> str:
    """A DOT double-quoted string (backslashes and quotes escaped, newlines as \\n)."""
    raw = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{raw}"'


def to_dot(records: Iterable[Mapping[str, Any]]) -> str:
    rows = sorted(records, key=lambda r: (str(r.get("bridge")), str(r.get("port"))))
    lines = ["digraph ovsbridge {", "  rankdir=LR;", '  node [fontname="monospace"];']
    by_bridge: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_bridge.setdefault(str(row.get("bridge")), []).append(row)
    containers: dict[str, str] = {}
    edges: list[str] = []
    for index, (bridge, ports) in enumerate(sorted(by_bridge.items())):
        lines.append(f"  subgraph cluster_{index} {{")
        lines.append(f"    label={quote('bridge ' + bridge)};")
        lines.append(f"    {quote('br:' + bridge)} [label={quote(bridge)}, shape=box, "
                     "style=bold];")
        by_vlan: dict[str, list[Mapping[str, Any]]] = {}
        for port in ports:
            by_vlan.setdefault(str(port.get("vlan") or ""), []).append(port)
        for vindex, (vlan, members) in enumerate(sorted(by_vlan.items())):
            indent = "    "
            if vlan:
                lines.append(f"    subgraph cluster_{index}_{vindex} {{")
                lines.append(f"      label={quote('VLAN ' + vlan)}; style=dashed;")
                indent = "      "
            for port in members:
                lines.append(indent + _port_node(bridge, port))
                edges.append(f"  {quote('br:' + bridge)} -> {quote(_port_id(bridge, port))} "
                             "[arrowhead=none];")
                who = port.get("container_id") or port.get("container_name")
                if who:
                    key = "c:" + str(who)
                    containers.setdefault(key, _container_node(key, port))
                    ifname = port.get("ifname") or ""
                    edges.append(f"  {quote(_port_id(bridge, port))} -> {quote(key)} "
                                 f"[label={quote(ifname)}];")
            if vlan:
                lines.append("    }")
        lines.append("  }")
    lines.extend(containers.values())
    lines.extend(edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _port_id(bridge: str, port: Mapping[str, Any]) -> str:
    return f"port:{bridge}:{port.get('port')}"


def _port_node(bridge: str, port: Mapping[str, Any]) -> str:
    label = f"{port.get('port')}\nofport {port.get('ofport')}\n{port.get('owner')}"
    style = "" if port.get("state") == "ok" else ', color=red, style=dashed, fontcolor=red'
    return f"{quote(_port_id(bridge, port))} [label={quote(label)}, shape=ellipse{style}];"


def _container_node(key: str, port: Mapping[str, Any]) -> str:
    name = port.get("container_name") or str(port.get("container_id") or "")[:12]
    addresses = "\n".join(port.get("addresses") or [])
    label = f"{name}\n{port.get('mac') or ''}\n{addresses}".rstrip()
    return f"  {quote(key)} [label={quote(label)}, shape=box3d];"
