"""Run a function inside another network namespace from a short-lived thread.

setns(CLONE_NEWNET) is per thread: a fresh thread enters the guest's netns, runs the function
(sockets it makes stay in that netns), goes back home and ends. The calling process never
changes namespace. Shared by every adapter that works inside a guest (netns, dhcp).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

from ovsbridge.errors import (
    GuestGone,
    OperationFailed,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
_CLONE_NEWNET: Final = 0x40000000




@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _enter_netns(netns_path: str, netns_inode: int | None) -> None:
    """Move the calling thread into the netns at NETNS_PATH (checking its inode if given)."""
    try:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise GuestGone(f"network namespace {netns_path} is gone") from exc
    except OSError as exc:
        if exc.errno in (errno.ESRCH, errno.ENOENT):
            raise GuestGone(f"network namespace {netns_path} is gone") from exc
        raise OperationFailed(
            f"cannot open network namespace {netns_path}: {exc.strerror}"
        ) from exc
    try:
        if netns_inode is not None and os.fstat(fd).st_ino != netns_inode:
            raise GuestGone(
                f"network namespace {netns_path} is not the guest's any more "
                f"(inode {os.fstat(fd).st_ino}, expected {netns_inode})"
            )
        if _libc().setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OperationFailed(f"setns({netns_path}) failed: {os.strerror(err)}")
    finally:
        os.close(fd)


def _leave_netns(home: int) -> None:
    try:
        if _libc().setns(home, _CLONE_NEWNET) != 0:
            log.warning("setns back failed: %s", os.strerror(ctypes.get_errno()))
    finally:
        os.close(home)


def _netns_thread(
    netns_path: str,
    netns_inode: int | None,
    fn: Callable[[], T],
    done: Callable[[T | None, BaseException | None], None],
) -> threading.Thread:
    # NOTE: a fresh thread per call, never a pool: the thread stays in the guest's netns after
    # setns(), and dies right after FN, so it cannot leak into other work or pin the netns.
    def target() -> None:
        # NOTE: the thread goes back to where it came from before it ends: an OS thread
        # outlives its Python part for a moment, and must not hold the guest's netns then.
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _enter_netns(netns_path, netns_inode)
            result = fn()
        except BaseException as exc:  # handed to the caller
            _leave_netns(home)
            done(None, exc)
        else:
            _leave_netns(home)
            done(result, None)

    thread = threading.Thread(target=target, name=f"netns {netns_path}", daemon=True)
    thread.start()
    return thread


def run_in_netns(netns_path: str, fn: Callable[[], T], netns_inode: int | None = None) -> T:
    """Run FN in a short-lived thread inside the netns; return its result or raise its error."""
    box: list[Any] = []
    thread = _netns_thread(netns_path, netns_inode, fn, lambda r, e: box.append((r, e)))
    thread.join()
    result, exc = box[0]
    if exc is not None:
        raise exc
    return result  # type: ignore[no-any-return]


async def arun_in_netns(netns_path: str, fn: Callable[[], T], netns_inode: int | None = None) -> T:
    """Like run_in_netns, awaited without blocking the event loop.

    If the awaiting task is cancelled, a result that has ``close()`` (sockets) is closed, so
    a cancelled exchange never leaves a socket pinning the guest's netns.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, exc: BaseException | None) -> None:
        if future.cancelled():
            _close_quietly(result)
        elif exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def done(result: T | None, exc: BaseException | None) -> None:
        try:
            loop.call_soon_threadsafe(settle, result, exc)
        except RuntimeError:  # loop closed meanwhile
            _close_quietly(result)

    _netns_thread(netns_path, netns_inode, fn, done)
    return await future


def _close_quietly(obj: Any) -> None:
    close = getattr(obj, "close", None)
    if callable(close):
        with contextlib.suppress(OSError):
            close()


def guest_index(ipr: Any, ifname: str) -> int:
    """IFNAME's ifindex through IPR (a netlink socket in the guest's netns); GuestGone when
    the guest has no such interface (any more)."""
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise GuestGone(f"interface {ifname} does not exist in the guest's netns")
    return int(found[0])
