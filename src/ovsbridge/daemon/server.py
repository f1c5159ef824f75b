"""The one host-wide ``ovsbridge daemon``: a lease keeper (and later the Docker watcher)
behind a root-only unix socket.

Single instance: an exclusive ``flock`` on ``RUN_DIR/daemon.lock`` (which also holds its
PID). The socket ``RUN_DIR/daemon.sock`` (0600 in a 0700 dir) speaks JSON lines: each request
is one object with an ``op``, each answer one object ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {...}}`` (an ``OvsbridgeError.to_dict()``). Lease state lives under
``STATE_DIR/leases`` (0700), so a daemon started again after SIGKILL resumes every lease.
SIGTERM/SIGINT stop it cleanly: leases stay configured and persisted (nothing is released).

Extension points for later issues: ``add_task`` (a supervised coroutine, restarted with
backoff if it crashes), ``add_op`` (a new request type) and ``add_status`` (a section of the
status answer); ``run_daemon(paths, plugins=[...])`` calls each plugin with the daemon
before it starts serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ovsbridge import __version__
from ovsbridge.daemon.leases import (
    GuestRef,
    HoldOptions,
    LeaseKeeper,
    LeaseStore,
    lease_from_record,
)
from ovsbridge.errors import (
    BadInput,
    DaemonAlreadyRunning,
    EnvironmentProblem,
    OvsbridgeError,
)
from ovsbridge.paths import DaemonPaths

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
# A streaming op also gets emit(progress): each call sends one {"progress": ...} line first.
StreamHandler = Callable[[dict[str, Any], Callable[[dict[str, Any]], None]], Awaitable[Any]]
TaskFactory = Callable[["Daemon"], Awaitable[None]]
Plugin = Callable[["Daemon"], None]

MAX_LINE = 1 << 20
TASK_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)
GUARD_INTERVAL = 2.0




def ensure_private_dir(path: str, what: str = "directory") -> None:
    """Create PATH root-only if it is missing; refuse an existing one that others can write
    or that is not ours, and never change its mode (see system/files.py)."""
    from ovsbridge.system.files import ensure_private_dir as ensure

    ensure(path, what)


def file_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _fd_identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


class InstanceLock:
    """The daemon's single-instance lock: ``flock`` on the lock file, which records the PID."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DaemonAlreadyRunning(
                f"an ovsbridge daemon already runs (lock {self.path} is held)",
                hint="'ovsbridge daemon status' shows it; 'ovsbridge daemon stop' stops it",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        # NOTE: unlink while still holding the lock, so a daemon starting now either fails
        # on our inode or creates a fresh file; the socket path was removed before this.
        # Only our own inode: if the file was replaced, it is another daemon's now.
        if file_identity(self.path) == _fd_identity(self.fd):
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


