"""A private ovsbridge daemon home per test: its own run and state dirs, stopped by PID.

The ``home`` fixture points OVSBRIDGE_RUN_DIR / OVSBRIDGE_STATE_DIR at a fresh temporary
directory (so the CLI and any daemon it starts never touch /run/ovsbridge), and at teardown
drops what is still held (DHCPRELEASE), stops the daemon by its PID and checks that no
daemon, socket, lock or state file is left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ovsbridge.paths import DaemonPaths
from ovsbridge.system import daemon_client


@dataclass
class DaemonHome:
    paths: DaemonPaths

    def pid(self) -> int | None:
        info = daemon_client.ping(self.paths)
        return int(info["pid"]) if info else None

    def locked_pid(self) -> int | None:
        """The PID the running daemon wrote into its lock file (even if it does not answer)."""
        try:
            text = Path(self.paths.lock).read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def status(self) -> dict:
        return daemon_client.request("status", where=self.paths)

    def leases(self) -> list[dict]:
        return self.status()["leases"]

    def state_files(self) -> list[str]:
        try:
            return sorted(os.listdir(self.paths.leases_dir))
        except FileNotFoundError:
            return []

    def log(self) -> str:
        try:
            return Path(self.paths.log).read_text(errors="replace")
        except FileNotFoundError:
            return ""


def _wait_pid_gone(pid: int, timeout: float = 15.0) -> None:
    proc = daemon_client._spawned.pop(pid, None)
    if proc is not None:
        proc.wait(timeout)
        return
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def kill_daemon(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    _wait_pid_gone(pid)


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[DaemonHome]:
    base = tempfile.mkdtemp(prefix="obtd")  # short path: AF_UNIX names are <= 108 bytes
    paths = DaemonPaths(os.path.join(base, "run"), os.path.join(base, "state"))
    monkeypatch.setenv("OVSBRIDGE_RUN_DIR", paths.run_dir)
    monkeypatch.setenv("OVSBRIDGE_STATE_DIR", paths.state_dir)
    home = DaemonHome(paths)
    try:
        yield home
    finally:
        try:
            pid = home.pid()
            if pid is not None:
                # drop what is still held (RELEASE to the server), then stop by PID
                for item in home.leases():
                    daemon_client.drop(item["guest"]["key"], item["ifname"], release=True)
                kill_daemon(pid, signal.SIGTERM)
            stray = home.locked_pid()
            if stray is not None and Path(f"/proc/{stray}").exists():
                kill_daemon(stray, signal.SIGKILL)  # ours (its lock is in our dir), not answering
                raise AssertionError(f"daemon {stray} did not answer; killed")
            assert home.pid() is None
            assert not os.path.exists(paths.socket) and not os.path.exists(paths.lock)
            assert home.state_files() == []
        finally:
            shutil.rmtree(base, ignore_errors=True)


