"""The Docker watcher of ``ovsbridge daemon``: attachments that follow containers' lives.

Plugged into the daemon (``plugin``), it follows Docker's container events:

- ``start`` of a container carrying ``ovsbridge.*`` labels: attach it as the labels say
  (``ovsbridge.bridge``, ``ovsbridge.address`` = ``dhcp`` or ``IP/PREFIX[@GW]``, comma-
  separated; optional ``ovsbridge.ifname``, ``.vlan``, ``.mac``, ``.mtu``). The default MAC is
  derived from the container id and ifname, so a restarted container gets the same MAC (and
  so the same DHCP lease). Bad labels: one warning line, the container stays unattached.
- ``die``, ``stop``, ``destroy``: remove that container's stale ports (any owner) and drop
  their DHCP leases, right away (the event proves the container is gone: no grace period).
- on every (re)connection to Docker: reconcile, i.e. attach every running labelled container
  (attach is idempotent) and clean stale ports everywhere (``ops.cleanup``, with its grace).

The Docker connection lives in a thread (the SDK blocks) that feeds the asyncio loop; a lost
dockerd means reconnecting with backoff, never a crash. Work on one container is serialized
(``die`` before the ``start`` of a restart); blocking work runs in worker threads.

Environment: the host-wide daemon (default run dir) watches unless ``OVSBRIDGE_WATCH=off``;
a daemon with a private ``OVSBRIDGE_RUN_DIR`` only with ``OVSBRIDGE_WATCH=on``.
``OVSBRIDGE_WATCH_BRIDGES=a,b`` limits the watcher to those bridges (attaching and cleaning).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ovsbridge.errors import BadInput, DockerGone, OvsbridgeError
from ovsbridge.request import AttachRequest, build_attach_request
from ovsbridge.system.docker_events import ContainerEvent, RunningContainer

log = logging.getLogger(__name__)

L_BRIDGE = "ovsbridge.bridge"
L_ADDRESS = "ovsbridge.address"
L_IFNAME = "ovsbridge.ifname"
L_VLAN = "ovsbridge.vlan"
L_MAC = "ovsbridge.mac"
L_MTU = "ovsbridge.mtu"
L_OVN_SWITCH = "ovsbridge.ovn-switch"
L_OVN_PORT = "ovsbridge.ovn-port"
L_TRUNK = "ovsbridge.trunk"
L_RATE_LIMIT = "ovsbridge.rate_limit"
L_BURST = "ovsbridge.burst"
L_RA_TIMEOUT = "ovsbridge.ra_timeout"
LABELS = (L_BRIDGE, L_ADDRESS, L_IFNAME, L_VLAN, L_MAC, L_MTU, L_OVN_SWITCH, L_OVN_PORT, L_TRUNK,
          L_RATE_LIMIT, L_BURST, L_RA_TIMEOUT)
# label -> field of the one request builder (request.build_attach_request)
LABEL_FIELDS = {L_BRIDGE: "bridge", L_ADDRESS: "address", L_IFNAME: "ifname", L_VLAN: "vlan",
                L_MAC: "mac", L_MTU: "mtu", L_OVN_SWITCH: "ovn_switch", L_OVN_PORT: "ovn_port",
                L_TRUNK: "trunk", L_RATE_LIMIT: "rate_limit", L_BURST: "burst",
                L_RA_TIMEOUT: "ra_timeout"}

BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_SESSION = 30.0  # a connection that lasted this long resets the backoff
ENV_WATCH = "OVSBRIDGE_WATCH"
ENV_BRIDGES = "OVSBRIDGE_WATCH_BRIDGES"


# ----- labels -------------------------------------------------------------------------------
def request_from_labels(container_id: str, labels: dict[str, str]) -> AttachRequest:
    """The attach a container's labels ask for; BadInput naming the label when one is bad."""
    unknown = sorted(k for k in labels if k.startswith("ovsbridge.") and k not in LABELS)
    if unknown:
        raise BadInput(f"unknown label {unknown[0]}", hint=f"use {', '.join(LABELS)}")
    if not labels.get(L_BRIDGE):
        raise BadInput(f"label {L_BRIDGE} is missing or empty")
    if not labels.get(L_ADDRESS):
        raise BadInput(f"label {L_ADDRESS} is missing or empty",
                       hint="dhcp, or IP/PREFIX[@GATEWAY], comma-separated")

    fields = {field: labels[label] for label, field in LABEL_FIELDS.items() if label in labels}
    try:
        return build_attach_request({**fields, "guest": container_id})
    except BadInput as exc:
        label = next((lb for lb, f in LABEL_FIELDS.items() if f == exc.fields.get("field")), "")
        where = f"label {label}={labels[label]!r}: " if label in labels else "labels: "
        raise BadInput(f"{where}{exc.message}", hint=exc.hint) from None


