"""The other tools ovsbridge is compared with, run for real: pipework and ovs-docker.

pipework is the unchanged script from jpetazzo/pipework (see ../shared/peers/pipework/SOURCE.md
next to the project); ovs-docker is Debian's /usr/bin/ovs-docker. Tests that need one skip
with the reason when it is absent. Both talk to the Docker that DOCKER_HOST names.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
_CANDIDATES = (
    _ROOT.parent / "shared" / "peers" / "pipework" / "pipework",
    _ROOT.parent.parent / "shared" / "peers" / "pipework" / "pipework",
)


def pipework_path() -> Path | None:
    """The real pipework script: $OVSBRIDGE_PIPEWORK, else ../shared/peers/pipework/pipework."""
    env = os.environ.get("OVSBRIDGE_PIPEWORK")
    for path in ([Path(env)] if env else []) + list(_CANDIDATES):
        if path.is_file():
            return path
    return None


def need_pipework() -> Path:
    path = pipework_path()
    if path is None:
        pytest.skip("the real pipework script is absent (../shared/peers/pipework/pipework; "
                    "or set OVSBRIDGE_PIPEWORK)")
    return path


def need_ovs_docker() -> str:
    path = shutil.which("ovs-docker")
    if path is None:
        pytest.skip("ovs-docker is not installed (Debian: openvswitch-common's ovs-docker)")
    return path


def pipework(*argv: str, path_prefix: str | None = None, path: str | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real pipework script under dash (its #!/bin/sh) with ARGV; PATH_PREFIX goes
    before $PATH, PATH replaces it."""
    env = dict(os.environ)
    if path_prefix:
        env["PATH"] = f"{path_prefix}:{env.get('PATH', '')}"
    if path:
        env["PATH"] = path
    before = _netns_links()
    try:
        return subprocess.run(["/bin/sh", str(need_pipework()), *argv], capture_output=True,
                              text=True, timeout=timeout, env=env, check=False)
    finally:
        # NOTE: pipework links /var/run/netns/PID to the guest's /proc/PID/ns/net and leaves
        # the link behind: remove the ones this call made (symlinks named by a pid only).
        for name in _netns_links() - before:
            link = Path("/var/run/netns") / name
            if name.isdigit() and os.readlink(link) == f"/proc/{name}/ns/net":
                link.unlink()


def _netns_links() -> set[str]:
    try:
        return {p.name for p in Path("/var/run/netns").iterdir() if p.is_symlink()}
    except FileNotFoundError:
        return set()


def ovs_docker(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need_ovs_docker(), *argv], capture_output=True, text=True,
                          timeout=120, check=False)


@contextlib.contextmanager
def netns_holder(pid: int) -> Iterator[subprocess.Popen[bytes]]:
    """A process that holds the netns of PID (``nsenter --net=/proc/PID/ns/net sleep``), so
    the netns outlives the container; stopped by its own PID afterwards."""
    want = os.stat(f"/proc/{pid}/ns/net").st_ino
    holder = subprocess.Popen(["nsenter", f"--net=/proc/{pid}/ns/net", "sleep", "600"])
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{holder.pid}/ns/net").st_ino == want:
                    break
            if time.monotonic() > deadline:
                raise AssertionError("the netns holder never entered the netns")
            time.sleep(0.01)
        yield holder
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def ip_in(pid: int, *argv: str) -> str:
    """iproute2 inside the netns of PID (the host's ip, not the container's busybox)."""
    return subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", *argv],
                          capture_output=True, text=True, check=True, timeout=30).stdout


def run_ok(argv: Sequence[str]) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr}"
    return proc.stdout
