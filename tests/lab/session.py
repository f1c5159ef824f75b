"""One pytest session's claim on the lab: the names it issued, the processes it started, and
the end-of-session leak check.

Several pytest sessions may share one machine (developers, CI workers). Each session writes
the names it issues to ``/run/ovsbridge-test/PID.names`` and labels its containers with its
id, so the leak check blames a session only for what it made, never for another live
session's resources in flight. On a fresh CI machine nothing else runs, and the check covers
everything that looks like ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path

from lab import LEAK_PREFIXES, NAME_PREFIX, SESSION_LABEL, TEST_LABEL
from lab.shell import run
from lab.snapshots import all_netns, ovs_bridges, ovs_port_records, root_link_details

REGISTRY_DIR = Path("/run/ovsbridge-test")
LEAKCHECK_ENV = "OVSBRIDGE_TEST_LEAKCHECK"
# Every process this session starts inherits this variable (pytest sets it in its own
# environment), so a daemon a test left running is found even after it detached.
SESSION_ENV = "OVSBRIDGE_TEST_SESSION"
PRODUCT_PREFIXES = ("ovb", "ovp")
IFNAMSIZ_MAX = 15


@dataclass(frozen=True)
class Process:
    """A process the harness started: its PID and start time (guards against PID reuse)."""

    pid: int
    start_time: str
    argv0: str

    @classmethod
    def of(cls, pid: int, argv0: str) -> Process:
        return cls(pid, _start_time(pid) or "", argv0)

    def alive(self) -> bool:
        return bool(self.start_time) and _start_time(self.pid) == self.start_time


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # NOTE: the command name (field 2) may hold spaces; fields after the last ")" are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return fields[19]


@dataclass
class Session:
    """The names and processes of this pytest session, shared through the registry dir."""

    id: str = field(default_factory=lambda: str(os.getpid()))
    issued: set[str] = field(default_factory=set)
    processes: list[Process] = field(default_factory=list)
    containers: set[str] = field(default_factory=set)
    marker: str = field(default_factory=lambda: f"{os.getpid()}-{secrets.token_hex(4)}")

    @property
    def registry(self) -> Path:
        return REGISTRY_DIR / f"{self.id}.names"

    def open(self) -> None:
        REGISTRY_DIR.mkdir(parents=True, exist_ok=True)
        for path in REGISTRY_DIR.glob("*.names"):
            if not Path(f"/proc/{path.stem}").exists():
                path.unlink(missing_ok=True)  # a session that died without closing
        self.registry.touch()
        os.environ[SESSION_ENV] = self.marker

    def close(self) -> None:
        self.registry.unlink(missing_ok=True)
        os.environ.pop(SESSION_ENV, None)

    def descendants(self, own_daemon: bool = True) -> dict[int, str]:
        """Live processes (other than pytest itself) carrying this session's marker; without
        the session's own ovsbridge daemon unless OWN_DAEMON."""
        needle = f"{SESSION_ENV}={self.marker}".encode()
        found: dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
                if needle not in environ.split(b"\0") or _start_time(int(entry.name)) is None:
                    continue
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
            except OSError:
                continue
            found[int(entry.name)] = cmdline.decode(errors="replace")[:120]
        if not own_daemon:
            home = os.environ.get("OVSBRIDGE_RUN_DIR")
            found = {pid: cmd for pid, cmd in found.items()
                     if not _session_daemon(pid, cmd, home)}
        return found

    def stop_descendants(self, own_daemon: bool = True) -> None:
        """Stop, by PID, every process this session started and left running (but the
        session's own daemon, which the session stops itself, unless OWN_DAEMON)."""
        for pid in self.descendants(own_daemon):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def name(self, tag: str = "") -> str:
        """A fresh name: ``obt`` + TAG[:3] + 6 random hex digits (at most 12 characters)."""
        while True:
            candidate = f"{NAME_PREFIX}{tag[:3]}{secrets.token_hex(3)}"
            if candidate not in self.issued:
                break
        assert len(candidate) <= IFNAMSIZ_MAX
        self.claim(candidate)
        return candidate

    def claim(self, name: str) -> None:
        """Record NAME as made by this session (for names the caller chose)."""
        self.issued.add(name)
        with self.registry.open("a") as fh:
            fh.write(name + "\n")

    def started(self, pid: int, argv0: str) -> None:
        self.processes.append(Process.of(pid, argv0))

    def others(self) -> tuple[set[str], set[str]]:
        """Session ids and names claimed by the other live sessions on this machine."""
        sessions: set[str] = set()
        names: set[str] = set()
        for path in REGISTRY_DIR.glob("*.names"):
            sid = path.stem
            if sid == self.id or not sid.isdigit() or not Path(f"/proc/{sid}").exists():
                continue
            sessions.add(sid)
            with contextlib.suppress(OSError):
                names.update(path.read_text().split())
        return sessions, names


@dataclass(frozen=True)
class Inventory:
    """Everything on the machine that looks like ours, at one moment."""

    links: frozenset[str]
    bridges: frozenset[str]
    ports: frozenset[str]
    containers: frozenset[str]
    netns: frozenset[str]

    @classmethod
    def take(cls) -> Inventory:
        return cls(
            links=frozenset(n for n in root_link_details() if _ours(n)),
            bridges=frozenset(n for n in ovs_bridges() if _ours(n)),
            ports=frozenset(n for n in ovs_port_records() if _ours(n)),
            containers=frozenset(c["id"] for c in labelled_containers()),
            netns=frozenset(n for n in all_netns() if _ours(n)),
        )


