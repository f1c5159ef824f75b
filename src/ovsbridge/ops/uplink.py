"""setup-bridge and teardown-bridge: move the host's uplink into an OVS bridge and back.

Decisions only; the side effects go through the hostnet (netlink) and Ovs (ovs-vsctl)
adapters. setup-bridge validates everything before it touches anything, computes a plan (a
value the CLI prints), arms the rollback watchdog, creates the bridge with the uplink's MAC
and MTU and adds the uplink as a port in ONE OVSDB transaction, moves every global address
and every route of the uplink to the bridge, and checks that the default gateway answers
through the bridge. The watchdog restores the exact previous state unless the change is
confirmed in time. teardown-bridge moves the addresses and routes back and removes the bridge.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ovsbridge import naming
from ovsbridge.errors import (
    BadInput,
    Conflict,
    EnvironmentProblem,
    NotFound,
    OperationFailed,
    OvsbridgeError,
    RollbackIncomplete,
)
from ovsbridge.model import parse_ifname
from ovsbridge.system import watchdog as wd
from ovsbridge.system.hostnet import Address, LinkInfo, LinkState, ProbeResult, Route
from ovsbridge.system.ovs import Command, Snapshot, cmd, quote_value

# external_ids setup-bridge writes. On the Bridge: which uplink it took over (the marker
# that the bridge is ours to tear down). On the uplink's Port: its role, so cleanup and ps
# never take it for a container port.
K_UPLINK = "ovsbridge.uplink"
K_MADE_BY = "ovsbridge.made_by"
MADE_BY = "setup-bridge"
K_UPLINK_DHCP = "ovsbridge.uplink_dhcp"
K_ROLE = "ovsbridge.role"
ROLE_UPLINK = "uplink"

DEFAULT_BRIDGE = "ovsbr0"
DATAPATHS = ("auto", "system", "netdev")
GATEWAY_CHECK_TIMEOUT = 5.0
PAUSE_ENV = "OVSBRIDGE_TEST_PAUSE_AFTER"  # test-only: "ovs" or "move" pauses the CLI there
CONF_DIR_ENV = "OVSBRIDGE_CONF_DIR"
DEFAULT_CONF_DIR = "/etc/ovsbridge"


# ----- seams -------------------------------------------------------------------------
class HostNetPort(Protocol):
    def link(self, name: str) -> LinkInfo | None: ...
    def state(self, name: str) -> LinkState: ...
    def wait_link(self, name: str, timeout: float = ...) -> LinkInfo: ...
    def set_link(
        self, name: str, *, up: bool | None = ..., mtu: int | None = ..., mac: str | None = ...
    ) -> None: ...
    def move(self, src: str, dst: str, state: LinkState, *, dad_timeout: float = ...) -> None: ...
    def restore(self, state: LinkState, *, dad_timeout: float = ...) -> list[str]: ...
    def probe_gateway(self, dev: str, gateway: str, timeout: float = ...) -> ProbeResult: ...
    def delete_link(self, name: str) -> bool: ...
    def uppers(self, name: str) -> list[tuple[str, str]]: ...


class OvsPort(Protocol):
    @property
    def db(self) -> str | None: ...

    def bridge(self, name: str) -> dict[str, Any] | None: ...
    def snapshot(self) -> Snapshot: ...
    def transact(self, *commands: Command) -> None: ...


class DhcpPort(Protocol):
    """The uplink's DHCP lease: acquired on the bridge, kept by the ovsbridge daemon."""

    @property
    def guest_key(self) -> str: ...
    def acquire(
        self, dev: str, mac: str, requested: str | None, timeout: float = ...
    ) -> dict[str, Any]: ...
    def keep(self, dev: str, lease: dict[str, Any], default_route: bool = ...) -> None: ...
    def drop(self, dev: str) -> dict[str, Any] | None: ...


ArmFn = Callable[[wd.Armed], wd.Watchdog]


