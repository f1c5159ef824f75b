"""A simulated host for setup-bridge: never this machine's own uplink or root netns.

``SimHost`` builds, with random names (prefix ``obt``):
- an upstream-router netns, the LAN's default gateway (198.51.100.1/24, 2001:db8:1::1/64, and
  203.0.113.1/32 on its loopback as a target for a specific route), optionally running dnsmasq
  as the LAN's DHCP server (lease file, log file, PID tracked, killed by PID);
- a host netns whose ``eth0`` is a veth to the router's ``lan0`` (TX checksum offload off on
  both ends: the userspace datapath breaks UDP, and so DHCP, otherwise);
- a PRIVATE Open vSwitch inside the host netns: its own database file, ovsdb-server
  (``punix:<tmp>/db.sock``) and ovs-vswitchd, with their pid files, control sockets and logs in
  a temporary directory; the machine's own OVS is never used. ``--disable-system`` keeps the
  private ovs-vswitchd away from kernel datapaths.

Everything is removed by ``stop()``: processes by the PIDs started here (and any process left
inside the host or router netns, which this object created), both netns, the temporary
directory. Usable from pytest (context manager, ``simhost`` fixture in the tests) and from a
shell (``python tests/lab/simhost.py up --state FILE`` / ``down --state FILE``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "obt"
SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"

ROUTER_V4 = "198.51.100.1"
ROUTER_V6 = "2001:db8:1::1"
ROUTER_EXTRA_V4 = "203.0.113.1"  # on the router's loopback: target of the specific route
HOST_V4 = ("198.51.100.10/24", "198.51.100.11/24")
HOST_V6 = "2001:db8:1::10/64"
DHCP_RANGE = ("198.51.100.100", "198.51.100.199")
OTHER_TABLE = 100


def _run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({proc.returncode}): "
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # NOTE: a zombie still answers kill(0); treat it as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def kill_pid(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after TIMEOUT; returns when PID is gone."""
    if pid <= 1 or not _pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _pid_alive(pid):
            return
        time.sleep(0.05)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass
