"""OVN decisions: join/leave a chassis, logical switches, and the OVN side of attach/detach.

OVN is the control plane; this module only decides what to ask of it. Adapters are passed in
(``Chassis`` for this host's OVS and ovn-controller, ``Northbound``/``Southbound`` for the
central, see system/ovn.py); every multi-step change pushes its undo right after each step,
every change to the central is one ovn-nbctl transaction, and nothing here prints.

What ``join`` changes is recorded in the Open_vSwitch row's ``external_ids`` (key
``ovsbridge.ovn-joined``: the previous value of every key it sets, and whether it created
br-int or started ovn-controller), so ``leave`` restores exactly what was there before.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ovsbridge import naming
from ovsbridge.errors import (
    BadInput,
    Conflict,
    EnvironmentProblem,
    NotFound,
    OperationFailed,
)
from ovsbridge.ops.undo import UndoStack

log = logging.getLogger(__name__)

Command = tuple[str, ...]

INTEGRATION_BRIDGE = "br-int"
K_JOINED = "ovsbridge.ovn-joined"  # on Open_vSwitch: JSON record of what join changed
JOIN_KEYS = ("system-id", "ovn-remote", "ovn-encap-type", "ovn-encap-ip",
             "ovn-bridge-datapath-type", "ovn-bridge-mappings")
# external_ids on the OVS Interface of an OVN attachment (next to naming.K_*)
K_IFACE_ID = "iface-id"  # what ovn-controller binds by
K_OVN_SWITCH = "ovsbridge.ovn_switch"
K_OVN_PORT = "ovsbridge.ovn_port"
K_OVN_CREATED = "ovsbridge.ovn_created"  # "true" when ovsbridge created the logical port
# external_ids on logical switches / ports / DHCP_Options that ovsbridge made
K_CONFIG = "ovsbridge.config"
K_STICKY = "ovsbridge.sticky."  # + port name, on the switch: "MAC IP" it had last
DHCP_SWITCH = "ovsbridge.switch"
LOCALNET_PREFIX = "ln-"
DEFAULT_LEASE = 3600
JOIN_TIMEOUT = 30.0
BIND_TIMEOUT = 30.0
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")


# ----- the seams ----------------------------------------------------------------------
class Chassis(Protocol):
    def ovs_external_ids(self) -> dict[str, str]: ...
    def ovs_uuid(self) -> str: ...
    def set_ovs_external_ids(self, values: dict[str, str], remove: Sequence[str]) -> None: ...
    def bridge_exists(self, name: str) -> bool: ...
    def create_integration_bridge(self, name: str, datapath: str | None,
                                  marker: dict[str, str]) -> None: ...
    def delete_bridge(self, name: str) -> None: ...
    def kernel_datapath(self) -> bool: ...
    def interfaces(self) -> list[dict[str, Any]]: ...
    def interface_ids(self, name: str) -> dict[str, str] | None: ...
    def stray_patch_ports(self, integration: str) -> list[str]: ...
    def delete_ports(self, names: Sequence[str]) -> None: ...
    def controller_state(self) -> dict[str, Any]: ...
    def start_controller(self) -> None: ...
    def stop_controller(self) -> None: ...
    def route_source(self, host: str) -> str | None: ...
    def sleep(self, seconds: float) -> None: ...
    def now(self) -> float: ...


class Northbound(Protocol):
    db: str

    def ping(self) -> None: ...
    def switches(self) -> list[dict[str, Any]]: ...
    def switch(self, name: str) -> dict[str, Any] | None: ...
    def port(self, name: str) -> dict[str, Any] | None: ...
    def transact(self, commands: Sequence[Command]) -> str: ...


class Southbound(Protocol):
    db: str

    def chassis(self, name: str) -> dict[str, Any] | None: ...
    def binding(self, logical_port: str) -> str | None: ...


# ----- parsing ------------------------------------------------------------------------
@dataclass(frozen=True)
class Remote:
    proto: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.proto}:{host}:{self.port}"


def parse_remote(text: str, what: str, default_port: int) -> Remote:
    """``tcp:HOST:PORT`` / ``ssl:HOST:PORT`` (IPv6 in brackets); PORT may be left out."""
    m = re.fullmatch(r"(tcp|ssl):(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?", text.strip())
    if not m:
        raise BadInput(f'{what} "{text}" is not tcp:HOST:PORT',
                       hint=f"e.g. {what} tcp:203.0.113.10:{default_port}")
    port = int(m.group(3) or default_port)
    if not 0 < port < 65536:
        raise BadInput(f'{what} port {port} is out of range', hint="give a port 1-65535")
    return Remote(m.group(1), m.group(2).strip("[]"), port)


def parse_name(text: str, what: str) -> str:
    if not _NAME_RE.match(text):
        raise BadInput(f'{what} "{text}" is not a valid name',
                       hint="use letters, digits, '.', '_' and '-' (at most 63)")
    return text


def parse_mappings(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``NETWORK:BRIDGE`` items of --bridge-mapping, each network once."""
    out: list[tuple[str, str]] = []
    for item in items:
        network, sep, bridge = item.partition(":")
        if not sep or not network or not bridge:
            raise BadInput(f'bridge mapping "{item}" is not NETWORK:BRIDGE',
                           hint="e.g. --bridge-mapping lan:ovsbr0")
        parse_name(network, "network name")
        if any(n == network for n, _ in out):
            raise BadInput(f'network "{network}" is mapped twice', hint="map it once")
        out.append((network, bridge))
    return tuple(out)


