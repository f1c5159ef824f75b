"""attach, detach and ps: the commands people type most."""

from __future__ import annotations

from typing import Any

import click

from ovsbridge.cli import app, json_option, require_root
from ovsbridge.errors import BadInput
from ovsbridge.model import (
    AttachRequest,
    check_mtu,
    check_vlan,
    parse_address_plan,
    parse_guest,
    parse_ifname,
    parse_mac,
)


def _backend() -> Any:
    from ovsbridge.system.backend import RealBackend

    return RealBackend(app().ovs)


def _mac_option(value: str | None) -> str | None:
    if value is None:
        return None
    if value.upper().startswith("U:"):
        if len(value) == 2:
            raise BadInput("--mac U: needs text after it", hint="e.g. --mac U:web1")
        return value
    return parse_mac(value)


@click.command()
@click.argument("bridge")
@click.argument("guest")
@click.argument("address")
@click.option("--ifname", default="eth1", show_default=True,
              help="Interface name inside the guest.")
@click.option("--mac", metavar="MAC|U:TEXT",
              help="Guest MAC; U:TEXT derives one from TEXT as pipework does. "
                   "Default: stable, derived from the container id and ifname.")
@click.option("--vlan", type=str, metavar="N", help="OVS access VLAN tag (1-4094).")
@click.option("--mtu", type=str, metavar="N", help="MTU of both veth ends. Default: the bridge's.")
@click.option("--host-ifname", metavar="NAME",
              help="Host end of the veth. Default: ovb + a hash of container and ifname.")
@click.option("--create-bridge", is_flag=True,
              help="Create BRIDGE if missing (datapath: system with the kernel module, "
                   "else netdev).")
@click.option("--replace", is_flag=True, help="Replace an attachment with another configuration.")
@click.option("--dhcp-timeout", type=float, default=30.0, show_default=True, metavar="S",
              help="With dhcp: give up when no lease comes within S seconds.")
@click.option("--hostname", help="With dhcp: hostname sent to the server (default: the "
                                 "container's name).")
@click.option("--no-default-route", is_flag=True,
              help="With dhcp: do not replace the guest's default route.")
@click.option("--dns/--no-dns", default=True, show_default=True,
              help="With dhcp: write the lease's DNS servers into the container's resolv.conf.")
@click.option("--ovn-switch", metavar="NAME",
              help="OVN: create a logical port on switch NAME and bind it here (BRIDGE is "
                   "br-int).")
@click.option("--ovn-port", metavar="LSP", help="OVN: bind the existing logical port LSP.")
@json_option
@require_root
def attach(bridge: str, guest: str, address: str, ifname: str, mac: str | None,
           vlan: str | None, mtu: str | None, host_ifname: str | None, create_bridge: bool,
           replace: bool, dhcp_timeout: float, hostname: str | None, no_default_route: bool,
           dns: bool, ovn_switch: str | None, ovn_port: str | None) -> None:
    """Give GUEST an interface on the OVS bridge BRIDGE.

    \b
    GUEST    a Docker container (name or id), netns:NAME, or pid:N
    ADDRESS  IP/PREFIX[@GATEWAY] (IPv4 or IPv6), a comma-separated list of them,
             dhcp, or none
    \b
    Examples:
      ovsbridge attach ovsbr0 web1 dhcp
      ovsbridge attach ovsbr0 web1 198.51.100.18/24@198.51.100.1
      ovsbridge attach ovsbr0 web1 198.51.100.5/24,2001:db8::5/64 --vlan 20
    """
    request = AttachRequest(
        bridge=parse_ifname(bridge, "bridge name"),
        guest=parse_guest(guest),
        plan=parse_address_plan(address),
        ifname=parse_ifname(ifname, "--ifname"),
        mac=_mac_option(mac),
        vlan=check_vlan(_int_option("--vlan", vlan)),
        mtu=check_mtu(_int_option("--mtu", mtu)),
        host_ifname=parse_ifname(host_ifname, "--host-ifname") if host_ifname else None,
        create_bridge=create_bridge,
        replace=replace,
        dhcp_timeout=_positive("--dhcp-timeout", dhcp_timeout),
        hostname=hostname,
        default_route=not no_default_route,
        dns=dns,
        ovn_switch=ovn_switch,
        ovn_port=ovn_port,
    )
    from ovsbridge.ops.attach import attach as do_attach

    ctx = app()
    with ctx.render.status(f"attaching {guest} to {bridge}"):
        result = do_attach(_backend(), request)
    if ctx.json:
        ctx.render.data(result.to_json())
        return
    addresses = ", ".join(result.addresses) or "no address"
    line = (f"{result.status}: {result.guest} {result.ifname} ({result.mac}) on "
            f"{result.bridge} port {result.port}: {addresses}")
    if result.vlan:
        line += f", vlan {result.vlan}"
    ctx.render.line(line)
    if result.lease:
        lease = result.lease
        dns_text = ", ".join(lease.get("dns") or []) or "none"
        ctx.render.line(f"lease: {lease.get('address')} router {lease.get('router') or 'none'} "
                        f"dns {dns_text} time {lease.get('lease_time')}s")