def _ours(name: str) -> bool:
    return name.startswith(LEAK_PREFIXES)


def labelled_containers() -> list[dict[str, str]]:
    """Containers (running or not) carrying the test label: id, name, session."""
    out = run(
        [
            "docker",
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            f"label={TEST_LABEL}=1",
            "--format",
            "{{json .}}",
        ],
        timeout=60,
    ).stdout
    containers = []
    for line in out.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        labels = dict(
            item.split("=", 1) for item in row.get("Labels", "").split(",") if "=" in item
        )
        containers.append(
            {"id": row["ID"], "name": row["Names"], "session": labels.get(SESSION_LABEL, "")}
        )
    return containers


def leakcheck_mode() -> str:
    """``session`` (the default) or ``global``, from env OVSBRIDGE_TEST_LEAKCHECK."""
    mode = os.environ.get(LEAKCHECK_ENV) or "session"
    if mode not in ("session", "global"):
        raise ValueError(f"{LEAKCHECK_ENV} must be session or global, not {mode!r}")
    return mode


def find_leaks(session: Session, baseline: Inventory, mode: str | None = None) -> list[str]:
    """What was left behind: one line per leaked resource (empty when clean).

    Candidates look like ours and were not there when the session began. MODE (default:
    env ``OVSBRIDGE_TEST_LEAKCHECK``, else ``session``) picks whom to blame:

    - ``session``: only what this session provably made: names it issued, containers with its
      label, ports whose external_ids name one of its containers or names, processes it
      started, and product veth ends (ovb*/ovp*) with no peer in another namespace. Safe on a
      machine shared with other sessions and people.
    - ``global``: everything that looks like ours, except what another live test session
      claimed. For an exclusive lab machine (CI).
    """
    mode = mode or leakcheck_mode()
    other_sessions, other_names = session.others()
    mine = session.issued

    def blamed(name: str) -> bool:
        if name in mine:
            return True
        return mode == "global" and _ours(name) and name not in other_names

    leaks: list[str] = []
    containers = labelled_containers()
    for c in containers:
        if c["id"] in baseline.containers:
            continue
        if c["session"] == session.id or (mode == "global" and c["session"] not in other_sessions):
            leaks.append(f"container {c['name']} ({c['id'][:12]}) with label {TEST_LABEL}=1")
    ours_ids = session.containers | {c["id"] for c in containers if c["session"] == session.id}

    for name in sorted(all_netns()):
        if name not in baseline.netns and blamed(name):
            leaks.append(f"network namespace {name}")

    for name in sorted(ovs_bridges()):
        if name not in baseline.bridges and blamed(name):
            leaks.append(f"OVS bridge {name}")

    leaked_ports = set()
    for name, record in sorted(ovs_port_records().items()):
        if name in baseline.ports or record["bridge"] in other_names:
            continue
        values = {str(v) for v in record["external_ids"].values() if v}
        refers_to_us = any(
            v in mine or any(cid.startswith(v) for cid in ours_ids if len(v) >= 12) for v in values
        )
        if blamed(name) or refers_to_us:
            leaked_ports.add(name)
            leaks.append(f"OVS port {name} on bridge {record['bridge']}")

    for name, info in sorted(root_link_details().items()):
        if name in baseline.links or not _ours(name) or name in other_names:
            continue
        orphan = (
            info["kind"] == "veth"
            and info["peer_netnsid"] is None
            and name.startswith(PRODUCT_PREFIXES)
        )
        if (
            name in mine
            or name in leaked_ports
            or orphan
            or (blamed(name) and info["peer_netnsid"] is None)
        ):
            leaks.append(f"interface {name} ({info['kind'] or 'device'}) in the root netns")

    reported = set()
    for proc in session.processes:
        if proc.alive():
            reported.add(proc.pid)
            leaks.append(f"process {proc.argv0} (pid {proc.pid}) started by the harness")
    home = os.environ.get("OVSBRIDGE_RUN_DIR")
    for pid, cmdline in sorted(session.descendants().items()):
        if pid not in reported and not _session_daemon(pid, cmdline, home):
            where = _run_dir(pid) if "ovsbridge daemon run" in cmdline else None
            leaks.append(f"process {cmdline!r} (pid {pid}) started during the session"
                         + (f" (its OVSBRIDGE_RUN_DIR: {where})" if where else ""))
    return leaks


def _run_dir(pid: int) -> str | None:
    """The OVSBRIDGE_RUN_DIR a daemon was started with (to tell which test left it)."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"OVSBRIDGE_RUN_DIR="):
            return item.split(b"=", 1)[1].decode(errors="replace")
    return None


def _session_daemon(pid: int, cmdline: str, home: str | None) -> bool:
    """The session's own ovsbridge daemon (the CLI starts one in the session's private run
    dir; the session stops it at its end, before its own leak check): not a leak mid-run."""
    if not home or "ovsbridge daemon run" not in cmdline:
        return False
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"OVSBRIDGE_RUN_DIR={home}".encode() in env
