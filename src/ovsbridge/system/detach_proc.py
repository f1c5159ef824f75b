"""A process that outlives the CLI, and the unix socket the CLI and it talk over.

``spawn_detached`` starts ``python -m MODULE ARGS`` in a new session (no controlling
terminal, so closing an SSH session does not reach it), with stdin and stdout on /dev/null
after a one-line readiness handshake and stderr appended to a log file. The child calls
``detach_ready()`` once it listens; the parent returns only then. ``LineServer`` and
``LineClient`` speak JSON lines over a root-only unix stream socket; a closed connection is
how the watchdog learns that the CLI died (the kernel closes a SIGKILLed process's sockets).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from ovsbridge.errors import OperationFailed

READY = "ready"


def spawn_detached(
    module: str, args: Sequence[str], log_path: str, ready_timeout: float = 15.0
) -> subprocess.Popen[bytes]:
    """Start ``python -m MODULE ARGS`` detached; return once it printed its ready line."""
    os.makedirs(os.path.dirname(log_path), mode=0o700, exist_ok=True)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_fd,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise OperationFailed(f"cannot start the rollback watchdog: {exc}") from exc
    finally:
        os.close(log_fd)
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    line = b""
    deadline = time.monotonic() + ready_timeout
    try:
        while not line.endswith(b"\n") and (left := deadline - time.monotonic()) > 0:
            if not sel.select(left):
                break
            chunk = os.read(proc.stdout.fileno(), 256)
            if not chunk:
                break
            line += chunk
    finally:
        sel.close()
        proc.stdout.close()
    if line.decode(errors="replace").strip() != READY:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=5)
        raise OperationFailed(
            "the rollback watchdog did not start; nothing was changed",
            hint=f"see its log: {log_path}",
        )
    return proc


def detach_ready() -> None:
    """In the child: tell the parent we are armed, then let go of its pipe and signals."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    sys.stdout.write(READY + "\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LineServer:
    """A unix stream socket (mode 0600) with any number of JSON-line connections."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        old = os.umask(0o177)
        try:
            self.sock.bind(path)
        finally:
            os.umask(old)
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ, None)
        self.buffers: dict[int, bytes] = {}
        self.conns: dict[int, socket.socket] = {}

    def poll(self, timeout: float) -> list[tuple[int, dict[str, Any] | None]]:
        """Messages that arrived within TIMEOUT: (connection id, message or None at EOF)."""
        out: list[tuple[int, dict[str, Any] | None]] = []
        for key, _ in self.sel.select(max(0.0, timeout)):
            if key.data is None:
                with contextlib.suppress(BlockingIOError, InterruptedError):
                    conn, _ = self.sock.accept()
                    conn.setblocking(False)
                    self.conns[conn.fileno()] = conn
                    self.buffers[conn.fileno()] = b""
                    self.sel.register(conn, selectors.EVENT_READ, conn.fileno())
                continue
            cid = key.data
            conn = self.conns[cid]
            try:
                chunk = conn.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self.drop(cid)
                out.append((cid, None))
                continue
            self.buffers[cid] += chunk
            while b"\n" in self.buffers[cid]:
                line, self.buffers[cid] = self.buffers[cid].split(b"\n", 1)
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    out.append((cid, message))
        return out

    def send(self, cid: int, message: dict[str, Any]) -> bool:
        conn = self.conns.get(cid)
        if conn is None:
            return False
        try:
            conn.setblocking(True)
            conn.settimeout(2.0)
            conn.sendall(json.dumps(message).encode() + b"\n")
            conn.setblocking(False)
        except OSError:
            self.drop(cid)
            return False
        return True

    def drop(self, cid: int) -> None:
        conn = self.conns.pop(cid, None)
        self.buffers.pop(cid, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                self.sel.unregister(conn)
            conn.close()

    def close(self) -> None:
        for cid in list(self.conns):
            self.drop(cid)
        with contextlib.suppress(Exception):
            self.sel.unregister(self.sock)
        self.sock.close()
        self.sel.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class LineClient:
    """One JSON-line connection to a ``LineServer``."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buffer = b""

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message: dict[str, Any]) -> None:
        self.sock.settimeout(5.0)
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def recv(self, timeout: float | None) -> dict[str, Any] | None:
        """The next message; None when the other end closed; TimeoutError after TIMEOUT."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if left == 0.0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise
            except OSError:
                return None
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        message = json.loads(line)
        return message if isinstance(message, dict) else {}

    def has_data(self) -> bool:
        return b"\n" in self.buffer

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_readable(fds: Sequence[int], timeout: float) -> list[int]:
    """Which of FDS became readable within TIMEOUT."""
    sel = selectors.DefaultSelector()
    try:
        for fd in fds:
            sel.register(fd, selectors.EVENT_READ, fd)
        return [key.data for key, _ in sel.select(max(0.0, timeout))]
    finally:
        sel.close()
