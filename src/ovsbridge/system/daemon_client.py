"""Client of the ``ovsbridge daemon``: hand leases over, drop them, ask for status, stop it.

Talks JSON lines over the daemon's root-only unix socket (see daemon/server.py). ``hold``
starts the daemon when none answers: ``python -m ovsbridge daemon run`` fully detached
(new session, stdio to ``RUN_DIR/daemon.log``), then waits, bounded, for its socket. Paths
come from ``ovsbridge.paths.daemon_paths()`` (env ``OVSBRIDGE_RUN_DIR``/``OVSBRIDGE_STATE_DIR``).

No daemon: ``drop`` and ``stop`` succeed (there is nothing to drop or stop); ``status``
raises ``DaemonNotRunning`` (a NotFound, exit 3), which ``ovsbridge daemon status`` reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

from ovsbridge.client import DAEMON_STOPPED_HINT, docker_endpoint, netns_inode
from ovsbridge.errors import (
    BadInput,
    Conflict,
    DaemonNotRunning,
    EnvironmentProblem,
    NotFound,
    OperationFailed,
    OvsbridgeError,
    WrongDaemon,
)
from ovsbridge.paths import DaemonPaths, daemon_paths

REQUEST_TIMEOUT = 15.0
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0

_ERRORS: dict[str, type[OvsbridgeError]] = {
    "failed": OperationFailed,
    "bad-input": BadInput,
    "not-found": NotFound,
    "conflict": Conflict,
    "environment": EnvironmentProblem,
    "wrong-daemon": WrongDaemon,
}
ENGINE_TIMEOUT = 900.0
# Daemons this process started, by PID, so stop() can reap them (no zombies in a long-lived
# caller such as a test run).
_spawned: dict[int, subprocess.Popen[bytes]] = {}




def paths() -> DaemonPaths:
    """Where the daemon lives (the one place paths are resolved: ovsbridge.paths)."""
    return daemon_paths()


# --------------------------------------------------------------------------------------------
# Transport
# --------------------------------------------------------------------------------------------


def _connect(where: DaemonPaths, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(where.socket)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise DaemonNotRunning(where) from exc
    except PermissionError as exc:
        sock.close()
        raise EnvironmentProblem(
            f"not allowed to talk to the daemon at {where.socket}",
            hint="run ovsbridge as root",
        ) from exc
    except OSError as exc:
        sock.close()
        raise EnvironmentProblem(f"cannot reach the daemon at {where.socket}: {exc}") from exc
    return sock


def request(
    op: str, *, where: DaemonPaths | None = None, timeout: float = REQUEST_TIMEOUT, **fields: Any
) -> Any:
    """Send one request and return its result; the daemon's error is raised as ours."""
    where = where or paths()
    sock = _connect(where, timeout)
    try:
        sock.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError as exc:
        raise EnvironmentProblem(
            f"the daemon did not answer {op!r} within {timeout:g} s", hint="see its log"
        ) from exc
    except OSError as exc:
        raise EnvironmentProblem(f"lost the daemon while asking {op!r}: {exc}") from exc
    finally:
        sock.close()
    if not data:
        raise EnvironmentProblem(f"the daemon closed the connection on {op!r}")
    try:
        answer = json.loads(data)
    except ValueError as exc:
        raise EnvironmentProblem(f"the daemon answered garbage to {op!r}") from exc
    if answer.get("ok"):
        return answer.get("result")
    raise error_from_dict(answer.get("error") or {})


def error_from_dict(error: dict[str, Any]) -> OvsbridgeError:
    """The OvsbridgeError that ``to_dict()`` produced ERROR: same class, message, hint, code."""
    cls = _ERRORS.get(str(error.get("error")), OperationFailed)
    extra = {k: v for k, v in error.items() if k not in ("error", "message", "hint", "exit_code")}
    exc = cls(str(error.get("message") or "the daemon refused"), hint=error.get("hint"), **extra)
    code = error.get("exit_code")
    if isinstance(code, int) and code != exc.exit_code:
        exc.exit_code = code  # type: ignore[misc]
    return exc


