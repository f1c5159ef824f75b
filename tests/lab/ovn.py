"""A multi-host OVN lab: a central, three simulated hypervisors, an underlay and a LAN.

``OvnLab`` builds, with random names (prefix ``obt``), everything inside network namespaces
and its own temporary directory, never in the root netns:

- an underlay netns: a Linux bridge ``ul`` joining every node (203.0.113.0/24);
- a central netns (``eth0`` 203.0.113.10): the OVN northbound and southbound ovsdb-servers
  (``ptcp:6641`` / ``ptcp:6642`` on that address, plus unix sockets) and ``ovn-northd``;
- hypervisors hv1..hvN (203.0.113.11...): each a netns with a PRIVATE Open vSwitch
  (ovsdb-server + ovs-vswitchd, userspace datapath), the underlay address on the OVS bridge
  ``br-ul`` (OVS's native tunnelling on the userspace datapath sends Geneve through an OVS
  bridge that owns the source address), ``ovsbr0`` with ``eth1`` towards the LAN, and private
  OVN and ovsbridge directories. ``ovn-controller`` is NOT started here: ``ovsbridge ovn join``
  starts it the distribution's way (``ovn-ctl start_controller``) with the environment
  ``Hypervisor.env()`` gives (OVS_RUNDIR, OVN_RUNDIR, OVN_LOGDIR inside the temp dir);
- a LAN netns: a Linux bridge ``lan`` (198.51.100.1/24) joined to every hypervisor's
  ``ovsbr0``, with dnsmasq as the LAN's DHCP server.

``stop()`` stops every process by its PID (pid files and Popen objects, then whatever is
left inside the namespaces this object made), deletes the namespaces and the temp dir.
TX checksum offload is off on every veth end: the userspace datapath breaks UDP otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script (scripts/demo.sh): make ``lab`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.simhost import SCHEMA, _read_pid, _run, kill_pid

PREFIX = "obt"
NB_SCHEMA = "/usr/share/ovn/ovn-nb.ovsschema"
SB_SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"
CENTRAL_IP = "203.0.113.10"
UNDERLAY_PREFIX = 24
LAN_ROUTER = "198.51.100.1"
LAN_POOL = ("198.51.100.100", "198.51.100.149")
NB_PORT = 6641
SB_PORT = 6642
UNDERLAY_MTU = 1600  # room for the Geneve header around a 1500-byte guest frame


def hv_ip(index: int) -> str:
    return f"203.0.113.{10 + index}"


def _ns_exec(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class _Node:
    """A netns with processes started by pid file, and a directory of its own."""

    ns: str
    dir: Path
    pidfiles: dict[str, Path] = field(default_factory=dict)

    def run(self, *argv: str, check: bool = True, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return _run(_ns_exec(self.ns, *argv), check=check, timeout=timeout, env=env)

    def daemon(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
        """Start a --detach OVS-style daemon in the netns; returns the PID of its pid file."""
        pidfile = self.dir / f"{name}.pid"
        pidfile.unlink(missing_ok=True)
        self.run(*argv, f"--pidfile={pidfile}", f"--log-file={self.dir / (name + '.log')}",
                 f"--unixctl={self.dir / (name + '.ctl')}", "-vconsole:off", "--no-chdir",
                 "--detach", env=env)
        self.pidfiles[name] = pidfile
        for _ in range(100):
            pid = _read_pid(pidfile)
            if pid:
                return pid
            time.sleep(0.05)
        raise RuntimeError(f"{name} in {self.ns} wrote no pid file")

    def stop_daemon(self, name: str) -> None:
        pidfile = self.pidfiles.pop(name, None)
        pid = _read_pid(pidfile) if pidfile else None
        if pid is not None:
            kill_pid(pid)
        if pidfile is not None:
            pidfile.unlink(missing_ok=True)

    def stop_all(self) -> None:
        for name in list(self.pidfiles):
            self.stop_daemon(name)


@dataclass
class Central(_Node):
    """NB + SB ovsdb-servers and ovn-northd, listening on CENTRAL_IP inside the netns."""

    @property
    def nb(self) -> str:
        return f"tcp:{CENTRAL_IP}:{NB_PORT}"

    @property
    def sb(self) -> str:
        return f"tcp:{CENTRAL_IP}:{SB_PORT}"

    def create_dbs(self) -> None:
        for name, schema in (("nb", NB_SCHEMA), ("sb", SB_SCHEMA)):
            _run(["ovsdb-tool", "create", str(self.dir / f"{name}.db"), schema])

    def start(self) -> None:
        """Start (or restart, on the same database files) the whole central."""
        for name, port in (("nb", NB_PORT), ("sb", SB_PORT)):
            self.daemon(f"ovsdb-{name}", [
                "ovsdb-server", str(self.dir / f"{name}.db"),
                f"--remote=punix:{self.dir / (name + '.sock')}",
                f"--remote=ptcp:{port}:{CENTRAL_IP}",
            ])
        self.daemon("ovn-northd", [
            "ovn-northd", f"--ovnnb-db=unix:{self.dir / 'nb.sock'}",
            f"--ovnsb-db=unix:{self.dir / 'sb.sock'}",
        ])
        self.nbctl("--wait=sb", "sync", timeout=30)

    def stop(self) -> None:
        self.stop_all()

    @property
    def running(self) -> bool:
        return bool(self.pidfiles)

    def nbctl(self, *args: str, check: bool = True,
              timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return self.run("ovn-nbctl", f"--db=unix:{self.dir / 'nb.sock'}",
                        f"--timeout={int(timeout)}", *args, check=check, timeout=timeout + 5)

    def sbctl(self, *args: str, check: bool = True,
              timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return self.run("ovn-sbctl", f"--db=unix:{self.dir / 'sb.sock'}",
                        f"--timeout={int(timeout)}", *args, check=check, timeout=timeout + 5)

    def rows(self, ctl: str, table: str, *conditions: str,
             columns: str = "") -> list[dict[str, Any]]:
        """Rows of TABLE as dicts (ovn-nbctl/ovn-sbctl --format=json), values decoded."""
        run = self.nbctl if ctl == "nb" else self.sbctl
        args = ["--format=json"]
        if columns:
            args.append(f"--columns={columns}")
        verb = ["find", table, *conditions] if conditions else ["list", table]
        doc = json.loads(run(*args, *verb).stdout)
        return [{h: _decode(v) for h, v in zip(doc["headings"], row, strict=True)}
                for row in doc["data"]]

    def logical_ports(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in self.rows("nb", "Logical_Switch_Port")}

    def bindings(self) -> dict[str, str | None]:
        """Logical port -> name of the chassis it is bound to (None when unbound)."""
        chassis = {r["_uuid"]: r["name"] for r in self.rows("sb", "Chassis")}
        out: dict[str, str | None] = {}
        for row in self.rows("sb", "Port_Binding", columns="logical_port,chassis"):
            ref = row["chassis"]
            out[row["logical_port"]] = chassis.get(ref) if isinstance(ref, str) else None
        return out

    def chassis_names(self) -> list[str]:
        return sorted(r["name"] for r in self.rows("sb", "Chassis", columns="name"))


def _decode(raw: Any) -> Any:
    if isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str):
        tag, body = raw
        if tag == "map":
            return {_decode(k): _decode(v) for k, v in body}
        if tag == "set":
            return [_decode(v) for v in body]
        if tag in ("uuid", "named-uuid"):
            return body
    return raw


@dataclass
class Hypervisor(_Node):
    """A simulated host: private OVS, underlay on br-ul, ovsbr0 to the LAN."""

    index: int = 0
    nb: str = ""

    @property
    def name(self) -> str:
        return f"hv{self.index}"

    @property
    def ip(self) -> str:
        return hv_ip(self.index)

    @property
    def db_sock(self) -> Path:
        return self.dir / "db.sock"

    @property
    def db(self) -> str:
        return f"unix:{self.db_sock}"

    @property
    def ovn_dir(self) -> Path:
        return self.dir / "ovn"

    def ovs_env(self) -> dict[str, str]:
        env = dict(os.environ)
        for var in ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR"):
            env[var] = str(self.dir)
        for var in ("OVN_RUNDIR", "OVN_LOGDIR", "OVN_DBDIR"):
            env[var] = str(self.ovn_dir)
        return env

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment of the CLI on this host: private OVS/OVN/ovsbridge directories."""
        env = self.ovs_env()
        env["OVSBRIDGE_RUN_DIR"] = str(self.dir / "run")
        env["OVSBRIDGE_CONF_DIR"] = str(self.dir / "etc")
        env["OVSBRIDGE_STATE_DIR"] = str(self.dir / "state")
        env["OVSBRIDGE_OVN_NB"] = self.nb
        env.pop("OVSBRIDGE_DB", None)
        if extra:
            env.update(extra)
        return env

    def start_ovs(self) -> None:
        for sub in ("run", "etc", "state", "ovn"):
            (self.dir / sub).mkdir(exist_ok=True)
        env = self.ovs_env()
        _run(["ovsdb-tool", "create", str(self.dir / "conf.db"), SCHEMA])
        self.daemon("ovsdb-server", ["ovsdb-server", str(self.dir / "conf.db"),
                                     f"--remote=punix:{self.db_sock}"], env=env)
        self.vsctl("--no-wait", "init")
        self.daemon("ovs-vswitchd", ["ovs-vswitchd", self.db, "--disable-system"], env=env)
        self.vsctl("set", "Open_vSwitch", ".", f"external_ids:obt-ovnlab={self.name}")

    def vsctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(["ovs-vsctl", f"--db={self.db}", "--timeout=20", *args], check=check)

    def ovs_external_ids(self) -> dict[str, str]:
        out = self.vsctl("--format=json", "--columns=external_ids", "list",
                         "Open_vSwitch").stdout
        return dict(_decode(json.loads(out)["data"][0][0]))

    def ovs_state(self) -> dict[str, Any]:
        """What join/leave/attach may change in this host's OVS, normalised for comparing."""
        bridges = json.loads(self.vsctl(
            "--format=json", "--columns=name,datapath_type,fail_mode,external_ids,other_config",
            "list", "Bridge").stdout)["data"]
        ifaces = json.loads(self.vsctl(
            "--format=json", "--columns=name,type,external_ids", "list",
            "Interface").stdout)["data"]
        ids = self.ovs_external_ids()
        ids.pop("hostname", None)  # NOTE: written by ovs-vswitchd itself, not by us
        return {
            "open_vswitch": ids,
            "bridges": sorted(json.dumps(_decode(b), sort_keys=True) for b in bridges),
            "interfaces": sorted(json.dumps(_decode(i), sort_keys=True) for i in ifaces),
        }

    def controller_pid(self) -> int | None:
        pid = _read_pid(self.ovn_dir / "ovn-controller.pid")
        if pid is None or not Path(f"/proc/{pid}").exists():
            return None
        return pid

    def host_links(self) -> list[str]:
        out = _run(["ip", "-n", self.ns, "-j", "link", "show"]).stdout
        return sorted(link["ifname"] for link in json.loads(out or "[]"))

    def ovsbridge_argv(self, *args: str) -> list[str]:
        return _ns_exec(self.ns, sys.executable, "-m", "ovsbridge", "--db", self.db, *args)

    def ovsbridge(self, *args: str, env: dict[str, str] | None = None,
                  timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """The real CLI inside this host's netns, against its private OVS."""
        return subprocess.run(self.ovsbridge_argv(*args), capture_output=True, text=True,
                              timeout=timeout, env=self.env(env), check=False)

    def stop(self) -> None:
        # NOTE: ovn-controller was started by the code under test (ovn-ctl, maybe with a
        # --monitor parent); stop it by its pid file first so it never outlives the OVS it
        # talks to, then the private OVS.
        pid = self.controller_pid()
        if pid is not None:
            kill_pid(pid)
        self.stop_all()


@dataclass
class OvnLab:
    hosts: int = 3
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    tmpdir: Path | None = None
    central: Central | None = None
    hvs: list[Hypervisor] = field(default_factory=list)
    lan_ns: str = ""
    underlay_ns: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    _popens: list[subprocess.Popen[Any]] = field(default_factory=list, repr=False)
    _netns_made: list[str] = field(default_factory=list, repr=False)

    def __enter__(self) -> OvnLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ns(self, tag: str) -> str:
        return f"{PREFIX}{self.suffix}{tag}"

    def start(self) -> OvnLab:
        try:
            self.tmpdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{self.suffix}-"))
            self.underlay_ns = self._make_netns("u")
            self.lan_ns = self._make_netns("l")
            _run(["ip", "-n", self.underlay_ns, "link", "add", "ul", "type", "bridge"])
            _run(["ip", "-n", self.underlay_ns, "link", "set", "ul", "up"])
            _run(["ip", "-n", self.lan_ns, "link", "add", "lan", "type", "bridge"])
            _run(["ip", "-n", self.lan_ns, "addr", "add", f"{LAN_ROUTER}/24", "dev", "lan"])
            _run(["ip", "-n", self.lan_ns, "link", "set", "lan", "up"])
            self._make_central()
            for index in range(1, self.hosts + 1):
                self._make_hv(index)
            self.start_dnsmasq()
        except BaseException:
            self.stop()
            raise
        return self

    def _make_netns(self, tag: str) -> str:
        ns = self._ns(tag)
        _run(["ip", "netns", "add", ns])
        self._netns_made.append(ns)
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return ns

    def _veth(self, ns: str, name: str, peer_ns: str, peer: str, master: str,
              mtu: int = 1500) -> None:
        """A veth NAME in NS whose other end PEER is enslaved to bridge MASTER in PEER_NS."""
        _run(["ip", "-n", ns, "link", "add", name, "mtu", str(mtu), "type", "veth", "peer",
              "name", peer, "netns", peer_ns, "mtu", str(mtu)])
        _run(_ns_exec(ns, "ethtool", "-K", name, "tx", "off"))
        _run(_ns_exec(peer_ns, "ethtool", "-K", peer, "tx", "off"))
        _run(["ip", "-n", peer_ns, "link", "set", peer, "master", master, "up"])
        _run(["ip", "-n", ns, "link", "set", name, "up"])

    def _make_central(self) -> None:
        assert self.tmpdir is not None
        ns = self._make_netns("c")
        node_dir = self.tmpdir / "central"
        node_dir.mkdir()
        self._veth(ns, "eth0", self.underlay_ns, "c", "ul", UNDERLAY_MTU)
        _run(["ip", "-n", ns, "addr", "add", f"{CENTRAL_IP}/{UNDERLAY_PREFIX}", "dev", "eth0"])
        self.central = Central(ns, node_dir)
        self.central.create_dbs()
        self.central.start()

    def _make_hv(self, index: int) -> None:
        assert self.tmpdir is not None and self.central is not None
        ns = self._make_netns(f"h{index}")
        node_dir = self.tmpdir / f"hv{index}"
        node_dir.mkdir()
        hv = Hypervisor(ns, node_dir, index=index, nb=self.central.nb)
        self.hvs.append(hv)
        self._veth(ns, "eth0", self.underlay_ns, f"h{index}", "ul", UNDERLAY_MTU)
        self._veth(ns, "eth1", self.lan_ns, f"h{index}", "lan")
        hv.start_ovs()
        # NOTE: the userspace datapath tunnels only through an OVS bridge that owns the
        # source address (its native tunnel code routes and ARPs there), so the underlay
        # address lives on br-ul, with eth0 as its port.
        hv.vsctl("add-br", "br-ul", "--", "set", "Bridge", "br-ul", "datapath_type=netdev",
                 "--", "add-port", "br-ul", "eth0")
        hv.vsctl("add-br", "ovsbr0", "--", "set", "Bridge", "ovsbr0", "datapath_type=netdev",
                 "--", "add-port", "ovsbr0", "eth1")
        _run(["ip", "-n", ns, "link", "set", "br-ul", "mtu", str(UNDERLAY_MTU), "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{hv.ip}/{UNDERLAY_PREFIX}", "dev", "br-ul"])
        _run(["ip", "-n", ns, "link", "set", "ovsbr0", "up"])
        wait_for(f"{hv.name} to reach the central",
                 lambda: hv.run("busybox", "ping", "-c1", "-W1", CENTRAL_IP,
                                check=False).returncode == 0, timeout=20)

    # ----- the LAN's DHCP server -----------------------------------------------------
    @property
    def dhcp_leases(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "dnsmasq.leases"

    @property
    def dhcp_log(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "dnsmasq.log"

    def start_dnsmasq(self) -> None:
        self.dhcp_leases.touch()
        popen = subprocess.Popen(
            _ns_exec(self.lan_ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                     "--port=0", "--no-resolv", "--no-hosts", "--user=root",
                     "--interface=lan", "--bind-interfaces", "--dhcp-authoritative",
                     f"--dhcp-range={LAN_POOL[0]},{LAN_POOL[1]},255.255.255.0,1h",
                     f"--dhcp-option=option:router,{LAN_ROUTER}",
                     f"--dhcp-option=option:dns-server,{LAN_ROUTER}",
                     f"--dhcp-leasefile={self.dhcp_leases}",
                     f"--log-facility={self.dhcp_log}", "--log-dhcp"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # NOTE: ip netns exec execs dnsmasq and --keep-in-foreground keeps that PID.
        self.pids["dnsmasq"] = popen.pid
        self._popens.append(popen)
        wait_for("dnsmasq to start",
                 lambda: self.dhcp_log.exists() and "started" in self.dhcp_log.read_text(),
                 timeout=10)

    def lan_leases(self) -> dict[str, str]:
        """MAC -> address of the LAN dnsmasq's current leases."""
        out = {}
        for line in self.dhcp_leases.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                out[parts[1].lower()] = parts[2]
        return out

    # ----- teardown ------------------------------------------------------------------
    def stop(self) -> None:
        """Remove everything this lab made; safe to call twice and after a failed start."""
        for popen in self._popens:
            kill_pid(popen.pid)
            with contextlib.suppress(Exception):
                popen.wait(timeout=1)
        self._popens.clear()
        self.pids.clear()
        for hv in self.hvs:
            hv.stop()
        if self.central is not None:
            self.central.stop()
        # NOTE: anything still running inside OUR namespaces (an ovn-ctl --monitor parent,
        # an ovsbridge daemon a test started there) is ours to stop, by PID.
        for ns in self._netns_made:
            out = _run(["ip", "netns", "pids", ns], check=False).stdout
            for pid in (int(p) for p in out.split() if p.isdigit()):
                kill_pid(pid)
        for ns in list(reversed(self._netns_made)):
            _run(["ip", "netns", "del", ns], check=False)
            self._netns_made.remove(ns)
        if self.tmpdir is not None and self.tmpdir.exists():
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    # ----- shell round trip (scripts/demo.sh, manual exploring) -------------------------
    def facts(self) -> dict[str, Any]:
        assert self.central is not None
        return {
            "suffix": self.suffix,
            "tmpdir": str(self.tmpdir),
            "netns": list(self._netns_made),
            "nb": self.central.nb,
            "sb": self.central.sb,
            "central_ns": self.central.ns,
            "central_dir": str(self.central.dir),
            "lan_ns": self.lan_ns,
            "lan_router": LAN_ROUTER,
            "pids": dict(self.pids),
            "hosts": [{"name": hv.name, "ns": hv.ns, "dir": str(hv.dir), "db": hv.db,
                       "ip": hv.ip, "env": {k: v for k, v in hv.env().items()
                                            if k.startswith(("OVSBRIDGE_", "OVS_", "OVN_"))}}
                      for hv in self.hvs],
        }

    @classmethod
    def from_facts(cls, facts: dict[str, Any]) -> OvnLab:
        lab = cls(hosts=len(facts["hosts"]), suffix=facts["suffix"],
                  tmpdir=Path(facts["tmpdir"]), lan_ns=facts["lan_ns"])
        lab._netns_made = list(facts["netns"])
        lab.pids = {k: int(v) for k, v in facts["pids"].items()}
        central = Central(facts["central_ns"], Path(facts["central_dir"]))
        central.pidfiles = {n: central.dir / f"{n}.pid"
                            for n in ("ovsdb-nb", "ovsdb-sb", "ovn-northd")}
        lab.central = central
        for index, host in enumerate(facts["hosts"], 1):
            hv = Hypervisor(host["ns"], Path(host["dir"]), index=index, nb=facts["nb"])
            hv.pidfiles = {n: hv.dir / f"{n}.pid" for n in ("ovsdb-server", "ovs-vswitchd")}
            lab.hvs.append(hv)
        return lab


def _cli(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="ovn.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build the OVN lab; print its facts as JSON")
    up.add_argument("--state", required=True, help="where to write what 'down' needs")
    up.add_argument("--hosts", type=int, default=3)
    down = sub.add_parser("down", help="remove an OVN lab built by 'up'")
    down.add_argument("--state", required=True)
    args = parser.parse_args(argv)
    state = Path(args.state)
    if args.command == "up":
        lab = OvnLab(hosts=args.hosts).start()
        try:
            # NOTE: dnsmasq outlives this short-lived process; 'down' stops it by its PID.
            lab._popens.clear()
            facts = lab.facts()
            state.write_text(json.dumps(facts, indent=2) + "\n")
        except BaseException:
            lab.stop()
            raise
        print(json.dumps(facts, indent=2))
        return 0
    lab = OvnLab.from_facts(json.loads(state.read_text()))
    for pid in lab.pids.values():
        kill_pid(pid)
    lab.stop()
    state.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