# ----- values ------------------------------------------------------------------------
@dataclass(frozen=True)
class SetupRequest:
    uplink: str
    bridge: str = DEFAULT_BRIDGE
    datapath: str = "auto"
    dhcp: bool = False
    confirm_timeout: float = wd.DEFAULT_CONFIRM_TIMEOUT
    persist: bool = False


@dataclass(frozen=True)
class SetupPlan:
    """What setup-bridge will do; printed before anything changes."""

    uplink: str
    bridge: str
    datapath: str
    before: LinkState
    bridge_exists: bool = False  # resuming: bridge and port are there, addresses are not
    dhcp: bool = False
    confirm_timeout: float = wd.DEFAULT_CONFIRM_TIMEOUT
    persist: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def mac(self) -> str:
        return self.before.link.mac

    @property
    def mtu(self) -> int:
        return self.before.link.mtu

    @property
    def addresses(self) -> tuple[Address, ...]:
        return self.before.addresses

    @property
    def routes(self) -> tuple[Route, ...]:
        return self.before.movable_routes

    @property
    def gateways(self) -> list[str]:
        return self.before.default_gateways()

    def rows(self) -> list[tuple[str, str, str]]:
        """(what, value, note) rows of the plan table."""
        rows = [
            ("bridge", self.bridge, "exists (resuming)" if self.bridge_exists else "new"),
            ("datapath", self.datapath, ""),
            ("MAC", self.mac, f"pinned: other-config:hwaddr (from {self.uplink})"),
            ("MTU", str(self.mtu), "mtu_request"),
        ]
        for addr in self.addresses:
            note = (
                "dhcp lease"
                if addr.dynamic and addr.family == 4 and self.dhcp
                else ("dynamic" if addr.dynamic else "")
            )
            rows.append((f"IPv{addr.family} address", addr.cidr, note))
        for route in self.routes:
            rows.append(
                ("route", route.describe().replace(f"dev {self.uplink}", f"dev {self.bridge}"), "")
            )
        for gw in self.gateways:
            rows.append(("gateway check", gw, f"must answer through {self.bridge}"))
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "uplink": self.uplink,
            "bridge": self.bridge,
            "datapath": self.datapath,
            "bridge_exists": self.bridge_exists,
            "mac": self.mac,
            "mtu": self.mtu,
            "dhcp": self.dhcp,
            "confirm_timeout": self.confirm_timeout,
            "persist": self.persist,
            "addresses": [
                {"address": a.cidr, "family": a.family, "dynamic": a.dynamic}
                for a in self.addresses
            ],
            "routes": [_route_json(r.retarget(self.uplink, self.bridge)) for r in self.routes],
            "gateways": self.gateways,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class AlreadySetUp:
    bridge: str
    uplink: str

    def to_dict(self) -> dict[str, Any]:
        return {"status": "already set up", "bridge": self.bridge, "uplink": self.uplink}


@dataclass(frozen=True)
class SetupResult:
    plan: SetupPlan
    status: str  # confirmed | rolled back
    checks: tuple[ProbeResult, ...] = ()
    persisted: str | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "plan": self.plan.to_dict(),
            "checks": [
                {"gateway": c.gateway, "dev": c.dev, "ok": c.ok, "how": c.how} for c in self.checks
            ],
            "persisted": self.persisted,
            "notes": list(self.notes),
        }


def _route_json(route: Route) -> dict[str, Any]:
    return {
        "dst": route.dst,
        "gateway": route.gateway,
        "dev": route.dev,
        "table": route.table,
        "metric": route.metric,
        "family": route.family,
        "description": route.describe(),
    }


# ----- validation and plan (read only) ---------------------------------------------------------
def check_request(req: SetupRequest) -> None:
    parse_ifname(req.uplink, "uplink")
    parse_ifname(req.bridge, "bridge name")
    if req.datapath not in DATAPATHS:
        raise BadInput(f'datapath "{req.datapath}" is not one of {", ".join(DATAPATHS)}')
    if req.confirm_timeout <= 0 or req.confirm_timeout > 3600:
        raise BadInput(
            f"--confirm-timeout {req.confirm_timeout:g} is out of range",
            hint="give 1 to 3600 seconds",
        )
    if req.uplink == req.bridge:
        raise BadInput(
            f'the uplink and the bridge are both "{req.uplink}"',
            hint="name the bridge with --bridge (default ovsbr0)",
        )