def engine(op: str, payload: dict[str, Any], *, db: str | None,
           on_progress: Any = None, where: DaemonPaths | None = None,
           timeout: float = ENGINE_TIMEOUT) -> Any:
    """Have the daemon run engine op OP; ON_PROGRESS(progress) for each progress line.

    DaemonNotRunning when none answers, WrongDaemon when it serves another netns, OVSDB or
    Docker;
    a daemon that dies mid-request is OperationFailed (exit 1): the request is never sent
    twice.
    """
    where = where or paths()
    sock = _connect(where, 5.0)
    request_line = json.dumps({"op": op, "payload": payload, "db": db,
                               "netns": netns_inode(),
                               "docker": docker_endpoint()})
    try:
        sock.settimeout(timeout)
        sock.sendall(request_line.encode() + b"\n")
        reader = sock.makefile("rb")
        while True:
            line = reader.readline()
            if not line:
                raise OperationFailed(
                    f"the ovsbridge daemon stopped while running {op!r}",
                    hint=DAEMON_STOPPED_HINT)
            answer = json.loads(line)
            if "progress" in answer:
                if on_progress is not None:
                    on_progress(answer["progress"])
                continue
            if answer.get("ok"):
                return answer.get("result")
            raise error_from_dict(answer.get("error") or {})
    except TimeoutError as exc:
        raise EnvironmentProblem(
            f"the daemon did not finish {op!r} within {timeout:g} s", hint=f"see {where.log}"
        ) from exc
    except ValueError as exc:
        raise OperationFailed(f"the daemon answered garbage to {op!r}") from exc
    except (ConnectionError, OSError) as exc:
        if isinstance(exc, OvsbridgeError):
            raise
        raise OperationFailed(f"lost the ovsbridge daemon while running {op!r}: {exc}",
                              hint="check with 'ovsbridge ps', then run the command again"
                              ) from exc
    finally:
        sock.close()


def start_background(where: DaemonPaths | None = None, db: str | None = None) -> bool:
    """Start a daemon for the calls that follow, without waiting for it; False when one is
    already running or starting (its lock is held)."""
    import fcntl

    where = where or paths()
    try:
        fd = os.open(where.lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = None
    except OSError:
        return False
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        finally:
            os.close(fd)
    _spawn(where, db)
    return True


def _spawn(where: DaemonPaths, db: str | None) -> subprocess.Popen[bytes]:
    import subprocess

    _private_dir(where.run_dir)
    log_fd = os.open(where.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    env = {**os.environ, "OVSBRIDGE_RUN_DIR": where.run_dir,
           "OVSBRIDGE_STATE_DIR": where.state_dir}
    if db:
        env["OVSBRIDGE_DB"] = db
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ovsbridge", "daemon", "run"],
            stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
            start_new_session=True, close_fds=True, cwd="/", env=env,
        )
    finally:
        os.close(log_fd)
    _spawned[proc.pid] = proc
    return proc


def ping(where: DaemonPaths | None = None) -> dict[str, Any] | None:
    """The daemon's PID and version, or None when none answers."""
    try:
        result = request("ping", where=where, timeout=5.0)
    except DaemonNotRunning:
        return None
    return result if isinstance(result, dict) else None


# --------------------------------------------------------------------------------------------
# Starting and stopping
# --------------------------------------------------------------------------------------------


def _private_dir(path: str) -> None:
    from ovsbridge.system.files import ensure_private_dir

    ensure_private_dir(path, "run directory")


def ensure_running(where: DaemonPaths | None = None, timeout: float = START_TIMEOUT) -> int:
    """Start the daemon unless one answers; return its PID once it answers."""
    where = where or paths()
    info = ping(where)
    if info is not None:
        return int(info["pid"])
    proc = _spawn(where, os.environ.get("OVSBRIDGE_DB") or None)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = ping(where)
        if info is not None:
            return int(info["pid"])
        code = proc.poll()
        if code is not None and code != Conflict.exit_code:
            # NOTE: exit 4 means another daemon won the lock race: keep waiting for it.
            _spawned.pop(proc.pid, None)
            raise EnvironmentProblem(
                f"the ovsbridge daemon exited at start (code {code}): {_log_tail(where)}",
                hint=f"see {where.log}",
            )
        time.sleep(0.05)
    raise EnvironmentProblem(
        f"the ovsbridge daemon did not answer within {timeout:g} s", hint=f"see {where.log}"
    )


def _log_tail(where: DaemonPaths, lines: int = 3) -> str:
    try:
        with open(where.log, errors="replace") as fh:
            text = fh.read()[-4000:]
    except OSError:
        return "no log"
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())


