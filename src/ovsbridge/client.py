"""The ``ovsbridge`` entry point: a thin client for scripts, the full CLI for everything else.

A script's ``attach``, ``detach`` or ``ps`` (output not a terminal) is handed, argv and all,
to the running daemon, which runs the very same click CLI there with its imports warm and
streams that run's stdout, stderr and exit code back. This module imports only the standard
library (no click, no dataclasses): its start-up is the cost of a call.

Everything else runs the full CLI in this process (``ovsbridge.cli``), which itself still
hands the work to the daemon where it can: a terminal (tables, progress bars), ``--help``,
global options, ``--from-file``, ``--no-daemon`` / ``OVSBRIDGE_NO_DAEMON``, no daemon
running (the full CLI then starts one), a daemon for another netns, OVSDB or Docker, or a
daemon too old to serve a command line.
"""

from __future__ import annotations

import json
import os
import socket
import sys

from ovsbridge.paths import daemon_paths

TYPE_CHECKING = False  # NOTE: not typing's: importing typing costs a tenth of this client
if TYPE_CHECKING:
    from typing import BinaryIO, TextIO

# Commands a daemon may run for a script; the rest always runs here.
SERVED_COMMANDS = frozenset({"attach", "detach", "ps"})
# Arguments that need this process (its terminal, its stdin, its files) or ask not to use a
# daemon: seen anywhere in argv, the full CLI runs here (always safe: it is the same CLI).
LOCAL_ONLY = ("-h", "--help", "--no-daemon", "--from-file")
NO_DAEMON_ENV = "OVSBRIDGE_NO_DAEMON"
# Environment a served command reads as the caller's (test hooks; see cli/engine.py client_env).
FORWARDED_ENV_PREFIX = "OVSBRIDGE_TEST_"
# The environment the docker SDK reads (docker.from_env): a daemon looks guests up in the
# Docker these name, so it serves only callers that name the same one.
DOCKER_ENV = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
DAEMON_STOPPED_HINT = ("what it had half done is rolled back when the daemon starts again (the "
                       "next command starts it); check with 'ovsbridge ps', then run the "
                       "command again")


def docker_endpoint() -> dict[str, str]:
    """This process's Docker, as the docker SDK would find it (unset variables left out)."""
    found = {key: os.environ[key] for key in DOCKER_ENV if os.environ.get(key)}
    if found.get("DOCKER_HOST") in ("unix:///var/run/docker.sock", "unix://var/run/docker.sock"):
        del found["DOCKER_HOST"]  # the default, spelt out
    return found


def no_daemon_env() -> bool:
    """OVSBRIDGE_NO_DAEMON asks for in-process work (1, yes, true, on)."""
    return os.environ.get(NO_DAEMON_ENV, "").strip().lower() in ("1", "yes", "true", "on")


def netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def servable(argv: list[str]) -> bool:
    """Whether a daemon may run ARGV for us (see the module docstring)."""
    if not argv or argv[0] not in SERVED_COMMANDS:
        return False
    if any(arg in LOCAL_ONLY or arg.startswith("--from-file=") for arg in argv):
        return False
    if no_daemon_env():
        return False
    if os.environ.get("_OVSBRIDGE_COMPLETE") or os.path.basename(sys.argv[0]) == "pipework":
        return False
    # NOTE: stdout decides (a terminal gets tables); for these commands stderr's being a
    # terminal changes nothing unless stdout is one too (the bulk progress bar).
    try:
        return not os.isatty(1)
    except OSError:
        return False


def run_served(argv: list[str]) -> int | None:
    """Have the daemon run ARGV; its exit code, or None when it cannot (run it here then).

    Once the daemon took the command it is never sent again: a daemon that dies mid-run is
    exit 1 with what to do next, as in the full CLI.
    """
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            sock.settimeout(5.0)
            sock.connect(daemon_paths().socket)
        except OSError:
            return None  # no daemon (or not ours to use): the full CLI decides
        request = {"op": "cli", "argv": argv, "db": os.environ.get("OVSBRIDGE_DB") or None,
                   "netns": netns_inode(), "docker": docker_endpoint(),
                   "env": {k: v for k, v in os.environ.items()
                           if k.startswith(FORWARDED_ENV_PREFIX)}}
        try:
            sock.settimeout(None)  # the command's own timeouts bound it (DHCP, vswitchd)
            sock.sendall(json.dumps(request).encode() + b"\n")
            return _relay(sock.makefile("rb"), argv[0])
        except OSError:
            return _stopped(argv[0])
    finally:
        sock.close()


def _relay(reader: BinaryIO, command: str) -> int | None:
    """Copy the daemon's stream of stdout/stderr chunks to ours; the exit code at its end."""
    wrote = False
    closed: set[str] = set()
    for line in reader:
        try:
            answer = json.loads(line)
        except ValueError:
            return _stopped(command)
        progress = answer.get("progress")
        if isinstance(progress, dict):
            for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr)):
                text = progress.get(name)
                if isinstance(text, str) and name not in closed:
                    wrote = True
                    try:
                        stream.write(text)
                        stream.flush()
                    except BrokenPipeError:
                        # NOTE: our reader went away (`| head -1`): the daemon still
                        # finishes the command; the exit code still tells how it went
                        closed.add(name)
                        _to_devnull(stream)
            continue
        if answer.get("ok"):
            result = answer.get("result") or {}
            code = result.get("exit") if isinstance(result, dict) else None
            return code if isinstance(code, int) else 1
        error = answer.get("error") or {}
        if not wrote and (error.get("error") == "wrong-daemon"
                          or str(error.get("message", "")).startswith("unknown daemon op")):
            return None  # another netns/OVSDB/Docker, or an older daemon: run it here
        hint = f"; hint: {error['hint']}" if error.get("hint") else ""
        sys.stderr.write(f"error: {error.get('message') or 'the daemon refused'}{hint}\n")
        code = error.get("exit_code")
        return code if isinstance(code, int) else 1
    return _stopped(command)


def _stopped(command: str) -> int:
    sys.stderr.write(f"error: the ovsbridge daemon stopped while running {command!r}; "
                     f"hint: {DAEMON_STOPPED_HINT}\n")
    return 1


def main() -> None:
    argv = sys.argv[1:]
    if servable(argv):
        try:
            code = run_served(argv)
        except KeyboardInterrupt:
            # NOTE: as with the full CLI on the daemon path: the daemon finishes (or rolls
            # back) what it was doing; this process only stops waiting for it
            sys.stderr.write("error: interrupted\n")
            sys.exit(130)
        if code is not None:
            sys.exit(code)
    from ovsbridge.cli import main as cli_main

    cli_main(prog_name="ovsbridge")


def _to_devnull(stream: TextIO) -> None:
    """After a broken pipe on STREAM: what is still buffered (and the interpreter's last
    flush) goes nowhere instead of failing again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


__all__ = ["docker_endpoint", "main", "run_served", "servable"]
