"""OVN adapters: ovn-nbctl / ovn-sbctl against the central, ovn-ctl and ovn-appctl locally.

Like ``system.ovs``, commands are values joined with ``--`` into ONE ``ovn-nbctl`` process
(one OVSDB transaction), reads use ``--format=json`` and are parsed into plain dicts. Every
process has a bounded ``--timeout`` and a subprocess timeout above it. Failures become domain
errors: an unreachable database is an environment problem (exit 5), "not found" answers are
NotFound, "already exists" a Conflict, anything else OperationFailed with the tool's message.

``RealChassis`` is this host's side (its OVS through ``system.ovs.Ovs``, ovn-controller
through ovn-appctl and the distribution's ovn-ctl, the route to the central through netlink).
It honours the standard OVS_RUNDIR / OVN_RUNDIR / OVN_LOGDIR variables, as ovn-ctl does.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ovsbridge.errors import (
    Conflict,
    EnvironmentProblem,
    NotFound,
    OperationFailed,
    OvsbridgeError,
)
from ovsbridge.system import ovs as ovs_adapter
from ovsbridge.system.ovs import Command, cmd, ovsdb_value, scalar

log = logging.getLogger(__name__)

OVN_CTL = "/usr/share/ovn/scripts/ovn-ctl"
CONTROLLER_TIMEOUT = 30
DEFAULT_TIMEOUT = 10


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    # NOTE: with OVN_NB_DAEMON set, ovn-nbctl talks to a long-lived ovn-nbctl daemon
    # instead of the --db we pass; never let a stray daemon answer for the central.
    env.pop("OVN_NB_DAEMON", None)
    env.pop("OVN_SB_DAEMON", None)
    return env


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise EnvironmentProblem(f"{name} is not installed",
                                 hint="install OVN: apt-get install ovn-host (ovn-central on "
                                      "the central)")
    return path


def quote(value: str) -> str:
    return json.dumps(value)


@dataclass(frozen=True)
class OvnDb:
    """One OVN database (northbound or southbound) reached through its ctl tool."""

    db: str
    tool: str = "ovn-nbctl"
    timeout: int = DEFAULT_TIMEOUT

    @property
    def what(self) -> str:
        return "northbound" if self.tool == "ovn-nbctl" else "southbound"

    def run(self, *commands: Command) -> str:
        """COMMANDS as one transaction (one process); returns stdout."""
        argv = [_binary(self.tool), f"--db={self.db}", f"--timeout={self.timeout}",
                "--format=json"]
        for command in commands:
            argv.append("--")
            argv.extend(command)
        log.debug("%s: %s", self.tool, " ".join(argv[1:]))
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  env=_env(), timeout=self.timeout + 5)
        except subprocess.TimeoutExpired as exc:
            raise self._unreachable("no answer") from exc
        except OSError as exc:
            raise EnvironmentProblem(f"cannot run {self.tool}: {exc}") from exc
        if proc.returncode != 0:
            raise self._translate(proc)
        return proc.stdout

    def _unreachable(self, detail: str) -> EnvironmentProblem:
        return EnvironmentProblem(
            f"cannot reach the OVN {self.what} database at {self.db}: {detail}",
            hint="start the OVN central (ovn-ctl start_northd), or check "
                 + ("--nb / OVSBRIDGE_OVN_NB" if self.tool == "ovn-nbctl"
                    else "the chassis' ovn-remote"),
            db=self.db)

    def _translate(self, proc: subprocess.CompletedProcess[str]) -> OvsbridgeError:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        first = lines[-1] if lines else f"exit code {proc.returncode}"
        first = first.removeprefix(f"{self.tool}: ")
        lowered = first.lower()
        if ("database connection failed" in lowered or "timed out" in lowered
                or proc.returncode in (142, -14)):
            return self._unreachable(first)
        if "not found" in lowered or "no row" in lowered:
            return NotFound(f"OVN says: {first}")
        if "already exists" in lowered:
            return Conflict(f"OVN says: {first}")
        return OperationFailed(f"OVN refused the change: {first}")

    def transact(self, *commands: Command) -> str:
        return self.run(*commands) if commands else ""

    def tables(self, *queries: Command) -> list[list[dict[str, Any]]]:
        """Several list/find queries in one call; one list of rows per query."""
        out = self.run(*queries)
        results = []
        for line in out.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            doc = json.loads(line)
            heads = doc["headings"]
            results.append([{h: ovsdb_value(v) for h, v in zip(heads, row, strict=True)}
                            for row in doc["data"]])
        if len(results) != len(queries):
            raise OperationFailed(f"unexpected {self.tool} output: {out[:200]!r}")
        return results

    def rows(self, table: str, *conditions: str, columns: Sequence[str] = ()) -> list[
            dict[str, Any]]:
        query: list[str] = []
        if columns:
            query.append(f"--columns={','.join(columns)}")
        query.extend(["find", table, *conditions] if conditions else ["list", table])
        return self.tables(cmd(*query))[0]


# ----- northbound: logical switches and ports -------------------------------------------
LS_COLUMNS = ("_uuid", "name", "ports", "other_config", "external_ids")
LSP_COLUMNS = ("_uuid", "name", "type", "addresses", "dynamic_addresses", "port_security",
               "options", "tag", "up", "external_ids", "dhcpv4_options")


def _lsp(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("addresses", "port_security"):
        value = out.get(key)
        out[key] = value if isinstance(value, list) else ([value] if value else [])
    for key in ("dynamic_addresses", "tag", "up", "dhcpv4_options"):
        out[key] = scalar(out.get(key))
    return out


class RealNorthbound:
    """ops.ovn.Northbound on ovn-nbctl."""

    def __init__(self, db: str, timeout: int = DEFAULT_TIMEOUT) -> None:
        self.nb = OvnDb(db, "ovn-nbctl", timeout)
        self.db = db

    def ping(self) -> None:
        self.nb.run(cmd("--columns=name", "list", "NB_Global"))

    def switches(self) -> list[dict[str, Any]]:
        switches, ports, dhcp = self.nb.tables(
            cmd(f"--columns={','.join(LS_COLUMNS)}", "list", "Logical_Switch"),
            cmd(f"--columns={','.join(LSP_COLUMNS)}", "list", "Logical_Switch_Port"),
            cmd("--columns=_uuid,cidr,options,external_ids", "list", "DHCP_Options"),
        )
        by_uuid = {p["_uuid"]: _lsp(p) for p in ports}
        out = []
        for sw in switches:
            members = sw["ports"] if isinstance(sw["ports"], list) else [sw["ports"]]
            sw = dict(sw)
            sw["ports"] = [by_uuid[u] for u in members if u in by_uuid]
            sw["dhcp"] = [d for d in dhcp
                          if d["external_ids"].get("ovsbridge.switch") == sw["name"]]
            out.append(sw)
        return sorted(out, key=lambda s: str(s["name"]))

    def switch(self, name: str) -> dict[str, Any] | None:
        return next((s for s in self.switches() if s["name"] == name), None)

    def port(self, name: str) -> dict[str, Any] | None:
        rows = self.nb.rows("Logical_Switch_Port", f"name={quote(name)}", columns=LSP_COLUMNS)
        if not rows:
            return None
        port = _lsp(rows[0])
        owner = self.nb.rows("Logical_Switch", f"ports{{>=}}{port['_uuid']}",
                             columns=("name",))
        port["switch"] = owner[0]["name"] if owner else None
        return port

    def transact(self, commands: Sequence[Command]) -> str:
        return self.nb.transact(*commands)


# ----- southbound: chassis and bindings --------------------------------------------------
class RealSouthbound:
    """ops.ovn.Southbound on ovn-sbctl."""

    def __init__(self, db: str, timeout: int = DEFAULT_TIMEOUT) -> None:
        self.sb = OvnDb(db, "ovn-sbctl", timeout)
        self.db = db

    def chassis(self, name: str) -> dict[str, Any] | None:
        rows = self.sb.rows("Chassis", f"name={quote(name)}",
                            columns=("_uuid", "name", "hostname", "encaps"))
        return rows[0] if rows else None

    def binding(self, logical_port: str) -> str | None:
        """The name of the chassis LOGICAL_PORT is bound to, or None."""
        bindings, chassis = self.sb.tables(
            cmd("--columns=chassis", "find", "Port_Binding",
                f"logical_port={quote(logical_port)}"),
            cmd("--columns=_uuid,name", "list", "Chassis"),
        )
        if not bindings:
            return None
        ref = scalar(bindings[0]["chassis"])
        names = {c["_uuid"]: c["name"] for c in chassis}
        return names.get(ref) if isinstance(ref, str) else None


# ----- this host: its OVS, ovn-controller, the route to the central ----------------------
def ovn_rundir() -> str:
    return os.environ.get("OVN_RUNDIR") or "/var/run/ovn"


class RealChassis:
    """ops.ovn.Chassis: this host's OVS (Open_vSwitch row, br-int) and ovn-controller."""

    def __init__(self, ovsdb: ovs_adapter.Ovs) -> None:
        self.ovs = ovsdb

    # OVS -------------------------------------------------------------------------------
    def ovs_external_ids(self) -> dict[str, str]:
        rows = self.ovs.tables(cmd("--columns=external_ids", "list", "Open_vSwitch"))[0]
        if not rows:
            raise EnvironmentProblem("OVS has no Open_vSwitch record",
                                     hint="initialise it: ovs-vsctl init")
        return dict(rows[0]["external_ids"])

    def ovs_uuid(self) -> str:
        rows = self.ovs.tables(cmd("--columns=_uuid", "list", "Open_vSwitch"))[0]
        return str(rows[0]["_uuid"])

    def set_ovs_external_ids(self, values: dict[str, str], remove: Sequence[str]) -> None:
        """Set VALUES and remove the keys REMOVE from Open_vSwitch external_ids, atomically."""
        commands: list[Command] = []
        if values:
            commands.append(cmd("set", "Open_vSwitch", ".", *(
                f"external_ids:{k}={quote(v)}" for k, v in sorted(values.items()))))
        for key in sorted(remove):
            commands.append(cmd("remove", "Open_vSwitch", ".", "external_ids", key))
        self.ovs.transact(*commands)

    def bridge_exists(self, name: str) -> bool:
        return self.ovs.bridge(name) is not None

    def create_integration_bridge(self, name: str, datapath: str | None,
                                  marker: dict[str, str]) -> None:
        settings = ["fail_mode=secure", "other_config:disable-in-band=true"]
        if datapath:
            settings.append(f"datapath_type={datapath}")
        settings += [f"external_ids:{k}={quote(v)}" for k, v in sorted(marker.items())]
        self.ovs.transact(cmd("--may-exist", "add-br", name),
                          cmd("set", "Bridge", name, *settings))

    def delete_bridge(self, name: str) -> None:
        self.ovs.transact(cmd("--if-exists", "del-br", name))

    def kernel_datapath(self) -> bool:
        return ovs_adapter.kernel_datapath_available()

    def interfaces(self) -> list[dict[str, Any]]:
        """Interfaces with an iface-id: name, iface-id, ovn-installed, ovsbridge tags."""
        rows = self.ovs.tables(cmd("--columns=name,external_ids", "list", "Interface"))[0]
        return [r for r in rows if "iface-id" in r["external_ids"]]

    def interface_ids(self, name: str) -> dict[str, str] | None:
        rows = self.ovs.tables(cmd("--columns=external_ids", "find", "Interface",
                                   f"name={quote(name)}"))[0]
        return dict(rows[0]["external_ids"]) if rows else None

    def stray_patch_ports(self, integration: str) -> list[str]:
        """Patch ports ovn-controller made on other bridges towards INTEGRATION."""
        snap = self.ovs.snapshot()
        out = []
        for bridge, port, ifaces in snap.ports_with_interfaces():
            if bridge == integration:
                continue
            for iface in ifaces:
                if iface.get("type") == "patch" and (
                        "ovn-localnet-port" in port["external_ids"]
                        or "ovn-l2gateway-port" in port["external_ids"]):
                    out.append(str(port["name"]))
        return out

    def delete_ports(self, names: Sequence[str]) -> None:
        self.ovs.transact(*ovs_adapter.del_port_cmds(names))

    # ovn-controller --------------------------------------------------------------------
    def _appctl(self, *args: str, timeout: int = 5) -> subprocess.CompletedProcess[str] | None:
        binary = shutil.which("ovn-appctl")
        if binary is None:
            return None
        try:
            return subprocess.run([binary, f"--timeout={timeout}", "-t", "ovn-controller",
                                   *args], capture_output=True, text=True, check=False,
                                  env=_env(), timeout=timeout + 5)
        except (OSError, subprocess.TimeoutExpired):
            return None

    def controller_state(self) -> dict[str, Any]:
        """running, pid, and the southbound connection as ovn-controller reports it."""
        pid = _read_pid(os.path.join(ovn_rundir(), "ovn-controller.pid"))
        proc = self._appctl("connection-status")
        running = proc is not None and proc.returncode == 0
        return {"running": running, "pid": pid if running else None,
                "connection": proc.stdout.strip() if running and proc else None}

    def controller_installed(self) -> bool:
        return shutil.which("ovn-controller") is not None and os.path.exists(OVN_CTL)

    def _ovn_ctl(self, action: str) -> None:
        argv = [OVN_CTL, action]
        if self.ovs.db and self.ovs.db.startswith("unix:"):
            argv.append(f"--db-sock={self.ovs.db.removeprefix('unix:')}")
        log.debug("ovn-ctl: %s", " ".join(argv[1:]))
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  env=_env(), timeout=CONTROLLER_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise OperationFailed(f"ovn-ctl {action} did not finish within "
                                  f"{CONTROLLER_TIMEOUT}s") from exc
        except OSError as exc:
            raise EnvironmentProblem(f"cannot run {OVN_CTL}: {exc}") from exc
        if proc.returncode != 0:
            text = (proc.stderr or proc.stdout).strip().splitlines()
            raise OperationFailed(f"ovn-ctl {action} failed: "
                                  f"{text[-1] if text else proc.returncode}")

    def start_controller(self) -> None:
        if not self.controller_installed():
            raise EnvironmentProblem("ovn-controller is not installed on this host",
                                     hint="install it: apt-get install ovn-host")
        self._ovn_ctl("start_controller")

    def stop_controller(self) -> None:
        self._ovn_ctl("stop_controller")

    # the underlay ----------------------------------------------------------------------
    def route_source(self, host: str) -> str | None:
        """The source address this host uses towards HOST (resolved if a name)."""
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            try:
                address = str(socket.getaddrinfo(host, None)[0][4][0])
            except OSError:
                return None
        # NOTE: netlink through pyroute2, as every other adapter: RTM_GETROUTE answers with
        # the preferred source the kernel would pick (what `ip route get` prints as src).
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            with IPRoute() as ipr:
                answer = ipr.route("get", dst=address)
        except NetlinkError:
            return None
        for msg in answer:
            src = msg.get_attr("RTA_PREFSRC")
            if src:
                return str(src)
        return None

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def now(self) -> float:
        return time.monotonic()


