"""CLI of setup-bridge, teardown-bridge and confirm (registered by cli.py).

Parses the options, calls ops.uplink, renders the plan (a rich table for people, one JSON
document with --json) and asks the person at the terminal to confirm. Errors go to the CLI's
one funnel.
"""

from __future__ import annotations

import select
import sys
import termios
import time
from typing import Any

import click

from ovsbridge.cli import app, json_option, require_root
from ovsbridge.errors import OperationFailed


def _enter_pressed(timeout: float) -> bool:
    """True when a line arrived on the terminal within TIMEOUT seconds."""
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    if not ready:
        return False
    if sys.stdin.readline() == "":
        time.sleep(timeout)  # the terminal went away: only 'ovsbridge confirm' can confirm
        return False
    return True


def _prompt(text: str) -> None:
    # NOTE: an interaction, not data: it goes to stderr even with --json.
    click.echo(text, err=True)


@click.command("setup-bridge")
@click.argument("uplink")
@click.option(
    "--bridge",
    default="ovsbr0",
    show_default=True,
    metavar="NAME",
    help="OVS bridge that takes the uplink over.",
)
@click.option(
    "--datapath",
    type=click.Choice(["auto", "system", "netdev"]),
    default="auto",
    show_default=True,
    help="auto: system when the openvswitch kernel module is loaded, else netdev.",
)
@click.option(
    "--dhcp",
    is_flag=True,
    help="The uplink's address comes from DHCP: the bridge takes the lease over.",
)
@click.option(
    "--confirm-timeout",
    type=click.FloatRange(min=1, max=3600),
    default=60.0,
    show_default=True,
    metavar="S",
    help="Roll back unless confirmed within S seconds.",
)
@click.option(
    "--yes", "-y", is_flag=True, help="Confirm as soon as the gateway check passes (for scripts)."
)
@click.option("--dry-run", is_flag=True, help="Print the plan and stop.")
@click.option(
    "--persist",
    is_flag=True,
    help="Also write /etc/ovsbridge/setup-bridge-BRIDGE.env for the boot unit.",
)
@json_option
@require_root
def setup_bridge(
    uplink: str,
    bridge: str,
    datapath: str,
    dhcp: bool,
    confirm_timeout: float,
    yes: bool,
    dry_run: bool,
    persist: bool,
) -> None:
    """Move UPLINK (e.g. eth0) into an OVS bridge without losing the host.

    \b
    Every global address and route of UPLINK (all tables) moves to the bridge, which gets
    UPLINK's MAC and MTU. A detached watchdog restores the previous state if the default
    gateway does not answer through the bridge, or if no confirmation comes in time:
    Enter here, 'ovsbridge confirm' from any shell, or --yes.
    """
    from ovsbridge.ops import uplink as ops
    from ovsbridge.system.hostnet import HostNet, UplinkDhcp
    from ovsbridge.system.ovs import kernel_datapath_available

    ctx = app()
    render = ctx.render
    req = ops.SetupRequest(
        uplink=uplink,
        bridge=bridge,
        datapath=datapath,
        dhcp=dhcp,
        confirm_timeout=confirm_timeout,
        persist=persist,
    )
    with HostNet() as net:
        plan = ops.plan_setup(req, net, ctx.ovs, kernel_datapath_available())
        if isinstance(plan, ops.AlreadySetUp):
            if ctx.json:
                render.data(plan.to_dict())
            else:
                render.line(
                    f"{plan.bridge} is already set up with uplink {plan.uplink}; nothing to do"
                )
            return
        if not ctx.json:
            _render_plan(plan)
        if dry_run:
            if ctx.json:
                render.data({"status": "dry run", "plan": plan.to_dict()})
            else:
                render.note("dry run: nothing was changed")
            return
        with render.status(f"moving {uplink} into {bridge}"):
            keeper = UplinkDhcp() if plan.dhcp else None
            applied = ops.apply_setup(plan, net, ctx.ovs, dhcp=keeper)
        for check in applied.checks:
            render.note(f"gateway {check.gateway} answers through {check.dev} ({check.how})")
        if yes:
            result = applied.confirm()
        else:
            interactive = sys.stdin.isatty()
            if interactive:
                # NOTE: only an Enter typed after the prompt counts, not one typed ahead.
                termios.tcflush(sys.stdin, termios.TCIFLUSH)
            how = "press Enter here, or run" if interactive else "run"
            _prompt(
                f"{bridge} carries {uplink}'s addresses now. To keep it, {how} "
                f"'ovsbridge confirm' within {confirm_timeout:g} s; otherwise it is "
                "rolled back."
            )
            result = applied.wait(_enter_pressed if interactive else None)
    if ctx.json:
        render.data(result.to_dict())
        return
    moved = f"{len(plan.addresses)} address(es) and {len(plan.routes)} route(s)"
    render.line(f"{bridge} is set up: {uplink} is its uplink port, {moved} moved, confirmed.")
    if result.persisted:
        render.line(
            f"persisted in {result.persisted}; enable it at boot with: "
            f"systemctl enable ovsbridge-setup-bridge@{bridge}.service"
        )