def default_system_id(ovs_uuid: str) -> str:
    """Stable and unique per OVS database: derived from its Open_vSwitch row's uuid."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ovsbridge:chassis:{ovs_uuid}"))


def nb_from_remote(remote: str | None) -> str | None:
    """The northbound address next to a southbound ``ovn-remote`` (same host, port 6641)."""
    if not remote:
        return None
    try:
        sb = parse_remote(remote.split(",")[0], "ovn-remote", 6642)
    except BadInput:
        return None
    return str(Remote(sb.proto, sb.host, 6641))


# ----- join / leave / status ----------------------------------------------------------
@dataclass(frozen=True)
class JoinOptions:
    central: Remote
    encap_ip: str | None = None
    mappings: tuple[tuple[str, str], ...] = ()
    system_id: str | None = None
    timeout: float = JOIN_TIMEOUT


@dataclass(frozen=True)
class JoinResult:
    status: str  # joined | already joined | updated
    system_id: str
    remote: str
    encap_ip: str
    mappings: tuple[tuple[str, str], ...]
    datapath: str | None
    created_bridge: bool
    started_controller: bool
    changed: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "system_id": self.system_id, "ovn_remote": self.remote,
                "encap_type": "geneve", "encap_ip": self.encap_ip,
                "bridge_mappings": [f"{n}:{b}" for n, b in self.mappings],
                "datapath_type": self.datapath, "created_br_int": self.created_bridge,
                "started_controller": self.started_controller, "changed": list(self.changed)}


def _record(ids: dict[str, str]) -> dict[str, Any] | None:
    raw = ids.get(K_JOINED)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def join(chassis: Chassis, southbound: Callable[[str], Southbound],
         opts: JoinOptions) -> JoinResult:
    ids = chassis.ovs_external_ids()
    record = _record(ids)
    remote = str(opts.central)
    if record is None and ids.get("ovn-remote") and ids["ovn-remote"] != remote:
        raise Conflict(f'this host is already an OVN chassis of {ids["ovn-remote"]} '
                       "(not configured by ovsbridge)",
                       hint="change it with ovs-vsctl, or remove ovn-remote first")
    system_id = opts.system_id or ids.get("system-id") or default_system_id(chassis.ovs_uuid())
    if record is not None and ids.get("system-id") not in (None, system_id):
        raise Conflict(f'this host already joined OVN as chassis "{ids["system-id"]}"',
                       hint="run 'ovsbridge ovn leave' first to change the system-id")
    encap_ip = opts.encap_ip or chassis.route_source(opts.central.host)
    if not encap_ip:
        raise EnvironmentProblem(f"no route from this host to the OVN central "
                                 f"{opts.central.host}",
                                 hint="fix the underlay, or pass --encap-ip")
    for network, bridge in opts.mappings:
        if not chassis.bridge_exists(bridge):
            raise NotFound(f'bridge "{bridge}" of mapping {network}:{bridge} does not exist',
                           hint="create it first with 'ovsbridge setup-bridge'")
    datapath = None if chassis.kernel_datapath() else "netdev"
    desired = {"system-id": system_id, "ovn-remote": remote, "ovn-encap-type": "geneve",
               "ovn-encap-ip": encap_ip}
    if datapath:
        desired["ovn-bridge-datapath-type"] = datapath
    if opts.mappings:
        desired["ovn-bridge-mappings"] = ",".join(f"{n}:{b}" for n, b in opts.mappings)
    changes = {k: v for k, v in desired.items() if ids.get(k) != v}

    new_record = record is None
    if record is None:
        record = {"prev": {k: ids.get(k) for k in JOIN_KEYS}, "br_int": False,
                  "controller": False}
    undo = UndoStack()
    created_bridge = started = False
    try:
        if not chassis.bridge_exists(INTEGRATION_BRIDGE):
            chassis.create_integration_bridge(INTEGRATION_BRIDGE, datapath,
                                              {naming.K_OWNER: naming.OWNER})
            undo.push("delete br-int", lambda: chassis.delete_bridge(INTEGRATION_BRIDGE))
            record["br_int"] = created_bridge = True
        undo.step_done("ovn-bridge")

        running = bool(chassis.controller_state().get("running"))
        if not running:
            record["controller"] = True
        if changes or new_record or created_bridge or not running:
            before = {k: ids[k] for k in (*changes, K_JOINED) if k in ids}
            absent = [k for k in (*changes, K_JOINED) if k not in ids]
            chassis.set_ovs_external_ids({**changes, K_JOINED: json.dumps(record)}, [])
            undo.push("restore the chassis' external_ids",
                      lambda: chassis.set_ovs_external_ids(before, absent))
        undo.step_done("ovn-config")

        if not running:
            chassis.start_controller()
            undo.push("stop ovn-controller", chassis.stop_controller)
            started = True
            _wait(chassis, opts.timeout, "ovn-controller to answer",
                  lambda: bool(chassis.controller_state().get("running")))
        undo.step_done("ovn-controller")

        _wait_chassis(chassis, southbound(remote), system_id, opts.timeout)
        undo.step_done("ovn-chassis")
        undo.commit()
    except BaseException as exc:
        raise undo.fail(exc) from None
    if new_record:
        status = "joined"
    elif changes or created_bridge or started:
        status = "updated"
    else:
        status = "already joined"
    return JoinResult(status, system_id, remote, encap_ip, opts.mappings, datapath,
                      created_bridge, started, tuple(sorted(changes)))


def _wait(chassis: Chassis, timeout: float, what: str, done: Callable[[], bool]) -> None:
    deadline = chassis.now() + timeout
    while not done():
        if chassis.now() >= deadline:
            raise OperationFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        chassis.sleep(0.2)


def _wait_chassis(chassis: Chassis, sb: Southbound, system_id: str, timeout: float) -> None:
    """Until the southbound database lists this chassis (bounded by TIMEOUT)."""
    deadline = chassis.now() + timeout
    last: Exception | None = None
    while True:
        try:
            if sb.chassis(system_id) is not None:
                return
            last = None
        except EnvironmentProblem as exc:
            last = exc
        if chassis.now() >= deadline:
            break
        chassis.sleep(0.3)
    reason = f" ({last})" if last else ""
    raise EnvironmentProblem(
        f'chassis "{system_id}" did not appear in the OVN southbound database at {sb.db} '
        f"within {timeout:.0f}s{reason}",
        hint="check that the central runs and this host reaches it on its southbound port")


@dataclass(frozen=True)
class LeaveResult:
    status: str  # left | not joined
    system_id: str | None
    restored: tuple[str, ...] = ()
    stopped_controller: bool = False
    deleted_bridge: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "system_id": self.system_id,
                "restored": list(self.restored), "stopped_controller": self.stopped_controller,
                "deleted_br_int": self.deleted_bridge}


def leave(chassis: Chassis) -> LeaveResult:
    ids = chassis.ovs_external_ids()
    record = _record(ids)
    if record is None:
        return LeaveResult("not joined", ids.get("system-id"))
    attached = sorted(i["external_ids"].get(naming.K_CONTAINER_NAME, i["name"])
                      for i in chassis.interfaces()
                      if i["external_ids"].get(naming.K_OWNER) == naming.OWNER)
    if attached:
        raise Conflict(f"{len(attached)} guest(s) are attached through OVN: "
                       f"{', '.join(attached)}",
                       hint="detach them first ('ovsbridge detach NAME')")
    stopped = deleted = False
    if record.get("controller") and chassis.controller_state().get("running"):
        chassis.stop_controller()
        stopped = True
    if record.get("br_int") and chassis.bridge_exists(INTEGRATION_BRIDGE):
        # NOTE: ovn-controller's patch ports towards br-int (one per localnet mapping) live
        # on the mapped bridges; with br-int gone they would dangle.
        strays = chassis.stray_patch_ports(INTEGRATION_BRIDGE)
        if strays:
            chassis.delete_ports(strays)
        chassis.delete_bridge(INTEGRATION_BRIDGE)
        deleted = True
    prev: dict[str, Any] = record.get("prev") or {}
    values = {k: str(v) for k, v in prev.items() if v is not None}
    remove = [k for k, v in prev.items() if v is None and k in ids] + [K_JOINED]
    chassis.set_ovs_external_ids(values, remove)
    return LeaveResult("left", ids.get("system-id"), tuple(sorted(prev)), stopped, deleted)


def status(chassis: Chassis, southbound: Callable[[str], Southbound]) -> dict[str, Any]:
    ids = chassis.ovs_external_ids()
    remote = ids.get("ovn-remote")
    system_id = ids.get("system-id")
    registered: bool | None = None
    sb_error = None
    if remote and system_id:
        try:
            registered = southbound(remote).chassis(system_id) is not None
        except EnvironmentProblem as exc:
            sb_error = exc.message
    ports = []
    for iface in chassis.interfaces():
        ext = iface["external_ids"]
        ports.append({"interface": iface["name"], "logical_port": ext.get(K_IFACE_ID),
                      "switch": ext.get(K_OVN_SWITCH),
                      "container": ext.get(naming.K_CONTAINER_NAME),
                      "bound": ext.get("ovn-installed") == "true"})
    mappings = [m for m in (ids.get("ovn-bridge-mappings") or "").split(",") if m]
    return {
        "joined": _record(ids) is not None or bool(remote),
        "by_ovsbridge": _record(ids) is not None,
        "system_id": system_id, "ovn_remote": remote,
        "encap_type": ids.get("ovn-encap-type"), "encap_ip": ids.get("ovn-encap-ip"),
        "datapath_type": ids.get("ovn-bridge-datapath-type"), "bridge_mappings": mappings,
        "integration_bridge": chassis.bridge_exists(INTEGRATION_BRIDGE),
        "controller": chassis.controller_state(),
        "registered": registered, "southbound_error": sb_error,
        "ports": sorted(ports, key=lambda p: str(p["logical_port"])),
    }


# ----- logical switches ---------------------------------------------------------------
@dataclass(frozen=True)
class SwitchSpec:
    name: str
    subnet: ipaddress.IPv4Network | None = None
    dhcp: bool = False
    router: ipaddress.IPv4Address | None = None
    dns: tuple[str, ...] = ()
    lease_time: int = DEFAULT_LEASE
    localnet: str | None = None
    vlan: int | None = None

    def config(self) -> str:
        return json.dumps({"subnet": str(self.subnet) if self.subnet else None,
                           "dhcp": self.dhcp, "router": str(self.router) if self.router else None,
                           "dns": list(self.dns), "lease_time": self.lease_time,
                           "localnet": self.localnet, "vlan": self.vlan},
                          sort_keys=True, separators=(",", ":"))


def switch_spec(name: str, subnet: str | None, dhcp: bool, router: str | None,
                dns: Sequence[str], lease_time: int | None, localnet: str | None,
                vlan: int | None) -> SwitchSpec:
    """Validate `ovn switch create`'s options into a SwitchSpec (BadInput on nonsense)."""
    parse_name(name, "switch name")
    net = None
    if subnet is not None:
        try:
            net = ipaddress.IPv4Network(subnet, strict=True)
        except ValueError as exc:
            raise BadInput(f'--subnet "{subnet}" is not an IPv4 network ({exc})',
                           hint="e.g. --subnet 198.51.100.0/24") from None
        if net.num_addresses < 4:
            raise BadInput(f"--subnet {net} is too small", hint="give a /30 or larger")
    if dhcp and net is None:
        raise BadInput("--dhcp needs --subnet", hint="e.g. --subnet 198.51.100.0/24 --dhcp")
    if (router or dns or lease_time) and not dhcp:
        raise BadInput("--router, --dns and --lease-time need --dhcp", hint="add --dhcp")
    if vlan is not None and localnet is None:
        raise BadInput("--vlan needs --localnet", hint="e.g. --localnet lan --vlan 20")
    if vlan is not None and not 0 < vlan < 4095:
        raise BadInput(f"--vlan {vlan} is out of range", hint="give a VLAN id 1-4094")
    if localnet is not None:
        parse_name(localnet, "--localnet network name")
    gw = None
    if dhcp:
        assert net is not None
        try:
            gw = ipaddress.IPv4Address(router) if router else next(net.hosts())
        except ValueError:
            raise BadInput(f'--router "{router}" is not an IPv4 address',
                           hint="e.g. --router 198.51.100.1") from None
        if gw not in net:
            raise BadInput(f"--router {gw} is not in --subnet {net}",
                           hint="give an address inside the subnet")
        for item in dns:
            try:
                ipaddress.IPv4Address(item)
            except ValueError:
                raise BadInput(f'--dns "{item}" is not an IPv4 address',
                               hint="e.g. --dns 198.51.100.1") from None
        if lease_time is not None and lease_time < 60:
            raise BadInput(f"--lease-time {lease_time} is too short", hint="give 60 or more")
    return SwitchSpec(name, net, dhcp, gw, tuple(dns) or ((str(gw),) if gw else ()),
                      lease_time or DEFAULT_LEASE, localnet, vlan)