def plan_setup(
    req: SetupRequest, net: HostNetPort, ovs: OvsPort, kernel_datapath: bool
) -> SetupPlan | AlreadySetUp:
    """Validate REQ against the machine and return the plan; changes nothing."""
    check_request(req)
    if wd.pending_state(req.bridge) is not None:
        raise Conflict(
            f'a setup-bridge of "{req.bridge}" is waiting for confirmation',
            hint="confirm it with 'ovsbridge confirm', or wait for it to roll back",
        )
    if wd.stale_state(req.bridge) is not None:
        raise Conflict(
            f'a previous setup-bridge of "{req.bridge}" was interrupted and not rolled back',
            hint=f"run 'ovsbridge teardown-bridge --bridge {req.bridge}' to restore "
            "the state it saved",
        )
    link = net.link(req.uplink)
    if link is None:
        raise NotFound(
            f'uplink "{req.uplink}" does not exist', hint="list the interfaces with: ip link"
        )
    if link.loopback:
        raise BadInput(
            f'"{req.uplink}" is the loopback interface, not an uplink',
            hint="give the interface that leads to your LAN, e.g. eth0",
        )
    snap = ovs.snapshot()
    owner = _ovs_bridge_of(snap, req.uplink)
    row = ovs.bridge(req.bridge)
    if row is not None:
        ids = row.get("external_ids") or {}
        uplink_of_bridge = ids.get(K_UPLINK)
        if uplink_of_bridge is None:
            raise Conflict(
                f'OVS bridge "{req.bridge}" already exists and was not set up by setup-bridge',
                hint="pick another name with --bridge, or remove that bridge first",
            )
        if uplink_of_bridge != req.uplink:
            raise Conflict(
                f'bridge "{req.bridge}" already has the uplink "{uplink_of_bridge}"',
                hint=f"run 'ovsbridge teardown-bridge --bridge {req.bridge}' first",
            )
        if owner != req.bridge:
            raise Conflict(
                f'bridge "{req.bridge}" was set up with "{req.uplink}" but it is '
                "no longer a port of it",
                hint=f"run 'ovsbridge teardown-bridge --bridge {req.bridge}' first",
            )
    else:
        if owner is not None:
            raise Conflict(
                f'"{req.uplink}" is already a port of OVS bridge "{owner}"',
                hint="an interface can be in one bridge only",
            )
        if net.link(req.bridge) is not None:
            raise Conflict(
                f'a network interface named "{req.bridge}" already exists',
                hint="pick another bridge name with --bridge",
            )
    if link.master is not None and owner is None:
        what = {
            "bond": "a member of bond",
            "bridge": "a port of Linux bridge",
            "openvswitch": "a port of an Open vSwitch bridge in",
        }.get(link.slave_kind or "", "enslaved to")
        hint = (
            f"give the bond itself ({link.master}) as the uplink"
            if link.slave_kind == "bond"
            else f"take it out of {link.master} first"
        )
        raise Conflict(f'"{req.uplink}" is {what} "{link.master}"', hint=hint)
    if link.kind in ("bridge", "openvswitch") or (
        link.kind == "tun" and _is_ovs_iface(snap, req.uplink)
    ):
        raise BadInput(
            f'"{req.uplink}" is itself a bridge, not an uplink',
            hint="give the physical interface (or bond) that leads to your LAN",
        )

    before = net.state(req.uplink)
    if row is not None:
        if not before.addresses and not before.movable_routes:
            return AlreadySetUp(req.bridge, req.uplink)
        # Resuming: the bridge keeps the datapath it was made with.
        warnings: list[str] = []
        datapath = str(row.get("datapath_type") or "system")
    else:
        datapath, warnings = _choose_datapath(req.datapath, kernel_datapath)
    dynamic = [a for a in before.addresses if a.dynamic and a.family == 4]
    dhcp = req.dhcp or bool(dynamic)
    notes = list(warnings)
    if dhcp and not dynamic:
        notes.append(
            f"--dhcp: {req.uplink} has no dynamic IPv4 address; the bridge will "
            "ask the DHCP server for one"
        )
    if dynamic:
        notes.append(
            f"stop the system's DHCP client on {req.uplink} (dhclient, networkd, ...): the "
            f"ovsbridge daemon renews the lease on {req.bridge} from now on"
        )
    if dynamic and not req.dhcp:
        notes.append(
            f"{req.uplink} got {dynamic[0].cidr} from DHCP (a dynamic address): the "
            "bridge takes the lease over"
        )
    for upper, kind in net.uppers(req.uplink):
        notes.append(
            f"{upper} ({kind}) sits on {req.uplink}: once {req.uplink} is an OVS port it may "
            f"stop passing traffic; recreate it as an OVS internal port of {req.bridge}"
        )
    if not before.addresses:
        notes.append(f"{req.uplink} has no global address: nothing to move but the link")
    return SetupPlan(
        uplink=req.uplink,
        bridge=req.bridge,
        datapath=datapath,
        before=before,
        bridge_exists=row is not None,
        dhcp=dhcp,
        confirm_timeout=req.confirm_timeout,
        persist=req.persist,
        warnings=tuple(notes),
    )


