"""setup-bridge / teardown-bridge decisions on small in-memory fakes (no root, no kernel).

The fakes hold the final state (links, addresses, routes, OVS bridges); tests assert on that
state, not on call order. The real thing is proven in tests/integration/test_setup_bridge.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from ovsbridge.errors import BadInput, Conflict, EnvironmentProblem, NotFound, OperationFailed
from ovsbridge.ops import uplink as ops
from ovsbridge.system import watchdog as wd
from ovsbridge.system.hostnet import (
    Address,
    LinkInfo,
    LinkState,
    Nexthop,
    ProbeResult,
    Route,
    _primaries_first,
    _routes_in_add_order,
)
from ovsbridge.system.ovs import Command, Snapshot

MAC = "02:0b:00:00:00:01"


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVSBRIDGE_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("OVSBRIDGE_CONF_DIR", str(tmp_path / "etc"))


# ----- fakes ---------------------------------------------------------------------------------
def link(name: str, index: int, **kw: Any) -> LinkInfo:
    base = {"index": index, "name": name, "mac": MAC, "mtu": 1500, "up": True, "kind": "veth"}
    base.update(kw)
    return LinkInfo(**base)


def v4(cidr: str, secondary: bool = False, **kw: Any) -> Address:
    ip, plen = cidr.split("/")
    return Address(family=4, local=ip, prefixlen=int(plen), secondary=secondary, **kw)


def static_state() -> LinkState:
    eth0 = link("eth0", 2)
    return LinkState(
        link=eth0,
        addresses=(
            v4("198.51.100.10/24"),
            v4("198.51.100.11/24", secondary=True),
            Address(family=6, local="2001:db8:1::10", prefixlen=64),
        ),
        routes=(
            Route(4, 254, "0.0.0.0/0", "eth0", gateway="198.51.100.1", metric=100),
            Route(4, 254, "198.51.100.0/24", "eth0", proto=2, scope=253, prefsrc="198.51.100.10"),
            Route(4, 254, "203.0.113.0/24", "eth0", gateway="198.51.100.1"),
            Route(4, 100, "0.0.0.0/0", "eth0", gateway="198.51.100.1"),
            Route(6, 254, "::/0", "eth0", gateway="2001:db8:1::1", metric=50, pref=0),
        ),
    )


class FakeNet:
    """Links and the layer-3 state on them."""

    def __init__(self, *states: LinkState, gateway_ok: bool = True) -> None:
        self.states = {s.link.name: s for s in states}
        self.states.setdefault("lo", LinkState(link=link("lo", 1, loopback=True, kind=None)))
        self.gateway_ok = gateway_ok
        self.deleted: list[str] = []

    def link(self, name: str) -> LinkInfo | None:
        state = self.states.get(name)
        return state.link if state else None

    def state(self, name: str) -> LinkState:
        if name not in self.states:
            raise NotFound(f"no {name}")
        return self.states[name]

    def wait_link(self, name: str, timeout: float = 0) -> LinkInfo:
        found = self.link(name)
        if found is None:
            raise OperationFailed(f"{name} did not appear")
        return found

    def set_link(
        self, name: str, *, up: bool | None = None, mtu: int | None = None, mac: str | None = None
    ) -> None:
        s = self.states[name]
        changes = {k: v for k, v in (("up", up), ("mtu", mtu), ("mac", mac)) if v is not None}
        self.states[name] = replace(s, link=replace(s.link, **changes))

    def move(self, src: str, dst: str, state: LinkState, *, dad_timeout: float = 0) -> None:
        target = self.states[dst]
        self.states[dst] = replace(
            target,
            addresses=target.addresses + state.addresses,
            routes=target.routes + tuple(r.retarget(src, dst) for r in state.routes),
        )
        self.states[src] = replace(self.states[src], addresses=(), routes=())

    def restore(self, state: LinkState, *, dad_timeout: float = 0) -> list[str]:
        if state.link.name not in self.states:
            return [f"{state.link.name} is gone"]
        self.states[state.link.name] = state
        return []

    def probe_gateway(self, dev: str, gateway: str, timeout: float = 0) -> ProbeResult:
        return ProbeResult(self.gateway_ok, gateway, dev, "arp" if self.gateway_ok else "silent")

    def delete_link(self, name: str) -> bool:
        self.deleted.append(name)
        return self.states.pop(name, None) is not None

    def uppers(self, name: str) -> list[tuple[str, str]]:
        return [(n, "vlan") for n in self.states if n.startswith(name + ".")]

    def comparable(self) -> dict[str, Any]:
        return {n: (s.link, s.addresses, s.routes) for n, s in sorted(self.states.items())}


class FakeOvs:
    """Bridges -> {ports: {name: iface external_ids}, external_ids, datapath}; a tiny vsctl."""

    db = "unix:/fake/db.sock"

    def __init__(self, net: FakeNet, fail_on: str | None = None) -> None:
        self.net = net
        self.bridges: dict[str, dict[str, Any]] = {}
        self.fail_on = fail_on
        self.transactions: list[tuple[Command, ...]] = []

    def add_bridge(
        self,
        name: str,
        ids: dict[str, str] | None = None,
        ports: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.bridges[name] = {
            "external_ids": dict(ids or {}),
            "ports": dict(ports or {}),
            "datapath_type": "netdev",
            "other_config": {},
        }

    def bridge(self, name: str) -> dict[str, Any] | None:
        row = self.bridges.get(name)
        if row is None:
            return None
        return {"name": name, "ports": list(row["ports"]), **row}

    def snapshot(self) -> Snapshot:
        bridges, ports, ifaces = [], [], []
        for br, row in self.bridges.items():
            uuids = []
            for port, ids in {br: {}, **row["ports"]}.items():
                uuids.append(f"p-{port}")
                ports.append({"_uuid": f"p-{port}", "name": port, "interfaces": [f"i-{port}"]})
                ifaces.append({"_uuid": f"i-{port}", "name": port, "external_ids": ids})
            bridges.append({"_uuid": f"b-{br}", "name": br, "ports": uuids})
        return Snapshot(bridges, ports, ifaces)

    def transact(self, *commands: Command) -> None:
        self.transactions.append(commands)
        if self.fail_on and any(self.fail_on in c for c in commands):
            raise OperationFailed(f"OVS refused the change: {self.fail_on} (injected)")
        for c in commands:
            args = [a for a in c if not a.startswith("--")]
            if args[0] == "add-br" and args[1] not in self.bridges:
                self.add_bridge(args[1])
                self.net.states[args[1]] = LinkState(link=link(args[1], 9, kind="tun"))
            elif args[0] == "set" and args[1] == "Bridge":
                for kv in args[3:]:
                    key, _, value = kv.partition("=")
                    if key.startswith("external_ids:"):
                        ids = self.bridges[args[2]]["external_ids"]
                        ids[key.split(":", 1)[1]] = json.loads(value)
            elif args[0] == "add-port":
                self.bridges[args[1]]["ports"].setdefault(args[2], {})
            elif args[0] == "del-port":
                self.bridges[args[1]]["ports"].pop(args[2], None)
            elif args[0] == "del-br" and args[1] in self.bridges:
                del self.bridges[args[1]]
                self.net.states.pop(args[1], None)


class FakeWatchdog:
    """Does what the detached watchdog does, synchronously."""

    def __init__(self, armed: wd.Armed, net: FakeNet, ovs: FakeOvs) -> None:
        self.armed, self.net, self.ovs = armed, net, ovs
        self.events: list[str] = []

    def applied(self) -> None:
        self.events.append("applied")

    def update(self, dhcp: dict[str, Any]) -> None:
        self.armed = replace(self.armed, dhcp=dhcp)

    def confirm(self) -> wd.Outcome:
        self.events.append("confirm")
        return wd.Outcome(wd.CONFIRMED, "confirmed")

    def rollback(self, reason: str) -> wd.Outcome:
        self.events.append(f"rollback: {reason}")
        problems = ops.restore_armed(self.armed, self.net, self.ovs)  # type: ignore[arg-type]
        return wd.Outcome(wd.ROLLED_BACK, reason, tuple(problems))

    def wait(self, user_confirmed: Any = None) -> wd.Outcome:
        return self.rollback("no confirmation within 60 s")

    def close(self) -> None:
        self.events.append("closed")


def setup(net: FakeNet, ovs: FakeOvs, **kw: Any) -> ops.SetupPlan | ops.AlreadySetUp:
    return ops.plan_setup(
        ops.SetupRequest(uplink=kw.pop("uplink", "eth0"), **kw),
        net,
        ovs,
        kernel_datapath=kw.pop("kernel", False),
    )


def apply(net: FakeNet, ovs: FakeOvs, plan: ops.SetupPlan) -> tuple[ops.Applied, list[Any]]:
    made: list[FakeWatchdog] = []

    def arm(armed: wd.Armed) -> Any:
        made.append(FakeWatchdog(armed, net, ovs))
        return made[-1]

    return ops.apply_setup(plan, net, ovs, arm=arm), made  # type: ignore[arg-type]


# ----- validation ------------------------------------------------------------------------------
def test_missing_uplink_is_not_found() -> None:
    net = FakeNet(static_state())
    with pytest.raises(NotFound) as err:
        setup(net, FakeOvs(net), uplink="eth9")
    assert err.value.exit_code == 3 and 'uplink "eth9" does not exist' in err.value.message


def test_loopback_is_bad_input() -> None:
    net = FakeNet(static_state())
    with pytest.raises(BadInput) as err:
        setup(net, FakeOvs(net), uplink="lo")
    assert err.value.exit_code == 2 and "loopback" in err.value.message


def test_bond_member_is_refused_with_a_hint() -> None:
    state = static_state()
    member = replace(state, link=replace(state.link, master="bond0", slave_kind="bond"))
    net = FakeNet(member)
    with pytest.raises(Conflict) as err:
        setup(net, FakeOvs(net))
    assert err.value.exit_code == 4
    assert err.value.message == '"eth0" is a member of bond "bond0"'
    assert err.value.hint and "bond0" in err.value.hint


def test_linux_bridge_port_is_refused() -> None:
    state = static_state()
    port = replace(state, link=replace(state.link, master="br0", slave_kind="bridge"))
    net = FakeNet(port)
    with pytest.raises(Conflict, match='is a port of Linux bridge "br0"'):
        setup(net, FakeOvs(net))


def test_port_of_another_ovs_bridge_is_refused() -> None:
    net = FakeNet(static_state())
    ovs = FakeOvs(net)
    ovs.add_bridge("br-int", ports={"eth0": {}})
    with pytest.raises(Conflict, match='already a port of OVS bridge "br-int"'):
        setup(net, ovs)


def test_foreign_bridge_of_that_name_is_refused() -> None:
    net = FakeNet(static_state())
    ovs = FakeOvs(net)
    ovs.add_bridge("ovsbr0")
    with pytest.raises(Conflict, match="not set up by setup-bridge"):
        setup(net, ovs)


def test_bridge_with_another_uplink_is_refused() -> None:
    net = FakeNet(static_state(), LinkState(link=link("eth1", 3)))
    ovs = FakeOvs(net)
    ovs.add_bridge("ovsbr0", {ops.K_UPLINK: "eth1"}, {"eth1": {}})
    with pytest.raises(Conflict, match='already has the uplink "eth1"'):
        setup(net, ovs)


def test_netdev_named_like_the_bridge_is_refused() -> None:
    net = FakeNet(static_state(), LinkState(link=link("ovsbr0", 5)))
    with pytest.raises(Conflict, match='a network interface named "ovsbr0"'):
        setup(net, FakeOvs(net))


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"bridge": "eth0"}, "both"),
        ({"bridge": "x" * 16}, "bridge name"),
        ({"datapath": "kernel"}, "datapath"),
        ({"confirm_timeout": 0}, "--confirm-timeout"),
    ],
)
def test_bad_requests(kw: dict[str, Any], words: str) -> None:
    net = FakeNet(static_state())
    with pytest.raises(BadInput, match=words):
        setup(net, FakeOvs(net), **kw)


def test_system_datapath_needs_the_kernel_module() -> None:
    net = FakeNet(static_state())
    with pytest.raises(EnvironmentProblem) as err:
        setup(net, FakeOvs(net), datapath="system")
    assert err.value.exit_code == 5


def test_auto_datapath() -> None:
    net = FakeNet(static_state())
    plan = setup(net, FakeOvs(net))
    assert isinstance(plan, ops.SetupPlan)
    assert plan.datapath == "netdev" and any("slower" in w for w in plan.warnings)
    plan = ops.plan_setup(ops.SetupRequest("eth0"), net, FakeOvs(net), kernel_datapath=True)
    assert isinstance(plan, ops.SetupPlan) and plan.datapath == "system"


def test_plan_lists_what_moves() -> None:
    net = FakeNet(static_state())
    plan = setup(net, FakeOvs(net))
    assert isinstance(plan, ops.SetupPlan)
    assert plan.mac == MAC and plan.mtu == 1500
    assert [a.cidr for a in plan.addresses] == [
        "198.51.100.10/24",
        "198.51.100.11/24",
        "2001:db8:1::10/64",
    ]
    assert len(plan.routes) == 4  # the kernel's prefix route follows its address
    assert plan.gateways == ["198.51.100.1", "2001:db8:1::1"]
    doc = plan.to_dict()
    assert all(r["dev"] == "ovsbr0" for r in doc["routes"])
    json.dumps(doc)
    assert ("route", "default via 198.51.100.1 dev ovsbr0 table 100", "") in plan.rows()


def test_dynamic_address_means_dhcp() -> None:
    state = static_state()
    dyn = replace(state, addresses=(v4("198.51.100.150/24", valid_lft=3000, preferred_lft=3000),))
    net = FakeNet(dyn)
    plan = setup(net, FakeOvs(net))
    assert isinstance(plan, ops.SetupPlan) and plan.dhcp
    assert any("DHCP client" in w for w in plan.warnings)


def test_already_set_up_and_resume() -> None:
    net = FakeNet(replace(static_state(), addresses=(), routes=()))
    ovs = FakeOvs(net)
    ovs.add_bridge("ovsbr0", {ops.K_UPLINK: "eth0"}, {"eth0": {}})
    assert isinstance(setup(net, ovs), ops.AlreadySetUp)
    # At boot the addresses come back on eth0 while OVS kept the bridge: resume.
    net.states["eth0"] = static_state()
    plan = setup(net, ovs)
    assert isinstance(plan, ops.SetupPlan) and plan.bridge_exists


# ----- the OVS transaction ----------------------------------------------------------------------
def test_one_transaction_with_mac_mtu_and_markers() -> None:
    net = FakeNet(static_state())
    plan = setup(net, FakeOvs(net))
    assert isinstance(plan, ops.SetupPlan)
    flat = [" ".join(c) for c in ops.ovs_commands(plan)]
    assert flat[0] == "--may-exist add-br ovsbr0"
    assert "datapath_type=netdev" in flat[1] and f'other-config:hwaddr="{MAC}"' in flat[1]
    assert 'external_ids:ovsbridge.uplink="eth0"' in flat[1]
    assert "set Interface ovsbr0 mtu_request=1500" in flat
    assert "--may-exist add-port ovsbr0 eth0" in flat
    assert "set Port eth0 external_ids:ovsbridge.role=uplink" in flat
    resumed = ops.ovs_commands(replace(plan, bridge_exists=True))
    assert not any("hwaddr" in " ".join(c) or "datapath_type" in " ".join(c) for c in resumed)


# ----- apply and rollback ------------------------------------------------------------------------
def test_apply_moves_everything_and_confirms() -> None:
    net = FakeNet(static_state())
    ovs = FakeOvs(net)
    plan = setup(net, ovs)
    assert isinstance(plan, ops.SetupPlan)
    applied, made = apply(net, ovs, plan)
    assert len(ovs.transactions) == 1
    assert net.states["eth0"].addresses == ()
    assert net.states["ovsbr0"].addresses == static_state().addresses
    assert all(r.dev == "ovsbr0" for r in net.states["ovsbr0"].routes)
    assert net.states["ovsbr0"].link.up
    result = applied.confirm()
    assert result.status == "confirmed" and made[0].events == ["applied", "confirm", "closed"]


def test_unanswered_gateway_rolls_back_to_the_exact_state() -> None:
    net = FakeNet(static_state(), gateway_ok=False)
    ovs = FakeOvs(net)
    before = net.comparable()
    plan = setup(net, ovs)
    assert isinstance(plan, ops.SetupPlan)
    with pytest.raises(OperationFailed) as err:
        apply(net, ovs, plan)
    assert "did not answer through ovsbr0" in err.value.message
    assert "rolled back" in err.value.message
    assert net.comparable() == before and ovs.bridges == {}


def test_ovs_failure_is_the_error_the_user_sees() -> None:
    net = FakeNet(static_state())
    ovs = FakeOvs(net, fail_on="add-br")
    before = net.comparable()
    plan = setup(net, ovs)
    assert isinstance(plan, ops.SetupPlan)
    with pytest.raises(OperationFailed, match="injected"):
        apply(net, ovs, plan)
    assert net.comparable() == before and ovs.bridges == {}


class BrokenMove(FakeNet):
    def move(self, src: str, dst: str, state: LinkState, *, dad_timeout: float = 0) -> None:
        moved = replace(state, addresses=state.addresses[:1], routes=())
        super().move(src, dst, moved)  # half done, then the kernel says no
        raise OperationFailed("cannot add route: No route to host (injected)")


def test_failure_after_the_ovs_step_restores_everything() -> None:
    net = BrokenMove(static_state())
    ovs = FakeOvs(net)
    before = net.comparable()
    plan = setup(net, ovs)
    assert isinstance(plan, ops.SetupPlan)
    with pytest.raises(OperationFailed, match="No route to host"):
        apply(net, ovs, plan)
    assert net.comparable() == before and ovs.bridges == {}


def test_no_confirmation_is_a_rollback_error() -> None:
    net = FakeNet(static_state())
    ovs = FakeOvs(net)
    before = net.comparable()
    plan = setup(net, ovs)
    assert isinstance(plan, ops.SetupPlan)
    applied, _ = apply(net, ovs, plan)
    with pytest.raises(OperationFailed, match="no confirmation within 60 s"):
        applied.wait(None)
    assert net.comparable() == before and ovs.bridges == {}


def test_rollback_of_a_resumed_setup_keeps_the_bridge() -> None:
    net = FakeNet(static_state(), gateway_ok=False)
    ovs = FakeOvs(net)
    ovs.add_bridge("ovsbr0", {ops.K_UPLINK: "eth0"}, {"eth0": {}})
    net.states["ovsbr0"] = LinkState(link=link("ovsbr0", 9, kind="tun"))
    before = net.comparable()
    plan = setup(net, ovs)
    assert isinstance(plan, ops.SetupPlan) and plan.bridge_exists
    with pytest.raises(OperationFailed):
        apply(net, ovs, plan)
    assert "ovsbr0" in ovs.bridges
    assert net.comparable() == before


# ----- teardown ----------------------------------------------------------------------------------
def configured() -> tuple[FakeNet, FakeOvs]:
    net = FakeNet(static_state())
    ovs = FakeOvs(net)
    plan = setup(net, ovs)
    assert isinstance(plan, ops.SetupPlan)
    apply(net, ovs, plan)[0].confirm()
    return net, ovs


def test_teardown_restores_the_uplink() -> None:
    net, ovs = configured()
    plan = ops.plan_teardown("ovsbr0", net, ovs, force=False)  # type: ignore[arg-type]
    result = ops.apply_teardown(plan, net, ovs)  # type: ignore[arg-type]
    assert result.status == "torn down"
    assert net.states["eth0"].addresses == static_state().addresses
    assert {r.key() for r in net.states["eth0"].routes} == {r.key() for r in static_state().routes}
    assert ovs.bridges == {} and "ovsbr0" not in net.states


def test_teardown_refuses_containers_unless_forced() -> None:
    net, ovs = configured()
    ovs.bridges["ovsbr0"]["ports"]["ovbabc"] = {"ovsbridge.owner": "ovsbridge"}
    with pytest.raises(Conflict, match="ovbabc") as err:
        ops.plan_teardown("ovsbr0", net, ovs, force=False)  # type: ignore[arg-type]
    assert err.value.hint and "--force" in err.value.hint
    plan = ops.plan_teardown("ovsbr0", net, ovs, force=True)  # type: ignore[arg-type]
    assert plan.container_ports == ("ovbabc",)
    result = ops.apply_teardown(plan, net, ovs)  # type: ignore[arg-type]
    assert result.detached == ("ovbabc",) and "ovbabc" in net.deleted


def test_teardown_of_a_foreign_bridge_is_refused() -> None:
    net = FakeNet(static_state())
    ovs = FakeOvs(net)
    ovs.add_bridge("ovsbr0")
    with pytest.raises(Conflict, match="not set up by setup-bridge"):
        ops.plan_teardown("ovsbr0", net, ovs, force=True)  # type: ignore[arg-type]


def test_teardown_of_nothing() -> None:
    net = FakeNet(static_state())
    plan = ops.plan_teardown("ovsbr0", net, FakeOvs(net), force=False)  # type: ignore[arg-type]
    assert plan.nothing_to_do


# ----- persist -----------------------------------------------------------------------------------
def test_persist_file(tmp_path: Any) -> None:
    net = FakeNet(static_state())
    plan = setup(net, FakeOvs(net), persist=True)
    assert isinstance(plan, ops.SetupPlan)
    path = ops.write_persist(plan)
    assert path == str(tmp_path / "etc" / "setup-bridge-ovsbr0.env")
    with open(path) as fh:
        text = fh.read()
    assert "UPLINK=eth0\n" in text and "DATAPATH=netdev\n" in text and "FLAGS=\n" in text
    assert ops.remove_persist("ovsbr0") == path
    assert ops.remove_persist("ovsbr0") is None


# ----- values ------------------------------------------------------------------------------------
def test_link_state_survives_json() -> None:
    state = replace(
        static_state(),
        routes=(
            *static_state().routes,
            Route(
                4,
                254,
                "203.0.113.128/25",
                None,
                metrics=(("mtu", 1400),),
                multipath=(Nexthop("eth0", "198.51.100.1", 2), Nexthop("eth1", "198.51.100.9")),
            ),
        ),
    )
    again = LinkState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state


def test_route_retarget_and_describe() -> None:
    route = Route(
        4,
        100,
        "0.0.0.0/0",
        "eth0",
        gateway="198.51.100.1",
        metric=5,
        multipath=(Nexthop("eth0", "198.51.100.2"), Nexthop("eth1", "198.51.100.3")),
    )
    moved = route.retarget("eth0", "ovsbr0")
    assert moved.dev == "ovsbr0"
    assert [n.dev for n in moved.multipath] == ["ovsbr0", "eth1"]
    assert moved.describe().startswith("default via 198.51.100.1 via 198.51.100.2")
    assert "table 100 metric 5" in moved.describe()
    assert route.through("eth1") and not route.through("eth2")


def test_primaries_first_and_routes_in_add_order() -> None:
    addrs = [v4("198.51.100.11/24", secondary=True), v4("198.51.100.10/24")]
    assert [a.local for a in _primaries_first(addrs)] == ["198.51.100.10", "198.51.100.11"]
    routes = [
        Route(4, 254, "0.0.0.0/0", "eth0", gateway="198.51.100.1"),
        Route(4, 254, "198.51.100.128/25", "eth0"),
    ]
    assert [r.dst for r in _routes_in_add_order(routes)] == ["198.51.100.128/25", "0.0.0.0/0"]


def test_vlan_on_the_uplink_is_warned_about() -> None:
    net = FakeNet(static_state(), LinkState(link=link("eth0.100", 7, kind="vlan")))
    plan = setup(net, FakeOvs(net))
    assert isinstance(plan, ops.SetupPlan)
    assert any(w.startswith("eth0.100 (vlan) sits on eth0") for w in plan.warnings)