def _int_option(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value, 10)
    except ValueError:
        raise BadInput(f'{name} "{value}" is not a whole number',
                       hint=f"give {name} as a number") from None


def _positive(name: str, value: float) -> float:
    if value <= 0:
        raise BadInput(f"{name} must be positive, not {value}", hint=f"e.g. {name} 30")
    return value


@click.command()
@click.argument("guest")
@click.option("--ifname", help="Interface to remove (default eth1).")
@click.option("--all", "all_", is_flag=True, help="Remove every interface ovsbridge gave GUEST.")
@json_option
@require_root
def detach(guest: str, ifname: str | None, all_: bool) -> None:
    """Remove GUEST's interface and its OVS port. Succeeds when already gone."""
    if ifname and all_:
        raise BadInput("--ifname and --all cannot be combined", hint="give one of them")
    if ifname:
        parse_ifname(ifname, "--ifname")
    from ovsbridge.ops.attach import detach as do_detach

    ctx = app()
    result = do_detach(_backend(), parse_guest(guest), ifname, all_)
    if ctx.json:
        ctx.render.data(result.to_json())
        return
    if not result.removed:
        ctx.render.line(f"nothing attached: {result.guest}")
    for bridge, port, name in result.removed:
        ctx.render.line(f"detached: {result.guest} {name} (port {port} on {bridge})")


def _clock(epoch: str | None) -> str:
    if not epoch:
        return "-"
    import time

    return time.strftime("%H:%M:%S", time.localtime(float(epoch)))


PS_COLUMNS = ("BRIDGE", "PORT", "OFPORT", "CONTAINER", "ID", "IFNAME", "MAC", "ADDRESSES",
              "VLAN", "MODE", "STATE", "OWNER")


@click.command()
@click.argument("bridge", required=False)
@json_option
@require_root
def ps(bridge: str | None) -> None:
    """Map OVS ports to containers: which port is which guest, and is it healthy."""
    from ovsbridge.ops.ps import port_map

    ctx = app()
    backend = _backend()
    if bridge is not None and backend.bridge_info(bridge) is None:
        from ovsbridge.errors import NotFound

        raise NotFound(f'bridge "{bridge}" does not exist', hint="list bridges: ovs-vsctl list-br")
    records = port_map(backend, bridge, backend.daemon_leases())
    if ctx.json:
        ctx.render.data([r.to_json() for r in records])
        return
    rows = []
    for r in records:
        mode = r.mode
        if r.extra.get("renew_at") or r.extra.get("expires_at"):
            mode = f"{mode} (renew {_clock(r.extra.get('renew_at'))}, " \
                   f"expires {_clock(r.extra.get('expires_at'))})"
        rows.append((r.bridge, r.port, r.ofport, r.container_name,
                     (r.container_id or "")[:12], r.ifname, r.mac, ", ".join(r.addresses),
                     r.vlan, mode, r.state, r.owner))
    ctx.render.table(PS_COLUMNS, rows)
