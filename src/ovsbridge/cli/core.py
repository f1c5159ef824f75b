"""attach, detach and ps: the commands people type most.

Each builds its request with the one builder (ovsbridge.request), hands it to the engine
(the daemon, or in-process: cli/engine.py) and renders the JSON answer. Imports stay light: the
daemon path loads no pyroute2, docker or rich.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

import click

from ovsbridge.cli import app, json_option, require_root
from ovsbridge.errors import EXIT_FAILED, BadInput, OvsbridgeError
from ovsbridge.request import AttachRequest, build_attach_request, expand_bulk
from ovsbridge.testhooks import FAIL_AT_ENV, KILL_AT_ENV

ATTACH_EPILOG = """\b
Examples:
  ovsbridge attach ovsbr0 web1 dhcp
  ovsbridge attach ovsbr0 web1 198.51.100.18/24@198.51.100.1
  ovsbridge attach ovsbr0 web1 198.51.100.5/24,2001:db8::5/64 --vlan 20
  ovsbridge attach ovsbr0 web1 web2 web3 198.51.100.10-12/24@198.51.100.1
  ovsbridge attach ovsbr0 --from-file guests.txt     # lines: GUEST ADDRESS [options]
"""
# Options a --from-file line may carry: option -> (request field, takes a value, value if flag)
LINE_OPTIONS: dict[str, tuple[str, bool, object]] = {
    "--ifname": ("ifname", True, None), "--mac": ("mac", True, None),
    "--vlan": ("vlan", True, None), "--mtu": ("mtu", True, None),
    "--host-ifname": ("host_ifname", True, None), "--hostname": ("hostname", True, None),
    "--dhcp-timeout": ("dhcp_timeout", True, None), "--replace": ("replace", False, True),
    "--no-default-route": ("default_route", False, False), "--dns": ("dns", False, True),
    "--no-dns": ("dns", False, False), "--create-bridge": ("create_bridge", False, True),
    "--ovn-switch": ("ovn_switch", True, None), "--ovn-port": ("ovn_port", True, None),
    "--ra-timeout": ("ra_timeout", True, None), "--trunk": ("trunk", True, None),
    "--rate-limit": ("rate_limit", True, None), "--burst": ("burst", True, None),
}


def no_daemon_option(func: Any) -> Any:
    return click.option("--no-daemon", is_flag=True,
                        help="Do the work in this process, not in the ovsbridge daemon "
                             "(env OVSBRIDGE_NO_DAEMON=1).")(func)


def _execute(op: str, payload: dict[str, Any], no_daemon: bool,
             on_progress: Any = None) -> Any:
    from ovsbridge.cli.engine import execute

    ctx = app()
    return execute(op, payload, db=ctx.db, no_daemon=no_daemon, on_progress=on_progress)


@click.command(epilog=ATTACH_EPILOG)
@click.argument("bridge")
@click.argument("targets", nargs=-1, metavar="GUEST... ADDRESS")
@click.option("--from-file", "from_file", type=click.File("r"), metavar="FILE|-",
              help="Attach the guests listed in FILE (- for stdin): one 'GUEST ADDRESS "
                   "[options]' line each; options given here are the defaults.")
@click.option("--ifname", help="Interface name inside the guest.  [default: eth1]")
@click.option("--mac", metavar="MAC|U:TEXT",
              help="Guest MAC; U:TEXT derives one from TEXT as pipework does. "
                   "Default: stable, derived from the container id and ifname.")
@click.option("--vlan", type=str, metavar="N", help="OVS access VLAN tag (1-4094).")
@click.option("--mtu", type=str, metavar="N", help="MTU of both veth ends. Default: the bridge's.")
@click.option("--host-ifname", metavar="NAME",
              help="Host end of the veth. Default: ovb + a hash of container and ifname.")
@click.option("--create-bridge", is_flag=True,
              help="Create BRIDGE if missing (datapath: system with the kernel module, "
                   "else netdev; its MTU pinned to 1500).")
@click.option("--replace", is_flag=True, help="Replace an attachment with another configuration.")
@click.option("--dhcp-timeout", type=str, metavar="S",
              help="With dhcp: give up when no lease comes within S seconds.  [default: 30]")
@click.option("--hostname", help="With dhcp: hostname sent to the server (default: the "
                                 "container's name).")
@click.option("--no-default-route", is_flag=True,
              help="With dhcp: do not replace the guest's default route.")
@click.option("--dns/--no-dns", default=None,
              help="With dhcp: write the lease's DNS servers into the container's resolv.conf "
                   "[default: --dns].")
@click.option("--ovn-switch", metavar="NAME",
              help="OVN: create a logical port on logical switch NAME and bind it on this "
                   "chassis (BRIDGE is br-int).")
@click.option("--ovn-port", metavar="LSP", help="OVN: bind the existing logical port LSP.")
@click.option("--ra-timeout", type=str, metavar="S",
              help="With slaac/dhcp6: wait at most S seconds for the router advertisement "
                   "(address, default route).  [default: 15]")
@click.option("--trunk", type=str, metavar="VLANS",
              help="Make the port a trunk of VLANS (10,20,30 or 100-110); with --vlan N, "
                   "N is its native (untagged) VLAN.")
@click.option("--rate-limit", type=str, metavar="MBPS",
              help="Police what the guest sends to MBPS Mbit/s (OVS ingress policing).")
@click.option("--burst", type=str, metavar="KB",
              help="With --rate-limit: burst size in KB.  [default: 0.1 s at the rate]")
@no_daemon_option
@json_option
@require_root
def attach(bridge: str, targets: tuple[str, ...], from_file: IO[str] | None, ifname: str | None,
           mac: str | None, vlan: str | None, mtu: str | None, host_ifname: str | None,
           create_bridge: bool, replace: bool, dhcp_timeout: str | None, hostname: str | None,
           no_default_route: bool, dns: bool | None, ovn_switch: str | None,
           ovn_port: str | None, ra_timeout: str | None, trunk: str | None,
           rate_limit: str | None, burst: str | None, no_daemon: bool) -> None:
    """Give each GUEST an interface on the OVS bridge BRIDGE.

    \b
    GUEST    a Docker container (name or id), netns:NAME, or pid:N; several guests
             before ADDRESS attach them all in one go
    ADDRESS  IP/PREFIX[@GATEWAY] (IPv4 or IPv6), a comma-separated list of them,
             dhcp, none, or (several guests) a range FIRST-LAST/PREFIX[@GATEWAY]
             such as 198.51.100.10-49/24: each guest takes the next address
    """
    fields: dict[str, Any] = {
        "bridge": bridge, "ifname": ifname, "mac": mac, "vlan": vlan, "mtu": mtu,
        "host_ifname": host_ifname, "create_bridge": create_bridge or None,
        "replace": replace or None, "dhcp_timeout": dhcp_timeout, "hostname": hostname,
        "default_route": False if no_default_route else None, "dns": dns,
        "ovn_switch": ovn_switch, "ovn_port": ovn_port,
        "ra_timeout": ra_timeout, "trunk": trunk, "rate_limit": rate_limit, "burst": burst,
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    if from_file is not None:
        if targets:
            raise BadInput("give guests either on the command line or with --from-file",
                           hint="not both")
        requests = _requests_from_file(from_file, fields)
    else:
        if len(targets) < 2:
            raise BadInput("attach needs BRIDGE, at least one GUEST and ADDRESS",
                           hint="e.g. ovsbridge attach ovsbr0 web1 dhcp "
                                "(see 'ovsbridge attach --help')")
        requests = expand_bulk({**fields, "address": targets[-1]}, list(targets[:-1]))
    run_attach_requests(requests, single=len(requests) == 1 and from_file is None,
                        no_daemon=no_daemon)


def run_attach_requests(requests: Sequence[AttachRequest], *, single: bool,
                        no_daemon: bool = False) -> None:
    """Run REQUESTS as ``ovsbridge attach`` does (daemon or in-process; the same lines, JSON
    and exit codes): every front end that builds AttachRequests ends here."""
    payload: dict[str, Any] = {"requests": [r.to_dict() for r in requests]}
    from ovsbridge.cli.engine import client_env

    for key, env in (("fail_at", FAIL_AT_ENV), ("kill_at", KILL_AT_ENV)):
        value = client_env(env)
        if value:
            payload[key] = value  # the test hooks, in every mode
    _run_bulk("attach", payload, [str(r.guest) for r in requests], single, no_daemon,
              _attach_line)


def _requests_from_file(stream: IO[str], defaults: dict[str, Any]) -> list[AttachRequest]:
    requests = []
    seen: set[str] = set()
    where = getattr(stream, "name", "-")
    import shlex

    for number, raw in enumerate(stream, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        try:
            words = shlex.split(text)
            if len(words) < 2:
                raise BadInput("a line needs GUEST ADDRESS [options]")
            fields = {**defaults, "guest": words[0], "address": words[1]}
            fields.update(_line_options(words[2:]))
            request = build_attach_request(fields)
        except (BadInput, ValueError) as exc:
            message = exc.message if isinstance(exc, BadInput) else str(exc)
            raise BadInput(f"{where} line {number}: {message}",
                           hint=getattr(exc, "hint", None) or
                           "write GUEST ADDRESS [--ifname ..] [--vlan ..] ...") from None
        key = f"{request.guest}/{request.ifname}"
        if key in seen:
            raise BadInput(f"{where} line {number}: {key} is listed twice",
                           hint="list each guest interface once")
        seen.add(key)
        requests.append(request)
    if not requests:
        raise BadInput(f"{where} lists no guest", hint="write one 'GUEST ADDRESS' line each")
    return requests


def _line_options(words: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word, _, inline = words[i].partition("=")
        spec = LINE_OPTIONS.get(word)
        if spec is None:
            raise BadInput(f"unknown option {words[i]!r}",
                           hint=f"use {', '.join(sorted(LINE_OPTIONS))}")
        field, takes_value, flag_value = spec
        if takes_value:
            if inline:
                out[field] = inline
            elif i + 1 < len(words):
                i += 1
                out[field] = words[i]
            else:
                raise BadInput(f"option {word} needs a value")
        else:
            out[field] = flag_value
        i += 1
    return out


def _attach_line(result: dict[str, Any]) -> list[str]:
    addresses = ", ".join(result.get("addresses") or []) or "no address"
    line = (f"{result['status']}: {result['container']} {result['ifname']} ({result['mac']}) "
            f"on {result['bridge']} port {result['port']}: {addresses}")
    if result.get("vlan"):
        line += f", vlan {result['vlan']}"
    lines = [line]
    lease = result.get("lease")
    if lease:
        dns_text = ", ".join(lease.get("dns") or []) or "none"
        lines.append(f"lease: {lease.get('address')} router {lease.get('router') or 'none'} "
                     f"dns {dns_text} time {lease.get('lease_time')}s")
    return lines


def _detach_line(result: dict[str, Any]) -> list[str]:
    removed = result.get("removed") or []
    if not removed:
        return [f"nothing attached: {result['container']}"]
    return [f"detached: {result['container']} {r['ifname']} (port {r['port']} on {r['bridge']})"
            for r in removed]


def _run_bulk(op: str, payload: dict[str, Any], labels: list[str], single: bool,
              no_daemon: bool, describe: Any) -> None:
    """Run a per-guest op; one line per guest (or one JSON document); exit 1 if any failed."""
    from ovsbridge.system.daemon_client import error_from_dict

    ctx = app()
    printed: set[int] = set()
    lock = threading.Lock()
    bar = None if single or ctx.json else _ProgressBar.maybe(len(labels), op)

    def show(index: int, outcome: dict[str, Any]) -> None:
        with lock:
            if index in printed:
                return
            printed.add(index)
            if outcome.get("ok"):
                text = describe(outcome["result"])
            else:
                error = outcome.get("error") or {}
                hint = f"; hint: {error['hint']}" if error.get("hint") else ""
                text = [f"failed: {labels[index]}: {error.get('message')}{hint}"]
            if bar is not None:
                bar.advance(text)
            else:
                for line in text:
                    ctx.render.line(line)

    def on_progress(progress: dict[str, Any]) -> None:
        index = progress.get("index")
        if not single and not ctx.json and isinstance(index, int) and 0 <= index < len(labels):
            show(index, progress)

    try:
        answer = _execute(op, payload, no_daemon, on_progress)
    finally:
        if bar is not None:
            bar.close()
    outcomes = answer.get("outcomes") or []
    if single:
        outcome = outcomes[0]
        if not outcome.get("ok"):
            raise error_from_dict(outcome.get("error") or {})
        if ctx.json:
            ctx.render.data(outcome["result"])
        else:
            for line in describe(outcome["result"]):
                ctx.render.line(line)
        return
    failed = sum(1 for o in outcomes if not o.get("ok"))
    if ctx.json:
        ctx.render.data([{"guest": labels[i], **o} for i, o in enumerate(outcomes)])
    else:
        for index, outcome in enumerate(outcomes):
            show(index, outcome)
        verb = "attached" if op == "attach" else "detached"
        ctx.render.line(f"{verb} {len(outcomes) - failed} of {len(outcomes)}"
                        + (f", {failed} failed" if failed else ""))
    if failed:
        ctx_exit(EXIT_FAILED)


def ctx_exit(code: int) -> None:
    click.get_current_context().exit(code)


class _ProgressBar:
    """A rich progress bar on stderr while a bulk op runs (only on a terminal)."""

    def __init__(self, total: int, op: str) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import Progress

        self._escape = escape
        self.console = Console(file=sys.stderr)
        self.progress = Progress(console=self.console, transient=True)
        self.task = self.progress.add_task(f"{op}ing", total=total)
        self.progress.start()

    @classmethod
    def maybe(cls, total: int, op: str) -> _ProgressBar | None:
        if not sys.stderr.isatty() or not sys.stdout.isatty():
            return None
        return cls(total, op)

    def advance(self, lines: list[str]) -> None:
        for line in lines:
            self.progress.console.print(self._escape(line), highlight=False)
        self.progress.advance(self.task)

    def close(self) -> None:
        self.progress.stop()


@click.command(epilog="""\b
Examples:
  ovsbridge detach web1
  ovsbridge detach web1 web2 web3 --all
