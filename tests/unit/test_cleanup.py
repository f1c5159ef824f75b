"""cleanup's decisions against an in-memory world: what is removed, what is kept, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ovsbridge import naming
from ovsbridge.errors import NotFound
from ovsbridge.ops import cleanup as cl
from ovsbridge.ops.backend import OvsPort
from ovsbridge.ops.cleanup import KernelLink, PortFacts

NOW = 1_000_000.0
OLD = f"{NOW - 3600:.3f}"
CID = "a" * 64
CID2 = "b" * 64


@dataclass
class FakeCleanupBackend:
    facts: list[PortFacts] = field(default_factory=list)
    links: dict[str, KernelLink] = field(default_factory=dict)
    notes: dict[str, tuple[str, str]] = field(default_factory=dict)  # host name -> key, ifname
    guests: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # key -> state, inode
    containers: dict[str, str] = field(default_factory=dict)  # ref -> state
    bridges: set[str] = field(default_factory=lambda: {"br0"})
    transactions: list[list[str]] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    drop_fails: bool = False
    reads: list[str] = field(default_factory=list)

    def bridge_exists(self, name: str) -> bool:
        return name in self.bridges

    def port_facts(self, bridge: str | None) -> list[PortFacts]:
        self.reads.append("ovs")
        return [f for f in self.facts if bridge is None or f.port.bridge == bridge]

    def kernel_links(self) -> dict[str, KernelLink]:
        self.reads.append("kernel")
        return dict(self.links)

    def remove_ports(self, ports: Any) -> None:
        self.transactions.append([p.uuid for p in ports])
        gone = {p.uuid for p in ports}
        self.facts = [f for f in self.facts if f.uuid not in gone]

    def delete_link(self, link: KernelLink) -> bool:
        self.deleted.append(link.name)
        return self.links.pop(link.name, None) is not None

    def lock_free(self, guest_key: str, ifname: str) -> bool:
        return True

    def hold_lock(self, guest_key: str, ifname: str) -> bool:
        return True

    def release_locks(self) -> None:
        pass

    def building_notes(self) -> dict[str, tuple[str, str]]:
        return dict(self.notes)

    def sweep_idle_locks(self) -> None:
        pass

    def clear_note(self, guest_key: str, ifname: str) -> None:
        self.notes = {k: v for k, v in self.notes.items() if v != (guest_key, ifname)}

    def link_alias(self, name: str) -> str | None:
        link = self.links.get(name)
        return None if link is None else link.alias

    def drop_lease(self, guest_key: str, ifname: str) -> bool:
        if self.drop_fails:
            raise RuntimeError("daemon says no")
        self.dropped.append((guest_key, ifname))
        return True

    def guest_state(self, kind: str, key: str, netns_inode: int | None) -> str:
        state, inode = self.guests.get(key, (cl.GONE, None))
        if state == cl.ALIVE and netns_inode is not None and inode != netns_inode:
            return cl.RESTARTED
        return state

    def container_state(self, ref: str) -> str:
        return self.containers.get(ref, cl.GONE)

    # building the world ------------------------------------------------------------------
    def add(self, name: str, *, bridge: str = "br0", iface_type: str = "", ids: dict[str, str]
            | None = None, port_ids: dict[str, str] | None = None, link: str | None = "veth",
            error: str | None = None, ofport: int = 5, interfaces: int = 1,
            bridge_ids: dict[str, str] | None = None) -> None:
        port = OvsPort(bridge, name, ofport, iface_type, error, None, dict(ids or {}),
                       dict(port_ids or {}))
        self.facts.append(PortFacts(port, f"uuid-{name}", interfaces, dict(bridge_ids or {})))
        if link is not None:
            alias = ""
            if ids and ids.get(naming.K_OWNER) == naming.OWNER:
                alias = naming.link_alias(ids[naming.K_CONTAINER_ID], ids[naming.K_IFNAME],
                                          naming.ALIAS_READY)
            self.links[name] = KernelLink(name, 100 + len(self.links), None if link == "nic"
                                          else link, alias)


def ours(cid: str = CID, *, inode: int = 77, mode: str = "static", created: str = OLD,
         ifname: str = "eth1") -> dict[str, str]:
    return {naming.K_OWNER: naming.OWNER, naming.K_GUEST_KIND: "docker",
            naming.K_CONTAINER_ID: cid, naming.K_CONTAINER_NAME: "web1", naming.K_IFNAME: ifname,
            naming.K_NETNS_INODE: str(inode), naming.K_MODE: mode, naming.K_CREATED_AT: created}


def run(backend: FakeCleanupBackend, **kwargs: Any) -> cl.CleanupResult:
    return cl.cleanup(backend, now=NOW, **kwargs)


def removed(result: cl.CleanupResult) -> set[str]:
    return {e.port for e in result.removed}


def reason(result: cl.CleanupResult, port: str) -> str:
    return next(e.reason for e in (*result.removed, *result.kept) if e.port == port)


def test_our_port_of_a_live_container_is_kept() -> None:
    b = FakeCleanupBackend(guests={CID: (cl.ALIVE, 77)})
    b.add("ovb1", ids=ours())
    result = run(b)
    assert removed(result) == set() and reason(result, "ovb1") == "healthy"
    assert b.transactions == []


@pytest.mark.parametrize(("guest", "link", "why"), [
    ((cl.GONE, None), None, "interface gone from the kernel"),
    ((cl.GONE, None), "veth", "container gone"),
    ((cl.STOPPED, None), "veth", "container stopped"),
    ((cl.ALIVE, 99), "veth", "container restarted (new netns)"),
])
def test_our_stale_ports_are_removed_with_their_reason(guest: tuple[str, int | None],
                                                       link: str | None, why: str) -> None:
    b = FakeCleanupBackend(guests={CID: guest})
    b.add("ovb1", ids=ours(), link=link)
    result = run(b)
    assert removed(result) == {"ovb1"}
    assert reason(result, "ovb1") == why
    assert b.facts == []


def test_all_removals_are_one_transaction_and_a_second_run_removes_nothing() -> None:
    b = FakeCleanupBackend(guests={CID2: (cl.ALIVE, 77)})
    for i in range(10):
        b.add(f"ovbdead{i}", ids=ours(f"{i:064d}"), link=None)
    for i in range(10):
        b.add(f"ovblive{i}", ids=ours(CID2, ifname=f"eth{i}"))
    first = run(b)
    assert len(first.removed) == 10 and len(first.kept) == 10
    assert len(b.transactions) == 1 and len(b.transactions[0]) == 10
    second = run(b)
    assert second.removed == () and len(second.kept) == 10
    assert len(b.transactions) == 1


def test_dry_run_lists_the_same_set_and_changes_nothing() -> None:
    b = FakeCleanupBackend(guests={CID2: (cl.ALIVE, 77)})
    b.add("ovbdead", ids=ours(), link=None)
    b.add("ovblive", ids=ours(CID2))
    before = list(b.facts)
    dry = run(b, dry_run=True)
    assert b.facts == before and b.transactions == []
    assert [e.action for e in dry.removed] == ["would remove"]
    real = run(b)
    assert removed(dry) == removed(real) == {"ovbdead"}


@pytest.mark.parametrize(("iface_type", "why"), [
    ("internal", "internal port"), ("patch", "patch port"), ("vxlan", "tunnel port (vxlan)"),
    ("geneve", "tunnel port (geneve)"), ("dpdk", "dpdk port"),
])
def test_internal_patch_tunnel_ports_are_never_removed(iface_type: str, why: str) -> None:
    b = FakeCleanupBackend()
    b.add("p1", iface_type=iface_type, link=None, error="no such device", ofport=-1)
    result = run(b)
    assert removed(result) == set() and reason(result, "p1").startswith(why)


def test_uplinks_are_never_removed_even_when_their_device_is_gone() -> None:
    b = FakeCleanupBackend()
    b.add("up1", link=None, port_ids={cl.UPLINK_ROLE_KEY: cl.UPLINK_ROLE})
    b.add("up2", link=None, ids={cl.UPLINK_KEY: "1"})
    b.add("up3", link=None, bridge_ids={cl.UPLINK_KEY: "up3"})
    b.add("bond0", link=None, interfaces=2)
    result = run(b)
    assert removed(result) == set()
    assert reason(result, "up1").startswith("uplink")
    assert reason(result, "bond0").startswith("bond")


def test_untagged_ports_only_veths_whose_device_is_gone() -> None:
    b = FakeCleanupBackend()
    b.add("vethgone", link=None)
    b.add("vethlive", link="veth")
    b.add("eth7", link="nic", error="link down?", ofport=-1)
    b.add("tap0", link="tun", ofport=-1)
    b.add("vm0", link=None, ids={"iface-id": "x", "attached-mac": "02:00:00:00:00:01"})
    result = run(b)
    assert removed(result) == {"vethgone"}
    assert reason(result, "vethlive") == "healthy"
    assert "not a veth (physical NIC)" in reason(result, "eth7")
    assert "not a veth (tun)" in reason(result, "tap0")
    assert "another tool" in reason(result, "vm0")


def test_error_and_ofport_minus_one_make_a_port_stale() -> None:
    b = FakeCleanupBackend(guests={CID: (cl.ALIVE, 77)})
    b.add("ovberr", ids=ours(), error="could not open network device ovberr")
    b.add("ovbneg", ids=ours(ifname="eth2"), ofport=-1)
    result = run(b)
    assert removed(result) == {"ovberr", "ovbneg"}
    assert reason(result, "ovberr").startswith("OVS reports")
    assert reason(result, "ovbneg") == "ofport -1"


def test_young_ports_are_kept_as_attaches_in_flight() -> None:
    b = FakeCleanupBackend()
    b.add("ovbnew", ids=ours(created=f"{NOW - 3:.3f}"), link=None)
    result = run(b)
    assert removed(result) == set()
    assert "may be an attach in flight" in reason(result, "ovbnew")
    assert removed(run(b, min_age=0)) == {"ovbnew"}


def test_ovs_docker_and_pipework_ports() -> None:
    b = FakeCleanupBackend(containers={"alive1": cl.ALIVE})
    b.add("od_gone_l", ids={"container_id": "dead1", "container_iface": "eth1"}, link=None)
    b.add("od_stop_l", ids={"container_id": "stopped1", "container_iface": "eth1"})
    b.containers["stopped1"] = cl.STOPPED
    b.add("od_live_l", ids={"container_id": "alive1", "container_iface": "eth1"})
    b.add("pwgone", ids={"pipework.containerid": "dead2", "pipework.containername": "/web2"},
          link=None)
    b.add("pwport", port_ids={"pipework.containerid": "dead3"})
    b.add("pwlive", ids={"pipework.containerid": "alive1"})
    result = run(b)
    assert removed(result) == {"od_gone_l", "od_stop_l", "pwgone", "pwport"}
    assert reason(result, "od_stop_l") == "container stopped"
    owners = {e.port: e.owner for e in (*result.removed, *result.kept)}
    assert owners["od_live_l"] == "ovs-docker" and owners["pwport"] == "pipework"
    names = {e.port: e.container_name for e in (*result.removed, *result.kept)}
    assert names["pwgone"] == "web2"  # docker's leading "/" is not part of the name


def test_leases_of_removed_dhcp_ports_are_dropped_and_leftover_veths_deleted() -> None:
    b = FakeCleanupBackend()
    b.add("ovbdhcp", ids=ours(mode="dhcp"))  # container gone, veth still there (pinned netns)
    b.add("ovbstat", ids=ours(CID2), link=None)
    result = run(b)
    assert removed(result) == {"ovbdhcp", "ovbstat"}
    assert b.dropped == [(CID, "eth1")]
    assert result.links_deleted == ("ovbdhcp",) and "ovbdhcp" not in b.links


def test_a_link_whose_identity_is_another_is_never_deleted() -> None:
    b = FakeCleanupBackend()
    b.add("ovbdhcp", ids=ours(mode="dhcp"))
    b.links["ovbdhcp"] = KernelLink("ovbdhcp", 7, "veth", "")  # someone else's, same name
    result = run(b)
    assert removed(result) == {"ovbdhcp"} and "ovbdhcp" in b.links
    assert result.links_deleted == () and "left alone" in result.notes[0]


def test_orphan_veths_of_killed_attaches_are_deleted_when_their_lock_is_free() -> None:
    b = FakeCleanupBackend()
    building = naming.link_alias(CID, "eth1", naming.ALIAS_BUILDING)
    b.links["ovbkilled"] = KernelLink("ovbkilled", 8, "veth", building)
    b.links["ovbforeign"] = KernelLink("ovbforeign", 9, "veth", "")
    dry = run(b, dry_run=True)
    assert dry.links_deleted == ("ovbkilled",) and "ovbkilled" in b.links
    result = run(b)
    assert result.links_deleted == ("ovbkilled",)
    assert "ovbkilled" not in b.links and "ovbforeign" in b.links


def test_an_untagged_veth_is_deleted_only_when_a_killed_attach_s_note_names_it() -> None:
    # killed between creating the veth and tagging it: its note in the lock is the proof
    b = FakeCleanupBackend()
    b.links["ovbuntagged"] = KernelLink("ovbuntagged", 8, "veth", "")
    b.links["ovbnonote"] = KernelLink("ovbnonote", 9, "veth", "")
    b.links["ovbnotveth"] = KernelLink("ovbnotveth", 10, "tun", "")
    b.notes = {"ovbuntagged": (CID, "eth1"), "ovbnotveth": (CID, "eth2")}
    result = run(b)
    assert result.links_deleted == ("ovbuntagged",)
    assert set(b.links) == {"ovbnonote", "ovbnotveth"}
    assert b.notes == {"ovbnotveth": (CID, "eth2")}


def test_an_untagged_veth_whose_lock_is_held_is_kept() -> None:
    b = FakeCleanupBackend()
    b.links["ovbuntagged"] = KernelLink("ovbuntagged", 8, "veth", "")
    b.notes = {"ovbuntagged": (CID, "eth1")}
    b.lock_free = lambda key, ifname: False  # type: ignore[method-assign]
    assert run(b).links_deleted == ()
    assert "ovbuntagged" in b.links


def test_a_failing_lease_drop_is_a_note_not_a_failure() -> None:
    b = FakeCleanupBackend(drop_fails=True)
    b.add("ovbdhcp", ids=ours(mode="dhcp"), link=None)
    result = run(b)
    assert removed(result) == {"ovbdhcp"}
    assert result.notes and "daemon says no" in result.notes[0]


def test_unknown_guest_state_keeps_the_port() -> None:
    b = FakeCleanupBackend(guests={CID: (cl.UNKNOWN, None)})
    b.add("ovb1", ids=ours())
    assert removed(run(b)) == set()


def test_bridge_filter_and_missing_bridge() -> None:
    b = FakeCleanupBackend(bridges={"br0", "br1"})
    b.add("g0", link=None)
    b.add("g1", bridge="br1", link=None)
    assert removed(run(b, bridge="br1")) == {"g1"}
    with pytest.raises(NotFound):
        run(b, bridge="nope")


def test_ovs_is_read_before_the_kernel() -> None:
    b = FakeCleanupBackend()
    run(b)
    assert b.reads == ["ovs", "kernel"]


def test_ports_of_container_selects_by_id_name_or_short_id() -> None:
    b = FakeCleanupBackend()
    b.add("ovb1", ids=ours(CID), link=None)
    b.add("ovb2", ids=ours(CID2), link=None)
    b.add("od_l", ids={"container_id": "web1"}, link=None)
    b.add("od2_l", ids={"container_id": CID[:12]}, link=None)
    b.add("stray", link=None)
    # pipework's real keys (what the watcher's "forget this container" must find)
    b.add("veth1pl4242", ids={"pipework.containerid": CID, "pipework.containername": "/web1",
                              "pipework.interface": "veth1pl4242", "pipework.nspid": "4242"},
          link=None)
    b.add("veth1pl4343", ids={"pipework.containerid": CID2}, link=None)
    result = run(b, select=cl.ports_of_container(CID, "web1"))
    assert removed(result) == {"ovb1", "od_l", "od2_l", "veth1pl4242"}
    assert {f.port.port for f in b.facts} == {"ovb2", "stray", "veth1pl4343"}


def test_json_shape() -> None:
    b = FakeCleanupBackend()
    b.add("ovb1", ids=ours(), link=None)
    data = run(b).to_json()
    assert set(data) == {"dry_run", "removed", "kept", "leases_dropped", "links_deleted",
                         "notes"}
    assert data["removed"][0]["container_id"] == CID
    assert data["removed"][0]["reason"] == "interface gone from the kernel"
