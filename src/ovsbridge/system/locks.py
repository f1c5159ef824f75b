"""Per guest-interface locks: one operation at a time on a guest's IFNAME, across processes.

A lock is an ``flock`` on a small file in ONE directory for the whole machine,
``/run/lock/ovsbridge`` (``OVSBRIDGE_LOCK_DIR`` moves it), named by a hash of the guest key
and ifname, so the daemon's worker threads, an in-process CLI and a cleanup all see the same
lock, whichever daemon directories they use: the locks guard the host's kernel objects.
The kernel drops a lock when its holder dies, so a SIGKILLed attach never leaves
a lock behind.

A holder that ends normally removes the file before it lets go (the directory holds only
the files of running operations, and of killed ones with their notes); whoever takes a
lock checks that the file it locked is still the one at its path, and starts again when
it is not (it locked a removed file), so a removed file never lets two holders in.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Collection, Iterator

from ovsbridge.errors import Conflict, EnvironmentProblem

log = logging.getLogger(__name__)
LOCK_TIMEOUT = 120.0
_POLL = 0.01


DEFAULT_LOCK_DIR = "/run/lock/ovsbridge"
LOCK_DIR_ENV = "OVSBRIDGE_LOCK_DIR"


def lock_dir() -> str:
    return os.path.abspath(os.environ.get(LOCK_DIR_ENV) or DEFAULT_LOCK_DIR)


def lock_path(guest_key: str, ifname: str) -> str:
    digest = hashlib.sha256(f"{guest_key}\0{ifname}".encode()).hexdigest()[:32]
    return os.path.join(lock_dir(), f"{digest}.lock")


def _open(guest_key: str, ifname: str) -> int:
    from ovsbridge.system.files import ensure_private_dir

    path = lock_path(guest_key, ifname)
    # NOTE: lock files are made as root: never in a directory others can write (a symlink
    # planted there would be followed), and an existing directory's mode is left alone
    ensure_private_dir(os.path.dirname(path), "lock directory")
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot open the lock file {path}: {exc.strerror}",
                                 hint=f"run as root, or point {LOCK_DIR_ENV} elsewhere"
                                 ) from exc


def _is_current(fd: int, path: str) -> bool:
    """Is the file FD locks still the one at PATH (not removed by a holder that ended)?"""
    try:
        return os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def guest_lock(guest_key: str, ifname: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the lock of GUEST_KEY/IFNAME; Conflict if another holder keeps it for TIMEOUT."""
    path = lock_path(guest_key, ifname)
    deadline = time.monotonic() + timeout
    fd = _open(guest_key, ifname)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _is_current(fd, path):
                    break
                os.close(fd)  # we locked a file its last holder removed: take the new one
                fd = -1
                fd = _open(guest_key, ifname)
                continue
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                raise Conflict(
                    f"another ovsbridge operation on {guest_key[:12]} {ifname} is still "
                    f"running after {timeout:g} s",
                    hint="wait for it to finish, then run the command again")
            time.sleep(_POLL)
        try:
            yield
        finally:
            # NOTE: a holder that ends (done or rolled back) removes the file and its note,
            # still holding the lock; one that was killed leaves both, for cleanup to find
            # what it was building.
            with contextlib.suppress(OSError):
                os.unlink(path)
    finally:
        if fd >= 0:
            os.close(fd)


def try_hold(guest_key: str, ifname: str) -> int | None:
    """Take the lock of GUEST_KEY/IFNAME if nobody holds it: its fd (close it to release,
    or release() to also remove the file), or None when it is held."""
    path = lock_path(guest_key, ifname)
    while True:
        fd = _open(guest_key, ifname)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        if _is_current(fd, path):
            return fd
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


INTENT_BUILDING = "building"


def note_building(guest_key: str, ifname: str, host_name: str | None) -> None:
    """Record, in the lock file of GUEST_KEY/IFNAME (held by the caller), that HOST_NAME is
    about to be created for it: the one proof of whose an untagged veth is if the attach is
    killed between creating it and tagging it (the kernel takes no ifalias on create).
    None: it is tagged now (its ifalias says whose it is), the note is cleared."""
    fd = os.open(lock_path(guest_key, ifname), os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        os.ftruncate(fd, 0)
        if host_name is not None:
            os.write(fd, f"{INTENT_BUILDING} {host_name} {guest_key} {ifname} "
                         f"{_netns()}\n".encode())
    finally:
        os.close(fd)


def _netns() -> int:
    """The network namespace this thread works in: the lock directory is the machine's, but
    a note speaks of a link in one namespace (a simulated host has its own)."""
    from ovsbridge.client import netns_inode

    return netns_inode()


def _note(text: str, path: str) -> tuple[str, str, str, int] | None:
    """(host_name, guest_key, ifname, netns) of a well-formed note in the file at PATH."""
    words = text.split()
    if len(words) != 5 or words[0] != INTENT_BUILDING or not words[4].isdigit() \
            or lock_path(words[2], words[3]) != path:
        return None
    return words[1], words[2], words[3], int(words[4])


def clear_note(guest_key: str, ifname: str) -> None:
    """Forget the note of GUEST_KEY/IFNAME: remove its file (the caller holds the lock, so
    nobody else can have it; the next holder makes a fresh one)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(lock_path(guest_key, ifname))


def _idle(fd: int, path: str, links: Collection[str] | None) -> bool:
    """Does the lock file at FD (held by us) say nothing that is still needed?"""
    note = _note(os.pread(fd, 512, 0).decode("utf-8", "replace"), path)
    if note is None:
        return True
    return links is not None and note[3] == _netns() and note[0] not in links


def _lock_files() -> list[str]:
    """The paths of every lock file in the lock directory (none when it does not exist)."""
    try:
        names = os.listdir(lock_dir())
    except OSError:
        return []
    return [os.path.join(lock_dir(), n) for n in names if n.endswith(".lock")]


def building_notes() -> dict[str, tuple[str, str]]:
    """HOST_NAME -> (guest_key, ifname) of every note a killed holder left (see
    note_building) in this thread's netns; a note counts only in the lock file of the guest
    interface it names."""
    found: dict[str, tuple[str, str]] = {}
    here = _netns()
    for path in _lock_files():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                text = os.read(fd, 512).decode("utf-8", "replace")
            finally:
                os.close(fd)
        except OSError:
            continue
        note = _note(text, path)
        if note is not None and note[3] == here:
            found[note[0]] = (note[1], note[2])
    return found


def sweep_idle(links: Collection[str] | None = None) -> int:
    """Remove the lock files nobody holds that carry no note of use: none (what killed
    holders left once their work was tagged), none well-formed, or, given the links of this
    netns, one naming a link of this netns that is gone (a note proves whose a link is only
    while the link exists); notes about another netns are that netns's to judge. The number
    removed."""
    removed = 0
    for path in _lock_files():
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _is_current(fd, path) and _idle(fd, path, links):
                os.unlink(path)
                removed += 1
        except OSError:
            continue  # held: in use
        finally:
            os.close(fd)
    return removed
