"""Per guest-interface locks: one operation at a time on a guest's IFNAME, across processes.

A lock is an ``flock`` on a small file under ``RUN_DIR/locks`` (named by a hash of the guest
key and ifname), so the daemon's worker threads, an in-process CLI and a cleanup all see the
same lock. The kernel drops a lock when its holder dies, so a SIGKILLed attach never leaves
a lock behind; lock files themselves are tiny and kept.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Iterator

from ovsbridge.errors import Conflict, EnvironmentProblem
from ovsbridge.paths import daemon_paths

log = logging.getLogger(__name__)
LOCK_TIMEOUT = 120.0
_POLL = 0.01


def lock_dir() -> str:
    return os.path.join(daemon_paths().run_dir, "locks")


def lock_path(guest_key: str, ifname: str) -> str:
    digest = hashlib.sha256(f"{guest_key}\0{ifname}".encode()).hexdigest()[:32]
    return os.path.join(lock_dir(), f"{digest}.lock")


def _open(guest_key: str, ifname: str) -> int:
    path = lock_path(guest_key, ifname)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot open the lock file {path}: {exc.strerror}",
                                 hint="run as root, or point OVSBRIDGE_RUN_DIR elsewhere"
                                 ) from exc


@contextlib.contextmanager
def guest_lock(guest_key: str, ifname: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the lock of GUEST_KEY/IFNAME; Conflict if another holder keeps it for TIMEOUT."""
    fd = _open(guest_key, ifname)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                raise Conflict(
                    f"another ovsbridge operation on {guest_key[:12]} {ifname} is still "
                    f"running after {timeout:g} s",
                    hint="wait for it to finish, then run the command again")
            time.sleep(_POLL)
        yield
    finally:
        os.close(fd)


def is_free(guest_key: str, ifname: str) -> bool:
    """True when nobody holds the lock of GUEST_KEY/IFNAME right now."""
    path = lock_path(guest_key, ifname)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True
