"""``ovsbridge pipework ARGS...`` (also ovsbridge run as ``pipework``): pipework's OVS command
line, unchanged, run by ovsbridge.

The argv is read by ``pipework_argv`` (pure) into the fields of the one request builder; the
attach itself is the one ``ovsbridge attach`` runs (same ops code, output and exit codes).
``route``/``rule``/``tc`` run ``ip``/``tc`` in the guest's netns; ``--wait`` waits inside a
container for its interface.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ovsbridge.cli import app, require_root
from ovsbridge.errors import BadInput

EPILOG = """\b
Examples (the same lines pipework takes):
  ovsbridge pipework ovsbr0 $(docker run -d --net=none IMAGE) dhcp
  ovsbridge pipework ovsbr0 -i eth2 web1 198.51.100.18/24@198.51.100.1 U:web1@20
  ovsbridge pipework route web1 add 203.0.113.0/24 via 198.51.100.1
  ln -s $(command -v ovsbridge) /usr/local/bin/pipework   # old scripts run unchanged
"""


def _complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> Any:
    from ovsbridge.cli.complete import complete_pipework

    return complete_pipework(ctx, param, incomplete)


@click.command(context_settings={"ignore_unknown_options": True,
                                 "allow_interspersed_args": False}, epilog=EPILOG)
@click.argument("args", nargs=-1, type=click.UNPROCESSED, shell_complete=_complete)
def pipework(args: tuple[str, ...]) -> None:
    """pipework's command line for OVS bridges, run by ovsbridge.

    \b
    [--wait] BRIDGE [-i IF] [-l HOSTIF] [-a 4|6] GUEST ADDRESS [MAC|U:TEXT][@VLAN]
      BRIDGE   an OVS bridge, or mac:MAC of one; a missing ovs* bridge is created
      GUEST    a container name or id, or a pid
      ADDRESS  IP/PREFIX[@GW], 0/0 (link only), dhcp[:OPTS], udhcpc[-f][:OPTS],
               dhclient[-f][:OPTS], dhcpcd[:OPTS] (all served by ovsbridge's DHCP client,
               renewed by its daemon)
    route|rule|tc GUEST ARGS...   ip route/ip rule/tc ARGS in GUEST's netns
    --wait [-i IF]                inside a container: wait until IF appears
    """
    from ovsbridge import pipework_argv

    if args[:1] == ("--wait",):
        parsed_wait = pipework_argv.parse(args, _NoHost())
        assert isinstance(parsed_wait, pipework_argv.Wait)
        from ovsbridge.system.pipework_host import wait_for_interface

        wait_for_interface(parsed_wait.ifname)
        return
    require_root(lambda: None)()
    from ovsbridge.system.pipework_host import SysHostFacts

    parsed = pipework_argv.parse(args, SysHostFacts(app().ovs))
    if isinstance(parsed, pipework_argv.NetnsCommand):
        sys.exit(_netns_command(parsed))
    assert isinstance(parsed, pipework_argv.Attach)
    fields = dict(parsed.fields)
    fields["guest"] = _guest(parsed.guest)
    if parsed.client in ("dhcp", "udhcpc", "dhcpcd") and "hostname" not in fields:
        from ovsbridge.dnsname import is_hostname

        # pipework sends -x hostname:GUESTNAME; a name that is no valid hostname (a 64-hex
        # container id) is left to attach's default (the container's name, made valid)
        if is_hostname(parsed.guest):
            fields["hostname"] = parsed.guest
    for note in parsed.notes:
        app().render.note(f"note: {note}")
    run_attach(fields)


class _NoHost:
    """--wait looks nothing up on the host."""

    def kind_of(self, name: str) -> None:
        return None

    def interface_with_mac(self, mac: str) -> None:
        return None


def _guest(text: str) -> str:
    """GUEST as pipework takes it: a container Docker knows, else a pid (``pid:N``)."""
    from ovsbridge.system.pipework_host import docker_knows

    if text.isdigit() and not docker_knows(text):
        return f"pid:{text}"
    return text


def _netns_command(parsed: Any) -> int:
    from ovsbridge.model import parse_guest
    from ovsbridge.system.backend import RealBackend
    from ovsbridge.system.pipework_host import run_in_netns

    if not parsed.guest:
        raise BadInput(f"pipework {parsed.tool} needs a guest", hint=f"pipework {parsed.tool} "
                       "GUEST ARGS...")
    guest = RealBackend(app().ovs).resolve_guest(parse_guest(_guest(parsed.guest)))
    return run_in_netns(guest.netns_path, parsed.argv)


def run_attach(fields: dict[str, str]) -> None:
    """Run the attach FIELDS describe exactly as ``ovsbridge attach`` does: the one request
    builder, then attach's own runner (daemon or in-process, same lines, JSON and exit
    codes)."""
    from ovsbridge.cli.core import run_attach_requests
    from ovsbridge.request import build_attach_request

    run_attach_requests([build_attach_request(fields)], single=True)
