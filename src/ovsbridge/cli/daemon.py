"""``ovsbridge daemon run|status|stop``: the host-wide lease keeper, from the command line.

``run`` serves in the foreground (logs on stderr; systemd's unit uses it), ``status`` shows
what the daemon holds (exit 3 when no daemon runs), ``stop`` stops it without releasing
anything. Errors go through the CLI's one funnel (cli.py). Heavy imports stay inside the
commands.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import click

from ovsbridge.cli import app, json_option, require_root


@click.group("daemon")
def daemon() -> None:
    """The one host-wide daemon that keeps every DHCP lease and watches Docker."""


@daemon.command("run")
@require_root
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="How much to log on stderr.",
)
def run(log_level: str) -> None:
    """Serve in the foreground until SIGTERM (what systemd and 'attach ... dhcp' start)."""
    from ovsbridge.daemon.server import default_plugins, run_daemon
    from ovsbridge.paths import daemon_paths

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("ovsbridge")
    logger.addHandler(handler)
    logger.setLevel(log_level.upper())
    logger.propagate = False
    import os

    if app().db:  # the daemon serves the OVSDB it was started for (--db or OVSBRIDGE_DB)
        os.environ["OVSBRIDGE_DB"] = app().db or ""
    run_daemon(daemon_paths(), plugins=default_plugins())


def _when(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    delta = int(ts - now)
    stamp = time.strftime("%H:%M:%S", time.localtime(ts))
    return f"{stamp} (in {delta}s)" if delta >= 0 else f"{stamp} ({-delta}s ago)"


def _next_renewal(lease: dict[str, Any]) -> float | None:
    if lease.get("state") == "bound":
        return lease.get("renew_at")
    return lease.get("next_action_at")


def render_status(status: dict[str, Any], now: float | None = None) -> str:
    """Human text for ``daemon status``."""
    now = time.time() if now is None else now
    leases = status.get("leases") or []
    up = int(now - float(status.get("started_at") or now))
    lines = [
        f"ovsbridge daemon {status.get('version', '?')}, pid {status.get('pid')}, "
        f"up {up}s, {len(leases)} lease(s)"
    ]
    if leases:
        rows = [("GUEST", "IFNAME", "ADDRESS", "STATE", "EXPIRES", "NEXT RENEWAL")]
        for item in leases:
            guest = item.get("guest") or {}
            rows.append(
                (
                    str(guest.get("name") or guest.get("key") or "?"),
                    str(item.get("ifname")),
                    str(item.get("address") or "-"),
                    str(item.get("state")),
                    _when(item.get("expires_at"), now),
                    _when(_next_renewal(item), now),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=True))
            lines.append("  ".join(cells).rstrip())
        for item in leases:
            if item.get("error"):
                guest = item.get("guest") or {}
                who = f"{guest.get('name') or guest.get('key') or '?'} {item.get('ifname')}"
                lines.append(f"error: {who}: {item['error']}")
    for key, value in status.items():
        if key in ("pid", "version", "started_at", "socket", "state_dir", "leases"):
            continue
        lines.append(_render_section(key, value, now))
    return "\n".join(lines)


# Text renderers for the sections daemon plugins add to status ("module:function"); any
# other section is shown as one JSON line.
SECTION_RENDERERS = {"watcher": "ovsbridge.cli.cleanup:render_watcher_status"}


def _render_section(key: str, value: Any, now: float) -> str:
    spec = SECTION_RENDERERS.get(key)
    if spec and isinstance(value, dict):
        import importlib

        module_name, _, attr = spec.partition(":")
        try:
            renderer = getattr(importlib.import_module(module_name), attr)
            return str(renderer(value, now=now))
        except (ImportError, AttributeError, TypeError, ValueError, KeyError):
            pass
    return f"{key}: {json.dumps(value, default=str)}"


@daemon.command("status")
@json_option
@require_root
def status() -> None:
    """What the daemon holds: leases with guest, ifname, address, expiry, next renewal.

    Exits 3 when no daemon runs.
    """
    from ovsbridge.system import daemon_client

    answer = daemon_client.status()
    if app().json:
        app().render.data(answer)
    else:
        app().render.line(render_status(answer))


@daemon.command("stop")
@json_option
@require_root
def stop() -> None:
    """Stop the daemon (leases stay configured and are resumed by the next daemon)."""
    from ovsbridge.system import daemon_client

    pid = daemon_client.stop()
    render = app().render
    if app().json:
        render.data({"stopped": pid is not None, "pid": pid})
    elif pid is None:
        render.line("no ovsbridge daemon was running")
    else:
        render.line(f"stopped the ovsbridge daemon (pid {pid})")

