"""Private directories of the daemon (run dir, state dir, leases dir), made safely.

A directory is created (0700) only when it is missing. One that exists is used as it is and
its mode is never changed: OVSBRIDGE_RUN_DIR=/tmp must not turn /tmp into 0700 and break the
host. An existing one that is not a directory, not owned by us (root), or writable by group
or others is refused (EnvironmentProblem, exit 5), because whoever can write it could replace
the daemon's socket or lease files.
"""

from __future__ import annotations

import contextlib
import os
import stat

from ovsbridge.errors import EnvironmentProblem

_HINT = "point OVSBRIDGE_RUN_DIR / OVSBRIDGE_STATE_DIR at a directory only root can write"


def ensure_private_dir(path: str, what: str = "directory") -> None:
    """Make PATH (mode 0700, parents 0755) unless it exists; refuse an unsafe existing one."""
    parent = os.path.dirname(os.path.abspath(path))
    if parent and not os.path.isdir(parent):
        try:
            os.makedirs(parent, mode=0o755, exist_ok=True)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot create {parent}: {exc.strerror}",
                                     hint=_HINT) from exc
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        check_private_dir(path, what)
        return
    except OSError as exc:
        raise EnvironmentProblem(f"cannot create the {what} {path}: {exc.strerror}",
                                 hint=_HINT) from exc
    # ours, just made: the umask may have taken bits away, never given any
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    check_private_dir(path, what)


def check_private_dir(path: str, what: str = "directory") -> None:
    """Refuse PATH unless it is a directory owned by us that group and others cannot write."""
    try:
        link = os.lstat(path)
        st = os.stat(path)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot use the {what} {path}: {exc.strerror}",
                                 hint=_HINT) from exc
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (0, os.geteuid()):
        raise EnvironmentProblem(
            f"refusing the {what} {path}: it is a symbolic link owned by uid {link.st_uid}",
            hint=_HINT,
        )
    if not stat.S_ISDIR(st.st_mode):
        raise EnvironmentProblem(f"refusing the {what} {path}: it is not a directory", hint=_HINT)
    if st.st_uid != os.geteuid():
        raise EnvironmentProblem(
            f"refusing the {what} {path}: it belongs to uid {st.st_uid}, not to uid "
            f"{os.geteuid()}",
            hint=_HINT,
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "everyone" if mode & stat.S_IWOTH else "its group"
        raise EnvironmentProblem(
            f"refusing the {what} {path}: {who} can write it (mode {mode:04o}); its mode is "
            "left as it is",
            hint=_HINT,
        )


__all__ = ["check_private_dir", "ensure_private_dir"]