def _choose_datapath(asked: str, kernel: bool) -> tuple[str, list[str]]:
    if asked == "system" and not kernel:
        raise EnvironmentProblem(
            "the openvswitch kernel module is not loaded: no 'system' datapath here",
            hint="modprobe openvswitch, or use --datapath netdev (userspace, slower)",
        )
    if asked == "auto":
        asked = "system" if kernel else "netdev"
    warnings = []
    if asked == "netdev":
        warnings.append(
            "datapath netdev: the userspace datapath forwards every packet in "
            "ovs-vswitchd, far slower than the kernel's (no openvswitch module)"
        )
    return asked, warnings


def _ovs_bridge_of(snap: Snapshot, iface: str) -> str | None:
    for bridge, _port, ifaces in snap.ports_with_interfaces():
        if any(i.get("name") == iface for i in ifaces):
            return bridge
    return None


def _is_ovs_iface(snap: Snapshot, name: str) -> bool:
    return any(i.get("name") == name for i in snap.interfaces)


# ----- apply -------------------------------------------------------------------------------
def ovs_commands(plan: SetupPlan) -> list[Command]:
    """The one OVSDB transaction: bridge (datapath, MAC, MTU, markers) and the uplink port."""
    br, up = plan.bridge, plan.uplink
    ids = {K_UPLINK: up, K_MADE_BY: MADE_BY, naming.K_CREATED_AT: str(int(time.time()))}
    if plan.dhcp:
        ids[K_UPLINK_DHCP] = "true"
    bridge_sets = [f"external_ids:{k}={quote_value(v)}" for k, v in sorted(ids.items())]
    commands = [cmd("--may-exist", "add-br", br)]
    if not plan.bridge_exists:
        bridge_sets = [
            f"datapath_type={plan.datapath}",
            f"other-config:hwaddr={quote_value(plan.mac)}",
            *bridge_sets,
        ]
    commands.append(cmd("set", "Bridge", br, *bridge_sets))
    commands.append(cmd("set", "Interface", br, f"mtu_request={plan.mtu}"))
    commands.append(cmd("--may-exist", "add-port", br, up))
    commands.append(cmd("set", "Port", up, f"external_ids:{K_ROLE}={ROLE_UPLINK}"))
    return commands


def _pause_for_tests(step: str) -> None:
    # NOTE: test-only (inert unless the variable is set): lets a test SIGKILL the CLI at a
    # known point and prove that the detached watchdog still restores.
    if os.environ.get(PAUSE_ENV) == step:
        time.sleep(3600)


