"""The one error hierarchy of ovsbridge: every failure a user can see, with its exit code.

Each class carries a one-line message (naming the subject and the place), an optional hint
(the fix), structured fields for --json, and the documented exit code. Adapters translate
library exceptions into these with ``raise ... from exc``; the CLI maps them to output.
"""

from __future__ import annotations

from typing import Any, ClassVar

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_ENVIRONMENT = 5


class OvsbridgeError(Exception):
    """Base of every error ovsbridge reports. ``exit_code`` is part of the CLI contract."""

    exit_code: ClassVar[int] = EXIT_FAILED
    kind: ClassVar[str] = "failed"

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.fields = fields

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "error": self.kind,
            "message": self.message,
            "exit_code": self.exit_code,
        }
        if self.hint:
            data["hint"] = self.hint
        data.update({k: v for k, v in self.fields.items() if v is not None})
        return data


class OperationFailed(OvsbridgeError):
    """A step failed after its input was accepted; what was done has been rolled back."""

    exit_code = EXIT_FAILED
    kind = "failed"


class BadInput(OvsbridgeError):
    """The user asked for something malformed or impossible (exit 2)."""

    exit_code = EXIT_USAGE
    kind = "bad-input"


class NotFound(OvsbridgeError):
    """A named bridge, container, namespace or process does not exist (exit 3)."""

    exit_code = EXIT_NOT_FOUND
    kind = "not-found"


class Conflict(OvsbridgeError):
    """The request clashes with what exists (exit 4)."""

    exit_code = EXIT_CONFLICT
    kind = "conflict"


class EnvironmentProblem(OvsbridgeError):
    """The machine is not ready: not root, OVS or Docker unreachable (exit 5)."""

    exit_code = EXIT_ENVIRONMENT
    kind = "environment"


class RollbackIncomplete(OperationFailed):
    """The operation failed and some undo steps failed too; both are reported."""

    def __init__(self, original: OvsbridgeError | Exception, undo_errors: list[str]) -> None:
        text = original.message if isinstance(original, OvsbridgeError) else str(original)
        super().__init__(
            f"{text} (and rollback left work undone: {'; '.join(undo_errors)})",
            hint="run 'ovsbridge cleanup' to remove what is left",
            undo_errors=undo_errors,
        )
        self.original = original
        if isinstance(original, OvsbridgeError):
            self.exit_code = original.exit_code  # type: ignore[misc]


class WrongDaemon(EnvironmentProblem):
    """The daemon that answered serves another network namespace or OVSDB than the caller's
    (the CLI then does the work itself)."""

    kind = "wrong-daemon"


class VswitchdNotApplied(EnvironmentProblem):
    """OVSDB committed a change but ovs-vswitchd did not apply it in time (exit 5)."""
