"""``ovsbridge cleanup``: remove the OVS ports that dead containers left behind."""

from __future__ import annotations

from typing import Any

import click

from ovsbridge.cli import app, json_option, require_root
from ovsbridge.cli.core import no_daemon_option
from ovsbridge.model import parse_ifname

CLEANUP_COLUMNS = ("ACTION", "BRIDGE", "PORT", "OWNER", "CONTAINER", "IFNAME", "REASON")


@click.command()
@click.option("--bridge", "-b", metavar="BRIDGE", help="Only this bridge (default: every one).")
@click.option("--dry-run", "-n", is_flag=True, help="List what would be removed; change nothing.")
@no_daemon_option
@json_option
@require_root
def cleanup(bridge: str | None, dry_run: bool, no_daemon: bool) -> None:
    """Remove stale ports: those of dead, stopped or restarted containers.

    \b
    Candidates are ports made by ovsbridge, pipework or ovs-docker, and untagged veth ports.
    Stale: the kernel interface is gone, OVS reports an error (or ofport -1), or the
    recorded container is gone, stopped or restarted. Never removed: uplinks, internal,
    patch and tunnel ports, healthy ports, ports younger than 10 s.
    All removals are one OVSDB transaction; DHCP leases of removed ports are dropped.
    Host veths ovsbridge made (known by their identity) that no port uses and no running
    operation holds are deleted too: what a killed attach left.
    """
    from ovsbridge.cli.core import _execute

    if bridge is not None:
        parse_ifname(bridge, "bridge name")
    ctx = app()
    with ctx.render.status("looking for stale ports"):
        result = _execute("cleanup", {"bridge": bridge, "dry_run": dry_run}, no_daemon)
    if ctx.json:
        ctx.render.data(result)
        return
    entries = [*result["removed"], *result["kept"]]
    rows = [(e["action"], e["bridge"], e["port"], e["owner"],
             _container(e["container_name"], e["container_id"]), e["ifname"], e["reason"])
            for e in entries]
    if rows:
        ctx.render.table(CLEANUP_COLUMNS, rows)
    verb = "would remove" if dry_run else "removed"
    summary = f"{verb} {len(result['removed'])} stale port(s), kept {len(result['kept'])}"
    if result["leases_dropped"]:
        summary += f"; dropped {len(result['leases_dropped'])} DHCP lease(s)"
    if result["links_deleted"]:
        verb = "would delete" if dry_run else "deleted"
        summary += f"; {verb} {len(result['links_deleted'])} leftover veth(s)"
    ctx.render.line(summary)
    for note in result["notes"]:
        ctx.render.note(f"note: {note}")


def _container(name: str | None, cid: str | None) -> str | None:
    if name:
        return name
    return cid[:12] if cid and len(cid) == 64 else cid


def render_watcher_status(section: dict[str, Any], now: float | None = None) -> str:
    """The ``watcher`` section of ``ovsbridge daemon status`` as text for people."""
    import time

    now = time.time() if now is None else now
    docker = section.get("docker") or {}
    if docker.get("connected"):
        since = int(now - float(docker.get("connected_since") or now))
        head = f"watcher: connected to {docker.get('host')} for {since}s"
    else:
        head = f"watcher: NOT connected to {docker.get('host')}"
        if docker.get("last_error"):
            head += f" ({docker['last_error']})"
        if docker.get("next_retry_at"):
            head += f", retrying in {max(0, int(float(docker['next_retry_at']) - now))}s"
    bridges = section.get("bridges")
    head += f"; bridges: {', '.join(bridges) if isinstance(bridges, list) else 'all'}"
    head += f"; {section.get('events', 0)} event(s)"
    reconcile = section.get("last_reconcile") or {}
    if reconcile:
        head += (f"; last reconcile {int(now - float(reconcile.get('at') or now))}s ago: "
                 f"{reconcile.get('attached', 0)} attached, "
                 f"{len(reconcile.get('stale_removed') or [])} stale port(s) removed")
    lines = [head]
    containers = section.get("containers") or []
    if containers:
        rows: list[list[str]] = [["CONTAINER", "ID", "STATE", "BRIDGE", "IFNAME", "ADDRESS",
                                  "PORT", "MAC", "PROBLEM"]]
        for item in containers:
            row = [str(item.get(k) or "-") for k in (
                "name", "id", "state", "bridge", "ifname", "address", "port", "mac", "error")]
            row[1] = row[1][:12]
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)