class Applied:
    """A setup that is in place and passed the gateway check, awaiting confirmation."""

    def __init__(
        self, plan: SetupPlan, watchdog: wd.Watchdog, checks: tuple[ProbeResult, ...]
    ) -> None:
        self.plan = plan
        self.watchdog = watchdog
        self.checks = checks

    def confirm(self) -> SetupResult:
        return self._result(self.watchdog.confirm())

    def wait(self, user_confirmed: Callable[[float], bool] | None = None) -> SetupResult:
        """Wait for the confirmation; Ctrl-C at the prompt means "no": roll back now."""
        try:
            outcome = self.watchdog.wait(user_confirmed)
        except KeyboardInterrupt:
            outcome = self.watchdog.rollback("interrupted at the confirmation prompt")
        return self._result(outcome)

    def _result(self, outcome: wd.Outcome) -> SetupResult:
        self.watchdog.close()
        if outcome.confirmed:
            persisted = write_persist(self.plan) if self.plan.persist else None
            return SetupResult(self.plan, "confirmed", self.checks, persisted)
        raise _rolled_back_error(self.plan, outcome)


def _rolled_back_error(plan: SetupPlan, outcome: wd.Outcome) -> OvsbridgeError:
    if outcome.problems:
        return RollbackIncomplete(
            OperationFailed(f"setup-bridge {plan.uplink} -> {plan.bridge}: {outcome.reason}"),
            list(outcome.problems),
        )
    return OperationFailed(
        f"{outcome.reason}: {plan.bridge} was rolled back, {plan.uplink} is as it was",
        hint="run setup-bridge again and confirm with Enter, 'ovsbridge confirm' or --yes",
        outcome=outcome.outcome,
    )


def apply_setup(
    plan: SetupPlan,
    net: HostNetPort,
    ovs: OvsPort,
    arm: ArmFn = wd.Watchdog.arm,
    gateway_timeout: float = GATEWAY_CHECK_TIMEOUT,
    dhcp: DhcpPort | None = None,
) -> Applied:
    """Arm the watchdog, apply PLAN, check the gateway. Raises (after rollback) on failure."""
    if plan.dhcp and dhcp is None:
        raise OperationFailed("setup-bridge --dhcp needs the DHCP adapter")
    armed = wd.Armed(
        bridge=plan.bridge,
        uplink=plan.uplink,
        db=ovs.db,
        before=plan.before,
        bridge_existed=plan.bridge_exists,
        confirm_timeout=plan.confirm_timeout,
        dhcp={"bridge": plan.bridge, "uplink": plan.uplink, "uplink_lease": None}
        if plan.dhcp
        else None,
    )
    watchdog = arm(armed)
    try:
        ovs.transact(*ovs_commands(plan))
        _pause_for_tests("ovs")
        bridge = net.wait_link(plan.bridge, 15.0)
        if bridge.mac != plan.mac:
            # NOTE: ovs-vswitchd applies other-config:hwaddr on its next run; give it a moment.
            _wait_mac(net, plan.bridge, plan.mac)
        net.set_link(plan.bridge, up=True)
        net.move(plan.uplink, plan.bridge, plan.before)
        if plan.dhcp:
            assert dhcp is not None
            _take_lease_over(plan, dhcp, watchdog)
        _pause_for_tests("move")
        checks = check_gateways(plan, net, gateway_timeout)
        failed = [c for c in checks if not c.ok]
        if failed:
            raise _CheckFailed(
                f"the default gateway {failed[0].gateway} did not answer "
                f"through {plan.bridge} ({failed[0].how})"
            )
        watchdog.applied()
    except _CheckFailed as exc:
        outcome = _roll_back(watchdog, armed, net, ovs, exc.reason)
        raise _rolled_back_error(plan, outcome) from None
    except OvsbridgeError as exc:
        outcome = _roll_back(watchdog, armed, net, ovs, exc.message)
        if outcome.problems:
            raise RollbackIncomplete(exc, list(outcome.problems)) from exc
        raise
    except BaseException as exc:
        _roll_back(watchdog, armed, net, ovs, f"interrupted ({type(exc).__name__})")
        raise
    return Applied(plan, watchdog, checks)