def _q(value: str) -> str:
    return json.dumps(value)


def create_switch_cmds(spec: SwitchSpec) -> list[Command]:
    """The ONE transaction that makes the switch, its DHCP options and localnet port."""
    owner = f"external_ids:{naming.K_OWNER}={naming.OWNER}"
    sets = [owner, f"external_ids:{K_CONFIG}={_q(spec.config())}"]
    if spec.subnet is not None:
        sets.append(f"other_config:subnet={_q(str(spec.subnet))}")
        if spec.router is not None:
            sets.append(f"other_config:exclude_ips={_q(str(spec.router))}")
    cmds: list[Command] = [("ls-add", spec.name), ("set", "Logical_Switch", spec.name, *sets)]
    if spec.dhcp:
        assert spec.subnet is not None and spec.router is not None
        server_mac = naming.stable_mac("ovn-dhcp", spec.name)
        options = {"lease_time": str(spec.lease_time), "router": str(spec.router),
                   "server_id": str(spec.router), "server_mac": server_mac,
                   "dns_server": "{" + ",".join(spec.dns) + "}"}
        cmds.append(("create", "DHCP_Options", f"cidr={_q(str(spec.subnet))}",
                     *(f"options:{k}={_q(v)}" for k, v in sorted(options.items())),
                     owner, f"external_ids:{DHCP_SWITCH}={_q(spec.name)}"))
    if spec.localnet is not None:
        port = LOCALNET_PREFIX + spec.name
        cmds += [("lsp-add", spec.name, port), ("lsp-set-type", port, "localnet"),
                 ("lsp-set-addresses", port, "unknown"),
                 ("lsp-set-options", port, f"network_name={spec.localnet}")]
        extra = [owner]
        if spec.vlan is not None:
            extra.append(f"tag={spec.vlan}")
        cmds.append(("set", "Logical_Switch_Port", port, *extra))
    return cmds


