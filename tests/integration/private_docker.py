"""A private dockerd for lab tests: its own socket, data root, exec root and containerd.

Containers made on it are invisible to every other Docker client on this machine (and to
any ovsbridge watcher following the system dockerd), so tests that kill containers and look
at what they leave behind are not disturbed by other test runs, and disturb none. Started
once per test module, with the test image loaded; stopped by PID and removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lab import TEST_IMAGE

STOP_TIMEOUT = 10.0
# NOTE: dockerd gives each running container its stop timeout (10 s) before it exits;
# killing it sooner orphans containerd's shims and the containers.
DOCKERD_STOP_TIMEOUT = 90.0


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)


def docker(*argv: str, host: str | None = None) -> str:
    full = ["docker"] + (["-H", host] if host else []) + list(argv)
    return subprocess.run(full, check=True, capture_output=True, text=True,
                          timeout=180).stdout.strip()


def inspect(ref: str, host: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(docker("inspect", ref, host=host))[0]
    return data


@dataclass
class PrivateDockerd:
    root: Path
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.root / 'docker.sock'}"

    def start(self) -> None:
        with (self.root / "dockerd.log").open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, \
                (self.root / "dockerd.log").read_text(errors="replace")[-2000:]
            return subprocess.run(["docker", "-H", self.host, "info"], capture_output=True,
                                  check=False).returncode == 0

        wait_for(up, "the private dockerd", 60)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, DOCKERD_STOP_TIMEOUT)
            self.proc = None

    def docker(self, *argv: str) -> str:
        return docker(*argv, host=self.host)


@pytest.fixture(scope="module")
def private_dockerd() -> Iterator[PrivateDockerd]:
    """A dockerd of our own (own socket, data root, exec root and containerd), with the test
    image loaded; stopped by PID and removed after the module."""
    if shutil.which("dockerd") is None:
        pytest.fail("dockerd is not installed")
    root = Path(tempfile.mkdtemp(prefix="obtdk-"))
    (root / "daemon.json").write_text("{}")
    argv = ["dockerd", "-H", f"unix://{root / 'docker.sock'}", "--data-root",
            str(root / "data"), "--exec-root", str(root / "exec"), "--pidfile",
            str(root / "docker.pid"), "--config-file", str(root / "daemon.json"),
            "--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-masq=false",
            "--shutdown-timeout=2"]
    dockerd = PrivateDockerd(root, argv)
    try:
        dockerd.start()
        saved = subprocess.run(["docker", "save", TEST_IMAGE], capture_output=True, check=True)
        subprocess.run(["docker", "-H", dockerd.host, "load"], input=saved.stdout,
                       capture_output=True, check=True)
        yield dockerd
    finally:
        if dockerd.proc is None:
            with contextlib.suppress(Exception):
                dockerd.start()
        if dockerd.proc is not None:
            leftovers = subprocess.run(["docker", "-H", dockerd.host, "ps", "-aq"],
                                       capture_output=True, text=True, check=False).stdout.split()
            if leftovers:
                subprocess.run(["docker", "-H", dockerd.host, "rm", "-f", "-v", *leftovers],
                               capture_output=True, check=False, timeout=120)
        dockerd.stop()
        for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
            target = line.split()[1]
            if target.startswith(str(root)):
                subprocess.run(["umount", "-l", target], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Box:
    id: str
    name: str
    pid: int


@pytest.fixture
def box_maker(private_dockerd: PrivateDockerd, names: Callable[[str], str]
              ) -> Iterator[Callable[..., Box]]:
    """``make(labels=None, restart=None) -> Box``: a --net=none container on the private
    dockerd, removed (docker rm -f) after the test."""
    made: list[str] = []

    def make(labels: dict[str, str] | None = None, restart: str | None = None) -> Box:
        name = names("c")
        argv = ["run", "-d", "--name", name, "--network", "none"]
        if restart:
            argv.append(f"--restart={restart}")
        for key, value in (labels or {}).items():
            argv += ["--label", f"{key}={value}"]
        made.append(name)
        cid = private_dockerd.docker(*argv, TEST_IMAGE)
        return Box(cid, name, int(inspect(cid, private_dockerd.host)["State"]["Pid"]))

    yield make
    if made and private_dockerd.proc is not None:
        subprocess.run(["docker", "-H", private_dockerd.host, "rm", "-f", "-v", *made],
                       capture_output=True, check=False, timeout=120)