def _take_lease_over(plan: SetupPlan, dhcp: DhcpPort, watchdog: wd.Watchdog) -> None:
    """The bridge (same MAC) asks for the uplink's address and the daemon keeps the lease."""
    held = dhcp.drop(plan.uplink)  # the daemon kept the uplink's lease (an earlier teardown)
    if held is not None:
        watchdog.update({"bridge": plan.bridge, "uplink": plan.uplink, "uplink_lease": held})
    dynamic = [a for a in plan.addresses if a.dynamic and a.family == 4]
    wanted = dynamic[0].local if dynamic else None
    lease = dhcp.acquire(plan.bridge, plan.mac, wanted)
    got = str(lease.get("address", "")).split("/")[0]
    if wanted is not None and got != wanted:
        raise _CheckFailed(
            f"the DHCP server gave {got} to {plan.bridge} instead of {plan.uplink}'s {wanted}"
        )
    has_default = any(r.default and r.family == 4 for r in plan.routes)
    dhcp.keep(plan.bridge, lease, default_route=not has_default)


def _roll_back(
    watchdog: wd.Watchdog, armed: wd.Armed, net: HostNetPort, ovs: OvsPort, reason: str
) -> wd.Outcome:
    """Have the watchdog restore the before-state; do it here if the watchdog is gone."""
    try:
        return watchdog.rollback(reason)
    except OvsbridgeError as exc:
        problems = restore_armed(armed, net, ovs)
        return wd.Outcome(
            wd.ROLLED_BACK if not problems else wd.ROLLBACK_INCOMPLETE,
            f"{reason} (restored by the CLI: {exc.message})",
            tuple(problems),
        )
    finally:
        watchdog.close()


class _CheckFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _wait_mac(net: HostNetPort, name: str, mac: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        link = net.link(name)
        if link is not None and link.mac == mac:
            return
        time.sleep(0.05)
    raise OperationFailed(f'OVS did not give "{name}" the uplink\'s MAC {mac}')


def check_gateways(
    plan: SetupPlan, net: HostNetPort, timeout: float = GATEWAY_CHECK_TIMEOUT
) -> tuple[ProbeResult, ...]:
    """Each default gateway of the uplink must answer through the bridge."""
    return tuple(net.probe_gateway(plan.bridge, gw, timeout) for gw in plan.gateways)


# ----- rollback (run by the watchdog, or by the CLI when the watchdog is gone) -----------------
def restore_armed(
    armed: wd.Armed,
    net: HostNetPort | None = None,
    ovs: OvsPort | None = None,
    dhcp: DhcpPort | None = None,
) -> list[str]:
    """Put the uplink back exactly as ARMED recorded it; remove the bridge if we made it."""
    if net is None:
        from ovsbridge.system.hostnet import HostNet

        net = HostNet()
    if ovs is None:
        from ovsbridge.system.ovs import Ovs

        ovs = Ovs(db=armed.db)
    if armed.dhcp is not None and dhcp is None:
        from ovsbridge.system.hostnet import UplinkDhcp

        dhcp = UplinkDhcp()
    problems = _restore(armed.before, armed.bridge, net, ovs, not armed.bridge_existed)
    if armed.dhcp is not None and dhcp is not None:
        held = armed.dhcp.get("uplink_lease")
        problems.extend(_lease_back(dhcp, armed.bridge, armed.uplink, held))
    return problems


def _lease_back(
    dhcp: DhcpPort, bridge: str, uplink: str, lease: dict[str, Any] | None
) -> list[str]:
    """The daemon stops keeping the bridge's lease; the uplink's goes back to it if it had one."""
    try:
        dhcp.drop(bridge)
        if lease:
            dhcp.keep(uplink, lease, default_route=False)
    except OvsbridgeError as exc:
        return [f"DHCP lease hand-back: {exc.message}"]
    return []


def _restore(
    before: LinkState, bridge: str, net: HostNetPort, ovs: OvsPort, delete_bridge: bool
) -> list[str]:
    problems: list[str] = []
    # Addresses and routes back on the uplink first, while the bridge still carries them
    # (the kernel accepts the same address on two links), then the bridge goes.
    try:
        net.restore(before)
    except OvsbridgeError as exc:
        problems.append(exc.message)
    if delete_bridge:
        try:
            ovs.transact(cmd("--if-exists", "del-br", bridge))
        except OvsbridgeError as exc:
            problems.append(f"cannot remove bridge {bridge}: {exc.message}")
    else:
        try:
            _take_back_from_bridge(before, bridge, net)
        except OvsbridgeError as exc:
            problems.append(f"cannot clear {bridge}: {exc.message}")
    # Removing the bridge can take routes with it; make the uplink exact once more.
    try:
        problems.extend(net.restore(before))
    except OvsbridgeError as exc:
        problems.append(exc.message)
    return problems


def _take_back_from_bridge(before: LinkState, bridge: str, net: HostNetPort) -> None:
    """A bridge that stays (a resumed setup) gives up what was moved onto it."""
    link = net.link(bridge)
    if link is None:
        return
    now = net.state(bridge)
    moved_addrs = {a.key() for a in before.addresses}
    moved_routes = {r.retarget(before.link.name, bridge).key() for r in before.routes}
    net.restore(
        LinkState(
            link=now.link,
            addresses=tuple(a for a in now.addresses if a.key() not in moved_addrs),
            routes=tuple(r for r in now.routes if r.key() not in moved_routes),
        )
    )


# ----- teardown --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TeardownPlan:
    bridge: str
    uplink: str | None
    target: LinkState | None  # what the uplink will carry again
    container_ports: tuple[str, ...] = ()
    other_ports: tuple[str, ...] = ()
    from_saved_state: bool = False
    nothing_to_do: bool = False
    dhcp: bool = False  # the bridge's lease goes back to the uplink
    saved_lease: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "bridge": self.bridge,
            "uplink": self.uplink,
            "dhcp": self.dhcp,
            "addresses": [a.cidr for a in self.target.addresses] if self.target else [],
            "routes": [r.describe() for r in self.target.movable_routes] if self.target else [],
            "container_ports": list(self.container_ports),
            "other_ports": list(self.other_ports),
            "from_saved_state": self.from_saved_state,
        }


