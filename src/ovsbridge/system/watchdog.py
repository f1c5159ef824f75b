"""The safety net of setup-bridge: a detached process that puts the uplink back.

Before setup-bridge changes anything it arms a watchdog: a process in its own session (it
ignores SIGHUP, so closing the SSH session does not stop it, and survives the CLI being
SIGKILLed) holding the before-state in a root-only file under the run dir
(``OVSBRIDGE_RUN_DIR``, default /run/ovsbridge). The CLI keeps one connection to it open:

- while the CLI applies, losing that connection (the CLI was killed) means roll back now;
- once the CLI says "applied", the watchdog waits ``confirm_timeout`` seconds for a
  confirmation (``ovsbridge confirm`` from any shell, Enter in the CLI's terminal, or
  ``--yes`` once the gateway check passed) and rolls back when none comes;
- "rollback" (the gateway check failed, or a step failed) rolls back at once; so does SIGTERM.

Rolling back restores the exact previous state (addresses, routes, link settings) and
removes the bridge if setup-bridge created it. The watchdog then reports the outcome to
whoever is connected, removes its socket and state file, and exits.

This module is the watchdog's state and the CLI's side of it (arm, talk, confirm); the
process itself is ovsbridge.daemon.uplink_watchdog.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ovsbridge.errors import Conflict, NotFound, OperationFailed
from ovsbridge.paths import daemon_paths
from ovsbridge.system import detach_proc
from ovsbridge.system.hostnet import LinkState

log = logging.getLogger(__name__)

DEFAULT_CONFIRM_TIMEOUT = 60.0
# While the CLI is applying and still connected, the watchdog waits this much longer than
# the confirmation timeout before it gives up on it (a hung ovs-vsctl, say).
APPLY_GRACE = 60.0
SUBDIR = "setup-bridge"
MODULE = "ovsbridge.daemon.uplink_watchdog"

CONFIRMED = "confirmed"
ROLLED_BACK = "rolled-back"
ROLLBACK_INCOMPLETE = "rollback-incomplete"


@dataclass(frozen=True)
class WatchdogFiles:
    state: str
    socket: str
    log: str


def run_dir() -> str:
    return os.path.join(daemon_paths().run_dir, SUBDIR)


def watchdog_files(bridge: str) -> WatchdogFiles:
    base = os.path.join(run_dir(), bridge)
    return WatchdogFiles(state=base + ".json", socket=base + ".sock", log=base + ".log")


@dataclass(frozen=True)
class Armed:
    """What the watchdog needs to put things back, written before anything changes."""

    bridge: str
    uplink: str
    db: str | None
    before: LinkState
    bridge_existed: bool
    confirm_timeout: float = DEFAULT_CONFIRM_TIMEOUT
    armed_at: float = field(default_factory=time.time)
    cli_pid: int = field(default_factory=os.getpid)
    dhcp: dict[str, Any] | None = None  # lease hand-over details, when the uplink used DHCP

    def to_dict(self) -> dict[str, Any]:
        return {
            "bridge": self.bridge,
            "uplink": self.uplink,
            "db": self.db,
            "before": self.before.to_dict(),
            "bridge_existed": self.bridge_existed,
            "confirm_timeout": self.confirm_timeout,
            "armed_at": self.armed_at,
            "cli_pid": self.cli_pid,
            "dhcp": self.dhcp,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Armed:
        return cls(
            bridge=data["bridge"],
            uplink=data["uplink"],
            db=data.get("db"),
            before=LinkState.from_dict(data["before"]),
            bridge_existed=bool(data["bridge_existed"]),
            confirm_timeout=float(data["confirm_timeout"]),
            armed_at=float(data["armed_at"]),
            cli_pid=int(data.get("cli_pid", 0)),
            dhcp=data.get("dhcp"),
        )

    def save(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.to_dict(), fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> Armed:
        with open(path) as fh:
            return cls.from_dict(json.load(fh))


@dataclass(frozen=True)
class Outcome:
    outcome: str  # confirmed | rolled-back | rollback-incomplete
    reason: str = ""
    problems: tuple[str, ...] = ()

    @property
    def confirmed(self) -> bool:
        return self.outcome == CONFIRMED

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "reason": self.reason, "problems": list(self.problems)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        return cls(
            outcome=str(data.get("outcome", ROLLBACK_INCOMPLETE)),
            reason=str(data.get("reason", "")),
            problems=tuple(data.get("problems") or ()),
        )


# ----- the CLI's side --------------------------------------------------------------------
class Watchdog:
    """The CLI's handle on an armed watchdog (its session connection)."""

    def __init__(
        self, armed: Armed, files: WatchdogFiles, proc: Any, client: detach_proc.LineClient
    ) -> None:
        self.armed = armed
        self.files = files
        self.proc = proc
        self.client = client
        self.outcome: Outcome | None = None

    @classmethod
    def arm(cls, armed: Armed) -> Watchdog:
        """Write the before-state and start the watchdog; returns once it listens."""
        files = watchdog_files(armed.bridge)
        busy = pending_state(armed.bridge)
        if busy is not None:
            raise Conflict(
                f'a setup-bridge of "{armed.bridge}" is already waiting for confirmation',
                hint="confirm it with 'ovsbridge confirm', or wait for it to roll back",
            )
        armed.save(files.state)
        try:
            proc = detach_proc.spawn_detached(MODULE, [files.state], files.log)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(files.state)
            raise
        try:
            client = detach_proc.LineClient(files.socket)
            client.send({"op": "session", "pid": os.getpid()})
            reply = client.recv(10.0)
        except (OSError, TimeoutError, ValueError) as exc:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=5)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(files.state)
            raise OperationFailed(
                f"cannot talk to the rollback watchdog: {exc}; nothing was changed"
            ) from exc
        if not reply or not reply.get("ok"):
            raise OperationFailed("the rollback watchdog refused the session; nothing changed")
        log.debug("watchdog armed: pid %s, state %s", proc.pid, files.state)
        return cls(armed, files, proc, client)

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def _ask(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        try:
            self.client.send(message)
            while True:
                reply = self.client.recv(timeout)
                if reply is None:
                    raise OperationFailed(
                        "the rollback watchdog went away", hint=f"see its log: {self.files.log}"
                    )
                if "outcome" in reply:
                    self.outcome = Outcome.from_dict(reply)
                    return reply
                if "ok" in reply:
                    return reply
        except (OSError, TimeoutError) as exc:
            raise OperationFailed(
                f"the rollback watchdog does not answer: {exc}",
                hint=f"see its log: {self.files.log}",
            ) from exc

    def applied(self) -> None:
        """Everything is in place: start the confirmation countdown."""
        reply = self._ask({"op": "applied"}, 10.0)
        if self.outcome is not None:
            raise OperationFailed(
                f"the rollback watchdog already rolled back: {self.outcome.reason}"
            )
        if not reply.get("ok"):
            raise OperationFailed(f"the rollback watchdog refused: {reply.get('error')}")

    def update(self, dhcp: dict[str, Any]) -> None:
        """Tell the watchdog about the DHCP lease hand-over it must undo on rollback."""
        reply = self._ask({"op": "update", "dhcp": dhcp}, 10.0)
        if not reply.get("ok"):
            raise OperationFailed(f"the rollback watchdog refused: {reply.get('error')}")

    def confirm(self) -> Outcome:
        if self.outcome is None:
            self._ask({"op": "confirm"}, 30.0)
        assert self.outcome is not None
        return self.outcome

    def rollback(self, reason: str) -> Outcome:
        """Ask the watchdog to restore the before-state now; returns when it is done."""
        if self.outcome is None:
            self._ask({"op": "rollback", "reason": reason}, 120.0)
        assert self.outcome is not None
        return self.outcome

    def wait(self, user_confirmed: Callable[[float], bool] | None = None) -> Outcome:
        """Wait for the outcome (a confirmation from elsewhere, or the rollback).

        USER_CONFIRMED(seconds) blocks up to that long and says whether the person at the
        terminal confirmed (pressed Enter); None when nobody is there to ask.
        """
        while self.outcome is None:
            if self.client.has_data() or detach_proc.wait_readable(
                [self.client.fileno()], 0.0 if user_confirmed else 1.0
            ):
                try:
                    reply = self.client.recv(30.0)
                except (OSError, TimeoutError) as exc:
                    raise OperationFailed(f"lost the rollback watchdog: {exc}") from exc
                if reply is None:
                    raise OperationFailed(
                        "the rollback watchdog went away without a word",
                        hint=f"see its log: {self.files.log}",
                    )
                if "outcome" in reply:
                    self.outcome = Outcome.from_dict(reply)
                continue
            if user_confirmed is not None and user_confirmed(0.2):
                return self.confirm()
        return self.outcome

    def close(self) -> None:
        """Drop the session and reap the watchdog if it has finished."""
        with contextlib.suppress(Exception):
            self.client.close()
        if self.outcome is not None:
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=10)


