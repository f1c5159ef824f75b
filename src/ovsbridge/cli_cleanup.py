"""``ovsbridge cleanup``: remove the OVS ports that dead containers left behind."""

from __future__ import annotations

import click

from ovsbridge.cli import app, json_option, require_root
from ovsbridge.model import parse_ifname

CLEANUP_COLUMNS = ("ACTION", "BRIDGE", "PORT", "OWNER", "CONTAINER", "IFNAME", "REASON")


@click.command()
@click.option("--bridge", "-b", metavar="BRIDGE", help="Only this bridge (default: every one).")
@click.option("--dry-run", "-n", is_flag=True, help="List what would be removed; change nothing.")
@json_option
@require_root
def cleanup(bridge: str | None, dry_run: bool) -> None:
    """Remove stale ports: those of dead, stopped or restarted containers.

    \b
    Candidates are ports made by ovsbridge, pipework or ovs-docker, and untagged veth ports.
    Stale: the kernel interface is gone, OVS reports an error (or ofport -1), or the
    recorded container is gone, stopped or restarted. Never removed: uplinks, internal,
    patch and tunnel ports, healthy ports, ports younger than 10 s.
    All removals are one OVSDB transaction; DHCP leases of removed ports are dropped.
    """
    from ovsbridge.ops.cleanup import cleanup as do_cleanup
    from ovsbridge.system.cleanup_backend import RealCleanupBackend

    if bridge is not None:
        parse_ifname(bridge, "bridge name")
    ctx = app()
    with ctx.render.status("looking for stale ports"):
        result = do_cleanup(RealCleanupBackend(ctx.ovs), bridge, dry_run=dry_run)
    if ctx.json:
        ctx.render.data(result.to_json())
        return
    rows = [(e.action, e.bridge, e.port, e.owner, _container(e.container_name, e.container_id),
             e.ifname, e.reason) for e in (*result.removed, *result.kept)]
    if rows:
        ctx.render.table(CLEANUP_COLUMNS, rows)
    verb = "would remove" if dry_run else "removed"
    summary = f"{verb} {len(result.removed)} stale port(s), kept {len(result.kept)}"
    if result.leases_dropped:
        summary += f"; dropped {len(result.leases_dropped)} DHCP lease(s)"
    if result.links_deleted:
        summary += f"; deleted {len(result.links_deleted)} leftover veth(s)"
    ctx.render.line(summary)
    for note in result.notes:
        ctx.render.note(f"note: {note}")


def _container(name: str | None, cid: str | None) -> str | None:
    if name:
        return name
    return cid[:12] if cid and len(cid) == 64 else cid
