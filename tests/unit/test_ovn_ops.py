"""ops/ovn.py against small in-memory fakes: join/leave exactness, rollback at every step,
switch options and the logical port decisions. The real thing: tests/integration/test_ovn.py."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import pytest

from ovsbridge.errors import BadInput, Conflict, EnvironmentProblem, OperationFailed
from ovsbridge.ops import ovn
from ovsbridge.ops.undo import FAIL_AT_ENV, UndoStack

CENTRAL = ovn.parse_remote("tcp:203.0.113.10:6642", "--central", 6642)


class FakeChassis:
    def __init__(self, ids: dict[str, str] | None = None, kernel: bool = False) -> None:
        self.ids = dict(ids or {})
        self.bridges = {"ovsbr0"}
        self.controller = False
        self.kernel = kernel
        self.registered: set[str] = set()
        self.clock = 0.0

    def state(self) -> dict[str, Any]:
        return copy.deepcopy({"ids": self.ids, "bridges": self.bridges,
                              "controller": self.controller})

    def ovs_external_ids(self) -> dict[str, str]:
        return dict(self.ids)

    def ovs_uuid(self) -> str:
        return "5e1f0c2a-0000-4000-8000-000000000001"

    def set_ovs_external_ids(self, values: dict[str, str], remove: Sequence[str]) -> None:
        self.ids.update(values)
        for key in remove:
            self.ids.pop(key, None)

    def bridge_exists(self, name: str) -> bool:
        return name in self.bridges

    def create_integration_bridge(self, name: str, datapath: str | None,
                                  marker: dict[str, str]) -> None:
        self.bridges.add(name)

    def delete_bridge(self, name: str) -> None:
        self.bridges.discard(name)

    def kernel_datapath(self) -> bool:
        return self.kernel

    def interfaces(self) -> list[dict[str, Any]]:
        return []

    def interface_ids(self, name: str) -> dict[str, str] | None:
        return None

    def stray_patch_ports(self, integration: str) -> list[str]:
        return []

    def delete_ports(self, names: Sequence[str]) -> None:
        pass

    def controller_state(self) -> dict[str, Any]:
        return {"running": self.controller, "pid": 1 if self.controller else None}

    def start_controller(self) -> None:
        self.controller = True
        self.registered.add(self.ids["system-id"])

    def stop_controller(self) -> None:
        self.controller = False
        self.registered.discard(self.ids.get("system-id", ""))

    def route_source(self, host: str) -> str | None:
        return "203.0.113.11"

    def sleep(self, seconds: float) -> None:
        self.clock += seconds

    def now(self) -> float:
        return self.clock


class FakeSouthbound:
    def __init__(self, chassis: FakeChassis, bindings: dict[str, str] | None = None) -> None:
        self.host = chassis
        self.db = "tcp:203.0.113.10:6642"
        self.bindings = bindings or {}

    def chassis(self, name: str) -> dict[str, Any] | None:
        return {"name": name} if name in self.host.registered else None

    def binding(self, logical_port: str) -> str | None:
        return self.bindings.get(logical_port)


def opts(**kw: Any) -> ovn.JoinOptions:
    return ovn.JoinOptions(CENTRAL, mappings=(("lan", "ovsbr0"),), system_id="hv1",
                           timeout=5, **kw)


def test_join_sets_the_keys_and_twice_is_a_no_op() -> None:
    host = FakeChassis()
    first = ovn.join(host, lambda _: FakeSouthbound(host), opts())
    assert first.status == "joined" and first.created_bridge and first.started_controller
    assert host.ids["ovn-encap-ip"] == "203.0.113.11"
    assert host.ids["ovn-bridge-datapath-type"] == "netdev"
    assert host.ids["ovn-bridge-mappings"] == "lan:ovsbr0"
    joined = host.state()
    again = ovn.join(host, lambda _: FakeSouthbound(host), opts())
    assert again.status == "already joined" and host.state() == joined


def test_leave_restores_exactly_what_was_there() -> None:
    host = FakeChassis({"system-id": "hv1", "ovn-encap-type": "vxlan", "other": "x"},
                       kernel=True)
    before = host.state()
    ovn.join(host, lambda _: FakeSouthbound(host), opts())
    assert host.ids["ovn-encap-type"] == "geneve" and "ovn-bridge-datapath-type" not in host.ids
    result = ovn.leave(host)
    assert result.stopped_controller and result.deleted_bridge
    assert host.state() == before
    assert ovn.leave(host).status == "not joined"


@pytest.mark.parametrize("step", ["ovn-bridge", "ovn-config", "ovn-controller", "ovn-chassis"])
def test_a_failure_at_any_join_step_leaves_the_host_as_it_was(
        step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    host = FakeChassis({"system-id": "hv1"})
    before = host.state()
    monkeypatch.setenv(FAIL_AT_ENV, step)
    with pytest.raises(OperationFailed, match=step):
        ovn.join(host, lambda _: FakeSouthbound(host), opts())
    assert host.state() == before and not host.registered


def test_join_waits_boundedly_for_the_chassis() -> None:
    host = FakeChassis()
    host.start_controller = lambda: setattr(host, "controller", True)  # type: ignore[method-assign]
    with pytest.raises(EnvironmentProblem, match="did not appear"):
        ovn.join(host, lambda _: FakeSouthbound(host), opts())
    assert host.state() == FakeChassis().state()


def test_join_refuses_a_host_someone_else_pointed_at_another_central() -> None:
    host = FakeChassis({"ovn-remote": "tcp:203.0.113.99:6642"})
    with pytest.raises(Conflict):
        ovn.join(host, lambda _: FakeSouthbound(host), opts())


def test_parsers() -> None:
    assert str(ovn.parse_remote("tcp:203.0.113.10", "--nb", 6641)) == "tcp:203.0.113.10:6641"
    assert ovn.nb_from_remote("tcp:203.0.113.10:6642") == "tcp:203.0.113.10:6641"
    for bad in ("203.0.113.10:6642", "udp:x:1", "tcp:h:99999"):
        with pytest.raises(BadInput):
            ovn.parse_remote(bad, "--central", 6642)
    with pytest.raises(BadInput):
        ovn.parse_mappings(["lan"])
    with pytest.raises(BadInput):
        ovn.parse_mappings(["lan:a", "lan:b"])
    assert ovn.port_name("web1", "eth1") == "web1"
    assert ovn.port_name("web1", "eth2") == "web1-eth2"


def test_switch_spec_and_its_one_transaction() -> None:
    spec = ovn.switch_spec("web", "198.51.100.0/24", True, None, (), None, "lan", 20)
    assert str(spec.router) == "198.51.100.1" and spec.dns == ("198.51.100.1",)
    cmds = ovn.create_switch_cmds(spec)
    verbs = [c[0] for c in cmds]
    assert verbs[:2] == ["ls-add", "set"] and "create" in verbs and "lsp-add" in verbs
    assert any("tag=20" in c for c in cmds[-1])
    for args in [("web", None, True, None, (), None, None, None),
                 ("web", "198.51.100.0/24", False, "198.51.100.1", (), None, None, None),
                 ("web", None, False, None, (), None, None, 20),
                 ("web", "198.51.100.0/24", True, "203.0.113.1", (), None, None, None),
                 ("bad name", None, False, None, (), None, None, None)]:
        with pytest.raises(BadInput):
            ovn.switch_spec(*args)


class FakeNorthbound:
    def __init__(self, switch: dict[str, Any]) -> None:
        self.db = "tcp:203.0.113.10:6641"
        self.sw = switch
        self.done: list[list[tuple[str, ...]]] = []

    def switch(self, name: str) -> dict[str, Any] | None:
        return self.sw if name == self.sw["name"] else None

    def port(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.sw["ports"] if p["name"] == name), None)

    def transact(self, commands: Sequence[tuple[str, ...]]) -> str:
        self.done.append(list(commands))
        return ""


def switch(**extra: Any) -> dict[str, Any]:
    return {"name": "web", "ports": [], "dhcp": [{"_uuid": "d-1"}],
            "other_config": {"subnet": "198.51.100.0/24"}, "external_ids": {}, **extra}


def test_prepare_port_reuses_a_moved_port_s_mac_and_address() -> None:
    nb = FakeNorthbound(switch(external_ids={
        "ovsbridge.sticky.web1": "02:00:00:00:00:01 198.51.100.7"}))
    att = ovn.prepare_port(nb, FakeSouthbound(FakeChassis()), UndoStack(), chassis_name="hv3",
                           switch="web", port=None, guest_name="web1", guest_key="k",
                           ifname="eth1", mac="02:00:00:00:00:99", mac_given=False,
                           statics=(), dhcp=True)
    assert att.mac == "02:00:00:00:00:01" and att.created
    flat = [" ".join(c) for c in nb.done[0]]
    assert "lsp-set-addresses web1 02:00:00:00:00:01 198.51.100.7" in flat
    assert any(c.startswith("remove Logical_Switch web external_ids") for c in flat)
    assert any("dhcpv4_options=d-1" in c for c in flat)


def test_prepare_port_refuses_a_port_bound_elsewhere() -> None:
    port = {"name": "web1", "addresses": ["02:00:00:00:00:01 dynamic"], "switch": "web",
            "external_ids": {"ovsbridge.owner": "ovsbridge"}, "type": ""}
    nb = FakeNorthbound(switch(ports=[port]))
    sb = FakeSouthbound(FakeChassis(), {"web1": "hv1"})
    with pytest.raises(Conflict, match='bound to chassis "hv1"'):
        ovn.prepare_port(nb, sb, UndoStack(), chassis_name="hv3", switch="web", port=None,
                         guest_name="web1", guest_key="k", ifname="eth1",
                         mac="02:00:00:00:00:01", mac_given=False, statics=(), dhcp=True)
    assert nb.done == []
