"""Where the daemon keeps its socket, lock and log (run dir) and its lease state (state dir).

Pure: the paths come from the environment (``OVSBRIDGE_RUN_DIR``, ``OVSBRIDGE_STATE_DIR``) so
tests run a private daemon in temporary directories and never touch the real ones. Nothing
here creates a file; the daemon does that, root-only (directories 0700, files 0600).
"""

from __future__ import annotations

import os

DEFAULT_RUN_DIR = "/run/ovsbridge"
DEFAULT_STATE_DIR = "/var/lib/ovsbridge"


class DaemonPaths:
    """The run and state directories of one daemon (immutable).

    NOTE: a plain class, not a dataclass: the thin client (ovsbridge.client) imports this
    module, and importing dataclasses costs more than the rest of that client together.
    """

    __slots__ = ("run_dir", "state_dir")
    run_dir: str
    state_dir: str

    def __init__(self, run_dir: str, state_dir: str) -> None:
        object.__setattr__(self, "run_dir", run_dir)
        object.__setattr__(self, "state_dir", state_dir)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"DaemonPaths is immutable (tried to set {name})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DaemonPaths):
            return NotImplemented
        return (self.run_dir, self.state_dir) == (other.run_dir, other.state_dir)

    def __hash__(self) -> int:
        return hash((self.run_dir, self.state_dir))

    def __repr__(self) -> str:
        return f"DaemonPaths(run_dir={self.run_dir!r}, state_dir={self.state_dir!r})"

    @property
    def socket(self) -> str:
        return os.path.join(self.run_dir, "daemon.sock")

    @property
    def lock(self) -> str:
        return os.path.join(self.run_dir, "daemon.lock")

    @property
    def log(self) -> str:
        return os.path.join(self.run_dir, "daemon.log")

    @property
    def pid_file(self) -> str:
        return os.path.join(self.run_dir, "daemon.pid")

    @property
    def leases_dir(self) -> str:
        return os.path.join(self.state_dir, "leases")


def daemon_paths(env: dict[str, str] | None = None) -> DaemonPaths:
    """The daemon's directories, from ``OVSBRIDGE_RUN_DIR`` / ``OVSBRIDGE_STATE_DIR``."""
    source = os.environ if env is None else env
    run_dir = source.get("OVSBRIDGE_RUN_DIR") or DEFAULT_RUN_DIR
    state_dir = source.get("OVSBRIDGE_STATE_DIR") or DEFAULT_STATE_DIR
    return DaemonPaths(os.path.abspath(run_dir), os.path.abspath(state_dir))