def create_switch(nb: Northbound, spec: SwitchSpec) -> dict[str, Any]:
    existing = nb.switch(spec.name)
    if existing is not None:
        if existing["external_ids"].get(K_CONFIG) == spec.config():
            return {"status": "already exists", **switch_summary(existing)}
        raise Conflict(f'logical switch "{spec.name}" already exists with another '
                       "configuration",
                       hint=f"delete it first ('ovsbridge ovn switch delete {spec.name}')")
    nb.transact(create_switch_cmds(spec))
    created = nb.switch(spec.name)
    if created is None:
        raise OperationFailed(f'logical switch "{spec.name}" vanished right after creation')
    return {"status": "created", **switch_summary(created)}


def delete_switch(nb: Northbound, name: str) -> dict[str, Any]:
    sw = nb.switch(name)
    if sw is None:
        return {"status": "already absent", "name": name}
    if sw["external_ids"].get(naming.K_OWNER) != naming.OWNER:
        raise Conflict(f'logical switch "{name}" was not created by ovsbridge',
                       hint=f"delete it with ovn-nbctl ls-del {name}")
    vifs = sorted(p["name"] for p in sw["ports"] if not p["type"])
    if vifs:
        raise Conflict(f'logical switch "{name}" still has {len(vifs)} port(s): '
                       f"{', '.join(vifs)}",
                       hint="detach those containers first")
    cmds: list[Command] = [("--if-exists", "ls-del", name)]
    cmds += [("destroy", "DHCP_Options", d["_uuid"]) for d in sw["dhcp"]]
    nb.transact(cmds)
    return {"status": "deleted", "name": name}


