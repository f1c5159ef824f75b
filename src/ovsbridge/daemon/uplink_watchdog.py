"""The rollback watchdog's process (``python -m ovsbridge.daemon.uplink_watchdog STATE``).

What it holds, how the CLI arms and talks to it and how it is confirmed: see
ovsbridge.system.watchdog. This is its main loop: wait for the CLI's word, the confirmation
or the deadline, and roll back with ops/uplink.py's restore when it must.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ovsbridge.system import detach_proc
from ovsbridge.system.watchdog import (
    APPLY_GRACE,
    CONFIRMED,
    ROLLBACK_INCOMPLETE,
    ROLLED_BACK,
    Armed,
    Outcome,
    WatchdogFiles,
    watchdog_files,
)

log = logging.getLogger(__name__)


class _Loop:
    def __init__(
        self, armed: Armed, files: WatchdogFiles, restore: Callable[[Armed], list[str]]
    ) -> None:
        self.armed = armed
        self.files = files
        self.restore = restore
        self.phase = "applying"
        now = time.monotonic()
        left = armed.armed_at + armed.confirm_timeout + APPLY_GRACE - time.time()
        self.deadline = now + max(1.0, left)
        self.session: int | None = None
        self.stop_requested = False

    def roll_back(self, reason: str) -> Outcome:
        log.warning("rolling back %s: %s", self.armed.bridge, reason)
        try:
            problems = self.restore(self.armed)
        except Exception as exc:  # the watchdog must report, not die
            log.exception("rollback failed")
            problems = [f"{type(exc).__name__}: {exc}"]
        if problems:
            log.error("rollback left problems: %s", problems)
            return Outcome(ROLLBACK_INCOMPLETE, reason, tuple(problems))
        log.warning("rolled back %s", self.armed.bridge)
        return Outcome(ROLLED_BACK, reason)

    def run(self, server: detach_proc.LineServer) -> Outcome:
        waiters: set[int] = set()
        while True:
            if self.stop_requested:
                outcome = self.roll_back("the watchdog was stopped (SIGTERM) before a confirmation")
                break
            left = self.deadline - time.monotonic()
            if left <= 0:
                if self.phase == "applying":
                    reason = "setup-bridge did not finish applying in time"
                else:
                    reason = f"no confirmation within {self.armed.confirm_timeout:g} s"
                outcome = self.roll_back(reason)
                break
            outcome_now: Outcome | None = None
            for cid, msg in server.poll(min(left, 0.5)):
                outcome_now = self.handle(server, cid, msg, waiters)
                if outcome_now is not None:
                    break
            if outcome_now is not None:
                outcome = outcome_now
                break
        for cid in {*waiters, *([self.session] if self.session is not None else [])}:
            server.send(cid, outcome.to_dict())
        return outcome

    def handle(
        self,
        server: detach_proc.LineServer,
        cid: int,
        msg: dict[str, Any] | None,
        waiters: set[int],
    ) -> Outcome | None:
        if msg is None:
            waiters.discard(cid)
            if cid == self.session:
                self.session = None
                if self.phase == "applying":
                    return self.roll_back(
                        "setup-bridge stopped before it finished (was it killed?)"
                    )
                log.info("the CLI went away; still waiting for 'ovsbridge confirm'")
            return None
        op = msg.get("op")
        log.info("request: %s", op)
        if op == "session":
            self.session = cid
            server.send(cid, {"ok": True, "pid": os.getpid()})
        elif op == "applied":
            self.phase = "waiting"
            self.deadline = time.monotonic() + self.armed.confirm_timeout
            server.send(cid, {"ok": True, "confirm_timeout": self.armed.confirm_timeout})
        elif op == "confirm":
            if self.phase != "waiting":
                server.send(cid, {"ok": False, "error": "setup-bridge is still applying"})
                return None
            waiters.add(cid)
            log.warning("confirmed %s", self.armed.bridge)
            return Outcome(CONFIRMED, "confirmed")
        elif op == "rollback":
            waiters.add(cid)
            return self.roll_back(str(msg.get("reason") or "asked to roll back"))
        elif op == "update":
            # The CLI learned more the rollback must know (the uplink's DHCP lease it took).
            self.armed = replace(self.armed, dhcp=msg.get("dhcp"))
            self.armed.save(self.files.state)
            server.send(cid, {"ok": True})
        elif op == "status":
            server.send(
                cid,
                {
                    "ok": True,
                    "phase": self.phase,
                    "bridge": self.armed.bridge,
                    "uplink": self.armed.uplink,
                    "pid": os.getpid(),
                    "left": round(self.deadline - time.monotonic(), 1),
                },
            )
        else:
            server.send(cid, {"ok": False, "error": f"unknown op {op!r}"})
        return None


def run(state_path: str) -> int:
    """Main of the detached watchdog process."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s watchdog[%(process)d] %(levelname)s %(message)s",
    )
    armed = Armed.load(state_path)
    files = watchdog_files(armed.bridge)
    from ovsbridge.ops.uplink import restore_armed

    loop = _Loop(armed, files, restore_armed)

    def on_term(*_: object) -> None:
        loop.stop_requested = True

    signal.signal(signal.SIGTERM, on_term)
    server = detach_proc.LineServer(files.socket)
    detach_proc.detach_ready()
    log.info(
        "armed for %s (uplink %s, confirm timeout %g s)",
        armed.bridge,
        armed.uplink,
        armed.confirm_timeout,
    )
    outcome = Outcome(ROLLBACK_INCOMPLETE, "the watchdog failed")
    try:
        outcome = loop.run(server)
    finally:
        # NOTE: after an incomplete rollback the state file stays, so teardown-bridge can
        # finish the job from it.
        if outcome.outcome != ROLLBACK_INCOMPLETE:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(files.state)
        server.close()
    log.info("done: %s (%s)", outcome.outcome, outcome.reason)
    return 0 if outcome.outcome != ROLLBACK_INCOMPLETE else 1


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))
