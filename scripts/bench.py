#!/usr/bin/env python3
"""Benchmark: ovsbridge against ovs-docker, pipework, the blog post's loop and udhcpc, in one run.

    sudo .venv/bin/python scripts/bench.py [--quick] [--json FILE] [--only ROW,...]

Builds its own lab (OVS bridges with the netdev datapath on the host's Open vSwitch, --net=none
containers of the test image, a dnsmasq "LAN router" netns, a private ovsbridge daemon, a
scratch Open vSwitch for the cleanup row), runs every tool interleaved (round robin: A, B, C,
A, B, C, ...), verifies each result (the address is there), prints a table of medians and
ratios (ovsbridge / peer) and writes the figures as JSON. Rows (``--only`` keys):

  single   one static attach, fresh container each sample: ovsbridge with a warm daemon,
           ovsbridge --no-daemon, ``ovs-docker add-port``, the real pipework script
  bulk     N containers in one ``ovsbridge attach BR C1..CN RANGE`` against N ovs-docker calls
  growth   single attach latency with 0 / 100 / 1,000 extra ports on the bridge (device-less:
           ovs-vswitchd retries each on every pass), and a waited ``ovs-vsctl set`` of one key
           for reference (one ovs-vswitchd pass: what every tool that waits pays)
  cleanup  1,000 stale ports: the blog post's loop, word for word, against ``ovsbridge cleanup``
           (on a scratch OVS with the dummy datapath: the loop deletes every veth* port it sees)
  dhcp     from command to address: ``attach BR C dhcp`` against ovs-docker + busybox udhcpc
  label    from ``docker start`` of a labelled container to its address (the daemon's watcher)
           against ``docker start`` + ``ovs-docker add-port``
  cycles   the daemon's RSS and open fds before and after 1,000 attach/detach cycles
  leases   the daemon's RSS holding 100 DHCP leases against one udhcpc process per guest

A row whose feature this ovsbridge lacks prints ``n/a (reason)``. Addresses come only from
198.51.100.0/24 and 203.0.113.0/24 and live only in namespaces made here; the script refuses to
run when the root netns routes into them. Everything it makes (containers, bridges, netns,
daemons, dnsmasq, scratch OVS) is removed at the end, also on errors and Ctrl-C; processes
are stopped by the PID it started. Timings are wall clock from process start to exit.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import ctypes
import functools
import itertools
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
# The real pipework script lives in shared/ beside the repository (../shared/peers/pipework).
PIPEWORK = Path(os.environ.get("OVSBRIDGE_PIPEWORK") or Path(__file__).resolve().parents[2]
                / "shared" / "peers" / "pipework" / "pipework")
IMAGE = os.environ.get("OVSBRIDGE_TEST_IMAGE") or "ovsbridge-test:busybox"
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
BLOG_LOOP = (
    "ovs-vsctl show | grep Interface.*veth | sed 's/\"//g' | "
    "awk '{ cmd= \"ovs-vsctl del-port \"$2 ; system(cmd) }'"
)
STATIC_NET = "198.51.100"  # static rows: .10-.249
DHCP_NET = "203.0.113"  # the DHCP bridge: router .1, pool .10-.250
CLONE_NEWNET = 0x40000000
MAX_FAILURES = 3  # a tool whose samples fail this often stops being sampled
MAIN_PID = os.getpid()
T = TypeVar("T")
ROWS = ("single", "bulk", "growth", "cleanup", "dhcp", "label", "cycles", "leases")


@dataclass(frozen=True)
class Sizes:
    single: int
    bulk: int
    growth_samples: int
    growth_levels: tuple[int, ...]
    cleanup_ports: int
    dhcp: int
    label: int
    cycles: int
    cycle_batch: int
    leases: int
    udhcpc_sampled: int


FULL = Sizes(20, 100, 10, (0, 100, 1000), 1000, 10, 10, 1000, 10, 100, 5)
QUICK = Sizes(5, 20, 3, (0, 20, 100), 100, 3, 3, 100, 10, 20, 2)


# -- figures and the table (pure; tests/unit/test_bench_format.py) ----------------------------


@dataclass
class Measure:
    """One tool's figure in one row: samples, how they combine, or why there is none."""

    row: str
    tool: str
    unit: str = "s"  # s | MB | fds
    how: str = "median"  # median | sum | value
    samples: list[float] = field(default_factory=list)
    skipped: str | None = None
    note: str = ""
    failures: list[str] = field(default_factory=list)  # samples that failed (not counted)

    @property
    def key(self) -> str:
        return f"{self.row}/{self.tool}"

    def figure(self) -> float | None:
        if self.skipped or not self.samples:
            return None
        if self.how == "sum":
            return sum(self.samples)
        if self.how == "value":
            return self.samples[-1]
        return statistics.median(self.samples)


@dataclass(frozen=True)
class Ratio:
    """OURS / PEER, shown on OURS's line as ``0.83x LABEL``; GOAL is the largest ratio wanted."""

    ours: str  # Measure.key
    peer: str
    label: str
    goal: float | None = None
    better: str | None = "faster"  # printed as "(1.2x faster)" when the ratio is below 1


def format_figure(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:.0f} {unit}"


def format_ratio(ratio: float, label: str, better: str | None = "faster") -> str:
    """``0.83x ovs-docker (1.2x faster)``; three significant digits below 0.1."""
    text = f"{ratio:.3g}x {label}" if ratio < 0.1 else f"{ratio:.2f}x {label}"
    if better and 0 < ratio < 1:
        inverse = 1 / ratio
        text += f" ({inverse:.0f}x {better})" if inverse >= 10 else f" ({inverse:.1f}x {better})"
    return text


def ratio_value(measures: dict[str, Measure], ratio: Ratio) -> float | None:
    ours, peer = measures.get(ratio.ours), measures.get(ratio.peer)
    if ours is None or peer is None:
        return None
    a, b = ours.figure(), peer.figure()
    if a is None or b is None or b == 0:
        return None
    return a / b


def ratio_text(measures: dict[str, Measure], ratio: Ratio) -> str:
    value = ratio_value(measures, ratio)
    if value is None:
        return f"vs {ratio.label}: n/a"
    text = format_ratio(value, ratio.label, ratio.better)
    if ratio.goal is not None:
        verdict = "ok" if value <= ratio.goal else "MISSED"
        text += f" [goal <= {ratio.goal:.3g}x: {verdict}]"
    return text