def pending_state(bridge: str) -> Armed | None:
    """The armed state of BRIDGE when a live watchdog holds it."""
    files = watchdog_files(bridge)
    if not os.path.exists(files.state):
        return None
    try:
        with detach_proc.LineClient(files.socket, timeout=2.0) as client:
            client.send({"op": "status"})
            reply = client.recv(5.0)
    except (OSError, TimeoutError, ValueError):
        return None
    if not reply:
        return None
    try:
        return Armed.load(files.state)
    except (OSError, ValueError, KeyError):
        return None


def stale_state(bridge: str) -> Armed | None:
    """A before-state left by a watchdog that is gone (it never got to roll back)."""
    files = watchdog_files(bridge)
    if not os.path.exists(files.state) or pending_state(bridge) is not None:
        return None
    try:
        return Armed.load(files.state)
    except (OSError, ValueError, KeyError):
        return None


def forget_state(bridge: str) -> None:
    files = watchdog_files(bridge)
    for path in (files.state, files.socket):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def confirm_pending(bridge: str | None = None) -> list[tuple[str, Outcome]]:
    """``ovsbridge confirm``: confirm every waiting setup-bridge (or BRIDGE's)."""
    pattern = os.path.join(run_dir(), f"{bridge or '*'}.sock")
    done: list[tuple[str, Outcome]] = []
    for path in sorted(glob.glob(pattern)):
        name = os.path.basename(path)[: -len(".sock")]
        try:
            with detach_proc.LineClient(path, timeout=2.0) as client:
                client.send({"op": "confirm"})
                while True:
                    reply = client.recv(30.0)
                    if reply is None:
                        break
                    if "outcome" in reply:
                        done.append((name, Outcome.from_dict(reply)))
                        break
                    if not reply.get("ok", True):
                        raise Conflict(
                            f'cannot confirm "{name}" yet: {reply.get("error")}',
                            hint="run 'ovsbridge confirm' again in a moment",
                        )
        except (OSError, TimeoutError, ValueError):
            continue
    if not done:
        where = f' for "{bridge}"' if bridge else ""
        raise NotFound(
            f"no setup-bridge is waiting for confirmation{where}",
            hint="it may have been confirmed already, or rolled back at its timeout",
        )
    return done


# ----- the watchdog process ----------------------------------------------------------------
