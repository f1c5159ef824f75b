"""`ovsbridge ovn ...`: make this host an OVN chassis, and manage logical switches.

join/leave/status act on this host's OVS (``--db``) and ovn-controller; ``switch`` commands
act on the central's northbound database (``--nb``, env OVSBRIDGE_OVN_NB, else next to the
chassis' ovn-remote).
"""

from __future__ import annotations

from typing import Any

import click

from ovsbridge.cli import app, json_option, require_root
from ovsbridge.errors import BadInput


def _chassis() -> Any:
    from ovsbridge.system.ovn import RealChassis

    return RealChassis(app().ovs)


def _southbound(db: str) -> Any:
    from ovsbridge.system.ovn import RealSouthbound

    return RealSouthbound(db)


def northbound(nb: str | None) -> Any:
    """The northbound database: --nb / OVSBRIDGE_OVN_NB, else beside this chassis' remote."""
    from ovsbridge.ops.ovn import nb_from_remote, parse_remote
    from ovsbridge.system.ovn import RealNorthbound

    if nb:
        return RealNorthbound(str(parse_remote(nb, "--nb", 6641)))
    derived = nb_from_remote(_chassis().ovs_external_ids().get("ovn-remote"))
    if derived is None:
        raise BadInput("no OVN northbound database given",
                       hint="pass --nb tcp:HOST:6641 or set OVSBRIDGE_OVN_NB (or join first)")
    return RealNorthbound(derived)


@click.group()
@click.option("--nb", envvar="OVSBRIDGE_OVN_NB", metavar="tcp:HOST:PORT",
              help="OVN northbound database (switch commands). Env: OVSBRIDGE_OVN_NB. "
                   "Default: the central this host joined, port 6641.")
@click.pass_context
def ovn(ctx: click.Context, nb: str | None) -> None:
    """Multi-host networking through OVN: this host as a chassis, logical switches.

    \b
    On every host:   ovsbridge ovn join --central tcp:CENTRAL:6642 --bridge-mapping lan:ovsbr0
    Once:            ovsbridge ovn switch create web --subnet 198.51.100.0/24 --dhcp
    Then:            ovsbridge attach br-int web1 dhcp --ovn-switch web
    """
    ctx.meta["ovsbridge.ovn.nb"] = nb


def _nb() -> Any:
    return northbound(click.get_current_context().meta.get("ovsbridge.ovn.nb"))


@ovn.command()
@click.option("--central", required=True, metavar="tcp:HOST:PORT",
              help="The OVN southbound database (ovn-remote), e.g. tcp:203.0.113.10:6642.")
@click.option("--encap-ip", metavar="IP",
              help="Geneve tunnel address of this host. Default: the source address of the "
                   "route to the central.")
@click.option("--bridge-mapping", "mappings", multiple=True, metavar="NETWORK:BRIDGE",
              help="Reach localnet network NETWORK through BRIDGE (repeatable), e.g. "
                   "lan:ovsbr0.")
@click.option("--system-id", metavar="NAME",
              help="Chassis name. Default: the existing system-id, else one derived from "
                   "this host's OVS database.")
@click.option("--timeout", type=float, default=30.0, show_default=True, metavar="S",
              help="Give up when the chassis is not in the southbound database within S.")
@json_option
@require_root
def join(central: str, encap_ip: str | None, mappings: tuple[str, ...],
         system_id: str | None, timeout: float) -> None:
    """Make this host an OVN chassis (idempotent; rolled back on failure)."""
    import ipaddress

    from ovsbridge.ops import ovn as ops

    if encap_ip is not None:
        try:
            encap_ip = str(ipaddress.ip_address(encap_ip))
        except ValueError:
            raise BadInput(f'--encap-ip "{encap_ip}" is not an IP address',
                           hint="e.g. --encap-ip 203.0.113.11") from None
    if system_id is not None:
        ops.parse_name(system_id, "--system-id")
    if timeout <= 0:
        raise BadInput("--timeout must be positive", hint="e.g. --timeout 30")
    opts = ops.JoinOptions(ops.parse_remote(central, "--central", 6642), encap_ip,
                           ops.parse_mappings(mappings), system_id, timeout)
    ctx = app()
    with ctx.render.status(f"joining OVN at {opts.central}"):
        result = ops.join(_chassis(), _southbound, opts)
    if ctx.json:
        ctx.render.data(result.to_json())
        return
    maps = ", ".join(f"{n}:{b}" for n, b in result.mappings) or "none"
    ctx.render.line(f"{result.status}: chassis {result.system_id} at {result.remote}, "
                    f"geneve {result.encap_ip}, mappings {maps}")


@ovn.command()
@json_option
@require_root
def leave() -> None:
    """Undo exactly what 'ovn join' changed on this host."""
    from ovsbridge.ops import ovn as ops

    ctx = app()
    result = ops.leave(_chassis())
    if ctx.json:
        ctx.render.data(result.to_json())
        return
    if result.status == "not joined":
        ctx.render.line("not joined: nothing to undo")
        return
    ctx.render.line(f"left: chassis {result.system_id}"
                    + (", ovn-controller stopped" if result.stopped_controller else "")
                    + (", br-int deleted" if result.deleted_bridge else ""))