@dataclass(frozen=True)
class TeardownResult:
    plan: TeardownPlan
    status: str  # torn down | not set up
    detached: tuple[str, ...] = ()
    unpersisted: str | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            **self.plan.to_dict(),
            "detached": list(self.detached),
            "unpersisted": self.unpersisted,
            "notes": list(self.notes),
        }


def plan_teardown(bridge: str, net: HostNetPort, ovs: OvsPort, force: bool) -> TeardownPlan:
    parse_ifname(bridge, "bridge name")
    if wd.pending_state(bridge) is not None:
        raise Conflict(
            f'setup-bridge of "{bridge}" is waiting for confirmation',
            hint="let it roll back at its timeout, or confirm it first",
        )
    saved = wd.stale_state(bridge)
    row = ovs.bridge(bridge)
    if row is None:
        if saved is not None:
            return TeardownPlan(
                bridge,
                saved.uplink,
                saved.before,
                from_saved_state=True,
                dhcp=saved.dhcp is not None,
                saved_lease=(saved.dhcp or {}).get("uplink_lease"),
            )
        return TeardownPlan(bridge, None, None, nothing_to_do=True)
    ids = row.get("external_ids") or {}
    uplink = ids.get(K_UPLINK)
    if uplink is None:
        raise Conflict(
            f'OVS bridge "{bridge}" was not set up by setup-bridge; not touching it',
            hint=f"remove it yourself if you mean it: ovs-vsctl del-br {bridge}",
        )
    containers, others = [], []
    for br, port, ifaces in ovs.snapshot().ports_with_interfaces():
        if br != bridge or port["name"] in (bridge, uplink):
            continue
        if any((i.get("external_ids") or {}).get(naming.K_OWNER) == naming.OWNER for i in ifaces):
            containers.append(port["name"])
        else:
            others.append(port["name"])
    if (containers or others) and not force:
        listing = ", ".join([*containers, *others])
        raise Conflict(
            f'{len(containers) + len(others)} port(s) still on "{bridge}": {listing}',
            hint="detach the containers first, or use --force to detach them",
        )
    if saved is not None:
        target = saved.before
    else:
        uplink_link = net.link(uplink)
        bridge_link = net.link(bridge)
        if uplink_link is None:
            raise NotFound(
                f'the uplink "{uplink}" of "{bridge}" no longer exists',
                hint=f"remove the bridge with: ovs-vsctl del-br {bridge}",
            )
        if bridge_link is None:
            target = LinkState(
                link=uplink_link,
                addresses=net.state(uplink).addresses,
                routes=net.state(uplink).routes,
            )
        else:
            on_bridge = net.state(bridge)
            target = LinkState(
                link=uplink_link,
                addresses=on_bridge.addresses,
                routes=tuple(r.retarget(bridge, uplink) for r in on_bridge.routes),
            )
    return TeardownPlan(
        bridge,
        uplink,
        target,
        tuple(containers),
        tuple(others),
        from_saved_state=saved is not None,
        dhcp=ids.get(K_UPLINK_DHCP) == "true" or (saved is not None and saved.dhcp is not None),
        saved_lease=(saved.dhcp or {}).get("uplink_lease") if saved is not None else None,
    )


