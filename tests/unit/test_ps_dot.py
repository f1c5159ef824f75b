"""ps --format dot: bridges, VLANs, ports and containers, every value escaped."""

from __future__ import annotations

from ovsbridge.ps_dot import quote, to_dot

ROWS = [
    {"bridge": "ovsbr0", "port": "ovb1", "ofport": 1, "container_id": "c1" * 32,
     "container_name": "web1", "ifname": "eth1", "mac": "02:00:00:00:00:01",
     "addresses": ["198.51.100.5/24"], "vlan": 20, "state": "ok", "owner": "ovsbridge"},
    {"bridge": "ovsbr0", "port": "veth1pl42", "ofport": 2, "container_id": "c1" * 32,
     "container_name": "web1", "ifname": "eth2", "mac": None, "addresses": [],
     "vlan": None, "state": "stale", "owner": "pipework"},
    {"bridge": "ovsbr0", "port": "eth0", "ofport": 3, "container_id": None,
     "container_name": None, "ifname": None, "mac": None, "addresses": [], "vlan": None,
     "state": "ok", "owner": "unknown"},
]


def test_graph_has_bridges_vlans_ports_and_one_node_per_container() -> None:
    dot = to_dot(ROWS)
    assert dot.startswith("digraph ovsbridge {") and dot.rstrip().endswith("}")
    assert 'label="VLAN 20"' in dot
    assert dot.count("shape=box3d") == 1  # web1 once, with two edges
    assert '-> "c:' + "c1" * 32 + '" [label="eth1"]' in dot
    assert '-> "c:' + "c1" * 32 + '" [label="eth2"]' in dot
    assert "color=red" in dot  # the stale port
    assert dot.count("{") == dot.count("}")


def test_quote_escapes() -> None:
    assert quote('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