# ----- seams --------------------------------------------------------------------------------
class DockerSource(Protocol):
    """Docker as the watcher needs it (system.docker_events.DockerEvents; fakes in tests)."""

    @property
    def where(self) -> str: ...

    def connect(self) -> None: ...
    def running(self) -> list[RunningContainer]: ...
    def events(self) -> Iterator[ContainerEvent]: ...
    def close(self) -> None: ...


class WatcherActions(Protocol):
    """What the watcher does to the host (blocking; called in worker threads)."""

    def attach(self, request: AttachRequest) -> Any: ...  # an ops.attach.AttachResult
    def forget(self, container_id: str, name: str,
               bridges: frozenset[str] | None) -> list[str]: ...  # ports removed
    def sweep(self, bridges: frozenset[str] | None) -> list[str]: ...  # ports removed


@dataclass
class Watched:
    """A labelled container as the watcher last saw it (``daemon status``)."""

    id: str
    name: str
    state: str  # attached | unattached | bad labels | stopped | ignored
    bridge: str | None = None
    ifname: str | None = None
    address: str | None = None
    port: str | None = None
    mac: str | None = None
    error: str | None = None
    since: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "state": self.state, "bridge": self.bridge,
                "ifname": self.ifname, "address": self.address, "port": self.port,
                "mac": self.mac, "error": self.error, "since": self.since}