def _read_pid(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class RealOvnSide:
    """ops.ovn.OvnSide: this chassis plus the central it joined (NB from OVSBRIDGE_OVN_NB,
    else beside ovn-remote)."""

    def __init__(self, ovsdb: ovs_adapter.Ovs) -> None:
        self.chassis = RealChassis(ovsdb)

    def northbound(self) -> RealNorthbound:
        from ovsbridge.ops.ovn import nb_from_remote, parse_remote

        env = os.environ.get("OVSBRIDGE_OVN_NB")
        if env:
            return RealNorthbound(str(parse_remote(env, "OVSBRIDGE_OVN_NB", 6641)))
        derived = nb_from_remote(self.chassis.ovs_external_ids().get("ovn-remote"))
        if derived is None:
            raise EnvironmentProblem("no OVN northbound database known",
                                     hint="set OVSBRIDGE_OVN_NB=tcp:HOST:6641, or join first")
        return RealNorthbound(derived)

    def southbound(self) -> RealSouthbound:
        remote = self.chassis.ovs_external_ids().get("ovn-remote")
        if not remote:
            raise EnvironmentProblem("this host is not an OVN chassis",
                                     hint="join first: ovsbridge ovn join --central "
                                          "tcp:HOST:6642")
        return RealSouthbound(remote.split(",")[0])
