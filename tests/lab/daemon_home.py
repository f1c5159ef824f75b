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


def home_processes(home: DaemonHome) -> list[int]:
    """PIDs of every ``ovsbridge daemon run`` started for HOME (its OVSBRIDGE_RUN_DIR is in
    their environment): also one a CLI spawned that has not taken its lock yet."""
    needle = f"OVSBRIDGE_RUN_DIR={home.paths.run_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if b"ovsbridge daemon run" not in cmdline:
                continue
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_started(home: DaemonHome, timeout: float = 15.0) -> None:
    """A daemon that a CLI started in the background may still be coming up: while one of
    HOME's daemon processes lives (or its lock is held) and none answers yet, wait (bounded).

    NOTE: the CLI returns as soon as it spawned the daemon; under load the daemon may not
    even have made its lock file when the test ends (CI once leaked one that way)."""
    import fcntl

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and home.pid() is None:
        if home_processes(home):
            time.sleep(0.05)
            continue
        try:
            fd = os.open(home.paths.lock, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return  # nobody holds it: no daemon is starting
        except OSError:
            pass
        finally:
            os.close(fd)
        time.sleep(0.05)


def stop_home_daemon(home: DaemonHome, release: bool = True) -> None:
    """Stop the daemon of HOME by its PID (after dropping its leases when RELEASE), and check
    it left no socket or lock; a daemon that does not answer is killed and reported."""
    wait_started(home)
    pid = home.pid()
    if pid is not None:
        if release:  # drop what is still held (RELEASE to the server), then stop by PID
            for item in home.leases():
                daemon_client.drop(item["guest"]["key"], item["ifname"], release=True)
        kill_daemon(pid, signal.SIGTERM)
    stray = home.locked_pid()
    if stray is not None and Path(f"/proc/{stray}").exists():
        kill_daemon(stray, signal.SIGKILL)  # ours (its lock is in our dir), not answering
        raise AssertionError(f"daemon {stray} did not answer; killed")
    assert home.pid() is None
    assert not os.path.exists(home.paths.socket) and not os.path.exists(home.paths.lock)
    left = home_processes(home)
    for pid in left:  # ours (started for this home) but never answering: by PID
        kill_daemon(pid, signal.SIGKILL)
    assert not left, f"daemon processes {left} of this home never answered; killed"


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
            stop_home_daemon(home)
            assert home.state_files() == []
        finally:
            shutil.rmtree(base, ignore_errors=True)