def apply_teardown(
    plan: TeardownPlan, net: HostNetPort, ovs: OvsPort, dhcp: DhcpPort | None = None
) -> TeardownResult:
    if plan.nothing_to_do:
        return TeardownResult(plan, "not set up")
    lease = None
    if plan.dhcp and dhcp is not None:
        # The daemon stops renewing on the bridge; the lease follows the address back.
        lease = dhcp.drop(plan.bridge) or plan.saved_lease
    detached = []
    if plan.container_ports:
        ovs.transact(
            *(cmd("--if-exists", "del-port", plan.bridge, p) for p in plan.container_ports)
        )
        for port in plan.container_ports:
            net.delete_link(port)
            detached.append(port)
    assert plan.target is not None
    problems = _restore(plan.target, plan.bridge, net, ovs, delete_bridge=True)
    if lease and dhcp is not None and plan.uplink:
        try:
            dhcp.keep(plan.uplink, lease, default_route=False)
        except OvsbridgeError as exc:
            problems.append(f"{plan.uplink}'s DHCP lease could not go to the daemon: {exc.message}")
    if problems:
        raise RollbackIncomplete(
            OperationFailed(f"teardown of {plan.bridge} did not restore everything"), problems
        )
    wd.forget_state(plan.bridge)
    removed = remove_persist(plan.bridge)
    return TeardownResult(plan, "torn down", tuple(detached), removed)


# ----- --persist ---------------------------------------------------------------------------------
def conf_dir() -> str:
    return os.environ.get(CONF_DIR_ENV) or DEFAULT_CONF_DIR


def persist_path(bridge: str) -> str:
    return os.path.join(conf_dir(), f"setup-bridge-{bridge}.env")


def persist_text(plan: SetupPlan) -> str:
    flags = ["--dhcp"] if plan.dhcp else []
    return (
        "# Written by 'ovsbridge setup-bridge --persist'; read by\n"
        f"# ovsbridge-setup-bridge@{plan.bridge}.service at boot. Remove with teardown-bridge.\n"
        f"UPLINK={plan.uplink}\n"
        f"DATAPATH={plan.datapath}\n"
        f"FLAGS={' '.join(flags)}\n"
    )


def write_persist(plan: SetupPlan) -> str:
    path = persist_path(plan.bridge)
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(persist_text(plan))
        os.replace(tmp, path)
    except OSError as exc:
        raise OperationFailed(
            f"setup-bridge is in place but {path} could not be written: {exc}",
            hint="fix the directory, then run setup-bridge --persist again",
        ) from exc
    return path


def remove_persist(bridge: str) -> str | None:
    path = persist_path(bridge)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OperationFailed(f"cannot remove {path}: {exc}") from exc
    return path