def switch_summary(sw: dict[str, Any]) -> dict[str, Any]:
    localnet = next((p for p in sw["ports"] if p["type"] == "localnet"), None)
    dhcp = sw["dhcp"][0] if sw["dhcp"] else None
    return {
        "name": sw["name"], "subnet": sw["other_config"].get("subnet"),
        "dhcp": ({"cidr": dhcp["cidr"], **dhcp["options"]} if dhcp else None),
        "localnet": (localnet["options"].get("network_name") if localnet else None),
        "vlan": localnet["tag"] if localnet else None,
        "ports": sorted(p["name"] for p in sw["ports"] if not p["type"]),
        "owner": sw["external_ids"].get(naming.K_OWNER),
    }


def list_switches(nb: Northbound) -> list[dict[str, Any]]:
    return [switch_summary(s) for s in nb.switches()]


# ----- the OVN side of attach / detach ------------------------------------------------
@dataclass(frozen=True)
class OvnAttachment:
    switch: str
    port: str
    mac: str
    addresses: tuple[str, ...]  # the LSP's addresses column ("MAC IP..." or "MAC dynamic")
    created: bool
    notes: tuple[str, ...] = field(default=())

    def external_ids(self) -> dict[str, str]:
        return {K_IFACE_ID: self.port, K_OVN_SWITCH: self.switch, K_OVN_PORT: self.port,
                K_OVN_CREATED: "true" if self.created else "false"}


