"""``ovsbridge doctor``: check the host and its bridges (decisions in ops/doctor.py)."""

from __future__ import annotations

import click

from ovsbridge import __version__
from ovsbridge.cli import app, json_option

EPILOG = """\b
Examples:
  ovsbridge doctor
  ovsbridge doctor --bridge ovsbr0 --dhcp-probe
  ovsbridge doctor --json | jq '.checks[] | select(.status != "ok")'
\b
Exit status: 0 when no check fails (warnings allowed), 1 when one fails.
"""


@click.command(epilog=EPILOG)
@click.option("--bridge", metavar="BRIDGE", help="Check only this bridge (default: every one).")
@click.option("--dhcp-probe", is_flag=True,
              help="Send a DHCP DISCOVER on each checked bridge from a throwaway netns "
                   "(stops at the OFFER: nothing is leased).")
@click.option("--probe-timeout", type=float, default=5.0, show_default=True, metavar="S",
              help="How long the DHCP probe waits for an OFFER.")
@json_option
def doctor(bridge: str | None, dhcp_probe: bool, probe_timeout: float) -> None:
    """Check that this host is ready for ovsbridge, and what is wrong with its bridges.

    \b
    root; Open vSwitch reachable and its version; the datapath (kernel module or
    userspace); dockerd reachable and its API version (rootless refused); the daemon and
    its version; TX checksum offload on veth ports of userspace bridges; MTU mismatches;
    stale ports; a DHCP server answering (--dhcp-probe); the uplink after setup-bridge.
    Each check is ok, warning or fail, with the fix.
    """
    from ovsbridge.ops.doctor import diagnose
    from ovsbridge.system.doctor_facts import RealDoctorFacts

    ctx = app()
    report = diagnose(RealDoctorFacts(ctx.ovs), __version__, bridge=bridge,
                      dhcp_probe=dhcp_probe, probe_timeout=probe_timeout)
    if ctx.json:
        ctx.render.data(report.to_json())
    else:
        for check in report.checks:
            where = f" [{check.subject}]" if check.subject and check.subject not in \
                check.message else ""
            ctx.render.line(f"{check.status:<7} {check.name}: {check.message}{where}")
            if check.fix:
                ctx.render.line(f"        fix: {check.fix}")
        counts = report.counts()
        ctx.render.line(f"{counts['ok']} ok, {counts['warning']} warning(s), "
                        f"{counts['fail']} failed")
    if report.failed:
        click.get_current_context().exit(1)