""")
@click.argument("guests", nargs=-1, required=True, metavar="GUEST...")
@click.option("--ifname", help="Interface to remove (default eth1).")
@click.option("--all", "all_", is_flag=True, help="Remove every interface ovsbridge gave GUEST.")
@no_daemon_option
@json_option
@require_root
def detach(guests: tuple[str, ...], ifname: str | None, all_: bool, no_daemon: bool) -> None:
    """Remove each GUEST's interface and its OVS port. Succeeds when already gone."""
    from ovsbridge.model import parse_guest, parse_ifname

    if ifname and all_:
        raise BadInput("--ifname and --all cannot be combined", hint="give one of them")
    if ifname:
        parse_ifname(ifname, "--ifname")
    for guest in guests:
        parse_guest(guest)
    if len(set(guests)) != len(guests):
        raise BadInput("a guest is given twice", hint="list each guest once")
    _run_bulk("detach", {"guests": list(guests), "ifname": ifname, "all": all_},
              list(guests), len(guests) == 1, no_daemon, _detach_line)


def _clock(epoch: str | None) -> str:
    if not epoch:
        return "-"
    import time

    return time.strftime("%H:%M:%S", time.localtime(float(epoch)))


PS_COLUMNS = ("BRIDGE", "PORT", "OFPORT", "CONTAINER", "ID", "IFNAME", "MAC", "ADDRESSES",
              "VLAN", "MTU", "RATE", "MODE", "STATE", "OWNER")