def port_name(guest_name: str, ifname: str) -> str:
    """The logical port of GUEST's IFNAME: the container's name (plus ifname if not eth1)."""
    base = re.sub(r"[^A-Za-z0-9_.\-]", "-", guest_name.lstrip("/")) or "guest"
    return base if ifname == "eth1" else f"{base}-{ifname}"


def _lsp_mac(lsp: dict[str, Any]) -> str | None:
    for entry in lsp["addresses"]:
        first = str(entry).split()[0] if str(entry).split() else ""
        if re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", first):
            return first.lower()
    return None


def _in_use(sw: dict[str, Any], ip: str, except_port: str) -> bool:
    for p in sw["ports"]:
        if p["name"] == except_port:
            continue
        words = " ".join([*map(str, p["addresses"]), str(p.get("dynamic_addresses") or "")])
        if ip in words.split():
            return True
    return False


def check_binding(sb: Southbound, port: str, chassis_name: str) -> None:
    bound = sb.binding(port)
    if bound is not None and bound != chassis_name:
        raise Conflict(f'logical port "{port}" is bound to chassis "{bound}"',
                       hint="detach it on that host first (a move is: detach there, "
                            "attach here)")


def prepare_port(nb: Northbound, sb: Southbound, undo: UndoStack, *, chassis_name: str,
                 switch: str | None, port: str | None, guest_name: str, guest_key: str,
                 ifname: str, mac: str, mac_given: bool, statics: Sequence[str],
                 dhcp: bool) -> OvnAttachment:
    """Find or create the logical switch port an attachment binds to (undo pushed)."""
    if port is not None:
        lsp = nb.port(port)
        if lsp is None:
            raise NotFound(f'logical port "{port}" does not exist',
                           hint="create it in OVN first, or use --ovn-switch NAME")
        if switch is not None and lsp.get("switch") != switch:
            raise Conflict(f'logical port "{port}" is on switch "{lsp.get("switch")}", '
                           f'not "{switch}"', hint="give the right --ovn-switch, or leave it out")
        check_binding(sb, port, chassis_name)
        return _existing(lsp, port, mac, mac_given, created=False)

    assert switch is not None
    sw = nb.switch(switch)
    if sw is None:
        raise NotFound(f'logical switch "{switch}" does not exist',
                       hint=f"create it: ovsbridge ovn switch create {switch}")
    name = port_name(guest_name, ifname)
    lsp = nb.port(name)
    if lsp is not None:
        if lsp.get("switch") != switch:
            raise Conflict(f'logical port "{name}" exists on switch "{lsp.get("switch")}"',
                           hint="detach it there first, or pick another --ifname")
        check_binding(sb, name, chassis_name)
        ours = lsp["external_ids"].get(naming.K_OWNER) == naming.OWNER
        return _existing(lsp, name, mac, mac_given, created=ours)

    sticky = str(sw["external_ids"].get(K_STICKY + name, "")).split()
    notes: list[str] = []
    if len(sticky) == 2 and not mac_given:
        mac = sticky[0]  # NOTE: a move: the port had this MAC (and address) before
    ips = [s.split("/")[0].split("@")[0] for s in statics]
    if ips:
        addresses = f"{mac} {' '.join(ips)}"
        security = addresses
    elif dhcp and sw["other_config"].get("subnet"):
        if len(sticky) == 2 and sticky[0] == mac and not _in_use(sw, sticky[1], name):
            addresses = f"{mac} {sticky[1]}"
        else:
            if len(sticky) == 2:
                notes.append(f"the previous address {sticky[1]} is taken; OVN gives a new one")
            addresses = f"{mac} dynamic"
        security = mac
    else:
        addresses = mac
        security = mac
    sets = [f"external_ids:{naming.K_OWNER}={naming.OWNER}",
            f"external_ids:{naming.K_CONTAINER_NAME}={_q(guest_name)}",
            f"external_ids:{naming.K_CONTAINER_ID}={_q(guest_key)}",
            f"external_ids:{naming.K_IFNAME}={_q(ifname)}"]
    if dhcp and sw["dhcp"]:
        sets.append(f"dhcpv4_options={sw['dhcp'][0]['_uuid']}")
    create: list[Command] = [("lsp-add", switch, name), ("lsp-set-addresses", name, addresses),
                             ("lsp-set-port-security", name, security),
                             ("set", "Logical_Switch_Port", name, *sets)]
    delete: list[Command] = [("--if-exists", "lsp-del", name)]
    if sticky:  # the reservation is used up by the port; put back on rollback
        key = _q(K_STICKY + name)
        create.append(("remove", "Logical_Switch", switch, "external_ids", key))
        delete.append(("set", "Logical_Switch", switch,
                       f"external_ids:{key}={_q(' '.join(sticky))}"))
    nb.transact(create)
    undo.push(f"delete logical port {name}", lambda: nb.transact(delete))
    undo.step_done("ovn-port")
    return OvnAttachment(switch, name, mac, (addresses,), True, tuple(notes))


