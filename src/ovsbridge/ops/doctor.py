"""doctor: is this host ready for ovsbridge, and what is wrong with its bridges?

Decisions only: the facts come from a ``DoctorFacts`` adapter (system/doctor_facts.py; fakes
in unit tests), and ``diagnose`` returns a report of checks, each ``ok``, ``warning`` or
``fail`` with what was seen and, when not ok, the fix. Nothing here prints or changes the
host (the optional DHCP probe is the adapter's: a DISCOVER from a throwaway netns, never a
REQUEST, so nothing is leased).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ovsbridge.errors import OvsbridgeError
from ovsbridge.ops.backend import OvsPort

Status = Literal["ok", "warning", "fail"]
K_UPLINK = "ovsbridge.uplink"  # as ops/uplink.py writes it on the bridge


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str
    fix: str | None = None
    subject: str | None = None  # the bridge or port it is about

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "status": self.status, "message": self.message,
                "fix": self.fix, "subject": self.subject}


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "warning": 0, "fail": 0}
        for check in self.checks:
            out[check.status] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"ok": not self.failed, "counts": self.counts(),
                "checks": [c.to_json() for c in self.checks]}


@dataclass(frozen=True)
class BridgeFacts:
    name: str
    datapath: str  # system | netdev
    mtu: int | None
    external_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DockerFacts:
    api_version: str | None
    server_version: str | None
    rootless: bool
    error: str | None = None  # why Docker could not be reached


@dataclass(frozen=True)
class UplinkFacts:
    uplink: str
    in_bridge: bool
    exists: bool
    up: bool
    uplink_addresses: tuple[str, ...]
    bridge_addresses: tuple[str, ...]
    default_dev: str | None  # the device of the IPv4 default route, if any


@dataclass(frozen=True)
class ProbeResult:
    server: str | None  # the server id of the first OFFER, None: no offer
    offered: str | None
    seconds: float


class DoctorFacts(Protocol):
    def is_root(self) -> bool: ...
    def ovs_version(self) -> str: ...  # raises OvsbridgeError when OVS is unreachable
    def kernel_datapath(self) -> bool: ...
    def bridges(self) -> list[BridgeFacts]: ...
    def ports(self, bridge: str) -> list[OvsPort]: ...
    def port_mtu(self, port: str) -> int | None: ...
    def link_kind(self, name: str) -> str | None: ...  # veth, tun, ... None: absent/NIC
    def tx_checksum_on(self, name: str) -> bool | None: ...
    def docker(self) -> DockerFacts: ...
    def daemon_version(self) -> str | None: ...  # None: no daemon answers
    def stale_ports(self, bridge: str) -> list[tuple[str, str]]: ...  # (port, reason)
    def dhcp_probe(self, bridge: str, timeout: float) -> ProbeResult: ...
    def uplink(self, bridge: str, uplink: str) -> UplinkFacts: ...


def diagnose(facts: DoctorFacts, cli_version: str, *, bridge: str | None = None,
             dhcp_probe: bool = False, probe_timeout: float = 5.0) -> DoctorReport:
    checks: list[Check] = []
    root = facts.is_root()
    checks.append(Check("root", "ok", "running as root") if root else Check(
        "root", "fail", "not running as root: ovsbridge changes network namespaces and OVS",
        "run it with sudo"))
    try:
        version = facts.ovs_version()
    except OvsbridgeError as exc:
        checks.append(Check("ovs", "fail", exc.message,
                            exc.hint or "start Open vSwitch (ovs-ctl start, or systemctl start "
                                        "openvswitch-switch), or point --db at its socket"))
        bridges: list[BridgeFacts] = []
        ovs_ok = False
    else:
        checks.append(Check("ovs", "ok", f"Open vSwitch {version} reachable"))
        bridges = facts.bridges()
        ovs_ok = True
    kernel = facts.kernel_datapath()
    checks.extend(_datapath_checks(kernel, bridges))
    checks.append(_docker_check(facts.docker()))
    checks.append(_daemon_check(facts.daemon_version(), cli_version))
    if not ovs_ok:
        return DoctorReport(tuple(checks))
    chosen = bridges
    if bridge is not None:
        chosen = [b for b in bridges if b.name == bridge]
        if not chosen:
            checks.append(Check("bridge", "fail", f'bridge "{bridge}" does not exist',
                                "create it: ovsbridge setup-bridge UPLINK --bridge "
                                f"{bridge} (or ovs-vsctl add-br {bridge})", bridge))
            return DoctorReport(tuple(checks))
    for item in chosen:
        ports = facts.ports(item.name) if root else []
        checks.extend(_offload_checks(facts, item, ports))
        checks.extend(_mtu_checks(facts, item, ports))
        if root:
            checks.append(_stale_check(item.name, facts.stale_ports(item.name)))
        uplink = item.external_ids.get(K_UPLINK)
        if uplink:
            checks.append(_uplink_check(item.name, facts.uplink(item.name, uplink)))
        if dhcp_probe and root:
            checks.append(_dhcp_check(item.name, facts.dhcp_probe(item.name, probe_timeout)))
    return DoctorReport(tuple(checks))


def _datapath_checks(kernel: bool, bridges: Sequence[BridgeFacts]) -> list[Check]:
    out = [Check("datapath", "ok", "kernel datapath: the openvswitch module is loaded") if kernel
           else Check("datapath", "ok", "userspace datapath only (no openvswitch kernel "
                                        "module): bridges need datapath_type=netdev")]
    for item in bridges:
        if item.datapath in ("", "system") and not kernel:
            out.append(Check("datapath", "fail",
                             f"bridge {item.name} uses the kernel datapath, but the "
                             "openvswitch module is not loaded: it forwards nothing",
                             f"modprobe openvswitch, or ovs-vsctl set Bridge {item.name} "
                             "datapath_type=netdev", item.name))
    return out


def _docker_check(docker: DockerFacts) -> Check:
    if docker.error is not None:
        return Check("docker", "fail", f"dockerd not reachable: {docker.error}",
                     "start dockerd, or set DOCKER_HOST to its socket")
    if docker.rootless:
        return Check("docker", "fail",
                     f"Docker {docker.server_version} is rootless: its containers live in "
                     "RootlessKit's user and network namespaces, which a root OVS bridge "
                     "cannot reach", "use the rootful dockerd (DOCKER_HOST=unix:///var/run/"
                                     "docker.sock) for containers on OVS")
    return Check("docker", "ok", f"dockerd {docker.server_version} reachable, API "
                                 f"{docker.api_version}")


def _daemon_check(version: str | None, cli_version: str) -> Check:
    if version is None:
        return Check("daemon", "warning", "the ovsbridge daemon is not running: DHCP leases "
                                          "are not renewed and containers are not watched",
                     "the next attach starts it; or run 'ovsbridge daemon run' under systemd")
    if version != cli_version:
        return Check("daemon", "warning", f"the daemon runs ovsbridge {version}, this CLI is "
                                          f"{cli_version}",
                     "restart it: ovsbridge daemon stop (the next command starts the new one)")
    return Check("daemon", "ok", f"daemon running, version {version} (same as the CLI)")


def _offload_checks(facts: DoctorFacts, item: BridgeFacts,
                    ports: Sequence[OvsPort]) -> list[Check]:
    if item.datapath != "netdev":
        return []
    out = []
    checked = 0
    for port in ports:
        if port.iface_type not in ("", "system") or facts.link_kind(port.port) != "veth":
            continue
        checked += 1
        if facts.tx_checksum_on(port.port):
            foreign = any(k.startswith("pipework.") for k in port.external_ids) or \
                "container_id" in port.external_ids
            fix = (f"ovsbridge adopt {item.name} --port {port.port} (turns it off on both "
                   f"ends), or ethtool -K {port.port} tx off and the same inside the container"
                   if foreign else f"ethtool -K {port.port} tx off, and the same on its peer")
            out.append(Check("offload", "warning",
                             f"port {port.port} on userspace bridge {item.name} has TX checksum "
                             "offload on: its TCP and UDP packets leave with bad checksums",
                             fix, port.port))
    if not out:
        out.append(Check("offload", "ok", f"TX checksum offload off on the {checked} veth "
                                          f"port(s) of {item.name}", subject=item.name))
    return out


def _mtu_checks(facts: DoctorFacts, item: BridgeFacts, ports: Sequence[OvsPort]) -> list[Check]:
    if item.mtu is None:
        return []
    out = []
    for port in ports:
        if port.iface_type not in ("", "system"):
            continue
        mtu = facts.port_mtu(port.port)
        if mtu is not None and mtu != item.mtu:
            out.append(Check("mtu", "warning", f"port {port.port} has MTU {mtu}, bridge "
                                               f"{item.name} {item.mtu}",
                             f"ovs-vsctl set Interface {port.port} mtu_request={item.mtu} "
                             "(and the same MTU inside the container)", port.port))
    if not out:
        out.append(Check("mtu", "ok", f"every port of {item.name} has its MTU {item.mtu}",
                         subject=item.name))
    return out


def _stale_check(bridge: str, stale: Sequence[tuple[str, str]]) -> Check:
    if not stale:
        return Check("stale-ports", "ok", f"no stale port on {bridge}", subject=bridge)
    listed = ", ".join(f"{port} ({reason})" for port, reason in stale[:5])
    more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
    return Check("stale-ports", "warning", f"{len(stale)} stale port(s) on {bridge}: "
                                           f"{listed}{more}",
                 f"ovsbridge cleanup --bridge {bridge}", bridge)


def _uplink_check(bridge: str, up: UplinkFacts) -> Check:
    if not up.exists:
        return Check("uplink", "fail", f"uplink {up.uplink} of {bridge} does not exist",
                     f"ovsbridge teardown-bridge {bridge}, then setup-bridge again", bridge)
    if not up.in_bridge:
        return Check("uplink", "fail", f"uplink {up.uplink} is not a port of {bridge}",
                     f"ovsbridge setup-bridge {up.uplink} --bridge {bridge}", bridge)
    if not up.up:
        return Check("uplink", "fail", f"uplink {up.uplink} of {bridge} is down (no carrier)",
                     f"ip link set {up.uplink} up; check the cable or the switch port", bridge)
    if up.uplink_addresses:
        return Check("uplink", "warning",
                     f"uplink {up.uplink} still has {', '.join(up.uplink_addresses)}: the host's "
                     f"addresses belong on {bridge}",
                     f"ovsbridge setup-bridge {up.uplink} --bridge {bridge} (resumes the move)",
                     bridge)
    if up.default_dev not in (None, bridge):
        return Check("uplink", "warning",
                     f"the default route goes via {up.default_dev}, not {bridge}",
                     f"ip route replace default via GATEWAY dev {bridge}", bridge)
    where = ", ".join(up.bridge_addresses) or "no address"
    return Check("uplink", "ok", f"uplink {up.uplink} up in {bridge}; {bridge} has {where}",
                 subject=bridge)


def _dhcp_check(bridge: str, probe: ProbeResult) -> Check:
    if probe.server is None:
        return Check("dhcp", "warning", f"no DHCP server answered a DISCOVER on {bridge} within "
                                        f"{probe.seconds:g} s",
                     "check the LAN's DHCP server (or the uplink and its VLAN); static "
                     "addresses still work", bridge)
    return Check("dhcp", "ok", f"DHCP server {probe.server} answers on {bridge} (offered "
                               f"{probe.offered}; nothing was leased)", subject=bridge)
