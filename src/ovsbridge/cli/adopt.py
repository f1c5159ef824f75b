"""``ovsbridge adopt``: make pipework's and ovs-docker's ports ovsbridge's (see ops/adopt.py)."""

from __future__ import annotations

import click

from ovsbridge.cli import app, json_option, require_root

EPILOG = """\b
Examples:
  ovsbridge adopt                         # every pipework / ovs-docker port on every bridge
  ovsbridge adopt ovsbr0 --json
  ovsbridge adopt ovsbr0 --port veth1pl4242 --dhcp   # its address is a DHCP lease
"""


@click.command(epilog=EPILOG)
@click.argument("bridge", required=False)
@click.option("--port", "ports", multiple=True, metavar="PORT",
              help="Adopt only this port (repeatable).")
@click.option("--dhcp", "assume_dhcp", is_flag=True,
              help="Take an IPv4 address nothing proves static or dynamic as a DHCP lease, "
                   "and hand it to the daemon.")
@click.option("--dhcp-timeout", type=float, default=10.0, show_default=True, metavar="S",
              help="How long to wait for the DHCP server when handing a lease over.")
@json_option
@require_root
def adopt(bridge: str | None, ports: tuple[str, ...], assume_dhcp: bool,
          dhcp_timeout: float) -> None:
    """Tag pipework- and ovs-docker-made ports as ovsbridge's, keeping the container's MAC
    and addresses, so ps, detach, cleanup and the daemon manage them from then on.

    Ports of stopped or removed containers are skipped (cleanup removes those). A DHCP
    address (a DHCP client runs in the container, or the address has a lease lifetime) is
    handed to the daemon, which renews it; where nothing tells, the output says so.
    """
    from ovsbridge.ops.adopt import adopt as do_adopt
    from ovsbridge.system.adopt_backend import RealAdoptProbe
    from ovsbridge.system.backend import RealBackend

    ctx = app()
    ovsdb = ctx.ovs
    result = do_adopt(RealBackend(ovsdb), RealAdoptProbe(ovsdb), bridge,
                      ports=frozenset(ports) if ports else None, assume_dhcp=assume_dhcp,
                      dhcp_timeout=dhcp_timeout)
    if ctx.json:
        ctx.render.data(result.to_json())
        return
    for entry in (*result.adopted, *result.skipped):
        what = f"{entry.container or '-'} {entry.ifname or '-'}"
        if entry.action == "adopted":
            addresses = ", ".join(entry.addresses) or "no address"
            line = (f"adopted: {entry.port} on {entry.bridge} ({entry.owner}) -> {what} "
                    f"({entry.mac}) {entry.mode}: {addresses}")
            if entry.vlan:
                line += f", vlan {entry.vlan}"
        else:
            line = f"skipped: {entry.port} on {entry.bridge} ({entry.owner}): {entry.reason}"
        ctx.render.line(line)
        for note in entry.notes:
            ctx.render.line(f"  note: {note}")
    ctx.render.line(f"adopted {len(result.adopted)} port(s), skipped {len(result.skipped)}")