def _render_plan(plan: Any) -> None:
    render = app().render
    render.table(
        ["", "value", "note"], plan.rows(), title=f"setup-bridge: {plan.uplink} -> {plan.bridge}"
    )
    for warning in plan.warnings:
        render.note(f"note: {warning}")


@click.command("teardown-bridge")
@click.option(
    "--bridge",
    default="ovsbr0",
    show_default=True,
    metavar="NAME",
    help="Bridge made by setup-bridge.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Detach the containers (and drop the other ports) still on the bridge.",
)
@json_option
@require_root
def teardown_bridge(bridge: str, force: bool) -> None:
    """Undo setup-bridge: the uplink gets its addresses and routes back, the bridge goes."""
    from ovsbridge.ops import uplink as ops
    from ovsbridge.system.hostnet import HostNet, UplinkDhcp

    ctx = app()
    render = ctx.render
    with HostNet() as net:
        plan = ops.plan_teardown(bridge, net, ctx.ovs, force)
        if plan.container_ports:
            # --force: detach the containers the way `detach` does, leases released too.
            from ovsbridge.ops.attach import detach_ports
            from ovsbridge.system.backend import RealBackend

            detach_ports(RealBackend(ctx.ovs), bridge, plan.container_ports)
        result = ops.apply_teardown(plan, net, ctx.ovs, UplinkDhcp() if plan.dhcp else None)
    if ctx.json:
        render.data(result.to_dict())
        return
    if result.status == "not set up":
        render.line(f"{bridge} does not exist; nothing to tear down")
        return
    for port in result.detached:
        render.note(f"detached port {port}")
    for port in plan.other_ports:
        render.note(f"removed port {port} with the bridge")
    assert plan.target is not None
    render.line(
        f"{bridge} removed; {plan.uplink} has its {len(plan.target.addresses)} "
        f"address(es) and {len(plan.target.movable_routes)} route(s) back."
    )
    if result.unpersisted:
        render.line(
            f"removed {result.unpersisted}; disable the boot unit with: "
            f"systemctl disable ovsbridge-setup-bridge@{bridge}.service"
        )


@click.command("confirm")
@click.option(
    "--bridge",
    default=None,
    metavar="NAME",
    help="Confirm only this bridge's setup (default: every one waiting).",
)
@json_option
@require_root
def confirm(bridge: str | None) -> None:
    """Keep a setup-bridge that is waiting for confirmation (from any shell)."""
    from ovsbridge.system import watchdog

    ctx = app()
    done = watchdog.confirm_pending(bridge)
    if ctx.json:
        ctx.render.data([{"bridge": name, **outcome.to_dict()} for name, outcome in done])
    failed = [(name, o) for name, o in done if not o.confirmed]
    if not ctx.json:
        for name, outcome in done:
            if outcome.confirmed:
                ctx.render.line(f"confirmed: {name} stays")
    if failed:
        name, outcome = failed[0]
        raise OperationFailed(
            f"{name} could not be confirmed: it was {outcome.outcome} ({outcome.reason})"
        )