def _existing(lsp: dict[str, Any], name: str, mac: str, mac_given: bool,
              created: bool) -> OvnAttachment:
    lsp_mac = _lsp_mac(lsp)
    if lsp_mac is not None and mac_given and lsp_mac != mac.lower():
        raise Conflict(f'logical port "{name}" has MAC {lsp_mac}, not {mac}',
                       hint="leave out --mac: the logical port's MAC is used")
    return OvnAttachment(str(lsp.get("switch") or ""), name, lsp_mac or mac,
                         tuple(map(str, lsp["addresses"])), created)


def wait_bound(chassis: Chassis, sb: Southbound, host_ifname: str, port: str,
               chassis_name: str, timeout: float = BIND_TIMEOUT) -> None:
    """Until ovn-controller has installed PORT's flows here (``ovn-installed``) and the
    southbound database shows the binding on this chassis (re-read and verify)."""
    deadline = chassis.now() + timeout
    bound: str | None = None
    while True:
        ids = chassis.interface_ids(host_ifname) or {}
        if ids.get("ovn-installed") == "true":
            # NOTE: right after a port of the same name was deleted (a move), ovn-northd may
            # still show the old binding, or re-create the row: wait for it to settle.
            bound = sb.binding(port)
            if bound == chassis_name:
                return
        if chassis.now() >= deadline:
            if bound is not None:
                raise Conflict(f'logical port "{port}" is bound to chassis "{bound}"',
                               hint="detach it on that host first")
            raise OperationFailed(
                f'logical port "{port}" was not bound to this chassis within {timeout:.0f}s',
                hint="check 'ovsbridge ovn status': is ovn-controller running and connected "
                     "to the central?")
        chassis.sleep(0.2)


def release_port(nb: Northbound, sb: Southbound, chassis_name: str,
                 ids: dict[str, str]) -> str:
    """After the local binding is gone: delete the logical port ovsbridge created, unless
    another chassis holds it by now. Returns what happened (for logs and results)."""
    port = ids.get(K_OVN_PORT)
    if not port:
        return "no logical port"
    if ids.get(K_OVN_CREATED) != "true":
        return f"kept logical port {port} (not created by ovsbridge)"
    lsp = nb.port(port)
    if lsp is None:
        return f"logical port {port} already gone"
    if lsp["external_ids"].get(naming.K_OWNER) != naming.OWNER:
        return f"kept logical port {port} (not ovsbridge's)"
    bound = sb.binding(port)
    if bound is not None and bound != chassis_name:
        return f"kept logical port {port}: bound on chassis {bound}"
    cmds: list[Command] = [("--if-exists", "lsp-del", port)]
    switch = lsp.get("switch")
    ip = _address_of(lsp)
    mac = _lsp_mac(lsp)
    if switch and ip and mac:
        cmds.append(("set", "Logical_Switch", switch,
                     f"external_ids:{_q(K_STICKY + port)}={_q(f'{mac} {ip}')}"))
    nb.transact(cmds)
    return f"deleted logical port {port}"