class SimHost:
    """A simulated host (netns + private OVS) behind a simulated router (netns + dnsmasq)."""

    dhcp: bool = False
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    host_ns: str = ""
    router_ns: str = ""
    tmpdir: Path | None = None
    uplink: str = "eth0"
    router_if: str = "lan0"
    pids: dict[str, int] = field(default_factory=dict)
    _popens: list[subprocess.Popen[Any]] = field(default_factory=list, repr=False)
    _netns_made: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.host_ns = self.host_ns or f"{PREFIX}{self.suffix}h"
        self.router_ns = self.router_ns or f"{PREFIX}{self.suffix}r"

    # ----- lifecycle -------------------------------------------------------------
    def __enter__(self) -> SimHost:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> SimHost:
        try:
            self.tmpdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{self.suffix}-"))
            (self.tmpdir / "run").mkdir()
            (self.tmpdir / "etc").mkdir()
            self._make_netns()
            self._make_lan()
            self._start_ovs()
            if self.dhcp:
                self.start_dhcp()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Remove everything this SimHost made; safe to call twice and after a failed start."""
        for popen in self._popens:
            kill_pid(popen.pid)
            with contextlib.suppress(Exception):
                popen.wait(timeout=1)
        self._popens.clear()
        for name in ("dnsmasq", "ovs-vswitchd", "ovsdb-server"):
            pid = self.pids.pop(name, None)
            if pid is not None:
                kill_pid(pid)
        # NOTE: anything still running inside OUR netns (a watchdog, a heartbeat server) was
        # started by the code under test there; it is ours to stop, by PID.
        for ns in list(self._netns_made):
            for pid in self.netns_pids(ns):
                kill_pid(pid)
        for ns in list(self._netns_made):
            _run(["ip", "netns", "del", ns], check=False)
            self._netns_made.remove(ns)
        if self.tmpdir is not None and self.tmpdir.exists():
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    @staticmethod
    def netns_pids(ns: str) -> list[int]:
        proc = _run(["ip", "netns", "pids", ns], check=False)
        return [int(p) for p in proc.stdout.split() if p.isdigit()]

    # ----- building --------------------------------------------------------------
    def _make_netns(self) -> None:
        for ns in (self.router_ns, self.host_ns):
            _run(["ip", "netns", "add", ns])
            self._netns_made.append(ns)
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])

    @property
    def uplink_mac(self) -> str:
        raw = bytes.fromhex("020b" + self.suffix + "01")
        return ":".join(f"{b:02x}" for b in raw)

    def _make_lan(self) -> None:
        h, r = self.host_ns, self.router_ns
        _run(
            [
                "ip",
                "-n",
                h,
                "link",
                "add",
                self.uplink,
                "address",
                self.uplink_mac,
                "type",
                "veth",
                "peer",
                "name",
                self.router_if,
                "netns",
                r,
            ]
        )
        _run(["ip", "netns", "exec", h, "ethtool", "-K", self.uplink, "tx", "off"])
        _run(["ip", "netns", "exec", r, "ethtool", "-K", self.router_if, "tx", "off"])
        _run(["ip", "-n", r, "addr", "add", f"{ROUTER_V4}/24", "dev", self.router_if])
        _run(["ip", "-n", r, "addr", "add", f"{ROUTER_V6}/64", "dev", self.router_if, "nodad"])
        _run(["ip", "-n", r, "addr", "add", f"{ROUTER_EXTRA_V4}/32", "dev", "lo"])
        _run(["ip", "-n", r, "link", "set", self.router_if, "up"])
        _run(["ip", "-n", h, "link", "set", self.uplink, "up"])

    @property
    def db_sock(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "db.sock"

    @property
    def db(self) -> str:
        return f"unix:{self.db_sock}"

    def _ovs_env(self) -> dict[str, str]:
        assert self.tmpdir is not None
        env = dict(os.environ)
        # NOTE: ovs-vswitchd puts <bridge>.mgmt/.snoop sockets in OVS_RUNDIR; a private one
        # keeps our ovsbr0 from colliding with a bridge of the same name in the real OVS.
        for var in ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR"):
            env[var] = str(self.tmpdir)
        return env

    def _start_ovs(self) -> None:
        assert self.tmpdir is not None
        t, env = self.tmpdir, self._ovs_env()
        _run(["ovsdb-tool", "create", str(t / "conf.db"), SCHEMA], env=env)
        _run(
            [
                "ip",
                "netns",
                "exec",
                self.host_ns,
                "ovsdb-server",
                str(t / "conf.db"),
                f"--remote=punix:{self.db_sock}",
                f"--pidfile={t / 'ovsdb-server.pid'}",
                f"--unixctl={t / 'ovsdb-server.ctl'}",
                f"--log-file={t / 'ovsdb-server.log'}",
                "-vconsole:off",
                "--no-chdir",
                "--detach",
            ],
            env=env,
        )
        self._record_pid("ovsdb-server", t / "ovsdb-server.pid")
        _run(["ovs-vsctl", f"--db={self.db}", "--no-wait", "init"], env=env)
        _run(
            [
                "ip",
                "netns",
                "exec",
                self.host_ns,
                "ovs-vswitchd",
                self.db,
                f"--pidfile={t / 'ovs-vswitchd.pid'}",
                f"--unixctl={t / 'ovs-vswitchd.ctl'}",
                f"--log-file={t / 'ovs-vswitchd.log'}",
                "-vconsole:off",
                "--no-chdir",
                "--disable-system",
                "--detach",
            ],
            env=env,
        )
        self._record_pid("ovs-vswitchd", t / "ovs-vswitchd.pid")
        # ovs-vsctl waits for ovs-vswitchd to catch up: proves the pair works.
        _run(
            [
                "ovs-vsctl",
                f"--db={self.db}",
                "--timeout=20",
                "set",
                "Open_vSwitch",
                ".",
                "external_ids:obt-simhost=" + self.suffix,
            ],
            env=env,
        )

    def _record_pid(self, name: str, pidfile: Path) -> None:
        for _ in range(100):
            pid = _read_pid(pidfile)
            if pid:
                self.pids[name] = pid
                return
            time.sleep(0.05)
        raise RuntimeError(f"{name} wrote no pid file at {pidfile}")

    # ----- DHCP server on the router ---------------------------------------------
    @property
    def dhcp_leases(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "dnsmasq.leases"

    @property
    def dhcp_log(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "dnsmasq.log"

    def start_dhcp(self, lease_time: str = "1h") -> int:
        """dnsmasq in the router netns, DHCP only; returns its PID."""
        assert self.tmpdir is not None
        if "dnsmasq" in self.pids:
            return self.pids["dnsmasq"]
        self.dhcp_leases.touch()
        popen = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.router_ns,
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--port=0",
                "--no-resolv",
                "--no-hosts",
                "--user=root",
                f"--interface={self.router_if}",
                "--bind-interfaces",
                "--dhcp-authoritative",
                f"--dhcp-range={DHCP_RANGE[0]},{DHCP_RANGE[1]},255.255.255.0,{lease_time}",
                f"--dhcp-option=option:router,{ROUTER_V4}",
                f"--dhcp-option=option:dns-server,{ROUTER_V4}",
                f"--dhcp-leasefile={self.dhcp_leases}",
                f"--log-facility={self.dhcp_log}",
                "--log-dhcp",
                f"--pid-file={self.tmpdir / 'dnsmasq.pid'}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # NOTE: ip netns exec execs dnsmasq, and --keep-in-foreground keeps that PID.
        self.pids["dnsmasq"] = popen.pid
        self._popens.append(popen)
        for _ in range(100):
            if self.dhcp_log.exists() and "started" in self.dhcp_log.read_text():
                break
            time.sleep(0.05)
        return popen.pid

    def stop_dhcp(self) -> None:
        pid = self.pids.pop("dnsmasq", None)
        if pid is not None:
            kill_pid(pid)
        self._popens = [p for p in self._popens if p.pid != pid]

    # ----- running things --------------------------------------------------------
    def run_in_host(
        self,
        argv: Sequence[str],
        *,
        check: bool = False,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return _run(
            ["ip", "netns", "exec", self.host_ns, *argv], check=check, timeout=timeout, env=env
        )

    def run_in_router(
        self, argv: Sequence[str], *, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "netns", "exec", self.router_ns, *argv], check=check, timeout=timeout)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for the CLI: private run and config dirs, never /run or /etc."""
        assert self.tmpdir is not None
        env = dict(os.environ)
        env["OVSBRIDGE_RUN_DIR"] = str(self.tmpdir / "run")
        env["OVSBRIDGE_CONF_DIR"] = str(self.tmpdir / "etc")
        env["OVSBRIDGE_STATE_DIR"] = str(self.tmpdir / "state")
        env.pop("OVSBRIDGE_DB", None)
        if extra:
            env.update(extra)
        return env

    def ovsbridge_argv(self, *args: str) -> list[str]:
        return [
            "ip",
            "netns",
            "exec",
            self.host_ns,
            sys.executable,
            "-m",
            "ovsbridge",
            "--db",
            self.db,
            *args,
        ]

    def ovsbridge(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 180,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the CLI inside the host netns against the private OVS."""
        return subprocess.run(
            self.ovsbridge_argv(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(env),
            input=input,
            check=False,
        )

    def ovsbridge_popen(
        self, *args: str, env: dict[str, str] | None = None, **kwargs: Any
    ) -> subprocess.Popen[str]:
        """Start the CLI in the background (its PID is the CLI's: ip netns exec execs it)."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        popen = subprocess.Popen(self.ovsbridge_argv(*args), text=True, env=self.env(env), **kwargs)
        self._popens.append(popen)
        return popen

    def vsctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(["ovs-vsctl", f"--db={self.db}", "--timeout=20", *args], check=check)

    # ----- a static host, the way a server is usually configured ----------------------
    def configure_static(self) -> None:
        """Two IPv4 addresses, one IPv6 address, a default route with a metric, a specific
        route and a route in another table, all on eth0."""
        h, up = self.host_ns, self.uplink
        for cidr in HOST_V4:
            _run(["ip", "-n", h, "addr", "add", cidr, "dev", up])
        _run(["ip", "-n", h, "addr", "add", HOST_V6, "dev", up])
        _run(
            ["ip", "-n", h, "route", "add", "default", "via", ROUTER_V4, "dev", up, "metric", "100"]
        )
        _run(
            [
                "ip",
                "-n",
                h,
                "route",
                "add",
                f"{ROUTER_EXTRA_V4.rsplit('.', 1)[0]}.0/24",
                "via",
                ROUTER_V4,
                "dev",
                up,
            ]
        )
        _run(
            [
                "ip",
                "-n",
                h,
                "route",
                "add",
                "default",
                "via",
                ROUTER_V4,
                "dev",
                up,
                "table",
                str(OTHER_TABLE),
            ]
        )
        _run(
            [
                "ip",
                "-n",
                h,
                "-6",
                "route",
                "add",
                "default",
                "via",
                ROUTER_V6,
                "dev",
                up,
                "metric",
                "50",
            ]
        )
        self.wait_dad()

    def wait_dad(self, timeout: float = 10.0) -> None:
        """Wait until no IPv6 address in the host netns is tentative."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = _run(
                ["ip", "-n", self.host_ns, "-6", "addr", "show", "tentative"], check=False
            ).stdout
            if "inet6" not in out:
                return
            time.sleep(0.05)

    # ----- observing (independent of ovsbridge's own code: iproute2's JSON) ---------
    def ip_json(self, *args: str, ns: str | None = None) -> Any:
        out = _run(["ip", "-n", ns or self.host_ns, "-j", *args]).stdout
        return json.loads(out or "[]")

    def link(self, name: str) -> dict[str, Any] | None:
        for link in self.ip_json("link", "show"):
            if link.get("ifname") == name:
                return link  # type: ignore[no-any-return]
        return None

    def addresses(self, dev: str) -> list[tuple[str, str, int, str, tuple[str, ...]]]:
        """Global addresses of DEV: (family, local, prefixlen, label, flags) sorted."""
        out = []
        if self.link(dev) is None:
            return []
        for link in self.ip_json("addr", "show", "dev", dev):
            for a in link.get("addr_info", []):
                if a.get("scope") != "global":
                    continue
                flags = tuple(
                    sorted(
                        k
                        for k in (
                            "secondary",
                            "noprefixroute",
                            "nodad",
                            "dynamic",
                            "tentative",
                            "deprecated",
                        )
                        if a.get(k)
                    )
                )
                out.append((a["family"], a["local"], a["prefixlen"], a.get("label", ""), flags))
        return sorted(out)

    def routes(self, dev: str) -> list[tuple[Any, ...]]:
        """Every route through DEV in every table except local, normalised for comparing."""
        out = []
        for family in ("-4", "-6"):
            for r in self.ip_json(family, "route", "show", "table", "all"):
                if r.get("table") == "local" or r.get("dev") != dev:
                    continue
                if r.get("dst", "").startswith("fe80::") or r.get("type") == "multicast":
                    continue
                out.append(
                    (
                        family,
                        r.get("table", "main"),
                        r.get("dst"),
                        r.get("gateway"),
                        r.get("metric"),
                        r.get("protocol"),
                        r.get("scope"),
                        r.get("prefsrc"),
                        tuple(r.get("flags", [])),
                    )
                )
        return sorted(out, key=repr)

    def net_state(self) -> dict[str, Any]:
        """What setup-bridge may change: uplink link, addresses and routes of every link."""
        links = {}
        for link in self.ip_json("link", "show"):
            name = link["ifname"]
            if name in ("lo", "ovs-netdev"):
                continue
            links[name] = {
                "mac": link.get("address"),
                "mtu": link.get("mtu"),
                "up": "UP" in link.get("flags", []),
                "master": link.get("master"),
                "addresses": self.addresses(name),
                "routes": self.routes(name),
            }
        return links

    def ovs_state(self) -> dict[str, Any]:
        out = self.vsctl(
            "--format=json",
            "--columns=name,ports,datapath_type,external_ids,other_config",
            "list",
            "Bridge",
        ).stdout
        bridges = json.loads(out)["data"]
        ports = json.loads(
            self.vsctl("--format=json", "--columns=name,external_ids", "list", "Port").stdout
        )["data"]
        return {
            "bridges": sorted(repr(b[0]) for b in bridges),
            "ports": sorted(repr(p[0]) for p in ports),
        }

    def snapshot(self) -> dict[str, Any]:
        return {"net": self.net_state(), "ovs": self.ovs_state()}

    # ----- shell round trip ------------------------------------------------------
    def facts(self) -> dict[str, Any]:
        """What a shell script needs (names, db, env) and what ``down`` needs to remove it."""
        return {
            "suffix": self.suffix,
            "host_ns": self.host_ns,
            "router_ns": self.router_ns,
            "tmpdir": str(self.tmpdir),
            "db": self.db,
            "uplink": self.uplink,
            "router_v4": ROUTER_V4,
            "router_v6": ROUTER_V6,
            "pids": dict(self.pids),
            "dhcp_leases": str(self.dhcp_leases),
            "dhcp_log": str(self.dhcp_log),
            "env": {k: v for k, v in self.env().items() if k.startswith("OVSBRIDGE_")},
        }

    @classmethod
    def from_facts(cls, facts: dict[str, Any]) -> SimHost:
        sim = cls(
            suffix=facts["suffix"],
            host_ns=facts["host_ns"],
            router_ns=facts["router_ns"],
            tmpdir=Path(facts["tmpdir"]),
        )
        sim.pids = {k: int(v) for k, v in facts.get("pids", {}).items()}
        sim._netns_made = [facts["router_ns"], facts["host_ns"]]
        return sim

    # ----- a TCP heartbeat from the router to the host ------------------------------
    @contextlib.contextmanager
    def heartbeat(
        self, address: str = HOST_V4[0].split("/")[0], port: int = 7777
    ) -> Iterator[Heartbeat]:
        """A TCP connection router -> host sending one message every 100 ms, echoed back."""
        assert self.tmpdir is not None
        me = str(Path(__file__).resolve())
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.host_ns,
                sys.executable,
                me,
                "heartbeat-server",
                str(port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._popens.append(server)
        out = self.tmpdir / f"heartbeat-{secrets.token_hex(2)}.json"
        client = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.router_ns,
                sys.executable,
                me,
                "heartbeat-client",
                address,
                str(port),
                str(out),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._popens.append(client)
        beat = Heartbeat(client, server, out)
        try:
            beat.wait_started()
            yield beat
        finally:
            beat.stop()
            self._popens = [p for p in self._popens if p not in (client, server)]


@dataclass
class Heartbeat:
    client: subprocess.Popen[Any]
    server: subprocess.Popen[Any]
    out: Path
    stats: dict[str, Any] = field(default_factory=dict)

    def wait_started(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.out.exists():
                return
            if self.client.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("heartbeat did not start")

    def stop(self) -> dict[str, Any]:
        if self.client.poll() is None:
            self.client.send_signal(signal.SIGTERM)
            try:
                self.client.wait(timeout=5)
            except subprocess.TimeoutExpired:
                kill_pid(self.client.pid)
        kill_pid(self.server.pid)
        with contextlib.suppress(Exception):
            self.server.wait(timeout=1)
        with contextlib.suppress(OSError, ValueError):
            self.stats = json.loads(self.out.read_text())
        return self.stats


def _heartbeat_server(port: int) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    srv = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    conn, _ = srv.accept()
    while True:
        data = conn.recv(4096)
        if not data:
            return
        conn.sendall(data)


def _heartbeat_client(address: str, port: int, out: Path) -> None:
    """Send a line every 100 ms; record the longest time without an echo."""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    sock = None
    for _ in range(100):
        try:
            sock = socket.create_connection((address, port), timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    stats: dict[str, Any] = {"sent": 0, "echoed": 0, "max_gap": None, "error": None}
    if sock is None:
        stats["error"] = "could not connect"
        out.write_text(json.dumps(stats))
        return
    sock.settimeout(0.02)
    last = time.monotonic()
    max_gap = 0.0
    buf = b""
    next_send = last

    def dump() -> None:
        stats["max_gap"] = round(max(max_gap, time.monotonic() - last), 3)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats))
        tmp.replace(out)

    dump()
    try:
        while not stopping:
            now = time.monotonic()
            if now >= next_send:
                sock.sendall(f"{stats['sent']}\n".encode())
                stats["sent"] += 1
                next_send = now + 0.1
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            if not data:
                stats["error"] = "closed by the host"
                break
            buf += data
            while b"\n" in buf:
                _, buf = buf.split(b"\n", 1)
                now = time.monotonic()
                max_gap = max(max_gap, now - last)
                last = now
                stats["echoed"] += 1
    except OSError as exc:
        stats["error"] = f"{type(exc).__name__}: {exc}"
    max_gap = max(max_gap, time.monotonic() - last) if stats["error"] else max_gap
    stats["max_gap"] = round(max_gap, 3)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats))
    tmp.replace(out)


# ----- shell entry: scripts/demo.sh builds and removes a SimHost -----------------------
def _cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simhost.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build a simulated host; print its facts as JSON")
    up.add_argument("--state", required=True, help="where to write what 'down' needs")
    up.add_argument("--dhcp", action="store_true", help="run dnsmasq on the router")
    up.add_argument("--static", action="store_true", help="configure eth0 like a server")
    down = sub.add_parser("down", help="remove a simulated host built by 'up'")
    down.add_argument("--state", required=True)
    hs = sub.add_parser("heartbeat-server")
    hs.add_argument("port", type=int)
    hc = sub.add_parser("heartbeat-client")
    hc.add_argument("address")
    hc.add_argument("port", type=int)
    hc.add_argument("out", type=Path)
    args = parser.parse_args(argv)

    if args.command == "heartbeat-server":
        _heartbeat_server(args.port)
        return 0
    if args.command == "heartbeat-client":
        _heartbeat_client(args.address, args.port, args.out)
        return 0
    state = Path(args.state)
    if args.command == "up":
        sim = SimHost(dhcp=args.dhcp)
        sim.start()
        try:
            if args.static:
                sim.configure_static()
            facts = sim.facts()
            state.write_text(json.dumps(facts, indent=2) + "\n")
        except BaseException:
            sim.stop()
            raise
        print(json.dumps(facts, indent=2))
        return 0
    facts = json.loads(state.read_text())
    SimHost.from_facts(facts).stop()
    state.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