@ovn.command()
@json_option
@require_root
def status() -> None:
    """This chassis: OVN settings, ovn-controller, bound ports."""
    from ovsbridge.ops import ovn as ops

    ctx = app()
    data = ops.status(_chassis(), _southbound)
    if ctx.json:
        ctx.render.data(data)
        return
    ctl = data["controller"]
    registered = {True: "yes", False: "no", None: "unknown"}[data["registered"]]
    if data["southbound_error"]:
        registered += f" ({data['southbound_error']})"
    lines = [
        f"chassis:      {data['system_id'] or '-'}"
        + ("" if data["joined"] else " (not joined)"),
        f"ovn-remote:   {data['ovn_remote'] or '-'}",
        f"encap:        {data['encap_type'] or '-'} {data['encap_ip'] or ''}".rstrip(),
        f"mappings:     {', '.join(data['bridge_mappings']) or '-'}",
        "controller:   " + (f"running (pid {ctl['pid']}, {ctl['connection']})"
                             if ctl["running"] else "not running"),
        f"registered:   {registered}",
    ]
    for line in lines:
        ctx.render.line(line)
    rows = [(p["logical_port"], p["switch"] or "-", p["container"] or "-", p["interface"],
             "bound" if p["bound"] else "not bound") for p in data["ports"]]
    if rows:
        ctx.render.table(("LOGICAL PORT", "SWITCH", "CONTAINER", "INTERFACE", "STATE"), rows)


@ovn.group()
def switch() -> None:
    """Logical switches in the northbound database (one transaction per change)."""


@switch.command("create")
@click.argument("name")
@click.option("--subnet", metavar="CIDR", help="IPv4 subnet (OVN assigns dynamic addresses).")
@click.option("--dhcp", is_flag=True, help="OVN's native DHCP on the subnet.")
@click.option("--router", metavar="IP", help="With --dhcp: router option (default: the first "
                                            "address of the subnet, also the server id).")
@click.option("--dns", multiple=True, metavar="IP",
              help="With --dhcp: DNS server (repeatable; default: the router).")
@click.option("--lease-time", type=int, metavar="S", help="With --dhcp: lease time "
                                                         "(default 3600).")
@click.option("--localnet", metavar="NETWORK",
              help="Bridge the switch onto physical network NETWORK on every chassis "
                   "(its --bridge-mapping).")
@click.option("--vlan", type=int, metavar="N", help="With --localnet: VLAN tag on the LAN.")
@json_option
def switch_create(name: str, subnet: str | None, dhcp: bool, router: str | None,
                  dns: tuple[str, ...], lease_time: int | None, localnet: str | None,
                  vlan: int | None) -> None:
    """Create logical switch NAME (a no-op when it exists with the same options)."""
    from ovsbridge.ops import ovn as ops

    spec = ops.switch_spec(name, subnet, dhcp, router, dns, lease_time, localnet, vlan)
    ctx = app()
    result = ops.create_switch(_nb(), spec)
    if ctx.json:
        ctx.render.data(result)
        return
    ctx.render.line(f"{result['status']}: logical switch {_describe(result)}")


def _describe(sw: dict[str, Any]) -> str:
    parts = [str(sw["name"])]
    if sw.get("subnet"):
        parts.append(f"subnet {sw['subnet']}")
    if sw.get("dhcp"):
        parts.append(f"dhcp (router {sw['dhcp'].get('router')})")
    if sw.get("localnet"):
        parts.append(f"localnet {sw['localnet']}"
                     + (f" vlan {sw['vlan']}" if sw.get("vlan") else ""))
    return ", ".join(parts)


@switch.command("delete")
@click.argument("name")
@json_option
def switch_delete(name: str) -> None:
    """Delete logical switch NAME and its DHCP options (succeeds when already gone)."""
    from ovsbridge.ops import ovn as ops

    ctx = app()
    result = ops.delete_switch(_nb(), ops.parse_name(name, "switch name"))
    if ctx.json:
        ctx.render.data(result)
        return
    ctx.render.line(f"{result['status']}: logical switch {name}")


@switch.command("list")
@json_option
def switch_list() -> None:
    """Logical switches with subnet, DHCP, localnet and ports."""
    from ovsbridge.ops import ovn as ops

    ctx = app()
    items = ops.list_switches(_nb())
    if ctx.json:
        ctx.render.data(items)
        return
    rows = [(s["name"], s["subnet"] or "-", "yes" if s["dhcp"] else "no",
             (s["localnet"] or "-") + (f" (vlan {s['vlan']})" if s["vlan"] else ""),
             ", ".join(s["ports"]) or "-", s["owner"] or "-") for s in items]
    ctx.render.table(("SWITCH", "SUBNET", "DHCP", "LOCALNET", "PORTS", "OWNER"), rows)