def _address_of(lsp: dict[str, Any]) -> str | None:
    words = " ".join([*map(str, lsp["addresses"]), str(lsp.get("dynamic_addresses") or "")])
    for word in words.split():
        try:
            return str(ipaddress.IPv4Address(word))
        except ValueError:
            continue
    return None


# ----- hooks called by ops/attach.py (the few lines there) ----------------------------
class OvnSide(Protocol):
    """What attach/detach need of OVN, from ``Backend.ovn()`` (system/ovn.py RealOvnSide)."""

    chassis: Chassis

    def northbound(self) -> Northbound: ...
    def southbound(self) -> Southbound: ...


def _local(side: OvnSide) -> tuple[str, str]:
    """(system-id, integration bridge) of this chassis; EnvironmentProblem if not joined."""
    ids = side.chassis.ovs_external_ids()
    system_id = ids.get("system-id")
    if not system_id or not ids.get("ovn-remote"):
        raise EnvironmentProblem("this host is not an OVN chassis",
                                 hint="join first: ovsbridge ovn join --central tcp:HOST:6642")
    return system_id, ids.get("ovn-bridge") or INTEGRATION_BRIDGE


def attach_prepare(backend: Any, req: Any, guest: Any, mac: str,
                   undo: UndoStack) -> OvnAttachment | None:
    """Before the veth exists: validate, find or create the logical port. None without OVN."""
    switch = getattr(req, "ovn_switch", None)
    port = getattr(req, "ovn_port", None)
    if switch is None and port is None:
        return None
    if switch is not None:
        parse_name(switch, "--ovn-switch")
    if port is not None:
        parse_name(port, "--ovn-port")
    side: OvnSide = backend.ovn()
    system_id, integration = _local(side)
    if req.bridge != integration:
        raise BadInput(f'an OVN attachment goes on the integration bridge "{integration}", '
                       f'not "{req.bridge}"', hint=f"attach {integration} GUEST ADDRESS ...")
    if req.vlan is not None:
        raise BadInput("--vlan does not apply to an OVN port",
                       hint="put the VLAN on the switch: ovn switch create --localnet "
                            "NET --vlan N")
    nb = side.northbound()
    if switch is not None and req.plan.mode == "dhcp":
        sw = nb.switch(switch)
        if sw is not None and not sw["dhcp"] and not any(
                p["type"] == "localnet" for p in sw["ports"]):
            raise BadInput(f'logical switch "{switch}" has no DHCP server',
                           hint="create it with --dhcp (OVN's DHCP) or --localnet (the LAN's)")
    statics = [str(s) for s in req.plan.statics]
    return prepare_port(nb, side.southbound(), undo, chassis_name=system_id, switch=switch,
                        port=port, guest_name=guest.name, guest_key=guest.key,
                        ifname=req.ifname, mac=mac, mac_given=req.mac is not None,
                        statics=statics, dhcp=req.plan.mode == "dhcp")


def attach_bound(backend: Any, att: OvnAttachment, host_ifname: str, undo: UndoStack,
                 timeout: float = BIND_TIMEOUT) -> None:
    """After the OVS port exists: wait (bounded) until this chassis has bound it."""
    side: OvnSide = backend.ovn()
    system_id, _ = _local(side)
    wait_bound(side.chassis, side.southbound(), host_ifname, att.port, system_id, timeout)
    undo.step_done("ovn-bound")


def detach_release(backend: Any, ids: dict[str, str]) -> str:
    """After the OVS port is gone: drop the logical port ovsbridge created (if nobody else
    holds it). A central that cannot be reached leaves the logical port for cleanup."""
    if not ids.get(K_OVN_PORT):
        return "no logical port"
    side: OvnSide = backend.ovn()
    try:
        system_id, _ = _local(side)
        return release_port(side.northbound(), side.southbound(), system_id, ids)
    except EnvironmentProblem as exc:
        log.warning("logical port %s left in OVN: %s", ids.get(K_OVN_PORT), exc.message)
        return f"kept logical port {ids.get(K_OVN_PORT)}: {exc.message}"
