"""``ovsbridge set``: change a live attachment's port (VLAN, trunk, rate limit) in place."""

from __future__ import annotations

from typing import Any

import click

from ovsbridge.cli import app, json_option, require_root
from ovsbridge.errors import BadInput
from ovsbridge.model import parse_guest, parse_ifname

SET_EPILOG = """\b
Examples:
  ovsbridge set web1 --vlan 20                 # access port on VLAN 20
  ovsbridge set web1 --trunk 10,20,30          # trunk (with a tag: its native VLAN)
  ovsbridge set web1 --vlan none --trunk 10,20 # a pure trunk
  ovsbridge set web1 --rate-limit 100 --burst 1000
  ovsbridge set web1 --rate-limit none         # no policing
"""


def _value(text: str | None) -> Any:
    if text is None:
        return ...
    return None if text.strip().lower() == "none" else text


@click.command(name="set", epilog=SET_EPILOG)
@click.argument("guest")
@click.option("--ifname", default="eth1", show_default=True, help="The guest's interface.")
@click.option("--vlan", metavar="N|none", help="Access VLAN (with --trunk: native VLAN).")
@click.option("--trunk", metavar="VLANS|none", help="VLANs the port carries tagged.")
@click.option("--rate-limit", metavar="MBPS|none",
              help="Police what the guest sends to MBPS Mbit/s.")
@click.option("--burst", metavar="KB", help="With --rate-limit: burst size in KB.")
@json_option
@require_root
def set_command(guest: str, ifname: str, vlan: str | None, trunk: str | None,
                rate_limit: str | None, burst: str | None) -> None:
    """Change GUEST's live port in one OVSDB transaction, without recreating the veth.

    The new configuration is recorded on the port, so ps, a repeated attach and the
    watcher see it.
    """
    from ovsbridge.ops.ports import set_port
    from ovsbridge.system.backend import RealBackend
    from ovsbridge.system.ovs import Ovs

    spec = parse_guest(guest)
    name = parse_ifname(ifname, "--ifname")
    changes = {k: v for k, v in {"vlan": _value(vlan), "trunk": _value(trunk),
                                 "rate_limit": _value(rate_limit),
                                 "burst": _value(burst)}.items() if v is not ...}
    if not changes:
        raise BadInput("nothing to change", hint="give --vlan, --trunk or --rate-limit")
    ctx = app()
    result = set_port(RealBackend(Ovs(db=ctx.db)), spec, name, changes)
    if ctx.json:
        ctx.render.data(result.to_json())
        return
    if not result.changed:
        ctx.render.line(f"{result.guest} {result.ifname}: unchanged")
        return
    parts = []
    for key, value in result.changed.items():
        shown = "none" if value in (None, []) else (
            ",".join(map(str, value)) if isinstance(value, list) else value)
        parts.append(f"{key.replace('_', '-')} {shown}")
    ctx.render.line(f"{result.guest} {result.ifname} on {result.bridge} ({result.port}): "
                    + ", ".join(parts))


__all__ = ["set_command"]