def shorten(text: str, width: int = 90) -> str:
    """TEXT on one line, at most WIDTH characters (the JSON keeps it whole)."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 3].rstrip() + "..."


def count_text(measure: Measure) -> str:
    if measure.skipped or not measure.samples:
        return "-"
    n = len(measure.samples)
    return {"median": f"med of {n}", "sum": f"sum of {n}", "value": "1"}[measure.how]


def render_table(measures: Sequence[Measure], ratios: Sequence[Ratio]) -> str:
    """The plain-text table: one line per measure, its ratios after it, rows separated."""
    by_key = {m.key: m for m in measures}
    lines: list[tuple[str, str, str, str, str]] = [("ROW", "TOOL", "N", "FIGURE", "RATIO")]
    previous_row = None
    for m in measures:
        figure = format_figure(m.figure(), m.unit)
        if m.skipped:
            figure = f"n/a ({shorten(m.skipped)})"
        notes = [ratio_text(by_key, r) for r in ratios if r.ours == m.key]
        if m.note:
            notes.append(m.note)
        if m.failures and not m.skipped:
            notes.append(f"{len(m.failures)} failed sample(s) left out, the first: "
                         f"{shorten(m.failures[0], 120)}")
        row = m.row if m.row != previous_row else ""
        previous_row = m.row
        lines.append((row, m.tool, count_text(m), figure, "; ".join(notes)))
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    out = []
    for i, line in enumerate(lines):
        if i > 1 and line[0]:
            out.append("")
        cells = [cell.ljust(w) for cell, w in zip(line[:4], widths, strict=True)]
        out.append("  ".join([*cells, line[4]]).rstrip())
    return "\n".join(out)


def any_failed(measures: Sequence[Measure]) -> bool:
    """True when a tool failed (not when a feature is missing or a peer is absent)."""
    return any(m.failures or (m.skipped or "").startswith(("failed", "row failed"))
               for m in measures)


def goals_line(measures: Sequence[Measure], ratios: Sequence[Ratio]) -> str:
    """``goals: 5 of 7 met (2 missed, 1 not measured)`` over the ratios that have a goal."""
    by_key = {m.key: m for m in measures}
    judged = [(r, ratio_value(by_key, r)) for r in ratios if r.goal is not None]
    if not judged:
        return "goals: none judged"
    met = sum(1 for r, v in judged if v is not None and r.goal is not None and v <= r.goal)
    unmeasured = sum(1 for _, v in judged if v is None)
    missed = len(judged) - met - unmeasured
    return (f"goals: {met} of {len(judged)} met ({missed} missed"
            + (f", {unmeasured} not measured)" if unmeasured else ")"))


def report_json(measures: Sequence[Measure], ratios: Sequence[Ratio],
                meta: dict[str, Any]) -> dict[str, Any]:
    by_key = {m.key: m for m in measures}
    return {
        "meta": meta,
        "measures": [{**asdict(m), "figure": m.figure()} for m in measures],
        "ratios": [{**asdict(r), "value": ratio_value(by_key, r), "text": ratio_text(by_key, r)}
                   for r in ratios],
    }


# -- processes and small helpers ------------------------------------------------------------


class BenchError(RuntimeError):
    """A step of the benchmark failed (the message names it)."""


def run(argv: Sequence[str], *, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, env=env,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"{' '.join(argv[:6])}: {exc}") from exc
    if check and proc.returncode != 0:
        shown = " ".join(argv[:4]) + (" ..." if len(argv) > 4 else "")
        raise BenchError(f"{shown}: exit {proc.returncode}: {failure(proc)}")
    return proc


def failure(proc: subprocess.CompletedProcess[str]) -> str:
    """Why PROC failed, in one line: its error/failed lines and summary, else its last line."""
    lines = [line.strip() for line in (proc.stdout + "\n" + proc.stderr).splitlines()
             if line.strip()]
    picked = [line for line in lines if line.startswith(("error:", "failed:", "hint:"))][:3]
    summary = [line for line in lines if " failed" in line and line not in picked][-1:]
    return "; ".join(picked + summary) or (lines[-1][:300] if lines else "(no output)")


def timed(argv: Sequence[str], env: dict[str, str] | None = None,
          timeout: float = 300) -> float:
    """Seconds from process start to exit; a failure raises with the tool's stderr."""
    start = time.perf_counter()
    run(argv, env=env, timeout=timeout)
    return time.perf_counter() - start


def vsctl(*args: str, env: dict[str, str] | None = None) -> str:
    return run(["ovs-vsctl", "--timeout=60", *args], env=env).stdout


def ovsbridge_argv() -> list[str]:
    script = Path(sys.executable).with_name("ovsbridge")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ovsbridge"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def stop_popen(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM the process group PROC leads (it was started with its own session), then KILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def stop_pid(pid: int, timeout: float = 10) -> None:
    """Stop PID (one we started or one our private daemon dir names) by signal, then KILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def in_netns(path: str, fn: Callable[[], T]) -> T:
    """Run FN in a short-lived thread inside the netns at PATH (setns is per thread), back
    home before the thread ends. Not pyroute2's netns=: that forks a child process."""
    box: list[tuple[Any, BaseException | None]] = []

    def target() -> None:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc().setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns({path})")
            finally:
                os.close(fd)
            box.append((fn(), None))
        except BaseException as exc:  # handed to the caller
            box.append((None, exc))
        finally:
            _libc().setns(home, CLONE_NEWNET)
            os.close(home)

    thread = threading.Thread(target=target, name=f"netns {path}", daemon=True)
    thread.start()
    thread.join()
    result, exc = box[0]
    if exc is not None:
        raise BenchError(f"in {path}: {exc}") from exc
    return result  # type: ignore[no-any-return]


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def ipv4_of(pid: int, ifname: str) -> list[str]:
    """IPv4 addresses of IFNAME in the netns of PID (empty when it has none, or no IFNAME)."""

    def read() -> list[str]:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            return _ipv4(ipr, ifname)

    return in_netns(f"/proc/{pid}/ns/net", read)


def has_ipv4(pid: int, ifname: str) -> bool:
    return bool(ipv4_of(pid, ifname))


def _ipv4(ipr: Any, ifname: str) -> list[str]:
    index = ipr.link_lookup(ifname=ifname)
    if not index:
        return []
    return [str(a.get("address")) for a in ipr.get_addr(index=index[0], family=socket.AF_INET)]


# -- the lab ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """A bench container: id, name, and the PID of its init (0 while created, not started)."""

    id: str
    name: str
    pid: int