def _ps_addresses(r: dict[str, Any]) -> str:
    details = r.get("address_details") or []
    if not details:
        return ", ".join(r.get("addresses") or [])
    out = []
    for d in details:
        text = f"{d['address']} ({d['origin']}"
        if d.get("expires_at"):
            text += f", expires {_clock(d['expires_at'])}"
        out.append(text + ")")
    return ", ".join(out)


def _ps_vlan(r: dict[str, Any]) -> str | None:
    trunks = ",".join(str(t) for t in r.get("trunks") or [])
    if not trunks:
        return None if r.get("vlan") is None else str(r["vlan"])
    native = f" native {r['vlan']}" if r.get("vlan") is not None else ""
    return f"trunk {trunks}{native}"


def _ps_rate(r: dict[str, Any]) -> str | None:
    if not r.get("rate_limit"):
        return None
    burst = f"/{r['burst']}KB" if r.get("burst") else ""
    return f"{r['rate_limit']}Mb{burst}"


@click.command(epilog="""\b
Examples:
  ovsbridge ps
  ovsbridge ps ovsbr0 --json | jq '.[] | select(.state != "ok")'
  ovsbridge ps --format dot | dot -Tpng -o ports.png
""")
@click.argument("bridge", required=False)
@click.option("--format", "format_", type=click.Choice(["table", "json", "dot"]),
              default="table", show_default=True,
              help="table for people, json (as --json), or dot (Graphviz: bridges, VLANs, "
                   "ports, containers).")