class Daemon:
    """The daemon: a LeaseKeeper, plugin tasks, and the unix-socket server around them."""

    def __init__(
        self,
        paths: DaemonPaths,
        keeper: LeaseKeeper | None = None,
        plugins: Iterable[Plugin] = (),
    ) -> None:
        self.paths = paths
        self.keeper = keeper or LeaseKeeper(LeaseStore(paths.leases_dir))
        self.started_at = time.time()
        self._ops: dict[str, Handler] = {
            "ping": self._op_ping,
            "hold": self._op_hold,
            "drop": self._op_drop,
            "renew": self._op_renew,
            "status": self._op_status,
            "stop": self._op_stop,
        }
        self._streams: dict[str, StreamHandler] = {}
        self._status: dict[str, Callable[[], Any]] = {}
        self._task_factories: list[tuple[str, TaskFactory]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._lock = InstanceLock(paths.lock)
        self._server: asyncio.AbstractServer | None = None
        self._socket_identity: tuple[int, int] | None = None
        self._running = False
        for plugin in plugins:
            plugin(self)

    # -- extension points -----------------------------------------------------------------

    def add_task(self, name: str, factory: TaskFactory) -> None:
        """Run ``factory(daemon)`` for the daemon's life; restarted with backoff on a crash."""
        self._task_factories.append((name, factory))
        if self._running:
            self._spawn(name, factory)

    def add_op(self, op: str, handler: Handler) -> None:
        """Serve requests ``{"op": OP, ...}`` with ``await handler(request) -> result``."""
        if op in self._ops:
            raise BadInput(f"daemon op {op!r} is already defined")
        self._ops[op] = handler

    def add_stream_op(self, op: str, handler: StreamHandler) -> None:
        """Serve ``{"op": OP, ...}`` with ``await handler(request, emit)``; EMIT(progress)
        sends a ``{"progress": ...}`` line ahead of the answer."""
        if op in self._ops or op in self._streams:
            raise BadInput(f"daemon op {op!r} is already defined")
        self._streams[op] = handler

    def add_status(self, name: str, provider: Callable[[], Any]) -> None:
        """Add ``name: provider()`` to the answer of ``status``."""
        self._status[name] = provider

    def request_stop(self) -> None:
        self._stop.set()

    # -- life cycle -----------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT or a ``stop`` request."""
        ensure_private_dir(self.paths.run_dir, "run directory")
        ensure_private_dir(self.paths.state_dir, "state directory")
        self._lock.acquire()
        try:
            self.keeper.store.ensure()
            sock = self._bind()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            try:
                self._server = await asyncio.start_unix_server(
                    self._serve, sock=sock, limit=MAX_LINE
                )
                resumed = await self.keeper.resume()
                log.info(
                    "ovsbridge daemon %s (pid %d) serving %s; resumed %d lease(s)",
                    __version__,
                    os.getpid(),
                    self.paths.socket,
                    resumed,
                )
                self._running = True
                for name, factory in self._task_factories:
                    self._spawn(name, factory)
                self._tasks.append(loop.create_task(self._guard_files(), name="guard files"))
                await self._stop.wait()
            finally:
                self._running = False
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
                await self._shutdown()
        finally:
            self._lock.release()
        log.info("ovsbridge daemon stopped")

    def _bind(self) -> socket.socket:
        # NOTE: we hold the lock, so a socket file left here is from a daemon that died
        # (SIGKILL); nobody else can be serving it.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.paths.socket)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(self.paths.socket)
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        os.chmod(self.paths.socket, 0o600)
        self._socket_identity = file_identity(self.paths.socket)
        sock.listen(64)
        sock.setblocking(False)
        return sock

    async def _guard_files(self) -> None:
        # NOTE: if our socket or lock file is removed or replaced (someone wiped the run dir),
        # nobody can reach us and a second daemon may start: stop rather than live on unseen.
        while True:
            await asyncio.sleep(GUARD_INTERVAL)
            lock_fd = self._lock.fd
            if file_identity(self.paths.socket) != self._socket_identity or (
                lock_fd is not None and file_identity(self.paths.lock) != _fd_identity(lock_fd)
            ):
                log.error(
                    "socket or lock file in %s is gone or replaced; stopping", self.paths.run_dir
                )
                self.request_stop()
                return

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            if file_identity(self.paths.socket) == self._socket_identity:
                with contextlib.suppress(OSError):
                    os.unlink(self.paths.socket)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.keeper.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def _spawn(self, name: str, factory: TaskFactory) -> None:
        task = asyncio.get_running_loop().create_task(self._supervise(name, factory), name=name)
        self._tasks.append(task)

    async def _supervise(self, name: str, factory: TaskFactory) -> None:
        failures = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                await factory(self)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("daemon task %s crashed", name)
            if time.monotonic() - started > 60:
                failures = 0
            delay = TASK_BACKOFF[min(failures, len(TASK_BACKOFF) - 1)]
            failures += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    # -- protocol -------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            uid = _peer_uid(writer)
            if uid is not None and uid not in (0, os.geteuid()):
                # NOTE: the socket is 0600 in a 0700 directory already; SO_PEERCRED is the
                # second lock, for a directory whose mode someone loosened.
                log.warning("refused a connection from uid %d", uid)
                await self._answer(writer, error=EnvironmentProblem(
                    f"uid {uid} may not use the ovsbridge daemon", hint="run ovsbridge as root"))
                return

            def emit(progress: dict[str, Any]) -> None:
                writer.write(json.dumps({"progress": progress}, default=str).encode() + b"\n")

            while not reader.at_eof():
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await self._answer(writer, error=BadInput("request line too long"))
                    break
                if not line.strip():
                    if not line:
                        break
                    continue
                await self._answer(writer, **await self.handle_line(line, emit))
        except (ConnectionError, OSError) as exc:
            log.debug("client went away: %s", exc)
        except asyncio.CancelledError:
            # NOTE: shutting down with a client still connected: end its connection quietly
            # (asyncio logs a cancelled connection task as an error otherwise).
            log.debug("closing a client connection at shutdown")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self, writer: asyncio.StreamWriter, result: Any = None, error: OvsbridgeError | None = None
    ) -> None:
        if error is None:
            answer = {"ok": True, "result": result}
        else:
            answer = {"ok": False, "error": error.to_dict()}
        writer.write(json.dumps(answer, default=str).encode() + b"\n")
        await writer.drain()

    async def handle_line(self, line: bytes,
                          emit: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """One request line -> ``{"result": ...}`` or ``{"error": OvsbridgeError}``."""
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise BadInput("a request must be a JSON object")
            op = request.get("op")
            stream = self._streams.get(op) if isinstance(op, str) else None
            if stream is not None:
                return {"result": await stream(request, emit or (lambda _progress: None))}
            handler = self._ops.get(op) if isinstance(op, str) else None
            if handler is None:
                known = sorted({*self._ops, *self._streams})
                raise BadInput(f"unknown daemon op {op!r}", hint=f"use one of {known}")
            return {"result": await handler(request)}
        except ValueError as exc:
            return {"error": BadInput(f"malformed request: {exc}")}
        except OvsbridgeError as exc:
            return {"error": exc}
        except Exception as exc:
            log.exception("request failed")
            return {"error": OvsbridgeError(f"internal error in the daemon: {exc}")}

    # -- ops ------------------------------------------------------------------------------

    async def _op_ping(self, _request: dict[str, Any]) -> Any:
        return {"pid": os.getpid(), "version": __version__}

    async def _op_hold(self, request: dict[str, Any]) -> Any:
        guest = GuestRef.from_dict(_field(request, "guest", dict))
        ifname = _field(request, "ifname", str)
        lease = lease_from_record(_field(request, "lease", dict))
        options = HoldOptions.from_dict(request.get("options") or {})
        entry = await self.keeper.hold(guest, ifname, lease, options)
        return entry.status()

    async def _op_drop(self, request: dict[str, Any]) -> Any:
        guest_key = _field(request, "guest_key", str)
        release = bool(request.get("release", True))
        ifname = request.get("ifname")
        if ifname is None:  # every interface of the guest
            ifnames = [e.ifname for e in self.keeper.entries.values() if e.guest.key == guest_key]
        elif isinstance(ifname, str):
            ifnames = [ifname]
        else:
            raise BadInput("'ifname' must be a string or null")
        dropped = []
        for name in ifnames:
            lease = await self.keeper.drop(guest_key, name, release=release)
            if lease is not None:
                dropped.append({"ifname": name, "lease": lease.to_dict()})
        return {"dropped": dropped}

    async def _op_renew(self, request: dict[str, Any]) -> Any:
        kicked = self.keeper.kick(_field(request, "guest_key", str), _field(request, "ifname", str))
        return {"renewing": kicked}

    async def _op_status(self, _request: dict[str, Any]) -> Any:
        status: dict[str, Any] = {
            "pid": os.getpid(),
            "version": __version__,
            "started_at": self.started_at,
            "socket": self.paths.socket,
            "state_dir": self.paths.state_dir,
            "leases": self.keeper.status(),
        }
        for name, provider in self._status.items():
            try:
                status[name] = provider()
            except Exception as exc:
                status[name] = {"error": str(exc)}
        return status

    async def _op_stop(self, _request: dict[str, Any]) -> Any:
        asyncio.get_running_loop().call_soon(self.request_stop)
        return {"stopping": True, "pid": os.getpid()}


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def _field(request: dict[str, Any], name: str, kind: type) -> Any:
    value = request.get(name)
    if not isinstance(value, kind):
        raise BadInput(f"request field {name!r} is missing or not a {kind.__name__}")
    return value


# Modules that, when present, extend the daemon: each ``module:function`` is called with the
# Daemon before it serves (issue 5's Docker watcher plugs in here).
OPTIONAL_PLUGINS: tuple[str, ...] = ("ovsbridge.daemon.engine:plugin",
                                     "ovsbridge.daemon.watcher:plugin")


def default_plugins() -> list[Plugin]:
    """The plugins of OPTIONAL_PLUGINS whose module exists."""
    import importlib

    found: list[Plugin] = []
    for spec in OPTIONAL_PLUGINS:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        plugin = getattr(module, attr, None)
        if callable(plugin):
            found.append(plugin)
    return found


def run_daemon(paths: DaemonPaths, plugins: Iterable[Plugin] = ()) -> None:
    """Run the daemon in the foreground until it is stopped (blocking)."""

    async def main() -> None:
        await Daemon(paths, plugins=plugins).run()

    try:
        asyncio.run(main())
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise EnvironmentProblem(
                f"the daemon cannot use {paths.run_dir}: {exc.strerror}",
                hint="run it as root",
            ) from exc
        raise
