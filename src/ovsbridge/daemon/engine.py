"""The engine: attach, detach, ps and cleanup as JSON-in, JSON-out operations.

The same functions serve the daemon (warm imports, one Docker client, requests from the
socket) and the CLI's in-process path (``--no-daemon``, or no daemon running): there is one
request path, whichever process runs it. Payloads and answers are plain JSON values: a
request carries ``AttachRequest.to_dict()`` values; every outcome is ``{"ok": true,
"result": ...}`` or ``{"ok": false, "error": OvsbridgeError.to_dict()}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ovsbridge.errors import BadInput, NotFound, OvsbridgeError
from ovsbridge.model import parse_guest, parse_ifname
from ovsbridge.ops.backend import Backend
from ovsbridge.request import AttachRequest

log = logging.getLogger(__name__)
OPS = ("attach", "detach", "ps", "cleanup")
Emit = Callable[[dict[str, Any]], None]


def outcome_json(outcome: Any) -> dict[str, Any]:
    if isinstance(outcome, OvsbridgeError):
        return {"ok": False, "error": outcome.to_dict()}
    return {"ok": True, "result": outcome.to_json()}


def run(op: str, payload: dict[str, Any], backend: Backend, cleanup_backend: Any = None,
        emit: Emit | None = None) -> dict[str, Any]:
    """Run OP with PAYLOAD on BACKEND; EMIT(progress) is called per guest in bulk ops."""
    if op == "attach":
        return _attach(payload, backend, emit)
    if op == "detach":
        return _detach(payload, backend, emit)
    if op == "ps":
        return _ps(payload, backend)
    if op == "cleanup":
        return _cleanup(payload, cleanup_backend)
    raise BadInput(f"unknown engine op {op!r}", hint=f"use one of {', '.join(OPS)}")


def _progress(emit: Emit | None) -> Callable[[int, Any], None] | None:
    if emit is None:
        return None

    def report(index: int, outcome: Any) -> None:
        emit({"index": index, **outcome_json(outcome)})

    return report


def _attach(payload: dict[str, Any], backend: Backend, emit: Emit | None) -> dict[str, Any]:
    from ovsbridge.ops.attach import attach_many

    raw = payload.get("requests")
    if not isinstance(raw, list) or not raw or not all(isinstance(r, dict) for r in raw):
        raise BadInput("an attach request needs a non-empty list 'requests' of objects")
    requests = [AttachRequest.from_dict(r) for r in raw]
    hooks = {k: v for k in ("fail_at", "kill_at") if isinstance(v := payload.get(k), str)}
    outcomes = attach_many(backend, requests, progress=_progress(emit), **hooks)
    return {"outcomes": [outcome_json(o) for o in outcomes]}


def _detach(payload: dict[str, Any], backend: Backend, emit: Emit | None) -> dict[str, Any]:
    from ovsbridge.ops.attach import detach_many

    guests = payload.get("guests")
    if not isinstance(guests, list) or not guests or not all(isinstance(g, str) for g in guests):
        raise BadInput("a detach request needs a non-empty list 'guests' of strings")
    ifname = payload.get("ifname")
    if ifname is not None:
        ifname = parse_ifname(str(ifname), "--ifname")
    specs = [parse_guest(g) for g in guests]
    outcomes = detach_many(backend, specs, ifname, bool(payload.get("all")),
                           progress=_progress(emit))
    return {"outcomes": [outcome_json(o) for o in outcomes]}


def _ps(payload: dict[str, Any], backend: Backend) -> dict[str, Any]:
    from ovsbridge.ops.ps import port_map

    bridge = payload.get("bridge")
    if bridge is not None:
        bridge = parse_ifname(str(bridge), "bridge name")
        if backend.bridge_info(bridge) is None:
            raise NotFound(f'bridge "{bridge}" does not exist',
                           hint="list bridges: ovs-vsctl list-br")
    records = port_map(backend, bridge, backend.daemon_leases())
    return {"ports": [{**r.to_json(), "extra": r.extra} for r in records]}


def _cleanup(payload: dict[str, Any], backend: Any) -> dict[str, Any]:
    from ovsbridge.ops.cleanup import cleanup

    bridge = payload.get("bridge")
    if bridge is not None:
        bridge = parse_ifname(str(bridge), "bridge name")
    result = cleanup(backend, bridge, dry_run=bool(payload.get("dry_run")))
    data: dict[str, Any] = result.to_json()
    return data


# ----- the daemon side ----------------------------------------------------------------------
def in_daemon_backends(daemon: Any, loop: Any, db: str | None) -> tuple[Any, Any]:
    """A Backend and a CleanupBackend whose lease calls go straight to DAEMON's keeper (on
    LOOP) instead of through the socket to ourselves."""
    import asyncio
    import dataclasses

    from ovsbridge.daemon.leases import GuestRef, HoldOptions, lease_from_record
    from ovsbridge.system.backend import RealBackend
    from ovsbridge.system.cleanup_backend import RealCleanupBackend
    from ovsbridge.system.ovs import Ovs

    def call(coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    class InDaemon(RealBackend):
        def daemon_hold(self, guest: Any, ifname: str, lease: Any,
                        options: dict[str, Any]) -> None:
            lease_dict = lease.to_dict() if hasattr(lease, "to_dict") else dict(lease)
            call(daemon.keeper.hold(GuestRef.from_dict(dataclasses.asdict(guest)), ifname,
                                    lease_from_record(lease_dict),
                                    HoldOptions.from_dict(options)))

        def daemon_drop(self, guest_key: str, ifname: str, release: bool) -> None:
            call(daemon.keeper.drop(guest_key, ifname, release=release))

        def daemon_leases(self) -> dict[tuple[str, str], dict[str, Any]]:
            out: dict[tuple[str, str], dict[str, Any]] = {}
            for item in daemon.keeper.status():
                guest = item.get("guest") or {}
                ifname = str(item.get("ifname", ""))
                if item.get("family") == 6:
                    ifname += "#6"  # DHCPv6 next to DHCPv4 (as RealBackend.daemon_leases)
                out[(str(guest.get("key", "")), ifname)] = item
            return out

    class InDaemonCleanup(RealCleanupBackend):
        def drop_lease(self, guest_key: str, ifname: str) -> bool:
            return call(daemon.keeper.drop(guest_key, ifname, release=False)) is not None

    ovsdb = Ovs(db=db)
    return InDaemon(ovsdb), InDaemonCleanup(ovsdb)


def plugin(daemon: Any) -> None:
    """Daemon plugin: serve the engine's ops for callers in our netns, on our OVSDB and
    with our Docker (a caller with another DOCKER_HOST must not get our containers)."""
    import asyncio
    import os

    from ovsbridge.client import SERVED_COMMANDS, docker_endpoint
    from ovsbridge.errors import WrongDaemon

    db = os.environ.get("OVSBRIDGE_DB") or None
    netns = os.stat("/proc/self/ns/net").st_ino
    docker = docker_endpoint()

    def wrong(request: dict[str, Any]) -> str | None:
        """Why this daemon must not serve REQUEST, or None."""
        if request.get("netns") != netns or (request.get("db") or None) != db:
            return (f"this daemon serves netns {netns} and OVSDB {db or 'default'}, not "
                    f"netns {request.get('netns')} and OVSDB {request.get('db') or 'default'}")
        if (request.get("docker") or {}) != docker:
            theirs = (request.get("docker") or {}).get("DOCKER_HOST") or "the default"
            return (f"this daemon uses Docker at {docker.get('DOCKER_HOST') or 'the default'}"
                    f", not {theirs}")
        return None

    def handler(op: str) -> Any:
        async def handle(request: dict[str, Any], emit: Emit) -> Any:
            reason = wrong(request)
            if reason is not None:
                raise WrongDaemon(reason, hint="the command runs in-process instead")
            payload = request.get("payload")
            if not isinstance(payload, dict):
                raise BadInput("request field 'payload' must be an object")
            loop = asyncio.get_running_loop()
            backend, cleanup_backend = in_daemon_backends(daemon, loop, db)

            def emit_soon(progress: dict[str, Any]) -> None:
                loop.call_soon_threadsafe(emit, progress)

            return await asyncio.to_thread(run, op, payload, backend, cleanup_backend,
                                           emit_soon)

        return handle

    async def serve_cli(request: dict[str, Any], emit: Emit) -> Any:
        """A thin client's whole command line (ovsbridge.client): ``{"exit": CODE}``, its
        stdout and stderr streamed ahead as ``{"stdout": TEXT}`` / ``{"stderr": TEXT}``."""
        from ovsbridge.daemon.served_cli import run_command_line

        reason = wrong(request)
        if reason is not None:
            raise WrongDaemon(reason, hint="the command runs in-process instead")
        argv, env = request.get("argv"), request.get("env") or {}
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise BadInput("request field 'argv' must be a list of strings")
        if not argv or argv[0] not in SERVED_COMMANDS:
            raise BadInput(f"the daemon runs only {', '.join(sorted(SERVED_COMMANDS))} "
                           "for a client", hint="run other commands in-process")
        if not isinstance(env, dict) or not all(
                isinstance(k, str) and k.startswith("OVSBRIDGE_TEST_") and isinstance(v, str)
                for k, v in env.items()):
            raise BadInput("request field 'env' must map OVSBRIDGE_TEST_* names to strings")
        loop = asyncio.get_running_loop()
        backend, cleanup_backend = in_daemon_backends(daemon, loop, db)

        def engine_run(op: str, payload: dict[str, Any], on_progress: Any) -> Any:
            return run(op, payload, backend, cleanup_backend, on_progress)

        def sink(name: str) -> Callable[[str], None]:
            def send(text: str) -> None:
                loop.call_soon_threadsafe(emit, {name: text})

            return send

        code = await asyncio.to_thread(run_command_line, argv, env, engine_run,
                                       sink("stdout"), sink("stderr"))
        return {"exit": code}

    for op in OPS:
        daemon.add_stream_op(op, handler(op))
    daemon.add_stream_op("cli", serve_cli)
    daemon.add_task("sweep-incomplete", _sweep_at_start)


async def _sweep_at_start(daemon: Any) -> None:
    """At start: remove what a request killed with the previous daemon left half done."""
    import asyncio
    import os

    from ovsbridge.ops.cleanup import cleanup

    loop = asyncio.get_running_loop()
    _, cleanup_backend = in_daemon_backends(daemon, loop, os.environ.get("OVSBRIDGE_DB"))
    try:
        result = await asyncio.to_thread(cleanup, cleanup_backend, None, incomplete_only=True)
    except OvsbridgeError as exc:
        log.warning("start-up sweep of incomplete attachments failed: %s", exc.message)
        return
    incomplete = [e.port for e in result.removed if e.reason.startswith("incomplete")]
    if incomplete or result.links_deleted:
        log.info("start-up sweep: removed incomplete port(s) %s and leftover veth(s) %s",
                 ", ".join(incomplete) or "none", ", ".join(result.links_deleted) or "none")