@no_daemon_option
@json_option
@require_root
def ps(bridge: str | None, format_: str, no_daemon: bool) -> None:
    """Map OVS ports to containers: which port is which guest, and is it healthy."""
    ctx = app()
    answer = _execute("ps", {"bridge": bridge}, no_daemon)
    records = answer.get("ports") or []
    if format_ == "dot" and not ctx.json:
        from ovsbridge.ps_dot import to_dot

        click.echo(to_dot(records), nl=False)
        return
    if ctx.json or format_ == "json":
        ctx.render.data([{k: v for k, v in r.items() if k != "extra"} for r in records])
        return
    rows = []
    for r in records:
        mode = r.get("mode")
        extra = r.get("extra") or {}
        if extra.get("renew_at") or extra.get("expires_at"):
            mode = f"{mode} (renew {_clock(extra.get('renew_at'))}, " \
                   f"expires {_clock(extra.get('expires_at'))})"
        cid = r.get("container_id") or ""
        rows.append((r["bridge"], r["port"], r["ofport"], r.get("container_name"), cid[:12],
                     r.get("ifname"), r.get("mac"), _ps_addresses(r), _ps_vlan(r),
                     r.get("mtu"), _ps_rate(r), mode, r["state"], r["owner"]))
    ovn = [(r.get("extra") or {}) for r in records]
    if any("ovn_port" in e for e in ovn):  # OVN attachments: switch/port and binding
        wide = [(*row, f"{e['ovn_switch']}/{e['ovn_port']} ({e['ovn_binding']})"
                 if "ovn_port" in e else "-") for row, e in zip(rows, ovn, strict=True)]
        ctx.render.table((*PS_COLUMNS, "OVN"), wide)
        return
    ctx.render.table(PS_COLUMNS, rows)


__all__ = ["OvsbridgeError", "attach", "detach", "ps", "run_attach_requests"]
