"""Where a command's work runs: in the daemon (warm), or in this process.

``execute(op, payload)`` sends the op to the running daemon when it serves our network
namespace and OVSDB; otherwise (``--no-daemon``, ``OVSBRIDGE_NO_DAEMON=1``, no daemon, or a
daemon for another netns/OVSDB) it runs the same engine code here, and when no daemon was
running it starts one for the calls that follow. This module imports only the standard
library and click-free ovsbridge modules, so the daemon path stays cheap.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ovsbridge.client import no_daemon_env


def _debug(message: str, *args: object) -> None:
    """Log at DEBUG when logging is on (-v); the daemon path never imports logging itself."""
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger(__name__).debug(message, *args)


NETNS_DIR = "/var/run/netns"
Progress = Callable[[dict[str, Any]], None]
# The engine of a command line the daemon runs for a client (ovsbridge.client): run(op,
# payload, on_progress), and the client's forwarded environment. Per thread: the daemon runs
# several clients' command lines at once.
_served = threading.local()


@contextlib.contextmanager
def serving(run: Callable[[str, dict[str, Any], Progress | None], Any],
            env: dict[str, str]) -> Iterator[None]:
    """While a daemon thread runs a client's command line: its ops go straight to RUN (this
    is the daemon), and client_env reads the client's ENV."""
    _served.run, _served.env = run, env
    try:
        yield
    finally:
        del _served.run, _served.env


def client_env(name: str) -> str | None:
    """The caller's environment variable NAME (the client's, for a command line served by
    the daemon; the test hooks are read this way)."""
    env = getattr(_served, "env", None)
    return (env if env is not None else os.environ).get(name) or None


def daemon_disabled(flag: bool) -> bool:
    return flag or no_daemon_env()


def execute(op: str, payload: dict[str, Any], *, db: str | None, no_daemon: bool,
            on_progress: Progress | None = None) -> Any:
    """Run engine op OP with PAYLOAD (see ovsbridge.daemon.engine); its JSON answer."""
    served = getattr(_served, "run", None)
    if served is not None:
        return served(op, payload, on_progress)  # we are the daemon, running a client's CLI
    from ovsbridge.errors import WrongDaemon
    from ovsbridge.system import daemon_client

    start_one = False
    if not daemon_disabled(no_daemon):
        try:
            result = daemon_client.engine(op, payload, db=db, on_progress=on_progress)
            _debug("%s: done by the daemon", op)
            return result
        except daemon_client.DaemonNotRunning:
            start_one = _in_host_netns()
            _debug("%s: no daemon runs; in-process", op)
        except WrongDaemon as exc:
            _debug("%s: in-process (%s)", op, exc.message)
    else:
        _debug("%s: in-process (--no-daemon)", op)
    result = in_process(op, payload, db=db, on_progress=on_progress)
    if start_one:
        # The work is done; if no daemon starts, the next call simply runs in-process again.
        with contextlib.suppress(OSError, ValueError):
            daemon_client.start_background(db=db)
    return result


def in_process(op: str, payload: dict[str, Any], *, db: str | None,
               on_progress: Progress | None = None) -> Any:
    from ovsbridge.cli import setup_logging
    from ovsbridge.daemon import engine
    from ovsbridge.system.backend import RealBackend
    from ovsbridge.system.cleanup_backend import RealCleanupBackend
    from ovsbridge.system.ovs import Ovs

    setup_logging()  # warnings of the in-process work go to stderr, formatted
    ovsdb = Ovs(db=db)
    return engine.run(op, payload, RealBackend(ovsdb), RealCleanupBackend(ovsdb), on_progress)


def _in_host_netns() -> bool:
    """Only a CLI in the host's own netns starts a daemon by itself: one run in another
    namespace (a simulated host, ``ip netns exec``) works in-process."""
    try:
        here = os.stat("/proc/thread-self/ns/net").st_ino
    except OSError:
        return False
    # NOTE: PID 1 may be hidden from us (a sandbox's init); PID 2 is then kthreadd, which
    # always lives in the initial netns.
    for pid in (1, 2):
        try:
            return here == os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            continue
    try:
        names = os.listdir(NETNS_DIR)
    except OSError:
        return True
    for name in names:
        path = os.path.join(NETNS_DIR, name)
        # Symlinks there are other tools' (pipework links /proc/PID/ns/net): not a namespace
        # someone created.
        with contextlib.suppress(OSError):
            if not os.path.islink(path) and os.stat(path).st_ino == here:
                return False
    return True
