"""An undo stack: push the inverse of each step right after it succeeds; unwind in reverse.

Also the test-only hooks: when OVSBRIDGE_TEST_FAIL_AT names a step, that step raises right
after it succeeded (so its undo runs too); OVSBRIDGE_TEST_KILL_AT SIGKILLs the process there
(a crash at exactly that point). Inert unless the variable is set; the CLI
passes it along to the daemon with its request (``fail_at``), so both modes honour it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from ovsbridge.errors import OperationFailed, RollbackIncomplete
from ovsbridge.testhooks import FAIL_AT_ENV, KILL_AT_ENV

__all__ = ["FAIL_AT_ENV", "KILL_AT_ENV", "UndoStack"]

log = logging.getLogger(__name__)


class UndoStack:
    def __init__(self, fail_at: str | None = None, kill_at: str | None = None) -> None:
        self._undo: list[tuple[str, Callable[[], object]]] = []
        self.fail_at = fail_at if fail_at is not None else os.environ.get(FAIL_AT_ENV)
        self.kill_at = kill_at if kill_at is not None else os.environ.get(KILL_AT_ENV)

    def push(self, what: str, undo: Callable[[], object]) -> None:
        self._undo.append((what, undo))

    def step_done(self, step: str) -> None:
        """Mark STEP as done; the test hooks may fail here, or kill the whole process."""
        if self.kill_at == step:
            import signal

            log.warning("test hook: SIGKILL after step %s", step)
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fail_at == step:
            raise OperationFailed(f"injected failure after step {step!r} (test hook)")

    def unwind(self) -> list[str]:
        """Run every undo in reverse; returns the ones that failed."""
        failed = []
        while self._undo:
            what, undo = self._undo.pop()
            try:
                log.debug("undo: %s", what)
                undo()
            except Exception as exc:
                log.warning("undo %s failed: %s", what, exc)
                failed.append(f"{what}: {exc}")
        return failed

    def fail(self, original: BaseException) -> BaseException:
        """Unwind, then return the error to raise (the original, or one naming both)."""
        failed = self.unwind()
        if failed:
            base = original if isinstance(original, Exception) else OperationFailed(str(original))
            return RollbackIncomplete(base, failed)
        return original

    @property
    def pending(self) -> bool:
        """True while there is something to undo."""
        return bool(self._undo)

    def commit(self) -> None:
        self._undo.clear()