# ----- the watcher --------------------------------------------------------------------------
class Watcher:
    def __init__(self, source: DockerSource, actions: WatcherActions, *,
                 bridges: frozenset[str] | None = None,
                 backoff: tuple[float, ...] = BACKOFF) -> None:
        self.source = source
        self.actions = actions
        self.bridges = bridges
        self.backoff = backoff
        self.watched: dict[str, Watched] = {}
        self.connected = False
        self.connected_since: float | None = None
        self.connections = 0
        self.last_error: str | None = None
        self.next_retry_at: float | None = None
        self.events_seen = 0
        self.last_event_at: float | None = None
        self.last_reconcile: dict[str, Any] | None = None
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # lock, pending works
        self._tasks: set[asyncio.Task[None]] = set()
        self._reported: set[tuple[str, str]] = set()
        self.idle = asyncio.Event()  # set whenever no work is pending (tests wait on it)
        self.idle.set()

    # -- life -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Watch Docker forever: connect, reconcile, follow events; reconnect with backoff."""
        failures = 0
        try:
            while True:
                started = time.monotonic()
                try:
                    await self._session()
                except DockerGone as exc:
                    self._lost(exc.message)
                except OvsbridgeError as exc:
                    self._lost(exc.message)
                finally:
                    self.connected = False
                    self.source.close()
                if time.monotonic() - started > STABLE_SESSION:
                    failures = 0
                delay = self.backoff[min(failures, len(self.backoff) - 1)]
                failures += 1
                self.next_retry_at = time.time() + delay
                await asyncio.sleep(delay)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _lost(self, message: str) -> None:
        if message != self.last_error:
            log.warning("Docker watcher: %s; reconnecting with backoff", message)
        self.last_error = message

    async def _session(self) -> None:
        await asyncio.to_thread(self.source.connect)
        stream = await asyncio.to_thread(self.source.events)  # subscribed before reconciling
        self.connected, self.connected_since, self.next_retry_at = True, time.time(), None
        self.connections += 1
        self.last_error = None
        log.info("Docker watcher: connected to %s (connection %d)", self.source.where,
                 self.connections)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[ContainerEvent | BaseException] = asyncio.Queue()
        threading.Thread(target=_pump, args=(stream, loop, queue), daemon=True,
                         name="ovsbridge-docker-events").start()
        self._spawn(self.reconcile())
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            self.events_seen += 1
            self.last_event_at = time.time()
            self.dispatch(item)

    # -- events -----------------------------------------------------------------------------
    def dispatch(self, event: ContainerEvent) -> None:
        log.debug("Docker event: %s %s (%s)", event.action, event.name, event.id[:12])
        if event.action == "start":
            if event.labels:
                self._for(event.id, self._attach(event.id, event.name, event.labels))
        elif event.action in ("die", "stop", "destroy"):
            self._for(event.id, self._forget(event))

    async def reconcile(self) -> None:
        try:
            running = await asyncio.to_thread(self.source.running)
        except OvsbridgeError as exc:
            log.warning("Docker watcher: cannot list containers: %s", exc.message)
            return
        ids = {c.id for c in running}
        for item in self.watched.values():
            if item.id not in ids and item.state == "attached":
                item.state, item.since = "stopped", time.time()
        pending = [self._for(c.id, self._attach(c.id, c.name, c.labels)) for c in running]
        removed: list[str] = []
        try:
            removed = await asyncio.to_thread(self.actions.sweep, self.bridges)
        except Exception as exc:
            log.warning("Docker watcher: stale-port sweep failed: %s", _text(exc))
        await asyncio.gather(*pending, return_exceptions=True)
        attached = sum(1 for c in running if self.watched.get(c.id, None) is not None
                       and self.watched[c.id].state == "attached")
        self.last_reconcile = {"at": time.time(), "labelled_running": len(running),
                               "attached": attached, "stale_removed": removed}
        log.info("Docker watcher: reconciled: %d labelled container(s) running, %d attached, "
                 "%d stale port(s) removed", len(running), attached, len(removed))

    async def _attach(self, cid: str, name: str, labels: dict[str, str]) -> None:
        try:
            request = request_from_labels(cid, labels)
        except BadInput as exc:
            text = exc.message + (f" ({exc.hint})" if exc.hint else "")
            self.watched[cid] = Watched(cid, name, "bad labels", error=text)
            if (cid, text) not in self._reported:
                self._reported.add((cid, text))
                log.warning('container "%s" (%s) left unattached: %s', name, cid[:12], text)
            return
        item = Watched(cid, name, "unattached", request.bridge, request.ifname,
                       str(request.plan))
        if self.bridges is not None and request.bridge not in self.bridges:
            item.state, item.error = "ignored", "bridge not watched by this daemon"
            self.watched[cid] = item
            return
        self.watched[cid] = item
        try:
            result = await asyncio.to_thread(self.actions.attach, request)
        except Exception as exc:
            item.error = _text(exc)
            log.warning('container "%s" (%s) not attached to %s: %s', name, cid[:12],
                        request.bridge, item.error)
            return
        item.state, item.since, item.error = "attached", time.time(), None
        item.port, item.mac = getattr(result, "port", None), getattr(result, "mac", None)
        addresses = getattr(result, "addresses", ())
        if addresses:
            item.address = ",".join(addresses)
        status = getattr(result, "status", "attached")
        if status != "already attached":
            log.info('container "%s" (%s) %s: %s on %s (port %s, mac %s, %s)', name, cid[:12],
                     status, request.ifname, request.bridge, item.port, item.mac,
                     item.address)

    async def _forget(self, event: ContainerEvent) -> None:
        try:
            removed = await asyncio.to_thread(self.actions.forget, event.id, event.name,
                                              self.bridges)
        except Exception as exc:
            log.warning('container "%s" (%s) %s: its ports were not removed: %s', event.name,
                        event.id[:12], event.action, _text(exc))
            return
        if removed:
            log.info('container "%s" (%s) %s: removed port(s) %s', event.name, event.id[:12],
                     event.action, ", ".join(removed))
        item = self.watched.get(event.id)
        if event.action == "destroy":
            self.watched.pop(event.id, None)
        elif item is not None and item.state == "attached":
            item.state, item.since, item.port = "stopped", time.time(), None

    # -- tasks ------------------------------------------------------------------------------
    def _for(self, cid: str, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run WORK for container CID after the work queued before it for the same CID."""
        lock, pending = self._locks.get(cid, (asyncio.Lock(), 0))
        self._locks[cid] = (lock, pending + 1)

        async def locked() -> None:
            try:
                async with lock:
                    await work
            finally:
                held, left = self._locks[cid]
                if left <= 1:
                    del self._locks[cid]
                else:
                    self._locks[cid] = (held, left - 1)

        return self._spawn(locked())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        self.idle.clear()
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self.idle.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("Docker watcher task failed: %s", _text(task.exception()))

    # -- status -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "docker": {"host": self.source.where, "connected": self.connected,
                       "connected_since": self.connected_since,
                       "connections": self.connections, "last_error": self.last_error,
                       "next_retry_at": None if self.connected else self.next_retry_at},
            "bridges": sorted(self.bridges) if self.bridges is not None else "all",
            "events": self.events_seen,
            "last_event_at": self.last_event_at,
            "last_reconcile": self.last_reconcile,
            "containers": [w.to_dict() for w in sorted(self.watched.values(),
                                                       key=lambda w: (w.name, w.id))],
        }


def _pump(stream: Iterator[ContainerEvent], loop: asyncio.AbstractEventLoop,
          queue: asyncio.Queue[ContainerEvent | BaseException]) -> None:
    """Thread body: move events from the blocking stream into the loop's queue."""
    item: ContainerEvent | BaseException
    try:
        for item in stream:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        item = DockerGone("the Docker event stream ended")
    except BaseException as exc:  # handed to the loop, which decides
        item = exc
    with contextlib.suppress(RuntimeError):  # the loop is closed: the daemon is stopping
        loop.call_soon_threadsafe(queue.put_nowait, item)


def _text(exc: BaseException | None) -> str:
    if isinstance(exc, OvsbridgeError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


# ----- the real actions and the daemon plugin ---------------------------------------------
class SystemActions:
    """WatcherActions on the real host: ops.attach and ops.cleanup with real backends."""

    def __init__(self, daemon: Any, db: str | None) -> None:
        self.daemon = daemon
        self.db = db
        self.loop: asyncio.AbstractEventLoop | None = None

    def _ovs(self) -> Any:
        from ovsbridge.system.ovs import Ovs

        return Ovs(db=self.db)

    def attach(self, request: AttachRequest) -> Any:
        from ovsbridge.daemon.engine import in_daemon_backends
        from ovsbridge.ops.attach import attach

        assert self.loop is not None
        backend, _ = in_daemon_backends(self.daemon, self.loop, self.db)
        return attach(backend, request)

    def _cleanup_backend(self) -> Any:
        from ovsbridge.system.cleanup_backend import RealCleanupBackend

        actions = self

        class InDaemon(RealCleanupBackend):
            def drop_lease(self, guest_key: str, ifname: str) -> bool:
                # NOTE: we are the daemon: drop from our own keeper, on our loop. No
                # DHCPRELEASE: the container may come back (restart) and should get the
                # same address, which the server keeps for its MAC until the lease ends.
                keeper = getattr(actions.daemon, "keeper", None)
                if keeper is None or actions.loop is None:
                    return False
                future = asyncio.run_coroutine_threadsafe(
                    keeper.drop(guest_key, ifname, release=False), actions.loop)
                return future.result(10) is not None

        return InDaemon(self._ovs())

    def forget(self, container_id: str, name: str, bridges: frozenset[str] | None) -> list[str]:
        from ovsbridge.ops.cleanup import cleanup, ports_of_container

        of_container = ports_of_container(container_id, name)
        result = cleanup(self._cleanup_backend(), min_age=0, select=lambda f: of_container(f)
                         and (bridges is None or f.port.bridge in bridges))
        return [e.port for e in result.removed]

    def sweep(self, bridges: frozenset[str] | None) -> list[str]:
        from ovsbridge.ops.cleanup import cleanup

        result = cleanup(self._cleanup_backend(),
                         select=None if bridges is None else lambda f: f.port.bridge in bridges)
        return [e.port for e in result.removed]


def watch_settings(env: dict[str, str] | None = None) -> tuple[bool, frozenset[str] | None]:
    """(enabled, bridges) from OVSBRIDGE_WATCH and OVSBRIDGE_WATCH_BRIDGES.

    NOTE: by default only the host-wide daemon (the default run dir, /run/ovsbridge) watches
    Docker: two watchers would race to attach the same containers. A daemon with a private
    OVSBRIDGE_RUN_DIR (tests, experiments) watches only with OVSBRIDGE_WATCH=on.
    """
    from ovsbridge.paths import DEFAULT_RUN_DIR, daemon_paths

    source = dict(os.environ if env is None else env)
    raw_watch = source.get(ENV_WATCH, "").strip().lower()
    if raw_watch in ("0", "off", "no", "false"):
        enabled = False
    elif raw_watch in ("1", "on", "yes", "true"):
        enabled = True
    else:
        enabled = daemon_paths(source).run_dir == os.path.abspath(DEFAULT_RUN_DIR)
    raw = source.get(ENV_BRIDGES, "").strip()
    bridges = frozenset(b.strip() for b in raw.split(",") if b.strip()) if raw else None
    return enabled, bridges


def plugin(daemon: Any) -> None:
    """Daemon plugin: the watcher as a supervised task, its state in ``daemon status``."""
    enabled, bridges = watch_settings()
    if not enabled:
        log.info("Docker watcher: off (set %s=on to watch Docker from this daemon)", ENV_WATCH)
        return
    from ovsbridge.system.docker_events import DockerEvents

    actions = SystemActions(daemon, os.environ.get("OVSBRIDGE_DB") or None)
    watcher = Watcher(DockerEvents(), actions, bridges=bridges)

    async def task(_daemon: Any) -> None:
        actions.loop = asyncio.get_running_loop()
        await watcher.run()

    daemon.add_task("docker-watcher", task)
    daemon.add_status("watcher", watcher.status)