class Bench:
    """The lab of one run: tests/lab's Lab for bridges, netns, veths and processes, plus
    containers, daemons and a scratch OVS of its own; everything undone by ``close()``."""

    def __init__(self, sizes: Sizes) -> None:
        from lab.resources import Lab
        from lab.session import Session

        self.sizes = sizes
        self.session = Session()
        self.session.open()
        self.lab = Lab(self.session)
        self.home = Path(tempfile.mkdtemp(prefix="obtbench"))  # short: AF_UNIX <= 108 bytes
        self.lab.defer(f"remove {self.home}", lambda: shutil.rmtree(self.home, True))
        # NOTE: every CLI and daemon this run starts uses private directories, never
        # /run/ovsbridge: set them process-wide so no call can miss them.
        os.environ["OVSBRIDGE_RUN_DIR"] = str(self.home / "run")
        os.environ["OVSBRIDGE_STATE_DIR"] = str(self.home / "state")
        os.environ["OVSBRIDGE_WATCH"] = "off"
        self.ovsbridge = ovsbridge_argv()
        self.boxes: dict[str, Box] = {}
        self.lab.defer("remove the bench's containers", self._remove_all_boxes)
        self.daemon: subprocess.Popen[bytes] | None = None
        self._address = 0

    def close(self) -> None:
        if os.getpid() != MAIN_PID:
            return  # a forked child never removes the parent's lab
        try:
            self.lab.close()
        finally:
            self.session.close()

    # -- names, addresses --------------------------------------------------------------

    def name(self, tag: str) -> str:
        return str(self.session.name(tag))

    def static_address(self) -> str:
        """The next 198.51.100.10-249/24 (each sample's container is gone before reuse)."""
        self._address = (self._address + 1) % 240
        return f"{STATIC_NET}.{10 + self._address}/24"

    # -- OVS ---------------------------------------------------------------------------

    def bridge(self) -> str:
        return str(self.lab.make_bridge(datapath="netdev"))

    def sweep_ports(self, bridge: str, keep: set[str]) -> None:
        """Delete the ports of our BRIDGE that are not in KEEP (one transaction)."""
        extra = set(vsctl("list-ports", bridge).split()) - keep
        args: list[str] = []
        for port in sorted(extra):
            args += ["--", "--if-exists", "del-port", bridge, port]
        if args:
            vsctl(*args)

    def add_dummy_ports(self, bridge: str, count: int, tag: str) -> list[str]:
        """COUNT ports with no device behind them, in one transaction."""
        prefix = f"obt{tag[:1]}{secrets.token_hex(3)}"
        names = [f"{prefix}{i:04d}" for i in range(count)]
        args: list[str] = []
        for port in names:
            args += ["--", "add-port", bridge, port]
        if args:
            vsctl(*args)
        return names

    # -- containers ----------------------------------------------------------------------

    def boxes_now(self, count: int, labels: Callable[[int], dict[str, str]] | None = None,
                  start: bool = True) -> list[Box]:
        """COUNT fresh --net=none containers, created 4 at a time (started unless START is
        false); LABELS(i) gives the i-th one's labels."""
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            return list(pool.map(lambda i: self._box(labels(i) if labels else {}, start),
                                 range(count)))

    def _box(self, labels: dict[str, str], start: bool) -> Box:
        from lab import SESSION_LABEL, TEST_LABEL

        name = self.name("c")
        argv = ["docker", "run", "-d"] if start else ["docker", "create"]
        argv += ["--name", name, "--network", "none", "--label", f"{TEST_LABEL}=1",
                 "--label", f"{SESSION_LABEL}={self.session.id}"]
        for key, value in labels.items():
            argv += ["--label", f"{key}={value}"]
        proc = run([*argv, IMAGE], check=False, timeout=120)
        cid = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        self.boxes[name] = Box(cid or name, name, 0)
        if proc.returncode != 0:
            raise BenchError(f"docker run {name}: {proc.stderr.strip()}")
        self.session.containers.add(cid)
        box = Box(cid, name, self.pid_of(cid) if start else 0)
        self.boxes[name] = box
        return box

    def pid_of(self, cid: str) -> int:
        pid = int(run(["docker", "inspect", "-f", "{{.State.Pid}}", cid]).stdout.strip())
        if pid <= 0:
            raise BenchError(f"container {cid[:12]} is not running")
        return pid

    def discard(self, *boxes: Box) -> None:
        """Remove BOXES now (their netns, and so every veth end in it, go with them)."""
        for start in range(0, len(boxes), 50):
            chunk = boxes[start:start + 50]
            run(["docker", "rm", "-f", "-v", *[b.id for b in chunk]], check=False, timeout=300)
            for box in chunk:
                self.boxes.pop(box.name, None)

    def _remove_all_boxes(self) -> None:
        self.discard(*self.boxes.values())

    # -- the ovsbridge daemon ----------------------------------------------------------

    def cli(self, *args: str, env: dict[str, str] | None = None,
            check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return run([*self.ovsbridge, *args], env={**os.environ, **(env or {})}, check=check,
                   timeout=timeout)

    def start_daemon(self, run_dir: Path, extra_env: dict[str, str] | None = None,
                     ) -> subprocess.Popen[bytes]:
        """``ovsbridge daemon run`` with private dirs under RUN_DIR; stopped by PID at close."""
        env = {**os.environ, "OVSBRIDGE_RUN_DIR": str(run_dir / "run"),
               "OVSBRIDGE_STATE_DIR": str(run_dir / "state"), **(extra_env or {})}
        run_dir.mkdir(parents=True, exist_ok=True)
        with (run_dir / "daemon.out").open("ab") as log:
            proc = subprocess.Popen([*self.ovsbridge, "daemon", "run"], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, env=env, start_new_session=True)
        self.session.started(proc.pid, "ovsbridge daemon")
        self.lab.defer(f"stop the daemon (pid {proc.pid})", lambda: self._stop_daemon(proc, env))

        def ready() -> bool:
            if proc.poll() is not None:
                raise BenchError(f"the daemon exited: {(run_dir / 'daemon.out').read_text()}")
            return run([*self.ovsbridge, "daemon", "status", "--json"], env=env,
                       check=False).returncode == 0

        if not wait_until(ready, 30, 0.1):
            raise BenchError("the daemon did not answer within 30 s")
        return proc

    def _stop_daemon(self, proc: subprocess.Popen[bytes], env: dict[str, str]) -> None:
        stop_popen(proc, timeout=15)
        # a daemon some CLI call started on its own in this private dir, if any
        lock = Path(env["OVSBRIDGE_RUN_DIR"]) / "daemon.lock"
        with contextlib.suppress(OSError, ValueError):
            stray = int(lock.read_text().strip())
            if stray != proc.pid and alive(stray):
                stop_pid(stray)

    def warm_daemon(self) -> int:
        """The run's daemon (no watcher), started once; its PID."""
        if self.daemon is None:
            self.daemon = self.start_daemon(self.home)
        if self.daemon.poll() is not None:
            raise BenchError("the daemon died")
        return self.daemon.pid

    # -- dnsmasq -----------------------------------------------------------------------

    def dhcp_router(self, bridge: str) -> str:
        """dnsmasq in a router netns on BRIDGE at 203.0.113.1, pool .10-.250; its netns."""
        netns = self.lab.make_netns(self.name("dhc"))
        self.lab.connect_netns(bridge, netns, ifname="lan0")
        run(["ip", "-n", netns, "addr", "add", f"{DHCP_NET}.1/24", "dev", "lan0"])
        work = Path(tempfile.mkdtemp(prefix="obtdhcp", dir=self.home))
        log = work / "dnsmasq.log"
        # NOTE: --no-ping: dnsmasq pings an address before offering it and waits for the
        # answer, seconds that would measure dnsmasq instead of the clients.
        self.lab.spawn(
            netns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
            "--no-resolv", "--no-hosts", "--user=root", "--interface=lan0",
            f"--dhcp-range={DHCP_NET}.10,{DHCP_NET}.250,255.255.255.0,10m",
            "--dhcp-authoritative", "--no-ping", "--dhcp-lease-max=1000",
            f"--dhcp-leasefile={work / 'leases'}", f"--log-facility={log}",
            f"--dhcp-option=3,{DHCP_NET}.1", "--dhcp-option=6",
        )
        if not wait_until(lambda: log.exists() and "DHCP, IP range" in log.read_text(), 15):
            raise BenchError("dnsmasq did not start")
        return str(netns)

    # -- the peers -----------------------------------------------------------------------

    def udhcpc_script(self) -> Path:
        """The script busybox udhcpc runs on a lease: put the address on the interface."""
        path = self.home / "udhcpc.sh"
        if not path.exists():
            path.write_text(
                "#!/bin/sh\n"
                'case "$1" in\n'
                '  bound|renew) ip addr replace "$ip/${mask:-24}" dev "$interface" ;;\n'
                '  deconfig) ip link set "$interface" up ;;\n'
                "esac\nexit 0\n"
            )
            path.chmod(0o755)
        return path


# -- tools: how each one attaches a container, timed -------------------------------------------


@dataclass
class Tool:
    """One way to give a container IFNAME on BRIDGE with ADDRESS; ``attach`` returns seconds."""

    name: str
    attach: Callable[[str, Box, str, str], float]
    skipped: str | None = None
    needs_box: bool = True  # False: a reference figure that attaches nothing


VSWITCHD_PASS = "ovs-vsctl change, waited"


def ovsbridge_tool(bench: Bench, name: str, no_daemon: bool) -> Tool:
    env = {**os.environ, "OVSBRIDGE_NO_DAEMON": "1"} if no_daemon else dict(os.environ)

    def attach(bridge: str, box: Box, ifname: str, address: str) -> float:
        argv = [*bench.ovsbridge, "attach", bridge, box.name, address, "--ifname", ifname]
        return timed(argv, env)

    return Tool(name, attach)


def ovs_docker_tool() -> Tool:
    def attach(bridge: str, box: Box, ifname: str, address: str) -> float:
        argv = ["ovs-docker", "add-port", bridge, ifname, box.id]
        if address != "none":
            argv.append(f"--ipaddress={address}")
        return timed(argv)

    skipped = None if shutil.which("ovs-docker") else "ovs-docker is not installed"
    return Tool("ovs-docker add-port", attach, skipped)


def vswitchd_pass_tool() -> Tool:
    """A reference, not an attach: one ovs-vsctl change that waits for ovs-vswitchd (an
    external_ids key of our own bridge), the least any tool that waits for its port pays."""
    count = itertools.count()

    def attach(bridge: str, box: Box, ifname: str, address: str) -> float:
        return timed(["ovs-vsctl", "set", "Bridge", bridge,
                      f"external_ids:obt-bench-pass={next(count)}"])

    return Tool(VSWITCHD_PASS, attach, needs_box=False)


def pipework_tool() -> Tool:
    def attach(bridge: str, box: Box, ifname: str, address: str) -> float:
        ifname_args = [] if ifname == "eth1" else ["-i", ifname]  # eth1: pipework's default
        return timed([str(PIPEWORK), bridge, *ifname_args, box.name, address])

    skipped = None if os.access(PIPEWORK, os.X_OK) else f"{PIPEWORK} is absent"
    return Tool("pipework", attach, skipped)


def daemon_engine(bench: Bench) -> str | None:
    """None when this ovsbridge serves attach through its daemon, else why not."""
    helps = bench.cli("--help", check=False).stdout + bench.cli("attach", "--help",
                                                               check=False).stdout
    if "--no-daemon" in helps:
        return None
    return "this ovsbridge has no daemon engine (no --no-daemon): attach runs in-process"


def interleave(tools: Sequence[Tool], measures: Sequence[Measure], rounds: int,
               sample: Callable[[Tool], float], warmup: bool = True) -> None:
    """Round robin over TOOLS, ROUNDS times (plus one untimed warm-up round); a tool that
    fails stops being sampled, its measure says why."""
    for m, tool in zip(measures, tools, strict=True):
        if tool.skipped:
            m.skipped = tool.skipped
    for i in range(rounds + (1 if warmup else 0)):
        last: dict[str, float] = {}
        for m, tool in zip(measures, tools, strict=True):
            if m.skipped:
                continue
            try:
                last[m.tool] = sample(tool)
            except BenchError as exc:
                m.failures.append(str(exc)[:500])
                if len(m.failures) >= MAX_FAILURES:
                    m.skipped = f"failed {len(m.failures)} times, the first: {m.failures[0]}"
                continue
            if i > 0 or not warmup:
                m.samples.append(last[m.tool])
        label = "warm-up" if warmup and i == 0 else f"round {i + int(not warmup)}/{rounds}"
        print(f"    {label}: "
              + ", ".join(f"{tool} {format_figure(value, 's')}" for tool, value in last.items()),
              flush=True)


def verify(box: Box, ifname: str, address: str) -> None:
    ip = address.split("/")[0]
    found = ipv4_of(box.pid, ifname)
    if ip not in found:
        raise BenchError(f"{box.name} {ifname}: expected {ip}, found {found or 'nothing'}")


class BoxPool:
    """Containers made before a row's samples start (so ``docker run`` stays out of the
    timed part), each handed out once; the untaken ones are removed by ``close()``."""

    def __init__(self, bench: Bench, count: int, labels: Callable[[int], dict[str, str]]
                 | None = None, start: bool = True) -> None:
        self.bench = bench
        self.boxes = bench.boxes_now(count, labels, start)

    def take(self) -> Box:
        if not self.boxes:
            raise BenchError("the row's container pool is empty")
        return self.boxes.pop(0)

    def close(self) -> None:
        self.bench.discard(*self.boxes)
        self.boxes = []


def pool_size(tools: Sequence[Tool], rounds: int) -> int:
    """Containers a round-robin row needs: one per sample, warm-up included."""
    return (rounds + 1) * sum(1 for t in tools if t.needs_box and not t.skipped)


def static_sample(bench: Bench, bridge: str, keep: set[str], pool: BoxPool,
                  ) -> Callable[[Tool], float]:
    """A sample: a fresh container, attach timed, address verified, container and ports gone."""

    def sample(tool: Tool) -> float:
        if not tool.needs_box:
            return tool.attach(bridge, Box("", "", 0), "", "")
        box = pool.take()
        try:
            address = bench.static_address()
            seconds = tool.attach(bridge, box, "eth1", address)
            verify(box, "eth1", address)
            return seconds
        finally:
            bench.discard(box)
            bench.sweep_ports(bridge, keep)

    return sample


# -- rows ---------------------------------------------------------------------------------------


Row = tuple[list[Measure], list[Ratio]]


def row_single(bench: Bench) -> Row:
    n = bench.sizes.single
    engine_missing = daemon_engine(bench)
    bench.warm_daemon()
    tools = [ovsbridge_tool(bench, "ovsbridge, warm daemon", no_daemon=False),
             ovsbridge_tool(bench, "ovsbridge --no-daemon", no_daemon=True),
             ovs_docker_tool(), pipework_tool(),
             Tool("ovsbridge --version (start-up)",
                  lambda *_: timed([*bench.ovsbridge, "--version"]), needs_box=False)]
    if engine_missing:
        tools[0].skipped = engine_missing
    measures = [Measure("single static attach", t.name) for t in tools]
    measures[4].note = "the CLI's floor: Python and its imports, no work"
    bridge = bench.bridge()
    pool = BoxPool(bench, pool_size(tools, n))
    try:
        interleave(tools, measures, n, static_sample(bench, bridge, set(), pool))
    finally:
        pool.close()
    if engine_missing and not measures[1].skipped:
        measures[1].note = "in-process (the only path of this build)"
    d, nd, od, pw, _ = (m.key for m in measures)
    return measures, [
        Ratio(d, od, "ovs-docker", goal=1.0), Ratio(d, pw, "pipework"),
        Ratio(nd, od, "ovs-docker", goal=4.0), Ratio(nd, pw, "pipework"),
    ]


def row_growth(bench: Bench) -> Row:
    sizes = bench.sizes
    engine_missing = daemon_engine(bench)
    bench.warm_daemon()
    bridge = bench.bridge()
    measures: list[Measure] = []
    ratios: list[Ratio] = []
    dummies: list[str] = []
    try:
        for level in sizes.growth_levels:
            dummies += bench.add_dummy_ports(bridge, level - len(dummies), "g")
            print(f"  {len(dummies)} extra ports on the bridge", flush=True)
            tools = [ovsbridge_tool(bench, "ovsbridge, warm daemon", no_daemon=False),
                     ovsbridge_tool(bench, "ovsbridge --no-daemon", no_daemon=True),
                     ovs_docker_tool(), vswitchd_pass_tool()]
            if engine_missing:
                tools[0].skipped = engine_missing
            level_measures = [Measure(f"growth, {level} ports", t.name) for t in tools]
            pool = BoxPool(bench, pool_size(tools, sizes.growth_samples))
            try:
                interleave(tools, level_measures, sizes.growth_samples,
                           static_sample(bench, bridge, set(dummies), pool))
            finally:
                pool.close()
            measures += level_measures
    finally:
        # NOTE: device-less ports slow every ovs-vsctl on this shared OVS; drop them at once.
        bench.sweep_ports(bridge, set())
    top, base = sizes.growth_levels[-1], sizes.growth_levels[0]
    for tool in ("ovsbridge, warm daemon", "ovsbridge --no-daemon", "ovs-docker add-port",
                 VSWITCHD_PASS):
        ratios.append(Ratio(f"growth, {top} ports/{tool}", f"growth, {base} ports/{tool}",
                            f"at {base} ports", goal=1.2 if tool.startswith("ovsbridge")
                            else None, better=None))
    return measures, ratios


def row_bulk(bench: Bench) -> Row:
    n = bench.sizes.bulk
    bench.warm_daemon()
    ours = Measure(f"bulk, {n} containers", "ovsbridge attach (one command)", how="value")
    peer = Measure(f"bulk, {n} containers", "ovs-docker add-port", how="sum")
    ratios = [Ratio(ours.key, peer.key, f"{n} ovs-docker", goal=0.1)]
    bridge = bench.bridge()
    boxes = bench.boxes_now(n)
    addresses = [f"{STATIC_NET}.{10 + i}/24" for i in range(n)]
    try:
        argv = [*bench.ovsbridge, "attach", bridge, *[b.name for b in boxes],
                f"{STATIC_NET}.10-{10 + n - 1}/24"]
        start = time.perf_counter()
        proc = run(argv, env=dict(os.environ), check=False, timeout=900)
        seconds = time.perf_counter() - start
        if proc.returncode == 2 and len(boxes) > 1:
            ours.skipped = "no bulk attach in this ovsbridge: " + failure(proc)
        elif proc.returncode != 0:
            ours.skipped = f"failed (exit {proc.returncode}): {failure(proc)}"
        else:
            for box, address in zip(boxes, addresses, strict=True):
                verify(box, "eth1", address)
            ours.samples.append(seconds)
            bench.cli("detach", *[b.name for b in boxes], timeout=900)
        bench.sweep_ports(bridge, set())
        if not shutil.which("ovs-docker"):
            peer.skipped = "ovs-docker is not installed"
            return [ours, peer], ratios
        tool = ovs_docker_tool()
        for box, address in zip(boxes, addresses, strict=True):
            peer.samples.append(tool.attach(bridge, box, "eth1", address))
        for box, address in zip(boxes, addresses, strict=True):
            verify(box, "eth1", address)
    finally:
        bench.discard(*boxes)
        bench.sweep_ports(bridge, set())
    return [ours, peer], ratios


class ScratchOvs:
    """ovsdb-server + ovs-vswitchd with the dummy datapath in DIR: no kernel device touched."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.dir = Path(tempfile.mkdtemp(prefix="obtovs", dir=bench.home))
        self.env = {**os.environ, "OVS_RUNDIR": str(self.dir), "OVS_LOGDIR": str(self.dir),
                    "OVS_DBDIR": str(self.dir), "LC_ALL": "C"}

    @property
    def db(self) -> str:
        return f"unix:{self.dir / 'db.sock'}"

    def start(self) -> None:
        d = self.dir
        run(["ovsdb-tool", "create", str(d / "conf.db"), OVS_SCHEMA])
        self._spawn(["ovsdb-server", str(d / "conf.db"), f"--remote=punix:{d / 'db.sock'}",
                     f"--pidfile={d / 'ovsdb-server.pid'}", f"--unixctl={d / 'ovsdb-server.ctl'}",
                     f"--log-file={d / 'ovsdb-server.log'}", "-vconsole:off", "--no-chdir"],
                    d / "db.sock")
        self.vsctl("--no-wait", "init")
        self._spawn(["ovs-vswitchd", self.db, "--enable-dummy=override", "--disable-system",
                     f"--pidfile={d / 'ovs-vswitchd.pid'}", f"--unixctl={d / 'ovs-vswitchd.ctl'}",
                     f"--log-file={d / 'ovs-vswitchd.log'}", "-vconsole:off", "--no-chdir"],
                    d / "ovs-vswitchd.ctl")

    def _spawn(self, argv: list[str], ready: Path) -> None:
        proc = self.bench.lab.spawn(None, *argv)
        if not wait_until(lambda: ready.exists() or proc.poll() is not None, 10):
            raise BenchError(f"scratch {argv[0]} did not start")
        if proc.poll() is not None:
            raise BenchError(f"scratch {argv[0]} exited {proc.returncode}")

    def vsctl(self, *args: str) -> str:
        return run(["ovs-vsctl", f"--db={self.db}", "--timeout=60", *args], env=self.env).stdout

    def veth_ports(self, bridge: str) -> list[str]:
        return [p for p in self.vsctl("list-ports", bridge).split() if p.startswith("veth")]

    def stale_ports(self, bridge: str, names: list[str]) -> None:
        for start in range(0, len(names), 250):
            args: list[str] = []
            for port in names[start:start + 250]:
                args += ["--", "add-port", bridge, port]
            self.vsctl(*args)
        if len(self.veth_ports(bridge)) != len(names):
            raise BenchError("the scratch bridge does not hold every stale port")


def stale_names(count: int) -> list[str]:
    """veth + 4 random hex + a counter: named for the blog's loop, absent from the kernel."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        existing = {link.get("ifname") for link in ipr.get_links()}
    while True:
        prefix = "veth" + secrets.token_hex(2)
        names = [f"{prefix}{i:05d}" for i in range(count)]
        if not existing & set(names):
            return names


def row_cleanup(bench: Bench) -> Row:
    n = bench.sizes.cleanup_ports
    row = f"cleanup, {n} stale ports"
    blog = Measure(row, "blog post's loop (one del-port each)", how="value")
    ours = Measure(row, "ovsbridge cleanup", how="value")
    ovs = ScratchOvs(bench)
    ovs.start()
    bridge = "obtbench"
    ovs.vsctl("add-br", bridge)
    names = stale_names(n)
    # NOTE: in-process, as the default path does for an OVSDB no daemon serves; own daemon
    # dirs all the same, so no call can start a daemon for the scratch OVSDB in the run's.
    env = {**ovs.env, "OVSBRIDGE_RUN_DIR": str(ovs.dir / "run"),
           "OVSBRIDGE_STATE_DIR": str(ovs.dir / "state"), "OVSBRIDGE_NO_DAEMON": "1"}
    try:
        ovs.stale_ports(bridge, names)
        blog.samples.append(timed(["bash", "-c", BLOG_LOOP], ovs.env, timeout=1800))
        if ovs.veth_ports(bridge):
            blog.note = f"{len(ovs.veth_ports(bridge))} ports left"
        ovs.stale_ports(bridge, names)
        start = time.perf_counter()
        proc = run([*bench.ovsbridge, "--db", ovs.db, "cleanup", "--bridge", bridge, "--json"],
                   env=env, check=False, timeout=600)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            ours.skipped = f"failed (exit {proc.returncode}): {failure(proc)}"
        else:
            removed = len(json.loads(proc.stdout)["removed"])
            left = len(ovs.veth_ports(bridge))
            ours.samples.append(seconds)
            ours.note = "in-process, start-up included"
            if removed != n or left:
                ours.note += f"; removed {removed}, {left} left"
    finally:
        lock = ovs.dir / "run" / "daemon.lock"
        with contextlib.suppress(OSError, ValueError):
            stop_pid(int(lock.read_text().strip()))  # a daemon that cleanup started, if any
    return [blog, ours], [Ratio(ours.key, blog.key, "blog loop", goal=0.02)]


def row_dhcp(bench: Bench) -> Row:
    n = bench.sizes.dhcp
    bench.warm_daemon()
    bridge = bench.bridge()
    bench.dhcp_router(bridge)
    script = bench.udhcpc_script()
    od = ovs_docker_tool()

    def ours(bridge: str, box: Box, ifname: str, address: str) -> float:
        return timed([*bench.ovsbridge, "attach", bridge, box.name, "dhcp", "--ifname", ifname],
                     dict(os.environ))

    def peer(bridge: str, box: Box, ifname: str, address: str) -> float:
        start = time.perf_counter()
        run(["ovs-docker", "add-port", bridge, ifname, box.id])
        run(["nsenter", f"--net=/proc/{box.pid}/ns/net", "--", "busybox", "udhcpc", "-f",
             "-q", "-n", "-t", "10", "-T", "1", "-i", ifname, "-s", str(script)], timeout=60)
        return time.perf_counter() - start

    tools = [Tool("ovsbridge attach ... dhcp", ours),
             Tool("ovs-docker + busybox udhcpc", peer, od.skipped)]
    measures = [Measure("DHCP, command to address", t.name) for t in tools]

    router_port = set(vsctl("list-ports", bridge).split())
    pool = BoxPool(bench, pool_size(tools, n))

    def sample(tool: Tool) -> float:
        box = pool.take()
        try:
            seconds = tool.attach(bridge, box, "eth1", "dhcp")
            found = ipv4_of(box.pid, "eth1")
            if not any(a.startswith(f"{DHCP_NET}.") for a in found):
                raise BenchError(f"{box.name} has no lease on eth1 ({found})")
            if tool.attach is ours:
                bench.cli("detach", box.name, "--ifname", "eth1")  # releases the lease
            return seconds
        finally:
            bench.discard(box)
            bench.sweep_ports(bridge, router_port)

    try:
        interleave(tools, measures, n, sample)
    finally:
        pool.close()
    return measures, [Ratio(measures[0].key, measures[1].key, "udhcpc")]


def row_label(bench: Bench) -> Row:
    n = bench.sizes.label
    bridge = bench.bridge()
    watch_home = Path(tempfile.mkdtemp(prefix="obtw", dir=bench.home))
    daemon = bench.start_daemon(watch_home, {"OVSBRIDGE_WATCH": "on",
                                             "OVSBRIDGE_WATCH_BRIDGES": bridge})
    import docker

    client = docker.from_env()
    od = ovs_docker_tool()

    def start_pid(box: Box) -> tuple[float, int]:
        start = time.perf_counter()
        run(["docker", "start", box.id])
        pid = int(client.api.inspect_container(box.id)["State"]["Pid"])
        return start, pid

    def ours(bridge: str, box: Box, ifname: str, address: str) -> float:
        start, pid = start_pid(box)
        seconds = wait_for_address(pid, ifname, address.split("/")[0], start, timeout=60)
        if seconds is None:
            raise BenchError(f"the watcher did not attach {box.name} within 60 s")
        return seconds

    def peer(bridge: str, box: Box, ifname: str, address: str) -> float:
        start, _ = start_pid(box)
        run(["ovs-docker", "add-port", bridge, ifname, box.id, f"--ipaddress={address}"])
        return time.perf_counter() - start

    tools = [Tool("ovsbridge labels (watcher)", ours), Tool("docker start + ovs-docker", peer,
                                                            od.skipped)]
    measures = [Measure("label-driven attach, start to address", t.name) for t in tools]

    # created, not started: the labelled ones carry their address from the start
    addresses = [bench.static_address() for _ in range(n + 1)]
    labelled = BoxPool(bench, n + 1, lambda i: {"ovsbridge.bridge": bridge,
                                               "ovsbridge.address": addresses[i]}, start=False)
    address_of = {box.name: address for box, address in zip(labelled.boxes, addresses,
                                                             strict=True)}
    plain = BoxPool(bench, n + 1, start=False)

    def sample(tool: Tool) -> float:
        if tool.attach is ours:
            box = labelled.take()
            address = address_of[box.name]
        else:
            box, address = plain.take(), bench.static_address()
        try:
            seconds = tool.attach(bridge, box, "eth1", address)
            try:
                verify(Box(box.id, box.name, bench.pid_of(box.id)), "eth1", address)
            except BenchError as exc:
                if tool.attach is not ours:
                    raise
                raise BenchError(f"{exc} (after it was there); the watcher's log: "
                                 f"{log_problems(watch_home / 'daemon.out')}") from exc
            return seconds
        finally:
            bench.discard(box)
            bench.sweep_ports(bridge, set())

    try:
        interleave(tools, measures, n, sample)
    finally:
        labelled.close()
        plain.close()
        client.close()
        stop_popen(daemon, timeout=15)
    return measures, [Ratio(measures[0].key, measures[1].key, "docker start + ovs-docker")]


def log_problems(path: Path, count: int = 3) -> str:
    """The last COUNT warning or error lines of a daemon log, joined."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    found = [line for line in lines if " ERROR " in line or " WARNING " in line][-count:]
    return " | ".join(found) or "(no warning or error)"


def wait_for_address(pid: int, ifname: str, ip: str, start: float,
                     timeout: float) -> float | None:
    """Seconds from START until IP is on IFNAME in the netns of PID, polled every 5 ms over
    one netlink socket inside that netns; None after TIMEOUT."""

    def poll() -> float | None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if ip in _ipv4(ipr, ifname):
                    return time.perf_counter() - start
                time.sleep(0.005)
        return None

    return in_netns(f"/proc/{pid}/ns/net", poll)


def row_cycles(bench: Bench) -> Row:
    sizes = bench.sizes
    row = f"daemon after {sizes.cycles} attach/detach cycles"
    before_rss = Measure(row, "RSS before", unit="MB", how="value")
    after_rss = Measure(row, "RSS after", unit="MB", how="value")
    before_fd = Measure(row, "open fds before", unit="fds", how="value")
    after_fd = Measure(row, "open fds after", unit="fds", how="value")
    measures = [before_rss, after_rss, before_fd, after_fd]
    ratios = [Ratio(after_rss.key, before_rss.key, "before", goal=1.05, better=None),
              Ratio(after_fd.key, before_fd.key, "before", goal=1.05, better=None)]
    missing = daemon_engine(bench)
    if missing:
        for m in measures:
            m.skipped = missing
        return measures, ratios
    pid = bench.warm_daemon()
    bridge = bench.bridge()
    batch = sizes.cycle_batch
    boxes = bench.boxes_now(batch)
    names = [b.name for b in boxes]
    span = f"{STATIC_NET}.150-{150 + batch - 1}/24"
    bulk = bench.cli("attach", bridge, *names, span, check=False).returncode == 0
    if bulk:
        bench.cli("detach", *names)
    else:
        names = names[:1]
        span = f"{STATIC_NET}.150/24"
    per_cycle = len(names)

    failures: list[str] = []

    def cycle() -> None:
        # NOTE: a failed attach is counted, not fatal: the figures after it still tell
        # whether the daemon leaks; the detach runs either way.
        try:
            bench.cli("attach", bridge, *names, span)
        except BenchError as exc:
            failures.append(str(exc))
        bench.cli("detach", *names)

    try:
        for _ in range(max(1, 20 // per_cycle)):  # warm-up: lazy imports, caches
            cycle()
        before_rss.samples.append(rss_mb(pid))
        before_fd.samples.append(fd_count(pid))
        rounds = max(1, sizes.cycles // per_cycle)
        for i in range(rounds):
            cycle()
            if (i + 1) % max(1, rounds // 5) == 0:
                print(f"    {(i + 1) * per_cycle} cycles, RSS {rss_mb(pid):.1f} MB, "
                      f"{fd_count(pid)} fds", flush=True)
        after_rss.samples.append(rss_mb(pid))
        after_fd.samples.append(fd_count(pid))
        after_rss.note = (f"{per_cycle} guests per command" if bulk
                          else "one guest per command")
        if failures:
            after_fd.note = (f"{len(failures)} attach commands failed, the first: "
                             f"{shorten(failures[0], 200)}")
    finally:
        bench.discard(*boxes)
        bench.sweep_ports(bridge, set())
    return measures, ratios


def row_leases(bench: Bench) -> Row:
    sizes = bench.sizes
    n, k = sizes.leases, sizes.udhcpc_sampled
    row = f"memory, {n} DHCP leases"
    idle = Measure(row, "ovsbridge daemon, no lease yet", unit="MB", how="value")
    held = Measure(row, f"ovsbridge daemon, {n} leases", unit="MB", how="value")
    peer = Measure(row, f"{n} x busybox udhcpc", unit="MB", how="value")
    measures = [idle, held, peer]
    ratios = [Ratio(held.key, peer.key, f"{n} udhcpc", better="less")]
    pid = bench.warm_daemon()
    bridge = bench.bridge()
    bench.dhcp_router(bridge)
    boxes = bench.boxes_now(n)
    idle.samples.append(rss_mb(pid))
    names = [b.name for b in boxes]
    try:
        proc = bench.cli("attach", bridge, *names, "dhcp", check=False, timeout=1800)
        if proc.returncode == 2:  # no bulk attach: one command per guest
            for i, name in enumerate(names):
                bench.cli("attach", bridge, name, "dhcp")
                if (i + 1) % 20 == 0:
                    print(f"    {i + 1}/{n} leases", flush=True)
            held.note = "one attach per guest"
        elif proc.returncode != 0:
            raise BenchError(f"bulk DHCP attach: exit {proc.returncode}: {failure(proc)}")
        status = json.loads(bench.cli("daemon", "status", "--json").stdout)
        count = len(status.get("leases") or [])
        if count < n:
            raise BenchError(f"the daemon holds {count} leases, not {n}")
        time.sleep(1)
        held.samples.append(rss_mb(pid))
        peer.samples.append(udhcpc_rss(bench, bridge, k) * n)
        peer.note = f"RSS of {k} processes, mean x {n}"
        result = bench.cli("detach", *names, check=False, timeout=1800)
        if result.returncode == 2:
            for name in names:
                bench.cli("detach", name)
    finally:
        bench.discard(*boxes)
    return measures, ratios


def udhcpc_rss(bench: Bench, bridge: str, k: int) -> float:
    """Mean RSS (MB) of K busybox udhcpc processes, each holding a lease in its own guest."""
    boxes = bench.boxes_now(k)
    procs = []
    try:
        for box in boxes:
            run(["ovs-docker", "add-port", bridge, "eth1", box.id])
            procs.append(bench.lab.spawn(
                f"/proc/{box.pid}/ns/net", "busybox", "udhcpc", "-f", "-i", "eth1",
                "-s", str(bench.udhcpc_script())))
        for box in boxes:
            if not wait_until(functools.partial(has_ipv4, box.pid, "eth1"), 60, 0.2):
                raise BenchError(f"udhcpc in {box.name} got no lease")
        time.sleep(1)
        return statistics.mean(rss_mb(p.pid) for p in procs)
    finally:
        for proc in procs:
            stop_popen(proc)
        bench.discard(*boxes)


ROW_FUNCS: dict[str, Callable[[Bench], Row]] = {
    "single": row_single, "growth": row_growth, "bulk": row_bulk, "cleanup": row_cleanup,
    "dhcp": row_dhcp, "label": row_label, "cycles": row_cycles, "leases": row_leases,
}


# -- main ---------------------------------------------------------------------------------------


def meta(sizes: Sizes, quick: bool) -> dict[str, Any]:
    def out(*argv: str) -> str:
        with contextlib.suppress(BenchError):
            return run(argv, check=False, timeout=30).stdout.strip().splitlines()[0]
        return ""

    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": quick,
        "sizes": asdict(sizes),
        "cores": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "ovsbridge": out(*ovsbridge_argv(), "--version"),
        "commit": out("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"),
        "ovs": out("ovs-vsctl", "--version"),
        "docker": out("docker", "version", "--format", "{{.Server.Version}}"),
    }


def compile_package() -> None:
    """Byte-compile ovsbridge, as pip does when it installs the wheel: an editable install
    under PYTHONDONTWRITEBYTECODE=1 (this machine's default) would otherwise compile every
    module it imports again on every call, and the bench would time the compiler."""
    import compileall

    import ovsbridge

    compileall.compile_dir(os.path.dirname(ovsbridge.__file__), quiet=1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="ovsbridge against its peers, interleaved in one run (root).")
    parser.add_argument("--quick", action="store_true",
                        help="small N everywhere (checks the script in a few minutes)")
    parser.add_argument("--json", metavar="FILE", help="write every figure as JSON to FILE")
    parser.add_argument("--only", metavar="ROW,...",
                        help=f"run only these rows ({','.join(ROWS)})")
    args = parser.parse_args(argv)
    args.rows = list(ROWS)
    if args.only:
        args.rows = [r.strip() for r in args.only.split(",") if r.strip()]
        unknown = [r for r in args.rows if r not in ROWS]
        if unknown:
            parser.error(f"unknown row {', '.join(unknown)}; rows: {', '.join(ROWS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("error: run as root; hint: sudo .venv/bin/python scripts/bench.py", file=sys.stderr)
        return 5
    sys.path.insert(0, str(ROOT / "tests"))  # the lab harness (guard, Lab, Session)
    from lab.guard import lab_problems

    problems = lab_problems()
    if problems:
        print("error: refusing to run:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        return 5
    sizes = QUICK if args.quick else FULL
    compile_package()
    info = meta(sizes, args.quick)
    measures: list[Measure] = []
    ratios: list[Ratio] = []
    # NOTE: SIGTERM and SIGHUP unwind like Ctrl-C, so the lab is removed either way.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    from lab.session import Inventory, find_leaks

    baseline = Inventory.take()
    bench = Bench(sizes)
    failed = False
    try:
        for key in ROWS:
            if key not in args.rows:
                continue
            print(f"== {key}", flush=True)
            t0 = time.monotonic()
            try:
                row_measures, row_ratios = ROW_FUNCS[key](bench)
            except BenchError as exc:
                failed = True
                print(f"  row {key} failed: {exc}", file=sys.stderr, flush=True)
                for log in (bench.home / "daemon.out", bench.home / "run" / "daemon.log"):
                    if log.exists():
                        print(f"  {log.name}: {log_problems(log, 8)}", file=sys.stderr,
                              flush=True)
                row_measures = [Measure(key, "-", skipped=f"row failed: {str(exc)[:200]}")]
                row_ratios = []
            measures += row_measures
            # NOTE: the goals are for the full sizes; --quick figures only check the script.
            ratios += [replace(r, goal=None) if args.quick else r for r in row_ratios]
            print(f"  ({time.monotonic() - t0:.0f} s)", flush=True)
    except KeyboardInterrupt:
        print("interrupted: removing the lab", file=sys.stderr)
        failed = True
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        try:
            bench.close()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    failed = failed or any_failed(measures)
    leaks = find_leaks(bench.session, baseline, mode="session")
    if leaks:
        failed = True
        print("error: the bench left these behind:\n  - " + "\n  - ".join(leaks), file=sys.stderr)
    info["loadavg_end"] = os.getloadavg()
    print()
    print(render_table(measures, ratios))
    print(goals_line(measures, ratios))
    print(f"\n{info['ovsbridge']} ({info['commit']}), {info['cores']} cores, load "
          f"{info['loadavg_start'][0]:.1f} -> {info['loadavg_end'][0]:.1f}"
          + (", --quick" if args.quick else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(report_json(measures, ratios, info), indent=2)
                                   + "\n")
        print(f"figures written to {args.json}")
    return 1 if failed else 0


def _interrupt(signum: int, frame: object) -> None:
    if os.getpid() != MAIN_PID:  # a forked child (multiprocessing): die as it would have
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
