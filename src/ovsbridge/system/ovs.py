"""ovs-vsctl adapter: OVS commands are values, joined with ``--`` into one transaction.

Every call is one ``ovs-vsctl --timeout=N --format=json`` process, so a logical change is
atomic in OVSDB. Reads parse the JSON tables into plain dicts. Failures become domain
errors: an unreachable database is an environment problem (exit 5), a refused transaction
an operation failure carrying ovs-vsctl's own message.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ovsbridge.errors import EnvironmentProblem, NotFound, OperationFailed, VswitchdNotApplied

log = logging.getLogger(__name__)

Command = tuple[str, ...]

PORT_COLUMNS = ("_uuid", "name", "interfaces", "tag", "external_ids")
IFACE_COLUMNS = ("_uuid", "name", "ofport", "type", "error", "mtu", "mtu_request",
                 "mac_in_use", "external_ids", "options", "link_state")
BRIDGE_COLUMNS = ("_uuid", "name", "ports", "datapath_type", "external_ids", "other_config")


def cmd(*args: str) -> Command:
    return tuple(args)


def ovsdb_value(raw: Any) -> Any:
    """Turn OVSDB JSON (``["map", ...]``, ``["set", ...]``, ``["uuid", ...]``) into Python."""
    if isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str):
        tag, body = raw
        if tag == "map":
            return {ovsdb_value(k): ovsdb_value(v) for k, v in body}
        if tag == "set":
            return [ovsdb_value(v) for v in body]
        if tag in ("uuid", "named-uuid"):
            return body
    return raw


def scalar(value: Any) -> Any:
    """An optional column (an empty set when unset) as a value or None."""
    if isinstance(value, list):
        return value[0] if len(value) == 1 else None
    return value


def quote_value(value: str) -> str:
    """Quote a string for an ovs-vsctl ``key=value`` argument."""
    return json.dumps(value)


def external_ids_args(table: str, record: str, ids: dict[str, str]) -> Command:
    sets = [f"external_ids:{k}={quote_value(v)}" for k, v in sorted(ids.items())]
    return cmd("set", table, record, *sets)


@dataclass(frozen=True)
class Ovs:
    """One OVSDB, reached through ovs-vsctl (``db`` as ``ovs-vsctl --db``)."""

    db: str | None = None
    timeout: int = 5  # seconds: ovs-vsctl's own alarm for the whole call

    def _argv(self, commands: Sequence[Command]) -> list[str]:
        binary = shutil.which("ovs-vsctl")
        if binary is None:
            raise EnvironmentProblem(
                "ovs-vsctl is not installed",
                hint="install Open vSwitch: apt-get install openvswitch-switch",
            )
        argv = [binary, f"--timeout={self.timeout}", "--format=json"]
        if self.db:
            argv.append(f"--db={self.db}")
        for command in commands:
            argv.append("--")
            argv.extend(command)
        return argv

    def run(self, *commands: Command, ok_codes: Iterable[int] = (0,)) -> tuple[int, str]:
        """Run COMMANDS as one OVSDB transaction; returns (exit code, stdout)."""
        argv = self._argv(commands)
        log.debug("ovs-vsctl: %s", " ".join(argv[1:]))
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  env=_c_locale(), timeout=self.timeout + 5)
        except subprocess.TimeoutExpired as exc:
            raise self._alarm_cause(self.db or "the default OVSDB socket") from exc
        except OSError as exc:
            raise EnvironmentProblem(f"cannot run ovs-vsctl: {exc}") from exc
        if proc.returncode not in tuple(ok_codes):
            raise self._translate(proc)
        return proc.returncode, proc.stdout

    def _translate(self, proc: subprocess.CompletedProcess[str]) -> Exception:
        text = (proc.stderr or proc.stdout).strip().splitlines()
        first = text[-1] if text else f"exit code {proc.returncode}"
        first = first.removeprefix("ovs-vsctl: ")
        lowered = first.lower()
        from ovsbridge.system import ovsdb

        where = self.db or ovsdb.default_target()
        # NOTE: ovs-vsctl arms alarm(--timeout) for the whole run; when it fires (exit 142,
        # "terminating with signal 14 (Alarm clock)") it was either waiting for ovs-vswitchd
        # to apply a committed change or for a silent ovsdb-server. One quick OVSDB probe
        # tells which.
        if proc.returncode in (142, -14) or "alarm clock" in lowered:
            return self._alarm_cause(where)
        if "database connection failed" in lowered:
            return EnvironmentProblem(
                f"ovsdb-server is not running at {where}",
                hint="start Open vSwitch (ovs-ctl start) or pass --db / OVSBRIDGE_DB",
            )
        if "timed out" in lowered:
            return EnvironmentProblem(
                f"ovsdb-server at {where} does not answer",
                hint="check ovsdb-server or restart Open vSwitch (ovs-ctl restart)",
            )
        if "no bridge named" in lowered:
            return NotFound(f"OVS says: {first}",
                            hint="create it with 'ovsbridge setup-bridge' or --create-bridge")
        return OperationFailed(f"OVS refused the change: {first}")

    def _alarm_cause(self, where: str) -> EnvironmentProblem:
        from ovsbridge.system import ovsdb

        probe = ovsdb.OvsdbClient(self.db, timeout=1.0)
        try:
            probe.select("Open_vSwitch", [], ["cur_cfg"])
        except EnvironmentProblem as exc:
            return exc
        finally:
            probe.close()
        return VswitchdNotApplied(
            "ovs-vswitchd is not running (the change was not applied)",
            hint="start Open vSwitch (ovs-ctl start); ovs-vswitchd applies the change when "
                 "it comes back", db=where,
        )

    def transact(self, *commands: Command) -> None:
        if commands:
            self.run(*commands)

    def tables(self, *queries: Command) -> list[list[dict[str, Any]]]:
        """Run several ``list``/``find`` queries in one call; one list of rows per query."""
        _, out = self.run(*queries)
        results = []
        for line in out.splitlines():
            line = line.strip()
            if not line:
                continue
            doc = json.loads(line)
            heads = doc["headings"]
            results.append([
                {h: ovsdb_value(v) for h, v in zip(heads, row, strict=True)} for row in doc["data"]
            ])
        if len(results) != len(queries):
            raise OperationFailed(f"unexpected ovs-vsctl output: {out[:200]!r}")
        return results

    # ----- reads -----------------------------------------------------------------
    def ping(self) -> None:
        self.run(cmd("show"))

    def bridge(self, name: str) -> dict[str, Any] | None:
        rows = self.tables(cmd(f"--columns={','.join(BRIDGE_COLUMNS)}", "find", "Bridge",
                               f"name={quote_value(name)}"))[0]
        return rows[0] if rows else None

    def snapshot(self) -> Snapshot:
        """Bridges, ports and interfaces in one read."""
        bridges, ports, ifaces = self.tables(
            cmd(f"--columns={','.join(BRIDGE_COLUMNS)}", "list", "Bridge"),
            cmd(f"--columns={','.join(PORT_COLUMNS)}", "list", "Port"),
            cmd(f"--columns={','.join(IFACE_COLUMNS)}", "list", "Interface"),
        )
        return Snapshot(bridges, ports, ifaces)

    def interface_mtu(self, name: str) -> int | None:
        _, out = self.run(cmd("get", "Interface", name, "mtu"))
        text = out.strip()
        return int(text) if text.isdigit() else None


@dataclass(frozen=True)
class Snapshot:
    bridges: list[dict[str, Any]]
    ports: list[dict[str, Any]]
    interfaces: list[dict[str, Any]]

    def port_bridge(self) -> dict[str, str]:
        """Port uuid -> bridge name."""
        out: dict[str, str] = {}
        for br in self.bridges:
            for port in _as_list(br["ports"]):
                out[port] = br["name"]
        return out

    def iface_by_uuid(self) -> dict[str, dict[str, Any]]:
        return {i["_uuid"]: i for i in self.interfaces}

    def ports_with_interfaces(self) -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
        """(bridge name, port row, its interface rows) for every port on a bridge."""
        owner = self.port_bridge()
        ifaces = self.iface_by_uuid()
        rows = []
        for port in self.ports:
            bridge = owner.get(port["_uuid"])
            if bridge is None:
                continue
            members = [ifaces[u] for u in _as_list(port["interfaces"]) if u in ifaces]
            rows.append((bridge, port, members))
        return rows


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _c_locale() -> dict[str, str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    return env


def kernel_datapath_available() -> bool:
    """True when the openvswitch kernel module is loaded (or built in)."""
    return os.path.isdir("/sys/module/openvswitch")


def auto_datapath() -> str:
    return "system" if kernel_datapath_available() else "netdev"


# ----- domain-level changes: each is ONE transaction ------------------------------------
BRIDGE_MTU = 1500


def add_bridge_cmds(name: str, datapath: str) -> list[Command]:
    # NOTE: mtu_request pins the bridge's own MTU; without it OVS lowers the internal port
    # to the smallest MTU of its ports.
    return [cmd("--may-exist", "add-br", name),
            cmd("set", "Bridge", name, f"datapath_type={datapath}"),
            cmd("set", "Interface", name, f"mtu_request={BRIDGE_MTU}")]


def add_port_cmds(bridge: str, port: str, external_ids: dict[str, str],
                  vlan: int | None) -> list[Command]:
    add = ["add-port", bridge, port]
    if vlan is not None:
        add.append(f"tag={vlan}")
    return [cmd(*add), external_ids_args("Interface", port, external_ids)]


def del_port_cmds(ports: Iterable[str]) -> list[Command]:
    return [cmd("--if-exists", "del-port", p) for p in ports]