def _gone(pid: int) -> bool:
    proc = _spawned.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            _spawned.pop(pid, None)
            return True
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def stop(where: DaemonPaths | None = None, timeout: float = STOP_TIMEOUT) -> int | None:
    """Ask the daemon to stop and wait until it has; its PID, or None if none was running.

    The daemon releases nothing when it stops: leases stay configured and persisted, and the
    next daemon resumes them.
    """
    where = where or paths()
    try:
        result = request("stop", where=where)
    except DaemonNotRunning:
        return None
    pid = int(result["pid"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return pid
        time.sleep(0.05)
    raise OperationFailed(
        f"the ovsbridge daemon (pid {pid}) did not stop within {timeout:g} s",
        hint=f"see {where.log}",
    )


# --------------------------------------------------------------------------------------------
# Leases
# --------------------------------------------------------------------------------------------


def _guest_dict(guest: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(guest) and not isinstance(guest, type):
        return dataclasses.asdict(guest)
    if isinstance(guest, dict):
        return dict(guest)
    raise BadInput("guest must be a dict or a model.Guest")


def hold(guest: Any, ifname: str, lease: Any, options: dict[str, Any]) -> None:
    """Hand LEASE (already applied by attach) on GUEST's IFNAME to the daemon, starting it if
    needed. GUEST: ``dataclasses.asdict(model.Guest)`` (or the Guest). OPTIONS:
    ``default_route`` (bool), ``dns`` (bool), ``resolv_conf`` (the container's own file to
    rewrite when a renewal changes DNS, or None); other keys are kept and shown in status."""
    lease_dict = lease.to_dict() if hasattr(lease, "to_dict") else dict(lease)
    where = paths()
    ensure_running(where)
    request(
        "hold",
        where=where,
        guest=_guest_dict(guest),
        ifname=ifname,
        lease=lease_dict,
        options=dict(options),
    )


def drop(guest_key: str, ifname: str | None, release: bool = True) -> list[dict[str, Any]]:
    """Stop keeping GUEST_KEY's lease on IFNAME (every interface if None); with RELEASE the
    daemon sends DHCPRELEASE for the lease it currently holds. Returns what was dropped
    (``[{"ifname", "lease"}]``); no daemon means nothing to drop."""
    with contextlib.suppress(DaemonNotRunning):
        result = request("drop", guest_key=guest_key, ifname=ifname, release=release)
        return list(result.get("dropped") or [])
    return []


def renew(guest_key: str, ifname: str) -> bool:
    """Ask the daemon to renew now (its T1 treated as passed). False if it holds no such lease."""
    result = request("renew", guest_key=guest_key, ifname=ifname)
    return bool(result.get("renewing"))


def status() -> dict[str, Any]:
    """What the daemon holds (``leases`` and whatever plugins add). DaemonNotRunning if none."""
    result = request("status")
    return dict(result)


__all__ = [
    "DaemonNotRunning",
    "drop",
    "ensure_running",
    "hold",
    "paths",
    "ping",
    "renew",
    "request",
    "status",
    "stop",
]
